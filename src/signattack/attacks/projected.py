"""The run that the projected-gradient attacks share: IteratedSign (L-inf) and L2PGD (L2).

Each takes ``steps`` gradient steps in its norm's steepest-ascent direction and projects
onto the feasible set of the call (the ball around each sample intersected with the box),
from the clean input or a random point of that set. They differ in the rule they run
(`ProjectedGradient._rule`) and in nothing else: the settings, their checks, the
step size, per-sample radii, integer images and the result are the same code.
"""

from __future__ import annotations

import dataclasses
import math
from abc import abstractmethod
from dataclasses import dataclass
from typing import ClassVar, TypeGuard

import numpy as np

from signattack._typing import (
    Amount,
    Array,
    ArrayT,
    Model,
    device_of,
    is_array,
    namespace,
    returned,
)
from signattack.attacks.base import AttackResult, BallAttack, attack_result, store_checked
from signattack.attacks.loop import LoopResult, iterate, random_start
from signattack.backends.batch import Batch, Passes, open_threat
from signattack.core.linf import LINF, LinfFeasible
from signattack.core.losses import LossFunction, LossName
from signattack.core.norms import Feasible
from signattack.core.rules import Evaluated, Start, UpdateRule
from signattack.core.validation import check_real, check_rng, generator, warn_wide_eps

__all__ = ["Iterate", "ProjectedGradient"]


def _same_library(value: object, xp: object) -> TypeGuard[Array]:
    """Whether ``value`` is an array of the array library ``xp``."""
    return is_array(value) and namespace(value) is xp


@dataclass(frozen=True)
class Iterate:
    """The state of a projected-gradient rule, per sample: the iterate and what the step and
    the projection read of the sample (each array with the batch first; a float is shared).

    Attributes:
        point: The iterate, where the model is evaluated next.
        centre: The clean input, the centre of the ball.
        low: Lower limits of the L-inf hull of the feasible set (the ball and the box).
        high: Upper limits.
        eps: The radius, a float or an array ``(batch, 1, ...)``.
        step: The signed step, a float or an array ``(batch, 1, ...)``.
    """

    point: Array
    centre: Array
    low: Array
    high: Array
    eps: Amount
    step: Amount

    def moved(self, point: Array) -> Iterate:
        """The same sample data at a new iterate."""
        return Iterate(point, self.centre, self.low, self.high, self.eps, self.step)


class PointIsState:
    """The part every projected-gradient rule shares: the state is the iterate with the
    sample's own data (an `Iterate`, ``per_sample``: the loop may take it down to the samples
    still attacked), the first iterate is the start's and the last one is returned.
    Memoryless: the next iterate depends on the iterate and its gradient alone (the rest of
    the state never changes), so with early stopping a sample whose path has become periodic
    leaves the batch (see [`iterate`][signattack.attacks.iterate])."""

    traceable: ClassVar[bool] = True
    needs_gradient: ClassVar[bool] = True
    memoryless: ClassVar[bool] = True
    per_sample: ClassVar[bool] = True

    def start(self, start: Start) -> Iterate:
        """The first iterate, with the start's limits, radius and step."""
        return Iterate(start.begin, start.x, start.low, start.high, start.eps, start.step)

    def point(self, state: Iterate) -> Array:
        """The iterate."""
        return state.point

    def finish(self, state: Iterate, final: Evaluated | None) -> Array:
        """The last iterate."""
        return state.point


class ProjectedGradient(BallAttack):
    """The shared part of the projected-gradient attacks. A subclass is a frozen dataclass
    with the fields below (and those of [`BallAttack`][signattack.attacks.BallAttack]); it gives
    its update rule (`_rule`) and calls `_check_steps` in ``__post_init__``."""

    steps: int
    step_size: float | None
    relative_step: float | None
    random_start: bool
    targeted: bool
    loss: LossName | LossFunction
    early_stop: bool
    eot: int

    def _check_steps(self) -> None:
        """Check every setting: the shared ones, the flags, the counts and the step."""
        flags = ("random_start", "targeted", "early_stop")
        self._check(self.loss, *flags, counts=("steps", "eot"))
        if self.step_size is not None:
            store_checked(self, "step_size", check_real("step_size", self.step_size))
        if self.relative_step is not None:
            store_checked(self, "relative_step", check_real("relative_step", self.relative_step))
            if self.step_size is not None:
                raise ValueError(
                    "give step_size or relative_step, not both: got step_size="
                    f"{self.step_size!r} and relative_step={self.relative_step!r}"
                )

    @abstractmethod
    def _rule(
        self, batch: Batch, feasible: Feasible, eps: Amount, step: Amount
    ) -> UpdateRule[Iterate]:
        """The update rule of one call on ``batch``: steps of signed size ``step`` from the
        iterate, projected onto ``feasible`` (the ball of radius ``eps`` around
        ``batch.x`` intersected with ``batch.bounds``). Its fields are shared by every
        sample; what differs per sample comes to its state from the `Start`."""

    @property
    def resolved_step_size(self) -> float:
        """The step size in use: ``step_size``, ``relative_step * eps``, or
        ``2.5 * eps / steps`` when neither is given (a run with ``eps`` past the box's
        diameter steps as the diameter does: see
        [`Batch.clamped`][signattack.attacks.Batch.clamped])."""
        if self.step_size is not None:
            return float(self.step_size)
        return self._step_ratio * self.eps

    @property
    def _step_ratio(self) -> float:
        """The step as a multiple of the radius, when no fixed ``step_size`` is given."""
        if self.relative_step is not None:
            return float(self.relative_step)
        return 2.5 / self.steps

    def __call__(
        self,
        model: Model[ArrayT],
        x: ArrayT,
        y: ArrayT,
        *,
        rng: np.random.Generator | None = None,
        eps: ArrayT | None = None,
    ) -> ArrayT:
        """The adversarial batch: ``steps`` forward and input-gradient passes, nothing more.

        Args:
            model: ``torch.nn.Module`` or callable on tensors returning logits
                ``(batch, classes)``; or a [`NumpyModel`][signattack.backends.NumpyModel].
            x: Inputs ``(batch, ...)`` inside ``bounds``; float or integer dtype.
            y: Integer labels ``(batch,)``; target labels when ``targeted``.
            rng: Generator for the random start, overriding ``seed``.
            eps: Per-sample radii ``(batch,)`` overriding ``self.eps`` (a step that is not a
                fixed ``step_size`` then scales per sample too); used by the evaluation's
                bisection.

        Returns:
            The adversarial batch, with ``x``'s type, shape, dtype and device. Integer inputs
            come back as integers, still inside the ball and the box.

        Raises:
            TypeError: ``x``, ``y`` or the model's output has the wrong type or dtype.
            ValueError: ``x`` is not finite or outside ``bounds``, labels do not match the
                batch or the model's classes, per-sample ``eps`` is malformed, or model and
                ``x`` are on different devices.
        """
        outcome, _ = self._attack(model, x, y, rng=rng, radius=eps, record=False)
        return returned(outcome.x_adv, x)

    def run(
        self,
        model: Model[ArrayT],
        x: ArrayT,
        y: ArrayT,
        *,
        rng: np.random.Generator | None = None,
        eps: ArrayT | None = None,
    ) -> AttackResult[ArrayT]:
        """Attack and report: the batch, its loss trace, predictions and success mask.

        Costs one forward pass more than `__call__`, at the final iterate. Arguments
        and errors are those of `__call__`.

        Returns:
            An [`AttackResult`][signattack.AttackResult] whose ``losses`` have shape
            ``(steps + 1, batch)``. With ``early_stop``, a sample's loss stays, after it is
            first misclassified, at its value there.
        """
        outcome, passes = self._attack(model, x, y, rng=rng, radius=eps, record=True)
        if outcome.final is None:  # pragma: no cover - record=True evaluates the final point
            raise RuntimeError("the attack loop did not evaluate the final iterate")
        losses = namespace(outcome.x_adv).stack(outcome.rows)
        final = outcome.final
        return attack_result(
            passes,
            returned(outcome.x_adv, x),
            returned(losses, x),
            returned(final.predictions, x),
            returned(final.success, x),
        )

    def run_per_sample(
        self, model: Model[ArrayT], x: ArrayT, y: ArrayT, eps: ArrayT
    ) -> AttackResult[ArrayT]:
        """`run` with radius ``eps[i]`` for sample ``i`` (``eps`` of shape
        ``(batch,)``); a step that is not a fixed ``step_size`` scales per sample too."""
        return self.run(model, x, y, eps=eps)

    def _attack(
        self,
        model: object,
        x: object,
        y: object,
        *,
        rng: np.random.Generator | None,
        radius: object | None,
        record: bool,
    ) -> tuple[LoopResult[Iterate], Passes]:
        """The attack, with the caller's dtype restored in ``x_adv``, and the sample-passes
        the model saw; with ``record``, the final iterate is evaluated too (one forward pass
        more)."""
        check_rng(rng)
        draws = generator(rng, self.seed) if self.random_start else None
        with open_threat(
            model, x, y, self.threat, eps=self.eps if radius is None else None, draws=self.eot
        ) as batch:
            eps, step = self._radius_and_step(batch, radius)
            feasible = batch.norm.feasible(batch.x, eps, *batch.bounds)
            # Element-wise limits that hold the set: the L-inf ball's, which holds every
            # ball of the same radius in a norm no smaller than L-inf's (L2 among them).
            hull = (
                feasible
                if isinstance(feasible, LinfFeasible)
                else LINF.feasible(batch.x, eps, *batch.bounds)
            )
            begin = batch.x
            if draws is not None:
                begin = random_start(feasible, batch.x, batch.streams(draws), ("random start",))
            outcome = iterate(
                batch,
                self._rule(batch, feasible, eps, step),
                Start(batch.x, hull.low, hull.high, eps, step, begin),
                self.steps,
                targeted=self.targeted,
                early_stop=self.early_stop,
                final=batch.rounded(eps) if record else None,
            )
        return dataclasses.replace(outcome, x_adv=batch.to_input(outcome.x_adv, eps)), batch.passes

    def _radius_and_step(self, batch: Batch, radius: object | None) -> tuple[Amount, Amount]:
        """The radius and signed step: floats, or per-sample arrays shaped to broadcast.

        For integer inputs the radius is the one the norm holds integer perturbations to
        (``floor(eps)`` under L-inf: see [`Batch.radius`][signattack.attacks.Batch.radius]); the
        default step size still
        scales with ``eps`` itself.
        """
        direction = -1.0 if self.targeted else 1.0
        x0 = batch.x
        if radius is None:
            if self.step_size is not None:
                return batch.radius(self.eps), direction * float(self.step_size)
            # a radius past the box's diameter steps as the diameter does: the same ball and box
            return batch.radius(self.eps), direction * self._step_ratio * batch.clamped(self.eps)
        xp = namespace(x0)
        if not _same_library(radius, xp):
            raise TypeError(
                f"eps (per sample) must be an array of the same library as x, of shape "
                f"({x0.shape[0]},), got {type(radius).__name__} {radius!r}"
            )
        if tuple(radius.shape) != (x0.shape[0],):
            raise ValueError(
                f"eps (per sample) must have shape ({x0.shape[0]},) to match x, "
                f"got {tuple(radius.shape)}"
            )
        if not bool(xp.all(xp.isfinite(radius) & (radius >= 0))):
            raise ValueError("eps (per sample) must hold finite radii >= 0")
        size = math.prod(int(side) for side in x0.shape[1:])
        warn_wide_eps(float(xp.max(radius)), batch.bounds, norm=batch.norm, size=size)
        shape = (x0.shape[0],) + (1,) * (x0.ndim - 1)

        def per_sample(values: Amount) -> Array:
            return xp.reshape(xp.asarray(values, dtype=x0.dtype, device=device_of(x0)), shape)

        # floor() before the cast: 7.999999999999999 must not round to 8 in float32.
        eps = per_sample(batch.radius(radius))
        wide = batch.clamped(radius)  # a radius past the box's diameter is the diameter
        step = self._step_ratio * per_sample(wide) if self.step_size is None else self.step_size
        return eps, direction * step
