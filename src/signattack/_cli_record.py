"""How an evaluation made on the command line is rebuilt: ``evaluate --adversarial`` records
its flags in the export (the model's source, the box, the radii and their units, the norm,
the data), and ``verify FILE`` rebuilds the model from them, refusing a flag given that
differs from the recorded one, with both values."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Mapping
from importlib.machinery import PathFinder
from pathlib import Path

from signattack._cli_args import UsageError, numbers
from signattack._cli_model import factory_arguments
from signattack._cli_weights import weights_digest
from signattack._io import Json

MODEL_FLAGS = {
    "model": "--model",
    "model_arg": "--model-arg",
    "weights": "--weights",
    "input_range": "--input-range",
    "mean": "--mean",
    "std": "--std",
}
"""The options that build the model, by their name in ``argparse``: recorded by
``evaluate``, read back by ``verify``."""

_NUMBER_FLAGS = ("input_range", "mean", "std")


def command_record(
    args: argparse.Namespace, eps: list[float], data: Mapping[str, Json]
) -> dict[str, Json]:
    """The flags of an ``evaluate`` run that rebuild its evaluation, for the export."""
    weights: Path | None = args.weights
    return {
        "model": args.model,
        "model_arg": list(args.model_arg),
        "weights": None if weights is None else str(weights.absolute()),
        "weights_sha256": None if weights is None else weights_digest(weights),
        "input_range": args.input_range,
        "mean": args.mean,
        "std": args.std,
        "bounds": args.bounds,
        "eps": args.eps,
        "eps_values": list(eps),
        "eps_units": "the data's, as --bounds gives them",
        "norm": args.norm,
        "data": dict(data),
        "folder": os.getcwd(),
    }


def rebuilt(args: argparse.Namespace, path: Path, record: Mapping[str, Json] | None) -> None:
    """Fill the model's options of ``verify`` that were not given from the export's
    ``record``, in place.

    Raises:
        UsageError: A flag given differs from the recorded one (both named); the recorded
            weights are gone or changed; the file records no command (written in Python,
            or before exports recorded one) and ``--model`` is not given: which flags to
            give.
    """
    command = None if record is None else record.get("command")
    if not isinstance(command, dict):
        if args.model is None:
            raise UsageError(_flags_needed(path, record))
        return
    filled = set()
    for name, flag in MODEL_FLAGS.items():
        given, recorded = getattr(args, name), command.get(name)
        if given is None or given == []:
            setattr(args, name, _recorded_value(name, recorded))
            filled.add(name)
        elif name == "weights" and _same_file(given, recorded):
            _check_weights(given, command.get("weights_sha256"))
        elif not _same(name, given, recorded, command):
            raise UsageError(
                f"{flag} {_shown(name, given)} differs from the evaluation's "
                f"{_shown(name, recorded)}, recorded in {str(path)!r}: leave {flag} out to "
                "use the recorded one"
            )
    if args.model is None:
        raise UsageError(_flags_needed(path, None))
    if "weights" in filled and args.weights is not None:
        _check_weights(args.weights, command.get("weights_sha256"))
    _check_folder(str(args.model), path, command.get("folder"))
    if "model" in filled:
        _check_factory(str(args.model), path)


def _same_file(given: object, recorded: Json) -> bool:
    """Whether ``--weights`` names the recorded file itself (resolved: a relative path, a
    link), whatever it now holds."""
    if not isinstance(given, Path) or not isinstance(recorded, str):
        return False
    try:
        return given.resolve() == Path(recorded).resolve()
    except (OSError, RuntimeError):
        return False


def _check_folder(spec: str, path: Path, folder: Json) -> None:
    """Refuse, with where to run, a model whose module lies in the folder the evaluation ran
    in and is neither in the current folder nor installed: verify imports it from the
    current folder, as evaluate did, and never adds another folder to the import path."""
    top = spec.partition(":")[0].split(".")[0]
    if not isinstance(folder, str) or not top.isidentifier():
        return
    here = Path.cwd()
    try:
        elsewhere = Path(folder).resolve() != here.resolve()
    except (OSError, RuntimeError):
        return
    if (
        elsewhere
        and PathFinder.find_spec(top, [str(here)]) is None
        and PathFinder.find_spec(top, [folder]) is not None
        and PathFinder.find_spec(top, [p for p in sys.path if p not in ("", str(here), folder)])
        is None
    ):
        raise UsageError(
            f"{str(path)!r} was made in the folder {folder!r}, which holds its --model "
            f"{spec!r} (module {top!r}): run verify from there (cd {folder})"
        )


def _recorded_value(name: str, recorded: Json) -> object:
    if name == "model_arg":
        return [str(pair) for pair in recorded] if isinstance(recorded, list) else []
    if recorded is None:
        return None
    return Path(str(recorded)) if name == "weights" else str(recorded)


def _same(name: str, given: object, recorded: Json, command: Mapping[str, Json]) -> bool:
    """Whether a flag given says what the recorded one says: the same numbers, factory
    arguments or weights (by their digest, wherever the file now lies)."""
    if recorded is None:
        return False
    if name == "weights" and isinstance(given, Path):
        return given.is_file() and weights_digest(given) == command.get("weights_sha256")
    if name == "model_arg" and isinstance(given, list) and isinstance(recorded, list):
        return factory_arguments(given) == factory_arguments([str(r) for r in recorded])
    if name in _NUMBER_FLAGS:
        flag = MODEL_FLAGS[name]
        return numbers(str(given), flag) == numbers(str(recorded), flag)
    return str(given).strip() == str(recorded).strip()


def _shown(name: str, value: object) -> str:
    if value is None or value == []:
        return "(not given)"
    if name == "model_arg" and isinstance(value, list):
        return repr(" ".join(str(pair) for pair in value))
    return repr(str(value))


def _check_weights(weights: Path, digest: Json) -> None:
    """Refuse recorded weights that are gone or changed since the evaluation."""
    if not weights.is_file():
        raise UsageError(
            f"--weights: the evaluation's weights {str(weights)!r} are not there: give "
            "--weights FILE with the file it used"
        )
    found = weights_digest(weights)
    if found != digest:
        raise UsageError(
            f"--weights: the evaluation's weights {str(weights)!r} changed since it ran "
            f"(sha256 {found[:12]}..., recorded {str(digest)[:12]}...): give --weights FILE "
            "with the file it used"
        )


_MODEL_LIBRARIES = ("signattack.models", "torchvision.models")
"""Where a recorded factory may come from besides the current folder: libraries of models,
whose functions build networks and do nothing else."""


def _check_factory(spec: str, path: Path) -> None:
    """Refuse to import a recorded factory that is not known to build a model: only one of
    [`_MODEL_LIBRARIES`][] or of a module in the current folder (the user's own code, which
    the evaluation imported from there) is called with the file's arguments. Any other
    installed function (``sympy:sympify``, ``numpy:savetxt``) could run a command or write a
    file for a crafted export; the user names such a factory with ``--model`` themselves."""
    module, _, factory = spec.partition(":")
    parts = module.split(".")
    library = any(module == name or module.startswith(name + ".") for name in _MODEL_LIBRARIES)
    local = bool(parts[0]) and PathFinder.find_spec(parts[0], [str(Path.cwd())]) is not None
    private = any(part.startswith("_") for part in parts) or factory.startswith("_")
    if private or not (library or local):
        raise UsageError(
            f"{str(path)!r} records --model {spec!r}: verify calls a recorded factory only "
            "from signattack.models, torchvision.models or a module in the current folder; "
            "if it is yours, give --model and its flags yourself"
        )


def _flags_needed(path: Path, record: Mapping[str, Json] | None) -> str:
    """Which flags rebuild the model of an export that records no command."""
    flags = (
        "give --model module:factory (with --model-arg, --weights, --input-range or "
        "--mean/--std as the evaluation built it)"
    )
    if record is None:
        return f"{str(path)!r} records no model (written before exports recorded one): {flags}"
    model = record.get("model")
    named = model.get("module", model.get("class")) if isinstance(model, dict) else None
    what = f" ({named})" if isinstance(named, str) else ""
    return (
        f"{str(path)!r} was written by evaluate() in Python: it records the model's class"
        f"{what} and a digest of its state, not how to build it: {flags}"
    )
