"""How an evaluation is given its attacks: an attack, a factory ``eps -> attack``, or a
sequence of them (the types [`AttackSpec`][signattack.evaluation._specs.AttackSpec] and
[`Attacks`][signattack.evaluation._specs.Attacks]), and the attack a spec makes at a radius, and the
norm an attack says it works in (`norm_said`, read from its ``threat``) and the one norm a suite
shares (`shared_norm`). Below everything else
of the evaluation: it imports only the attacks and the core."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Protocol, runtime_checkable

from signattack.attacks import Attack, EpsAttack
from signattack.core.linf import LINF
from signattack.core.norms import Norm
from signattack.core.threat import ThreatModel
from signattack.evaluation._cost import said_name

AttackFactory = Callable[[float], Attack]
"""A factory ``eps -> attack``."""

AttackSpec = EpsAttack | AttackFactory
"""An attack to run at every eps: an attack whose radius is replaced
([`EpsAttack`][signattack.EpsAttack]:
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


@runtime_checkable
class _Threatened(Protocol):
    """An attack that says its threat model (its box, loss, mode and norm)."""

    @property
    def threat(self) -> ThreatModel: ...


def norm_said(attack: Attack) -> Norm | None:
    """The norm of ``attack``'s ball, read from its ``threat``; ``None`` where it says none
    (an attack of another library, made by a factory)."""
    if isinstance(attack, _Threatened):
        threat = attack.threat
        if isinstance(threat, ThreatModel):
            return threat.geometry
    return None


def shared_norm(attacks: Sequence[Attack]) -> Norm:
    """The one norm the attacks of an evaluation share: every ball is checked, every
    perturbation measured and every file labelled in it. L-inf where no attack says one.

    Raises:
        ValueError: Two attacks work in different norms (the message names each attack
            and its norm): one evaluation never mixes them, since its radii, its largest
            perturbation and its report would mean two things at once.
    """
    said = [(attack, norm_said(attack)) for attack in attacks]
    norms = {norm.name: norm for _, norm in said if norm is not None}
    if len(norms) > 1:
        named = ", ".join(_in_norm(attack, norm) for attack, norm in said if norm is not None)
        raise ValueError(
            f"the attacks of one evaluation must share one norm, got {named}: evaluate "
            "each norm on its own (standard_attacks(norm=...) builds a suite per norm)"
        )
    return next(iter(norms.values()), LINF)


def _in_norm(attack: Attack, norm: Norm) -> str:
    """The attack's name with its norm, which is said once: ``APGD-CE (L2)``, never
    ``APGD-CE (L2) (L2)`` where the name already says it."""
    label = _label(attack)
    said = f"({norm.title})"
    return label if said in label else f"{label} {said}"


def _label(attack: Attack) -> str:
    return said_name(attack)
