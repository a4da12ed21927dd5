"""The package's input and output: files written whole, JSON read with its types, text tables.

- `write_atomically` writes a file so that a reader never sees half of one.
- `Json` says in types what ``json.loads`` returns; readers narrow a value with
  ``isinstance`` one level at a time (a ``dict`` narrows to ``dict[str, Json]``), so that every
  value a file provides is checked before it is used, visibly to the type checker.
- `text_table` is the one way the package prints a table, `html_table` the one
  way a notebook shows one.
- `escaped` is the one place where text that comes from a user (an attack's or a
  model's name, a description, a warning) is made safe for the format it is written in.
"""

from __future__ import annotations

import copy
import csv
import html
import io
import json
import math
import os
import tempfile
import unicodedata
from collections.abc import Collection, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Literal, TypeAlias, TypeVar


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
    """``json.loads``: what it returns is a `Json` value by construction.

    Raises:
        json.JSONDecodeError: ``document`` is not JSON.
        UnicodeDecodeError: ``document`` is bytes that are not UTF-8 (or -16, -32).
    """
    value: Json = json.loads(document)
    return value


K = TypeVar("K")
V = TypeVar("V")


class ReadOnly(Mapping[K, V]):
    """A mapping that cannot be changed: it keeps a private copy of the items it was made
    from, and with ``copies`` every value read is a deep copy, so that a nested list or
    dict handed out cannot change it either."""

    def __init__(self, items: Mapping[K, V], *, copies: bool = False) -> None:
        self._items = dict(items)
        self._copies = copies

    def __getitem__(self, key: K) -> V:
        value = self._items[key]
        return copy.deepcopy(value) if self._copies else value

    def __contains__(self, key: object) -> bool:
        return key in self._items

    def __iter__(self) -> Iterator[K]:
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)

    def __repr__(self) -> str:
        return repr(self._items)


def json_copy(value: object, name: str) -> Json:
    """A fresh JSON value equal to ``value`` (a mapping with ``str`` keys becomes a ``dict``,
    a tuple a ``list``), with every non-finite float written as its text (``"nan"``,
    ``"inf"``, ``"-inf"``), which JSON cannot hold.

    Raises:
        TypeError: ``value`` holds something that is not JSON; the message names where.
    """
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else repr(value)
    if isinstance(value, (list, tuple)):
        return [json_copy(item, f"{name}[{index}]") for index, item in enumerate(value)]
    if isinstance(value, Mapping):
        copied: dict[str, Json] = {}
        for key in value:
            if not isinstance(key, str):
                raise TypeError(f"{name} must have str keys, got {type(key).__name__} {key!r}")
            copied[key] = json_copy(value[key], f"{name}[{key!r}]")
        return copied
    raise TypeError(
        f"{name} must hold JSON values (None, bool, int, float, str, lists and dicts with "
        f"str keys), got {type(value).__name__}"
    )


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


TextFormat: TypeAlias = Literal["text", "markdown", "latex", "html"]
"""A format that text is written in; CSV has none here: the ``csv`` module quotes a cell."""

_LATEX = str.maketrans(
    {
        "\\": r"\textbackslash{}",
        "#": r"\#",
        "$": r"\$",
        "%": r"\%",
        "&": r"\&",
        "_": r"\_",
        "{": r"\{",
        "}": r"\}",
        "~": r"\textasciitilde{}",
        "^": r"\textasciicircum{}",
        "|": r"\textbar{}",
        "<": r"\textless{}",
        ">": r"\textgreater{}",
    }
)

_MARKDOWN = str.maketrans({mark: "\\" + mark for mark in "\\`*_|<>[]~&$"})

_BREAKS = ("Cc", "Zl", "Zp")
"""Unicode categories of control characters and line breaks: a line of a table or a note
must not end inside a cell (``str.splitlines`` splits at several of them)."""


def _one_line(text: str, visible: bool) -> str:
    """``text`` on one line: control characters and line breaks as escapes (``\\n``) where
    ``visible``, else as spaces; with ``visible``, also the invisible format characters
    (bidirectional overrides, zero widths) that would reorder or hide what a terminal
    shows."""
    hidden = (*_BREAKS, "Cf") if visible else _BREAKS
    if all(unicodedata.category(char) not in hidden for char in text):
        return text
    return "".join(
        (char.encode("unicode_escape").decode("ascii") if visible else " ")
        if unicodedata.category(char) in hidden
        else char
        for char in text
    )


def escaped(text: str, form: TextFormat) -> str:
    """``text`` as it must be written in ``form`` to read as itself, on one line.

    - ``"text"``: control characters, line breaks and invisible format characters as
      backslash escapes (``\\n``, ``\\u202e``); nothing else changes.
    - ``"markdown"``: a table cell or a list item: every character that Markdown or a
      table gives a meaning (``\\ ` * _ | < > [ ] ~ & $``; ``$`` opens mathematics in
      Jupyter and on GitHub) escaped with a backslash, line
      breaks as spaces.
    - ``"latex"``: the ten special characters of LaTeX as their escapes
      (``\\# \\$ \\% \\& \\_ \\{ \\}``, ``\\textbackslash{}``, ``\\textasciitilde{}``,
      ``\\textasciicircum{}``), with ``|``, ``<`` and ``>`` as text commands (the default
      font encoding prints other glyphs for them), line breaks as spaces.
    - ``"html"``: `html.escape` (``& < > " '``), line breaks as spaces.
    """
    if form == "text":
        return _one_line(text, visible=True)
    line = _one_line(text, visible=False)
    if form == "markdown":
        return line.translate(_MARKDOWN)
    if form == "latex":
        return line.translate(_LATEX)
    if form == "html":
        return html.escape(line)
    raise ValueError(f"form must be 'text', 'markdown', 'latex' or 'html', got {form!r}")


def as_tuple(name: str, values: object) -> tuple[object, ...]:
    """``values`` (a tuple or a list) as a tuple.

    Raises:
        TypeError: ``values`` is something else; the message names ``name``.
    """
    if not isinstance(values, (tuple, list)):
        raise TypeError(f"{name}: expected a tuple or a list, got {type(values).__name__}")
    return tuple(values)


def as_distance(name: str, value: object) -> float:
    """``value`` as a float if it is a radius or a distance: a finite real ``>= 0``.

    Raises:
        TypeError: ``value`` is not a real number (a ``bool`` is not one).
        ValueError: It is NaN, infinite, negative or too large for a float.
    """
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name}: expected a number, got {type(value).__name__} {value!r}")
    number = finite_nonnegative(value)
    if number is None:
        shown = "an integer too large" if isinstance(value, int) else repr(value)
        raise ValueError(f"{name}: expected a finite number >= 0, got {shown}")
    return number


def as_count(name: str, value: object, most: int) -> int:
    """``value`` if it is an ``int`` in ``[0, most]`` (a count of samples).

    Raises:
        TypeError, ValueError: It is not an ``int``, or out of range.
    """
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name}: expected an int count, got {type(value).__name__} {value!r}")
    if not 0 <= value <= most:
        raise ValueError(f"{name}: expected a count in [0, {most}], got {value}")
    return value


def as_text(name: str, value: object) -> str:
    """``value`` if it is a ``str``.

    Raises:
        TypeError: It is not.
    """
    if not isinstance(value, str):
        raise TypeError(f"expected a string for {name}, got {type(value).__name__}")
    return value


def as_flags(name: str, values: object, length: int | None = None) -> tuple[bool, ...]:
    """``values`` if they are ``bool`` values (``length`` of them where given), as a tuple.

    Raises:
        TypeError, ValueError: A value is not a ``bool``, or they are not ``length``.
    """
    flags = as_tuple(name, values)
    if not all(isinstance(flag, bool) for flag in flags):
        raise TypeError(f"{name}: per-sample results must hold true/false values")
    if length is not None and len(flags) != length:
        raise ValueError(
            f"{name}: per-sample results must be lists of {length} entries, got {len(flags)}"
        )
    return tuple(flag is True for flag in flags)


def csv_text(rows: Iterable[Sequence[object]]) -> str:
    """``rows`` as CSV text through the `csv` module, one ``\\n``-ended line per row: a
    cell holding a comma, a quote or any line break (``\\r`` too) is quoted, so that
    ``csv.reader`` reads every cell back as written."""
    lines = []
    for row in rows:
        buffer = io.StringIO()
        # "\r\n" makes the writer quote a cell holding either character; the row's own
        # ending is then replaced by "\n".
        csv.writer(buffer, lineterminator="\r\n").writerow(row)
        lines.append(buffer.getvalue().removesuffix("\r\n") + "\n")
    return "".join(lines)


def text_table(
    header: Sequence[str], rows: Sequence[Sequence[str]], *, left: Collection[int] = ()
) -> list[str]:
    """Columns two spaces apart, each as wide as its widest cell; right-aligned (numbers)
    except the columns in ``left``. Trailing spaces are dropped; every cell is
    `escaped` as ``"text"``, so that a row stays one line."""
    header = [escaped(cell, "text") for cell in header]
    rows = [[escaped(cell, "text") for cell in row] for row in rows]
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
    """A small HTML table, every cell `escaped`; right-aligned (numbers) except the
    columns in ``left``: what a notebook shows for a result."""

    def cells(tag: str, values: Sequence[str]) -> str:
        return "".join(
            f'<{tag} style="text-align: {"left" if i in left else "right"}">'
            f"{escaped(value, 'html')}</{tag}>"
            for i, value in enumerate(values)
        )

    body = "".join(f"<tr>{cells('td', row)}</tr>" for row in rows)
    return f"<table><thead><tr>{cells('th', header)}</tr></thead><tbody>{body}</tbody></table>"
