"""The attacks an evaluation runs: how they are given, what the evaluation asks of each
(:func:`traits_of`), the threat model they share, and the presets of a trustworthy L-inf
evaluation with their published settings."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from signattack._io import Json
from signattack.attacks import (
    APGD,
    APGDT,
    FABT,
    Attack,
    EpsAttack,
    Square,
)
from signattack.core.threat import ModelMode, ThreatModel
from signattack.core.validation import Bounds, check_bounds, check_seed, check_steps
from signattack.evaluation._specs import (
    AttackFactory,
    Attacks,
    AttackSpec,
)
from signattack.evaluation._units import radius_text
from signattack.evaluation.identity import Unstable, describe, stable

__all__ = [
    "AttackFactory",
    "AttackSpec",
    "AttackSuite",
    "Attacks",
    "gradient_attacks",
    "rand_attacks",
    "standard_attacks",
]


@runtime_checkable
class _Averaging(Protocol):
    """An attack whose every prediction is the class of the mean logits of ``eot`` passes."""

    @property
    def eot(self) -> int: ...


@runtime_checkable
class _Threatened(Protocol):
    """An attack that says how it runs the model."""

    @property
    def threat(self) -> ThreatModel: ...


@runtime_checkable
class _Named(Protocol):
    """An attack that says the name papers give it (``APGD-CE``, ``FAB-T``)."""

    @property
    def name(self) -> str: ...


@runtime_checkable
class _Declaring(Protocol):
    """An attack that says whether it asks for gradients."""

    @property
    def gradient_free(self) -> bool: ...


@dataclass(frozen=True)
class AttackTraits:
    """What an evaluation asks of an attack it made (never of the spec or the factory that
    made it): see :func:`traits_of`.

    Attributes:
        name: The name a paper gives it (``APGD-CE``, ``APGD-T``, ``FAB-T``, ``Square``),
            with ``(EOT n)`` where it averages ``n`` passes; its description otherwise.
        description: Its settings that differ from the defaults, the radius left out.
        gradient_free: Whether it never asks for a gradient (one that does not say does).
        bounds: Its box, or ``None`` where it has none.
        model_mode: How it runs the model, or ``None`` where it does not say.
        seed: Its seed, or ``None``.
        eot: The passes whose mean logits make each of its predictions (``1`` where it
            does not say).
    """

    name: str
    description: str
    gradient_free: bool
    bounds: Bounds | None
    model_mode: ModelMode | None
    seed: int | None
    eot: int


def traits_of(attack: Attack) -> AttackTraits:
    """What the evaluation asks of ``attack``: the one place that reads an attack's name,
    description, gradient needs, box, model mode, seed and passes per decision.

    Raises:
        ValueError: The attack's ``eot`` is not an integer ``>= 1``.
    """
    description = describe(attack)
    eot: object = attack.eot if isinstance(attack, _Averaging) else 1
    if isinstance(eot, bool) or not isinstance(eot, int) or eot < 1:
        raise ValueError(f"the attack {description} must have eot an int >= 1, got {eot!r}")
    named = attack.name if isinstance(attack, _Named) else None
    name = named if isinstance(named, str) and named else description
    seed = attack.seed if isinstance(attack, EpsAttack) else None
    return AttackTraits(
        name=f"{name} (EOT {eot})" if eot > 1 and name != description else name,
        description=description,
        gradient_free=isinstance(attack, _Declaring) and attack.gradient_free is True,
        bounds=Bounds(*attack.bounds) if isinstance(attack, EpsAttack) else None,
        model_mode=attack.threat.model_mode if isinstance(attack, _Threatened) else None,
        seed=seed if isinstance(seed, int) and not isinstance(seed, bool) else None,
        eot=eot,
    )


def attack_record(attack: Attack) -> dict[str, Json]:
    """What a report's metadata records of an attack it ran: its traits and its settings
    (:func:`~signattack.evaluation.identity.stable`, radius 0; ``None`` where they have no
    stable description)."""
    traits = traits_of(attack)
    plain = attack.with_eps(0.0) if isinstance(attack, EpsAttack) else attack
    try:
        settings: Json = stable(plain)
    except Unstable:
        settings = None
    return {
        "name": traits.name,
        "description": traits.description,
        "settings": settings,
        "seed": traits.seed,
        "eot": traits.eot,
        "gradient_free": traits.gradient_free,
    }


def decision_draws(traits: Sequence[AttackTraits]) -> int:
    """The passes whose mean logits make every prediction of an evaluation, clean or
    attacked: the most that any of its attacks averages (``1`` for deterministic suites)."""
    return max((t.eot for t in traits), default=1)


def threat_of(attacks: Sequence[Attack]) -> ThreatModel | None:
    """The threat model the attacks share, for judging unattacked inputs: their box and their
    model's mode (the clean pass runs as the attacks judge their own predictions), with
    cross-entropy, the loss every label defines (a targeted attack's loss needs targets);
    ``None`` if no attack has a box (factories of foreign attacks).

    Raises:
        ValueError: Two attacks have different boxes or different model modes.
    """
    traits = [traits_of(attack) for attack in attacks]
    boxes = {t.bounds for t in traits if t.bounds is not None}
    if len(boxes) > 1:
        raise ValueError(f"the attacks must share one box, got bounds {sorted(boxes)}")
    modes = {t.model_mode for t in traits if t.model_mode is not None}
    if len(modes) > 1:
        raise ValueError(
            f"the attacks must run the model in one mode, got model_mode {sorted(modes)}: "
            "the clean accuracy would depend on which one is used"
        )
    if not boxes:
        return None
    return ThreatModel(boxes.pop(), "ce", modes.pop() if modes else "eval")


def attack_names(traits: Sequence[AttackTraits]) -> list[str]:
    """A short name per attack (``APGD-CE``, ``FAB-T``, ...), unique within the evaluation."""
    labels = [t.name for t in traits]
    names: list[str] = []
    for index, label in enumerate(labels):
        name, number = label, index + 1
        # never a name that another attack has, or takes later: "FGSM #3" may be a user's
        while name in names or (name != label and name in labels):
            name = f"{label} #{number}"
            number += 1
        names.append(name)
    return names


MASKING_THRESHOLD = 0.002
"""The share of the samples (AutoAttack's 0.2 points) that a gradient-free attack may break
after the gradient attacks before the report warns of gradient masking."""


def masking_warnings(
    traits: Sequence[AttackTraits],
    names: list[str],
    broken_by: Mapping[float, Mapping[str, int]],
    samples: int,
    bounds: tuple[float, float] | None,
) -> tuple[str, ...]:
    """A warning per radius at which a gradient-free attack broke more than
    :data:`MASKING_THRESHOLD` of the samples that the gradient attacks before it left
    robust (each attack as the evaluation made it, a factory's included)."""
    free = [t.gradient_free for t in traits]
    checked = [index for index in range(len(traits)) if free[index] and not all(free[:index])]
    found = []
    for eps, counts in broken_by.items():
        for index in checked:  # gradient-free, after at least one gradient attack
            broken = counts[names[index]]
            if broken > MASKING_THRESHOLD * samples:
                found.append(
                    f"at eps {radius_text(eps, bounds)}, {names[index]} broke {broken} of "
                    f"{samples} samples "
                    f"({broken / samples:.1%}) that the gradient attacks before it left "
                    "robust: the model likely masks its gradients (a quantized or "
                    "non-differentiable input step, randomness, saturated outputs), and "
                    "gradient attacks alone overestimate its robustness. Attack through "
                    "signattack.straight_through(step) for a non-differentiable step, with "
                    "eot=N for randomness, or give Square more restarts; report the number "
                    "with the gradient-free attack in the suite."
                )
    return tuple(found)


class AttackSuite(tuple[EpsAttack, ...]):
    """A named sequence of attacks, run in order by :func:`~signattack.evaluation.evaluate`.

    It is a tuple of its attacks; ``randomized``, where given, is the suite that the
    evaluation runs instead when it finds the model randomized (two identical forward
    passes that differ), as AutoAttack runs its "rand" version.

    Attributes:
        name: The preset's name.
        randomized: The suite for a randomized model, or ``None``.
    """

    name: str
    randomized: AttackSuite | None

    def __new__(
        cls,
        name: str,
        attacks: Iterable[EpsAttack],
        randomized: AttackSuite | None = None,
    ) -> AttackSuite:
        suite = super().__new__(cls, attacks)
        suite.name = name
        suite.randomized = randomized
        return suite

    def __repr__(self) -> str:
        return f"AttackSuite({self.name!r}, {list(self)!r})"


def _checked(steps: int, bounds: Bounds | tuple[float, float], seed: int) -> Bounds:
    check_steps(steps)
    check_seed(seed)
    return check_bounds(bounds)


def gradient_attacks(
    steps: int = 100,
    *,
    bounds: Bounds | tuple[float, float] = (0.0, 255.0),
    seed: int = 0,
    eot: int = 1,
) -> AttackSuite:
    """APGD-CE, then APGD-T with 9 target classes: the two gradient members of AutoAttack.

    They decide almost every sample of a model whose gradients are informative, in a
    fraction of the standard suite's time, but a model that masks its gradients fools them:
    :func:`standard_attacks` adds Square, which asks for none.

    Args:
        steps: Iterations of each run (100 in the paper).
        bounds: The pixel box of the model's inputs.
        seed: Seed of the random starts, for reproducible evaluations.
        eot: Passes averaged per gradient, for a randomized model.

    Returns:
        ``AttackSuite("gradient", [APGD(0, steps, loss="ce"), APGDT(0, steps)])``.
    """
    box = _checked(steps, bounds, seed)
    return AttackSuite(
        "gradient",
        [
            APGD(0.0, steps, loss="ce", bounds=box, seed=seed, eot=eot),
            APGDT(0.0, steps, target_classes=9, bounds=box, seed=seed, eot=eot),
        ],
    )


def rand_attacks(
    steps: int = 100,
    *,
    bounds: Bounds | tuple[float, float] = (0.0, 255.0),
    seed: int = 0,
    eot: int = 20,
) -> AttackSuite:
    """AutoAttack's "rand" version for randomized defenses: APGD-CE, then APGD-DLR, each
    gradient the mean of ``eot`` passes (EOT).

    A sample counts as broken when the mean logits of ``eot`` passes at the attack's point
    misclassify it: the expected prediction of the randomized model, where a single pass,
    as the reference checks, is a coin toss that overestimates robustness.

    Args:
        steps: Iterations of each run (100 in the paper).
        bounds: The pixel box of the model's inputs.
        seed: Seed of the random starts.
        eot: Passes averaged per gradient and per decision (20 in the paper).

    Returns:
        ``AttackSuite("rand", [APGD(0, steps, loss="ce", eot=eot), APGD(0, steps,
        loss="dlr", eot=eot)])``.
    """
    box = _checked(steps, bounds, seed)
    check_steps(eot, "eot")
    return AttackSuite(
        "rand",
        [
            APGD(0.0, steps, loss="ce", bounds=box, seed=seed, eot=eot),
            APGD(0.0, steps, loss="dlr", bounds=box, seed=seed, eot=eot),
        ],
    )


def standard_attacks(
    steps: int = 100,
    *,
    queries: int = 5000,
    bounds: Bounds | tuple[float, float] = (0.0, 255.0),
    seed: int = 0,
) -> AttackSuite:
    """AutoAttack's standard L-inf suite (Croce & Hein, 2020) with its members' settings:
    APGD-CE, APGD-T with 9 target classes, FAB-T with 9 target classes, then Square with
    5000 queries, each run only on the samples the previous ones left robust. Pass it to
    ``evaluate``.

    A sample counts as robust only if every member fails on it, and the evaluation's report
    flags Square breaking samples that the gradient attacks left robust (a sign of gradient
    masking). On a model that the evaluation finds randomized, :func:`rand_attacks` runs
    instead.

    Args:
        steps: Iterations of each APGD and FAB-T run (100 in the paper).
        queries: Square's queries per sample (5000 in the paper).
        bounds: The pixel box of the model's inputs.
        seed: Seed of the random starts and of Square's search, for reproducible
            evaluations.

    Returns:
        The :class:`AttackSuite` ``"standard"``: ``APGD(0, steps, loss="ce")``,
        ``APGDT(0, steps, target_classes=9)``, ``FABT(0, steps, target_classes=9)``,
        ``Square(0, queries)``.
    """
    box = _checked(steps, bounds, seed)
    check_steps(queries, "queries")
    gradient = gradient_attacks(steps, bounds=box, seed=seed)
    fab = FABT(0.0, steps, target_classes=9, bounds=box, seed=seed)
    return AttackSuite(
        "standard",
        [*gradient, fab, Square(0.0, queries, bounds=box, seed=seed)],
        randomized=rand_attacks(steps, bounds=box, seed=seed),
    )
