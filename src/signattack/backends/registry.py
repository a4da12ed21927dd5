"""The registry of backends: which array types open which backend, and how to add one."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import NamedTuple

import array_api_compat

from signattack.backends._protocol import Backend, BackendFactory, ModelMode
from signattack.backends.numpy_backend import open_numpy_backend
from signattack.core.losses import LossFunction

__all__ = [
    "compiles_per_shape",
    "open_backend",
    "padded_count",
    "register_backend",
    "unregister_backend",
]


def _open_torch_backend(
    model: object, x: object, loss: LossFunction, model_mode: ModelMode
) -> Iterator[Backend]:
    from signattack.backends.torch_backend import open_torch_backend

    with open_torch_backend(model, x, loss, model_mode) as backend:
        yield backend


def _open_jax_backend(
    model: object, x: object, loss: LossFunction, model_mode: ModelMode
) -> Iterator[Backend]:
    from signattack.backends.jax_backend import open_jax_backend

    with open_jax_backend(model, x, loss, model_mode) as backend:
        yield backend


class _Entry(NamedTuple):
    name: str
    is_array: Callable[[object], bool]
    factory: BackendFactory
    compiles_per_shape: bool


_REGISTRY: list[_Entry] = [
    _Entry("torch", array_api_compat.is_torch_array, contextmanager(_open_torch_backend), False),
    _Entry("jax", array_api_compat.is_jax_array, contextmanager(_open_jax_backend), True),
    _Entry("numpy", array_api_compat.is_numpy_array, open_numpy_backend, False),
]


def register_backend(
    is_array: Callable[[object], bool],
    factory: BackendFactory,
    *,
    compiles_per_shape: bool = False,
    name: str | None = None,
) -> None:
    """Teach the attacks a new array type.

    Args:
        is_array: Returns ``True`` for the input batches this backend handles (and must
            return a ``bool`` for any object).
        factory: ``factory(model, x, loss, model_mode)``, a context manager that yields a
            [`Backend`][signattack.backends.registry.Backend] and restores the model on exit. Later
            registrations take precedence over earlier ones.
        compiles_per_shape: The backend compiles a computation for every input shape, so
            that callers who vary the batch size should keep to a few sizes (the evaluation then
            pads its sub-batches to powers of two).
        name: The backend's name, unique among the registered ones (by default
            ``is_array``'s qualified name).

    Raises:
        TypeError: ``is_array`` or ``factory`` is not callable, ``is_array`` does not answer
            with a ``bool``, or ``compiles_per_shape`` is not a ``bool``.
        ValueError: A backend of that name is registered already.
    """
    for label, value in (("is_array", is_array), ("factory", factory)):
        if not callable(value):
            raise TypeError(f"{label} must be callable, got {type(value).__name__} {value!r}")
    if not isinstance(compiles_per_shape, bool):
        raise TypeError(
            f"compiles_per_shape must be a bool, got {type(compiles_per_shape).__name__}"
        )
    try:
        answer = is_array(object())
    except Exception as error:
        raise TypeError(
            f"is_array must answer True or False for any object, but it raised {error!r} "
            "for a plain object()"
        ) from error
    if not isinstance(answer, bool):
        raise TypeError(
            "is_array must return a bool for any object, got "
            f"{type(answer).__name__} for a plain object()"
        )
    if name is None:
        name = f"{getattr(is_array, '__module__', '?')}.{getattr(is_array, '__qualname__', '?')}"
    if not isinstance(name, str) or not name:
        raise TypeError(f"name must be a non-empty str or None, got {name!r}")
    if any(entry.name == name for entry in _REGISTRY):
        raise ValueError(
            f"a backend named {name!r} is registered already: pass name='...' to tell this "
            "one apart, or unregister_backend it first"
        )
    _REGISTRY.insert(0, _Entry(name, is_array, factory, compiles_per_shape))


def unregister_backend(name: str) -> None:
    """Remove the backend registered as ``name`` (the built-in ones stay).

    Raises:
        ValueError: No backend of that name was registered, or it is a built-in one.
    """
    if name in ("torch", "jax", "numpy"):
        raise ValueError(f"the built-in {name} backend cannot be unregistered")
    for index, entry in enumerate(_REGISTRY):
        if entry.name == name:
            del _REGISTRY[index]
            return
    registered = [entry.name for entry in _REGISTRY]
    raise ValueError(f"no backend named {name!r} is registered; registered: {registered}")


def compiles_per_shape(x: object) -> bool:
    """Whether the backend for ``x`` compiles a computation per input shape (JAX does): a
    caller that attacks batches of many sizes does better to pad them to a few."""
    entry = _entry_for(x)
    return entry is not None and entry.compiles_per_shape


def padded_count(x: object, count: int) -> int:
    """How many samples to attack when ``count`` of ``x``'s batch are left: ``count``
    itself, or, for a backend that compiles per shape, the next power of two (at most the
    batch), so that the sub-batches of a sweep, of APGD's restarts and of APGD-T's targets
    share a few compiled computations instead of compiling one per size. The caller pads
    with copies of a sample and drops their results: a model's output for one sample must
    not depend on the others."""
    if not compiles_per_shape(x) or count == 0:
        return count
    batch = int(getattr(x, "shape", (count,))[0])
    return min(batch, 1 << (count - 1).bit_length())


def _entry_for(x: object) -> _Entry | None:
    """The registered backend for ``x``'s array type, the latest registration first."""
    return next((entry for entry in _REGISTRY if entry.is_array(x)), None)


@contextmanager
def open_backend(
    model: object, x: object, loss: LossFunction, model_mode: ModelMode
) -> Iterator[Backend]:
    """Open the backend for ``x``'s array type.

    Raises:
        TypeError: No backend handles ``x``'s type.
    """
    entry = _entry_for(x)
    if entry is None:
        raise TypeError(
            "x must be a torch.Tensor, a jax.Array or a numpy.ndarray (or a type given to "
            f"register_backend), got {type(x).__name__}"
        )
    with entry.factory(model, x, loss, model_mode) as backend:
        yield backend
