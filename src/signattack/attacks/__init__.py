"""Attacks: the [`Attack`][signattack.attacks.Attack] protocol, its result type, the attacks (L-inf,
and L2 where they take ``norm="l2"``, with [`L2PGD`][signattack.attacks.L2PGD]), and what an attack
author needs to write a new one.

An attack author imports from here alone: [`BallAttack`][signattack.attacks.BallAttack] (the shared
settings, their checks, the norm carried by ``threat``, ``with_eps`` and ``__call__``; formerly
``LinfAttack``), [`open_threat`][signattack.attacks.open_threat] (the validated
[`Batch`][signattack.attacks.Batch] of one call, with its open backend),
[`iterate`][signattack.attacks.iterate] (the one loop) and the rule protocol it runs
([`UpdateRule`][signattack.attacks.UpdateRule], [`Start`][signattack.attacks.Start],
[`Evaluated`][signattack.attacks.Evaluated]). See the docs page "Writing an attack".
"""

from signattack.attacks.apgd import APGD, APGDT
from signattack.attacks.base import (
    Attack,
    AttackResult,
    BallAttack,
    EpsAttack,
    LinfAttack,
    PerSampleAttack,
)
from signattack.attacks.fab import FABT
from signattack.attacks.loop import LoopResult, iterate
from signattack.attacks.pgd_l2 import L2PGD
from signattack.attacks.sign import FGSM, IteratedSign
from signattack.attacks.square import Square
from signattack.backends.batch import Batch, open_threat
from signattack.core.rules import Evaluated, Start, UpdateRule

__all__ = [
    "APGD",
    "APGDT",
    "FABT",
    "FGSM",
    "L2PGD",
    "Attack",
    "AttackResult",
    "BallAttack",
    "Batch",
    "EpsAttack",
    "Evaluated",
    "IteratedSign",
    "LinfAttack",
    "LoopResult",
    "PerSampleAttack",
    "Square",
    "Start",
    "UpdateRule",
    "iterate",
    "open_threat",
]
