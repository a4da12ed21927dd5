"""The maths of the L-inf signed-gradient attacks, written once against the array API.

Every function here is pure: it takes arrays of any array-API library (NumPy, PyTorch, ...) and
returns new arrays of the same library, dtype and device. Nothing here validates input; the attacks
validate once at their boundary and then trust these kernels.

The feasible set of an L-inf attack on an input ``x`` with radius ``eps`` inside the pixel box
``[lower, upper]`` is the intersection of the eps-ball and the box. It is itself a box,

    [max(lower, x - eps), min(upper, x + eps)],

so it is computed once ([`ball_box_limits`][signattack.core.kernels.ball_box_limits]) and every step
is one clip onto it.
"""

from __future__ import annotations

import math
from collections.abc import Callable

from signattack._typing import Amount, Array, device_of, namespace
from signattack.core.norms import (
    beyond,
    check_pair,
    check_radii,
    integer_pairs,
    widest_float,
)

__all__ = [
    "ball_box_limits",
    "clip",
    "round_into_limits",
    "sign_step",
    "signed_unit",
    "within_linf_ball",
]


def ball_box_limits(x: Array, eps: Amount, lower: float, upper: float) -> tuple[Array, Array]:
    """Element-wise limits of the intersection of the eps-ball around ``x`` and a box.

    ``low = max(lower, x - eps)`` and ``high = min(upper, x + eps)``, each moved one unit in
    the last place towards ``x`` where floating-point rounding would otherwise put it outside
    the ball. Hence for any ``v`` with ``low <= v <= high``, ``|v - x| <= eps`` holds exactly
    when evaluated in ``x``'s dtype, not only up to round-off.

    Args:
        x: Real floating array with every element inside ``[lower, upper]``.
        eps: Radius of the ball, ``>= 0``; it is rounded to ``x``'s dtype.
        lower: Lower end of the box.
        upper: Upper end of the box, ``> lower``.

    Returns:
        ``(low, high)``, two arrays of ``x``'s shape, dtype and device with
        ``low <= x <= high``.
    """
    xp = namespace(x)
    radius = xp.asarray(eps, dtype=x.dtype, device=device_of(x))
    low = xp.maximum(x - radius, xp.asarray(lower, dtype=x.dtype, device=device_of(x)))
    high = xp.minimum(x + radius, xp.asarray(upper, dtype=x.dtype, device=device_of(x)))
    low = xp.where(x - low > radius, xp.nextafter(low, x), low)
    high = xp.where(high - x > radius, xp.nextafter(high, x), high)
    return low, high


def within_linf_ball(
    x_adv: Array, x: Array, eps: Amount, bounds: tuple[float, float] | None = None
) -> Array:
    """Per sample, whether ``x_adv`` lies in the eps-ball around ``x`` (and in the box
    ``bounds``), judged as the attacks' projection judges it, in the inputs' own dtype.

    Floating inputs: ``|x_adv - x| <= eps`` with the difference computed in ``x``'s dtype and
    ``eps`` rounded to it, the test [`ball_box_limits`][signattack.core.kernels.ball_box_limits]
    guarantees for every point it admits; the box ends are rounded to the dtype as the attacks' clip
    rounds them. Hence every point an attack returns passes in every dtype (``float16`` and
    ``bfloat16`` included), and a point fails when it lies outside by more than the dtype's rounding
    of ``x +/- eps``. Integer inputs: ``|x_adv - x| <= floor(eps)`` exactly, in integers, decided
    without a difference that could wrap (a radius beyond the widest integer is compared in the
    widest float), and the box narrowed to the integers inside it. NaN fails;
    ``eps = inf`` admits any number.

    Args:
        x_adv: The points, ``(batch, ...)``, of ``x``'s library, dtype and shape.
        x: The clean inputs.
        eps: The radius, ``>= 0``, or one per sample, shape ``(batch,)``.
        bounds: The box ``(lower, upper)``, or ``None`` for no box.

    Returns:
        ``(batch,)`` booleans on ``x``'s device.

    Raises:
        ValueError: ``eps`` is negative, NaN or of another shape, or ``x`` has no batch axis.
    """
    check_pair(x_adv, x)
    radii = check_radii(eps, x.shape[0])
    xp = namespace(x_adv, x)
    where = device_of(x)
    rows = (x.shape[0], math.prod(x.shape[1:]))
    if xp.isdtype(x.dtype, "integral"):
        larger, smaller, top = integer_pairs(x_adv, x)
        radius = [min(math.floor(r), top) if math.isfinite(r) else top for r in radii]
        limit = xp.reshape(xp.asarray(radius, dtype=larger.dtype, device=where), (-1, 1))
        inside = ~beyond(larger, smaller, limit, top)
        if any(r > top for r in radii):  # beyond the widest integer: measured in floats
            wide = xp.asarray(radii, dtype=widest_float(x), device=where)
            gap = xp.astype(larger, wide.dtype) - xp.astype(smaller, wide.dtype)
            far = xp.reshape(wide > top, (-1, 1))
            inside = xp.where(far, gap <= xp.reshape(wide, (-1, 1)), inside)
        if bounds is not None:
            limits = xp.iinfo(x.dtype)
            lower = _integer_end(bounds[0], math.ceil, int(limits.min), int(limits.max))
            upper = _integer_end(bounds[1], math.floor, int(limits.min), int(limits.max))
            values = xp.reshape(xp.astype(x_adv, larger.dtype), rows)
            inside = inside & (values >= lower) & (values <= upper)
    else:
        radius_array = xp.reshape(xp.asarray(radii, dtype=x.dtype, device=where), (-1, 1))
        values = xp.reshape(x_adv, rows)
        inside = xp.abs(values - xp.reshape(x, rows)) <= radius_array
        if bounds is not None:
            lower_array = xp.asarray(bounds[0], dtype=x.dtype, device=where)
            upper_array = xp.asarray(bounds[1], dtype=x.dtype, device=where)
            inside = inside & (values >= lower_array) & (values <= upper_array)
    return xp.all(inside, axis=1)


def _integer_end(value: float, rounding: Callable[[float], int], least: int, most: int) -> int:
    """An end of the box as an integer of the dtype's range ``[least, most]``."""
    if math.isinf(value):
        return least if value < 0 else most
    return min(max(rounding(value), least), most)


def clip(v: Array, low: Array, high: Array) -> Array:
    """Project ``v`` onto the box ``[low, high]`` element-wise: ``min(max(v, low), high)``."""
    xp = namespace(v, low, high)
    return xp.minimum(xp.maximum(v, low), high)


def signed_unit(grad: Array, dtype: object) -> Array:
    """``sign(grad)`` as ``dtype``, with ``0`` where ``grad`` is zero *or NaN*.

    A NaN gradient entry therefore leaves its pixel where it is instead of turning the whole
    adversarial example into NaN.
    """
    xp = namespace(grad)
    unit = xp.where(xp.isnan(grad), 0.0, xp.sign(grad))
    return unit if unit.dtype == dtype else xp.astype(unit, dtype)


def sign_step(x_adv: Array, grad: Array, step_size: Amount, low: Array, high: Array) -> Array:
    """One projected signed-gradient step.

    ``x' = clip_[low, high](x_adv + step_size * sign(grad))``. A negative ``step_size`` descends the
    loss (targeted attacks).

    Args:
        x_adv: Current iterate, inside ``[low, high]``.
        grad: Gradient of the loss with respect to ``x_adv``, same shape.
        step_size: Signed step in input units.
        low: Lower limits from [`ball_box_limits`][signattack.core.kernels.ball_box_limits].
        high: Upper limits from [`ball_box_limits`][signattack.core.kernels.ball_box_limits].

    Returns:
        The next iterate, inside ``[low, high]``.
    """
    return clip(x_adv + step_size * signed_unit(grad, x_adv.dtype), low, high)


def round_into_limits(x_adv: Array, x: Array, low: Array, high: Array) -> Array:
    """Round a real-valued iterate to integers without leaving ``[low, high]``.

    Each element is rounded to the nearest integer, or towards ``x`` (which holds integers)
    where the nearest integer falls outside ``[low, high]``. Rounding towards ``x`` lands
    between ``x`` and ``x_adv``, both inside the limits, so the result is always feasible.

    Args:
        x_adv: Real-valued iterate inside ``[low, high]``.
        x: The clean input, integer-valued, in the same floating dtype.
        low: Lower limits.
        high: Upper limits.

    Returns:
        Integer-valued array in ``x_adv``'s floating dtype.
    """
    xp = namespace(x_adv, x)
    nearest = xp.round(x_adv)
    toward_x = x + xp.trunc(x_adv - x)
    outside = (nearest < low) | (nearest > high)
    return xp.where(outside, toward_x, nearest)


def take_samples(x: Array, index: Array) -> Array:
    """The samples of ``x`` (batch first) at the integer positions ``index``: NumPy's
    ``x[index]``, spelled as the array API standard allows for arrays of any rank."""
    return namespace(x).take(x, index, axis=0)
