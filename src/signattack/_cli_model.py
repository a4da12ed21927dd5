"""What the command line's subcommands share: one-line usage errors, the files a run writes
(every output flag checked by :func:`check_outputs` before any work), the data (``--data``)
and the model a user names (``--model``, ``--model-arg``, ``--weights``, ``--input-range``,
``--device``)."""

from __future__ import annotations

import argparse
import ast
import importlib
import importlib.util
import inspect
import os
import pickle
import stat
import sys
import tempfile
import zipfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch
    from torch import nn

    from signattack._host import HostArray

USAGE_ERROR = 2
"""The exit status of every user error, as for argparse's own."""

INTERRUPTED = 130
"""The exit status after Ctrl-C, as a shell reports it (128 + SIGINT)."""


class UsageError(Exception):
    """A mistake of the user's, reported as one line."""


def positive(text: str) -> int:
    value = integer(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {text!r}")
    return value


def non_negative(text: str) -> int:
    value = integer(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {text!r}")
    return value


def integer(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None


@dataclass(frozen=True)
class Output:
    """A file that an output flag writes.

    Attributes:
        flag: The flag, ``--report``.
        suffixes: The suffixes it can write (``.json``, ...); empty: any.
        needs: A module the writer imports and the extra that installs it, if any.
        folder: Whether it names a folder to write files into, instead of a file.
        beside: Suffixes of the paths it also writes beside the file while it runs
            (``.parts``: the export's per-batch folder), claimed as its own.
    """

    flag: str
    suffixes: tuple[str, ...] = ()
    needs: tuple[str, str] | None = None
    folder: bool = False
    beside: tuple[str, ...] = ()


def check_outputs(
    outputs: Sequence[tuple[Output, Path | None]], inputs: Sequence[tuple[str, Path | None]]
) -> None:
    """Refuse, before any work and without creating anything, every output that could not
    be written at the end: a suffix its writer does not know, a folder, a device or other
    non-file, a read-only file, a folder that is not writable or cannot be created (a file
    stands where a folder must be), a missing library, or two flags naming one file (an
    output that is also one of the ``inputs``, flag and path, would overwrite it).

    Raises:
        UsageError: One line naming the flag and the path.
    """
    claimed = {_identity(path): flag for flag, path in inputs if path is not None}
    for output, path in outputs:
        if path is None:
            continue
        _check_output(output, path)
        for written in (path, *(Path(f"{path}{suffix}") for suffix in output.beside)):
            other = claimed.setdefault(_identity(written), output.flag)
            if other != output.flag:
                raise UsageError(
                    f"{output.flag} {str(path)!r} names the same file as {other} "
                    f"({str(written)!r}): name another file"
                )


def _check_output(output: Output, path: Path) -> None:
    flag, shown = output.flag, repr(str(path))
    if output.folder:
        if os.path.exists(path) and not os.path.isdir(path):
            raise UsageError(f"{flag} must be a folder, got the file {shown}")
        _check_folder(flag, shown, path.absolute())
        return
    if os.path.isdir(path):
        raise UsageError(f"{flag} must be a file, got the folder {shown}")
    if os.path.exists(path):
        mode = os.stat(path).st_mode
        if not stat.S_ISREG(mode):
            raise UsageError(f"{flag} must be a regular file, got {shown} (a device or pipe)")
        if not mode & 0o222 or not os.access(path, os.W_OK):
            raise UsageError(f"{flag} {shown} is read-only: make it writable or name another file")
    if output.suffixes and path.suffix not in output.suffixes:
        wanted = " or ".join([", ".join(output.suffixes[:-1]), output.suffixes[-1]])
        raise UsageError(f"{flag} must end in {wanted.removeprefix(' or ')}, got {shown}")
    if output.needs is not None and importlib.util.find_spec(output.needs[0]) is None:
        module, extra = output.needs
        raise UsageError(f'{flag} {shown} needs {module}: pip install "signattack[{extra}]"')
    _check_folder(flag, shown, path.absolute().parent)


def _check_folder(flag: str, shown: str, folder: Path) -> None:
    """Refuse ``folder`` where it cannot be created or written into."""
    while not os.path.exists(folder) and folder != folder.parent:
        folder = folder.parent  # the first folder that exists: the ones below are created
    if not os.path.isdir(folder):
        raise UsageError(f"{flag} {shown} cannot be written: {str(folder)!r} is not a folder")
    reason = _unwritable(folder)
    if reason is not None:
        raise UsageError(
            f"{flag} {shown} cannot be written: the folder {str(folder)!r} is not writable "
            f"({reason})"
        )


def _unwritable(folder: Path) -> str | None:
    """Why no file can be created in ``folder``, or ``None`` where one can: found by
    creating one and removing it (permissions alone do not tell: an administrator passes
    them, and some file systems refuse what they allow)."""
    try:
        handle, name = tempfile.mkstemp(dir=folder, prefix=".signattack-check-")
    except OSError as error:
        return error.strerror or type(error).__name__
    os.close(handle)
    os.unlink(name)
    return None


def _identity(path: Path) -> Path:
    """The resolved absolute path: two names of one file have the same."""
    return Path(os.path.realpath(path.expanduser()))


def add_model_arguments(parser: argparse.ArgumentParser) -> None:
    """The options that name and load the model."""
    parser.add_argument(
        "--model",
        required=True,
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
    parser.add_argument("--device", default=None, help="default: cuda if available, else cpu")


def numbers(text: str, flag: str, count: int | None = None) -> list[float]:
    parts = [part.strip() for part in text.split(",")]
    try:
        values = [float(part) for part in parts]
    except ValueError:
        values = []
    wanted = f"{count} comma-separated numbers" if count else "comma-separated numbers"
    if not values or (count is not None and len(values) != count):
        raise UsageError(f"{flag} must be {wanted}, got {text!r}")
    return values


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


def _arguments(pairs: list[str]) -> dict[str, object]:
    """``--model-arg NAME=VALUE`` as keyword arguments; a value is a Python literal
    (``10``, ``True``, ``'x'``, ``(1, 2)``) or else the text itself."""
    arguments: dict[str, object] = {}
    for pair in pairs:
        name, equals, text = pair.partition("=")
        if not equals or not name.strip().isidentifier():
            raise UsageError(f"--model-arg must look like NAME=VALUE, got {pair!r}")
        try:
            arguments[name.strip()] = ast.literal_eval(text)
        except (ValueError, SyntaxError):
            arguments[name.strip()] = text
    return arguments


def _load(
    spec: str, arguments: dict[str, object], weights: Path | None, device: torch.device
) -> nn.Module:
    import torch

    module_name, _, factory_name = spec.partition(":")
    if not module_name or not factory_name:
        raise UsageError(f"--model must look like module:factory, got {spec!r}")
    if os.getcwd() not in sys.path and "" not in sys.path:
        sys.path.insert(0, os.getcwd())  # a console script does not see the current folder
    try:
        factory = getattr(importlib.import_module(module_name), factory_name)
    except (ImportError, AttributeError) as error:
        raise UsageError(f"--model {spec!r} could not be loaded: {error}") from None
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
    model = factory(**arguments)
    if not isinstance(model, torch.nn.Module):
        raise UsageError(
            f"--model {spec!r} must return a torch.nn.Module, got {type(model).__name__}"
        )
    if weights is not None:
        model.load_state_dict(_read_state(weights, spec, model))
    return model.to(device).eval()


def _read_state(checkpoint: Path, spec: str, model: nn.Module) -> dict[str, object]:
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
    for prefix in ("module.", "model.", "_orig_mod."):
        if unexpected and all(key.startswith(prefix) for key in found):
            stripped = {key[len(prefix) :] for key in found}
            if stripped == set(expected):
                return (
                    f"{text}: every key of the file starts with {prefix!r} (saved from a "
                    f"wrapper such as DataParallel or torch.compile); strip it when saving"
                )
    if misshapen:
        text += ": the model's settings (its number of classes?) differ from the trained one's"
    return text


def warn_unused_outputs(model: nn.Module, x: HostArray, y: HostArray, device: torch.device) -> None:
    """Say so where the labels use few of the model's outputs: a torchvision network built
    with its 1000 ImageNet classes runs on 10-class data without an error, and every
    prediction among the other 990 counts as a mistake. A model that fails here is left to
    the evaluation, which reports the failure (on every process under torchrun)."""
    import torch

    try:
        with torch.no_grad():
            probe = torch.as_tensor(x[:1]).float().to(device).clone()  # never the data itself
            outputs = model(probe).shape[-1]
    except Exception:
        return
    used = int(y.max()) + 1
    if outputs >= 2 * used and outputs > 10:
        print(
            f"signattack evaluate: warning: the model has {outputs} outputs but the labels use "
            f"{used} classes: was it built for this data? (--model-arg num_classes={used})",
            file=sys.stderr,
        )


def load_model(
    args: argparse.Namespace, bounds: tuple[float, float]
) -> tuple[nn.Module, torch.device]:
    """The model the options name, on its device, in eval mode; behind a linear map from
    ``bounds`` to ``--input-range`` where that is given."""
    where = device(args.device, int(os.environ.get("LOCAL_RANK", "0")))
    model = _load(args.model, _arguments(args.model_arg), args.weights, where)
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


def load_data(spec: str, split: str, limit: int | None) -> tuple[HostArray, HostArray]:

    x: HostArray
    y: HostArray
    if spec == "digits":
        from signattack.digits import load_digits

        data = load_digits()
        pair = (data.x_test, data.y_test) if split == "test" else (data.x_train, data.y_train)
        x, y = pair[0].numpy(), pair[1].numpy()
    elif spec.startswith("cifar10:"):
        from signattack.data import read_cifar10

        try:
            x, y = read_cifar10(spec.partition(":")[2], "test" if split == "test" else "train")
        except (FileNotFoundError, ValueError) as error:
            raise UsageError(f"--data {spec}: {error}") from None
    elif spec.startswith("npz:"):
        x, y = _read_npz(spec)
    else:
        raise UsageError(f"--data must be cifar10:DIR, digits or npz:FILE, got {spec!r}")
    if limit is not None:
        x, y = x[:limit], y[:limit]
    if len(x) == 0:
        raise UsageError(f"--data {spec} must hold samples, got none")
    return x, y


def _read_npz(spec: str) -> tuple[HostArray, HostArray]:
    import numpy as np

    path = Path(spec.partition(":")[2])
    if not path.is_file():
        raise UsageError(f"--data {spec}: no such file {str(path)!r}")
    try:
        with np.load(path, allow_pickle=False) as arrays:
            if "x" not in arrays or "y" not in arrays:
                raise UsageError(f"--data {spec}: the file must hold arrays named x and y")
            x, y = arrays["x"], arrays["y"]
    except (ValueError, OSError, zipfile.BadZipFile, EOFError) as error:
        raise UsageError(f"--data {spec} is not a readable .npz file: {error}") from None
    if x.ndim < 2 or y.shape != (len(x),):
        raise UsageError(
            f"--data {spec}: x must be (n, ...) and y (n,), got {x.shape} and {y.shape}"
        )
    if not np.issubdtype(y.dtype, np.integer):
        raise UsageError(f"--data {spec}: y must hold integer labels, got dtype {y.dtype}")
    return x, y


class Batches:
    """The data in batches on the device, with a length, so that progress has a total."""

    def __init__(self, x: HostArray, y: HostArray, size: int, device: torch.device) -> None:
        self.x, self.y, self.size, self.device = x, y, size, device

    def __len__(self) -> int:
        return -(-len(self.y) // self.size)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        import torch

        for start in range(0, len(self.y), self.size):
            images = torch.as_tensor(self.x[start : start + self.size]).to(self.device)
            labels = torch.as_tensor(self.y[start : start + self.size]).long().to(self.device)
            yield images.float(), labels
