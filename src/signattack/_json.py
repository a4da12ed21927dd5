"""JSON values, typed: what ``json.loads`` returns, said in types.

Readers narrow a :data:`Json` value with ``isinstance`` one level at a time (a ``dict``
narrows to ``dict[str, Json]``), so that every value a file provides is checked before it
is used, and the checks are visible to the type checker.
"""

from __future__ import annotations

import json
import math
from typing import TypeAlias

__all__ = ["Json", "finite_nonnegative", "parse"]

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
