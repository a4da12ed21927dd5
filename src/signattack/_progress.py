"""Progress of long work: a bar on a terminal, a line now and then anywhere else.

A progress bar written to a file or a pipe (CI logs, ``nohup``) is noise or nothing at all;
there, a plain line every :data:`INTERVAL` seconds says how far the work is.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterable, Iterator
from typing import TypeVar

__all__ = ["INTERVAL", "progress"]

Item = TypeVar("Item")

INTERVAL = 30.0
"""Seconds between two progress lines when stderr is not a terminal."""


def progress(items: Iterable[Item], what: str, units: str, show: bool | None) -> Iterator[Item]:
    """``items``, reporting progress on stderr.

    Args:
        items: The work, one item at a time.
        what: What is being done ("evaluating").
        units: What the items are ("batches").
        show: ``True``: always report; ``False``: never; ``None``: a bar on a terminal, and
            lines elsewhere once the work has taken :data:`INTERVAL` seconds.
    """
    if show is False:
        yield from items
        return
    if sys.stderr.isatty():
        try:
            from tqdm.auto import tqdm
        except ImportError:  # pragma: no cover - tqdm comes with the demo extra
            pass
        else:
            yield from tqdm(items, desc=what, unit=units)
            return
    start = last = time.monotonic()
    count = 0
    for item in items:
        yield item
        count += 1
        now = time.monotonic()
        if now - last >= INTERVAL or (show and count == 1):
            print(f"{what}: {count} {units} done, {now - start:.0f} s", file=sys.stderr)
            last = now
    elapsed = time.monotonic() - start
    if show or elapsed >= INTERVAL:
        print(f"{what}: finished {count} {units} in {elapsed:.0f} s", file=sys.stderr)
