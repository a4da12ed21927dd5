r"""Auto-PGD under L-inf (Croce & Hein, ICML 2020): :class:`APGD` and :class:`APGDT`.

APGD is a signed-gradient attack with momentum whose step size adapts itself, so that no
step size has to be tuned and a saturated loss is not mistaken for robustness. With the
iterates ``x^(k)``, the objective ``f`` and the projection ``P`` onto the eps-ball
intersected with the box (eq. 2-3 of the paper):

    z^(k+1) = P(x^(k) + eta^(k) * sign(grad f(x^(k))))
    x^(k+1) = P(x^(k) + alpha * (z^(k+1) - x^(k)) + (1 - alpha) * (x^(k) - x^(k-1)))

with ``alpha = 0.75`` (``alpha = 1`` at the first step) and ``eta^(0) = 2 * eps``. At the
checkpoints ``w_j = ceil(p_j * N)`` of ``N`` steps, ``p_0 = 0``, ``p_1 = 0.22``,
``p_{j+1} = p_j + max(p_j - p_{j-1} - 0.03, 0.06)`` (eq. 4), the step size is halved, and the
iterate restarts from the best point found so far ``x_max``, for every sample where

1. the objective increased in fewer than ``rho * (w_j - w_{j-1})`` of the steps since the
   last checkpoint (eq. 5, ``rho = 0.75``), or
2. the step size was not halved at the last checkpoint and the best objective
   ``f_max`` has not improved since.

The attack returns, per sample, a point where the model was fooled if it found one, else
``x_max``. Restarts run again, from random points of the ball, on the samples still robust.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from dataclasses import KW_ONLY, dataclass
from typing import Any

import numpy as np
from array_api_compat import array_namespace, device

from signattack._typing import Array, ArrayT
from signattack.attacks.base import AttackResult
from signattack.attacks.loop import Final, Start, iterate, random_start
from signattack.backends.batch import Batch, open_threat
from signattack.core.kernels import ball_box_limits, clip, signed_unit
from signattack.core.losses import TARGETED_DLR, LossFunction, LossName
from signattack.core.threat import PIXEL_BOUNDS, ModelMode, ThreatModel
from signattack.core.validation import (
    Bounds,
    check_real,
    check_rng,
    check_seed,
    check_steps,
)

__all__ = ["APGD", "APGDT", "AutoSteps", "checkpoints"]

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
    """Per sample: APGD's iterate, its momentum, step size and the best points so far."""

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
    """APGD's update rule (see the module docs) for :func:`~signattack.attacks.loop.iterate`.

    Attributes:
        low: Lower limits of the feasible set.
        high: Upper limits.
        eps: The radius, for the initial step size ``2 * eps``.
        rho: The share of improving steps below which condition 1 halves the step.
        marks: The checkpoints, from :func:`checkpoints`.
        direction: ``+1`` to ascend the loss, ``-1`` to descend it (targeted).
    """

    low: Array
    high: Array
    eps: Array
    rho: float
    marks: tuple[int, ...]
    direction: float = 1.0

    def start(self, start: Start) -> _AutoState:
        """Everything at the first point; the best objective so far is ``-inf``."""
        xp = array_namespace(start.begin)
        size = start.begin.shape[0]
        shape = (size,) + (1,) * (start.begin.ndim - 1)
        eta = xp.zeros(shape, dtype=start.begin.dtype) + 2 * self.eps
        lowest = xp.full((size,), -math.inf, dtype=start.begin.dtype)
        no = xp.zeros((size,), dtype=xp.bool)
        return _AutoState(
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
        self, state: _AutoState, step: int, losses: Array, grad: Array, fooled: Array
    ) -> _AutoState:
        """Track the best and the fooling points, check the step size, and step."""
        xp = array_namespace(state.x)
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
        z = clip(x + state.eta * self.direction * signed_unit(grad, x.dtype), self.low, self.high)
        moved = clip(x + alpha * (z - x) + (1 - alpha) * (x - state.previous), self.low, self.high)
        return dataclasses.replace(state, x=moved, previous=x)

    def finish(self, state: _AutoState, final: Final | None) -> Array:
        """A fooling point where one was found, else the point of the highest objective."""
        if final is not None:
            state = self._track(
                state, self.direction * final.losses, state.best_grad, final.success
            )
        xp = array_namespace(state.x)
        shape = (-1,) + (1,) * (state.x.ndim - 1)
        return xp.where(xp.reshape(state.fooled, shape), state.fooled_x, state.best_x)

    def best_objective(self, state: _AutoState, final: Final) -> Array:
        """The highest objective found, the final iterate included."""
        xp = array_namespace(state.best)
        return xp.maximum(state.best, self.direction * final.losses)

    def _track(self, state: _AutoState, objective: Array, grad: Array, fooled: Array) -> _AutoState:
        xp = array_namespace(state.x)
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
        xp = array_namespace(state.x)
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
    xp = array_namespace(like)
    return xp.asarray(array, device=device(like))


def _batch_shape(like: Array) -> tuple[int, ...]:
    return (-1,) + (1,) * (len(like.shape) - 1)


@dataclass(frozen=True)
class _Runs:
    """Per sample, the best result of the runs so far over the whole batch.

    Attributes:
        x: The chosen point (floating).
        trace: The loss trace of the run the point came from, ``(steps + 1, batch)``.
        fooled: Whether the model was fooled.
        best: The highest objective the chosen run reached.
    """

    x: Array
    trace: Array
    fooled: Array
    best: Array

    @classmethod
    def clean(cls, batch: Batch, losses: Array, fooled: Array, steps: int) -> _Runs:
        """Before any run: the clean point, fooled where the model already errs."""
        xp = array_namespace(batch.x)
        trace = xp.broadcast_to(losses[None, :], (steps + 1, losses.shape[0]))
        lowest = _on(xp.full(losses.shape, -math.inf, dtype=losses.dtype), losses)
        return cls(batch.x, xp.asarray(trace, copy=True), fooled, lowest)

    def fold(self, index: Array, x: Array, trace: Array, fooled: Array, best: Array) -> _Runs:
        """Take one run on the samples ``index``: a sample takes its result where the run
        fooled the model, or, neither fooling it, reached a higher objective."""
        xp = array_namespace(x)
        was_fooled, was_best = self.fooled[index], self.best[index]
        take = xp.logical_and(xp.logical_not(was_fooled), xp.logical_or(fooled, best > was_best))
        merged = _Runs(
            *(xp.asarray(a, copy=True) for a in (self.x, self.trace, self.fooled, self.best))
        )
        merged.x[index] = xp.where(xp.reshape(take, _batch_shape(x)), x, self.x[index])
        merged.trace[:, index] = xp.where(take[None, :], trace, self.trace[:, index])
        merged.fooled[index] = xp.logical_or(was_fooled, fooled)
        merged.best[index] = xp.where(take, best, was_best)
        return merged


def _sub_batch(batch: Batch, index: Array) -> Batch:
    return dataclasses.replace(
        batch, x=batch.x[index], labels=batch.labels[index], original=batch.original[index]
    )


@dataclass(frozen=True)
class _Common:
    """Settings and validation shared by :class:`APGD` and :class:`APGDT`."""

    @property
    def threat(self) -> ThreatModel:
        """The box, the loss and the model's mode."""
        raise NotImplementedError

    def _check_common(self) -> None:
        attack: Any = self
        _keep_float(attack, "eps", check_real("eps", attack.eps))
        object.__setattr__(attack, "steps", check_steps(attack.steps))
        object.__setattr__(attack, "restarts", check_steps(attack.restarts, "restarts"))
        rho = check_real("rho", attack.rho)
        if not 0 < rho <= 1:
            raise ValueError(f"rho must lie in (0, 1], got {attack.rho!r}")
        object.__setattr__(attack, "bounds", attack.threat.box)
        check_seed(attack.seed)
        if not isinstance(attack.early_stop, bool):
            raise TypeError(f"early_stop must be a bool, got {type(attack.early_stop).__name__}")


def _keep_float(attack: object, name: str, checked: float) -> None:
    if type(getattr(attack, name)) not in (int, float):
        object.__setattr__(attack, name, checked)


def _run_apgd(
    batch: Batch,
    runs: _Runs,
    *,
    eps: float,
    steps: int,
    rho: float,
    restarts: int,
    generator: np.random.Generator,
    early_stop: bool,
    targeted: bool = False,
    loss_labels: Array | None = None,
) -> _Runs:
    """APGD with restarts, each on the samples of ``batch`` that ``runs`` has not fooled."""
    xp = array_namespace(batch.x)
    radius = batch.radius(eps)
    low, high = ball_box_limits(batch.x, radius, *batch.bounds)
    marks = checkpoints(steps)
    for _ in range(restarts):
        index = xp.nonzero(xp.logical_not(runs.fooled))[0]
        if index.shape[0] == 0:
            break
        part = _sub_batch(batch, index)
        part_low, part_high = low[index], high[index]
        part_radius = radius if isinstance(radius, float) else radius[index]
        begin = random_start(part.x, part_radius, part_low, part_high, generator, None)
        rule = AutoSteps(part_low, part_high, part_radius, rho, marks, -1.0 if targeted else 1.0)
        outcome = iterate(
            part,
            rule,
            Start(part.x, part_low, part_high, part_radius, 2 * part_radius, begin),
            steps,
            targeted=targeted,
            loss_labels=None if loss_labels is None else loss_labels[index],
            early_stop=early_stop,
            final=_same,
        )
        at_end = outcome.final
        if at_end is None:  # pragma: no cover - final=_same always evaluates
            raise RuntimeError("the attack loop did not evaluate the final iterate")
        fooled = xp.logical_or(outcome.state.fooled, at_end.success)
        best = rule.best_objective(outcome.state, at_end)
        runs = runs.fold(index, outcome.x_adv, xp.stack(outcome.rows), fooled, best)
    return runs


def _same(x: Array) -> Array:
    return x


def _result(batch: Batch, runs: _Runs, eps: float, targeted: bool) -> AttackResult[Any]:
    """The chosen points in the caller's dtype, evaluated once more as the caller gets them."""
    radius = batch.radius(eps)
    xp = array_namespace(batch.x)
    predictions = xp.argmax(batch.logits(batch.rounded(radius)(runs.x)), axis=1)
    success = (predictions == batch.labels) if targeted else (predictions != batch.labels)
    return AttackResult(batch.to_input(runs.x, radius), runs.trace, predictions, success)


@dataclass(frozen=True)
class APGD(_Common):
    r"""Auto-PGD under L-inf (Croce & Hein, 2020): the step size adapts itself.

    See :mod:`signattack.attacks.apgd` for the algorithm. ``loss="dlr"`` is APGD-DLR, which
    sees through logits that are scaled up (cross-entropy then saturates and its gradient
    vanishes in float32); ``"ce"`` is APGD-CE.

    Args:
        eps: Radius of the L-inf ball, ``>= 0``, in the model's input units.
        steps: Iterations per run, ``>= 1`` (the paper uses 100).
        loss: ``"ce"``, ``"dlr"``, ``"margin"`` or a per-sample loss callable.
        restarts: Runs; each one after the first starts from a new random point of the
            ball, on the samples still robust.
        rho: Condition 1's share of improving steps.
        bounds: The pixel box ``(lower, upper)``.
        targeted: Treat ``y`` as target labels and descend the loss towards them.
        seed: Seed of the random starts; ``None`` draws fresh entropy. No global random
            state is read or changed.
        model_mode: ``"eval"`` (default), ``"train"`` or ``"unchanged"``.
        early_stop: Freeze each sample as soon as the model is fooled and drop it from the
            batch the model sees.

    Raises:
        TypeError: A parameter has the wrong type.
        ValueError: A parameter is out of range.
    """

    eps: float
    steps: int = 100
    _: KW_ONLY
    loss: LossName | LossFunction = "ce"
    restarts: int = 1
    rho: float = 0.75
    bounds: Bounds | tuple[float, float] = PIXEL_BOUNDS
    targeted: bool = False
    seed: int | None = None
    model_mode: ModelMode = "eval"
    early_stop: bool = False

    def __post_init__(self) -> None:
        self._check_common()
        if not isinstance(self.targeted, bool):
            raise TypeError(f"targeted must be a bool, got {type(self.targeted).__name__}")

    @property
    def threat(self) -> ThreatModel:
        """The box, the loss and the model's mode, as one validated value."""
        return ThreatModel(self.bounds, self.loss, self.model_mode)

    def with_eps(self, eps: float) -> APGD:
        """The same attack with radius ``eps``."""
        return dataclasses.replace(self, eps=eps)

    def __call__(
        self,
        model: Callable[[ArrayT], ArrayT],
        x: ArrayT,
        y: ArrayT,
        *,
        rng: np.random.Generator | None = None,
    ) -> ArrayT:
        """The adversarial batch, with ``x``'s type, shape, dtype and device.

        Args:
            model: As for :class:`~signattack.IteratedSign`.
            x: Inputs ``(batch, ...)`` inside ``bounds``.
            y: Labels ``(batch,)``; targets when ``targeted``.
            rng: Generator of the random starts, overriding ``seed``.
        """
        return self.run(model, x, y, rng=rng).x_adv

    def run(
        self,
        model: Callable[[ArrayT], ArrayT],
        x: ArrayT,
        y: ArrayT,
        *,
        rng: np.random.Generator | None = None,
    ) -> AttackResult[ArrayT]:
        """The adversarial batch with the loss trace ``(steps + 1, batch)`` of the run it
        came from, predictions and success."""
        check_rng(rng)
        generator = rng if rng is not None else np.random.default_rng(self.seed)
        with open_threat(model, x, y, self.threat, eps=self.eps) as batch:
            losses, predictions = batch.evaluate(batch.x, batch.labels)
            fooled = (
                (predictions == batch.labels) if self.targeted else (predictions != batch.labels)
            )
            runs = _run_apgd(
                batch,
                _Runs.clean(batch, losses, fooled, self.steps),
                eps=self.eps,
                steps=self.steps,
                rho=self.rho,
                restarts=self.restarts,
                generator=generator,
                early_stop=self.early_stop,
                targeted=self.targeted,
            )
            result: AttackResult[ArrayT] = _result(batch, runs, self.eps, self.targeted)
        return result


@dataclass(frozen=True)
class APGDT(_Common):
    r"""APGD-T (Croce & Hein, 2020): APGD on the targeted DLR loss, against each of the top
    ``target_classes`` other classes in turn, on the samples still robust.

    ``-(z_y - z_t) / (z_pi1 - (z_pi3 + z_pi4) / 2)`` is maximized for the target ``t`` of
    rank 2, 3, ... of the clean logits. It is untargeted in effect: ``y`` are the true labels
    and the attack succeeds when the prediction differs from ``y``. Needs at least four
    classes.

    Args:
        eps: Radius of the L-inf ball.
        steps: Iterations per run.
        target_classes: How many target classes to try (at most the number of classes less
            one).
        restarts: Runs per target class.
        rho: Condition 1's share of improving steps.
        bounds: The pixel box.
        seed: Seed of the random starts.
        model_mode: How to run an ``nn.Module``.
        early_stop: Freeze samples once fooled.
    """

    eps: float
    steps: int = 100
    _: KW_ONLY
    target_classes: int = 9
    restarts: int = 1
    rho: float = 0.75
    bounds: Bounds | tuple[float, float] = PIXEL_BOUNDS
    seed: int | None = None
    model_mode: ModelMode = "eval"
    early_stop: bool = False

    def __post_init__(self) -> None:
        self._check_common()
        object.__setattr__(
            self, "target_classes", check_steps(self.target_classes, "target_classes")
        )

    @property
    def threat(self) -> ThreatModel:
        """The box, the targeted DLR loss and the model's mode."""
        return ThreatModel(self.bounds, TARGETED_DLR, self.model_mode)

    def with_eps(self, eps: float) -> APGDT:
        """The same attack with radius ``eps``."""
        return dataclasses.replace(self, eps=eps)

    def __call__(
        self,
        model: Callable[[ArrayT], ArrayT],
        x: ArrayT,
        y: ArrayT,
        *,
        rng: np.random.Generator | None = None,
    ) -> ArrayT:
        """The adversarial batch; see :meth:`APGD.__call__`."""
        return self.run(model, x, y, rng=rng).x_adv

    def run(
        self,
        model: Callable[[ArrayT], ArrayT],
        x: ArrayT,
        y: ArrayT,
        *,
        rng: np.random.Generator | None = None,
    ) -> AttackResult[ArrayT]:
        """The adversarial batch with the targeted-DLR trace of the run it came from."""
        check_rng(rng)
        generator = rng if rng is not None else np.random.default_rng(self.seed)
        with open_threat(model, x, y, self.threat, eps=self.eps) as batch:
            xp = array_namespace(batch.x)
            logits = batch.logits(batch.x)
            classes = logits.shape[1]
            if classes < 4:
                raise ValueError(f"APGDT needs a model of at least 4 classes, got {classes}")
            ranking = xp.argsort(logits, axis=1, descending=True, stable=True)
            predictions = ranking[:, 0]
            runs: _Runs | None = None
            for rank in range(1, min(self.target_classes, classes - 1) + 1):
                labels = xp.stack([batch.labels, ranking[:, rank]], axis=1)
                if runs is None:
                    losses, _ = batch.evaluate(batch.x, labels)
                    runs = _Runs.clean(batch, losses, predictions != batch.labels, self.steps)
                runs = _run_apgd(
                    batch,
                    runs,
                    eps=self.eps,
                    steps=self.steps,
                    rho=self.rho,
                    restarts=self.restarts,
                    generator=generator,
                    early_stop=self.early_stop,
                    loss_labels=labels,
                )
            if runs is None:  # pragma: no cover - target_classes >= 1 and classes >= 4
                raise RuntimeError("APGDT ran no target class")
            result: AttackResult[ArrayT] = _result(batch, runs, self.eps, False)
        return result
