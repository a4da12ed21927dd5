"""The L2 norm (to be written): see the module docstring of :mod:`signattack.core.norms`."""

from __future__ import annotations

from dataclasses import dataclass

from signattack._typing import Amount, Array
from signattack.core.norms import Feasible, NormName


@dataclass(frozen=True)
class Euclidean:
    """The L2 norm. Use the singleton :data:`L2`."""

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
        raise NotImplementedError

    def within(
        self, x_adv: Array, x: Array, eps: float, bounds: tuple[float, float] | None = None
    ) -> Array:
        raise NotImplementedError

    def feasible(self, x: Array, eps: Amount, lower: float, upper: float) -> Feasible:
        raise NotImplementedError

    def direction(self, grad: Array, dtype: object) -> Array:
        raise NotImplementedError

    def integer_radius(self, eps: Amount) -> Amount:
        return eps

    def round_step(self, step: Array, radius: Amount) -> Array:
        raise NotImplementedError


L2 = Euclidean()
"""The L2 norm."""
