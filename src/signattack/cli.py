"""Command line: ``python -m signattack demo``, ``evaluate`` and ``verify``."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import NoReturn

from signattack import evaluate_cli, verify_cli
from signattack._cli_model import USAGE_ERROR, Output, UsageError, check_outputs

__all__ = ["main"]


class _Parser(argparse.ArgumentParser):
    """Reports a usage mistake as one line naming the flag, with exit status 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (--help lists the options)\n")


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="signattack", description="Signed-gradient adversarial attacks.")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    demo = commands.add_parser(
        "demo",
        help="train a small CNN on scikit-learn's digits and attack it",
        description="Train a small CNN on scikit-learn's bundled handwritten digits, print "
        "clean / FGSM / IteratedSign accuracy at several eps and write a figure.",
    )
    demo.add_argument("--out", type=Path, default=Path("signattack-demo"), help="output folder")
    demo.add_argument("--seed", type=int, default=0, help="seed of the split and training")
    demo.add_argument("--smoke", action="store_true", help="a quick run for checks")
    evaluate_cli.add_parser(commands)
    verify_cli.add_parser(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``signattack`` and ``python -m signattack``."""
    args = _parser().parse_args(argv)
    if args.command == "evaluate":
        return evaluate_cli.run(args)
    if args.command == "verify":
        return verify_cli.run(args)
    try:
        check_outputs([(Output("--out", folder=True), args.out)], [])
    except UsageError as error:
        print(f"signattack demo: error: {error}", file=sys.stderr)
        return USAGE_ERROR
    try:
        from signattack import demo
    except ImportError as error:
        raise SystemExit(
            f"the demo needs the 'demo' extra ({error.name} is missing): "
            'pip install "signattack[demo]"'
        ) from error
    return demo.main(args.out, smoke=args.smoke, seed=args.seed)
