"""The NumPy backend: attacks on models that supply logits and their vector-Jacobian product.

NumPy has no autograd, so a NumPy model states its own derivative: ``model.vjp(x, cotangent)``
is the gradient of ``sum(cotangent * model(x))`` with respect to ``x``. Together with the
closed-form logit gradients of the built-in losses, that gives the input gradient.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Protocol, TypeAlias, runtime_checkable

import numpy as np

from signattack._typing import Array
from signattack.backends._protocol import Checks, ModelMode
from signattack.core.losses import LogitLoss, LossFunction

__all__ = ["LinearClassifier", "NumpyModel"]

Float: TypeAlias = np.float16 | np.float32 | np.float64 | np.longdouble
FloatArray: TypeAlias = np.ndarray[tuple[int, ...], np.dtype[Float]]
"""A NumPy array of real floats, of any shape."""


@runtime_checkable
class NumpyModel(Protocol):
    """A classifier on NumPy arrays that can differentiate itself."""

    def __call__(self, x: FloatArray) -> FloatArray:
        """Logits of shape ``(batch, classes)`` for inputs ``x`` of shape ``(batch, ...)``."""
        ...

    def vjp(self, x: FloatArray, cotangent: FloatArray) -> FloatArray:
        """Gradient of ``sum(cotangent * self(x))`` with respect to ``x``; ``x``'s shape."""
        ...


@dataclass(frozen=True)
class LinearClassifier:
    """Multinomial logistic regression ``z = W flatten(x) + b``, a ready-made
    [`NumpyModel`][signattack.backends.numpy_backend.NumpyModel].

    Attributes:
        weight: ``W``, shape ``(classes, features)``.
        bias: ``b``, shape ``(classes,)``.
    """

    weight: FloatArray
    bias: FloatArray

    def __post_init__(self) -> None:
        for name, value in (("weight", self.weight), ("bias", self.bias)):
            if not isinstance(value, np.ndarray):
                raise TypeError(f"{name} must be a numpy.ndarray, got {type(value).__name__}")
            if not np.issubdtype(value.dtype, np.floating):
                raise TypeError(f"{name} must have a floating dtype, got {value.dtype}")
            if not np.all(np.isfinite(value)):
                raise ValueError(f"{name} must be finite, got NaN or Inf entries")
        if self.weight.ndim != 2 or 0 in self.weight.shape:
            raise ValueError(
                f"weight must have shape (classes, features), both >= 1, got {self.weight.shape}"
            )
        if self.bias.shape != (self.weight.shape[0],):
            raise ValueError(
                f"bias must have shape ({self.weight.shape[0]},) to match weight, "
                f"got {self.bias.shape}"
            )

    def __call__(self, x: FloatArray) -> FloatArray:
        """Logits ``x.reshape(batch, -1) @ W.T + b``."""
        logits: FloatArray = x.reshape(x.shape[0], -1) @ self.weight.T + self.bias
        return logits

    def vjp(self, x: FloatArray, cotangent: FloatArray) -> FloatArray:
        """``(cotangent @ W)`` reshaped to ``x``'s shape."""
        grad: FloatArray = (cotangent @ self.weight).reshape(x.shape)
        return grad


@dataclass
class NumpyBackend:
    """[`Backend`][signattack.backends.Backend] for a
    [`NumpyModel`][signattack.backends.numpy_backend.NumpyModel] and a differentiable loss.

    Attributes:
        model: The classifier.
        loss: Per-sample loss on logits.
        logit_gradient: Gradient of the summed loss with respect to the logits.
    """

    model: Callable[[FloatArray], FloatArray]
    loss: LossFunction

    def prepare(self, x: Array) -> Array:
        """NumPy arrays need no preparation; ``x`` is returned as is."""
        return x

    def value_and_grad(
        self, x: Array, y: Array, checks: Checks | None = None
    ) -> tuple[Array, Array, Array]:
        """Losses, the input gradient (the logit gradient through ``vjp``) and the logits.

        Raises:
            TypeError: The model has no ``vjp``, or the loss no closed-form logit gradient
                (NumPy has no autograd): only gradient-free attacks run on them.
        """
        model, logit_gradient = self._differentiable()
        inputs = _ndarray(x)
        logits = model(inputs)
        if checks is not None:
            checks.logits(logits, y)
        losses = self.loss(logits, y)
        if checks is not None:
            checks.losses(losses, y)
        cotangent = _ndarray(logit_gradient(logits, y))
        return losses, model.vjp(inputs, cotangent), logits

    def _differentiable(self) -> tuple[NumpyModel, LossFunction]:
        """The model and the loss's logit gradient, where both can differentiate."""
        if not isinstance(self.model, NumpyModel):
            raise TypeError(
                "a gradient attack on NumPy inputs needs a model that implements "
                "signattack.backends.NumpyModel (__call__ returning logits and vjp(x, "
                f"cotangent)), got {type(self.model).__name__}; a gradient-free attack "
                "(signattack.Square) runs on any function"
            )
        gradient = self.loss.logit_gradient if isinstance(self.loss, LogitLoss) else None
        if gradient is None:
            raise TypeError(
                "a gradient attack on NumPy inputs needs loss 'ce', 'margin', 'dlr' or a "
                "signattack.core.LogitLoss with a logit_gradient (NumPy has no autograd), "
                f"got {self.loss!r}"
            )
        return self.model, gradient

    def logits(self, x: Array) -> Array:
        """The model's output."""
        return self.model(_ndarray(x))


def _ndarray(value: Array) -> FloatArray:
    """``value``, an array of this backend: a NumPy array of floats."""
    if not isinstance(value, np.ndarray):
        raise TypeError(f"the NumPy backend takes NumPy arrays, got {type(value).__name__}")
    return value


@contextmanager
def open_numpy_backend(
    model: object, x: object, loss: LossFunction, model_mode: ModelMode
) -> Iterator[NumpyBackend]:
    """Open a `NumpyBackend`; ``model_mode`` has no meaning for NumPy models.

    Any function from NumPy inputs to logits is a model: forward passes need nothing more. A
    gradient needs a [`NumpyModel`][signattack.backends.numpy_backend.NumpyModel] (with ``vjp``) and
    a loss with a closed-form logit gradient; without them the first gradient asked for is a
    ``TypeError``.

    Raises:
        TypeError: ``model`` is not callable.
    """
    del x, model_mode
    if not callable(model):
        raise TypeError(
            "with NumPy inputs, model must be a function returning logits, or a "
            "signattack.backends.NumpyModel (__call__ returning logits and vjp(x, cotangent)) "
            f"for gradient attacks, got {type(model).__name__}"
        )
    yield NumpyBackend(model, loss)
