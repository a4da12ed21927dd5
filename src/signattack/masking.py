"""Gradients through what masks them: straight-through estimators (BPDA).

A defense that puts a non-differentiable step before the network (a quantizer, JPEG-like
compression, a purifier) hands every gradient attack a zero or useless gradient, and the
attack reports a robustness that is not there. Backward Pass Differentiable Approximation
(Athalye, Carlini & Wagner, ICML 2018) keeps the step in the forward pass and replaces it in
the backward pass by the identity, or by a differentiable stand-in that approximates it:

    model = torch.nn.Sequential(Lambda(straight_through(quantize)), network)

The forward pass is exactly ``fn(x)``: the attack still attacks the defended model, and
only its gradient changes. Works on PyTorch tensors and JAX arrays; on other arrays (NumPy,
whose models give their own ``vjp``) it applies ``fn``.
"""

from __future__ import annotations

from collections.abc import Callable

from signattack._typing import ArrayT, returned

__all__ = ["straight_through"]


def straight_through(
    fn: Callable[[ArrayT], ArrayT], backward: Callable[[ArrayT], ArrayT] | None = None
) -> Callable[[ArrayT], ArrayT]:
    """``fn`` in the forward pass, the identity (or ``backward``) in the backward pass.

    Args:
        fn: The step that masks gradients, ``x -> fn(x)`` of the same shape.
        backward: A differentiable stand-in whose vector-Jacobian product replaces
            ``fn``'s (``None``: the identity, ``d fn / dx = I``).

    Returns:
        A function of tensors or JAX arrays whose value is exactly ``fn(x)`` and whose
        gradient is ``backward``'s.

    Raises:
        TypeError: ``fn`` or ``backward`` is not callable.
    """
    for name, value in (("fn", fn), ("backward", backward)):
        if value is not None and not callable(value):
            raise TypeError(f"{name} must be callable, got {type(value).__name__} {value!r}")

    def applied(x: ArrayT) -> ArrayT:
        module = type(x).__module__
        if module.startswith("torch"):
            from signattack.backends.torch_backend import straight_through_torch

            return returned(straight_through_torch(fn, backward, x), x)
        if module.startswith("jax"):
            from signattack.backends.jax_backend import straight_through_jax

            return returned(straight_through_jax(fn, backward, x), x)
        return fn(x)

    applied.__name__ = f"straight_through({getattr(fn, '__name__', type(fn).__name__)})"
    applied.__qualname__ = applied.__name__
    return applied
