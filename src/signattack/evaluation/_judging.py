"""How the evaluation judges a sample: the clean pass, the one decision rule for clean and
attacked predictions, the ball check of every attack's points and the measure of how far
they moved (both asked of the suite's norm, here and nowhere else), and what the evaluation
reads of its attacks once (`Plan`)."""

from __future__ import annotations

import math
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import TYPE_CHECKING

from signattack._host import to_flags, to_values
from signattack._typing import Array, Model, device_of, namespace
from signattack.backends.batch import Batch, open_batch, open_threat
from signattack.core.kernels import take_samples
from signattack.core.linf import LINF
from signattack.core.losses import CROSS_ENTROPY
from signattack.core.norms import Norm, widest_float
from signattack.core.threat import ThreatModel
from signattack.core.validation import Bounds
from signattack.evaluation._specs import attack_at, shared_norm
from signattack.evaluation._units import norm_label
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
    (`decision_draws`).

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
        norm: The norm they share (L-inf where none says), also without a box: every
            ball is checked and every move measured in it.
    """

    specs: tuple[AttackSpec, ...]
    radii: tuple[float, ...]
    traits: tuple[AttackTraits, ...]
    threat: ThreatModel | None
    draws: int
    gradients: bool
    norm: Norm = LINF

    @classmethod
    def of(cls, specs: tuple[AttackSpec, ...], radii: tuple[float, ...]) -> Plan:
        """The plan of ``specs`` at ``radii``, each attack made at the first radius.

        Raises:
            ValueError: The attacks do not share one box, model mode and norm.
        """
        made = [attack_at(spec, radii[0]) for spec in specs]
        traits = tuple(traits_of(attack) for attack in made)
        gradients = not all(t.gradient_free for t in traits)
        threat, norm = threat_of(made), shared_norm(made)
        return cls(specs, radii, traits, threat, decision_draws(traits), gradients, norm)


def moves_of(adversarial: Array, original: Array, norm: Norm = LINF) -> list[float]:
    """Per sample, ``||x_adv - x||`` in ``norm`` (`
    distance`), the difference taken in the library's widest float (an integer or
    ``float16`` difference would wrap or round); ``0`` exactly where the point is the
    input, NaN where it is NaN."""
    xp = namespace(original)
    wide = widest_float(original)
    if original.ndim == 0 or original.shape[0] == 0:
        return []
    delta = xp.astype(adversarial, wide) - xp.astype(original, wide)
    if delta.ndim == 1:  # one number per sample: its own vector
        delta = xp.reshape(delta, (delta.shape[0], 1))
    return [float(value) for value in to_values(norm.distance(delta))]


def inside_ball(
    adversarial: Array,
    original: Array,
    radius: float,
    norm: Norm,
    bounds: tuple[float, float] | None = None,
) -> list[bool]:
    """Per sample, whether ``adversarial`` lies in the ``norm``-ball of ``radius`` around
    ``original`` (and in the box ``bounds``), judged as the norm's projection guarantees it
    ([`within`][signattack.core.norms.Norm.within]): every point the library's attacks return passes
    in every dtype, and a point outside by more than the dtype's rounding fails.

    The evaluation's one ball check: every attack's points (`check_ball`) and the
    exported points ([`verify`][signattack.evaluation.verify]) are judged here."""
    if original.ndim == 0 or original.shape[0] == 0:
        return []
    return to_flags(norm.within(adversarial, original, radius, bounds))


def check_ball(adversarial: Array, original: Array, radius: float, plan: Plan, attack: str) -> None:
    """The evaluation's check that an attack kept every point in its ball (in the suite's
    norm, `Plan.norm`) and the box (`inside_ball`).

    Raises:
        ValueError: Some point lies outside the ball or the box.
    """
    box = plan.threat.box if plan.threat is not None else None
    bounds = None if box is None else (box.lower, box.upper)
    norm = plan.norm
    if all(inside_ball(adversarial, original, radius, norm)):
        if bounds is None or all(inside_ball(adversarial, original, radius, norm, bounds)):
            return
        raise ValueError(
            f"the attack {attack} returned a point outside the box [{bounds[0]:g}, "
            f"{bounds[1]:g}] at eps {radius:g}, so no robust accuracy can be reported for it"
        )
    moved_by = max(moves_of(adversarial, original, norm))
    raise ValueError(
        f"the attack {attack} moved an input by {moved_by:g} ({norm_label(norm)}) at eps "
        f"{radius:g}: it leaves the {norm.title} ball, so no robust accuracy can be reported "
        "for it"
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
    """What [`check_gradients`][signattack.probes.check_gradients] finds on a batch: gradient
    masking
    that would make every gradient-based figure of the evaluation an overestimate."""
    from signattack.probes import check_gradients

    if threat is None:  # attacks without a box: no threat model to probe under
        return ()
    report = check_gradients(model, x, y, threat=threat, warn=False)
    return tuple(report.problems())
