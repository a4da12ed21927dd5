"""Progress of long work: a bar in a terminal or a notebook, a line now and then anywhere else,
and a line per finished stage (each attack at each radius of an evaluation).

A progress bar written to a file or a pipe (CI logs, ``nohup``) is noise or nothing at all;
there, once the work has run `INTERVAL` seconds, a plain line every `INTERVAL` seconds says how
far the work is, and the line of every finished stage is written (and flushed) as it comes.
Shared by the evaluation, the digits training and the demo.
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
_STEP_LABEL: ContextVar[tuple[str, str]] = ContextVar(
    "step_label", default=("attack steps", "steps")
)


@contextmanager
def step_bars(show: bool) -> Iterator[None]:
    """Within the block, attacks that run long show a bar of their steps (Square's queries,
    each FAB-T or APGD-T target's steps) in a terminal or a notebook, where ``show``."""
    token = _STEP_BARS.set(show)
    try:
        yield
    finally:
        _STEP_BARS.reset(token)


@contextmanager
def step_label(what: str, unit: str = "steps") -> Iterator[None]:
    """Within the block, the bar of [`steps`][] reads ``what`` (``"FAB-T target 2 of 9"``,
    ``"Square queries"``) and counts ``unit``; an inner block names its own bars."""
    token = _STEP_LABEL.set((what, unit))
    try:
        yield
    finally:
        _STEP_LABEL.reset(token)


def steps(count: int, what: str | None = None) -> Iterable[int]:
    """``range(count)``, with a bar that appears after `STEP_BAR_DELAY` seconds inside a
    [`step_bars`][] block in a terminal or a notebook, and disappears when done; the bar
    reads ``what``, by default the label of the enclosing [`step_label`][] block."""
    if not _STEP_BARS.get() or not (in_notebook() or sys.stderr.isatty()):
        return range(count)
    try:
        from tqdm.auto import tqdm
    except ImportError:  # pragma: no cover - tqdm comes with the demo extra
        return range(count)
    label, unit = _STEP_LABEL.get() if what is None else (what, "steps")
    bar: Iterable[int] = tqdm(
        range(count), desc=label, unit=unit, leave=False, delay=STEP_BAR_DELAY
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
            say(f"{what}: {count}{of} {units} done, {now - start:.0f} s")
            last = now
    elapsed = time.monotonic() - start
    if show or elapsed >= INTERVAL:
        say(f"{what}: finished {count} {units} in {elapsed:.0f} s")


def duration(seconds: float) -> str:
    """``seconds`` as people read a duration: ``42 s``, ``3 min 5 s``, ``2 h 10 min``."""
    whole = max(0, round(seconds))
    if whole < 60:
        return f"{whole} s"
    if whole < 3600:
        return f"{whole // 60} min {whole % 60} s"
    return f"{whole // 3600} h {whole % 3600 // 60} min"


def say(line: str) -> None:
    """Write ``line`` to stderr at once: a log read while the work runs (``tail -f`` of a
    ``nohup`` run, a CI log) gets each line as it comes, not when a buffer fills."""
    print(line, file=sys.stderr, flush=True)


class Stages:
    """A line on stderr as each stage of long work finishes, with the time spent and an
    estimate of the time left (the mean time of the stages done so far, times those left).

    Args:
        show: ``True``: a line per stage; ``False``: none; ``None``: a line per stage, above
            the bar of `progress` in a terminal or a notebook; elsewhere (a log file, a pipe)
            the same lines, without bars, once the work has run `INTERVAL` seconds: the lines
            of the stages before then are written at that moment, and every later one as it
            finishes, so that a short run stays silent and a long one leaves a whole record.
    """

    def __init__(self, show: bool | None) -> None:
        self.interactive = in_notebook() or sys.stderr.isatty()
        self.show = show is not False
        # Where a log waits for INTERVAL: the lines held back until then (None: none held).
        self.held: list[str] | None = [] if show is None and not self.interactive else None
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
        lines = [line]
        if self.held is not None:
            self.held.append(line)
            if spent < INTERVAL:
                return
            lines, self.held = self.held, None
        for each in lines:
            self._write(each)

    def _write(self, line: str) -> None:
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
            sys.stderr.flush()
        else:
            say(line)
