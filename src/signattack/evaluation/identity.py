"""What an evaluation is: stable descriptions of its attack and model, digests of its data.

A checkpoint may only be resumed by the evaluation that wrote it. "The same evaluation" means
the same model (its class and a digest of its parameters and buffers), the same attack (its
settings, described without memory addresses), the same radii, the same data (a digest of
every batch's inputs and labels) and the same library version. Everything here is computed
so that it is equal in every process and on every run, and differs where they differ.
"""

from __future__ import annotations

import dataclasses
import enum
import functools
import hashlib
import json
import sys
import types
from typing import TYPE_CHECKING, TypeAlias, TypeGuard

import numpy as np

from signattack._host import to_numpy
from signattack._json import Json
from signattack._typing import Array, is_array

if TYPE_CHECKING:
    from torch import nn

__all__ = ["Json", "Unstable", "batch_digest", "describe", "model_identity", "stable"]

_DEPTH = 8

_Named: TypeAlias = "type | types.FunctionType | types.BuiltinFunctionType"


class Unstable(ValueError):
    """A value that cannot be described the same way in another process."""


def _qualified(value: _Named) -> str:
    name = f"{value.__module__}.{value.__qualname__}"
    if "<lambda>" in name:
        raise Unstable(f"{name} is a lambda")
    return name


def _array_digest(array: Array) -> str:
    """A digest of an array's dtype, shape and bytes, wherever it lives."""
    digest = hashlib.sha256()
    torch = _torch()
    if torch is not None and isinstance(array, torch.Tensor):
        tensor = array.detach().to("cpu").contiguous()
        digest.update(f"{tensor.dtype}{tuple(tensor.shape)}".encode())
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes())
    else:
        host = np.ascontiguousarray(to_numpy(array))
        digest.update(f"{host.dtype}{host.shape}".encode())
        digest.update(host.tobytes())
    return digest.hexdigest()


def _torch() -> types.ModuleType | None:
    """torch, where something has imported it: no torch value exists before that."""
    return sys.modules.get("torch")


def _module_state(module: nn.Module) -> dict[str, Json]:
    """A torch module's class and a digest of its parameters and buffers, by name."""
    digest = hashlib.sha256()
    tensors = [*module.named_parameters(), *module.named_buffers()]
    for name, tensor in sorted(tensors, key=lambda item: item[0]):
        digest.update(name.encode())
        digest.update(_array_digest(tensor).encode())
    return {"module": _qualified(type(module)), "state": digest.hexdigest()}


def stable(value: object, depth: int = 0) -> Json:
    """A JSON-ready description of ``value`` that is the same in every process.

    Numbers, strings and containers describe themselves; arrays and torch modules by a
    digest of their contents; functions and classes by their qualified names; dataclasses,
    ``functools.partial`` objects and other objects by their class and attributes.

    Raises:
        Unstable: ``value`` is, or holds, something that has no such description: a lambda,
            a closure, a function or class defined inside a function, or an object of
            unknown structure.
    """
    if depth > _DEPTH:
        raise Unstable("it nests too deeply to describe")
    inner = functools.partial(stable, depth=depth + 1)
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, (tuple, list)):
        return [inner(item) for item in value]
    if isinstance(value, dict):
        if not all(isinstance(key, str) for key in value):
            raise Unstable("it holds a dict with keys that are not strings")
        return {key: inner(item) for key, item in sorted(value.items())}
    if isinstance(value, enum.Enum):
        return f"{_qualified(type(value))}.{value.name}"
    if is_array(value):
        return {"array": _array_digest(value)}
    if _is_module(value):
        return _module_state(value)
    if isinstance(value, functools.partial):
        return {
            "partial": inner(value.func),
            "args": inner(value.args),
            "kw": inner(value.keywords),
        }
    if isinstance(value, types.MethodType):
        return {"method": value.__func__.__name__, "of": inner(value.__self__)}
    if isinstance(value, types.FunctionType):
        if value.__closure__:
            raise Unstable(f"{value.__qualname__} is a closure")
        return {"function": _qualified(value)}
    if isinstance(value, (types.BuiltinFunctionType, type)):
        return {"function": _qualified(value)}
    if dataclasses.is_dataclass(value):
        fields = {f.name: inner(getattr(value, f.name)) for f in dataclasses.fields(value)}
        return {"class": _qualified(type(value)), "fields": fields}
    attributes = getattr(value, "__dict__", None)
    if isinstance(attributes, dict):
        return {"class": _qualified(type(value)), "fields": inner(attributes)}
    raise Unstable(f"{type(value).__name__} objects have no stable description")


def _is_module(value: object) -> TypeGuard[nn.Module]:
    torch = _torch()
    return torch is not None and isinstance(value, torch.nn.Module)


def describe(value: object) -> str:
    """A short, readable name for an attack or a factory, without memory addresses.

    Dataclasses show their class and the settings that differ from the defaults, with
    ``eps`` left out (the radius varies): ``IteratedSign(steps=5)``; functions, partials and
    callable objects show their names. Only for display: :func:`stable` is what identifies.
    """
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        shown = [
            f"{field.name}={_readable(getattr(value, field.name))}"
            for field in dataclasses.fields(value)
            if field.name != "eps" and not _is_default(field, getattr(value, field.name))
        ]
        return f"{type(value).__name__}({', '.join(shown)})"
    return _readable(value)


def _is_default(field: dataclasses.Field[object], value: object) -> bool:
    if field.default is not dataclasses.MISSING:
        default = field.default
    elif field.default_factory is not dataclasses.MISSING:
        default = field.default_factory()
    else:
        return False
    try:
        return (bool(value == default) and type(value) is not bool) or value is default
    except (TypeError, ValueError):  # arrays and other values without a plain ==
        return False


def _readable(value: object) -> str:
    if isinstance(value, functools.partial):
        arguments = [_readable(a) for a in value.args]
        arguments += [f"{k}={_readable(v)}" for k, v in value.keywords.items()]
        return f"partial({', '.join([_readable(value.func), *arguments])})"
    if isinstance(value, (types.FunctionType, types.BuiltinFunctionType, type)):
        return value.__qualname__
    if isinstance(value, tuple):  # Bounds and other named tuples: just the numbers
        return f"({', '.join(_readable(item) for item in value)})"
    if isinstance(value, (bool, int, float, str, type(None))):
        return repr(value)
    if dataclasses.is_dataclass(value):
        return describe(value)
    name = getattr(value, "name", None)
    if isinstance(name, str):  # a LogitLoss and similar named values
        return f"{type(value).__name__}({name!r})"
    return type(value).__name__


def model_identity(model: object) -> Json:
    """:func:`stable` for a model: a torch module by its class and a digest of its state.

    Raises:
        Unstable: The model cannot be identified across processes.
    """
    return stable(model)


def batch_digest(x: Array, y: Array) -> str:
    """A digest of one batch: its inputs' and labels' dtypes, shapes and values."""
    return hashlib.sha256(json.dumps([_array_digest(x), _array_digest(y)]).encode()).hexdigest()
