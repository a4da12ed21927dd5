"""The package's input and output: files written whole, JSON read with its types, text tables.

- :func:`write_atomically` writes a file so that a reader never sees half of one.
- :data:`Json` says in types what ``json.loads`` returns; readers narrow a value with
  ``isinstance`` one level at a time (a ``dict`` narrows to ``dict[str, Json]``), so that every
  value a file provides is checked before it is used, visibly to the type checker.
- :func:`text_table` is the one way the package prints a table, :func:`html_table` the one
  way a notebook shows one.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from collections.abc import Collection, Sequence
from pathlib import Path
from typing import TypeAlias

__all__ = ["Json", "finite_nonnegative", "html_table", "parse", "text_table", "write_atomically"]


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_atomically(path: Path, data: bytes) -> None:
    """Write ``data`` to a temporary file beside ``path``, then rename it over ``path``.

    The data is flushed to disk before the rename, so that an interruption, even a power
    cut, leaves either the old file or the new one, never a partial write. The file gets the
    permissions ``open`` would give it (``0o666`` less the umask), not the temporary file's
    private ``0o600``.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(handle, "wb") as file:
            file.write(data)
            file.flush()
            os.fchmod(file.fileno(), 0o666 & ~_umask())
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    _sync_directory(path.parent)


def _sync_directory(folder: Path) -> None:
    """Make a rename in ``folder`` durable, where the system allows opening a folder."""
    try:
        descriptor = os.open(folder, os.O_RDONLY)
    except OSError:  # pragma: no cover - platforms that cannot open folders
        return
    try:
        os.fsync(descriptor)
    except OSError:  # pragma: no cover - file systems that cannot sync folders
        pass
    finally:
        os.close(descriptor)


Json: TypeAlias = "bool | int | float | str | list[Json] | dict[str, Json] | None"
"""A JSON value."""


def parse(document: str | bytes) -> Json:
    """``json.loads``: what it returns is a :data:`Json` value by construction.

    Raises:
        json.JSONDecodeError: ``document`` is not JSON.
        UnicodeDecodeError: ``document`` is bytes that are not UTF-8 (or -16, -32).
    """
    value: Json = json.loads(document)
    return value


def finite_nonnegative(value: Json) -> float | None:
    """``value`` as a float if it is a finite number ``>= 0`` (a size, a distance, a radius),
    else ``None``: a ``bool``, a string, NaN, an infinity, or an integer too large for a
    float (which ``float()`` would refuse with an ``OverflowError``)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    try:
        number = float(value)
    except OverflowError:
        return None
    return number if math.isfinite(number) and number >= 0 else None


def text_table(
    header: Sequence[str], rows: Sequence[Sequence[str]], *, left: Collection[int] = ()
) -> list[str]:
    """Columns two spaces apart, each as wide as its widest cell; right-aligned (numbers)
    except the columns in ``left``. Trailing spaces are dropped."""
    widths = [max(len(line[i]) for line in [header, *rows]) for i in range(len(header))]

    def line(cells: Sequence[str]) -> str:
        return "  ".join(
            cell.ljust(width) if i in left else cell.rjust(width)
            for i, (cell, width) in enumerate(zip(cells, widths, strict=True))
        ).rstrip()

    return [line(header), *map(line, rows)]


def html_table(
    header: Sequence[str], rows: Sequence[Sequence[str]], *, left: Collection[int] = ()
) -> str:
    """A small HTML table, every cell escaped; right-aligned (numbers) except the columns in
    ``left``: what a notebook shows for a result."""
    from html import escape

    def cells(tag: str, values: Sequence[str]) -> str:
        return "".join(
            f'<{tag} style="text-align: {"left" if i in left else "right"}">{escape(value)}</{tag}>'
            for i, value in enumerate(values)
        )

    body = "".join(f"<tr>{cells('td', row)}</tr>" for row in rows)
    return f"<table><thead><tr>{cells('th', header)}</tr></thead><tbody>{body}</tbody></table>"
