r"""Auto-PGD under L-inf and L2 (Croce & Hein, ICML 2020): [`APGD`][signattack.attacks.apgd.APGD]
and [`APGDT`][signattack.attacks.apgd.APGDT].

APGD is a projected-gradient attack with momentum whose step size adapts itself, so that no step
size has to be tuned and a saturated loss is not mistaken for robustness. With the iterates
``x^(k)``, the objective ``f``, the steepest-ascent direction ``u`` of the norm (``u(g) = sign(g)``
under L-inf, ``u(g) = g / ||g||_2`` under L2) and the projection ``P`` onto the eps-ball intersected
with the box (eq. 2-3 of the paper):

    z^(k+1) = P(x^(k) + eta^(k) * u(grad f(x^(k)))) x^(k+1) = P(x^(k) + alpha * (z^(k+1) - x^(k)) +
    (1 - alpha) * (x^(k) - x^(k-1)))

with ``alpha = 0.75`` (``alpha = 1`` at the first step) and ``eta^(0) = 2 * eps``, under either
norm. At the checkpoints ``w_j = ceil(p_j * N)`` of ``N`` steps, ``p_0 = 0``, ``p_1 = 0.22``,
``p_{j+1} = p_j + max(p_j - p_{j-1} - 0.03, 0.06)`` (eq. 4), the step size is halved, and the
iterate restarts from the best point found so far ``x_max``, for every sample where

1. the objective increased in fewer than ``rho * (w_j - w_{j-1})`` of the steps since the
   last checkpoint (eq. 5, ``rho = 0.75``), or
2. the step size was not halved at the last checkpoint and the best objective
   ``f_max`` has not improved since.

The attack returns, per sample, a point where the model was fooled if it found one, else ``x_max``.
Restarts run again, from random points of the ball, on the samples still robust, and APGD-T tries
each next target class on those only. With ``early_stop=True`` a sample also leaves the batch the
model sees at the first step that fools it: its verdict and its point (the first fooling point,
which the full run returns as well) are the same, at fewer model passes; the presets of
`signattack.evaluation` run it so.

APGD-T's target classes are, by default, the classes of rank 2, 3, ... of the clean logits, as the
paper ranks them. ``ranking="boundary"`` ranks the top ``max(9, target_classes)`` of them instead by
the distance to their decision boundary, linearised at the clean point,

    d_t = |z_y - z_t| / ||grad(z_y - z_t)||_*

(``||.||_*`` the dual norm: ``||.||_1`` under L-inf, ``||.||_2`` under L2), one gradient per
candidate class, and attacks the nearest ``target_classes``: fewer target runs find the classes the
full ranking's runs would.

Everything geometric is asked of the norm (`signattack.core.norms`): the direction, the feasible set
of the call, its projection and its random points. Under L2 ``P`` is the exact Euclidean projection
onto the intersection of the ball and the box; the authors' code rescales into the ball and then
clips to the box, which can land on a point of the set that is not the closest one (the two agree
where the box does not cut the ball). The random start is theirs: a point on the sphere of radius
``eps`` in an isotropic Gaussian direction, brought into the box.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import KW_ONLY, dataclass
from typing import Literal, TypeAlias

import numpy as np

from signattack._host import to_numpy
from signattack._typing import Array, ArrayT, Model, namespace
from signattack.attacks.auto_steps import AutoSteps, checkpoints
from signattack.attacks.base import AttackResult, BallAttack
from signattack.attacks.loop import iterate, random_start
from signattack.attacks.restarts import (
    Runs,
    chosen_result,
    run_bar,
    still_robust,
    sub_batch,
    target_labels,
)
from signattack.backends.batch import Batch, Passes, open_threat
from signattack.core.kernels import take_samples
from signattack.core.linf import LINF, LinfFeasible
from signattack.core.losses import TARGETED_DLR, TARGETED_MARGIN, LossFunction, LossName
from signattack.core.norms import Feasible, Norm, NormName, widest_float
from signattack.core.rules import Start
from signattack.core.streams import Purpose, SampleStreams
from signattack.core.threat import PIXEL_BOUNDS, ModelMode
from signattack.core.validation import (
    Bounds,
    check_choice,
    check_real,
    generator,
)

__all__ = ["APGD", "APGDT", "AutoSteps", "Ranking", "checkpoints"]

Ranking: TypeAlias = Literal["logits", "boundary"]
"""How APGD-T picks its target classes: by the clean logits (the paper's), or by the
linearised distance to each class's decision boundary."""

CANDIDATES = 9
"""The classes of the top clean logits that ``ranking="boundary"`` ranks (or
``target_classes``, where more): the standard suite's nine targets."""


def _check_rho(attack: APGD | APGDT) -> None:
    """Check condition 1's share, which [`APGD`][signattack.attacks.apgd.APGD] and
    [`APGDT`][signattack.attacks.apgd.APGDT] share."""
    rho = check_real("rho", attack.rho)
    if not 0 < rho <= 1:
        raise ValueError(f"rho must lie in (0, 1], got {attack.rho!r}")


def _titled(name: str, attack: APGD | APGDT) -> str:
    """The paper's name of the attack, with its norm where that is not L-inf:
    ``APGD-CE``, ``APGD-CE (L2)``."""
    norm = attack.threat.geometry
    return name if norm.name == "linf" else f"{name} ({norm.title})"


def _limits(feasible: Feasible, x: Array, radius: float, bounds: Bounds) -> tuple[Array, Array]:
    """Element-wise limits that hold the feasible set: the L-inf set is its own, and the
    L-inf set of the same radius holds the ball of any other norm."""
    box = feasible if isinstance(feasible, LinfFeasible) else LINF.feasible(x, radius, *bounds)
    return box.low, box.high


def _run_apgd(
    batch: Batch,
    runs: Runs,
    *,
    norm: Norm,
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
    """APGD under ``norm`` with restarts, each on the samples of ``batch`` that ``runs`` has
    not fooled; restart ``r`` starts every sample at a random point of the feasible set,
    from its own stream for ``(*purpose, r)``."""
    xp = namespace(batch.x)
    radius = batch.radius(eps)
    marks = checkpoints(steps)
    for restart in range(restarts):
        todo, index, count = still_robust(batch, runs)
        if count == 0:
            break
        part = sub_batch(batch, index)
        feasible = norm.feasible(part.x, radius, *batch.bounds)
        begin = random_start(feasible, part.x, streams.take(to_numpy(index)), (*purpose, restart))
        low, high = _limits(feasible, part.x, radius, batch.bounds)
        sign = -1.0 if targeted else 1.0
        rule = AutoSteps(
            rho, marks, sign, norm=norm, bounds=(batch.bounds.lower, batch.bounds.upper)
        )
        outcome = iterate(
            part,
            rule,
            Start(part.x, low, high, radius, 2 * radius, begin),
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
class APGD(BallAttack):
    r"""Auto-PGD under L-inf or L2 (Croce & Hein, 2020): the step size adapts itself.

    See `signattack.attacks.apgd` for the algorithm. ``loss="dlr"`` is APGD-DLR, which sees through
    logits that are scaled up (cross-entropy then saturates and its gradient vanishes in float32);
    ``"ce"`` is APGD-CE. ``norm="l2"`` is the paper's L2 version: steps along ``g / ||g||_2``, the
    exact projection onto the L2 ball and the box, the initial step size ``2 * eps`` and a random
    start on the sphere of radius ``eps``.

    Args:
        eps: Radius of the ball, ``>= 0``, in the model's input units (under L2 the
            Euclidean length of the whole perturbation of a sample).
        steps: Iterations per run, ``>= 1`` (the paper uses 100).
        loss: ``"ce"``, ``"dlr"``, ``"margin"`` or a per-sample loss callable.
        restarts: Runs; each one after the first starts from a new random point of the
            ball, on the samples still robust.
        rho: Condition 1's share of improving steps.
        bounds: The pixel box ``(lower, upper)``.
        targeted: Treat ``y`` as target labels and descend the loss towards them.
        seed: Seed of the random starts; ``None`` draws fresh entropy. No global random
            state is read or changed. Every sample draws its starts from streams of its own, keyed
            by the seed (or the ``rng`` of the call), by the sample's values and label and by the
            restart, so that its result does not depend on the batch it comes in, on its position
            there, or on the other samples.
        model_mode: ``"eval"`` (default), ``"train"`` or ``"unchanged"``.
        early_stop: Freeze each sample as soon as the model is fooled and drop it from the
            batch the model sees.
        eot: Passes averaged per gradient for a randomized model (EOT; see
            [`IteratedSign`][signattack.IteratedSign]); AutoAttack's "rand" version uses 20.
        norm: The norm of the ball: ``"linf"`` (default) or ``"l2"``.

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
    norm: NormName = "linf"

    @property
    def name(self) -> str:
        """``APGD-CE``, ``APGD-DLR``, ...: the paper's name with the loss it climbs, and the
        norm where it is not L-inf (``APGD-CE (L2)``)."""
        name = f"APGD-{self.loss.upper()}" if isinstance(self.loss, str) else "APGD"
        return _titled(name, self)

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
                norm=self.threat.geometry,
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
class APGDT(BallAttack):
    r"""APGD-T (Croce & Hein, 2020): APGD on the targeted DLR loss, against each of the top
    ``target_classes`` other classes in turn, on the samples still robust.

    ``-(z_y - z_t) / (z_pi1 - (z_pi3 + z_pi4) / 2)`` is maximized for the target ``t`` of rank 2, 3,
    ... of the clean logits. It is untargeted in effect: ``y`` are the true labels and the attack
    succeeds when the prediction differs from ``y``. Needs at least four classes.

    Args:
        eps: Radius of the ball.
        steps: Iterations per run.
        target_classes: How many target classes to try (at most the number of classes less
            one).
        ranking: ``"logits"`` (default): the classes of rank 2, 3, ... of the clean logits;
            ``"boundary"``: of the top ``max(9, target_classes)`` of those, the nearest by the
            linearised distance to their decision boundary (see `signattack.attacks.apgd`), at one
            gradient per candidate class.
        restarts: Runs per target class.
        rho: Condition 1's share of improving steps.
        bounds: The pixel box.
        seed: Seed of the random starts, drawn per sample, target class and restart from
            streams of the sample's own (see [`APGD`][signattack.attacks.apgd.APGD]).
        model_mode: How to run an ``nn.Module``.
        early_stop: Freeze samples once fooled.
        eot: Passes averaged per gradient for a randomized model (EOT).
        norm: The norm of the ball: ``"linf"`` (default) or ``"l2"`` (see
            [`APGD`][signattack.attacks.apgd.APGD]).
    """

    eps: float
    steps: int = 100
    _: KW_ONLY
    target_classes: int = 9
    ranking: Ranking = "logits"
    restarts: int = 1
    rho: float = 0.75
    bounds: Bounds | tuple[float, float] = PIXEL_BOUNDS
    seed: int | None = None
    model_mode: ModelMode = "eval"
    early_stop: bool = False
    eot: int = 1
    norm: NormName = "linf"

    @property
    def name(self) -> str:
        """``APGD-T``, the paper's name (``APGD-T (L2)`` under L2)."""
        return _titled("APGD-T", self)

    def __post_init__(self) -> None:
        counts = ("steps", "restarts", "eot", "target_classes")
        self._check(TARGETED_DLR, "early_stop", counts=counts)
        _check_rho(self)
        check_choice("ranking", self.ranking, ("logits", "boundary"))

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
        nearest = _nearest_targets(self, model, x, y) if self.ranking == "boundary" else None
        with open_threat(model, x, y, self.threat, eps=self.eps, draws=self.eot) as batch:
            xp = namespace(batch.x)
            logits = batch.logits(batch.x)
            if nearest is None:
                predictions, targets = target_labels(batch, logits, self.target_classes, 4, "APGDT")
            else:
                classes, spent = nearest
                batch.passes.count(spent.backward, backward=True)
                batch.passes.count(spent.forward - spent.backward, backward=False)
                predictions = xp.argmax(logits, axis=1)
                targets = [
                    xp.stack([batch.labels, classes[:, rank]], axis=1)
                    for rank in range(classes.shape[1])
                ]
            runs: Runs | None = None
            streams = batch.streams(draws)
            for rank, labels in enumerate(targets, start=2):
                if runs is None:
                    losses, _ = batch.evaluate(batch.x, labels)
                    fooled = xp.not_equal(predictions, batch.labels)
                    runs = Runs.clean(batch, losses, fooled, self.steps)
                with run_bar(self.name, target=(rank - 1, len(targets))):
                    runs = _run_apgd(
                        batch,
                        runs,
                        norm=self.threat.geometry,
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


def _nearest_targets(
    attack: APGDT, model: Model[ArrayT], x: ArrayT, y: ArrayT
) -> tuple[Array, Passes]:
    """For ``ranking="boundary"``: per sample, the ``target_classes`` classes nearest by the
    linearised distance to their boundary, nearest first, ``(batch, target_classes)``, and
    the sample-passes spent finding them (a clean pass, and one gradient per candidate)."""
    threat = dataclasses.replace(attack.threat, loss=TARGETED_MARGIN)
    with open_threat(model, x, y, threat, eps=attack.eps, draws=attack.eot) as batch:
        xp = namespace(batch.x)
        count = max(CANDIDATES, attack.target_classes)
        _, pairs = target_labels(batch, batch.logits(batch.x), count, 4, "APGDT")
        distances = []
        for labels in pairs:
            margins, grad, _ = batch.value_and_grad(batch.x, labels)
            distances.append(boundary_distance(attack.threat.geometry, margins, grad))
        order = xp.argsort(xp.stack(distances, axis=1), axis=1, stable=True)
        candidates = xp.stack([labels[:, 1] for labels in pairs], axis=1)
        chosen = xp.take_along_axis(candidates, order[:, : attack.target_classes], axis=1)
        return chosen, batch.passes


def boundary_distance(norm: Norm, margins: Array, grad: Array) -> Array:
    """``|m| / ||grad m||_*`` per sample: the distance from each sample to the zero set of
    the margin ``m`` linearised there, in ``norm`` (``||.||_*`` its dual: ``||.||_1`` for
    L-inf, ``||.||_2`` for L2), in the widest float; ``inf`` where the gradient is zero."""
    xp = namespace(grad)
    wide = widest_float(grad)
    if norm.name == "l2":
        dual = norm.distance(grad)  # the L2 norm is its own dual
    else:
        flat = xp.reshape(xp.abs(xp.astype(grad, wide)), (grad.shape[0], -1))
        dual = xp.sum(flat, axis=1)
    gap = xp.abs(xp.astype(margins, wide))
    found = dual > 0
    return xp.where(found, gap / xp.where(found, dual, 1.0), math.inf)
