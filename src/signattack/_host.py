"""Arrays of any library, copied to the host as NumPy arrays or Python values."""

from __future__ import annotations

import sys
from typing import Any, TypeAlias

import array_api_compat
import numpy as np

__all__ = ["HostArray", "to_bytes", "to_flags", "to_numpy", "to_values"]

HostArray: TypeAlias = "np.ndarray[tuple[int, ...], np.dtype[Any]]"
"""A NumPy array of any shape and dtype."""


def to_numpy(array: Any) -> HostArray:
    """A NumPy copy (or view) of ``array``: a tensor on any device, a JAX array, ...

    PyTorch tensors leave their device and graph first; other libraries go through
    ``numpy.asarray`` (``__array__``) or, failing that, DLPack.
    """
    host: HostArray
    if array_api_compat.is_torch_array(array):
        host = array.detach().cpu().numpy()
        return host
    try:
        host = np.asarray(array)
    except (TypeError, ValueError, RuntimeError):
        host = np.from_dlpack(array)
    return host


def to_flags(array: object) -> list[bool]:
    """The truth of every element of ``array``, in C order, as Python booleans."""
    flags: list[bool] = to_numpy(array).astype(bool).reshape(-1).tolist()
    return flags


def to_values(array: object) -> list[bool | int | float]:
    """Every element of a real ``array``, in C order, as Python numbers (``tolist``)."""
    values: list[bool | int | float] = to_numpy(array).reshape(-1).tolist()
    return values


def to_bytes(array: object) -> tuple[str, tuple[int, ...], bytes]:
    """An array's dtype (as its library names it), shape and elements in C order as bytes,
    wherever it lives; PyTorch tensors of any dtype, bfloat16 included."""
    if "torch" in sys.modules:  # no tensor exists before torch is imported
        import torch

        if isinstance(array, torch.Tensor):
            tensor = array.detach().to("cpu").contiguous()
            raw = tensor.reshape(-1).view(torch.uint8).numpy().tobytes()
            return str(tensor.dtype), tuple(tensor.shape), raw
    host = to_numpy(array)
    return str(host.dtype), host.shape, host.tobytes()
