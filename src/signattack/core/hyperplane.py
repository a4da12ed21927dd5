r"""FAB's projections: the smallest move of a point onto a hyperplane within the box.

FAB ([`FABT`][signattack.FABT]) linearizes the boundary between two classes at its iterate
and moves onto that hyperplane, ``{z : w . z = b}``, by the smallest move inside the box
``[lower, upper]`` in the attack's norm. With ``gap = w . p - b`` the move ``d`` solves

    minimize ||d||  subject to  w . d = -gap,  lower <= p + d <= upper,

per row. Where the hyperplane misses the box, no move reaches it, and ``d`` is the move to
the point of the box closest to it (the far corner along ``-sign(gap) w``: every coordinate
with ``w_i != 0`` as far as the box lets it go, the others left where they are), as the
authors' code does.

Both norms reduce to a one-dimensional search. Each coordinate moves the way that closes the
gap, ``-sign(gap) sign(w_i)``, by an amount that grows with one level and saturates at its
room to the box, ``room_i``; the reach ``sum_i |w_i| move_i`` is increasing and piecewise
linear in the level, and the level that closes the gap is solved for exactly on its piece.

* L-inf ([`project_linf`][signattack.core.hyperplane.project_linf]): ``move_i = min(delta,
room_i)``, the level ``delta`` found by
  bisection and then solved for on its linear piece.
* L2 ([`project_l2`][signattack.core.hyperplane.project_l2]): the Karush-Kuhn-Tucker conditions give
``z(mu) = clip(p - mu w,
  lower, upper)`` for a multiplier ``mu >= 0`` (with the sign of ``gap``), so ``move_i =
  min(mu |w_i|, room_i)``: ``w . z(mu)`` is monotone in ``mu``, and ``mu`` is read off the
  sorted breakpoints ``room_i / |w_i|`` and their cumulative sums, exactly, without an
  iteration count.

[`hyperplane_move`][signattack.core.hyperplane.hyperplane_move] picks the projection of a norm by
its name and computes in at least
``float32`` (a sum of squared gradients overflows ``float16``).
"""

from __future__ import annotations

from collections.abc import Callable

from signattack._typing import Array, device_of, namespace
from signattack.core.norms import Norm, NormName

__all__ = ["hyperplane_move", "project_l2", "project_linf"]

_HALVINGS = 40
"""Bisection steps for the projection's radius: 2**-40 of the largest room, below float64's
resolution of any radius that matters and far below float32's."""


def project_linf(p: Array, w: Array, gap: Array, lower: float, upper: float) -> Array:
    """The smallest L-inf move ``d`` with ``w . d = -gap`` and ``p + d`` in the box, per row.

    Args:
        p: Points, ``(batch, n)``, inside ``[lower, upper]``.
        w: The hyperplanes' normals, ``(batch, n)``.
        gap: ``w . p - b`` per row, ``(batch,)``: how far each point is from its hyperplane
            ``w . x = b``, in units of ``w``.
        lower: The box's lower limit.
        upper: The box's upper limit.

    Returns:
        ``d`` of ``p``'s shape. Where the hyperplane does not meet the box, the move to the
        corner of the box closest to it (every coordinate as far as it can go).
    """
    xp = namespace(p)
    direction = -xp.sign(gap)[:, None] * xp.sign(w)  # the way each coordinate should go
    room = xp.where(direction > 0, upper - p, xp.where(direction < 0, p - lower, 0.0))
    room = xp.maximum(room, 0.0)
    weight = xp.abs(w) * xp.abs(direction)
    needed = xp.abs(gap)

    def reach(radius: Array) -> Array:
        return xp.sum(weight * xp.minimum(radius[:, None], room), axis=1)

    low = xp.zeros_like(needed)
    high = xp.max(room, axis=1)
    feasible = reach(high) >= needed
    for _ in range(_HALVINGS):
        middle = (low + high) / 2
        enough = reach(middle) >= needed
        high = xp.where(enough, middle, high)
        low = xp.where(enough, low, middle)
    # On [low, high] the coordinates with room <= low are saturated and the rest move by
    # radius: reach is linear there, and radius solves it exactly.
    saturated = room <= low[:, None]
    fixed = xp.sum(xp.where(saturated, weight * room, 0.0), axis=1)
    slope = xp.sum(xp.where(saturated, 0.0, weight), axis=1)
    exact = (needed - fixed) / xp.where(slope > 0, slope, 1.0)
    radius = xp.where(slope > 0, xp.clip(exact, low, high), high)
    radius = xp.where(feasible, radius, xp.max(room, axis=1))
    return direction * xp.minimum(radius[:, None], room)


def project_l2(p: Array, w: Array, gap: Array, lower: float, upper: float) -> Array:
    r"""The smallest L2 move ``d`` with ``w . d = -gap`` and ``p + d`` in the box, per row:
    the Euclidean projection of ``p`` onto ``{z : w . z = w . p - gap}`` within the box.

    The projection is ``p + d(mu)`` with ``d_i(mu) = s_i min(mu |w_i|, room_i)``, where
    ``s_i = -sign(gap) sign(w_i)`` is the way coordinate ``i`` closes the gap and
    ``room_i`` its room to the box that way; the reach ``r(mu) = sum_i |w_i| min(mu |w_i|,
    room_i) = sum_i w_i^2 min(mu, c_i)`` is increasing and piecewise linear with breakpoints
    ``c_i = room_i / |w_i|``. With the breakpoints sorted, the reach at each is a cumulative
    sum; the first one that reaches ``|gap|`` names the linear piece, on which

        mu = (|gap| - sum_{c_j <= c} w_j^2 c_j) / sum_{c_j > c} w_j^2.

    Args:
        p: Points, ``(batch, n)``, inside ``[lower, upper]``.
        w: The hyperplanes' normals, ``(batch, n)``; NaN entries count as ``0``.
        gap: ``w . p - b`` per row, ``(batch,)``.
        lower: The box's lower limit.
        upper: The box's upper limit.

    Returns:
        ``d`` of ``p``'s shape and dtype. Where the hyperplane does not meet the box, the
        move to the point of the box closest to it (every coordinate with ``w_i != 0`` as far
        as it can go); ``0`` where ``gap`` is ``0`` or ``w`` is.
    """
    xp = namespace(p)
    w = xp.where(xp.isnan(w), 0.0, w)
    direction = -xp.sign(gap)[:, None] * xp.sign(w)
    room = xp.where(direction > 0, upper - p, xp.where(direction < 0, p - lower, 0.0))
    room = xp.maximum(room, 0.0)
    scale = xp.abs(w) * xp.abs(direction)  # |w_i| where coordinate i can help, else 0
    moving = scale > 0
    cap = xp.where(moving, room / xp.where(moving, scale, 1.0), 0.0)
    order = xp.argsort(cap, axis=1, stable=True)
    caps = xp.take_along_axis(cap, order, axis=1)
    weights = xp.take_along_axis(scale * scale, order, axis=1)
    # before[k]: sum over the k smallest breakpoints of w^2 c (saturated below breakpoint k);
    # after[k]: sum of w^2 over the others (moving at the rate mu).
    before = _with_zero_first(xp.cumulative_sum(weights * caps, axis=1))
    after = _with_zero_last(_reversed(xp.cumulative_sum(_reversed(weights), axis=1)))
    count = p.shape[1]
    reach = before[:, 1:] + caps * after[:, 1:]  # the reach at each breakpoint
    needed = xp.abs(gap)
    short = xp.sum(xp.astype(reach < needed[:, None], _indexing(p)), axis=1)
    piece = xp.minimum(short, count)[:, None]
    fixed = xp.take_along_axis(before, piece, axis=1)[:, 0]
    slope = xp.take_along_axis(after, piece, axis=1)[:, 0]
    low = xp.take_along_axis(_with_zero_first(caps), piece, axis=1)[:, 0]
    high = xp.take_along_axis(_with_last(caps), piece, axis=1)[:, 0]
    exact = (needed - fixed) / xp.where(slope > 0, slope, 1.0)
    level = xp.where(slope > 0, xp.clip(exact, low, high), low)
    move = xp.minimum(level[:, None] * scale, room)
    reaches = short < count  # the hyperplane meets the box: else every coordinate goes all the way
    return direction * xp.where(reaches[:, None], move, room)


def _indexing(like: Array) -> object:
    """The library's default indexing dtype (``int32`` in JAX without 64-bit mode)."""
    xp = namespace(like)
    return xp.__array_namespace_info__().default_dtypes(device=device_of(like))["indexing"]


def _reversed(a: Array) -> Array:
    """``a`` with its columns in reverse order."""
    xp = namespace(a)
    count = a.shape[1]
    backwards = (count - 1) - xp.arange(count, device=device_of(a))
    return xp.take(a, backwards, axis=1)


def _with_zero_first(a: Array) -> Array:
    xp = namespace(a)
    return xp.concat([xp.zeros_like(a[:, :1]), a], axis=1)


def _with_zero_last(a: Array) -> Array:
    xp = namespace(a)
    return xp.concat([a, xp.zeros_like(a[:, :1])], axis=1)


def _with_last(a: Array) -> Array:
    """``a`` with its last column repeated once more (the end of the last piece)."""
    xp = namespace(a)
    return xp.concat([a, a[:, -1:]], axis=1)


_PROJECTIONS: dict[NormName, Callable[[Array, Array, Array, float, float], Array]] = {
    "linf": project_linf,
    "l2": project_l2,
}


def hyperplane_move(
    norm: Norm, p: Array, w: Array, gap: Array, lower: float, upper: float
) -> Array:
    """The smallest move in ``norm`` of each row of ``p`` onto its hyperplane within the
    box: [`project_linf`][signattack.core.hyperplane.project_linf] or
    [`project_l2`][signattack.core.hyperplane.project_l2], computed in at least ``float32`` and
    returned in ``p``'s dtype.

    Args:
        norm: The norm of the move.
        p: Points, ``(batch, n)``, inside ``[lower, upper]``.
        w: The hyperplanes' normals, ``(batch, n)``; NaN entries count as ``0`` (that
            coordinate does not move).
        gap: ``w . p - b`` per row, ``(batch,)``.
        lower: The box's lower limit.
        upper: The box's upper limit.

    Raises:
        ValueError: A norm without a hyperplane projection.
    """
    projection = _PROJECTIONS.get(norm.name)
    if projection is None:
        known = ", ".join(repr(name) for name in _PROJECTIONS)
        raise ValueError(f"norm must be one of {known} for FAB, got {norm.name!r}")
    xp = namespace(p)
    w = xp.where(xp.isnan(w), 0.0, w)
    box = (lower, upper)
    if p.shape[0] == 0 or p.shape[1] == 0:
        return xp.zeros_like(p)
    if xp.finfo(p.dtype).eps <= 2.0**-23:  # float32 or wider
        return projection(p, w, gap, *box)
    single = xp.float32
    move = projection(xp.astype(p, single), xp.astype(w, single), xp.astype(gap, single), *box)
    return xp.astype(move, p.dtype)
