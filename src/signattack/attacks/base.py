"""What every attack is and returns: the :class:`Attack` protocol and :class:`AttackResult`."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Generic, Protocol, runtime_checkable

from signattack._typing import ArrayT

__all__ = ["Attack", "AttackResult"]


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

    Any object with these two methods is an attack; :class:`~signattack.FGSM` and
    :class:`~signattack.IteratedSign` are two.
    """

    def __call__(self, model: Callable[[ArrayT], ArrayT], x: ArrayT, y: ArrayT) -> ArrayT:
        """The adversarial batch for inputs ``x`` with labels (or targets) ``y``."""
        ...

    def run(self, model: Callable[[ArrayT], ArrayT], x: ArrayT, y: ArrayT) -> AttackResult[ArrayT]:
        """The adversarial batch with its loss trace, predictions and success mask."""
        ...
