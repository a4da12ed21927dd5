"""The attacks an evaluation runs: how they are given, what the evaluation asks of each
(`traits_of`), the threat model they share (one box, one mode, one norm), and the
presets of a trustworthy evaluation, L-inf or L2, with their published settings."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol, TypedDict, runtime_checkable

from signattack._io import Json
from signattack.attacks import (
    APGD,
    APGDT,
    FABT,
    Attack,
    EpsAttack,
    Square,
)
from signattack.core.norms import Norm, NormName, norm_of
from signattack.core.threat import ModelMode, ThreatModel
from signattack.core.validation import Bounds, check_bounds, check_seed, check_steps
from signattack.evaluation._cost import library_made, said_name, says_name
from signattack.evaluation._specs import (
    AttackFactory,
    Attacks,
    AttackSpec,
    _Threatened,
    norm_said,
    shared_norm,
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
class _Declaring(Protocol):
    """An attack that says whether it asks for gradients."""

    @property
    def gradient_free(self) -> bool: ...


@dataclass(frozen=True)
class AttackTraits:
    """What an evaluation asks of an attack it made (never of the spec or the factory that
    made it): see `traits_of`.

    Attributes:
        name: The name a paper gives it (``APGD-CE``, ``APGD-T``, ``FAB-T``, ``Square``)
            where its class is the library's, the name a user's class defines itself, else
            its class's name (`said_name`), with ``(EOT n)`` where it averages ``n`` passes;
            its description where it has no ``name`` at all.
        description: Its settings that differ from the defaults, the radius left out.
        gradient_free: Whether it never asks for a gradient (one that does not say does).
        bounds: Its box, or ``None`` where it has none.
        model_mode: How it runs the model, or ``None`` where it does not say.
        seed: Its seed, or ``None``.
        eot: The passes whose mean logits make each of its predictions (``1`` where it
            does not say).
        norm: The norm of its ball, read from its ``threat``, or ``None`` where it does
            not say (an evaluation then judges it in the norm the others share, L-inf
            where none says).
    """

    name: str
    description: str
    gradient_free: bool
    bounds: Bounds | None
    model_mode: ModelMode | None
    seed: int | None
    eot: int
    norm: Norm | None = None


def traits_of(attack: Attack) -> AttackTraits:
    """What the evaluation asks of ``attack``: the one place that reads an attack's name,
    description, gradient needs, box, model mode, norm, seed and passes per decision.

    An attack that has a ``name`` is named by `said_name`: the paper's name only where its
    class is the library's own, the name a user's class defines itself, else the class's
    name (a user's ``class NoOpAPGD(APGD)`` is ``NoOpAPGD``, never ``APGD-CE``).

    Raises:
        ValueError: The attack's ``eot`` is not an integer ``>= 1``.
    """
    norm = norm_said(attack)
    named = said_name(attack) if says_name(attack) else None
    description = _described(attack, named, norm)
    eot: object = attack.eot if isinstance(attack, _Averaging) else 1
    if isinstance(eot, bool) or not isinstance(eot, int) or eot < 1:
        raise ValueError(f"the attack {description} must have eot an int >= 1, got {eot!r}")
    name = named if named is not None else description
    seed = attack.seed if isinstance(attack, EpsAttack) else None
    return AttackTraits(
        name=f"{name} (EOT {eot})" if eot > 1 and name != description else name,
        description=description,
        gradient_free=isinstance(attack, _Declaring) and attack.gradient_free is True,
        bounds=Bounds(*attack.bounds) if isinstance(attack, EpsAttack) else None,
        model_mode=attack.threat.model_mode if isinstance(attack, _Threatened) else None,
        seed=seed if isinstance(seed, int) and not isinstance(seed, bool) else None,
        eot=eot,
        norm=norm,
    )


def _described(attack: Attack, named: str | None, norm: Norm | None) -> str:
    """`describe`'s settings under the name papers give the attack, where it gives one:
    ``APGD-T(steps=100, seed=0)``, not the class ``APGDT``: what users read (a table's
    footer, a RobustBench entry). What a library attack's name adds in brackets (its norm,
    ``APGD-T (L2)``, or its ranking, ``APGD-T (boundary)``) is said once, among the
    settings (``norm='l2'``, ``ranking='boundary'``), not again in the name."""
    description = describe(attack)
    plain = f"{type(attack).__name__}("
    if not named or not description.startswith(plain):
        return description
    if library_made(attack):
        named = named.split(" (", 1)[0]
    elif norm is not None and norm.name != "linf":
        named = named.removesuffix(f" ({norm.title})")
    return f"{named}({description.removeprefix(plain)}"


def attack_record(attack: Attack) -> dict[str, Json]:
    """What a report's metadata records of an attack it ran: its traits and its settings
    (`stable`; ``None`` where they have no stable description). The settings of an attack
    whose radius the evaluation sets at every eps leave ``eps`` out: it ran at each of the
    report's radii, and no one field holds them (earlier records hold ``eps: 0.0``, a
    placeholder that `runs_autoattack` reads past)."""
    traits = traits_of(attack)
    plain = attack.with_eps(0.0) if isinstance(attack, EpsAttack) else attack
    try:
        settings: Json = stable(plain)
    except Unstable:
        settings = None
    if plain is not attack and isinstance(settings, dict):
        fields = settings.get("fields")
        if isinstance(fields, dict):
            settings["fields"] = {name: value for name, value in fields.items() if name != "eps"}
    return {
        "name": traits.name,
        "description": traits.description,
        "settings": settings,
        "seed": traits.seed,
        "eot": traits.eot,
        "gradient_free": traits.gradient_free,
        "norm": None if traits.norm is None else traits.norm.name,
    }


def decision_draws(traits: Sequence[AttackTraits]) -> int:
    """The passes whose mean logits make every prediction of an evaluation, clean or
    attacked: the most that any of its attacks averages (``1`` for deterministic suites)."""
    return max((t.eot for t in traits), default=1)


def threat_of(attacks: Sequence[Attack]) -> ThreatModel | None:
    """The threat model the attacks share, for judging unattacked inputs: their box, their
    model's mode (the clean pass runs as the attacks judge their own predictions) and their
    norm (`shared_norm`), with cross-entropy, the loss
    every label defines (a targeted attack's loss needs targets); ``None`` if no attack has
    a box (factories of foreign attacks).

    Raises:
        ValueError: Two attacks have different boxes, model modes or norms (the message
            names the attacks and their norms).
    """
    norm = shared_norm(attacks)
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
    return ThreatModel(boxes.pop(), "ce", modes.pop() if modes else "eval", norm)


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
    `MASKING_THRESHOLD` of the samples that the gradient attacks before it left
    robust (each attack as the evaluation made it, a factory's included)."""
    norm = next((t.norm for t in traits if t.norm is not None), None)
    free = [t.gradient_free for t in traits]
    checked = [index for index in range(len(traits)) if free[index] and not all(free[:index])]
    found = []
    for eps, counts in broken_by.items():
        for index in checked:  # gradient-free, after at least one gradient attack
            broken = counts[names[index]]
            if broken > MASKING_THRESHOLD * samples:
                found.append(
                    f"at eps {radius_text(eps, bounds, norm)}, {names[index]} broke {broken} of "
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
    """A named sequence of attacks, run in order by [`evaluate`][signattack.evaluation.evaluate].

    It is a tuple of its attacks; ``randomized``, where given, is the suite that the evaluation runs
    instead when it finds the model randomized (two identical forward passes that differ), as
    AutoAttack runs its "rand" version.

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


def _checked(
    steps: int, bounds: Bounds | tuple[float, float], seed: int, norm: Norm | str
) -> tuple[Bounds, NormName]:
    """The preset's box and norm name, after checking its settings."""
    check_steps(steps)
    check_seed(seed)
    return check_bounds(bounds), norm_of(norm).name


class _Shared(TypedDict):
    """The settings every APGD member of a preset shares."""

    bounds: Bounds
    seed: int
    eot: int
    norm: NormName


def _settings(bounds: Bounds, seed: int, eot: int, norm: NormName) -> _Shared:
    return {"bounds": bounds, "seed": seed, "eot": eot, "norm": norm}


def gradient_attacks(
    steps: int = 100,
    *,
    bounds: Bounds | tuple[float, float] = (0.0, 255.0),
    seed: int = 0,
    eot: int = 1,
    norm: NormName | Norm = "linf",
) -> AttackSuite:
    """APGD-CE, then APGD-T with 9 target classes: the two gradient members of AutoAttack.

    They decide almost every sample of a model whose gradients are informative, in a fraction of the
    standard suite's time, but a model that masks its gradients fools them:
    [`standard_attacks`][signattack.evaluation.standard.standard_attacks] adds Square, which asks
    for none.

    Args:
        steps: Iterations of each run (100 in the paper).
        bounds: The pixel box of the model's inputs.
        seed: Seed of the random starts, for reproducible evaluations.
        eot: Passes averaged per gradient, for a randomized model.
        norm: The norm of the ball: ``"linf"`` or ``"l2"`` (AutoAttack's L2 suite has the
            same members and settings, each under L2).

    Each member runs with ``early_stop=True``: a sample leaves the batch at the first step that
    breaks it, and later restarts and target classes attack the samples still robust only; every
    verdict is the one of the full runs, at fewer model passes.

    Returns:
        ``AttackSuite("gradient", [APGD(0, steps, loss="ce"), APGDT(0, steps)])``, each
        with ``early_stop=True`` and ``norm=norm``.

    Raises:
        TypeError, ValueError: A setting is not what it says above (the message names it).
    """
    box, name = _checked(steps, bounds, seed, norm)
    shared = _settings(box, seed, eot, name)
    return AttackSuite(
        "gradient",
        [
            APGD(0.0, steps, loss="ce", early_stop=True, **shared),
            APGDT(0.0, steps, target_classes=9, early_stop=True, **shared),
        ],
    )


def rand_attacks(
    steps: int = 100,
    *,
    bounds: Bounds | tuple[float, float] = (0.0, 255.0),
    seed: int = 0,
    eot: int = 20,
    norm: NormName | Norm = "linf",
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
        norm: The norm of the ball: ``"linf"`` or ``"l2"``.

    Returns:
        The [`AttackSuite`][signattack.evaluation.standard.AttackSuite] ``"rand"``:
            ``APGD(0, steps, loss="ce", eot=eot)`` and
            ``APGD(0, steps, loss="dlr", eot=eot)``, each with ``early_stop=True`` and
            ``norm=norm``.

    Raises:
        TypeError, ValueError: A setting is not what it says above (the message names it).
    """
    box, name = _checked(steps, bounds, seed, norm)
    check_steps(eot, "eot")
    shared = _settings(box, seed, eot, name)
    return AttackSuite(
        "rand",
        [
            APGD(0.0, steps, loss="ce", early_stop=True, **shared),
            APGD(0.0, steps, loss="dlr", early_stop=True, **shared),
        ],
    )


def standard_attacks(
    steps: int = 100,
    *,
    queries: int = 5000,
    bounds: Bounds | tuple[float, float] = (0.0, 255.0),
    seed: int = 0,
    norm: NormName | Norm = "linf",
) -> AttackSuite:
    """AutoAttack's standard suite (Croce & Hein, 2020), L-inf or L2, with its members'
    settings: APGD-CE, APGD-T with 9 target classes, FAB-T with 9 target classes, then Square with
    5000 queries, each run only on the samples the previous ones left robust. Pass it to
    ``evaluate``.

    AutoAttack runs the same members with the same settings under both norms (its
    ``version="standard"``); ``norm="l2"`` gives each of them ``norm="l2"``. An L2 radius is in the
    box's units like an L-inf one: RobustBench's L2 ``0.5`` on images in ``[0, 1]`` is ``eps=0.5``
    with ``bounds=(0, 1)``, and ``127.5`` on the default ``[0, 255]`` box.

    A sample counts as robust only if every member fails on it, and the evaluation's report flags
    Square breaking samples that the gradient attacks left robust (a sign of gradient masking). On a
    model that the evaluation finds randomized,
    [`rand_attacks`][signattack.evaluation.standard.rand_attacks] runs instead.

    Args:
        steps: Iterations of each APGD and FAB-T run (100 in the paper).
        queries: Square's queries per sample (5000 in the paper).
        bounds: The pixel box of the model's inputs.
        seed: Seed of the random starts and of Square's search, for reproducible
            evaluations.
        norm: The norm of the ball: ``"linf"`` (default) or ``"l2"``.

    Returns:
        The [`AttackSuite`][signattack.evaluation.standard.AttackSuite] ``"standard"``:
            ``APGD(0, steps, loss="ce")``, ``APGDT(0, steps, target_classes=9)`` (both with
            ``early_stop=True``: the same verdicts at fewer passes),
            ``FABT(0, steps, target_classes=9, minimal=False)`` (it leaves a sample at the
            first point it finds within eps: the same verdicts at fewer passes on float
            inputs; on integer images, where rounding can undo a break, the two points may
            round differently), ``Square(0, queries)``, each with ``norm=norm``.

    Raises:
        TypeError, ValueError: A setting is not what it says above (the message names it).
    """
    box, name = _checked(steps, bounds, seed, norm)
    check_steps(queries, "queries")
    gradient = gradient_attacks(steps, bounds=box, seed=seed, norm=name)
    fab = FABT(0.0, steps, target_classes=9, bounds=box, seed=seed, norm=name, minimal=False)
    return AttackSuite(
        "standard",
        [*gradient, fab, Square(0.0, queries, bounds=box, seed=seed, norm=name)],
        randomized=rand_attacks(steps, bounds=box, seed=seed, norm=name),
    )
