"""Attacks: the :class:`Attack` protocol, its result type, and the L-inf sign attacks."""

from signattack.attacks.apgd import APGD, APGDT
from signattack.attacks.base import Attack, AttackResult, EpsAttack, PerSampleAttack
from signattack.attacks.sign import FGSM, IteratedSign

__all__ = [
    "APGD",
    "APGDT",
    "FGSM",
    "Attack",
    "AttackResult",
    "EpsAttack",
    "IteratedSign",
    "PerSampleAttack",
]
