"""``python -m signattack evaluate``: robustness of your own model from the command line.

    python -m signattack evaluate --model mypackage.models:make_net --checkpoint net.pt \\
        --data cifar10:data/ --eps 2,4,8 --steps 5 --report report.json
    python -m signattack evaluate ... --attacks standard # APGD-CE, APGD-T, FAB-T, Square

A preset is the library's ([`standard_attacks`][signattack.evaluation.standard_attacks],
[`gradient_attacks`][signattack.evaluation.gradient_attacks],
[`rand_attacks`][signattack.evaluation.rand_attacks],
[`fast_attacks`][signattack.evaluation.fast_attacks]) with ``--steps``, ``--queries``, ``--eot`` and
``--seed`` passed as its arguments; ``standard`` runs its ``rand`` version on a model it finds
randomized, with ``--eot`` passes. ``--attacks fast --audit SHARE`` audits the fast preset against
the standard one on a seeded share of the samples, and ``--no-escalate`` turns its escalation to
the standard preset off. The output says what ran, read from the attacks themselves. A setting
that no selected attack takes (``--eot`` for Square and FAB-T, ``--audit`` for any but the fast
preset) is refused.

Every mistake in the arguments, the files they name or the data is answered with one line that names
the flag, what was expected and what came, and exit status 2; ``--debug`` shows the traceback
instead. Every output (``--report``, ``--adversarial``, ``--robustbench``, ``--plot``,
``--resume-file``) is checked before the first batch, so that a path that cannot be written is
refused at once, not after the whole evaluation.

Under ``torchrun --nproc_per_node=N`` the processes share the batches (gloo on the CPU, NCCL on
GPUs) and process 0 writes the report; when one process fails, all of them exit with an error.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

from signattack._cli_args import (
    INTERRUPTED,
    USAGE_ERROR,
    UsageError,
    non_negative,
    numbers,
    positive,
)
from signattack._cli_attacks import ATTACK_NAMES, DEFAULT_STEPS
from signattack._cli_attacks import selected_attacks as _attacks
from signattack._cli_attacks import what_ran as _what_ran
from signattack._cli_data import (
    Batches,
    check_channels,
    data_record,
    load_data,
    warn_unused_outputs,
)
from signattack._cli_model import add_model_arguments, load_model
from signattack._cli_outputs import Output, check_outputs
from signattack._cli_record import command_record
from signattack._cli_words import Words, loss_advice, narrow_eps_warning
from signattack._io import Json, write_atomically
from signattack.evaluation.report import STAND_IN

if TYPE_CHECKING:
    from signattack._host import HostArray
    from signattack.attacks import EpsAttack
    from signattack.evaluation import RobustnessReport

__all__ = ["add_parser", "run"]

Parser = TypeVar("Parser", bound=argparse.ArgumentParser)

OUTPUTS = {
    "report": Output("--report", (".json", ".csv", ".md", ".tex")),
    "adversarial": Output("--adversarial", (".npz", ".pt"), beside=(".parts",)),
    "robustbench": Output("--robustbench", (".json",)),
    "plot": Output("--plot", (".png", ".pdf", ".svg"), needs=("matplotlib", "demo")),
    "resume_file": Output("--resume-file"),
}
"""Every file a run writes, by the name of its option: all are checked before the first
batch by `check_outputs`. A new output flag joins here."""


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
    parser.add_argument(
        "--eps", required=True, help="comma-separated radii: 2,4,8 or fractions 4/255,8/255"
    )
    parser.add_argument(
        "--norm", default="linf", choices=["linf", "l2"], help="the ball's norm (linf)"
    )
    parser.add_argument("--attack", default="iterated", choices=["iterated", "fgsm"])
    parser.add_argument(
        "--attacks",
        default=None,
        help="attacks run in order, each on the samples still robust: comma-separated from "
        f"{', '.join(ATTACK_NAMES)}, or a preset: 'standard' (apgd-ce,apgd-t,fab-t,square "
        "with 100 steps and 5000 queries; its rand version on a randomized model), 'gradient' "
        "(apgd-ce,apgd-t), 'rand' (apgd-ce,apgd-dlr with 20 EOT passes), 'fast' (a screening at "
        "about a seventh of the standard suite's passes: apgd-ce, apgd-t on 3 targets by the "
        "logits and 3 by the boundary, a Square probe; "
        "at an eps where the probe breaks a sample or --audit finds a miss, the standard preset "
        "on every sample left robust there; not AutoAttack); overrides --attack",
    )
    parser.add_argument(
        "--audit",
        default=None,
        metavar="SHARE",
        help="with --attacks fast: a seeded share in (0, 1] of the samples (0.1, 1/10) also "
        "runs the standard preset (with the same --steps, --queries and --seed); the table "
        "says per eps how many it audited, how many the fast preset missed and the 95%% upper "
        "bound of the miss rate",
    )
    parser.add_argument(
        "--no-escalate",
        action="store_true",
        help="with --attacks fast: never run the standard preset where the probe or the audit "
        "calls for it; the table says where it would have run",
    )
    parser.add_argument(
        "--steps",
        type=positive,
        default=None,
        help=f"iterations of each gradient attack ({DEFAULT_STEPS}; 100 in a preset)",
    )
    parser.add_argument(
        "--queries", type=positive, default=None, help="Square's queries per sample (5000)"
    )
    parser.add_argument(
        "--eot",
        type=positive,
        default=None,
        help="passes averaged per gradient, for a randomized model, in the attacks that take "
        "it (1; 20 in the rand preset and the standard preset's rand version)",
    )
    parser.add_argument("--step-size", type=float, default=None)
    parser.add_argument("--loss", default=None, choices=["ce", "margin"], help="(ce)")
    parser.add_argument("--bounds", default="0,255", help="the pixel box, e.g. 0,1")
    parser.add_argument("--random-start", action="store_true")
    parser.add_argument("--seed", type=non_negative, default=0)
    parser.add_argument("--early-stop", action="store_true")
    parser.add_argument("--batch-size", type=positive, default=256)
    parser.add_argument("--limit", type=positive, default=None, help="first N samples only")
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
    parser.add_argument(
        "--plot",
        type=Path,
        help="write accuracy against eps (.png, .pdf or .svg; needs matplotlib)",
    )
    parser.add_argument("--resume-file", type=Path, help="progress checkpoint, for resuming")
    parser.add_argument("--quiet", action="store_true", help="no progress lines")
    parser.add_argument("--debug", action="store_true", help="show tracebacks of errors")


def run(args: argparse.Namespace, words: Words | None = None) -> int:
    """Run the ``evaluate`` subcommand; returns the exit status. ``words`` says the
    library's advice in flags; the run tells it the attacks it selects."""
    words = Words() if words is None else words
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
        return _evaluate(args, distributed, words)
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
        text = words(" ".join(str(error).split()) or type(error).__name__)
        if not user_error:
            text = f"{type(error).__name__}: {text} (--debug shows the traceback)"
        print(f"signattack evaluate: error: {text}", file=sys.stderr)
        return USAGE_ERROR if user_error else 1
    finally:
        if distributed:
            torch.distributed.destroy_process_group()


def _in_flags(text: str) -> str:
    """``text`` with the library's Python advice said in flags, the attacks unknown."""
    return Words()(text)


def _check_distinct_as_shown(
    text: str, eps: list[float], bounds: tuple[float, float], norm: str
) -> None:
    """Refuse radii that differ only past the precision the table prints them at
    (``4/255,0.0156862745098039``): two rows that read the same."""
    from signattack.evaluation._units import radius_text

    shown: dict[str, float] = {}
    for value in eps:
        label = radius_text(value, bounds, "l2" if norm == "l2" else "linf")
        if label in shown:
            raise UsageError(
                f"--eps must be radii that differ as printed, got {text!r}: {shown[label]!r} "
                f"and {value!r} both print as {label}; give each radius once"
            )
        shown[label] = value


def _evaluate(args: argparse.Namespace, distributed: bool, words: Words) -> int:
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
    _check_distinct_as_shown(args.eps, eps, (bounds[0], bounds[1]), args.norm)
    if args.step_size is not None and not 0 <= args.step_size < float("inf"):
        raise UsageError(f"--step-size must be a finite number >= 0, got {args.step_size!r}")
    attacks = _attacks(args, (bounds[0], bounds[1]))
    _tell(words, args, attacks, (bounds[0], bounds[1]))
    _warn_narrow_eps(args, eps, (bounds[0], bounds[1]))
    data = Path(args.data.partition(":")[2]) if args.data.startswith("npz:") else None
    check_outputs(
        [(output, getattr(args, name)) for name, output in OUTPUTS.items()],
        [("--data", data), ("--weights", args.weights)],
    )
    model, device = load_model(args, (bounds[0], bounds[1]))
    x, y = load_data(args.data, args.split, args.limit)
    check_channels(args, x)
    _warn_wide_eps(args, eps, (bounds[0], bounds[1]), x)
    data_source = data_record(args.data, args.split, args.limit)
    command = command_record(args, eps, data_source)
    speaks = not distributed or torch.distributed.get_rank() == 0
    if speaks and data_source["synthetic"] is True:
        print(f"warning: {STAND_IN}")  # the first line, before any work
    warn_unused_outputs(model, x, y, device)
    report = evaluate(
        model,
        Batches(x, y, args.batch_size, device),
        attacks if len(attacks) > 1 else attacks[0],
        eps,
        checkpoint=args.resume_file,
        progress=False if args.quiet else None,
        adversarial=args.adversarial,
    )
    if not speaks:
        return 0
    report = _with_data(report, data_source)
    print(_what_ran(attacks, args, report.metadata.get("randomized_model") is True))
    resumed = report.metadata.get("resumed_batches", 0)
    if isinstance(resumed, int) and resumed:
        print(f"resumed: {resumed} finished batches taken from {args.resume_file}")
    print(f"{report.samples} samples")
    print(dataclasses.replace(report, warnings=tuple(map(words, report.warnings))).table())
    return _write(report, args, command)


def _tell(
    words: Words, args: argparse.Namespace, attacks: Sequence[EpsAttack], box: tuple[float, float]
) -> None:
    """Tell ``words`` what the selected attacks accept and which of them already climb a
    loss that does not saturate, so that its advice fits them."""
    from signattack._cli_attacks import members, name_of
    from signattack.masking import climbs_unsaturated

    words.loss = loss_advice(args, lambda changed: _attacks(changed, box))
    words.unsaturated = tuple(name_of(a) for a in members(attacks) if climbs_unsaturated(a))


def _warn_narrow_eps(
    args: argparse.Namespace, eps: list[float], bounds: tuple[float, float]
) -> None:
    """Warn, in flags, where ``--input-range`` is narrower than ``--bounds`` and the radii
    are too small for ``--bounds`` (the report's finding says the same in its table)."""
    if args.input_range is None:
        return
    taken = numbers(args.input_range, "--input-range", count=2)
    said = narrow_eps_warning(args.eps, eps, bounds, (taken[0], taken[1]), args.norm)
    if said is not None:
        from signattack import UnitsWarning

        warnings.warn(said, UnitsWarning, stacklevel=1)


def _warn_wide_eps(
    args: argparse.Namespace, eps: list[float], bounds: tuple[float, float], x: HostArray
) -> None:
    """The library's warning of a radius wider than the box, before the first batch: the
    attacks warn only where they run, and on a batch the model gets all wrong none runs."""
    import math

    from signattack.core.norms import norm_of
    from signattack.core.validation import Bounds, warn_wide_eps

    size = math.prod(x.shape[1:])
    warn_wide_eps(max(eps), Bounds(*bounds), norm=norm_of(args.norm), size=size)


def _with_data(report: RobustnessReport, source: dict[str, Json]) -> RobustnessReport:
    """``report`` with what the command line knows of the data in its metadata's ``data``:
    the source, the split, the limit, and whether it is the synthetic stand-in."""
    data = report.metadata.get("data")
    known = {**(data if isinstance(data, dict) else {}), **source}
    return dataclasses.replace(report, metadata={**report.metadata, "data": known})


def _write(report: RobustnessReport, args: argparse.Namespace, command: dict[str, Json]) -> int:
    """Write every output the options name: each one even where another fails, and the
    failures named by flag (the table above keeps the numbers); 1 if any failed. The export
    that the evaluation wrote gets the report and the command that rebuilds it."""
    from signattack.evaluation.adversarial import add_command

    writers: dict[str, Callable[[Path], object]] = {
        "adversarial": lambda path: add_command(path, report, command),
        "report": report.save,
        "robustbench": lambda path: write_atomically(path, _robustbench(report)),
        "plot": lambda path: write_atomically(path, _figure(report, path.suffix)),
    }
    failed = 0
    for name, write in writers.items():
        path: Path | None = getattr(args, name)
        if path is None:
            continue
        try:
            write(path)
        except OSError as error:
            reason = error.strerror or type(error).__name__
            print(
                f"signattack evaluate: error: {OUTPUTS[name].flag} {path}: {reason}",
                file=sys.stderr,
            )
            failed = 1
        else:
            check = f" (check it: signattack verify {path})" if name == "adversarial" else ""
            print(f"wrote {path}{check}")
    return failed


def _robustbench(report: RobustnessReport) -> bytes:
    return (json.dumps(report.to_robustbench(), indent=2) + "\n").encode()


def _figure(report: RobustnessReport, suffix: str) -> bytes:
    """The report's figure in the format ``suffix`` names, as bytes."""
    import io

    buffer = io.BytesIO()
    figure = report.plot()  # says so where the data is the stand-in
    figure.savefig(buffer, format=suffix.removeprefix("."), dpi=150)
    return buffer.getvalue()
