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

What ``fn`` and ``backward`` return is checked at every call, by :func:`output_of` for
every library alike: an array of the input's library, shape, device and dtype.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Callable
from typing import Any, Literal

import array_api_compat

from signattack._typing import ArrayT, device_of, is_array, returned

__all__ = ["straight_through"]

Role = Literal["fn", "backward"]
"""Which of ``straight_through``'s functions produced a value."""


def straight_through(
    fn: Callable[[ArrayT], ArrayT], backward: Callable[[ArrayT], ArrayT] | None = None
) -> Callable[[ArrayT], ArrayT]:
    """``fn`` in the forward pass, the identity (or ``backward``) in the backward pass.

    Both must return an array of the input's library (a tensor for a tensor, a JAX array
    for a JAX array), shape, device and dtype. One conversion is made, because it is exact:
    integer or boolean results of ``fn`` (a quantizer's levels, ``uint8``) are cast to a
    floating input's dtype where that dtype holds every value of theirs exactly (``uint8``
    and ``int8`` into ``float16``, ``bfloat16`` and wider; ``int16`` and ``uint16`` into
    ``float32`` and wider). ``fn`` gets a copy of a tensor, so one that writes into its
    input leaves the caller's tensor as it was.

    Args:
        fn: The step that masks gradients, ``x -> fn(x)`` of the same shape.
        backward: A differentiable stand-in whose vector-Jacobian product replaces
            ``fn``'s (``None``: the identity, ``d fn / dx = I``).

    Returns:
        A function of tensors or JAX arrays whose value is exactly ``fn(x)`` and whose
        gradient is ``backward``'s.

    Raises:
        TypeError: ``fn`` or ``backward`` is not callable. At a call: ``fn`` or ``backward``
            returns something other than an array of the input's library and dtype (a
            NumPy array for a tensor, a Python number, a ``float64`` result for a
            ``float32`` input), or ``backward``'s result does not depend on its input
            differentiably.
        ValueError: At a call: ``fn`` or ``backward`` returns an array of another shape or
            on another device.
    """
    for name, value in (("fn", fn), ("backward", backward)):
        if (value is not None or name == "fn") and not callable(value):
            raise TypeError(f"{name} must be callable, got {type(value).__name__} {value!r}")

    forward: Callable[[Any], object] = fn
    stand_in: Callable[[Any], object] | None = backward

    def applied(x: ArrayT) -> ArrayT:
        if array_api_compat.is_torch_array(x):
            from signattack.backends.torch_backend import straight_through_torch

            return returned(straight_through_torch(forward, stand_in, x), x)
        if array_api_compat.is_jax_array(x):
            from signattack.backends.jax_backend import straight_through_jax

            return returned(straight_through_jax(forward, stand_in, x), x)
        value: object = x
        if is_array(value):  # NumPy and other libraries: checked alike
            return output_of("fn", forward, x)
        return fn(x)

    applied.__name__ = f"straight_through({getattr(fn, '__name__', type(fn).__name__)})"
    applied.__qualname__ = applied.__name__
    return applied


def output_of(role: Role, function: Callable[[Any], object], x: ArrayT) -> ArrayT:
    """``function(x)``, checked by :func:`checked_output`; an error ``function`` raises
    goes on unchanged (from Python 3.11 with a note saying which function raised it)."""
    try:
        out = function(x)
    except Exception as error:
        if sys.version_info >= (3, 11):
            error.add_note(f"raised by straight_through's {role} ({_name(function)})")
        raise
    return checked_output(role, out, x)


def checked_output(role: Role, out: object, x: ArrayT) -> ArrayT:
    """``out``, what ``straight_through``'s ``fn`` or ``backward`` returned at ``x``, as an
    array like ``x``: of its library, shape, device and dtype. An integer or boolean result
    of ``fn`` is cast to a floating ``x``'s dtype where that holds all its values exactly.

    Raises:
        TypeError: ``out`` is not an array of ``x``'s library, or has another dtype.
        ValueError: ``out`` has another shape or lies on another device.
    """
    array: Any = x
    wanted = f"{_library(x)} of the input's shape {_shape(x)} and dtype {_dtype(x)}"
    if not is_array(out) or not _same_library(out, x):
        raise TypeError(f"straight_through's {role} must return {wanted}, got {_what(out)}")
    if _shape(out) != _shape(x):
        raise ValueError(
            f"straight_through's {role} must keep the input's shape {_shape(x)}, got "
            f"{_library(out)} of shape {_shape(out)}"
        )
    there, here = device_of(out), device_of(array)
    if there is not None and here is not None and there != here:
        raise ValueError(
            f"straight_through's {role} must return an array on the input's device {here}, "
            f"got one on {there}: keep the result on the input's device"
        )
    if out.dtype == array.dtype:
        return returned(out, x)
    xp: Any = array_api_compat.array_namespace(x)
    if role == "fn" and _holds_exactly(xp, array.dtype, out.dtype):
        cast: ArrayT = xp.astype(out, array.dtype)
        return cast
    inexact = (
        f" (whose values {_dtype(x)} does not all hold exactly)"
        if role == "fn"
        and xp.isdtype(array.dtype, "real floating")
        and xp.isdtype(out.dtype, "integral")
        else ""
    )
    raise TypeError(
        f"straight_through's {role} must return {wanted}, got the dtype {_dtype(out)}"
        f"{inexact}: cast its result to the input's dtype"
    )


def _holds_exactly(xp: Any, floating: object, integral: object) -> bool:
    """Whether the floating dtype ``floating`` holds every value of ``integral`` (an integer
    or boolean dtype) exactly: their magnitudes are at most ``2 ** significant bits``."""
    if not xp.isdtype(floating, "real floating") or not xp.isdtype(integral, ("bool", "integral")):
        return False
    if xp.isdtype(integral, "bool"):
        return True
    limits, precision = xp.iinfo(integral), xp.finfo(floating)
    magnitude = max(abs(int(limits.min)), int(limits.max))
    significant = round(-math.log2(float(precision.eps))) + 1
    return bool(magnitude <= 2**significant)


def _same_library(value: object, x: object) -> bool:
    namespace: object = array_api_compat.array_namespace(value)
    return namespace is array_api_compat.array_namespace(x)


def _library(x: object) -> str:
    if array_api_compat.is_torch_array(x):
        return "a torch.Tensor"
    if array_api_compat.is_jax_array(x):
        return "a jax.Array"
    if array_api_compat.is_numpy_array(x):
        return "a NumPy array"
    return f"an array of type {type(x).__name__}"


def _what(value: object) -> str:
    """A value named for a message: its kind, with its shape where it has one."""
    if is_array(value):
        return f"{_library(value)} of shape {_shape(value)}"
    if isinstance(value, (bool, int, float, complex)):
        return f"a Python {type(value).__name__} ({value!r})"
    return f"a {type(value).__name__}"


def _shape(x: Any) -> tuple[int, ...]:
    return tuple(int(size) for size in x.shape)


def _dtype(x: Any) -> str:
    return str(x.dtype).removeprefix("torch.")


def _name(function: object) -> str:
    return str(getattr(function, "__qualname__", type(function).__name__))
