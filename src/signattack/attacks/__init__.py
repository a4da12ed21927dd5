"""Attacks: the :class:`Attack` protocol, its result type, the L-inf attacks, and what an
attack author needs to write a new one.

An attack author imports from here alone: :class:`LinfAttack` (the shared settings, their
checks, ``with_eps`` and ``__call__``), :func:`open_threat` (the validated :class:`Batch`
of one call, with its open backend), :func:`iterate` (the one loop) and the rule protocol
it runs (:class:`UpdateRule`, :class:`Start`, :class:`Evaluated`). See the docs page
"Writing an attack".
"""

from signattack.attacks.apgd import APGD, APGDT
from signattack.attacks.base import (
    Attack,
    AttackResult,
    EpsAttack,
    LinfAttack,
    PerSampleAttack,
)
from signattack.attacks.fab import FABT
from signattack.attacks.loop import LoopResult, iterate
from signattack.attacks.sign import FGSM, IteratedSign
from signattack.attacks.square import Square
from signattack.backends.batch import Batch, open_threat
from signattack.core.rules import Evaluated, Start, UpdateRule

__all__ = [
    "APGD",
    "APGDT",
    "FABT",
    "FGSM",
    "Attack",
    "AttackResult",
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
