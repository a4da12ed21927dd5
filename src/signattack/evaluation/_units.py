"""Radii as their users write them: ``8/255`` on a box of width one, and RobustBench's
``[0, 1]`` units whatever the box."""

from __future__ import annotations

import math

LEVELS = 255
"""Pixel levels of an 8-bit image: a radius of a ``[0, 1]`` box is shown as ``k/255``."""


def radius_text(eps: float, bounds: tuple[float, float] | None) -> str:
    """``eps`` as its user thinks of it: ``8/255`` for a box of width one where ``eps`` is a
    whole number of 8-bit levels, else ``8`` or ``0.03``."""
    if bounds is not None and math.isclose(bounds[1] - bounds[0], 1.0) and eps > 0:
        levels = eps * LEVELS
        if math.isclose(levels, round(levels), rel_tol=1e-6):
            return f"{round(levels)}/{LEVELS}"
    return f"{eps:g}"


def robustbench_eps(eps: float, bounds: tuple[float, float]) -> str:
    """``eps`` in RobustBench's units, whatever box the inputs lived in: a share of the
    box's width, as for images in ``[0, 1]`` (``16`` on ``[0, 255]`` is ``16/255``, ``16/255``
    on ``[-1, 1]`` is ``8/255``), written ``k/255`` where it is a whole number of 8-bit
    levels, else as a decimal.

    Raises:
        ValueError: The box has no finite, positive width.
    """
    width = bounds[1] - bounds[0]
    if not (math.isfinite(width) and width > 0):
        raise ValueError(f"bounds must have a finite width > 0, got {bounds!r}")
    return radius_text(eps / width, (0.0, 1.0))
