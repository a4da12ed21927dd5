"""``python -m signattack evaluate``: robustness of your own model from the command line.

    python -m signattack evaluate --model mypackage.models:make_net --checkpoint net.pt \\
        --data cifar10:data/ --eps 2,4,8 --steps 5 --report report.json
    python -m signattack evaluate ... --attacks standard    # APGD-CE, APGD-T, FAB-T, Square

A preset runs with its published settings (``standard``: APGD-CE, APGD-T and FAB-T with 100
steps, Square with 5000 queries; ``gradient``: the two APGD attacks; ``rand``: APGD-CE and APGD-DLR
with 20 passes per gradient) unless ``--steps``, ``--queries`` or ``--eot`` change them, and
the output says what ran.

Every mistake in the arguments, the files they name or the data is answered with one line
that names the flag, what was expected and what came, and exit status 2; ``--debug`` shows
the traceback instead. Under ``torchrun --nproc_per_node=N`` the processes share the batches
(gloo on the CPU, NCCL on GPUs) and process 0 writes the report; when one process fails,
all of them exit with an error.
"""

from __future__ import annotations

import argparse
import ast
import importlib
import inspect
import json
import os
import pickle
import sys
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

from signattack._io import write_atomically

if TYPE_CHECKING:
    import torch
    from torch import nn

    from signattack._host import HostArray
    from signattack.attacks import EpsAttack

__all__ = ["add_parser", "run"]

Parser = TypeVar("Parser", bound=argparse.ArgumentParser)

USAGE_ERROR = 2
"""The exit status of every user error, as for argparse's own."""

INTERRUPTED = 130
"""The exit status after Ctrl-C, as a shell reports it (128 + SIGINT)."""

ATTACK_NAMES = ("iterated", "fgsm", "apgd-ce", "apgd-dlr", "apgd-t", "fab-t", "square")
"""What ``--attacks`` accepts, besides the presets."""

PRESETS = {
    "standard": ("apgd-ce", "apgd-t", "fab-t", "square"),
    "gradient": ("apgd-ce", "apgd-t"),
    "rand": ("apgd-ce", "apgd-dlr"),
}
"""The presets of ``--attacks``: AutoAttack's standard suite, its gradient members, and its
version for randomized defenses (with ``--eot 20`` unless given)."""

DEFAULT_STEPS, PRESET_STEPS, PRESET_QUERIES, RAND_EOT = 10, 100, 5000, 20
"""Steps of a single attack; of a preset's APGD runs (the paper's); Square's queries; the
passes per gradient of the ``rand`` preset."""


class UsageError(Exception):
    """A mistake of the user's, reported as one line."""


def _positive(text: str) -> int:
    value = _integer(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {text!r}")
    return value


def _non_negative(text: str) -> int:
    value = _integer(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {text!r}")
    return value


def _integer(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None


def add_parser(commands: argparse._SubParsersAction[Parser]) -> None:
    """Add the ``evaluate`` subcommand to an ``argparse`` subparsers object."""
    parser = commands.add_parser(
        "evaluate",
        help="clean and robust accuracy of a model over a dataset",
        description="Attack every batch of a dataset at every eps and report accuracy.",
    )
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
    parser.add_argument(
        "--data",
        required=True,
        help="cifar10:DIR (python-format batches), digits (scikit-learn), or npz:FILE with x, y",
    )
    parser.add_argument("--split", default="test", choices=["train", "test"])
    parser.add_argument("--eps", required=True, help="comma-separated radii, e.g. 2,4,8")
    parser.add_argument("--attack", default="iterated", choices=["iterated", "fgsm"])
    parser.add_argument(
        "--attacks",
        default=None,
        help="attacks run in order, each on the samples still robust: comma-separated from "
        f"{', '.join(ATTACK_NAMES)}, or a preset: 'standard' (apgd-ce,apgd-t,fab-t,square "
        "with 100 steps and 5000 queries), 'gradient' (apgd-ce,apgd-t), 'rand' (apgd-ce,apgd-dlr "
        "with --eot 20); overrides --attack",
    )
    parser.add_argument(
        "--steps",
        type=_positive,
        default=None,
        help=f"iterations of each gradient attack ({DEFAULT_STEPS}; {PRESET_STEPS} in a preset)",
    )
    parser.add_argument(
        "--queries",
        type=_positive,
        default=PRESET_QUERIES,
        help=f"Square's queries per sample ({PRESET_QUERIES})",
    )
    parser.add_argument(
        "--eot",
        type=_positive,
        default=None,
        help="passes averaged per gradient, for a randomized model (1; 20 in the rand preset)",
    )
    parser.add_argument("--step-size", type=float, default=None)
    parser.add_argument("--loss", default="ce", choices=["ce", "margin"])
    parser.add_argument("--bounds", default="0,255", help="the pixel box, e.g. 0,1")
    parser.add_argument("--random-start", action="store_true")
    parser.add_argument("--seed", type=_non_negative, default=0)
    parser.add_argument("--early-stop", action="store_true")
    parser.add_argument("--batch-size", type=_positive, default=256)
    parser.add_argument("--limit", type=_non_negative, default=None, help="first N samples only")
    parser.add_argument(
        "--report",
        type=Path,
        help="write the report: .json (everything), .csv (per sample), .md or .tex (the table)",
    )
    parser.add_argument(
        "--robustbench",
        type=Path,
        help="write a RobustBench-shaped entry (clean_acc, autoattack_acc, eps, n_examples) "
        "at the largest eps, as JSON",
    )
    parser.add_argument("--plot", type=Path, help="write accuracy against eps (.png)")
    parser.add_argument("--resume-file", type=Path, help="progress checkpoint, for resuming")
    parser.add_argument("--device", default=None, help="default: cuda if available, else cpu")
    parser.add_argument("--debug", action="store_true", help="show tracebacks of errors")


def _numbers(text: str, flag: str, count: int | None = None) -> list[float]:
    parts = [part.strip() for part in text.split(",")]
    try:
        values = [float(part) for part in parts]
    except ValueError:
        values = []
    wanted = f"{count} comma-separated numbers" if count else "comma-separated numbers"
    if not values or (count is not None and len(values) != count):
        raise UsageError(f"{flag} must be {wanted}, got {text!r}")
    return values


def _device(text: str | None, local_rank: int) -> torch.device:
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


def _model_arguments(pairs: list[str]) -> dict[str, object]:
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


def _load_model(
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


def _load_data(spec: str, split: str, limit: int | None) -> tuple[HostArray, HostArray]:

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


class _Batches:
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


def run(args: argparse.Namespace) -> int:
    """Run the ``evaluate`` subcommand; returns the exit status."""
    try:
        import torch
    except ImportError:
        print(
            'signattack evaluate: needs PyTorch: pip install "signattack[torch]"', file=sys.stderr
        )
        return USAGE_ERROR
    distributed = int(os.environ.get("WORLD_SIZE", "1")) > 1
    if distributed:
        if torch.cuda.is_available():
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
        torch.distributed.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    try:
        return _evaluate(args, distributed)
    except KeyboardInterrupt:
        if args.debug:
            raise
        kept = (
            f"; the finished batches are in {args.resume_file}: run the same command to resume"
            if args.resume_file is not None
            else "; --resume-file FILE keeps finished batches for a resume"
        )
        print(f"signattack evaluate: interrupted{kept}", file=sys.stderr)
        return INTERRUPTED
    except Exception as error:
        if args.debug:
            raise
        user_error = isinstance(error, (UsageError, ValueError, TypeError))
        text = " ".join(str(error).split()) or type(error).__name__
        if not user_error:
            text = f"{type(error).__name__}: {text} (--debug shows the traceback)"
        print(f"signattack evaluate: error: {text}", file=sys.stderr)
        return USAGE_ERROR if user_error else 1
    finally:
        if distributed:
            torch.distributed.destroy_process_group()


def _attack_names(args: argparse.Namespace) -> list[str]:
    if args.attacks is None:
        return [args.attack]
    names = [part.strip() for part in args.attacks.split(",")]
    if len(names) == 1 and names[0] in PRESETS:
        return list(PRESETS[names[0]])
    unknown = [name for name in names if name not in ATTACK_NAMES]
    if not names or unknown or not all(names):
        raise UsageError(
            f"--attacks must be a preset ({', '.join(PRESETS)}) or comma-separated names "
            f"from {', '.join(ATTACK_NAMES)}, got {args.attacks!r}"
        )
    return names


def _preset(args: argparse.Namespace) -> str | None:
    """The preset that ``--attacks`` names, if it names one."""
    if args.attacks is not None and args.attacks.strip() in PRESETS:
        preset: str = args.attacks.strip()
        return preset
    return None


def _steps(args: argparse.Namespace) -> int:
    """The gradient attacks' iterations: given, or the preset's, or a single attack's."""
    if args.steps is not None:
        steps: int = args.steps
        return steps
    return PRESET_STEPS if _preset(args) is not None else DEFAULT_STEPS


def _eot(args: argparse.Namespace) -> int:
    """The passes per gradient: given, or the rand preset's 20, or 1."""
    if args.eot is not None:
        eot: int = args.eot
        return eot
    return RAND_EOT if _preset(args) == "rand" else 1


def _what_ran(attacks: list[EpsAttack], args: argparse.Namespace) -> str:
    """One line naming the attacks that ran, with their budgets."""
    from signattack.attacks import APGD, APGDT, FABT, IteratedSign, Square

    parts = []
    for attack in attacks:
        if isinstance(attack, Square):
            parts.append(f"Square ({attack.queries} queries)")
        elif isinstance(attack, APGD):
            parts.append(f"APGD-{str(attack.loss).upper()} ({attack.steps} steps)")
        elif isinstance(attack, FABT):
            parts.append(f"FAB-T ({attack.steps} steps)")
        elif isinstance(attack, (APGDT, IteratedSign)):
            parts.append(f"{type(attack).__name__} ({attack.steps} steps)")
        else:
            parts.append(type(attack).__name__)
    eot = _eot(args)
    preset = _preset(args)
    head = f"attacks ({preset} preset)" if preset is not None else "attacks"
    return f"{head}: {', '.join(parts)}" + (f"; EOT over {eot} passes" if eot > 1 else "")


def _attack(
    name: str, args: argparse.Namespace, bounds: tuple[float, float], eps: float
) -> EpsAttack:
    """One attack of the command line; its radius is replaced by the evaluation."""
    from signattack.attacks import APGD, APGDT, FABT, FGSM, IteratedSign, Square

    steps, eot = _steps(args), _eot(args)
    if name == "fgsm":
        return FGSM(eps, bounds=bounds, loss=args.loss, eot=eot)
    if name == "iterated":
        return IteratedSign(
            eps,
            steps,
            step_size=args.step_size,
            random_start=args.random_start,
            seed=args.seed,
            early_stop=args.early_stop,
            bounds=bounds,
            loss=args.loss,
            eot=eot,
        )
    if name == "square":
        return Square(eps, args.queries, bounds=bounds, seed=args.seed)
    if name == "fab-t":
        return FABT(eps, steps, bounds=bounds, seed=args.seed)
    common = {"bounds": bounds, "seed": args.seed, "early_stop": args.early_stop, "eot": eot}
    if name == "apgd-t":
        return APGDT(eps, steps, **common)
    return APGD(eps, steps, loss="dlr" if name == "apgd-dlr" else "ce", **common)


def _warn_unused_outputs(
    model: nn.Module, x: HostArray, y: HostArray, device: torch.device
) -> None:
    """Say so where the labels use few of the model's outputs: a torchvision network built
    with its 1000 ImageNet classes runs on 10-class data without an error, and every
    prediction among the other 990 counts as a mistake."""
    import torch

    with torch.no_grad():
        outputs = model(torch.as_tensor(x[:1]).float().to(device)).shape[-1]
    used = int(y.max()) + 1
    if outputs >= 2 * used and outputs > 10:
        print(
            f"signattack evaluate: warning: the model has {outputs} outputs but the labels use "
            f"{used} classes: was it built for this data? (--model-arg num_classes={used})",
            file=sys.stderr,
        )


def _evaluate(args: argparse.Namespace, distributed: bool) -> int:
    import torch

    from signattack.evaluation import evaluate

    eps = _numbers(args.eps, "--eps")
    if not all(0 <= value < float("inf") for value in eps) or len(set(eps)) != len(eps):
        raise UsageError(f"--eps must be distinct finite radii >= 0, got {args.eps!r}")
    bounds = _numbers(args.bounds, "--bounds", count=2)
    if not -float("inf") < bounds[0] < bounds[1] < float("inf"):
        raise UsageError(
            f"--bounds must be finite lower,upper with lower < upper, got {args.bounds!r}"
        )
    if args.step_size is not None and not 0 <= args.step_size < float("inf"):
        raise UsageError(f"--step-size must be a finite number >= 0, got {args.step_size!r}")
    device = _device(args.device, int(os.environ.get("LOCAL_RANK", "0")))
    model = _load_model(args.model, _model_arguments(args.model_arg), args.weights, device)
    x, y = _load_data(args.data, args.split, args.limit)
    if args.input_range is not None:
        taken = _numbers(args.input_range, "--input-range", count=2)
        if not -float("inf") < taken[0] < taken[1] < float("inf"):
            raise UsageError(
                f"--input-range must be finite lower,upper with lower < upper, "
                f"got {args.input_range!r}"
            )
        from signattack.models import Rescaled

        model = Rescaled(model, (bounds[0], bounds[1]), (taken[0], taken[1])).eval()
    _warn_unused_outputs(model, x, y, device)
    try:
        box = (bounds[0], bounds[1])
        attacks = [_attack(name, args, box, eps[0]) for name in _attack_names(args)]
    except (TypeError, ValueError) as error:
        raise UsageError(f"the attack's settings: {error}") from None
    if args.resume_file is not None and args.resume_file.is_dir():
        raise UsageError(f"--resume-file must be a file, got the folder {str(args.resume_file)!r}")
    report = evaluate(
        model,
        _Batches(x, y, args.batch_size, device),
        attacks if len(attacks) > 1 else attacks[0],
        eps,
        checkpoint=args.resume_file,
    )
    if not distributed or torch.distributed.get_rank() == 0:
        print(_what_ran(attacks, args))
        resumed = report.metadata.get("resumed_batches", 0)
        if isinstance(resumed, int) and resumed:
            print(f"resumed: {resumed} finished batches taken from {args.resume_file}")
        print(f"{report.samples} samples")
        print(report.table())
        if args.report is not None:
            print(f"wrote {report.save(args.report)}")
        if args.robustbench is not None:
            entry = json.dumps(report.to_robustbench(), indent=2) + "\n"
            write_atomically(args.robustbench, entry.encode())
            print(f"wrote {args.robustbench}")
        if args.plot is not None:
            report.plot(args.plot)
            print(f"wrote {args.plot}")
    return 0
