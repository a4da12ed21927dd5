"""Data on disk: CIFAR-10 in its standard python format, a synthetic stand-in, and
scikit-learn's handwritten digits as arrays.

CIFAR-10's python version is a folder ``cifar-10-batches-py`` with five training batches
``data_batch_1`` ... ``data_batch_5``, a ``test_batch`` and ``batches.meta``: pickled dicts whose
``b"data"`` is a ``uint8`` array ``(n, 3072)`` (1024 red, then green, then blue values of a 32x32
image, row-major) and whose ``b"labels"`` is a list of ints.

The reader unpickles with an allow-list (dicts, lists, bytes, NumPy arrays), so a tampered file
cannot run code. [`write_cifar10`][signattack.data.write_cifar10] writes the same format, which
[`write_synthetic_cifar10`][signattack.data.write_synthetic_cifar10] uses for tests and smoke runs:
the real reader is what they exercise. [`fetch_cifar10`][signattack.data.fetch_cifar10] downloads
the real data set, when asked and only then, from its official address, checks the published MD5 and
extracts it. [`digit_arrays`][signattack.data.digit_arrays] gives the digits to any framework (the
PyTorch tensors and network are in `signattack.digits`). NumPy only; no framework is imported.
"""

from __future__ import annotations

import hashlib
import os
import pickle
import shutil
import tarfile
import tempfile
import urllib.request
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import IO, Any, Literal

import numpy as np
import numpy.typing as npt

from signattack._io import write_atomically

__all__ = [
    "CIFAR10_CLASSES",
    "DIGIT_LEVELS",
    "digit_arrays",
    "fetch_cifar10",
    "find_cifar10",
    "read_cifar10",
    "write_cifar10",
    "write_synthetic_cifar10",
]

CIFAR10_CLASSES = (
    "airplane",
    "automobile",
    "bird",
    "cat",
    "deer",
    "dog",
    "frog",
    "horse",
    "ship",
    "truck",
)
"""Class names, in label order."""

_CIFAR10_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
"""The official address of CIFAR-10's python version (Krizhevsky, 2009)."""

_CIFAR10_MD5 = "c58f30108f718f92721af3b95e74349a"
"""The MD5 digest of ``cifar-10-python.tar.gz`` published beside it."""

_FOLDER = "cifar-10-batches-py"
_TRAIN_FILES = tuple(f"data_batch_{i}" for i in range(1, 6))
_TEST_FILES = ("test_batch",)
_ALLOWED = {
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("_codecs", "encode"),  # how protocol-2 pickles written by Python 3 store bytes
    ("__builtin__", "bytes"),  # ... and empty bytes
    ("builtins", "bytes"),
}

Images = npt.NDArray[np.uint8]
Labels = npt.NDArray[np.int64]
Pixels = npt.NDArray[np.float32]

DIGIT_LEVELS = 16
"""The digits' grey levels run from 0 to 16."""


def digit_arrays(
    test_fraction: float = 0.25, seed: int = 0
) -> tuple[Pixels, Labels, Pixels, Labels]:
    """scikit-learn's 1,797 handwritten digits, shuffled with ``seed`` and split.

    The digits are real 8x8 grey-level scans that ship with scikit-learn: nothing is
    downloaded. Needs scikit-learn.

    Args:
        test_fraction: Share of the images held out for testing.
        seed: Seed of the shuffle.

    Returns:
        ``(x_train, y_train, x_test, y_test)``: float32 pixels ``round(level * 255 / 16)``
        in ``[0, 255]`` of shape ``(n, 1, 8, 8)``, and int64 labels.
    """
    from sklearn.datasets import load_digits

    digits = load_digits()
    pixels = np.round(digits.images * (255.0 / DIGIT_LEVELS)).astype(np.float32)[:, None]
    labels = digits.target.astype(np.int64)
    order = np.random.default_rng(seed).permutation(len(labels))
    n_test = round(len(labels) * test_fraction)
    test, train = order[:n_test], order[n_test:]
    return pixels[train], labels[train], pixels[test], labels[test]


class _ArrayUnpickler(pickle.Unpickler):
    """Unpickles plain containers and NumPy arrays, and nothing that could run code."""

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in _ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refusing to load {module}.{name} from a CIFAR-10 file")


_BY_HAND = (
    f"place them by hand: download {_CIFAR10_URL}, check that its MD5 is {_CIFAR10_MD5} and "
    "extract it into {root} (tar -xzf cifar-10-python.tar.gz -C {root}), which gives "
    f"{{root}}/{_FOLDER}"
)
"""How to put the data set in place without this library's download (``{root}``: the folder)."""


def find_cifar10(root: str | Path) -> Path:
    """The folder that holds the batch files: ``root`` itself or ``root/cifar-10-batches-py``.

    Raises:
        FileNotFoundError: Neither holds ``test_batch``; the message says where to get it.
    """
    root = Path(root)
    for folder in (root, root / _FOLDER):
        if (folder / "test_batch").is_file():
            return folder
    raise FileNotFoundError(
        f"no CIFAR-10 batch files in {root} or {root / _FOLDER}: fetch them with "
        f"signattack.data.fetch_cifar10({str(root)!r}) (163 MB, checked against the published "
        f"MD5), or {_BY_HAND.format(root=root)}"
    )


_open_url: Callable[[str], IO[bytes]] = urllib.request.urlopen
"""How the tarball is opened: the network in use, a local fake in tests."""


def fetch_cifar10(folder: str | Path) -> Path:
    """Download CIFAR-10's python version into ``folder``, check it and extract it.

    Nothing happens implicitly: the data set is fetched only by this call, from
    ``https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz`` (163 MB), into the folder named. The
    download is checked against the published MD5, ``c58f30108f718f92721af3b95e74349a``, before
    anything is extracted, and the batch files appear all at once or not at all. A folder that holds
    the batch files already is returned as it is, without a download.

    Args:
        folder: Where the data set goes (created if missing); it then holds
            ``cifar-10-batches-py``, which [`read_cifar10`][signattack.data.read_cifar10] reads.

    Returns:
        The folder of batch files.

    Raises:
        TypeError: ``folder`` is not a path.
        ValueError: ``folder``, or a path above it, exists and is not a folder (nothing
            is written); the download does not match the published MD5, or the archive holds
            anything but the batch files' folder (a link, a path that leaves it, a name that is
            both a file and a folder); ``folder`` holds the synthetic stand-in
            ([`write_synthetic_cifar10`][signattack.data.write_synthetic_cifar10]), which is
            not CIFAR-10; ``folder/cifar-10-batches-py`` is a link to nothing. Nothing is left
            behind, not even ``folder`` where this call created it.
        FileExistsError: ``folder/cifar-10-batches-py`` exists without the batch files.
        OSError: The download failed (no network, a broken connection): the message says
            so, names the address and how to place the archive by hand; nothing is left
            behind.
    """
    if not isinstance(folder, (str, Path)):
        raise TypeError(f"folder must be a str or Path, got {type(folder).__name__}")
    root = Path(folder)
    _check_folder(root)
    try:
        found = find_cifar10(root)
    except FileNotFoundError:
        pass
    else:
        if (found / SYNTHETIC_MARK).exists():
            raise ValueError(
                f"{root} holds the synthetic stand-in for CIFAR-10 written by "
                f"write_synthetic_cifar10 ({found / SYNTHETIC_MARK} marks it), not CIFAR-10: "
                "name another folder, or remove the stand-in first"
            )
        if all((found / name).is_file() for name in (*_TRAIN_FILES, *_TEST_FILES)):
            return found
    target = root / _FOLDER
    if target.is_symlink() and not target.exists():
        raise ValueError(
            f"{target} is a link to {os.readlink(target)!r}, which does not exist: remove the "
            "link or name another folder; nothing was downloaded"
        )
    if target.exists():
        raise FileExistsError(
            f"{target} exists but lacks CIFAR-10 batch files: remove it or name another folder"
        )
    created = _created_folders(root)
    try:
        _download(root, target)
    except BaseException:
        for made in created:  # deepest first; only the folders this call made, if left empty
            try:
                made.rmdir()
            except OSError:
                break
        raise
    return target


def _check_folder(root: Path) -> None:
    """Check that ``root`` is a folder or can become one: the nearest of it and its parents
    that exists is a folder.

    Raises:
        ValueError: ``root`` or a parent of it is a file (nothing is written).
    """
    for path in (root, *root.parents):
        if path.is_dir():
            return
        if path.exists() or path.is_symlink():
            what = "it" if path == root else f"{str(path)!r} above it"
            raise ValueError(
                f"folder must name a folder, or a path where one can be made, got "
                f"{str(root)!r}: {what} is not a folder; nothing was written"
            )


def _created_folders(root: Path) -> list[Path]:
    """Create ``root`` and its missing parents; the ones created, deepest first."""
    missing = [path for path in (root, *root.parents) if not path.exists()]
    root.mkdir(parents=True, exist_ok=True)
    return missing


def _download(root: Path, target: Path) -> None:
    """Download, check and extract the archive through a scratch folder in ``root``, then
    move the batch files' folder to ``target`` in one rename."""
    with tempfile.TemporaryDirectory(dir=root, prefix=".cifar10-") as scratch:
        archive = Path(scratch) / "cifar-10-python.tar.gz"
        digest = hashlib.md5(usedforsecurity=False)
        with _remote(root) as response, archive.open("wb") as handle:
            while chunk := _received(response, root):
                digest.update(chunk)
                handle.write(chunk)
        if digest.hexdigest() != _CIFAR10_MD5:
            raise ValueError(
                f"the download from {_CIFAR10_URL} has MD5 {digest.hexdigest()}, expected the "
                f"published {_CIFAR10_MD5}: it is damaged or not CIFAR-10; nothing was extracted"
            )
        _extract(archive, Path(scratch) / "extracted")
        (Path(scratch) / "extracted" / _FOLDER).rename(target)


def _failed(root: Path, error: OSError) -> OSError:
    """The error a failed download is reported as: what failed, where from, what to do."""
    reason = getattr(error, "reason", None) or error
    return OSError(
        f"the download of CIFAR-10 from {_CIFAR10_URL} failed ({type(error).__name__}: "
        f"{reason}); nothing was left behind. Try again when the address can be reached, or "
        f"{_BY_HAND.format(root=root)}"
    )


def _remote(root: Path) -> IO[bytes]:
    """The archive's address, opened; a failure says so (`_failed`)."""
    try:
        return _open_url(_CIFAR10_URL)
    except OSError as error:  # URLError, a timeout, a refused connection
        raise _failed(root, error) from error


def _received(response: IO[bytes], root: Path) -> bytes:
    """The next chunk of the download; a broken connection says so (`_failed`)."""
    try:
        return response.read(1 << 20)
    except OSError as error:
        raise _failed(root, error) from error


def _extract(archive: Path, into: Path) -> None:
    """Extract the batch files' folder, refusing links, devices and paths that leave it."""
    try:
        with tarfile.open(archive, "r:gz") as tar:
            members = tar.getmembers()
            for member in members:
                parts = Path(member.name).parts
                if (
                    not parts
                    or parts[0] != _FOLDER
                    or ".." in parts
                    or Path(member.name).is_absolute()
                    or not (member.isfile() or member.isdir())
                ):
                    raise ValueError(
                        f"the CIFAR-10 archive holds {member.name!r}, expected only regular "
                        f"files under {_FOLDER}/; nothing was extracted"
                    )
            _check_layout(members)
            into.mkdir()
            for member in members:
                if member.isdir():
                    (into / member.name).mkdir(parents=True, exist_ok=True)
                    continue
                source = tar.extractfile(member)
                if source is None:  # pragma: no cover - isfile() members always have data
                    raise ValueError(f"the CIFAR-10 archive's {member.name!r} cannot be read")
                (into / member.name).parent.mkdir(parents=True, exist_ok=True)
                with source, (into / member.name).open("wb") as handle:
                    shutil.copyfileobj(source, handle)
    except (tarfile.TarError, EOFError) as error:
        raise ValueError(
            f"the CIFAR-10 archive cannot be read ({type(error).__name__}: {error})"
        ) from None
    if not (into / _FOLDER / "test_batch").is_file():
        raise ValueError(f"the CIFAR-10 archive lacks {_FOLDER}/test_batch")


def _check_layout(members: Sequence[tarfile.TarInfo]) -> None:
    """Refuse an archive that names one path both a file and a folder (a file, then
    something under it; or a folder and a file of one name)."""
    files = {Path(m.name) for m in members if m.isfile()}
    folders = {Path(m.name) for m in members if m.isdir()}
    folders |= {parent for m in members for parent in Path(m.name).parents}
    both = sorted(files & folders)
    if both:
        raise ValueError(
            f"the CIFAR-10 archive holds {both[0].as_posix()!r} both as a file and as a folder, "
            f"expected only regular files under {_FOLDER}/; nothing was extracted"
        )


def _read_batch(path: Path) -> tuple[Images, Labels]:
    """One batch file, checked: ``uint8`` data ``(n, 3072)`` and ``n`` integer labels in 0..9.

    Nothing is converted: float data is not truncated and values above 255 are not wrapped,
    they are refused.
    """
    try:
        with path.open("rb") as handle:
            batch = _ArrayUnpickler(handle, encoding="bytes").load()
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError) as error:
        raise ValueError(
            f"{path} is not a CIFAR-10 batch: it cannot be read ({type(error).__name__}: "
            f"{error}); the file is damaged or of another format"
        ) from None
    if not isinstance(batch, dict) or b"data" not in batch or b"labels" not in batch:
        raise ValueError(f"{path} is not a CIFAR-10 batch: expected a dict with data and labels")
    data, labels = batch[b"data"], batch[b"labels"]
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8:
        kind = data.dtype if isinstance(data, np.ndarray) else type(data).__name__
        raise ValueError(f"{path} is not a CIFAR-10 batch: data must be a uint8 array, got {kind}")
    if data.ndim != 2 or data.shape[1] != 3072:
        raise ValueError(
            f"{path} is not a CIFAR-10 batch: data must have shape (n, 3072), got {data.shape}"
        )
    labels = _labels(path, labels)
    if len(labels) != len(data):
        raise ValueError(
            f"{path} is not a CIFAR-10 batch: {len(data)} images but {len(labels)} labels"
        )
    return data.reshape(-1, 3, 32, 32), labels


def _labels(path: Path, labels: object) -> Labels:
    """CIFAR-10 labels: a list (or 1-d integer array) of ints in 0..9."""
    if isinstance(labels, np.ndarray):
        if labels.ndim != 1 or not np.issubdtype(labels.dtype, np.integer):
            raise ValueError(
                f"{path} is not a CIFAR-10 batch: labels must be integers of shape (n,), "
                f"got {labels.dtype} {labels.shape}"
            )
        values = labels.astype(np.int64)
    elif isinstance(labels, list) and all(
        isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in labels
    ):
        values = np.array(labels, dtype=np.int64).reshape(len(labels))
    else:
        raise ValueError(f"{path} is not a CIFAR-10 batch: labels must be a list of integers")
    if values.size and (values.min() < 0 or values.max() > 9):
        raise ValueError(
            f"{path} has labels outside 0..9: {int(values.min())}..{int(values.max())}"
        )
    return values


def read_cifar10(
    root: str | Path, split: Literal["train", "test"] = "train"
) -> tuple[Images, Labels]:
    """Read the training or test split of CIFAR-10 from its python-format batch files.

    Args:
        root: The folder with the batch files, or its parent.
        split: ``"train"`` (the five training batches) or ``"test"``.

    Returns:
        ``uint8`` images ``(n, 3, 32, 32)`` in ``[0, 255]`` and ``int64`` labels ``(n,)``.

    Raises:
        FileNotFoundError: The files are missing.
        ValueError: ``split`` is unknown or a file is not a CIFAR-10 batch.
    """
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    folder = find_cifar10(root)
    names = _TRAIN_FILES if split == "train" else _TEST_FILES
    missing = [name for name in names if not (folder / name).is_file()]
    if missing:
        raise FileNotFoundError(f"{folder} lacks CIFAR-10 files {', '.join(missing)}")
    parts = [_read_batch(folder / name) for name in names]
    return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])


SYNTHETIC_MARK = "SYNTHETIC"
"""The file that marks a folder of synthetic stand-in data."""


def _write_pickle(path: Path, value: dict[bytes, Any]) -> None:
    write_atomically(path, pickle.dumps(value, protocol=2))


def write_cifar10(
    root: str | Path,
    train: tuple[Images, Sequence[int] | Labels],
    test: tuple[Images, Sequence[int] | Labels],
    *,
    overwrite: bool = False,
) -> Path:
    """Write images in CIFAR-10's python format under ``root/cifar-10-batches-py``.

    The training images are split over the five ``data_batch_*`` files; each file is written
    whole or not at all.

    Args:
        root: Parent folder; created if missing.
        train: ``uint8`` images ``(n, 3, 32, 32)`` and their labels in ``0..9``.
        test: The same for ``test_batch``.
        overwrite: Replace batch files that are already there (a real download, perhaps);
            without it they are left as they are and nothing is written.

    Returns:
        The folder written.

    Raises:
        ValueError: Images are not ``uint8 (n, 3, 32, 32)`` or labels do not match them.
        FileExistsError: The folder holds batch files already and ``overwrite`` is false.
    """
    folder = Path(root) / _FOLDER
    for name, (images, labels) in (("train", train), ("test", test)):
        if images.dtype != np.uint8 or images.ndim != 4 or images.shape[1:] != (3, 32, 32):
            raise ValueError(
                f"{name} images must be uint8 (n, 3, 32, 32), got {images.dtype} {images.shape}"
            )
        values = np.asarray(labels)
        if values.shape != (len(images),) or (
            values.size and not np.issubdtype(values.dtype, np.integer)
        ):
            raise ValueError(
                f"{name} labels must be {len(images)} integers, one per image, "
                f"got {values.dtype} {values.shape}"
            )
        if values.size and (values.min() < 0 or values.max() > 9):
            raise ValueError(f"{name} labels must lie in 0..9, got {values.min()}..{values.max()}")
    existing = [name for name in (*_TRAIN_FILES, "test_batch") if (folder / name).exists()]
    if existing and not overwrite:
        raise FileExistsError(
            f"{folder} already holds CIFAR-10 batch files ({', '.join(existing)}): nothing "
            "was written; pass overwrite=True to replace them, or write to another folder"
        )
    folder.mkdir(parents=True, exist_ok=True)
    (folder / SYNTHETIC_MARK).unlink(missing_ok=True)
    train_images, train_labels = train
    chunks = np.array_split(np.arange(len(train_images)), len(_TRAIN_FILES))
    for index, (name, chunk) in enumerate(zip(_TRAIN_FILES, chunks, strict=True)):
        _write_pickle(
            folder / name,
            {
                b"batch_label": f"training batch {index + 1} of 5".encode(),
                b"labels": [int(label) for label in np.asarray(train_labels)[chunk]],
                b"data": train_images[chunk].reshape(len(chunk), 3072),
                b"filenames": [f"train_{i}.png".encode() for i in chunk],
            },
        )
    test_images, test_labels = test
    _write_pickle(
        folder / "test_batch",
        {
            b"batch_label": b"testing batch 1 of 1",
            b"labels": [int(label) for label in test_labels],
            b"data": test_images.reshape(len(test_images), 3072),
            b"filenames": [f"test_{i}.png".encode() for i in range(len(test_images))],
        },
    )
    _write_pickle(
        folder / "batches.meta",
        {
            b"num_cases_per_batch": len(chunks[0]),
            b"label_names": [name.encode() for name in CIFAR10_CLASSES],
            b"num_vis": 3072,
        },
    )
    return folder


def write_synthetic_cifar10(
    root: str | Path,
    *,
    train_size: int = 500,
    test_size: int = 100,
    seed: int = 0,
    overwrite: bool = False,
) -> Path:
    """Write a small, learnable stand-in for CIFAR-10 in the real on-disk format.

    Each class is a fixed random 4x4 colour pattern, upsampled to 32x32, plus per-image
    noise and a random brightness; a small network learns it in a few epochs. For smoke runs
    and tests, never for results. The folder is marked as synthetic (a ``SYNTHETIC`` file):
    a later call replaces its own stand-in, but not real data, unless ``overwrite``.

    Returns:
        The folder written.

    Raises:
        FileExistsError: The folder holds batch files that are not a stand-in written here,
            and ``overwrite`` is false.
    """
    rng = np.random.default_rng(seed)
    patterns = rng.uniform(40, 215, size=(10, 3, 4, 4))

    def images(count: int) -> tuple[Images, Labels]:
        labels = rng.integers(0, 10, size=count)
        base = np.repeat(np.repeat(patterns[labels], 8, axis=2), 8, axis=3)
        noisy = base + rng.normal(0, 25, size=base.shape) + rng.uniform(-20, 20, (count, 1, 1, 1))
        return np.clip(np.round(noisy), 0, 255).astype(np.uint8), labels.astype(np.int64)

    own = (Path(root) / _FOLDER / SYNTHETIC_MARK).is_file()
    folder = write_cifar10(root, images(train_size), images(test_size), overwrite=overwrite or own)
    write_atomically(
        folder / SYNTHETIC_MARK,
        b"Synthetic stand-in for CIFAR-10 written by signattack.data.write_synthetic_cifar10: "
        b"colour patterns, not real images. Never report results on it.\n",
    )
    return folder
