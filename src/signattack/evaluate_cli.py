"""``python -m signattack evaluate``: robustness of your own model from the command line.

    python -m signattack evaluate --model mypackage.models:make_net --checkpoint net.pt \\
        --data cifar10:data/ --eps 2,4,8 --steps 5 --report report.json
    python -m signattack evaluate ... --attacks standard    # APGD-CE, APGD-T, FAB-T, Square

A preset is the library's (:func:`~signattack.evaluation.standard_attacks`,
:func:`~signattack.evaluation.gradient_attacks`, :func:`~signattack.evaluation.rand_attacks`)
with ``--steps``, ``--queries``, ``--eot`` and ``--seed`` passed as its arguments; ``standard``
runs its ``rand`` version on a model it finds randomized, with ``--eot`` passes. The output
says what ran, read from the attacks themselves. A setting that no selected attack takes
(``--eot`` for Square and FAB-T) is refused.

Every mistake in the arguments, the files they name or the data is answered with one line
that names the flag, what was expected and what came, and exit status 2; ``--debug`` shows
the traceback instead. Every output (``--report``, ``--adversarial``, ``--robustbench``,
``--plot``, ``--resume-file``) is checked before the first batch, so that a path that cannot
be written is refused at once, not after the whole evaluation.

Under ``torchrun --nproc_per_node=N`` the processes share the batches (gloo on the CPU, NCCL
on GPUs) and process 0 writes the report; when one process fails, all of them exit with an
error.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from signattack._cli_model import (
    INTERRUPTED,
    USAGE_ERROR,
    Batches,
    Output,
    UsageError,
    add_model_arguments,
    check_outputs,
    load_data,
    load_model,
    non_negative,
    numbers,
    positive,
    warn_unused_outputs,
)
from signattack._io import write_atomically

if TYPE_CHECKING:
    from signattack.attacks import EpsAttack
    from signattack.evaluation import RobustnessReport

__all__ = ["add_parser", "run"]

Parser = TypeVar("Parser", bound=argparse.ArgumentParser)

ATTACK_NAMES = ("iterated", "fgsm", "apgd-ce", "apgd-dlr", "apgd-t", "fab-t", "square")
"""What ``--attacks`` accepts, besides the presets."""

PRESETS = ("standard", "gradient", "rand")
"""The presets of ``--attacks``: AutoAttack's standard suite, its gradient members, and its
version for randomized defenses, as the library builds them."""

DEFAULT_STEPS = 10
"""Steps of a single gradient attack; a preset has the library's (100, the paper's)."""

OUTPUTS = {
    "report": Output("--report", (".json", ".csv", ".md", ".tex")),
    "adversarial": Output("--adversarial", (".npz", ".pt"), beside=(".parts",)),
    "robustbench": Output("--robustbench", (".json",)),
    "plot": Output("--plot", (".png", ".pdf", ".svg"), needs=("matplotlib", "demo")),
    "resume_file": Output("--resume-file"),
}
"""Every file a run writes, by the name of its option: all are checked before the first
batch by :func:`~signattack._cli_model.check_outputs`. A new output flag joins here."""

SETTINGS = {
    "steps": "--steps",
    "queries": "--queries",
    "eot": "--eot",
    "step_size": "--step-size",
    "loss": "--loss",
    "random_start": "--random-start",
    "early_stop": "--early-stop",
}
"""The options that set an attack's field of the same name; one given that no selected
attack takes is refused."""


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
        "with 100 steps and 5000 queries; its rand version on a randomized model), 'gradient' "
        "(apgd-ce,apgd-t), 'rand' (apgd-ce,apgd-dlr with 20 EOT passes); overrides --attack",
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
    parser.add_argument(
        "--plot",
        type=Path,
        help="write accuracy against eps (.png, .pdf or .svg; needs matplotlib)",
    )
    parser.add_argument("--resume-file", type=Path, help="progress checkpoint, for resuming")
    parser.add_argument("--debug", action="store_true", help="show tracebacks of errors")


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
        text = _in_flags(" ".join(str(error).split()) or type(error).__name__)
        if not user_error:
            text = f"{type(error).__name__}: {text} (--debug shows the traceback)"
        print(f"signattack evaluate: error: {text}", file=sys.stderr)
        return USAGE_ERROR if user_error else 1
    finally:
        if distributed:
            torch.distributed.destroy_process_group()


_FLAG_WORDS = {
    "pass bounds=(lower, upper) in the model's input units": (
        "pass --bounds lower,upper in the data's units (and --input-range for a model that "
        "takes another range)"
    ),
}
"""The library's advice in Python words, as the command line's user reads it."""


def _in_flags(text: str) -> str:
    """``text`` with the library's Python advice said in flags."""
    for python, flags in _FLAG_WORDS.items():
        text = text.replace(python, flags)
    return text


def _attack_names(args: argparse.Namespace) -> list[str]:
    if args.attacks is None:
        return [args.attack]
    names = [part.strip() for part in args.attacks.split(",")]
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


def _given(**settings: object) -> dict[str, Any]:
    """The settings the user gave (``None``: not given, the attack's own default)."""
    return {name: value for name, value in settings.items() if value is not None}


def _attacks(args: argparse.Namespace, box: tuple[float, float]) -> Sequence[EpsAttack]:
    """The attacks the options select: a preset as the library builds it, with the options
    as its arguments (an :class:`~signattack.evaluation.AttackSuite`), or single attacks.

    Raises:
        UsageError: An option sets what no selected attack takes, or a setting is invalid.
    """
    from signattack.evaluation import AttackSuite, gradient_attacks, rand_attacks, standard_attacks

    preset = _preset(args)
    common = _given(steps=args.steps, bounds=box, seed=args.seed)
    try:
        attacks: Sequence[EpsAttack]
        if preset == "standard":
            suite = standard_attacks(**common, **_given(queries=args.queries))
            if args.eot is not None:  # the passes of its version for randomized models
                rand = rand_attacks(**common, eot=args.eot)
                suite = AttackSuite(suite.name, suite, randomized=rand)
            attacks = suite
        elif preset is not None:
            build = gradient_attacks if preset == "gradient" else rand_attacks
            attacks = build(**common, **_given(eot=args.eot))
        else:
            attacks = [_attack(name, args, box) for name in _attack_names(args)]
    except (TypeError, ValueError) as error:
        raise UsageError(f"the attack's settings: {error}") from None
    _check_settings(args, attacks)
    return attacks


def _attack(name: str, args: argparse.Namespace, box: tuple[float, float]) -> EpsAttack:
    """One attack named in ``--attacks``; its radius is replaced by the evaluation."""
    from signattack.attacks import APGD, APGDT, FABT, FGSM, IteratedSign, Square

    steps = DEFAULT_STEPS if args.steps is None else args.steps
    options = _given(eot=args.eot, loss=args.loss)
    stops: dict[str, Any] = {"early_stop": True} if args.early_stop else {}
    seeded = {"bounds": box, "seed": args.seed}
    if name == "fgsm":
        return FGSM(0.0, bounds=box, **options)
    if name == "iterated":
        extra = _given(step_size=args.step_size, random_start=args.random_start or None)
        return IteratedSign(0.0, steps, **seeded, **options, **stops, **extra)
    if name == "square":
        return Square(0.0, **_given(queries=args.queries), **seeded)
    if name == "fab-t":
        return FABT(0.0, steps, **seeded)
    gradient = {**seeded, **stops, **_given(eot=args.eot)}
    if name == "apgd-t":
        return APGDT(0.0, steps, **gradient)
    return APGD(0.0, steps, loss="dlr" if name == "apgd-dlr" else "ce", **gradient)


def _members(attacks: Sequence[EpsAttack]) -> list[EpsAttack]:
    """The attacks, with those of a suite's version for randomized models."""
    from signattack.evaluation import AttackSuite

    alternative = attacks.randomized if isinstance(attacks, AttackSuite) else None
    return [*attacks, *(alternative or ())]


def _check_settings(args: argparse.Namespace, attacks: Sequence[EpsAttack]) -> None:
    """Refuse an option that no selected attack took, read from the attacks' own fields."""
    members = _members(attacks)
    for name, flag in SETTINGS.items():
        wanted = getattr(args, name)
        if wanted is None or wanted is False:
            continue
        if not any(_fields(attack).get(name, None) == wanted for attack in members):
            shown = "" if wanted is True else f" {wanted}"
            names = ", ".join(dict.fromkeys(_name(attack) for attack in members))
            raise UsageError(
                f"{flag}{shown} applies to none of the selected attacks ({names}): "
                f"{'it takes' if len(members) == 1 else 'they take'} no such setting"
            )


def _fields(attack: object) -> dict[str, object]:
    from signattack._fields import field_values

    return field_values(attack) or {}


def _name(attack: EpsAttack) -> str:
    """The name a paper gives ``attack`` (``APGD-CE``), without its EOT."""
    from signattack._fields import replaced
    from signattack.evaluation.standard import traits_of

    eot = _fields(attack).get("eot", 1)
    return traits_of(
        replaced(attack, {"eot": 1}) if isinstance(eot, int) and eot > 1 else attack
    ).name


def _label(attack: EpsAttack) -> str:
    """An attack as the output names it: its name and its budget, from its own fields."""
    fields = _fields(attack)
    units = {"steps": "step", "queries": "query"}
    budget = [
        f"{fields[key]} {key if fields[key] != 1 else unit}"
        for key, unit in units.items()
        if key in fields
    ]
    eot = fields.get("eot", 1)
    if isinstance(eot, int) and eot > 1:
        budget.append(f"EOT over {eot} passes")
    return f"{_name(attack)} ({', '.join(budget)})" if budget else _name(attack)


def _what_ran(attacks: Sequence[EpsAttack], args: argparse.Namespace, randomized: bool) -> str:
    """One line naming the attacks that ran with their budgets, read from the attacks (on a
    randomized model, a preset's version for such models), and which ones ``--eot`` is in."""
    from signattack.evaluation import AttackSuite

    preset = _preset(args)
    ran: Sequence[EpsAttack] = attacks
    head = f"attacks ({preset} preset)" if preset is not None else "attacks"
    if randomized and isinstance(attacks, AttackSuite) and attacks.randomized is not None:
        ran = attacks.randomized
        head = f"attacks ({preset} preset, its {ran.name} version: the model is randomized)"
    line = f"{head}: {', '.join(_label(attack) for attack in ran)}"
    taking = [_name(attack) for attack in ran if _fields(attack).get("eot") == args.eot]
    if args.eot is None or len(taking) == len(ran):
        return line
    if taking:
        return f"{line}; --eot {args.eot} applies to {', '.join(taking)} only"
    return f"{line}; --eot {args.eot} applies to the rand version, run on a randomized model"


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
    attacks = _attacks(args, (bounds[0], bounds[1]))
    data = Path(args.data.partition(":")[2]) if args.data.startswith("npz:") else None
    check_outputs(
        [(output, getattr(args, name)) for name, output in OUTPUTS.items()],
        [("--data", data), ("--weights", args.weights)],
    )
    model, device = load_model(args, (bounds[0], bounds[1]))
    x, y = load_data(args.data, args.split, args.limit)
    warn_unused_outputs(model, x, y, device)
    report = evaluate(
        model,
        Batches(x, y, args.batch_size, device),
        attacks if len(attacks) > 1 else attacks[0],
        eps,
        checkpoint=args.resume_file,
        adversarial=args.adversarial,
    )
    if distributed and torch.distributed.get_rank() != 0:
        return 0
    print(_what_ran(attacks, args, report.metadata.get("randomized_model") is True))
    resumed = report.metadata.get("resumed_batches", 0)
    if isinstance(resumed, int) and resumed:
        print(f"resumed: {resumed} finished batches taken from {args.resume_file}")
    print(f"{report.samples} samples")
    print(report.table())
    return _write(report, args)


def _write(report: RobustnessReport, args: argparse.Namespace) -> int:
    """Write every output the options name: each one even where another fails, and the
    failures named by flag (the table above keeps the numbers); 1 if any failed."""
    if args.adversarial is not None:
        print(f"wrote {args.adversarial} (check it: signattack verify ... --adversarial)")
    writers: dict[str, Callable[[Path], object]] = {
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
            print(f"wrote {path}")
    return failed


def _robustbench(report: RobustnessReport) -> bytes:
    return (json.dumps(report.to_robustbench(), indent=2) + "\n").encode()


def _figure(report: RobustnessReport, suffix: str) -> bytes:
    """The report's figure in the format ``suffix`` names, as bytes."""
    import io

    buffer = io.BytesIO()
    report.plot().savefig(buffer, format=suffix.removeprefix("."), dpi=150)
    return buffer.getvalue()
