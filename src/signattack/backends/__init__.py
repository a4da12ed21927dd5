"""Backends: how an attack gets losses, input gradients and predictions from a framework.

The backend is chosen by the type of the input batch: a ``torch.Tensor`` opens the PyTorch
backend (importing torch only then), a ``jax.Array`` the JAX backend (importing jax only
then), a ``numpy.ndarray`` the NumPy backend. Another framework
plugs in with :func:`register_backend`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import NamedTuple

import array_api_compat

from signattack.backends._protocol import Backend, BackendFactory, ModelMode
from signattack.backends.numpy_backend import LinearClassifier, NumpyModel, open_numpy_backend
from signattack.core.losses import LossFunction

__all__ = [
    "Backend",
    "BackendFactory",
    "LinearClassifier",
    "ModelMode",
    "NumpyModel",
    "compiles_per_shape",
    "open_backend",
    "register_backend",
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
    is_array: Callable[[object], bool]
    factory: BackendFactory
    compiles_per_shape: bool


_REGISTRY: list[_Entry] = [
    _Entry(array_api_compat.is_torch_array, contextmanager(_open_torch_backend), False),
    _Entry(array_api_compat.is_jax_array, contextmanager(_open_jax_backend), True),
    _Entry(array_api_compat.is_numpy_array, open_numpy_backend, False),
]


def register_backend(
    is_array: Callable[[object], bool],
    factory: BackendFactory,
    *,
    compiles_per_shape: bool = False,
) -> None:
    """Teach the attacks a new array type.

    Args:
        is_array: Returns ``True`` for the input batches this backend handles.
        factory: ``factory(model, x, loss, model_mode)``, a context manager that yields a
            :class:`Backend` and restores the model on exit. Later registrations take
            precedence over earlier ones.
        compiles_per_shape: The backend compiles a computation for every input shape, so
            that callers who vary the batch size should keep to a few sizes (the
            evaluation then pads its sub-batches to powers of two).
    """
    _REGISTRY.insert(0, _Entry(is_array, factory, compiles_per_shape))


def compiles_per_shape(x: object) -> bool:
    """Whether the backend for ``x`` compiles a computation per input shape (JAX does): a
    caller that attacks batches of many sizes does better to pad them to a few."""
    entry = _entry_for(x)
    return entry is not None and entry.compiles_per_shape


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
