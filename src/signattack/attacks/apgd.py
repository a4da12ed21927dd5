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

from dataclasses import KW_ONLY, dataclass

import numpy as np

from signattack._host import to_numpy
from signattack._typing import Array, ArrayT, Model, namespace
from signattack.attacks.auto_steps import AutoSteps, checkpoints
from signattack.attacks.base import AttackResult, LinfAttack
from signattack.attacks.loop import iterate, random_start
from signattack.attacks.restarts import (
    Runs,
    chosen_result,
    still_robust,
    sub_batch,
    target_labels,
)
from signattack.backends.batch import Batch, open_threat
from signattack.core.kernels import ball_box_limits, take_samples
from signattack.core.losses import TARGETED_DLR, LossFunction, LossName
from signattack.core.rules import Start
from signattack.core.streams import Purpose, SampleStreams
from signattack.core.threat import PIXEL_BOUNDS, ModelMode
from signattack.core.validation import (
    Bounds,
    check_real,
    generator,
)

__all__ = ["APGD", "APGDT", "AutoSteps", "checkpoints"]


def _check_rho(attack: APGD | APGDT) -> None:
    """Check condition 1's share, which :class:`APGD` and :class:`APGDT` share."""
    rho = check_real("rho", attack.rho)
    if not 0 < rho <= 1:
        raise ValueError(f"rho must lie in (0, 1], got {attack.rho!r}")


def _run_apgd(
    batch: Batch,
    runs: Runs,
    *,
    eps: float,
    steps: int,
    rho: float,
    restarts: int,
    streams: SampleStreams,
    purpose: Purpose,
    early_stop: bool,
    targeted: bool = False,
    loss_labels: Array | None = None,
) -> Runs:
    """APGD with restarts, each on the samples of ``batch`` that ``runs`` has not fooled;
    restart ``r`` starts every sample at a random point of its own stream for
    ``(*purpose, r)``."""
    xp = namespace(batch.x)
    radius = batch.radius(eps)
    low, high = ball_box_limits(batch.x, radius, *batch.bounds)
    marks = checkpoints(steps)
    for restart in range(restarts):
        todo, index, count = still_robust(batch, runs)
        if count == 0:
            break
        part = sub_batch(batch, index)
        part_streams = streams.take(to_numpy(index))
        part_low, part_high = take_samples(low, index), take_samples(high, index)
        part_radius = radius if isinstance(radius, float) else take_samples(radius, index)
        begin = random_start(
            part.x, part_radius, part_low, part_high, part_streams, (*purpose, restart)
        )
        rule = AutoSteps(part_low, part_high, part_radius, rho, marks, -1.0 if targeted else 1.0)
        outcome = iterate(
            part,
            rule,
            Start(part.x, part_low, part_high, part_radius, 2 * part_radius, begin),
            steps,
            targeted=targeted,
            loss_labels=None if loss_labels is None else take_samples(loss_labels, index),
            early_stop=early_stop,
            final=_same,
        )
        at_end = outcome.final
        if at_end is None:  # pragma: no cover - final=_same always evaluates
            raise RuntimeError("the attack loop did not evaluate the final iterate")
        fooled = xp.logical_or(outcome.state.fooled, at_end.success)[:count]
        best = rule.best_objective(outcome.state, at_end)[:count]
        trace = xp.stack(outcome.rows)[:, :count]
        runs = runs.fold(todo, outcome.x_adv[:count, ...], trace, fooled, best)
    return runs


def _same(x: Array) -> Array:
    return x


@dataclass(frozen=True)
class APGD(LinfAttack):
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
            state is read or changed. Every sample draws its starts from streams of its
            own, keyed by the seed (or the ``rng`` of the call), by the sample's values and
            label and by the restart, so that its result does not depend on the batch it
            comes in, on its position there, or on the other samples.
        model_mode: ``"eval"`` (default), ``"train"`` or ``"unchanged"``.
        early_stop: Freeze each sample as soon as the model is fooled and drop it from the
            batch the model sees.
        eot: Passes averaged per gradient for a randomized model (EOT; see
            :class:`~signattack.IteratedSign`); AutoAttack's "rand" version uses 20.

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
    eot: int = 1

    @property
    def name(self) -> str:
        """``APGD-CE``, ``APGD-DLR``, ...: the paper's name with the loss it climbs."""
        return f"APGD-{self.loss.upper()}" if isinstance(self.loss, str) else "APGD"

    def __post_init__(self) -> None:
        self._check(self.loss, "early_stop", "targeted", counts=("steps", "restarts", "eot"))
        _check_rho(self)

    def run(
        self,
        model: Model[ArrayT],
        x: ArrayT,
        y: ArrayT,
        *,
        rng: np.random.Generator | None = None,
    ) -> AttackResult[ArrayT]:
        """The adversarial batch with the loss trace ``(steps + 1, batch)`` of the run it
        came from, predictions and success."""
        draws = generator(rng, self.seed)
        with open_threat(model, x, y, self.threat, eps=self.eps, draws=self.eot) as batch:
            losses, predictions = batch.evaluate(batch.x, batch.labels)
            xp = namespace(batch.x)
            fooled = (xp.equal if self.targeted else xp.not_equal)(predictions, batch.labels)
            runs = _run_apgd(
                batch,
                Runs.clean(batch, losses, fooled, self.steps),
                eps=self.eps,
                steps=self.steps,
                rho=self.rho,
                restarts=self.restarts,
                streams=batch.streams(draws),
                purpose=("apgd",),
                early_stop=self.early_stop,
                targeted=self.targeted,
            )
            return chosen_result(batch, runs, self.eps, self.targeted, x)


@dataclass(frozen=True)
class APGDT(LinfAttack):
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
        seed: Seed of the random starts, drawn per sample, target class and restart from
            streams of the sample's own (see :class:`APGD`).
        model_mode: How to run an ``nn.Module``.
        early_stop: Freeze samples once fooled.
        eot: Passes averaged per gradient for a randomized model (EOT).
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
    eot: int = 1

    @property
    def name(self) -> str:
        """``APGD-T``, the paper's name."""
        return "APGD-T"

    def __post_init__(self) -> None:
        counts = ("steps", "restarts", "eot", "target_classes")
        self._check(TARGETED_DLR, "early_stop", counts=counts)
        _check_rho(self)

    def run(
        self,
        model: Model[ArrayT],
        x: ArrayT,
        y: ArrayT,
        *,
        rng: np.random.Generator | None = None,
    ) -> AttackResult[ArrayT]:
        """The adversarial batch with the targeted-DLR trace of the run it came from."""
        draws = generator(rng, self.seed)
        with open_threat(model, x, y, self.threat, eps=self.eps, draws=self.eot) as batch:
            xp = namespace(batch.x)
            predictions, targets = target_labels(
                batch, batch.logits(batch.x), self.target_classes, 4, "APGDT"
            )
            runs: Runs | None = None
            streams = batch.streams(draws)
            for rank, labels in enumerate(targets, start=2):
                if runs is None:
                    losses, _ = batch.evaluate(batch.x, labels)
                    fooled = xp.not_equal(predictions, batch.labels)
                    runs = Runs.clean(batch, losses, fooled, self.steps)
                runs = _run_apgd(
                    batch,
                    runs,
                    eps=self.eps,
                    steps=self.steps,
                    rho=self.rho,
                    restarts=self.restarts,
                    streams=streams,
                    purpose=("apgd-t", rank),
                    early_stop=self.early_stop,
                    loss_labels=labels,
                )
            if runs is None:  # pragma: no cover - target_classes >= 1 and classes >= 4
                raise RuntimeError("APGDT ran no target class")
            return chosen_result(batch, runs, self.eps, False, x)
