"""``python -m signattack verify``: evaluate a model again at saved adversarial examples.

    python -m signattack verify --model mypackage.models:make_net --weights net.pt \\
        --adversarial x_adv.npz

It prints, per radius, the robust accuracy at the saved points against the report's, and
whether every point lies in its ball and the box; the exit status is 0 when the saved
examples give the reported numbers, 1 when they do not, 2 for a usage error or a file that
cannot be read (missing, damaged, not written by ``signattack evaluate``), said in one line.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TypeVar

from signattack._cli_model import USAGE_ERROR, UsageError, add_model_arguments, load_model

__all__ = ["add_parser", "run"]

Parser = TypeVar("Parser", bound=argparse.ArgumentParser)


def add_parser(commands: argparse._SubParsersAction[Parser]) -> None:
    """Add the ``verify`` subcommand to an ``argparse`` subparsers object."""
    parser = commands.add_parser(
        "verify",
        help="evaluate a model again at the adversarial examples an evaluation saved",
        description="Re-evaluate saved adversarial examples and compare with their report.",
    )
    add_model_arguments(parser)
    parser.add_argument(
        "--adversarial",
        type=Path,
        required=True,
        help="the file that 'signattack evaluate --adversarial' wrote",
    )
    parser.add_argument("--debug", action="store_true", help="show tracebacks of errors")


def run(args: argparse.Namespace) -> int:
    """Run the ``verify`` subcommand; returns the exit status."""
    try:
        from signattack.evaluation import load_adversarial, verify

        saved = load_adversarial(args.adversarial)
        bounds = saved.report.bounds or (0.0, 255.0)
        model, _ = load_model(args, bounds)
        found = verify(model, args.adversarial)
    except (UsageError, ValueError, TypeError, ImportError, OSError) as error:
        if args.debug:
            raise
        text = " ".join(str(error).split()) or type(error).__name__
        print(f"signattack verify: error: {text}", file=sys.stderr)
        return USAGE_ERROR
    print(found.summary())
    return 0 if found.reproduced else 1
