"""The one seam between the attacks and a framework: the :class:`Backend` protocol."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Protocol, TypeAlias

from signattack._typing import Array
from signattack.core.losses import LossFunction
from signattack.core.threat import MODEL_MODES, ModelMode

__all__ = ["MODEL_MODES", "Backend", "BackendFactory", "ModelMode"]


class Backend(Protocol):
    """What an attack needs from a framework: losses, input gradients and predictions.

    A backend is opened for one attack call (see :data:`BackendFactory`) and holds the model
    and the loss. All arrays it takes and returns belong to the caller's array library.
    """

    def prepare(self, x: Array) -> Array:
        """Return ``x`` as a constant the attack may read but never writes.

        For PyTorch: detached from any autograd graph and usable outside inference mode.
        """
        ...

    def value_and_grad(self, x: Array, y: Array) -> tuple[Array, Array, Array]:
        """Per-sample losses, the input gradient of their sum, and the predicted classes.

        Losses and predictions have shape ``(batch,)``; the gradient has ``x``'s shape and
        dtype. All three come from one forward pass. Parameter gradients are never computed.
        """
        ...

    def logits(self, x: Array) -> Array:
        """The model's output at ``x``, ``(batch, classes)``, without any graph."""
        ...

    def evaluate(self, x: Array, y: Array) -> tuple[Array, Array]:
        """Per-sample losses ``(batch,)`` and predicted classes ``(batch,)`` at ``x``."""
        ...


BackendFactory: TypeAlias = Callable[
    [object, Array, LossFunction, ModelMode], AbstractContextManager[Backend]
]
"""``factory(model, x, loss, model_mode)`` opens a :class:`Backend` for one attack call.

The context manager puts the model in the requested mode on entry and restores everything it
changed on exit, also when the attack raises.
"""
