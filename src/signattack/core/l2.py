"""The L2 norm: the round ball of the Euclidean attacks, cut by the box.

Under L2 the distance of a perturbation ``d`` is ``||d||_2 = sqrt(sum_i d_i^2)``, the
steepest-ascent direction of a gradient ``g`` is ``g / ||g||_2``, and the feasible set of a call is
the ball ``{p : ||p - x||_2 <= eps}`` intersected with the box ``[lower, upper]``. That set is no
box, so its projection is not a clip: with ``d = v - x`` the projection of ``v`` is

    p(t) = x + clip(t * d, lower - x, upper - x), t in (0, 1],

with ``t = 1`` where ``clip(v)`` lies in the ball, else the ``t`` for which ``||p(t) - x||_2 = eps``
(``t = 1 / (1 + lambda)``, ``lambda`` the multiplier of the ball). ``||p(t) - x||^2 = sum_i min(t
|d_i|, c_i)^2``, ``c_i`` the room to the box side ``d_i`` points at, is piecewise quadratic in ``t``
with breakpoints ``c_i / |d_i|``: the active set of the box, grown from below in a few
rounds, or one sort of the breakpoints and two cumulative sums, gives ``t`` exactly
(`signattack.core._l2_ratio`; docs: "The L2 ball and the box").

Every sum of squares runs in the library's widest float, on values scaled by their largest
magnitude so that nothing overflows or underflows; where the inputs are float32, float16 or
bfloat16, whose squared differences no float64 sum can overflow or underflow, on the values
themselves (`_squares_fit`). Every check ([`Euclidean.within`][signattack.core.l2.Euclidean.within],
`Euclidean.distance`, the projection's own check of what it returns) sums in one helper,
`_norms`, the same way for the same dtypes.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from fractions import Fraction

from signattack._typing import Amount, Array, device_of, moved, namespace
from signattack.core._l2_ratio import (
    _ball_ratio,
    _eager,
    _squared_ratio,
    _squares_fit,
    _xp,
)
from signattack.core.kernels import _integer_end, clip
from signattack.core.norms import (
    NormName,
    beyond,
    check_batched,
    check_ends,
    check_pair,
    check_radii,
    integer_pairs,
    shaped_radius,
    widest_float,
)

_CHECK_ULPS = 8
"""The projection's result is held ``8`` units in the last place (of the widest float)
inside the sphere as its own check sums, so that the check of
[`Euclidean.within`][signattack.core.l2.Euclidean.within]
passes whatever order a library sums a batch in."""


__all__ = ["L2", "Euclidean", "L2Feasible"]


def _rows(a: Array) -> Array:
    """``a`` as ``(batch, elements)``."""
    xp = namespace(a)
    return xp.reshape(a, (a.shape[0], math.prod(a.shape[1:])))


def _norms_finite(a: Array, plain: bool = False) -> Array:
    """Per row of the finite ``(batch, n)`` array ``a``, ``||a_row||_2`` as ``(batch, 1)``,
    summed on the row scaled by its largest magnitude (no overflow, no underflow); with
    ``plain`` (the caller knows `_squares_fit` holds) one unscaled sum of squares."""
    xp = _xp(a)
    if a.shape[1] == 0:
        return xp.zeros((a.shape[0], 1), dtype=a.dtype, device=device_of(a))
    if plain:
        return xp.sqrt(xp.sum(a * a, axis=1, keepdims=True))
    size = xp.abs(a)
    top = xp.max(size, axis=1, keepdims=True)
    scaled = size / (top + xp.astype(top <= 0, top.dtype))  # 1 for an all-zero row
    return xp.sqrt(xp.sum(scaled * scaled, axis=1, keepdims=True)) * top


def _norms(a: Array, plain: bool = False) -> Array:
    """`_norms_finite` for any ``(batch, n)`` float array: ``inf`` where a row holds an
    infinity, NaN where it holds a NaN."""
    xp = _xp(a)
    finite = xp.isfinite(a)
    norms = _norms_finite(xp.where(finite, a, 0.0), plain)
    if a.shape[1] == 0:
        return norms
    norms = xp.where(xp.any(xp.isinf(a), axis=1, keepdims=True), xp.inf, norms)
    return xp.where(xp.any(xp.isnan(a), axis=1, keepdims=True), math.nan, norms)


def _radius(eps: Amount, like: Array) -> Array:
    """``eps`` (a number, or one per sample shaped to broadcast over a sample) as a
    ``(batch or 1, 1)`` array of ``like``'s dtype and device."""
    xp = namespace(like)
    radius = xp.asarray(eps, dtype=like.dtype, device=device_of(like))
    if radius.ndim == 0:
        return xp.reshape(radius, (1, 1))
    return _rows(radius)[:, :1]


def _square_at_most(total: Array, radius: Array) -> Array:
    """``total <= radius**2`` decided exactly for an integer-valued ``total`` (exact in its
    float) and ``radius >= 0``: ``radius**2 = p + err`` exactly (Dekker's product on
    Veltkamp's split), and ``total - p`` is exact where it could be close to ``err``."""
    xp = _xp(total, radius)
    digits = round(-math.log2(float(xp.finfo(radius.dtype).eps))) + 1
    finite = xp.where(xp.isfinite(radius), radius, 0.0)
    spread = finite * (math.ldexp(1.0, math.ceil(digits / 2)) + 1.0)
    high = spread - (spread - finite)
    low = finite - high
    square = finite * finite
    err = ((high * high - square) + 2.0 * high * low) + low * low
    return xp.isinf(radius) | (total - square <= err)


@dataclass(frozen=True)
class L2Feasible:
    """The L2 feasible set of one call: the ball of radius ``eps`` around each sample of
    ``x`` intersected with the box, its ends rounded to ``x``'s dtype as the check rounds
    them. Arrays are ``(batch, elements)`` in the widest float."""

    x: Array
    eps: Amount
    lower: float
    upper: float
    center: Array
    radius: Array
    low: Array
    high: Array

    def __post_init__(self) -> None:
        # Everything made once per feasible set is made now, where the set is made: made on
        # a first call traced by `jax.jit`, it would keep the trace's values past the trace.
        _ = self.near, self._narrow_x, self._rooms, self._origin

    @functools.cached_property
    def near(self) -> tuple[Array, Array]:
        """``center - far`` and ``center + far``: how far below and above ``x`` a value is still
        taken as it is (made once per feasible set)."""
        xp = namespace(self.center)
        far = math.sqrt(float(xp.finfo(self.center.dtype).max)) / 4.0
        return self.center - far, self.center + far

    def project(self, v: Array) -> Array:
        """The Euclidean projection of ``v`` onto ball and box, in ``v``'s dtype, inside
        exactly as [`Euclidean.within`][signattack.core.l2.Euclidean.within] judges it (see the
        module docstring)."""
        xp = _xp(v)
        if math.prod(v.shape[1:]) == 0:
            return v
        wide, center, radius = self.center.dtype, self.center, self.radius
        unit = float(xp.finfo(wide).eps)
        eager = _eager(v)
        check = self._check
        plain = self._narrow(v.dtype)  # the check sums as `Euclidean.within` does
        first = self._narrow_answer(v) if eager and plain else None
        if first is None:
            first = self._land(self._point(v), v.dtype)
        moved_by = xp.astype(first, wide) - center
        reached = _norms_finite(moved_by, plain)
        if eager and bool(xp.all(reached <= check)):
            return xp.reshape(first, v.shape)
        # Where rounding left the first answer outside: the same direction, shortened by
        # the summations' rounding (every element landed no farther from x than its
        # step); where that fails, by the additions' too; where even that fails: x itself.
        summed = (2.0 * math.log2(center.shape[1] + 1.0) + 4 * _CHECK_ULPS) * unit
        added = 2.0 * unit * math.sqrt(center.shape[1]) * xp.max(xp.abs(center), axis=1)
        result = xp.astype(self._origin, v.dtype)
        for target in (radius * (1.0 - summed) - xp.reshape(added, (-1, 1)), check * (1 - summed)):
            target = xp.where(xp.isfinite(target) & (target > 0), target, 0.0)
            shrink = xp.minimum(target / xp.where(reached > 0, reached, 1.0), 1.0)
            step = moved_by * shrink
            shorter = self._land(clip(center + step, self.low, self.high), v.dtype, step)
            fits = _norms_finite(xp.astype(shorter, wide) - center, plain) <= check
            result = xp.where(fits, shorter, result)
        result = xp.where(reached <= check, first, result)
        return xp.reshape(result, v.shape)

    def _point(self, v: Array) -> Array:
        """The projection of ``v`` in the widest float, ``(batch, elements)``, for any ``v``:
        NaN elements taken as ``x``'s, values beyond `near` as there, every sum scaled."""
        xp = _xp(v)
        center, eager = self.center, _eager(v)
        flat = clip(xp.astype(_rows(v), center.dtype), *self.near)
        # the clip keeps NaN, and a row's sum of finite values this near x cannot overflow
        if not eager or bool(xp.any(xp.isnan(xp.sum(flat, axis=1)))):
            flat = xp.where(xp.isnan(flat), center, flat)
        clipped = clip(flat, self.low, self.high)
        delta = flat - center
        gap = clipped - center
        inside = _norms_finite(gap) <= self._check
        if eager and bool(xp.all(inside)):
            return clipped
        t = _ball_ratio(delta, gap, inside, self._goal)
        point = clip(center + t * delta, self.low, self.high)
        if not eager or bool(xp.any(inside)):
            point = xp.where(inside, clipped, point)
        return point

    def _narrow(self, dtype: object) -> bool:
        """Whether ``v`` of ``dtype`` takes `_narrow_answer`: ``x`` and ``v`` share a dtype
        whose squared differences, summed over a sample in the widest float, can neither
        overflow nor underflow (float32, float16 and bfloat16 against float64)."""
        return self.x.dtype == dtype and self._narrow_x

    @functools.cached_property
    def _narrow_x(self) -> bool:
        """`_squares_fit` for ``x``'s dtype, decided once per feasible set."""
        return _squares_fit(self.center, self.x.dtype)

    @functools.cached_property
    def _check(self) -> Array:
        """The radius `project` holds its answers within: ``8`` units in the last place
        inside the sphere, per sample."""
        unit = float(_xp(self.center).finfo(self.center.dtype).eps)
        return self.radius * (1.0 - _CHECK_ULPS * unit)

    @functools.cached_property
    def _goal(self) -> Array:
        """The radius the search aims at: twice the check's margin inside the sphere, so
        that the rounding of the point it finds stays within `_check`."""
        unit = float(_xp(self.center).finfo(self.center.dtype).eps)
        return self.radius * (1.0 - 2 * _CHECK_ULPS * unit)

    @functools.cached_property
    def _rooms(self) -> tuple[Array, Array, Array, Array]:
        """How far each element may move down and up, ``low - center`` and ``high - center``,
        and per sample the squared radii of the ball's check and of the search's goal
        (`project`'s margins), made once per feasible set."""
        low, high = self.low - self.center, self.high - self.center
        return low, high, self._check * self._check, self._goal * self._goal

    def _narrow_answer(self, v: Array) -> Array | None:
        """`project`'s first answer for eager ``v`` of a `_narrow` dtype, with plain sums of
        squares (`_narrow` says they are exact to rounding) and few array operations;
        ``None`` where ``v`` holds a NaN or an infinity, or the search did not settle: there
        the general `_point` answers."""
        xp = _xp(v)
        low, high, check, goal = self._rooms
        delta = xp.astype(_rows(v), self.center.dtype) - self.center
        step = clip(delta, low, high)  # an infinity clipped to the box's end: exact
        kept = step * step
        inside = xp.sum(kept, axis=1, keepdims=True) <= check  # a NaN is never inside
        if not bool(xp.all(inside)):
            squares = delta * delta
            total = xp.sum(squares, axis=1, keepdims=True)
            if not bool(xp.all(xp.isfinite(total))):
                return None
            ratio = _squared_ratio(squares, kept, total, xp.where(inside, math.inf, goal))
            if ratio is None:
                return None
            step = clip(xp.sqrt(ratio) * delta, low, high)
        return self._land(self.center + step, v.dtype, step)

    def _land(self, point: Array, dtype: object, step: Array | None = None) -> Array:
        """``point`` (wide, inside the box) in ``dtype``, every element whose rounding
        moved it farther from ``x`` moved one unit in the last place back towards ``x``.
        With ``step`` (``point - x`` before the addition's rounding: `_narrow_answer`, and
        `project`'s shortened answers), an element moved farther is one rounded past its
        step, and where ``point`` is already in ``dtype`` only those are moved back."""
        xp = _xp(point)
        if dtype == point.dtype:
            if step is None:
                return point
            # no rounding to undo, only the addition's: an element past its step goes back
            overshot = xp.abs(point - self.center) > xp.abs(step)
            return xp.where(overshot, xp.nextafter(point, self.center), point)
        landed = xp.astype(point, dtype)
        back = xp.astype(landed, point.dtype)
        if step is not None:
            overshot = (back - point) * step > 0.0
        else:
            center = self.center
            overshot = ((point >= center) & (back > point)) | ((point <= center) & (back < point))
        origin = self._origin if self.x.dtype == dtype else xp.astype(self._origin, dtype)
        return xp.where(overshot, xp.nextafter(landed, origin), landed)

    @functools.cached_property
    def _origin(self) -> Array:
        """``x`` as ``(batch, elements)`` in its own dtype."""
        return _rows(self.x)

    def random_point(self, draws: Array) -> Array:
        """AutoAttack's L2 start: ``x + eps * g / ||g||_2`` with ``g`` isotropic Gaussian,
        clipped to the box and projected. ``g`` comes from the uniform ``draws`` by
        Box-Muller: with ``q = (1 - w) / 2`` in ``(0, 1]`` from the first half of a
        sample's draws and ``a = (w' + 1) / 2`` from the second, ``sqrt(-2 log q)
        cos(2 pi a)`` and ``sqrt(-2 log q) sin(2 pi a)``; an odd last element splits its own
        draw's bits into two uniforms (the high half give ``q``, the low half ``a``: 26 bits each
        in float64),
        independent of the others. An infinite ``eps`` reaches the box's far
        corner in ``g``'s direction (``x`` itself where the box has no ends)."""
        xp = _xp(self.x)
        wide, center = self.center.dtype, self.center
        size = center.shape[1]
        if size == 0:
            return self.x
        uniform = moved(xp.asarray(draws, dtype=wide), device_of(self.x))
        uniform = xp.reshape(uniform, center.shape)
        half = size // 2
        length = xp.sqrt(-2.0 * xp.log((1.0 - uniform) / 2.0))
        angle = math.tau * (uniform + 1.0) / 2.0
        parts = [
            length[:, :half] * xp.cos(angle[:, half : 2 * half]),
            length[:, :half] * xp.sin(angle[:, half : 2 * half]),
        ]
        if size % 2:  # the last draw split into two independent uniforms of half its bits
            scale = 2.0 ** ((1 - round(math.log2(float(xp.finfo(wide).eps)))) // 2)
            last = (uniform[:, size - 1 :] + 1.0) / 2.0 * scale
            high = xp.floor(last)
            odd_length = xp.sqrt(-2.0 * xp.log(1.0 - high / scale))
            parts.append(odd_length * xp.cos(math.tau * (last - high)))
        gauss = xp.concat(parts, axis=1)
        norms = _norms_finite(gauss)
        direction = gauss / xp.where(norms > 0, norms, 1.0)
        span = self.upper - self.lower
        corner = math.sqrt(size) * span if math.isfinite(span) else 0.0
        radius = xp.where(xp.isfinite(self.radius), self.radius, corner)
        start = clip(center + radius * direction, self.low, self.high)
        return self.project(xp.reshape(xp.astype(start, self.x.dtype), self.x.shape))


@dataclass(frozen=True)
class Euclidean:
    """The L2 norm, ``||d||_2 = sqrt(sum_i d_i^2)``. Use the singleton
    [`L2`][signattack.core.l2.L2]."""

    @property
    def name(self) -> NormName:
        return "l2"

    @property
    def title(self) -> str:
        return "L2"

    @property
    def robustbench(self) -> str:
        return "L2"

    def distance(self, delta: Array) -> Array:
        check_batched(delta, "delta")
        xp = namespace(delta)
        flat = xp.astype(_rows(delta), widest_float(delta))
        norms = _norms(flat, _squares_fit(flat, delta.dtype))
        return xp.reshape(norms, (delta.shape[0],))

    def within(
        self, x_adv: Array, x: Array, eps: Amount, bounds: tuple[float, float] | None = None
    ) -> Array:
        """Floats: ``||wide(x_adv) - wide(x)||_2 <= eps`` summed as the projection checks
        it, box ends rounded to the inputs' dtype. Integers: the sum of squared integer
        differences ``<= eps**2`` exactly, no difference wrapping (where the sum could
        overflow the widest integer, it runs in the widest float), box narrowed to the
        integers inside it. NaN fails; ``eps = inf`` admits any point (inside the box).
        ``eps``: a number ``>= 0`` or one per sample, shape ``(batch,)``."""
        check_pair(x_adv, x)
        radii = check_radii(eps, x.shape[0])
        xp = namespace(x_adv, x)
        where = device_of(x)
        if xp.isdtype(x.dtype, "integral"):
            inside = _within_integers(x_adv, x, radii)
            if bounds is not None:
                limits = xp.iinfo(x.dtype)
                least, most = int(limits.min), int(limits.max)
                lower = _integer_end(bounds[0], math.ceil, least, most)
                upper = _integer_end(bounds[1], math.floor, least, most)
                values = _rows(x_adv)
                inside = inside & xp.all((values >= lower) & (values <= upper), axis=1)
            return inside
        wide = widest_float(x)
        gap = xp.astype(_rows(x_adv), wide) - xp.astype(_rows(x), wide)
        radius = xp.asarray(radii, dtype=wide, device=where)
        plain = x_adv.dtype == x.dtype and _squares_fit(gap, x.dtype)
        inside = xp.reshape(_norms(gap, plain), (x.shape[0],)) <= radius
        if bounds is not None:
            lower_end = xp.asarray(bounds[0], dtype=x.dtype, device=where)
            upper_end = xp.asarray(bounds[1], dtype=x.dtype, device=where)
            values = _rows(x_adv)
            inside = inside & xp.all((values >= lower_end) & (values <= upper_end), axis=1)
        return inside

    def feasible(self, x: Array, eps: Amount, lower: float, upper: float) -> L2Feasible:
        check_batched(x, "x")
        check_ends(lower, upper)
        eps = shaped_radius(eps, x)
        xp = namespace(x)
        wide = widest_float(x)
        where = device_of(x)
        center = xp.astype(_rows(x), wide)
        ends = [xp.asarray(end, dtype=x.dtype, device=where) for end in (lower, upper)]
        low, high = (xp.reshape(xp.astype(end, wide), (1, 1)) for end in ends)
        return L2Feasible(x, eps, lower, upper, center, _radius(eps, center), low, high)

    def direction(self, grad: Array, dtype: object) -> Array:
        """``grad / ||grad||_2`` per sample, the norm in the widest float; NaN entries count
        as ``0``; where a sample holds infinities, the unit vector of their signs."""
        xp = _xp(grad)
        if grad.ndim == 0 or math.prod(grad.shape[1:]) == 0:
            return xp.astype(grad, dtype)
        flat = xp.astype(_rows(grad), widest_float(grad))
        if _eager(grad) and _squares_fit(flat, grad.dtype):  # no scaling needed, one sum
            total = xp.sum(flat * flat, axis=1, keepdims=True)
            if bool(xp.all(xp.isfinite(total))):
                unit = flat / (xp.sqrt(total) + xp.astype(total <= 0, total.dtype))
                return xp.reshape(xp.astype(unit, dtype), grad.shape)
        flat = xp.where(xp.isnan(flat), 0.0, flat)
        infinite = xp.isinf(flat)
        flat = xp.where(
            xp.any(infinite, axis=1, keepdims=True), xp.where(infinite, xp.sign(flat), 0.0), flat
        )
        norms = _norms_finite(flat)
        unit = flat / xp.where(norms > 0, norms, 1.0)
        return xp.reshape(xp.astype(unit, dtype), grad.shape)

    def integer_radius(self, eps: Amount) -> Amount:
        return eps

    def round_step(self, step: Array, radius: Amount) -> Array:
        """Nearest integers per sample where their norm stays ``<= radius`` (decided
        exactly); elsewhere the elements that rounding made larger are truncated towards
        zero, so every ``|result_i| <= |step_i|``; zero where even that is outside (a
        ``step`` outside the ball by its own rounding)."""
        xp = _xp(step)
        nearest = xp.round(step)
        if math.prod(step.shape[1:]) == 0:
            return nearest
        grown = xp.abs(nearest) > xp.abs(step)
        fits = self._fits(nearest, radius)
        shorter = xp.where(fits | ~grown, nearest, xp.trunc(step))
        # a step that was itself outside (rounding of x_adv - x) leaves no integer inside
        # but zero for certain: that sample keeps its clean input
        return xp.where(self._fits(shorter, radius), shorter, 0.0)

    @staticmethod
    def _fits(integers: Array, radius: Amount) -> Array:
        """Per sample, ``sum_i integers_i^2 <= radius^2`` exactly, shaped to broadcast."""
        xp = namespace(integers)
        flat = xp.astype(_rows(integers), widest_float(integers))
        total = xp.sum(flat * flat, axis=1, keepdims=True)
        fits = _square_at_most(total, xp.abs(_radius(radius, flat)))
        return xp.reshape(fits, (integers.shape[0],) + (1,) * (integers.ndim - 1))


def _within_integers(x_adv: Array, x: Array, radii: list[float]) -> Array:
    """``sum_i (x_adv_i - x_i)^2 <= eps^2`` per row, exactly, in the widest integer dtype:
    differences are capped at ``floor(eps) + 1`` (already outside) without computing one
    that could wrap (`beyond`), so the sum overflows only where ``(floor(eps) + 1)^2`` times
    the row length does not fit; there the sum runs in the widest float, on differences
    taken in floats."""
    xp = namespace(x_adv, x)
    where = device_of(x)
    larger, smaller, top = integer_pairs(x_adv, x)
    caps = [top if math.isinf(r) else min(math.floor(r) + 1, top) for r in radii]
    every = xp.asarray([math.isinf(r) for r in radii], dtype=xp.bool, device=where)
    if max(caps, default=0) ** 2 * max(larger.shape[1], 1) <= top:
        cap = xp.reshape(xp.asarray(caps, dtype=larger.dtype, device=where), (-1, 1))
        far = beyond(larger, smaller, cap, top)
        gap = xp.where(far, cap, larger - xp.where(far, larger, smaller))
        limits = [math.floor(Fraction(r) ** 2) if math.isfinite(r) else 0 for r in radii]
        limit = xp.asarray(limits, dtype=larger.dtype, device=where)
        return every | (xp.sum(gap * gap, axis=1) <= limit)
    wide = widest_float(x)
    real = xp.astype(larger, wide) - xp.astype(smaller, wide)
    radius = xp.asarray(radii, dtype=wide, device=where)
    return every | (xp.reshape(_norms(real), (-1,)) <= radius)


L2 = Euclidean()
"""The L2 norm."""
