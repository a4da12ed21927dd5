"""The command line's shared vocabulary: the one-line `UsageError`, its exit
statuses, and the reading of numbers and counts given as flags."""

from __future__ import annotations

import argparse
from fractions import Fraction

USAGE_ERROR = 2
"""The exit status of every user error, as for argparse's own."""

INTERRUPTED = 130
"""The exit status after Ctrl-C, as a shell reports it (128 + SIGINT)."""


class UsageError(Exception):
    """A mistake of the user's, reported as one line."""


def positive(text: str) -> int:
    value = integer(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {text!r}")
    return value


def non_negative(text: str) -> int:
    value = integer(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {text!r}")
    return value


def integer(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None


def numbers(text: str, flag: str, count: int | None = None) -> list[float]:
    """``text`` as comma-separated numbers, each a decimal or a fraction (``8/255``) read
    exactly and rounded once to the nearest float; ``inf`` and ``nan`` as Python reads them.
    A finite number too large for a float (``1e400``) is refused, never read as ``inf``."""
    values, why, empty = [], "", False
    for part in (part.strip() for part in text.split(",")):
        try:
            values.append(float(Fraction(part)))
        except ZeroDivisionError:
            why = why or f": {part!r} divides by zero"
        except OverflowError:
            why = why or f": {part!r} is beyond the range of a float (about 1.8e308)"
        except ValueError:
            try:
                values.append(float(part))
            except ValueError:
                empty = empty or not part
                why = why or (f": {part!r} is not a number such as 8, 0.5 or 8/255" if part else "")
    wanted = f"{count} comma-separated numbers" if count else "comma-separated numbers"
    if why or empty or (count is not None and len(values) != count):
        raise UsageError(f"{flag} must be {wanted}, got {text!r}{why}")
    return values
