"""The files a run writes: every output flag is checked by `check_outputs` before any
work, so that a path that cannot be written is refused at once, not after the evaluation."""

from __future__ import annotations

import importlib.util
import os
import stat
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from signattack._cli_args import UsageError


@dataclass(frozen=True)
class Output:
    """A file that an output flag writes.

    Attributes:
        flag: The flag, ``--report``.
        suffixes: The suffixes it can write (``.json``, ...); empty: any.
        needs: A module the writer imports and the extra that installs it, if any.
        folder: Whether it names a folder to write files into, instead of a file.
        beside: Suffixes of the paths it also writes beside the file while it runs
            (``.parts``: the export's per-batch folder), claimed as its own.
    """

    flag: str
    suffixes: tuple[str, ...] = ()
    needs: tuple[str, str] | None = None
    folder: bool = False
    beside: tuple[str, ...] = ()


def check_outputs(
    outputs: Sequence[tuple[Output, Path | None]], inputs: Sequence[tuple[str, Path | None]]
) -> None:
    """Refuse, before any work and without creating anything, every output that could not
    be written at the end: a suffix its writer does not know, a folder, a device or other
    non-file, a read-only file, a folder that is not writable or cannot be created (a file
    stands where a folder must be), a missing library, or two flags naming one file (an
    output that is also one of the ``inputs``, flag and path, would overwrite it).

    Raises:
        UsageError: One line naming the flag and the path.
    """
    claimed = {_identity(path): flag for flag, path in inputs if path is not None}
    for output, path in outputs:
        if path is None:
            continue
        _check_output(output, path)
        for written in (path, *(Path(f"{path}{suffix}") for suffix in output.beside)):
            other = claimed.setdefault(_identity(written), output.flag)
            if other != output.flag:
                raise UsageError(
                    f"{output.flag} {str(path)!r} names the same file as {other} "
                    f"({str(written)!r}): name another file"
                )


def _check_output(output: Output, path: Path) -> None:
    flag, shown = output.flag, repr(str(path))
    if output.folder:
        if os.path.exists(path) and not os.path.isdir(path):
            raise UsageError(f"{flag} must be a folder, got the file {shown}")
        _check_folder(flag, shown, path.absolute())
        return
    if os.path.isdir(path):
        raise UsageError(f"{flag} must be a file, got the folder {shown}")
    if os.path.exists(path):
        mode = os.stat(path).st_mode
        if not stat.S_ISREG(mode):
            raise UsageError(f"{flag} must be a regular file, got {shown} (a device or pipe)")
        if not mode & 0o222 or not os.access(path, os.W_OK):
            raise UsageError(f"{flag} {shown} is read-only: make it writable or name another file")
    if output.suffixes and path.suffix not in output.suffixes:
        wanted = " or ".join([", ".join(output.suffixes[:-1]), output.suffixes[-1]])
        raise UsageError(f"{flag} must end in {wanted.removeprefix(' or ')}, got {shown}")
    if output.needs is not None and importlib.util.find_spec(output.needs[0]) is None:
        module, extra = output.needs
        raise UsageError(f'{flag} {shown} needs {module}: pip install "signattack[{extra}]"')
    _check_folder(flag, shown, path.absolute().parent)


def _check_folder(flag: str, shown: str, folder: Path) -> None:
    """Refuse ``folder`` where it cannot be created or written into."""
    while not os.path.exists(folder) and folder != folder.parent:
        folder = folder.parent  # the first folder that exists: the ones below are created
    if not os.path.isdir(folder):
        raise UsageError(f"{flag} {shown} cannot be written: {str(folder)!r} is not a folder")
    reason = _unwritable(folder)
    if reason is not None:
        raise UsageError(
            f"{flag} {shown} cannot be written: the folder {str(folder)!r} is not writable "
            f"({reason})"
        )


def _unwritable(folder: Path) -> str | None:
    """Why no file can be created in ``folder``, or ``None`` where one can: found by
    creating one and removing it (permissions alone do not tell: an administrator passes
    them, and some file systems refuse what they allow)."""
    try:
        handle, name = tempfile.mkstemp(dir=folder, prefix=".signattack-check-")
    except OSError as error:
        return error.strerror or type(error).__name__
    os.close(handle)
    os.unlink(name)
    return None


def _identity(path: Path) -> Path:
    """The resolved absolute path: two names of one file have the same."""
    return Path(os.path.realpath(path.expanduser()))
