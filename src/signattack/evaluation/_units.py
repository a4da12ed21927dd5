"""Radii as their users write them: ``8/255`` on a box of width one, RobustBench's
``[0, 1]`` units whatever the box, and the norm they are measured in: an L-inf radius is a
number of 8-bit levels per pixel, an L2 radius a length, written as a decimal."""

from __future__ import annotations

import math
from collections.abc import Mapping

from signattack._io import Json
from signattack.core.linf import LINF
from signattack.core.norms import Norm, NormName, norm_of

LEVELS = 255
"""Pixel levels of an 8-bit image: an L-inf radius of a ``[0, 1]`` box is shown as ``k/255``."""

_LABELS: dict[str, str] = {"linf": "|d|", "l2": "||d||_2"}


def radius_text(
    eps: float, bounds: tuple[float, float] | None, norm: Norm | NormName | None = None
) -> str:
    """``eps`` as its user thinks of it: under L-inf (the default), ``8/255`` for a box of
    width one where ``eps`` is a whole number of 8-bit levels, else ``8`` or ``0.03``;
    under L2 always a decimal (``0.5``, ``127.5``): an L2 radius is no number of levels."""
    geometry = LINF if norm is None else norm_of(norm)
    linf = geometry.name == "linf"
    if linf and bounds is not None and math.isclose(bounds[1] - bounds[0], 1.0) and eps > 0:
        levels = eps * LEVELS
        if math.isclose(levels, round(levels), rel_tol=1e-6):
            return f"{round(levels)}/{LEVELS}"
    return f"{eps:g}"


def robustbench_eps(
    eps: float, bounds: tuple[float, float], norm: Norm | NormName | None = None
) -> str:
    """``eps`` in RobustBench's units, whatever box the inputs lived in: a share of the
    box's width, as for images in ``[0, 1]``. Under L-inf (the default) ``16`` on
    ``[0, 255]`` is ``16/255`` and ``16/255`` on ``[-1, 1]`` is ``8/255``, written ``k/255``
    where it is a whole number of 8-bit levels, else as a decimal; under L2 always a decimal,
    as RobustBench writes it: ``127.5`` on ``[0, 255]`` is ``0.5``.

    Raises:
        ValueError: The box has no finite, positive width.
    """
    width = bounds[1] - bounds[0]
    if not (math.isfinite(width) and width > 0):
        raise ValueError(f"bounds must have a finite width > 0, got {bounds!r}")
    return radius_text(eps / width, (0.0, 1.0), norm)


BALL_SLACK = 2.0**-7
"""How far, relative to eps, a measured largest perturbation may exceed its radius through
rounding and still have passed the ball check: the attacks keep the ball exactly in the
input's dtype, whose radius and differences are rounded (relative ``2**-8`` each in
``bfloat16``, the coarsest), and the perturbation is measured in the widest float (in
``float32``, ``8/255`` is ``0.0313725508...``, above ``8/255`` in ``float64``)."""


def outside_ball(moved_by: float, radius: float) -> bool:
    """Whether a largest perturbation ``moved_by`` (measured in the evaluation's norm, in the
    widest float) lies outside the ball of ``radius`` by more than the rounding `BALL_SLACK`
    allows."""
    return moved_by > radius * (1 + BALL_SLACK)


_ROUNDING: dict[str, float] = {
    "bfloat16": 2.0**-7,
    "float16": 2.0**-10,
    "float32": 2.0**-23,
    "float64": 2.0**-52,
}
"""Per floating dtype, the relative rounding a point that passed the ball check may show
above its radius: the dtype's machine epsilon, two half-units in the last place (the
radius rounded to the dtype, and the difference ``x_adv - x`` rounded in it)."""


def coarser(first: str | None, second: str) -> str:
    """Of two dtypes' names (``first`` ``None`` before any), the one whose rounding
    `ball_slack` allows more: what a report of batches in both records."""
    return second if first is None or ball_slack(second) > ball_slack(first) else first


def ball_slack(dtype: str | None) -> float:
    """The relative slack of `shown_largest` for points made in ``dtype`` (as its library
    names it): the rounding of that dtype (`_ROUNDING`); ``float64``'s for integer inputs,
    whose perturbations are exact and measured in the widest float. Where the dtype is not
    known (a report written before it was recorded), ``float32``'s: the rounding that the
    widest float a report stores commonly explains, never ``bfloat16``'s, which would hide a
    perturbation up to 0.8% above eps."""
    if dtype is None:
        return _ROUNDING["float32"]
    if dtype in _ROUNDING:
        return _ROUNDING[dtype]
    if dtype.startswith(("int", "uint")):
        return _ROUNDING["float64"]
    return _ROUNDING["float32"]


def recorded_dtype(metadata: Mapping[str, Json]) -> str | None:
    """The dtype of the inputs that ``metadata`` records (``metadata["data"]["dtype"]``,
    as their library names it), or ``None`` where it records none."""
    data = metadata.get("data")
    dtype = data.get("dtype") if isinstance(data, dict) else None
    return dtype if isinstance(dtype, str) else None


def shown_largest(moved_by: float, radius: float, dtype: str | None = None) -> float:
    """The largest perturbation at ``radius`` as the tables of a report show it: the
    measured ``moved_by``, but ``radius`` itself where ``moved_by`` exceeds it by no more
    than the rounding of the dtype the points were made in (`ball_slack`; ``float32``'s
    where it is not known), so that no table reads ``eps 0.0313725`` beside ``max |d|
    0.0313726``. Formatting is monotone, so the shown value is never written above the shown
    radius; a point outside the ball by more than that rounding is shown as measured. The
    measurement itself is kept in the report and in the summary CSV's ``max_perturbation``
    column."""
    if radius < moved_by <= radius * (1 + ball_slack(dtype)):
        return radius
    return moved_by


def norm_label(norm: Norm | NormName) -> str:
    """How a report writes the size of a perturbation ``d = x_adv - x`` in ``norm``:
    ``|d|`` under L-inf (the largest change of one input element, as reports always
    wrote it), ``||d||_2`` under L2."""
    name = norm_of(norm).name
    return _LABELS.get(name, f"||d||_{name}")


def recorded_norm(metadata: Mapping[str, Json]) -> Norm:
    """The norm ``metadata`` records (L-inf where it records none).

    Raises:
        ValueError: It records something that names no norm.
    """
    recorded = metadata.get("norm")
    if recorded is None:
        return LINF
    if not isinstance(recorded, str):
        raise ValueError(f"metadata['norm'] must be 'linf' or 'l2', got {type(recorded).__name__}")
    try:
        return norm_of(recorded)
    except ValueError:
        message = f"metadata['norm'] must be 'linf' or 'l2', got {recorded[:40]!r}"
        raise ValueError(message) from None
