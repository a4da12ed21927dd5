"""The attacks ``--attack``/``--attacks`` select: a preset as the library builds it, with the
options as its arguments, or single attacks; a setting no selected attack takes is refused,
and the line that says what ran is read from the attacks themselves."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from signattack._cli_args import UsageError, numbers

if TYPE_CHECKING:
    from signattack.attacks import EpsAttack

ATTACK_NAMES = ("iterated", "fgsm", "apgd-ce", "apgd-dlr", "apgd-t", "fab-t", "square")
"""What ``--attacks`` accepts, besides the presets."""

PRESETS = ("standard", "fast", "gradient", "rand")
"""The presets of ``--attacks``: AutoAttack's standard suite, its gradient members, and its
version for randomized defenses, as the library builds them."""

DEFAULT_STEPS = 10
"""Steps of a single gradient attack; a preset has the library's (100, the paper's)."""


SETTINGS = {
    "steps": "--steps",
    "queries": "--queries",
    "eot": "--eot",
    "step_size": "--step-size",
    "loss": "--loss",
    "random_start": "--random-start",
    "early_stop": "--early-stop",
}
"""The options that set an attack's field of the same name; one given that no selected
attack takes is refused."""


def _attack_names(args: argparse.Namespace) -> list[str]:
    if args.attacks is None:
        return [args.attack]
    names = [part.strip() for part in args.attacks.split(",")]
    unknown = [name for name in names if name not in ATTACK_NAMES]
    if not names or unknown or not all(names):
        raise UsageError(
            f"--attacks must be a preset ({', '.join(PRESETS)}) or comma-separated names "
            f"from {', '.join(ATTACK_NAMES)}, got {args.attacks!r}"
        )
    return names


def _preset(args: argparse.Namespace) -> str | None:
    """The preset that ``--attacks`` names, if it names one."""
    if args.attacks is not None and args.attacks.strip() in PRESETS:
        preset: str = args.attacks.strip()
        return preset
    return None


def _given(**settings: object) -> dict[str, Any]:
    """The settings the user gave (``None``: not given, the attack's own default)."""
    return {name: value for name, value in settings.items() if value is not None}


def selected_attacks(args: argparse.Namespace, box: tuple[float, float]) -> Sequence[EpsAttack]:
    """The attacks the options select: a preset as the library builds it, with the options
    as its arguments (an [`AttackSuite`][signattack.evaluation.AttackSuite]), or single attacks.

    Raises:
        UsageError: An option sets what no selected attack takes, or a setting is invalid.
    """
    from signattack.evaluation import (
        AttackSuite,
        fast_attacks,
        gradient_attacks,
        rand_attacks,
        standard_attacks,
    )

    preset = _preset(args)
    common = _given(steps=args.steps, bounds=box, seed=args.seed, norm=_norm(args))
    share = audit_share(args.audit)
    try:
        attacks: Sequence[EpsAttack]
        if preset == "standard":
            suite = standard_attacks(**common, **_given(queries=args.queries))
            if args.eot is not None:  # the passes of its version for randomized models
                rand = rand_attacks(**common, eot=args.eot)
                suite = AttackSuite(suite.name, suite, randomized=rand)
            attacks = suite
        elif preset == "fast":
            if args.eot is not None:
                raise UsageError(
                    "--eot: the fast preset takes no EOT passes; for a randomized model use "
                    "--attacks rand or standard"
                )
            budget = _given(queries=args.queries, target_steps=args.steps)
            if args.queries is not None:  # the probe never exceeds the whole search
                budget["probe"] = min(300, args.queries)
            # The audit's and the escalation's reference: --attacks standard with these flags.
            reference = standard_attacks(**common, **_given(queries=args.queries))
            attacks = fast_attacks(
                **common,
                **budget,
                audit=share,
                escalate=not args.no_escalate,
                reference=reference,
            )
        elif preset is not None:
            build = gradient_attacks if preset == "gradient" else rand_attacks
            attacks = build(**common, **_given(eot=args.eot))
        else:
            attacks = [_attack(name, args, box) for name in _attack_names(args)]
    except (TypeError, ValueError) as error:
        raise UsageError(f"the attack's settings: {error}") from None
    _check_settings(args, attacks)
    _check_audit(args, attacks)
    return attacks


def audit_share(text: str | None) -> float | None:
    """``--audit SHARE`` as a share of the samples (``None``: not given).

    Raises:
        UsageError: It is not one number in ``(0, 1]`` (``0.1`` or ``1/10``).
    """
    if text is None:
        return None
    wanted = f"--audit must be a share of the samples in (0, 1] such as 0.1 or 1/10, got {text!r}"
    try:
        share = numbers(text, "--audit", count=1)[0]
    except UsageError as error:  # not a number: why, after what is wanted
        raise UsageError(f"{wanted}{str(error).partition(repr(text))[2]}") from None
    if not 0 < share <= 1:  # NaN fails too
        raise UsageError(wanted)
    return share


def _check_audit(args: argparse.Namespace, attacks: Sequence[EpsAttack]) -> None:
    """Refuse ``--audit`` and ``--no-escalate`` where the selected attacks are not audited
    (any but the fast preset), read from the attacks themselves."""
    from signattack.evaluation._audit import AuditedSuite

    if isinstance(attacks, AuditedSuite):
        return
    given = [f"--audit {args.audit}"] if args.audit is not None else []
    given += ["--no-escalate"] if args.no_escalate else []
    if given:
        names = ", ".join(dict.fromkeys(name_of(attack) for attack in members(attacks)))
        raise UsageError(
            f"{given[0]} applies to none of the selected attacks ({names}): only --attacks "
            "fast is audited and escalated"
        )


def _attack(name: str, args: argparse.Namespace, box: tuple[float, float]) -> EpsAttack:
    """One attack named in ``--attacks``; its radius is replaced by the evaluation."""
    from signattack.attacks import APGD, APGDT, FABT, FGSM, L2PGD, IteratedSign, Square

    steps = DEFAULT_STEPS if args.steps is None else args.steps
    options = _given(eot=args.eot, loss=args.loss)
    stops: dict[str, Any] = {"early_stop": True} if args.early_stop else {}
    seeded = {"bounds": box, "seed": args.seed, **_given(norm=_norm(args))}
    if name == "fgsm":
        if _norm(args) is not None:
            raise UsageError(
                f"--norm {args.norm}: fgsm is the one-step L-inf sign attack; under "
                f"{args.norm} use --attacks iterated (PGD-L2), apgd-ce, apgd-t, fab-t, square "
                "or standard"
            )
        return FGSM(0.0, bounds=box, **options)
    if name == "iterated":
        extra = _given(step_size=args.step_size, random_start=args.random_start or None)
        if _norm(args) == "l2":  # the iterated attack of the L2 ball: PGD-L2
            return L2PGD(0.0, steps, bounds=box, seed=args.seed, **options, **stops, **extra)
        return IteratedSign(0.0, steps, **seeded, **options, **stops, **extra)
    if name == "square":
        return Square(0.0, **_given(queries=args.queries), **seeded)
    if name == "fab-t":
        return FABT(0.0, steps, **seeded)
    gradient = {**seeded, **stops, **_given(eot=args.eot)}
    if name == "apgd-t":
        return APGDT(0.0, steps, **gradient)
    return APGD(0.0, steps, loss="dlr" if name == "apgd-dlr" else "ce", **gradient)


def _norm(args: argparse.Namespace) -> str | None:
    """``--norm`` as the attacks' ``norm=``; ``None`` for L-inf, every attack's default."""
    norm: str = args.norm
    return None if norm == "linf" else norm


def members(attacks: Sequence[EpsAttack]) -> list[EpsAttack]:
    """The attacks, with those of a suite's version for randomized models."""
    from signattack.evaluation import AttackSuite

    alternative = attacks.randomized if isinstance(attacks, AttackSuite) else None
    return [*attacks, *(alternative or ())]


def _check_settings(args: argparse.Namespace, attacks: Sequence[EpsAttack]) -> None:
    """Refuse an option that no selected attack took, read from the attacks' own fields."""
    selected = members(attacks)
    for name, flag in SETTINGS.items():
        wanted = getattr(args, name)
        if wanted is None or wanted is False:
            continue
        if not any(_fields(attack).get(name, None) == wanted for attack in selected):
            shown = "" if wanted is True else f" {wanted}"
            names = ", ".join(dict.fromkeys(name_of(attack) for attack in selected))
            raise UsageError(
                f"{flag}{shown} applies to none of the selected attacks ({names}): "
                f"{'it takes' if len(selected) == 1 else 'they take'} no such setting"
            )


def _fields(attack: object) -> dict[str, object]:
    from signattack._fields import field_values

    return field_values(attack) or {}


def name_of(attack: EpsAttack) -> str:
    """The name a paper gives ``attack`` (``APGD-CE``), without its EOT."""
    from signattack._fields import replaced
    from signattack.evaluation.standard import traits_of

    eot = _fields(attack).get("eot", 1)
    return traits_of(
        replaced(attack, {"eot": 1}) if isinstance(eot, int) and eot > 1 else attack
    ).name


def _label(attack: EpsAttack) -> str:
    """An attack as the output names it: its name and its budget, from its own fields."""
    fields = _fields(attack)
    units = {"steps": "step", "queries": "query"}
    budget = [
        f"{fields[key]} {key if fields[key] != 1 else unit}"
        for key, unit in units.items()
        if key in fields
    ]
    eot = fields.get("eot", 1)
    if isinstance(eot, int) and eot > 1:
        budget.append(f"EOT over {eot} passes")
    name = name_of(attack)
    if not budget:
        return name
    if name.endswith(")"):  # "APGD-T (boundary)": one pair of brackets
        return f"{name[:-1]}, {', '.join(budget)})"
    return f"{name} ({', '.join(budget)})"


def what_ran(attacks: Sequence[EpsAttack], args: argparse.Namespace, randomized: bool) -> str:
    """One line naming the attacks that ran with their budgets, read from the attacks (on a
    randomized model, a preset's version for such models), and which ones ``--eot`` is in."""
    from signattack.evaluation import AttackSuite

    preset = _preset(args)
    ran: Sequence[EpsAttack] = attacks
    head = f"attacks ({preset} preset)" if preset is not None else "attacks"
    if randomized and isinstance(attacks, AttackSuite) and attacks.randomized is not None:
        ran = attacks.randomized
        head = f"attacks ({preset} preset, its {ran.name} version: the model is randomized)"
    line = f"{head}: {', '.join(_label(attack) for attack in ran)}" + _audit_note(ran, args)
    taking = [name_of(attack) for attack in ran if _fields(attack).get("eot") == args.eot]
    if args.eot is None or len(taking) == len(ran):
        return line
    if taking:
        return f"{line}; --eot {args.eot} applies to {', '.join(taking)} only"
    return f"{line}; --eot {args.eot} applies to the rand version, run on a randomized model"


def _audit_note(ran: Sequence[EpsAttack], args: argparse.Namespace) -> str:
    """What ``--audit`` and ``--no-escalate`` add to the attacks that ran, read from them: the
    audit's share and the escalation, or that the version that ran has neither."""
    from signattack.evaluation._audit import AuditedSuite

    if not isinstance(ran, AuditedSuite):
        given = args.audit is not None or args.no_escalate
        return "; neither audited nor escalated: the rand version has no audit" if given else ""
    plan = ran.audit
    parts = [] if plan.share is None else [f"{plan.share:.4g} of the samples audited"]
    parts += [] if plan.escalate else ["escalation off"]
    return f"; {', '.join(parts)} (reference: the standard preset)" if parts else ""
