"""The model a user names on the command line (``--model``, ``--model-arg``, ``--weights``,
``--input-range``, ``--mean``/``--std``, ``--device``): its options, and the model built from
them, on its device, in eval mode."""

from __future__ import annotations

import argparse
import ast
import importlib
import inspect
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from signattack._cli_args import UsageError, numbers
from signattack._cli_weights import read_state

if TYPE_CHECKING:
    import torch
    from torch import nn


def add_model_arguments(parser: argparse.ArgumentParser, *, required: bool = True) -> None:
    """The options that name and load the model (``--model`` optional where ``required`` is
    false: ``verify`` reads it from the export's record)."""
    parser.add_argument(
        "--model",
        required=required,
        help="module:factory returning an nn.Module (a module of the current folder, or "
        "installed: torchvision.models:resnet18)",
    )
    parser.add_argument(
        "--model-arg",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="an argument of the factory, repeatable: --model-arg num_classes=10",
    )
    parser.add_argument(
        "--weights",
        "--checkpoint",
        dest="weights",
        type=Path,
        help="the model's weights: a state dict, or a training checkpoint holding one under "
        "'model' (loaded weights_only; --checkpoint is the old name)",
    )
    parser.add_argument(
        "--input-range",
        default=None,
        help="the box the model takes, when not the data's --bounds: 0,1 feeds CIFAR's 0-255 "
        "pixels to a model trained on [0, 1] (radii stay in --bounds units)",
    )
    for flag, what in (("--mean", "means"), ("--std", "standard deviations")):
        parser.add_argument(
            flag,
            default=None,
            help=f"per-channel {what} the model normalises by, comma-separated, in the units "
            "it takes (--input-range, else --bounds): the model runs behind "
            "signattack.models.Normalize",
        )
    parser.add_argument("--device", default=None, help="default: cuda if available, else cpu")


def device(text: str | None, local_rank: int) -> torch.device:
    import torch

    if text is None:
        return torch.device(f"cuda:{local_rank}" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(text)
        torch.empty(0, device=device)
    except (RuntimeError, ValueError, AssertionError) as error:
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise UsageError(
            f"--device must be a device this machine has (cpu, cuda, cuda:0), "
            f"got {text!r}: {reason}"
        ) from None
    return device


def factory_arguments(pairs: list[str]) -> dict[str, object]:
    """``--model-arg NAME=VALUE`` as keyword arguments; a value is a Python literal
    (``10``, ``True``, ``'x'``, ``(1, 2)``) or else the text itself."""
    arguments: dict[str, object] = {}
    given: dict[str, str] = {}
    for pair in pairs:
        name, equals, text = pair.partition("=")
        name = name.strip()
        if not equals or not name.isidentifier():
            raise UsageError(f"--model-arg must look like NAME=VALUE, got {pair!r}")
        if not text.strip():
            raise UsageError(
                f"--model-arg must look like NAME=VALUE, got {pair!r}: the value is empty "
                f"(write {name}='' for an empty text)"
            )
        if name in given:
            raise UsageError(
                f"--model-arg names {name} twice, got {given[name]!r} and {pair!r}: give each "
                "argument once"
            )
        given[name] = pair
        try:
            arguments[name] = ast.literal_eval(text)
        except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
            arguments[name] = text
    return arguments


def _checked_spec(spec: str) -> tuple[str, str]:
    """``--model``'s module and factory: a dotted module name (``nets``,
    ``torchvision.models``) and a function's name, or a one-line error that says so."""
    module_name, _, factory_name = spec.partition(":")
    expected = (
        "expected module:factory with a module name as Python imports it (nets, "
        "torchvision.models: no folder, no .py) and the name of a function in it"
    )
    if not module_name or not factory_name:
        raise UsageError(f"--model must look like module:factory, got {spec!r}: {expected}")
    if not all(part.isidentifier() for part in module_name.split(".")):
        hint = ""
        if "/" in module_name or "\\" in module_name or module_name.startswith("."):
            hint = ": run from the module's folder (or install it) and name the module alone"
        raise UsageError(f"--model {spec!r} names no importable module, {expected}{hint}")
    if module_name.endswith(".py") or not factory_name.isidentifier():
        raise UsageError(f"--model {spec!r} is not module:factory, {expected}")
    return module_name, factory_name


def _shown_arguments(arguments: dict[str, object]) -> str:
    return ", ".join(f"{name}={value!r}" for name, value in arguments.items()) or "no arguments"


def _load(
    spec: str, arguments: dict[str, object], weights: Path | None, device: torch.device
) -> nn.Module:
    import torch

    module_name, factory_name = _checked_spec(spec)
    if os.getcwd() not in sys.path and "" not in sys.path:
        sys.path.insert(0, os.getcwd())  # a console script does not see the current folder
    try:
        factory = getattr(importlib.import_module(module_name), factory_name)
    except (ImportError, AttributeError) as error:
        where = ""
        if isinstance(error, ModuleNotFoundError) and error.name == module_name.split(".")[0]:
            where = f": --model names a module of the current folder ({os.getcwd()}) or installed"
        raise UsageError(f"--model {spec!r} could not be loaded: {error}{where}") from None
    if not callable(factory):
        raise UsageError(f"--model {spec!r} must name a callable, got {type(factory).__name__}")
    try:
        signature = inspect.signature(factory)
        signature.bind(**arguments)
    except TypeError as error:
        given = ", ".join(arguments) or "none"
        raise UsageError(
            f"--model {spec!r} takes {signature}, which the arguments given ({given}) do not "
            f"fit ({error}): pass its arguments with --model-arg NAME=VALUE"
        ) from None
    except ValueError:  # no signature to inspect (some builtins): just call it
        pass
    try:
        model = factory(**arguments)
    except Exception as error:
        reason = " ".join(str(error).split())[:300] or "no message"
        raise UsageError(
            f"--model {spec!r} failed when called with {_shown_arguments(arguments)} (from "
            f"--model-arg): {type(error).__name__}: {reason}; check --model-arg NAME=VALUE "
            "(a value is a Python literal: 10, True, 'text')"
        ) from error
    if not isinstance(model, torch.nn.Module):
        raise UsageError(
            f"--model {spec!r} must return a torch.nn.Module, got {type(model).__name__}"
        )
    if weights is not None:
        model.load_state_dict(read_state(weights, spec, model))
    return model.to(device).eval()


def load_model(
    args: argparse.Namespace, bounds: tuple[float, float]
) -> tuple[nn.Module, torch.device]:
    """The model the options name, on its device, in eval mode; behind a linear map from
    ``bounds`` to ``--input-range`` where that is given."""
    where = device(args.device, int(os.environ.get("LOCAL_RANK", "0")))
    model = _load(args.model, factory_arguments(args.model_arg), args.weights, where)
    if args.mean is not None or args.std is not None:
        model = _normalized(model, args.mean, args.std).to(where).eval()
    if args.input_range is not None:
        taken = numbers(args.input_range, "--input-range", count=2)
        if not -float("inf") < taken[0] < taken[1] < float("inf"):
            raise UsageError(
                f"--input-range must be finite lower,upper with lower < upper, "
                f"got {args.input_range!r}"
            )
        from signattack.models import Rescaled

        model = Rescaled(model, bounds, (taken[0], taken[1])).eval()
    return model, where


def _normalized(model: nn.Module, mean: str | None, std: str | None) -> nn.Module:
    """``model`` behind [`Normalize`][signattack.models.Normalize] with ``--mean`` and ``--std``."""
    from signattack.models import Normalize

    if mean is None or std is None:
        given, missing = ("--mean", "--std") if std is None else ("--std", "--mean")
        raise UsageError(f"{given} needs {missing} as well: give both, one value per channel")
    means, stds = numbers(mean, "--mean"), numbers(std, "--std")
    if len(means) != len(stds):
        raise UsageError(
            f"--mean and --std must have one value per channel each, got {len(means)} "
            f"({mean!r}) and {len(stds)} ({std!r})"
        )
    try:
        return Normalize(model, means, stds)
    except ValueError as error:
        raise UsageError(f"--mean {mean!r} and --std {std!r}: {error}") from None
