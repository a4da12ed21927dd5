"""How the evaluation judges a sample: the clean pass, the one decision rule for clean and
attacked predictions, the ball check of every attack's points, and what the evaluation reads
of its attacks once (:class:`Plan`)."""

from __future__ import annotations

import math
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import TYPE_CHECKING

from signattack._host import to_flags, to_values
from signattack._typing import Array, Model, device_of, namespace
from signattack.backends.batch import Batch, open_batch, open_threat, widest_float
from signattack.core.kernels import take_samples, within_linf_ball
from signattack.core.losses import CROSS_ENTROPY
from signattack.core.threat import ThreatModel
from signattack.core.validation import Bounds
from signattack.evaluation._specs import attack_at
from signattack.evaluation.standard import AttackTraits, decision_draws, threat_of, traits_of

if TYPE_CHECKING:
    from signattack.evaluation._specs import AttackSpec

_ANY_BOUNDS = Bounds(-math.inf, math.inf)


def _opened(
    model: object, x: Array, y: Array, threat: ThreatModel | None, draws: int = 1
) -> AbstractContextManager[Batch]:
    """The batch under the attacks' threat model; without one, any finite input in eval mode."""
    if threat is None:
        return open_batch(
            model, x, y, loss=CROSS_ENTROPY, model_mode="eval", bounds=_ANY_BOUNDS, draws=draws
        )
    return open_threat(model, x, y, threat, draws=draws)


def clean_predictions(
    model: object, x: Array, y: Array, threat: ThreatModel | None, *, draws: int = 1
) -> tuple[Array, Array]:
    """Predicted classes at ``x`` under the attacks' threat model (their model mode), after
    checking every sample and label, and the labels as checked (the library's index dtype,
    on ``x``'s device).

    A prediction is the class of the mean logits of ``draws`` passes, as an attack with
    ``eot=draws`` makes its own: the evaluation's one decision rule
    (:func:`~signattack.evaluation.standard.decision_draws`).

    Every input must be finite and inside the box, every label a class of the model
    (``0 <= y < classes``): the attacks check only the samples they attack.
    """
    with _opened(model, x, y, threat, draws) as batch:
        logits = batch.logits(batch.x)
    return namespace(logits).argmax(logits, axis=1), batch.labels


def is_randomized(model: object, x: Array, y: Array, threat: ThreatModel | None) -> bool:
    """Whether two identical forward passes of ``model`` at ``x`` differ."""
    with _opened(model, x, y, threat) as batch:
        first, second = batch.logits(batch.x), batch.logits(batch.x)
    xp = namespace(first)
    return not bool(xp.all(xp.equal(first, second)))


@dataclass(frozen=True)
class Plan:
    """What every batch of one evaluation runs, read from the attacks it makes.

    Attributes:
        specs: The attacks as given.
        radii: The radii, increasing.
        traits: What each attack, made at the first radius, says of itself.
        threat: The threat model they share (``None``: no box).
        draws: The passes whose mean logits make every prediction, clean or attacked.
        gradients: Whether some attack asks for a gradient: only then are the gradients
            probed (a gradient-free suite runs on models that have none).
    """

    specs: tuple[AttackSpec, ...]
    radii: tuple[float, ...]
    traits: tuple[AttackTraits, ...]
    threat: ThreatModel | None
    draws: int
    gradients: bool

    @classmethod
    def of(cls, specs: tuple[AttackSpec, ...], radii: tuple[float, ...]) -> Plan:
        made = [attack_at(spec, radii[0]) for spec in specs]
        traits = tuple(traits_of(attack) for attack in made)
        gradients = not all(t.gradient_free for t in traits)
        return cls(specs, radii, traits, threat_of(made), decision_draws(traits), gradients)


def moves_of(adversarial: Array, original: Array) -> list[float]:
    """Per sample, the largest ``|x_adv - x|``, measured in the library's widest float."""
    xp = namespace(original)
    wide = widest_float(original)
    change = xp.abs(xp.astype(adversarial, wide) - xp.astype(original, wide))
    if change.ndim > 1:
        change = xp.max(change, axis=tuple(range(1, change.ndim)))
    return [float(value) for value in to_values(change)]


def check_ball(adversarial: Array, original: Array, radius: float, plan: Plan, attack: str) -> None:
    """The evaluation's check that an attack kept every point in its ball and the box.

    Judged as the attacks' projection judges it, in the inputs' own dtype
    (:func:`~signattack.core.kernels.within_linf_ball`): every point the library's attacks
    return passes in every dtype, and a point outside by more than the dtype's rounding
    fails.

    Raises:
        ValueError: Some point lies outside the ball or the box.
    """
    box = plan.threat.box if plan.threat is not None else None
    bounds = None if box is None else (box.lower, box.upper)
    if all(to_flags(within_linf_ball(adversarial, original, radius))):
        if bounds is None or all(to_flags(within_linf_ball(adversarial, original, radius, bounds))):
            return
        raise ValueError(
            f"the attack {attack} returned a point outside the box [{bounds[0]:g}, "
            f"{bounds[1]:g}] at eps {radius:g}, so no robust accuracy can be reported for it"
        )
    moved_by = max(moves_of(adversarial, original))
    raise ValueError(
        f"the attack {attack} moved an input by {moved_by:g} at eps {radius:g}: it leaves "
        "the L-inf ball, so no robust accuracy can be reported for it"
    )


def broken_by_rule(
    model: object,
    predictions: Array,
    adversarial: Array,
    labels: Array,
    moves: list[float],
    eot: int,
    plan: Plan,
) -> list[bool]:
    """Per attacked sample, whether the attack broke it, by the evaluation's one decision
    rule: the class of the mean logits of ``plan.draws`` passes at the attack's point is
    not the label.

    An attack that averages as many passes made that decision itself; the breaks that one
    averaging fewer claims are decided again with ``plan.draws`` passes. A point that is
    the clean input is never a break: the clean pass decided it, and another draw of a
    randomized model must not overturn that.
    """
    wrong = to_flags(predictions != labels)
    claimed = [bad and move > 0 for bad, move in zip(wrong, moves, strict=True)]
    if eot >= plan.draws or not any(claimed):
        return claimed
    xp = namespace(adversarial)
    index = xp.asarray([i for i, flag in enumerate(claimed) if flag], device=device_of(labels))
    again, checked = clean_predictions(
        model,
        take_samples(adversarial, index),
        take_samples(labels, index),
        plan.threat,
        draws=plan.draws,
    )
    confirmed = iter(to_flags(again != checked))
    return [flag and next(confirmed) for flag in claimed]


def gradient_problems(
    model: Model[Array], x: Array, y: Array, threat: ThreatModel | None
) -> tuple[str, ...]:
    """What :func:`~signattack.probes.check_gradients` finds on a batch: gradient masking
    that would make every gradient-based figure of the evaluation an overestimate."""
    from signattack.probes import check_gradients

    if threat is None:  # attacks without a box: no threat model to probe under
        return ()
    report = check_gradients(model, x, y, threat=threat, warn=False)
    return tuple(report.problems())
