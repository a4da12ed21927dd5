"""The attacks an evaluation runs: how they are given, the threat model they share, and the
presets of a trustworthy L-inf evaluation with their published settings."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence

from signattack.attacks import (
    APGD,
    APGDT,
    FABT,
    FGSM,
    Attack,
    EpsAttack,
    LinfAttack,
    Square,
)
from signattack.core.threat import ThreatModel
from signattack.core.validation import Bounds, check_bounds, check_seed, check_steps
from signattack.evaluation.identity import short_name

__all__ = [
    "AttackFactory",
    "AttackSpec",
    "AttackSuite",
    "Attacks",
    "gradient_attacks",
    "rand_attacks",
    "standard_attacks",
]

AttackFactory = Callable[[float], Attack]
"""A factory ``eps -> attack``."""

AttackSpec = EpsAttack | AttackFactory
"""An attack to run at every eps: an attack whose radius is replaced (:class:`EpsAttack`:
every attack of signattack), or a factory ``eps -> attack``."""

Attacks = AttackSpec | Sequence[AttackSpec]
"""One attack, or several run in order, each on the samples the previous ones left robust."""


def specs_of(attacks: object) -> tuple[AttackSpec, ...]:
    """The attacks as a tuple, each checked."""
    if isinstance(attacks, EpsAttack) or (callable(attacks) and not isinstance(attacks, Sequence)):
        return (_spec(attacks, "attack"),)
    if isinstance(attacks, Sequence) and not isinstance(attacks, str):
        items: Sequence[object] = attacks
        if not items:
            raise ValueError("attacks must hold at least one attack, got an empty sequence")
        return tuple(_spec(item, f"attacks[{index}]") for index, item in enumerate(items))
    raise TypeError(
        "attack must be an attack (IteratedSign, FGSM, APGD, ...), a factory eps -> attack, "
        f"or a sequence of them, got {type(attacks).__name__}"
    )


def _spec(item: object, name: str) -> AttackSpec:
    if isinstance(item, EpsAttack) or callable(item):
        return item
    raise TypeError(
        f"{name} must be an attack or a factory eps -> attack, got {type(item).__name__}"
    )


def attack_at(spec: AttackSpec, eps: float) -> Attack:
    """The attack ``spec`` gives at radius ``eps``."""
    if isinstance(spec, EpsAttack):
        return spec.with_eps(eps)
    attack = spec(eps)
    if not isinstance(attack, Attack):
        raise TypeError(
            f"the attack factory must return an attack (an object with run(model, x, y)), "
            f"got {type(attack).__name__} for eps={eps:g}"
        )
    return attack


def threat_of(attacks: Sequence[Attack]) -> ThreatModel | None:
    """The threat model the attacks share, for judging unattacked inputs: their box and their
    model's mode (the clean pass runs as the attacks judge their own predictions), with
    cross-entropy, the loss every label defines (a targeted attack's loss needs targets);
    ``None`` if no attack has a box (factories of foreign attacks).

    Raises:
        ValueError: Two attacks have different boxes or different model modes.
    """
    boxes = {Bounds(*a.bounds) for a in attacks if isinstance(a, EpsAttack)}
    if len(boxes) > 1:
        raise ValueError(f"the attacks must share one box, got bounds {sorted(boxes)}")
    modes = {a.threat.model_mode for a in attacks if isinstance(a, (LinfAttack, FGSM))}
    if len(modes) > 1:
        raise ValueError(
            f"the attacks must run the model in one mode, got model_mode {sorted(modes)}: "
            "the clean accuracy would depend on which one is used"
        )
    if not boxes:
        return None
    return ThreatModel(boxes.pop(), "ce", modes.pop() if modes else "eval")


def attack_names(specs: Sequence[AttackSpec]) -> list[str]:
    """A short name per attack (``APGD-CE``, ``FAB-T``, ...), unique within the evaluation."""
    names: list[str] = []
    for spec in specs:
        label = short_name(spec)
        names.append(label if label not in names else f"{label} #{len(names) + 1}")
    return names


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
