"""CIFAR-10 on disk for a new user: the message for a missing folder names the library's
own download, a download without network says so in one sentence (where from, how to place
the archive by hand) and leaves nothing behind, and the attack example shows that sentence,
not a traceback, with a ``--download`` flag like the training example's."""

from __future__ import annotations

import io
import sys
import urllib.error
from pathlib import Path

import pytest

from signattack import data
from signattack.data import fetch_cifar10, find_cifar10

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"


def test_a_missing_folder_names_fetch_cifar10_and_the_hand_placed_archive(tmp_path):
    with pytest.raises(FileNotFoundError) as caught:
        find_cifar10(tmp_path / "nowhere")
    message = str(caught.value)
    assert f"signattack.data.fetch_cifar10({str(tmp_path / 'nowhere')!r})" in message
    assert "torchvision" not in message
    assert URL in message
    assert "\n" not in message


class _Broken(io.BytesIO):
    def read(self, size=-1):
        raise ConnectionResetError("connection reset by peer")


@pytest.mark.parametrize(
    "failure",
    [
        urllib.error.URLError("[Errno -3] Temporary failure in name resolution"),
        TimeoutError("timed out"),
        "mid-download",
    ],
    ids=["no-network", "timeout", "broken-connection"],
)
def test_a_failed_download_says_so_names_the_url_and_the_hand_placement(
    tmp_path, monkeypatch, failure
):
    def open_url(url: str):
        if failure == "mid-download":
            return _Broken(b"")
        raise failure

    monkeypatch.setattr(data, "_open_url", open_url)
    with pytest.raises(OSError, match=r"the download of CIFAR-10 from .* failed") as caught:
        fetch_cifar10(tmp_path / "new" / "cifar")
    message = str(caught.value)
    assert not isinstance(caught.value, urllib.error.URLError)
    assert URL in message
    assert "by hand" in message
    assert "tar -xzf cifar-10-python.tar.gz" in message
    assert str(tmp_path / "new" / "cifar") in message
    assert not (tmp_path / "new").exists()  # nothing left behind


def _run_attack_example(monkeypatch, tmp_path, *flags: str) -> SystemExit:
    monkeypatch.syspath_prepend(str(EXAMPLES))
    import cifar10_attack

    argv = ["cifar10_attack.py", "--checkpoint", str(tmp_path / "c.pt"), "--out", str(tmp_path)]
    monkeypatch.setattr(sys, "argv", [*argv, "--data-dir", str(tmp_path / "data"), *flags])
    with pytest.raises(SystemExit) as caught:
        cifar10_attack.main()
    return caught.value


def test_the_attack_example_says_where_the_data_is_missing_and_the_flag(monkeypatch, tmp_path):
    stop = _run_attack_example(monkeypatch, tmp_path)
    assert isinstance(stop.code, str), stop.code
    assert stop.code.startswith("cifar10_attack.py: no CIFAR-10 batch files")
    assert "--download" in stop.code
    assert "\n" not in stop.code


def test_the_attack_example_downloads_with_the_flag_and_reports_a_failure_in_a_line(
    monkeypatch, tmp_path
):
    asked = []

    def refuse(url: str):
        asked.append(url)
        raise urllib.error.URLError("network is unreachable")

    monkeypatch.setattr(data, "_open_url", refuse)
    stop = _run_attack_example(monkeypatch, tmp_path, "--download")
    assert asked == [URL]
    assert isinstance(stop.code, str), stop.code
    assert stop.code.startswith("cifar10_attack.py: the download of CIFAR-10")
    assert URL in stop.code
    assert not (tmp_path / "data").exists()


@pytest.mark.parametrize("below", ["", "sub", "sub/deeper"])
def test_a_folder_that_is_a_file_is_refused_by_name_and_nothing_is_written(
    tmp_path, monkeypatch, below
):
    def never(url):
        raise AssertionError("nothing may be downloaded")

    monkeypatch.setattr(data, "_open_url", never)
    afile = tmp_path / "afile"
    afile.write_text("mine")
    folder = afile / below if below else afile
    before = sorted(tmp_path.rglob("*"))
    with pytest.raises(ValueError, match="folder") as caught:
        fetch_cifar10(folder)
    assert repr(str(folder)) in str(caught.value)
    assert "not a folder" in str(caught.value)
    assert sorted(tmp_path.rglob("*")) == before
    assert afile.read_text() == "mine"
