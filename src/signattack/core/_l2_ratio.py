"""The ratio of the L2 projection: how far along ``v - x`` the projection onto ball and box
lies, per sample.

With ``d = v - x`` and ``c_i`` the room the box leaves element ``i`` in the direction ``d_i``
points, the projection is ``x + clip(t * d)`` for the ``t`` in ``(0, 1]`` where
``sum_i min(t |d_i|, c_i)^2`` reaches the radius squared (`signattack.core.l2`). That sum is
piecewise quadratic in ``t``, with breakpoints ``c_i / |d_i|``. Three searches find ``t``
exactly: the box's active set grown from below in a few rounds (`_active_set_ratio`, on sums
scaled by the row's largest element), the same on plain squares where they can neither
overflow nor underflow (`_squared_ratio`, for float32, float16 and bfloat16 inputs), and one
sort of the breakpoints (`_sorted_ratio`, with no branch on values, for ``jax.jit``).
"""

from __future__ import annotations

import math
from typing import Protocol, cast

import array_api_compat

from signattack._typing import Array, Namespace, device_of, namespace


class _Euclid(Namespace, Protocol):
    """The functions of the array API the L2 norm calls besides `Namespace`'s."""

    def sqrt(self, x: Array, /) -> Array: ...

    def cos(self, x: Array, /) -> Array: ...

    def sin(self, x: Array, /) -> Array: ...

    def isinf(self, x: Array, /) -> Array: ...

    def flip(self, x: Array, /, *, axis: int | None = None) -> Array: ...


def _xp(*arrays: object) -> _Euclid:
    return cast(_Euclid, namespace(*arrays))


_SEARCH_STEPS = 12
"""Rounds of the active-set search before the rows it has not settled take the sort."""


def _eager(a: Array) -> bool:
    """Whether ``a``'s values may steer Python's control flow: not for JAX, whose arrays
    may be traced under ``jax.jit``; there every branch is taken and the results chosen."""
    return not array_api_compat.is_jax_array(a)


def _squares_fit(wide: Array, dtype: object) -> bool:
    """Whether any difference of two finite values of ``dtype``, squared and summed over a
    row of ``wide`` in ``wide``'s dtype, stays a normal number or zero: the largest
    difference's square times the row's length below the largest float, the smallest
    nonzero difference's square above the smallest normal one."""
    xp = _xp(wide)
    if dtype == wide.dtype or not xp.isdtype(dtype, "real floating"):
        return False
    narrow, broad = xp.finfo(dtype), xp.finfo(wide.dtype)
    largest = 2.0 * float(narrow.max)
    smallest = float(narrow.smallest_normal) * float(narrow.eps)
    length = max(wide.shape[1], 1)
    return largest * largest * length < float(broad.max) and smallest * smallest > float(
        broad.smallest_normal
    )


def _squared_ratio(squares: Array, kept: Array, total: Array, goal: Array) -> Array | None:
    """`_active_set_ratio` on squares, for `L2Feasible._narrow_answer`: per row the ``t**2``
    in ``[0, 1]`` with ``sum_i min(t**2 squares_i, kept_i) = goal`` (``1`` where ``goal`` is
    infinite), ``kept_i`` the squared room the box leaves element ``i``. Element ``i`` is
    stopped from ``t**2 >= kept_i / squares_i``. ``None`` where a row did not settle within
    `_SEARCH_STEPS` rounds. Plain sums: `_squares_fit` holds."""
    xp = _xp(squares)
    tiny = float(xp.finfo(squares.dtype).smallest_normal)
    breaks = kept / (squares + tiny)
    ratio = xp.minimum(goal, total) / (total + tiny)
    held = breaks <= ratio
    for _ in range(_SEARCH_STEPS):
        share = xp.astype(held, squares.dtype)  # a product is cheaper than a where
        fixed = xp.sum(share * kept, axis=1, keepdims=True)
        free = xp.sum((1.0 - share) * squares, axis=1, keepdims=True)
        ratio = xp.minimum(xp.maximum((goal - fixed) / (free + tiny), ratio), 1.0)
        now = breaks <= ratio
        # the same elements stopped: the ratio is exact
        if not bool(xp.any(xp.not_equal(now, held))):
            return ratio
        held = now
    return None


def _ball_ratio(delta: Array, gap: Array, inside: Array, radius: Array) -> Array:
    """Per row, the ``t`` in ``[0, 1]`` with ``sum_i min(t |delta_i|, c_i)^2 = radius^2``,
    ``c_i = min(|gap_i|, |delta_i|)`` the room the box leaves element ``i`` (``1`` where
    ``inside``: even ``t = 1`` stays in the ball), ``(batch, 1)``.

    Every breakpoint ``s_i = c_i / |delta_i|`` lies in ``[0, 1]``; between two of them the
    squared norm is ``C + t^2 D``, ``C`` the squared rooms of the elements stopped by the box,
    ``D`` the squared ``delta`` of the rest. Sums run on values scaled by `_scale`, so that
    neither the largest ``|delta_i|`` overflows nor the rooms and the radius underflow.
    NumPy and PyTorch take `_active_set_ratio` (a few passes, settled rows checked on the
    host), JAX `_sorted_ratio` (no branch on values, for ``jax.jit``)."""
    xp = _xp(delta)
    size_of = xp.abs(delta)
    cap = xp.minimum(xp.abs(gap), size_of)
    top = xp.max(size_of, axis=1, keepdims=True)
    top = xp.where(top > 0, top, 1.0)
    reach = xp.minimum(radius, top * math.sqrt(delta.shape[1] + 1.0))
    scale = _scale(top, xp.maximum(xp.max(cap, axis=1, keepdims=True), reach), delta.shape[1])
    goal = reach / scale
    goal = goal * goal
    # the smallest positive float: a zero |delta_i| (then c_i = 0) gives the breakpoint 0
    tiny = float(xp.finfo(delta.dtype).smallest_normal) * float(xp.finfo(delta.dtype).eps)
    breaks = cap / xp.maximum(size_of, tiny)
    moving, stopped = size_of / scale, cap / scale
    if not _eager(delta):
        return xp.where(inside, 1.0, _sorted_ratio(breaks, moving, stopped, goal))
    ratio, settled = _active_set_ratio(breaks, moving, stopped, goal, inside)
    if bool(xp.all(settled)):
        return ratio
    return xp.where(settled, ratio, _sorted_ratio(breaks, moving, stopped, goal))


def _scale(top: Array, small: Array, size: int) -> Array:
    """Per row, what `_ball_ratio` divides by: ``sqrt(top * small)``, between the row's
    largest ``|delta_i|`` (``top``) and the larger of its largest room and its radius
    (``small``), so that a ``delta_i`` far beyond the box (an infinity taken as the largest
    finite value `L2Feasible.near` allows) squares neither the rooms nor the radius into
    the subnormal range; at most ``top``, and at least ``top`` over the ratio at which a sum
    of ``size`` squares would overflow."""
    xp = _xp(top)
    bound = math.sqrt(float(xp.finfo(top.dtype).max) / (size + 1.0)) / 2.0
    middle = xp.sqrt(top) * xp.sqrt(small)
    return xp.minimum(xp.maximum(middle, top / bound), top)


def _active_set_ratio(
    breaks: Array, moving: Array, stopped: Array, goal: Array, inside: Array
) -> tuple[Array, Array]:
    """The ratio by the active set of the box, from below: with ``C`` and ``D`` the sums of
    the elements stopped at ``t`` (``s_i <= t``), ``t' = sqrt((goal - C) / D)``. Then
    ``C + t^2 D`` bounds the squared norm from above, so ``t' <= t*``, and ``t'`` only grows,
    stopping one more element at least until no breakpoint lies in ``(t, t']``: the exact
    ratio, on the segment the sort finds, in at most one round per breakpoint (two to four
    on attack steps; one where the box binds nothing). It starts from ``sqrt(goal / D)``
    with nothing stopped, a lower bound too. Returns the ratio and, per row, whether it
    settled within `_SEARCH_STEPS` rounds. Eager arrays only (it updates its own
    temporaries in place)."""
    xp = _xp(breaks)
    tiny = float(xp.finfo(breaks.dtype).smallest_normal)
    fixed_part, free_part = stopped * stopped, moving * moving
    total = xp.maximum(xp.sum(free_part, axis=1, keepdims=True), tiny)
    ratio = xp.where(inside, 1.0, xp.sqrt(xp.minimum(goal, total) / total))  # at most 1
    count = xp.full(ratio.shape, -1.0, dtype=ratio.dtype, device=device_of(ratio))
    for _ in range(_SEARCH_STEPS + 1):
        held = xp.astype(breaks <= ratio, breaks.dtype)  # a product is cheaper than a where
        now = xp.sum(held, axis=1, keepdims=True)
        settled = xp.equal(now, count)  # the same elements stopped: the same ratio again
        if bool(xp.all(settled)):
            break
        count = now
        fixed = xp.sum(held * fixed_part, axis=1, keepdims=True)
        held -= 1.0  # minus the moving elements' indicator
        held *= free_part
        free = xp.maximum(-xp.sum(held, axis=1, keepdims=True), tiny)
        step = xp.sqrt(xp.minimum(xp.maximum(goal - fixed, 0.0), free) / free)
        ratio = xp.maximum(step, ratio)
    return ratio, settled


def _sorted_ratio(breaks: Array, moving: Array, stopped: Array, goal: Array) -> Array:
    """The ratio by one sort of the breakpoints and two cumulative sums: ``C_k`` and ``D_k``
    of the segment after the ``k``-th breakpoint for every ``k`` at once, the segment the
    squared norm crosses ``goal`` on, and ``t`` there (``1`` where it never does)."""
    xp = _xp(breaks)
    rows = breaks.shape[0]
    order = xp.argsort(breaks, axis=1)
    breaks = xp.take_along_axis(breaks, order, axis=1)
    moving = xp.take_along_axis(moving, order, axis=1)
    stopped = xp.take_along_axis(stopped, order, axis=1)
    zero = xp.zeros((rows, 1), dtype=breaks.dtype, device=device_of(breaks))
    before = xp.concat([zero, xp.cumulative_sum(stopped * stopped, axis=1)], axis=1)
    rest = xp.flip(xp.cumulative_sum(xp.flip(moving * moving, axis=1), axis=1), axis=1)
    rest = xp.concat([rest, zero], axis=1)
    at_breaks = before[:, 1:] + breaks * breaks * rest[:, 1:]
    count = xp.sum(xp.astype(at_breaks <= goal, xp.int32), axis=1, keepdims=True)
    count = xp.astype(count, order.dtype)
    fixed = xp.take_along_axis(before, count, axis=1)
    free = xp.take_along_axis(rest, count, axis=1)
    ratio = xp.sqrt(xp.maximum(goal - fixed, 0.0) / xp.where(free > 0, free, 1.0))
    return xp.where(free > 0, xp.minimum(ratio, 1.0), 1.0)
