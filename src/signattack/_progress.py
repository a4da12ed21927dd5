"""Progress of long work: a bar in a terminal or a notebook, a line now and then anywhere else,
and a line per finished stage (each attack at each radius of an evaluation).

A progress bar written to a file or a pipe (CI logs, ``nohup``) is noise or nothing at all;
there, a plain line every `INTERVAL` seconds says how far the work is. Shared by the
evaluation, the digits training and the demo.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterable, Iterator, Sized
from contextlib import contextmanager
from contextvars import ContextVar
from typing import TypeVar

Item = TypeVar("Item")

INTERVAL = 30.0
"""Seconds between two progress lines when there is neither a terminal nor a notebook."""

STEP_BAR_DELAY = 2.0
"""Seconds an attack's steps run before their bar appears: short attacks show none."""

_STEP_BARS: ContextVar[bool] = ContextVar("step_bars", default=False)


@contextmanager
def step_bars(show: bool) -> Iterator[None]:
    """Within the block, attacks that run long show a bar of their steps (Square's queries,
    each FAB-T or APGD-T target's steps) in a terminal or a notebook, where ``show``."""
    token = _STEP_BARS.set(show)
    try:
        yield
    finally:
        _STEP_BARS.reset(token)


def steps(count: int, what: str = "attack steps") -> Iterable[int]:
    """``range(count)``, with a bar that appears after `STEP_BAR_DELAY` seconds inside a
    [`step_bars`][] block in a terminal or a notebook, and disappears when done."""
    if not _STEP_BARS.get() or not (in_notebook() or sys.stderr.isatty()):
        return range(count)
    try:
        from tqdm.auto import tqdm
    except ImportError:  # pragma: no cover - tqdm comes with the demo extra
        return range(count)
    bar: Iterable[int] = tqdm(
        range(count), desc=what, unit="steps", leave=False, delay=STEP_BAR_DELAY
    )
    return bar


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
            notebook, and lines elsewhere once the work has taken `INTERVAL` seconds.
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


def duration(seconds: float) -> str:
    """``seconds`` as people read a duration: ``42 s``, ``3 min 5 s``, ``2 h 10 min``."""
    whole = max(0, round(seconds))
    if whole < 60:
        return f"{whole} s"
    if whole < 3600:
        return f"{whole // 60} min {whole % 60} s"
    return f"{whole // 3600} h {whole % 3600 // 60} min"


class Stages:
    """A line on stderr as each stage of long work finishes, with the time spent and an
    estimate of the time left (the mean time of the stages done so far, times those left).

    Args:
        show: ``True``: a line per stage; ``False``: none; ``None``: a line per stage in a
            terminal or a notebook, above the bar of `progress`, and none elsewhere
            (a log or a pipe gets that bar's line every `INTERVAL` seconds).
    """

    def __init__(self, show: bool | None) -> None:
        self.interactive = in_notebook() or sys.stderr.isatty()
        self.show = show is True or (show is None and self.interactive)
        self.start = time.monotonic()

    def done(self, text: str, finished: int, left: int | None) -> None:
        """Say ``text`` for a stage that has finished, ``finished`` stages having run so far
        and ``left`` still to run (``None``: unknown)."""
        if not self.show:
            return
        spent = time.monotonic() - self.start
        line = f"{text}; {duration(spent)} spent"
        if left is not None and finished > 0:
            line += f", about {duration(spent / finished * left)} left" if left else ", done"
        write = None
        if self.interactive:
            try:  # above the progress bar, which stays whole
                from tqdm.auto import tqdm
            except ImportError:  # pragma: no cover - tqdm comes with the demo extra
                pass
            else:
                write = getattr(tqdm, "write", None)
        if callable(write):
            write(line, file=sys.stderr)
        else:
            print(line, file=sys.stderr)
