"""The model's weights (``--weights``): read ``weights_only`` and fitted to the model, with
one sentence on why a file does not fit (a wrapper's prefix, other shapes)."""

from __future__ import annotations

import hashlib
import pickle
import sys
import zipfile
from pathlib import Path
from typing import TYPE_CHECKING

from signattack._cli_args import UsageError

if TYPE_CHECKING:
    from torch import nn


def read_state(checkpoint: Path, spec: str, model: nn.Module) -> dict[str, object]:
    import torch

    if not checkpoint.is_file():
        raise UsageError(
            f"--weights must be a file of saved weights, got {str(checkpoint)!r}: no such file"
        )
    try:
        state = torch.load(checkpoint, map_location="cpu", weights_only=True)
    except (
        RuntimeError,
        pickle.UnpicklingError,
        EOFError,
        zipfile.BadZipFile,
        ValueError,
        OSError,
    ) as error:
        raise UsageError(
            f"--weights {checkpoint} is not a file of weights saved with torch.save "
            f"(damaged, truncated or another format: {type(error).__name__})"
        ) from None
    state, entry = _unwrapped(state, checkpoint)
    where = f"--weights {checkpoint}" + (f" (its {entry!r} entry)" if entry else "")
    stripped = _stripped(model.state_dict(), state)
    if stripped is not None:
        prefix, state = stripped
        print(
            f"signattack: note: {where}: read its keys without the prefix {prefix!r} "
            "(saved from a wrapper: DataParallel, torch.compile or a Lightning-style module)",
            file=sys.stderr,
        )
    try:
        model.load_state_dict(state)
    except RuntimeError:
        raise UsageError(
            f"{where} does not fit the model from {spec}: " + _misfit(model.state_dict(), state)
        ) from None
    return state


CHECKPOINT_KEYS = ("state_dict", "model_state_dict", "model")
"""Where a training checkpoint keeps the weights, when its top level is not a state dict
(PyTorch Lightning and RobustBench's ``state_dict``, the PyTorch tutorials'
``model_state_dict``, timm's and torchvision's reference scripts' ``model``)."""

WRAPPER_PREFIXES = ("module.", "model.", "_orig_mod.")
"""Prefixes a wrapper adds to every key (DataParallel's ``module.``, a Lightning or
RobustBench module's ``model.``, torch.compile's ``_orig_mod.``)."""


def _unwrapped(state: object, checkpoint: Path) -> tuple[dict[str, object], str | None]:
    """The state dict ``state`` holds: itself, or a checkpoint's entry under one of
    [`CHECKPOINT_KEYS`][] where its top level holds other dicts; and the key it came from."""
    if not isinstance(state, dict):
        raise UsageError(
            f"--weights {checkpoint} must hold a state dict, got {type(state).__name__}"
        )
    if not any(isinstance(value, dict) for value in state.values()):
        return state, None
    for key in CHECKPOINT_KEYS:
        if isinstance(state.get(key), dict):
            return state[key], key
    held = ", ".join(repr(key) for key in list(state)[:6])
    raise UsageError(
        f"--weights {checkpoint} is a checkpoint (it holds {held}) with no state dict under "
        f"{', '.join(repr(key) for key in CHECKPOINT_KEYS)}: save model.state_dict() alone"
    )


def _stripped(
    expected: dict[str, object], found: dict[str, object]
) -> tuple[str, dict[str, object]] | None:
    """``found`` without the wrapper prefixes every key carries (``module.``, then perhaps
    ``model.``), where the keys left are exactly the model's; else ``None``."""
    if set(found) == set(expected):
        return None
    removed, keys = "", list(found)
    while keys:
        prefix = next((p for p in WRAPPER_PREFIXES if all(k.startswith(p) for k in keys)), None)
        if prefix is None:
            break
        removed += prefix
        keys = [key[len(prefix) :] for key in keys]
        if set(keys) == set(expected) and len(keys) == len(found):
            return removed, dict(zip(keys, found.values(), strict=True))
    return None


def _misfit(expected: dict[str, object], found: dict[str, object]) -> str:
    """Why a state dict does not fit a model, in one sentence: the counts of missing,
    unexpected and misshapen entries, and the likely cause where a prefix explains it."""
    missing = [key for key in expected if key not in found]
    unexpected = [key for key in found if key not in expected]
    misshapen = [
        key
        for key in expected
        if key in found
        and getattr(expected[key], "shape", None) != getattr(found[key], "shape", None)
    ]
    parts = []
    if missing:
        parts.append(f"{len(missing)} of the model's {len(expected)} entries are missing")
    if unexpected:
        parts.append(f"{len(unexpected)} of the file's {len(found)} entries are unknown")
    if misshapen:
        first = misshapen[0]
        there, here = (tuple(getattr(side[first], "shape", ())) for side in (found, expected))
        shapes = f"{there} for {here}"
        parts.append(f"{len(misshapen)} have other shapes (first: {first!r}, {shapes})")
    text = "; ".join(parts) or "the entries differ"
    cause = _wrapper_prefix(set(expected), set(found))
    if cause is not None:
        return f"{text}: {cause}"
    shared = [p for p in WRAPPER_PREFIXES if found and all(key.startswith(p) for key in found)]
    if shared:
        inner = {key[len(shared[0]) :] for key in found}
        text += (
            f": every key of the file starts with {shared[0]!r} (a wrapper's prefix), and "
            f"without it {len(inner ^ set(expected))} keys still differ from the model's"
        )
    if misshapen:
        text += ": the model's settings (its number of classes?) differ from the trained one's"
    return text


def _wrapper_prefix(expected: set[str], found: set[str]) -> str | None:
    """Why the keys differ where a wrapper explains it: the file's keys are the model's
    under a prefix (saved from DataParallel's ``module.``, torch.compile's ``_orig_mod.``,
    a RobustBench or Lightning ``model.``, ``nn.Sequential(normalize, net)``'s ``1.``), or
    the other way round (the factory wraps the network the weights were saved from)."""
    for inner, outer, side in ((expected, found, "file"), (found, expected, "model")):
        heads = {".".join(key.split(".")[:depth]) + "." for key in outer for depth in (1, 2)}
        for prefix in sorted(heads, key=len):
            if inner and {k[len(prefix) :] for k in outer if k.startswith(prefix)} == inner:
                extra = [key for key in outer if not key.startswith(prefix)]
                rest = f" (and {len(extra)} more, first {extra[0]!r})" if extra else ""
                if side == "file":
                    return (
                        f"the file holds each of the model's keys as one that starts with "
                        f"{prefix!r}{rest}, saved from a wrapper (DataParallel, torch.compile, "
                        "a Sequential): save the network's own state_dict or strip the prefix"
                    )
                return (
                    f"the model's keys are the file's under {prefix!r}{rest}: --model wraps "
                    "the network the weights were saved from; return that network (with "
                    "--mean/--std or --input-range for the wrapper's normalisation)"
                )
    return None


def weights_digest(path: Path) -> str:
    """The SHA-256 of the weights file ``path``, as hex: what an export records of it.

    Raises:
        UsageError: The file cannot be read.
    """
    digest = hashlib.sha256()
    try:
        with path.open("rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    except OSError as error:
        reason = error.strerror or type(error).__name__
        raise UsageError(f"--weights {str(path)!r} cannot be read: {reason}") from None
    return digest.hexdigest()
