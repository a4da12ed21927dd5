"""Arrays of any library, copied to the host as NumPy arrays or Python values, and the few
operations on host arrays the package needs (files of arrays, distances, rows): the seam
where NumPy's untyped results meet typed code."""

from __future__ import annotations

import io
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, TypeAlias

import array_api_compat
import numpy as np

__all__ = [
    "HostArray",
    "copy_of",
    "largest_difference",
    "npz_bytes",
    "put_rows",
    "read_npz",
    "read_tensors",
    "to_bytes",
    "to_flags",
    "to_numpy",
    "to_values",
    "within",
]

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


def npz_bytes(arrays: Mapping[str, HostArray], *, compressed: bool = False) -> bytes:
    """``arrays`` as the bytes of a NumPy ``.npz`` file."""
    buffer = io.BytesIO()
    save = np.savez_compressed if compressed else np.savez
    save(buffer, **arrays)  # type: ignore[arg-type]  # NumPy's stubs see allow_pickle here
    return buffer.getvalue()


def read_npz(path: Path) -> dict[str, HostArray]:
    """Every array of a NumPy ``.npz`` file (no pickles).

    Raises:
        OSError, ValueError: The file cannot be read as an ``.npz`` file.
    """
    with np.load(path, allow_pickle=False) as opened:
        return {name: np.asarray(opened[name]) for name in opened.files}


def read_tensors(path: Path) -> dict[str, HostArray | str]:
    """A ``torch.save``'d dictionary of tensors and strings, the tensors as NumPy arrays
    (loaded ``weights_only``).

    Raises:
        TypeError: The file holds something else.
        OSError, RuntimeError: ``torch.load`` cannot read it.
    """
    import torch

    stored: object = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(stored, dict):
        raise TypeError(f"expected a dict of tensors, got {type(stored).__name__}")
    found: dict[str, HostArray | str] = {}
    for key, value in stored.items():
        found[str(key)] = value if isinstance(value, str) else to_numpy(value)
    return found


def largest_difference(a: HostArray, b: HostArray) -> float:
    """``max |a - b|`` in float64 (0 for empty arrays; inf or nan where either is not
    finite)."""
    if a.size == 0:
        return 0.0
    return float(np.max(np.abs(a.astype(np.float64) - b.astype(np.float64))))


def within(values: HostArray, lower: float, upper: float) -> bool:
    """Whether every element lies in ``[lower, upper]``."""
    return bool(np.all(values >= lower) and np.all(values <= upper))


def put_rows(
    target: HostArray, rows: Sequence[int], source: HostArray, picked: Sequence[int]
) -> None:
    """``target[rows[i]] = source[picked[i]]`` for every ``i``, in place."""
    target[np.asarray(rows, dtype=np.intp)] = source[np.asarray(picked, dtype=np.intp)]


def copy_of(array: object) -> HostArray:
    """A NumPy copy of ``array`` that may be written into."""
    copied: HostArray = np.array(to_numpy(array), copy=True)
    return copied
