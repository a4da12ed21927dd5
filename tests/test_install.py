"""Installing what the library and its tutorials need: CIFAR-10 fetched only when asked and
checked against its published digest, and a test suite that runs from an installed wheel."""

from __future__ import annotations

import hashlib
import io
import re
import tarfile
from pathlib import Path

import numpy as np
import pytest

from signattack import data
from signattack.data import (
    SYNTHETIC_MARK,
    fetch_cifar10,
    read_cifar10,
    write_synthetic_cifar10,
)

ROOT = Path(__file__).resolve().parents[1]


def _tarball(tmp_path: Path, *, extra: tarfile.TarInfo | None = None) -> bytes:
    """A small archive laid out as the official one: ``cifar-10-batches-py/...``, without
    the stand-in's mark."""
    folder = write_synthetic_cifar10(tmp_path / "source", train_size=10, test_size=4)
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:

        def unmarked(member: tarfile.TarInfo) -> tarfile.TarInfo | None:
            return None if Path(member.name).name == SYNTHETIC_MARK else member

        tar.add(folder, arcname="cifar-10-batches-py", filter=unmarked)
        if extra is not None:
            tar.addfile(extra, io.BytesIO(b"x" * extra.size))
    return buffer.getvalue()


@pytest.fixture
def opener(monkeypatch):
    """Serve a given archive where the download would be; count the downloads."""
    served: dict[str, object] = {"archive": b"", "urls": []}

    def open_url(url: str) -> io.BytesIO:
        served["urls"].append(url)
        return io.BytesIO(served["archive"])

    def serve(archive: bytes, *, published: str | None = None) -> dict[str, object]:
        served["archive"] = archive
        digest = published or hashlib.md5(archive, usedforsecurity=False).hexdigest()
        monkeypatch.setattr(data, "_CIFAR10_MD5", digest)
        return served

    monkeypatch.setattr(data, "_open_url", open_url)
    return serve


def test_fetch_downloads_the_official_tarball_checks_it_and_extracts_it(tmp_path, opener):
    served = opener(_tarball(tmp_path))
    folder = fetch_cifar10(tmp_path / "data")
    assert served["urls"] == ["https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"]
    assert folder == tmp_path / "data" / "cifar-10-batches-py"
    images, labels = read_cifar10(tmp_path / "data", "test")
    expected_images, expected_labels = read_cifar10(tmp_path / "source", "test")
    np.testing.assert_array_equal(images, expected_images)
    np.testing.assert_array_equal(labels, expected_labels)
    assert sorted(p.name for p in (tmp_path / "data").iterdir()) == ["cifar-10-batches-py"]
    # A second call finds the data and downloads nothing.
    assert fetch_cifar10(str(tmp_path / "data")) == folder
    assert len(served["urls"]) == 1


def test_the_official_digest_is_the_published_one():
    assert data._CIFAR10_MD5 == "c58f30108f718f92721af3b95e74349a"


def test_a_download_that_does_not_match_the_published_digest_leaves_nothing(tmp_path, opener):
    opener(_tarball(tmp_path), published="0" * 32)
    with pytest.raises(ValueError, match=r"MD5 [0-9a-f]{32}, expected the published 0{32}"):
        fetch_cifar10(tmp_path / "data")
    assert not (tmp_path / "data").exists()  # created by the call, removed with it


@pytest.mark.parametrize("name", ["../escaped", "cifar-10-batches-py/../../escaped", "other"])
def test_an_archive_with_anything_but_the_batch_folder_is_refused(tmp_path, opener, name):
    member = tarfile.TarInfo(name)
    member.size = 3
    opener(_tarball(tmp_path, extra=member))
    with pytest.raises(ValueError, match="expected only regular files under cifar-10-batches-py"):
        fetch_cifar10(tmp_path / "data")
    assert not (tmp_path / "data").exists()  # created by the call, removed with it
    assert not (tmp_path / "escaped").exists()


def test_an_archive_with_a_link_is_refused(tmp_path, opener):
    link = tarfile.TarInfo("cifar-10-batches-py/link")
    link.type = tarfile.SYMTYPE
    link.linkname = "/etc/passwd"
    opener(_tarball(tmp_path, extra=link))
    with pytest.raises(ValueError, match="'cifar-10-batches-py/link'"):
        fetch_cifar10(tmp_path / "data")
    assert not (tmp_path / "data").exists()  # created by the call, removed with it


def test_a_damaged_archive_is_refused(tmp_path, opener):
    opener(_tarball(tmp_path)[:200])
    with pytest.raises(ValueError, match="cannot be read"):
        fetch_cifar10(tmp_path / "data")
    assert not (tmp_path / "data").exists()  # created by the call, removed with it


def test_a_failed_download_leaves_nothing(tmp_path, monkeypatch):
    def unreachable(url: str) -> io.BytesIO:
        raise OSError("network is unreachable")

    monkeypatch.setattr(data, "_open_url", unreachable)
    with pytest.raises(OSError, match="unreachable"):
        fetch_cifar10(tmp_path / "data")
    assert not (tmp_path / "data").exists()  # created by the call, removed with it


def test_fetch_names_its_argument(tmp_path):
    with pytest.raises(TypeError, match="folder must be a str or Path, got int"):
        fetch_cifar10(3)  # type: ignore[arg-type]
    (tmp_path / "cifar-10-batches-py").mkdir()
    with pytest.raises(FileExistsError, match="lacks CIFAR-10 batch files"):
        fetch_cifar10(tmp_path)


def test_the_tests_do_not_rely_on_the_checkout():
    """CI runs the fast tests from an installed wheel with a copy of tests/ and no src/: no
    test may put the checkout's sources on the path."""
    offenders = [
        path.name
        for path in (ROOT / "tests").glob("*.py")
        if path.name != Path(__file__).name
        and re.search(r"(sys\.path\.(insert|append)\(|PYTHONPATH)[^\n]*\bsrc\b", path.read_text())
    ]
    assert not offenders, offenders
