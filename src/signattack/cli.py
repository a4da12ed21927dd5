"""Command line: ``python -m signattack demo``, ``evaluate`` and ``verify``."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import NoReturn

from signattack import evaluate_cli, verify_cli
from signattack._cli_args import USAGE_ERROR, UsageError
from signattack._cli_outputs import Output, check_outputs
from signattack._cli_words import Words, warning_lines

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


_NUMBER_LISTS = ("--bounds", "--input-range", "--eps", "--mean", "--std")
"""Options whose value may start with a minus sign (``--bounds -1,1``)."""


def _joined(argv: Sequence[str]) -> list[str]:
    """``argv`` with ``--bounds -1,1`` written ``--bounds=-1,1``: argparse takes a value that
    starts with ``-`` and is not a single number for an option."""
    joined: list[str] = []
    pending = None
    for token in argv:
        if pending is not None:
            if token[:1] == "-" and token[1:2] in (*"0123456789.", "i"):
                joined[-1] = f"{pending}={token}"
                pending = None
                continue
            pending = None
        joined.append(token)
        pending = token if token in _NUMBER_LISTS else None
    return joined


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``signattack`` and ``python -m signattack``. While a command runs,
    every warning is shown once, the library's as one line in flags (`warning_lines`)."""
    typed = list(sys.argv[1:] if argv is None else argv)
    args = _parser().parse_args(_joined(typed))
    words = Words(typed=tuple(typed))
    with warning_lines(args.command, words):
        return _run(args, words)


def _run(args: argparse.Namespace, words: Words) -> int:
    if args.command == "evaluate":
        return evaluate_cli.run(args, words)
    if args.command == "verify":
        return verify_cli.run(args, words)
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
