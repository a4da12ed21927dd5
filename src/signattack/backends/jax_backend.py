"""The JAX backend: any JAX-traceable function from inputs to logits.

A JAX model is a function ``model(x) -> logits`` (a Flax, Equinox or Haiku model closed over
its parameters, or plain ``jax.numpy``). JAX has no graph to keep and no parameters to
touch, so the backend is the three methods of the protocol: the input gradient comes from
``jax.value_and_grad`` of the summed per-sample loss, with the losses and logits as its
auxiliary output. JAX arrays are immutable: the attacks never write into them.

This module imports jax; :mod:`signattack` loads it only when it is handed a JAX array.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import jax

from signattack._typing import Array
from signattack.backends._protocol import Checks, ModelMode
from signattack.core.losses import LogitLoss, LossFunction

__all__ = ["JaxBackend", "open_jax_backend"]


def native_loss(loss: LossFunction) -> LossFunction:
    """The loss to differentiate: a built-in loss with its closed-form logit gradient.

    Autograd through the array-API cross-entropy routes round-off through the max-shift of
    log-sum-exp, which for confidently classified samples outweighs the true gradient (the
    PyTorch backend has a native function for the same reason). A :class:`LogitLoss` with a
    ``logit_gradient`` becomes a ``jax.custom_vjp`` function whose backward pass is that
    gradient, so JAX differentiates the model only, and every backend climbs the same loss.
    """
    if not isinstance(loss, LogitLoss) or loss.logit_gradient is None:
        return loss
    gradient = loss.logit_gradient

    @jax.custom_vjp
    def closed_form(logits: Array, labels: Array) -> Array:
        return loss.value(logits, labels)

    def forward(logits: Array, labels: Array) -> tuple[Array, tuple[Array, Array]]:
        return loss.value(logits, labels), (logits, labels)

    def backward(saved: tuple[Array, Array], cotangent: Array) -> tuple[Array, None]:
        logits, labels = saved
        return gradient(logits, labels) * cotangent[:, None], None

    closed_form.defvjp(forward, backward)
    return closed_form


@dataclass
class JaxBackend:
    """:class:`~signattack.backends.Backend` for a JAX function on ``jax.Array`` inputs."""

    model: Callable[[Any], Any]
    loss: LossFunction

    def prepare(self, x: Array) -> Array:
        """JAX arrays are immutable constants already."""
        return x

    def logits(self, x: Array) -> Array:
        """The model's output."""
        return self.model(x)

    def value_and_grad(
        self, x: Array, y: Array, checks: Checks | None = None
    ) -> tuple[Array, Array, Array]:
        """Losses, ``jax.grad`` of their sum with respect to ``x``, and the logits."""
        if checks is not None:  # checked eagerly, outside the differentiated function
            logits = self.model(x)
            checks.logits(logits, y)
            checks.losses(self.loss(logits, y), y)

        def total(inputs: Array) -> tuple[Array, tuple[Array, Array]]:
            logits = self.model(inputs)
            losses = self.loss(logits, y)
            return losses.sum(), (losses, logits)

        (_, (losses, logits)), grad = jax.value_and_grad(total, has_aux=True)(x)
        return losses, grad, logits


@contextmanager
def open_jax_backend(
    model: object, x: Array, loss: LossFunction, model_mode: ModelMode
) -> Iterator[JaxBackend]:
    """Open a :class:`JaxBackend`; ``model_mode`` has no meaning for a JAX function.

    Raises:
        TypeError: ``model`` is not callable.
    """
    del x, model_mode
    if not callable(model):
        raise TypeError(f"model must be a JAX function x -> logits, got {type(model).__name__}")
    yield JaxBackend(model, native_loss(loss))
