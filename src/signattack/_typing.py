"""Types shared across the package: arrays and their namespaces, models.

The array API standard has no static types, and NumPy arrays, PyTorch tensors and JAX
arrays share no base class. The framework-agnostic code therefore types arrays with two
protocols written here: `Array`, the members of an array it uses, and
`Namespace`, the functions of the array's library (``xp``) it calls, which
`namespace` returns. They describe what the code relies on; the arrays themselves
are whatever the caller passed. Public entry points take and return the caller's own type
(`ArrayT`), so that callers get back the type they passed in.
"""

from __future__ import annotations

import builtins
from collections.abc import Callable, Sequence
from typing import Any, Protocol, TypeAlias, TypeGuard, TypeVar

import array_api_compat

Scalar: TypeAlias = bool | int | float
"""A Python number, as the array API lets it meet an array in arithmetic."""


class Array(Protocol):
    """The members of an array-API array that signattack uses."""

    @property
    def shape(self) -> tuple[int, ...]: ...

    @property
    def ndim(self) -> int: ...

    @property
    def dtype(self) -> object: ...

    def __getitem__(self, key: Any, /) -> Array: ...

    def __add__(self, other: Any, /) -> Array: ...

    def __radd__(self, other: Any, /) -> Array: ...

    def __sub__(self, other: Any, /) -> Array: ...

    def __rsub__(self, other: Any, /) -> Array: ...

    def __mul__(self, other: Any, /) -> Array: ...

    def __rmul__(self, other: Any, /) -> Array: ...

    def __truediv__(self, other: Any, /) -> Array: ...

    def __rtruediv__(self, other: Any, /) -> Array: ...

    def __pow__(self, other: Any, /) -> Array: ...

    def __neg__(self) -> Array: ...

    def __lt__(self, other: Any, /) -> Array: ...

    def __le__(self, other: Any, /) -> Array: ...

    def __gt__(self, other: Any, /) -> Array: ...

    def __ge__(self, other: Any, /) -> Array: ...

    def __and__(self, other: Any, /) -> Array: ...

    def __or__(self, other: Any, /) -> Array: ...

    def __invert__(self) -> Array: ...

    def __bool__(self) -> bool: ...

    def __float__(self) -> float: ...

    def __int__(self) -> int: ...


ArrayT = TypeVar("ArrayT")
"""The caller's array type, returned unchanged."""


Model: TypeAlias = Callable[[ArrayT], ArrayT]
"""A classifier: inputs ``(batch, ...)`` to logits ``(batch, classes)``, arrays of one
library (a ``torch.nn.Module``, a JAX function, a
[`NumpyModel`][signattack.backends.NumpyModel])."""

Amount: TypeAlias = "Array | float"
"""A radius or a step: one number for the batch, or an array of one per sample, shaped to
broadcast over a sample."""


Axes: TypeAlias = "int | tuple[int, ...] | None"


class Info(Protocol):
    def default_dtypes(self, *, device: object = None) -> dict[str, object]: ...

    def dtypes(self, *, device: object = None, kind: str | None = None) -> dict[str, object]: ...


class Limits(Protocol):
    @property
    def min(self) -> float: ...

    @property
    def max(self) -> float: ...

    @property
    def eps(self) -> float: ...

    @property
    def smallest_normal(self) -> float: ...


class Namespace(Protocol):
    """The functions of an array library (the array API standard's) that signattack calls."""

    float32: object
    int32: object
    inf: float

    @property
    def bool(self) -> object: ...

    def __array_namespace_info__(self) -> Info: ...

    def asarray(
        self,
        obj: object,
        /,
        *,
        dtype: object = None,
        device: object = None,
        copy: builtins.bool | None = None,
    ) -> Array: ...

    def astype(self, x: Array, dtype: object, /, *, copy: builtins.bool = True) -> Array: ...
    def result_type(self, *arrays_and_dtypes: object) -> object: ...

    def isdtype(self, dtype: object, kind: str | tuple[str, ...], /) -> builtins.bool: ...

    def iinfo(self, dtype: object, /) -> Limits: ...

    def finfo(self, dtype: object, /) -> Limits: ...

    def zeros(
        self, shape: int | tuple[int, ...], /, *, dtype: object = None, device: object = None
    ) -> Array: ...

    def zeros_like(self, x: Array, /, *, dtype: object = None) -> Array: ...

    def ones_like(self, x: Array, /, *, dtype: object = None) -> Array: ...

    def full(
        self,
        shape: int | tuple[int, ...],
        fill_value: Scalar,
        /,
        *,
        dtype: object = None,
        device: object = None,
    ) -> Array: ...

    def arange(
        self,
        start: Scalar,
        /,
        stop: Scalar | None = None,
        *,
        dtype: object = None,
        device: object = None,
    ) -> Array: ...

    def broadcast_to(self, x: Array, /, shape: tuple[int, ...]) -> Array: ...

    def reshape(self, x: Array, /, shape: tuple[int, ...]) -> Array: ...

    def stack(self, arrays: Sequence[Array], /, *, axis: int = 0) -> Array: ...

    def concat(self, arrays: Sequence[Array], /, *, axis: int = 0) -> Array: ...

    def equal(self, x1: Array | Scalar, x2: Array | Scalar, /) -> Array: ...

    def not_equal(self, x1: Array | Scalar, x2: Array | Scalar, /) -> Array: ...

    def where(self, condition: Array, x1: Array | Scalar, x2: Array | Scalar, /) -> Array: ...

    def clip(
        self, x: Array, /, min: Array | Scalar | None = None, max: Array | Scalar | None = None
    ) -> Array: ...

    def maximum(self, x1: Array | Scalar, x2: Array | Scalar, /) -> Array: ...

    def minimum(self, x1: Array | Scalar, x2: Array | Scalar, /) -> Array: ...

    def abs(self, x: Array, /) -> Array: ...

    def sign(self, x: Array, /) -> Array: ...

    def exp(self, x: Array, /) -> Array: ...

    def log(self, x: Array, /) -> Array: ...

    def round(self, x: Array, /) -> Array: ...

    def floor(self, x: Array, /) -> Array: ...

    def trunc(self, x: Array, /) -> Array: ...

    def nextafter(self, x1: Array | Scalar, x2: Array | Scalar, /) -> Array: ...

    def isfinite(self, x: Array, /) -> Array: ...

    def isnan(self, x: Array, /) -> Array: ...

    def logical_not(self, x: Array, /) -> Array: ...

    def logical_and(self, x1: Array, x2: Array, /) -> Array: ...

    def logical_or(self, x1: Array, x2: Array, /) -> Array: ...

    def all(self, x: Array, /, *, axis: Axes = None, keepdims: builtins.bool = False) -> Array: ...

    def any(self, x: Array, /, *, axis: Axes = None, keepdims: builtins.bool = False) -> Array: ...

    def sum(self, x: Array, /, *, axis: Axes = None, keepdims: builtins.bool = False) -> Array: ...

    def mean(self, x: Array, /, *, axis: Axes = None, keepdims: builtins.bool = False) -> Array: ...

    def max(self, x: Array, /, *, axis: Axes = None, keepdims: builtins.bool = False) -> Array: ...

    def min(self, x: Array, /, *, axis: Axes = None, keepdims: builtins.bool = False) -> Array: ...

    def argmax(self, x: Array, /, *, axis: int | None = None) -> Array: ...

    def argsort(
        self,
        x: Array,
        /,
        *,
        axis: int = -1,
        descending: builtins.bool = False,
        stable: builtins.bool = True,
    ) -> Array: ...

    def nonzero(self, x: Array, /) -> tuple[Array, ...]: ...

    def cumulative_sum(self, x: Array, /, *, axis: int | None = None) -> Array: ...

    def take(self, x: Array, indices: Array, /, *, axis: int | None = None) -> Array: ...

    def take_along_axis(self, x: Array, indices: Array, /, *, axis: int = -1) -> Array: ...


_NAMESPACES: dict[tuple[type, ...], Namespace] = {}
"""The namespace of each combination of array types `namespace` has answered: an array's
library follows from its type (`_typed_alone` names the one exception)."""


def namespace(*arrays: object) -> Namespace:
    """The array library of ``arrays`` (its array-API namespace).

    Raises:
        TypeError: The arrays are not of one array-API library.
    """
    kinds = tuple(map(type, arrays))
    alone = all(map(_typed_alone, arrays))
    xp = _NAMESPACES.get(kinds) if alone else None
    if xp is None:
        xp = array_api_compat.array_namespace(*arrays)
        if alone:
            _NAMESPACES[kinds] = xp
    return xp


def _typed_alone(value: object) -> bool:
    """Whether ``value``'s namespace follows from its type alone: all but values of a void
    dtype (NumPy's arrays, their subclasses and scalars), among them JAX's ``float0`` (JAX's
    gradient with respect to an integer input), whose namespace is JAX's."""
    return getattr(getattr(value, "dtype", None), "kind", "") != "V"


def is_array(value: object) -> TypeGuard[Array]:
    """Whether ``value`` is an array of an array-API library."""
    return bool(array_api_compat.is_array_api_obj(value))


def device_of(x: Array) -> object:
    """The device ``x`` lives on."""
    where: object = array_api_compat.device(x)
    return where


def moved(x: Array, where: object) -> Array:
    """``x`` on the device ``where``."""
    result: Array = array_api_compat.to_device(x, where)
    return result


def as_model(model: object) -> Model[Array]:
    """``model`` as a [`Model`][signattack._typing.Model] of protocol arrays, once a backend has
    accepted it (its inputs and outputs are checked when it runs).

    Raises:
        TypeError: ``model`` cannot be called.
    """
    if not _is_model(model):
        raise TypeError(f"model must be callable (x -> logits), got {type(model).__name__}")
    return model


def _is_model(model: object) -> TypeGuard[Model[Array]]:
    return callable(model)


def _of_library(value: object, caller: ArrayT) -> TypeGuard[ArrayT]:
    return is_array(value) and namespace(value) is namespace(caller)


def returned(value: Array, caller: ArrayT) -> ArrayT:
    """``value`` handed back as the caller's array type: it is an array of the library of
    ``caller``, the array the caller passed in.

    Raises:
        TypeError: ``value`` belongs to another library (a backend that converted it).
    """
    if not _of_library(value, caller):
        raise TypeError(
            f"a result of type {type(value).__name__} cannot be returned for an input of type "
            f"{type(caller).__name__}: the backend changed the array library"
        )
    return value
