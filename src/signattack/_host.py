"""Arrays of any library, copied to the host as NumPy arrays."""

from __future__ import annotations

from typing import Any

import array_api_compat
import numpy as np

__all__ = ["to_numpy"]


def to_numpy(array: Any) -> np.ndarray[Any, Any]:
    """A NumPy copy (or view) of ``array``: a tensor on any device, a JAX array, ...

    PyTorch tensors leave their device and graph first; other libraries go through
    ``numpy.asarray`` (``__array__``) or, failing that, DLPack.
    """
    if array_api_compat.is_torch_array(array):
        return np.asarray(array.detach().cpu().numpy())
    try:
        return np.asarray(array)
    except (TypeError, ValueError, RuntimeError):
        return np.from_dlpack(array)
