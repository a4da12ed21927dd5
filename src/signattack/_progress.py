"""Progress of long work: a bar in a terminal or a notebook, a line now and then anywhere else.

A progress bar written to a file or a pipe (CI logs, ``nohup``) is noise or nothing at all;
there, a plain line every :data:`INTERVAL` seconds says how far the work is. Shared by the
evaluation, the digits training and the demo.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterable, Iterator, Sized
from typing import TypeVar

__all__ = ["INTERVAL", "in_notebook", "progress"]

Item = TypeVar("Item")

INTERVAL = 30.0
"""Seconds between two progress lines when there is neither a terminal nor a notebook."""


def in_notebook() -> bool:
    """Whether the code runs in a Jupyter kernel (a notebook, Colab, JupyterLab)."""
    shell = sys.modules.get("IPython")
    get_ipython = getattr(shell, "get_ipython", None)
    if get_ipython is None:
        return False
    session: object = get_ipython()
    return session is not None and hasattr(session, "kernel")


def progress(
    items: Iterable[Item],
    what: str,
    units: str,
    show: bool | None,
    *,
    total: int | None = None,
) -> Iterator[Item]:
    """``items``, reporting progress on stderr.

    Args:
        items: The work, one item at a time.
        what: What is being done ("evaluating").
        units: What the items are ("batches").
        show: ``True``: always report; ``False``: never; ``None``: a bar in a terminal or a
            notebook, and lines elsewhere once the work has taken :data:`INTERVAL` seconds.
        total: How many items there are, for the bar's total and its time left; by default
            ``len(items)`` where the items have a length.
    """
    if show is False:
        yield from items
        return
    if total is None and isinstance(items, Sized):
        total = len(items)
    if in_notebook() or sys.stderr.isatty():
        try:
            from tqdm.auto import tqdm
        except ImportError:  # pragma: no cover - tqdm comes with the demo extra
            pass
        else:
            yield from tqdm(items, desc=what, unit=units, total=total)
            return
    of = "" if total is None else f" of {total}"
    start = last = time.monotonic()
    count = 0
    for item in items:
        yield item
        count += 1
        now = time.monotonic()
        if now - last >= INTERVAL or (show and count == 1):
            print(f"{what}: {count}{of} {units} done, {now - start:.0f} s", file=sys.stderr)
            last = now
    elapsed = time.monotonic() - start
    if show or elapsed >= INTERVAL:
        print(f"{what}: finished {count} {units} in {elapsed:.0f} s", file=sys.stderr)
