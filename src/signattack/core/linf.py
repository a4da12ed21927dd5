"""The L-inf norm: the box-shaped ball of the signed-gradient attacks.

Under L-inf the ball around ``x`` intersected with the box ``[lower, upper]`` is itself a
box, ``[max(lower, x - eps), min(upper, x + eps)]`` (`
ball_box_limits`), so the projection is one clip, the steepest-ascent direction is the
sign of the gradient, a random point is uniform in the cube, and an integer perturbation
is held to ``floor(eps)`` per pixel.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from signattack._typing import Amount, Array, device_of, moved, namespace
from signattack.core.kernels import ball_box_limits, clip, signed_unit, within_linf_ball
from signattack.core.norms import (
    NormName,
    check_batched,
    check_ends,
    shaped_radius,
    widest_float,
)

__all__ = ["LINF", "Linf", "LinfFeasible"]


@dataclass(frozen=True)
class LinfFeasible:
    """The L-inf feasible set of one call: element-wise limits ``low <= v <= high``."""

    x: Array
    eps: Amount
    low: Array
    high: Array

    def project(self, v: Array) -> Array:
        return clip(v, self.low, self.high)

    def random_point(self, draws: Array) -> Array:
        xp = namespace(self.x)
        unit = moved(xp.asarray(draws, dtype=self.x.dtype), device_of(self.x))
        return clip(self.x + unit * self.eps, self.low, self.high)


@dataclass(frozen=True)
class Linf:
    """The L-inf norm, ``max_i |d_i|``. Use the singleton [`LINF`][signattack.core.linf.LINF]."""

    @property
    def name(self) -> NormName:
        return "linf"

    @property
    def title(self) -> str:
        return "L-inf"

    @property
    def robustbench(self) -> str:
        return "Linf"

    def distance(self, delta: Array) -> Array:
        check_batched(delta, "delta")
        xp = namespace(delta)
        wide = xp.abs(xp.astype(delta, widest_float(delta)))
        flat = xp.reshape(wide, (wide.shape[0], -1))
        if flat.shape[1] == 0:
            return xp.zeros((flat.shape[0],), dtype=flat.dtype, device=device_of(flat))
        return xp.max(flat, axis=1)

    def within(
        self, x_adv: Array, x: Array, eps: Amount, bounds: tuple[float, float] | None = None
    ) -> Array:
        return within_linf_ball(x_adv, x, eps, bounds)

    def feasible(self, x: Array, eps: Amount, lower: float, upper: float) -> LinfFeasible:
        check_batched(x, "x")
        check_ends(lower, upper)
        eps = shaped_radius(eps, x)
        low, high = ball_box_limits(x, eps, lower, upper)
        return LinfFeasible(x, eps, low, high)

    def direction(self, grad: Array, dtype: object) -> Array:
        return signed_unit(grad, dtype)

    def integer_radius(self, eps: Amount) -> Amount:
        if isinstance(eps, (int, float)):
            return float(math.floor(eps))
        return namespace(eps).floor(eps)

    def round_step(self, step: Array, radius: Amount) -> Array:
        xp = namespace(step)
        return xp.clip(xp.round(step), -radius, radius)


LINF = Linf()
"""The L-inf norm."""
