"""How an evaluation is given its attacks: an attack, a factory ``eps -> attack``, or a
sequence of them (the types :data:`AttackSpec` and :data:`Attacks`), and the attack a spec
makes at a radius. Below everything else of the evaluation: it imports only the attacks."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from signattack.attacks import Attack, EpsAttack

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
