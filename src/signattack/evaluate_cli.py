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
import json
import os
import sys
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

from signattack._cli_model import (
    INTERRUPTED,
    USAGE_ERROR,
    UsageError,
    add_model_arguments,
    load_model,
    non_negative,
    numbers,
    positive,
    warn_unused_outputs,
)
from signattack._io import write_atomically

if TYPE_CHECKING:
    import torch

    from signattack._host import HostArray
    from signattack.attacks import EpsAttack

__all__ = ["add_parser", "run"]

Parser = TypeVar("Parser", bound=argparse.ArgumentParser)

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


def add_parser(commands: argparse._SubParsersAction[Parser]) -> None:
    """Add the ``evaluate`` subcommand to an ``argparse`` subparsers object."""
    parser = commands.add_parser(
        "evaluate",
        help="clean and robust accuracy of a model over a dataset",
        description="Attack every batch of a dataset at every eps and report accuracy.",
    )
    add_model_arguments(parser)
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
        type=positive,
        default=None,
        help=f"iterations of each gradient attack ({DEFAULT_STEPS}; {PRESET_STEPS} in a preset)",
    )
    parser.add_argument(
        "--queries",
        type=positive,
        default=PRESET_QUERIES,
        help=f"Square's queries per sample ({PRESET_QUERIES})",
    )
    parser.add_argument(
        "--eot",
        type=positive,
        default=None,
        help="passes averaged per gradient, for a randomized model (1; 20 in the rand preset)",
    )
    parser.add_argument("--step-size", type=float, default=None)
    parser.add_argument("--loss", default="ce", choices=["ce", "margin"])
    parser.add_argument("--bounds", default="0,255", help="the pixel box, e.g. 0,1")
    parser.add_argument("--random-start", action="store_true")
    parser.add_argument("--seed", type=non_negative, default=0)
    parser.add_argument("--early-stop", action="store_true")
    parser.add_argument("--batch-size", type=positive, default=256)
    parser.add_argument("--limit", type=non_negative, default=None, help="first N samples only")
    parser.add_argument(
        "--report",
        type=Path,
        help="write the report: .json (everything), .csv (per sample), .md or .tex (the table)",
    )
    parser.add_argument(
        "--adversarial",
        type=Path,
        help="write the adversarial examples (.npz, or .pt for torch.load) with the clean "
        "inputs, labels and report, for RobustBench and for 'signattack verify'",
    )
    parser.add_argument(
        "--robustbench",
        type=Path,
        help="write a RobustBench-shaped entry (clean_acc, autoattack_acc, eps, n_examples) "
        "at the largest eps, as JSON",
    )
    parser.add_argument("--plot", type=Path, help="write accuracy against eps (.png)")
    parser.add_argument("--resume-file", type=Path, help="progress checkpoint, for resuming")
    parser.add_argument("--debug", action="store_true", help="show tracebacks of errors")


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


def _evaluate(args: argparse.Namespace, distributed: bool) -> int:
    import torch

    from signattack.evaluation import evaluate

    eps = numbers(args.eps, "--eps")
    if not all(0 <= value < float("inf") for value in eps) or len(set(eps)) != len(eps):
        raise UsageError(f"--eps must be distinct finite radii >= 0, got {args.eps!r}")
    bounds = numbers(args.bounds, "--bounds", count=2)
    if not -float("inf") < bounds[0] < bounds[1] < float("inf"):
        raise UsageError(
            f"--bounds must be finite lower,upper with lower < upper, got {args.bounds!r}"
        )
    if args.step_size is not None and not 0 <= args.step_size < float("inf"):
        raise UsageError(f"--step-size must be a finite number >= 0, got {args.step_size!r}")
    model, device = load_model(args, (bounds[0], bounds[1]))
    x, y = _load_data(args.data, args.split, args.limit)
    warn_unused_outputs(model, x, y, device)
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
        adversarial=args.adversarial,
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
        if args.adversarial is not None:
            print(f"wrote {args.adversarial} (check it: signattack verify ... --adversarial)")
        if args.robustbench is not None:
            entry = json.dumps(report.to_robustbench(), indent=2) + "\n"
            write_atomically(args.robustbench, entry.encode())
            print(f"wrote {args.robustbench}")
        if args.plot is not None:
            report.plot(args.plot)
            print(f"wrote {args.plot}")
    return 0
