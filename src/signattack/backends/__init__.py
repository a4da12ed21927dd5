"""Backends: how an attack gets losses, input gradients and predictions from a framework.

The backend is chosen by the type of the input batch: a ``torch.Tensor`` opens the PyTorch backend
(importing torch only then), a ``jax.Array`` the JAX backend (importing jax only then), a
``numpy.ndarray`` the NumPy backend. Another framework plugs in with
[`register_backend`][signattack.backends.register_backend].
"""

from signattack.backends._protocol import Backend, BackendFactory, ModelMode
from signattack.backends.numpy_backend import LinearClassifier, NumpyModel
from signattack.backends.registry import (
    compiles_per_shape,
    open_backend,
    padded_count,
    register_backend,
    unregister_backend,
)

__all__ = [
    "Backend",
    "BackendFactory",
    "LinearClassifier",
    "ModelMode",
    "NumpyModel",
    "compiles_per_shape",
    "open_backend",
    "padded_count",
    "register_backend",
    "unregister_backend",
]
