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
import importlib
import inspect
import os
import pickle
import sys
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

if TYPE_CHECKING:
    import torch
    from torch import nn

    from signattack._host import HostArray
    from signattack.attacks import EpsAttack

__all__ = ["add_parser", "run"]

Parser = TypeVar("Parser", bound=argparse.ArgumentParser)

USAGE_ERROR = 2
"""The exit status of every user error, as for argparse's own."""

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
    parser.add_argument("--model", required=True, help="module:factory returning an nn.Module")
    parser.add_argument("--checkpoint", type=Path, help="state dict (loaded weights_only)")
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
    parser.add_argument("--report", type=Path, help="write the report (.json or .csv)")
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


def _load_model(spec: str, checkpoint: Path | None, device: torch.device) -> nn.Module:
    import torch

    module_name, _, factory_name = spec.partition(":")
    if not module_name or not factory_name:
        raise UsageError(f"--model must look like module:factory, got {spec!r}")
    try:
        factory = getattr(importlib.import_module(module_name), factory_name)
    except (ImportError, AttributeError) as error:
        raise UsageError(f"--model {spec!r} could not be loaded: {error}") from None
    if not callable(factory):
        raise UsageError(f"--model {spec!r} must name a callable, got {type(factory).__name__}")
    try:
        signature = inspect.signature(factory)
        signature.bind()
    except TypeError:
        raise UsageError(
            f"--model {spec!r} must be callable without arguments, but it takes {signature}: "
            "write a factory that builds the model with its settings"
        ) from None
    except ValueError:  # no signature to inspect (some builtins): just call it
        pass
    model = factory()
    if not isinstance(model, torch.nn.Module):
        raise UsageError(
            f"--model {spec!r} must return a torch.nn.Module, got {type(model).__name__}"
        )
    if checkpoint is not None:
        model.load_state_dict(_read_state(checkpoint, spec, model))
    return model.to(device).eval()


def _read_state(checkpoint: Path, spec: str, model: nn.Module) -> dict[str, object]:
    import torch

    if not checkpoint.is_file():
        raise UsageError(
            f"--checkpoint must be a file of saved weights, got {str(checkpoint)!r}: no such file"
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
            f"--checkpoint {checkpoint} is not a file of weights saved with torch.save "
            f"(damaged, truncated or another format: {type(error).__name__})"
        ) from None
    if isinstance(state, dict) and isinstance(state.get("model"), dict):
        state = state["model"]  # a training checkpoint that holds more than the weights
    if not isinstance(state, dict):
        raise UsageError(
            f"--checkpoint {checkpoint} must hold a state dict, got {type(state).__name__}"
        )
    try:
        model.load_state_dict(state)
    except RuntimeError as error:
        lines = str(error).strip().splitlines()
        raise UsageError(
            f"--checkpoint {checkpoint} does not fit the model from {spec}: "
            + " ".join(line.strip() for line in lines[:3])
        ) from None
    return state


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


def _batches(
    x: HostArray, y: HostArray, size: int, device: torch.device
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    import torch

    for start in range(0, len(y), size):
        images = torch.as_tensor(x[start : start + size]).to(device)
        yield images.float(), torch.as_tensor(y[start : start + size]).long().to(device)


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
    model = _load_model(args.model, args.checkpoint, device)
    x, y = _load_data(args.data, args.split, args.limit)
    try:
        box = (bounds[0], bounds[1])
        attacks = [_attack(name, args, box, eps[0]) for name in _attack_names(args)]
    except (TypeError, ValueError) as error:
        raise UsageError(f"the attack's settings: {error}") from None
    if args.resume_file is not None and args.resume_file.is_dir():
        raise UsageError(f"--resume-file must be a file, got the folder {str(args.resume_file)!r}")
    report = evaluate(
        model,
        _batches(x, y, args.batch_size, device),
        attacks if len(attacks) > 1 else attacks[0],
        eps,
        checkpoint=args.resume_file,
    )
    if not distributed or torch.distributed.get_rank() == 0:
        print(_what_ran(attacks, args))
        print(f"{report.samples} samples, {report.attack}")
        print(report.table())
        if args.report is not None:
            print(f"wrote {report.save(args.report)}")
        if args.plot is not None:
            report.plot(args.plot)
            print(f"wrote {args.plot}")
    return 0
