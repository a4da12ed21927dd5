"""APGD's update rule (Croce & Hein, 2020): momentum, and a step size that adapts itself.

See `signattack.attacks.apgd` for the algorithm; this module holds the rule that
[`iterate`][signattack.attacks.loop.iterate] runs, and the schedule of its checkpoints.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import KW_ONLY, dataclass
from typing import ClassVar

from signattack._typing import Array, device_of, namespace
from signattack.core.linf import LINF, LinfFeasible
from signattack.core.norms import Feasible, Norm
from signattack.core.rules import Evaluated, Start, required

__all__ = ["AutoSteps", "checkpoints"]

MOMENTUM = 0.75
"""``alpha`` of eq. 3: the weight of the new step against the previous one."""


def checkpoints(steps: int) -> tuple[int, ...]:
    """The iterations ``w_j = ceil(p_j * steps)``, ``j >= 1``, at which APGD checks its step size.

    ``p_0 = 0``, ``p_1 = 0.22`` and ``p_{j+1} = p_j + max(p_j - p_{j-1} - 0.03, 0.06)``,
    computed in exact hundredths; checkpoints that fall on the same iteration, or after the
    last step, are dropped. For 100 steps: 22, 41, 57, 70, 80, 87, 93, 99.
    """
    points: list[int] = []
    previous, current = 0, 22  # p_{j-1} and p_j, in hundredths
    while True:
        iteration = -(-current * steps // 100)  # ceil(p_j * steps), exactly
        if iteration >= steps:
            return tuple(points)
        if iteration > (points[-1] if points else 0):
            points.append(iteration)
        previous, current = current, current + max(current - previous - 3, 6)


@dataclass(frozen=True)
class _AutoState:
    """Per sample: APGD's iterate, its momentum, step size and the best points so far, and the
    feasible set it is projected onto (the sample's own ball and the box)."""

    feasible: Feasible
    x: Array
    previous: Array
    eta: Array
    best_x: Array
    best_grad: Array
    best: Array
    best_at_check: Array
    last: Array
    increases: Array
    reduced: Array
    fooled_x: Array
    fooled: Array


@dataclass(frozen=True)
class AutoSteps:
    """APGD's update rule (see the module docs) for [`iterate`][signattack.attacks.loop.iterate].

    The geometry is the norm's: the step follows ``norm.direction`` of the gradient (its sign under
    L-inf, ``g / ||g||_2`` under L2) and every point is projected onto ``feasible``, the eps-ball
    intersected with the box.

    Every per-sample array lives in the state (``per_sample``): the feasible set of each
    sample, from the start's limits under L-inf (``[low, high]``) and from the norm's
    ``feasible(x, eps, *bounds)`` under another norm; the initial step size is ``2 * eps``
    of the start's radius.

    Attributes:
        rho: The share of improving steps below which condition 1 halves the step.
        marks: The checkpoints, from [`checkpoints`][signattack.attacks.auto_steps.checkpoints].
        direction: ``+1`` to ascend the loss, ``-1`` to descend it (targeted).
        norm: The norm of the ball ([`LINF`][signattack.core.linf.LINF] by default).
        bounds: The box ``(lower, upper)``, for the feasible set of a norm other than L-inf
            (the L-inf set is the start's ``[low, high]``).

    Raises:
        ValueError: ``bounds`` are missing for a norm other than L-inf.
    """

    rho: float
    marks: tuple[int, ...]
    direction: float = 1.0
    _: KW_ONLY
    norm: Norm = LINF
    bounds: tuple[float, float] | None = None
    needs_gradient: ClassVar[bool] = True
    per_sample: ClassVar[bool] = True

    def __post_init__(self) -> None:
        if self.bounds is None and self.norm.name != "linf":
            raise ValueError(
                f"bounds must be the box (lower, upper) of the {self.norm.title} feasible set "
                "for a norm other than L-inf, got None"
            )

    def _feasible(self, start: Start) -> Feasible:
        """Each sample's feasible set: the start's limits under L-inf, the norm's set else."""
        if self.norm.name == "linf" or self.bounds is None:
            return LinfFeasible(start.x, start.eps, start.low, start.high)
        return self.norm.feasible(start.x, start.eps, *self.bounds)

    def start(self, start: Start) -> _AutoState:
        """Everything at the first point; the best objective so far is ``-inf``."""
        xp = namespace(start.begin)
        size = start.begin.shape[0]
        shape = (size,) + (1,) * (start.begin.ndim - 1)
        eta = xp.zeros(shape, dtype=start.begin.dtype) + 2 * start.eps
        lowest = xp.full((size,), -math.inf, dtype=start.begin.dtype)
        no = xp.zeros((size,), dtype=xp.bool)
        return _AutoState(
            feasible=self._feasible(start),
            x=start.begin,
            previous=start.begin,
            eta=_on(eta, start.begin),
            best_x=start.begin,
            best_grad=xp.zeros_like(start.begin),
            best=_on(lowest, start.begin),
            best_at_check=_on(lowest, start.begin),
            last=_on(lowest, start.begin),
            increases=_on(xp.zeros((size,), dtype=start.begin.dtype), start.begin),
            reduced=_on(no, start.begin),
            fooled_x=start.begin,
            fooled=_on(no, start.begin),
        )

    def point(self, state: _AutoState) -> Array:
        """The iterate."""
        return state.x

    def update(
        self, state: _AutoState, step: int, losses: Array, grad: Array | None, fooled: Array
    ) -> _AutoState:
        """Track the best and the fooling points, check the step size, and step."""
        grad = required(grad)
        xp = namespace(state.x)
        objective = self.direction * losses
        state = self._track(state, objective, grad, fooled)
        if step > 0:
            grew = xp.astype(objective > state.last, state.increases.dtype)
            state = dataclasses.replace(state, increases=state.increases + grew)
        state = dataclasses.replace(state, last=objective)
        if step == 0:
            state = dataclasses.replace(state, best_at_check=state.best)
        x, grad = state.x, grad
        if step in self.marks:
            state, x, grad = self._check(state, step, grad)
        alpha = 1.0 if step == 0 else MOMENTUM
        project = state.feasible.project
        z = project(x + state.eta * self.direction * self.norm.direction(grad, x.dtype))
        moved = project(x + alpha * (z - x) + (1 - alpha) * (x - state.previous))
        return dataclasses.replace(state, x=moved, previous=x)

    def finish(self, state: _AutoState, final: Evaluated | None) -> Array:
        """A fooling point where one was found, else the point of the highest objective."""
        if final is not None:
            state = self._track(
                state, self.direction * final.losses, state.best_grad, final.success
            )
        xp = namespace(state.x)
        shape = (-1,) + (1,) * (state.x.ndim - 1)
        return xp.where(xp.reshape(state.fooled, shape), state.fooled_x, state.best_x)

    def best_objective(self, state: _AutoState, final: Evaluated) -> Array:
        """The highest objective found, the final iterate included."""
        xp = namespace(state.best)
        return xp.maximum(state.best, self.direction * final.losses)

    def _track(self, state: _AutoState, objective: Array, grad: Array, fooled: Array) -> _AutoState:
        xp = namespace(state.x)
        shape = (-1,) + (1,) * (state.x.ndim - 1)
        better = objective > state.best
        first_fool = xp.logical_and(fooled, xp.logical_not(state.fooled))
        return dataclasses.replace(
            state,
            best=xp.where(better, objective, state.best),
            best_x=xp.where(xp.reshape(better, shape), state.x, state.best_x),
            best_grad=xp.where(xp.reshape(better, shape), grad, state.best_grad),
            fooled_x=xp.where(xp.reshape(first_fool, shape), state.x, state.fooled_x),
            fooled=xp.logical_or(state.fooled, fooled),
        )

    def _check(self, state: _AutoState, step: int, grad: Array) -> tuple[_AutoState, Array, Array]:
        """At checkpoint ``step``: halve the step and restart from the best point where
        condition 1 or 2 holds; returns the state and the point and gradient to step from."""
        xp = namespace(state.x)
        index = self.marks.index(step)
        window = step - (self.marks[index - 1] if index > 0 else 0)
        oscillating = state.increases < self.rho * window
        stalled = xp.logical_and(xp.logical_not(state.reduced), state.best <= state.best_at_check)
        halve = xp.logical_or(oscillating, stalled)
        shape = (-1,) + (1,) * (state.x.ndim - 1)
        wide = xp.reshape(halve, shape)
        state = dataclasses.replace(
            state,
            eta=xp.where(wide, state.eta / 2, state.eta),
            reduced=halve,
            best_at_check=state.best,
            increases=xp.zeros_like(state.increases),
        )
        return state, xp.where(wide, state.best_x, state.x), xp.where(wide, state.best_grad, grad)


def _on(array: Array, like: Array) -> Array:
    xp = namespace(like)
    return xp.asarray(array, device=device_of(like))
