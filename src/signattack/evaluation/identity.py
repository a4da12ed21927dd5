"""What an evaluation is: stable descriptions of its attack and model, digests of its data.

A checkpoint may only be resumed by the evaluation that wrote it. "The same evaluation" means
the same model (its class and a digest of its parameters and buffers), the same attack (its
settings, described without memory addresses), the same norm, the same radii, the same data
(a digest of every batch's inputs and labels) and the same library version. Everything here
is computed so that it is equal in every process and on every run, and differs where they
differ.
"""

from __future__ import annotations

import enum
import functools
import hashlib
import json
import sys
import types
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, TypeAlias, TypeGuard

from signattack._fields import field_defaults, field_values
from signattack._host import to_bytes
from signattack._io import Json
from signattack._typing import Array, is_array
from signattack._version import __version__
from signattack.attacks import EpsAttack
from signattack.core.norms import NormName, norm_of
from signattack.evaluation._specs import attack_at, shared_norm

if TYPE_CHECKING:
    from torch import nn

    from signattack.evaluation._specs import AttackSpec

__all__: list[str] = []  # internal: nothing here is public API

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
    """A digest of an array's dtype, shape and elements, wherever it lives."""
    dtype, shape, raw = to_bytes(array)
    digest = hashlib.sha256(f"{dtype}{shape}".encode())
    digest.update(raw)
    return digest.hexdigest()


def _module_state(module: nn.Module) -> dict[str, Json]:
    """A torch module's class and a digest of its parameters and buffers, by name."""
    digest = hashlib.sha256()
    tensors = dict([*module.named_parameters(), *module.named_buffers()])
    for name in sorted(tensors):
        digest.update(name.encode())
        digest.update(_array_digest(tensors[name]).encode())
    return {"module": _qualified(type(module)), "state": digest.hexdigest()}


_LATER_FIELDS: dict[str, object] = {"norm": "linf", "minimal": True}
"""Settings that attacks gained after their descriptions were first written, with the value
every earlier description meant: left out of a description where they hold that value, so
that checkpoints and reports of earlier versions still describe the same attacks."""


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
    parts = _partial_parts(value)
    if parts is not None:
        function, arguments, keywords = parts
        return {"partial": inner(function), "args": inner(arguments), "kw": inner(keywords)}
    if isinstance(value, types.MethodType):
        function_name: str = value.__func__.__name__
        return {"method": function_name, "of": inner(value.__self__)}
    if isinstance(value, types.FunctionType):
        if value.__closure__:
            raise Unstable(f"{value.__qualname__} is a closure")
        return {"function": _qualified(value)}
    if isinstance(value, (types.BuiltinFunctionType, type)):
        return {"function": _qualified(value)}
    fields = field_values(value)
    if fields is not None:
        described = {
            name: inner(item)
            for name, item in fields.items()
            if not (name in _LATER_FIELDS and item == _LATER_FIELDS[name])
        }
        return {"class": _qualified(type(value)), "fields": described}
    attributes: object = getattr(value, "__dict__", None)
    if isinstance(attributes, dict):
        return {"class": _qualified(type(value)), "fields": inner(attributes)}
    raise Unstable(f"{type(value).__name__} objects have no stable description")


def _is_module(value: object) -> TypeGuard[nn.Module]:
    if "torch" not in sys.modules:  # no module exists before torch is imported
        return False
    from torch import nn

    return isinstance(value, nn.Module)


def describe(value: object) -> str:
    """A short, readable name for an attack or a factory, without memory addresses.

    Dataclasses show their class and the settings that differ from the defaults, with
    ``eps`` left out (the radius varies): ``IteratedSign(steps=5)``; functions, partials and
    callable objects show their names. Only for display: `stable` is what identifies.
    """
    fields = field_values(value)
    if fields is None:
        return _readable(value)
    defaults = field_defaults(value)
    shown = [
        f"{name}={_readable(setting)}"
        for name, setting in fields.items()
        if name != "eps" and not _is_default(setting, defaults.get(name, _NO_DEFAULT))
    ]
    return f"{type(value).__name__}({', '.join(shown)})"


_NO_DEFAULT = object()


def _is_default(value: object, default: object) -> bool:
    try:
        return (bool(value == default) and type(value) is not bool) or value is default
    except (TypeError, ValueError):  # arrays and other values without a plain ==
        return False


def _readable(value: object) -> str:
    parts = _partial_parts(value)
    if parts is not None:
        function, arguments, keywords = parts
        shown = [_readable(function), *(_readable(a) for a in arguments)]
        shown += [f"{k}={_readable(v)}" for k, v in keywords.items()]
        return f"partial({', '.join(shown)})"
    if isinstance(value, (types.FunctionType, types.BuiltinFunctionType, type)):
        return value.__qualname__
    if isinstance(value, tuple):  # Bounds and other named tuples: just the numbers
        return f"({', '.join(_readable(item) for item in value)})"
    if isinstance(value, (bool, int, float, str, type(None))):
        return repr(value)
    if field_values(value) is not None:
        return describe(value)
    name: object = getattr(value, "name", None)
    if isinstance(name, str):  # a LogitLoss and similar named values
        return f"{type(value).__name__}({name!r})"
    return type(value).__name__


def _partial_parts(
    value: object,
) -> tuple[object, tuple[object, ...], dict[str, object]] | None:
    """A ``functools.partial``'s function, arguments and keywords; ``None`` for anything else."""
    if not isinstance(value, functools.partial):
        return None
    return value.func, value.args, value.keywords


def batch_digest(x: Array, y: Array) -> str:
    """A digest of one batch: its inputs' and labels' dtypes, shapes and values."""
    digests = [_array_digest(x), _array_digest(y)]
    return hashlib.sha256(json.dumps(digests).encode()).hexdigest()


@dataclass(frozen=True)
class Identity:
    """What an evaluation is, as its checkpoint is bound to it: a resume is refused unless
    every part is the same.

    Attributes:
        version: The library's version.
        model: The model's description (`stable`) or ``{"name": model_name}``.
        attack: The attacks' settings (radius left out) or ``{"name": name}``.
        eps: The radii, increasing.
        attacks: The number of attacks run in order.
        norm: The norm the attacks share (``"linf"``, ``"l2"``): a checkpoint of one
            norm never resumes an evaluation of another, whatever the attacks are named.
    """

    version: str
    model: Json
    attack: Json
    eps: tuple[float, ...]
    attacks: int
    norm: NormName = "linf"

    @classmethod
    def of(
        cls,
        model: object,
        specs: Sequence[AttackSpec],
        eps: tuple[float, ...],
        *,
        name: str | None = None,
        model_name: str | None = None,
        randomized: Sequence[AttackSpec] | None = None,
        audit: tuple[Json, Sequence[AttackSpec]] | None = None,
    ) -> Identity:
        """The identity of evaluating ``model`` with ``specs`` at ``eps``; ``randomized`` is
        the suite run instead on a randomized model, where there is one; ``audit`` the
        settings and the reference suite of an audited suite, where it is one.

        Raises:
            ValueError: The model or an attack has no description that is the same in
                another process, and no name was given for it; the attacks do not share
                one norm.
        """
        norm = shared_norm([attack_at(spec, eps[0]) for spec in specs]).name
        try:
            model_part: Json = {"name": model_name} if model_name is not None else stable(model)
        except Unstable as error:
            raise ValueError(
                f"checkpoint needs a model that can be identified in another process, but "
                f"{error}: pass an nn.Module, or model_name='...' naming this exact model"
            ) from None
        settings = _radius_free(specs)
        described: object = settings[0] if len(settings) == 1 else settings
        if randomized is not None:
            described = {"attacks": settings, "randomized": _radius_free(randomized)}
        if audit is not None:
            reference = {"settings": audit[0], "reference": _radius_free(audit[1])}
            described = {"suite": described, "audit": reference}
        try:
            attack_part: Json = {"name": name} if name is not None else stable(described)
        except Unstable as error:
            raise ValueError(
                f"checkpoint needs an attack that can be identified in another process, but "
                f"{error}: pass name='...' naming this exact attack (a lambda or closure "
                "cannot be told apart from another one)"
            ) from None
        return cls(__version__, model_part, attack_part, eps, len(specs), norm)

    def to_dict(self) -> dict[str, Json]:
        """The identity as JSON, as the checkpoint stores it."""
        return {
            "version": self.version,
            "norm": self.norm,
            "model": self.model,
            "attack": self.attack,
            "eps": list(self.eps),
            "attacks": self.attacks,
        }


def _radius_free(specs: Sequence[object]) -> list[object]:
    """The attacks with radius 0: the radius of a ready-made attack is replaced at every eps,
    so it is no part of the identity."""
    return [spec.with_eps(0.0) if isinstance(spec, EpsAttack) else spec for spec in specs]


def _recorded_norm(attacks: Sequence[Json]) -> NormName:
    """The norm the attack records name (``"linf"`` where none names one)."""
    for record in attacks:
        named = record.get("norm") if isinstance(record, dict) else None
        if isinstance(named, str):
            return norm_of(named).name
    return "linf"


def _frameworks() -> dict[str, Json]:
    """The versions of the array libraries this process has imported."""
    found: dict[str, Json] = {}
    for name in ("numpy", "torch", "jax"):
        module = sys.modules.get(name)
        version: object = getattr(module, "__version__", None)
        if isinstance(version, str):
            found[name] = version
    return found


def run_metadata(
    model: object,
    attacks: Sequence[Json],
    *,
    model_name: str | None,
    bounds: tuple[float, float] | None,
    norm: NormName | None = None,
    model_mode: str,
    decision_draws: int,
    samples: int,
    batches: int,
    data_digest: str,
    dtype: str | None = None,
    device: str,
    seconds: float,
    resumed: int,
    randomized: bool,
) -> dict[str, Json]:
    """What a report records of the evaluation that made it, ``attacks`` being the record
    of each attack it ran: see `metadata`. ``dtype`` is the inputs' (of the first batch):
    the rounding a report allows its largest perturbation (`_units.ball_slack`).
    ``norm`` is the norm the attacks share; where not given, the one their records name
    (they share one: the evaluation refuses a suite that mixes them), L-inf where none
    does."""
    import platform
    import time

    try:
        model_part: Json = {"name": model_name} if model_name is not None else stable(model)
    except Unstable:
        model_part = {"class": _qualified(type(model))}
    return {
        "signattack": __version__,
        "python": platform.python_version(),
        "frameworks": _frameworks(),
        "model": model_part,
        "data": {
            "samples": samples,
            "batches": batches,
            "digest": data_digest,
            **({} if dtype is None else {"dtype": dtype}),
        },
        "bounds": None if bounds is None else list(bounds),
        "norm": norm if norm is not None else _recorded_norm(attacks),
        "model_mode": model_mode,
        "attacks": list(attacks),
        "decision_draws": decision_draws,
        "randomized_model": randomized,
        "device": device,
        "wall_time_s": seconds,
        "resumed_batches": resumed,
        "finished": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
