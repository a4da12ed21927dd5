"""Arrays of any library, copied to the host as NumPy arrays or Python values, and the few
operations on host arrays the package needs (files of arrays, distances, rows): the seam
where NumPy's untyped results meet typed code."""

from __future__ import annotations

import io
import sys
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, TypeAlias

import array_api_compat
import numpy as np

HostArray: TypeAlias = "np.ndarray[tuple[int, ...], np.dtype[Any]]"
"""A NumPy array of any shape and dtype."""


def to_numpy(array: Any) -> HostArray:
    """A NumPy copy (or view) of ``array``: a tensor on any device, a JAX array, ...

    PyTorch tensors leave their device and graph first; other libraries go through
    ``numpy.asarray`` (``__array__``) or, failing that, DLPack. Floating dtypes that NumPy
    lacks (``bfloat16``, the ``float8`` kinds) widen to ``float32``, which holds every one of
    their values exactly: `dtype_name` tells what the array was.
    """
    host: HostArray
    if array_api_compat.is_torch_array(array):
        tensor = array.detach().cpu()
        if _narrow_torch(tensor):
            tensor = tensor.float()
        host = tensor.numpy()
        return host
    host = _raw_numpy(array)
    if host.dtype.kind == "V" and host.dtype.fields is None:  # ml_dtypes (JAX's bfloat16)
        host = host.astype(np.float32)
    return host


def _narrow_torch(tensor: Any) -> bool:
    """Whether a torch tensor has a floating dtype that NumPy lacks."""
    import torch

    return bool(tensor.is_floating_point()) and tensor.dtype not in (
        torch.float16,
        torch.float32,
        torch.float64,
    )


def _raw_numpy(array: Any) -> HostArray:
    """``numpy.asarray(array)``, or DLPack where that fails; dtypes as they come."""
    host: HostArray
    try:
        host = np.asarray(array)
    except (TypeError, ValueError, RuntimeError):
        host = np.from_dlpack(array)
    return host


def dtype_name(array: object) -> str:
    """The name an array's library gives its dtype, without a library prefix: ``float32``,
    ``bfloat16``, ``uint8``."""
    return str(getattr(array, "dtype", type(array).__name__)).removeprefix("torch.")


def library_of(array: object) -> str:
    """The library of an array, as `from_host` names it: ``torch``, ``jax`` or
    ``numpy`` (any other array is copied to the host as NumPy)."""
    if array_api_compat.is_torch_array(array):
        return "torch"
    if array_api_compat.is_jax_array(array):
        return "jax"
    return "numpy"


def from_host(array: HostArray, library: str, dtype: str, device: object = None) -> Any:
    """``array`` as an array of ``library`` (``"torch"``, ``"jax"`` or ``"numpy"``) with the
    dtype named ``dtype``, on ``device`` (torch): the inverse of `to_numpy`, exact for
    values that ``dtype`` holds (``bfloat16`` values kept as ``float32``).

    Raises:
        ValueError: ``library`` does not have ``dtype`` (NumPy has no ``bfloat16``).
    """
    if library == "torch":
        import torch

        kind = getattr(torch, dtype, None)
        if not isinstance(kind, torch.dtype):
            raise ValueError(f"torch has no dtype {dtype!r}")
        tensor = torch.from_numpy(np.ascontiguousarray(array)).to(kind)
        return tensor if device is None else tensor.to(str(device))
    if library == "jax":
        import jax.numpy as jnp

        if str(array.dtype) == dtype:
            return jnp.asarray(array)
        return jnp.asarray(array, dtype=jnp.dtype(dtype))
    try:
        wanted = np.dtype(dtype)
    except TypeError:
        wanted = np.dtype("V")
    if wanted.kind not in "biuf":
        raise ValueError(f"NumPy has no real dtype {dtype!r}")
    return array if array.dtype == wanted else array.astype(wanted)


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
    host = _raw_numpy(array)
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
    with path.open("rb") as handle:  # closed even where np.load fails half-way
        opened = np.load(handle, allow_pickle=False)
        if not isinstance(opened, np.lib.npyio.NpzFile):
            raise ValueError(f"expected an .npz archive, got a single {type(opened).__name__}")
        with opened:
            return {name: np.asarray(opened[name]) for name in opened.files}


def read_tensors(path: Path) -> dict[str, HostArray | str]:
    """A ``torch.save``'d dictionary of tensors and strings, the tensors as NumPy arrays
    (loaded ``weights_only``).

    Raises:
        TypeError: The file holds something else.
        OSError, RuntimeError: ``torch.load`` cannot read it.
    """
    import torch

    with warnings.catch_warnings():  # torch warns of old pickle protocols: refused anyway
        warnings.simplefilter("ignore")
        stored: object = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(stored, dict):
        raise TypeError(f"expected a dict of tensors, got {type(stored).__name__}")
    found: dict[str, HostArray | str] = {}
    for key, value in stored.items():
        found[str(key)] = value if isinstance(value, str) else to_numpy(value)
    return found


def stored_text(stored: Mapping[str, object], key: str, default: str | None = None) -> str:
    """The text a file of arrays holds under ``key`` (a 0-d string array or a ``str``).

    Raises:
        ValueError: It holds none, or something else there.
    """
    value = stored.get(key, default)
    if isinstance(value, np.ndarray) and value.ndim == 0 and value.dtype.kind == "U":
        return str(value)
    if not isinstance(value, str):
        raise ValueError(f"{key!r} must be text, got {type(value).__name__}")
    return value


def stored_array(stored: Mapping[str, object], key: str, kinds: str) -> HostArray:
    """The array a file of arrays holds under ``key``: at least 1-d, of a dtype whose kind
    (``numpy.dtype.kind``) is one of ``kinds``.

    Raises:
        ValueError: It holds none, or another kind of array.
    """
    value = stored.get(key)
    if not isinstance(value, np.ndarray):
        raise ValueError(f"it holds no array {key!r}")
    if value.dtype.kind not in kinds or value.ndim < 1:
        raise ValueError(f"{key!r} must be an array of numbers, got {value.dtype} {value.shape}")
    return value


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
