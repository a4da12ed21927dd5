"""The model's weights (``--weights``): read ``weights_only`` and fitted to the model, with
one sentence on why a file does not fit (a wrapper's prefix, other shapes)."""

from __future__ import annotations

import hashlib
import pickle
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
    if isinstance(state, dict) and isinstance(state.get("model"), dict):
        state = state["model"]  # a training checkpoint that holds more than the weights
    if not isinstance(state, dict):
        raise UsageError(
            f"--weights {checkpoint} must hold a state dict, got {type(state).__name__}"
        )
    try:
        model.load_state_dict(state)
    except RuntimeError:
        raise UsageError(
            f"--weights {checkpoint} does not fit the model from {spec}: "
            + _misfit(model.state_dict(), state)
        ) from None
    return state


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
