"""What every attack is and returns: the :class:`Attack` protocol and :class:`AttackResult`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Generic, Protocol, runtime_checkable

import numpy as np

from signattack._typing import ArrayT, Model
from signattack.core.validation import Bounds

__all__ = [
    "Attack",
    "AttackResult",
    "EpsAttack",
    "PerSampleAttack",
    "check_flag",
    "store_checked",
]


def store_checked(attack: object, name: str, checked: float) -> None:
    """Store a NumPy scalar setting of a frozen attack as the Python number it was checked
    as; a Python int or float stays as given (``eps=8`` keeps showing as 8)."""
    if type(getattr(attack, name)) not in (int, float):
        object.__setattr__(attack, name, checked)


def check_flag(name: str, value: object) -> None:
    """Check that a setting is a ``bool``."""
    if not isinstance(value, bool):
        raise TypeError(f"{name} must be a bool, got {type(value).__name__} {value!r}")


@dataclass(frozen=True)
class AttackResult(Generic[ArrayT]):
    """Everything one attack call produced, in the caller's array type and device.

    Attributes:
        x_adv: The adversarial batch, same shape, dtype and device as the input.
        losses: Per-sample loss trace of shape ``(steps + 1, batch)``: row 0 at the clean
            input, row ``k`` after step ``k``. The data of a "loss vs attack step" plot.
        predictions: The model's predicted class for each adversarial sample, ``(batch,)``.
        success: ``(batch,)`` booleans: misclassified (untargeted) or classified as the
            target (targeted).
    """

    x_adv: ArrayT
    losses: ArrayT
    predictions: ArrayT
    success: ArrayT


@runtime_checkable
class Attack(Protocol):
    """An adversarial attack: a callable that turns a batch into an adversarial batch.

    Any object with these two methods is an attack; :class:`~signattack.FGSM`,
    :class:`~signattack.IteratedSign`, :class:`~signattack.APGD` and
    :class:`~signattack.APGDT` are four.
    """

    def __call__(self, model: Model[ArrayT], x: ArrayT, y: ArrayT) -> ArrayT:
        """The adversarial batch for inputs ``x`` with labels (or targets) ``y``."""
        ...

    def run(self, model: Model[ArrayT], x: ArrayT, y: ArrayT) -> AttackResult[ArrayT]:
        """The adversarial batch with its loss trace, predictions and success mask."""
        ...


@runtime_checkable
class EpsAttack(Attack, Protocol):
    """An attack under the L-inf threat model that an evaluation can sweep over radii.

    What :func:`~signattack.evaluation.evaluate` needs beyond :class:`Attack`: the radius and
    a copy at another radius, the box every input must lie in, the seed, and ``run`` with
    an explicit generator, so that a resumed or sharded evaluation draws what an
    uninterrupted one draws. Every attack of signattack is one.
    """

    @property
    def eps(self) -> float:
        """The radius of the L-inf ball."""
        ...

    @property
    def bounds(self) -> Bounds | tuple[float, float]:
        """The box ``(lower, upper)`` every input lies in."""
        ...

    @property
    def seed(self) -> int | None:
        """The seed of the attack's random draws (``None``: fresh entropy)."""
        ...

    def with_eps(self, eps: float) -> EpsAttack:
        """The same attack with radius ``eps``."""
        ...

    def run(
        self,
        model: Model[ArrayT],
        x: ArrayT,
        y: ArrayT,
        *,
        rng: np.random.Generator | None = None,
    ) -> AttackResult[ArrayT]:
        """The adversarial batch with its loss trace, predictions and success mask; random
        draws come from ``rng`` when given."""
        ...


@runtime_checkable
class PerSampleAttack(EpsAttack, Protocol):
    """An :class:`EpsAttack` that can also give every sample a radius of its own.

    What :func:`~signattack.evaluation.smallest_breaking_eps` needs to bisect every sample's
    radius in one batch. :class:`~signattack.IteratedSign` and :class:`~signattack.FGSM`
    are two.
    """

    def run_per_sample(
        self, model: Model[ArrayT], x: ArrayT, y: ArrayT, eps: ArrayT
    ) -> AttackResult[ArrayT]:
        """:meth:`run` with radius ``eps[i]`` for sample ``i`` (``eps`` of shape
        ``(batch,)``, in ``x``'s library and on its device)."""
        ...
