"""``python -m signattack verify``: evaluate a model again at saved adversarial examples.

    python -m signattack verify x_adv.npz
    python -m signattack verify x_adv.npz --model mypackage.models:make_net --weights net.pt

An export written by ``signattack evaluate --adversarial`` records the flags that built its
model; ``verify FILE`` rebuilds the model from them (importing and calling the recorded
factory, as ``--model`` would: verify files you trust), and refuses a flag given that differs
from the recorded one, naming both. An export written by ``evaluate()`` in Python records
what it can (the model's class and digest), not how to build the model: give ``--model``
and its flags. It prints, per radius, the robust accuracy at the saved points against the
report's, and whether every point lies in its ball and the box; the exit status is 0 when
the saved examples give the reported numbers, 1 when they do not, 2 for a usage error or a
file that cannot be read (missing, damaged, not written by ``signattack evaluate``), said
in one line.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TypeVar

from signattack._cli_args import USAGE_ERROR, UsageError
from signattack._cli_model import add_model_arguments, load_model
from signattack._cli_record import rebuilt
from signattack._cli_words import Words

__all__ = ["add_parser", "run"]

Parser = TypeVar("Parser", bound=argparse.ArgumentParser)


def add_parser(commands: argparse._SubParsersAction[Parser]) -> None:
    """Add the ``verify`` subcommand to an ``argparse`` subparsers object."""
    parser = commands.add_parser(
        "verify",
        help="evaluate a model again at the adversarial examples an evaluation saved",
        description="Re-evaluate saved adversarial examples and compare with their report; "
        "the model is rebuilt from the flags the export records, where it records them.",
    )
    parser.add_argument(
        "file",
        nargs="?",
        type=Path,
        default=None,
        help="the file that 'signattack evaluate --adversarial' wrote",
    )
    add_model_arguments(parser, required=False)
    parser.add_argument(
        "--adversarial", type=Path, default=None, help="the file, as a flag (the old way)"
    )
    parser.add_argument("--debug", action="store_true", help="show tracebacks of errors")


def run(args: argparse.Namespace, words: Words | None = None) -> int:
    """Run the ``verify`` subcommand; returns the exit status. ``words`` says the library's
    advice in flags."""
    words = Words() if words is None else words
    try:
        from signattack.evaluation.adversarial import load_adversarial
        from signattack.evaluation.report import stand_in_note
        from signattack.evaluation.verification import verify

        path = _path(args)
        saved = load_adversarial(path)
        stand_in = stand_in_note(saved.report.metadata)
        if stand_in is not None:
            print(f"warning: {stand_in}")
        rebuilt(args, path, saved.record)
        bounds = saved.report.bounds or (0.0, 255.0)
        model, _ = load_model(args, bounds)
        _compare_model(model, saved.report.metadata.get("model"))
        found = verify(model, path)
    except (UsageError, ValueError, TypeError, ImportError, OSError) as error:
        if args.debug:
            raise
        text = words(" ".join(str(error).split()) or type(error).__name__)
        print(f"signattack verify: error: {text}", file=sys.stderr)
        return USAGE_ERROR
    print(found.summary())
    return 0 if found.reproduced else 1


def _path(args: argparse.Namespace) -> Path:
    """The export: ``FILE`` or ``--adversarial FILE`` (both only where they agree)."""
    file: Path | None = args.file
    flag: Path | None = args.adversarial
    if file is not None and flag is not None and file != flag:
        raise UsageError(
            f"FILE {str(file)!r} and --adversarial {str(flag)!r} name two files: give one"
        )
    if file is not None:
        return file
    if flag is not None:
        return flag
    raise UsageError("give the file of adversarial examples: signattack verify FILE")


def _compare_model(model: object, recorded: object) -> None:
    """Say so where the model built is not the one evaluated (its class or the digest of
    its parameters and buffers differ from the report's), before its numbers are judged."""
    from signattack.evaluation.identity import Unstable, stable

    if not isinstance(recorded, dict) or "state" not in recorded:
        return
    try:
        built = stable(model)
    except Unstable:
        return
    if built != recorded:
        print(
            "signattack verify: warning: the model built is not the one evaluated (its class "
            "or the digest of its parameters and buffers differ from the report's): check "
            "--model, --model-arg and --weights",
            file=sys.stderr,
        )
