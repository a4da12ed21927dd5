"""The command line's words: the library's advice said in the flags that do what it says
(`Words`), and every warning raised while a command runs shown as one line
(`warning_lines`). Only advice, warnings and errors are translated, never an attack's
description or a table."""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import re
import sys
import warnings
from collections.abc import Callable, Iterator, Sequence
from types import FrameType
from typing import TextIO

PHRASES = {
    "pass bounds=(lower, upper) in the model's input units": (
        "pass --bounds lower,upper in the data's units (and --input-range for a model that "
        "takes another range)"
    ),
    "(APGD-T and FAB-T in standard_attacks() use them)": (
        "(--attacks apgd-t and fab-t, in --attacks standard, use them)"
    ),
    "escalate=False turned it off": "--no-escalate turned it off",
    "evaluate with escalate=True (the default)": "run without --no-escalate",
    "standard_attacks()": "--attacks standard",
    "loss='margin'": "--loss margin",
    'loss="margin"': "--loss margin",
    "loss='dlr'": "--attacks apgd-dlr",
    'loss="dlr"': "--attacks apgd-dlr",
    "run the model in float64": (
        "have the --model factory return a network that computes in float64 "
        "(x.double() in its forward)"
    ),
}
"""The library's advice in Python words, as the command line's user reads it: the longer
phrases first, then the words they hold."""

_NUMBER = r"[-+]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?"
_ALONE = (r"(?<![\w/\\.=:-])", r"(?![\w/\\-]|\.\w)")
"""Advice stands alone: not within a path or a name (``runs/eps=8/x.npz``, ``npz:eps=8``);
a full stop may end it."""
_BOUNDS = re.compile(rf"{_ALONE[0]}bounds=\(\s*({_NUMBER}),\s*({_NUMBER})\s*\){_ALONE[1]}")
_EPS = re.compile(rf"{_ALONE[0]}eps=({_NUMBER}(?:/{_NUMBER})?){_ALONE[1]}")
_QUOTED = re.compile(r"(?<![\w=])(?:'[^'\n]*'|\"[^\"\n]*\")(?!\w)")
"""What a message quotes (a path, a value given): said as it came, never in flags."""
_SILENCING = re.compile(
    r"(?:[;,]\s*)?(?:if [^;,()]*,\s*)?silence (?:this|it) with warnings\."
    r"(?:filterwarnings|simplefilter)\([^)]*\)"
)
"""The library's advice to silence a warning in Python: the command line has no such flag."""


@dataclasses.dataclass
class Words:
    """How a command says the library's advice: in flags, and where it knows the attacks it
    runs, with the flags that those attacks accept.

    Attributes:
        loss: The flags that give an attack a loss that does not saturate, for the options
            given (`loss_advice`).
        unsaturated: The selected attacks that already climb such a loss, by name.
        typed: What the user typed (the command's arguments): never translated where a
            message quotes it, so that a path such as ``runs/eps=8/test.npz`` reads as given.
    """

    loss: str = (
        "--loss margin or --attacks apgd-dlr (--attacks apgd-t and fab-t, in --attacks "
        "standard, use them)"
    )
    unsaturated: tuple[str, ...] = ()
    typed: tuple[str, ...] = ()

    def __call__(self, text: str) -> str:
        """``text`` (advice, a warning or an error) with the library's Python advice said
        in flags, and what the user typed as typed."""
        # a quote opens after no letter and no ``=`` (``loss='dlr'`` is advice, ``box's`` prose)
        kept = [*_QUOTED.findall(text), *_quoted_pieces(self.typed, self._translated)]
        for index, piece in enumerate(kept):
            text = text.replace(piece, f"\x00{index}\x00")
        text = self._translated(text)
        for index, piece in reversed(list(enumerate(kept))):
            text = text.replace(f"\x00{index}\x00", piece)
        return text

    def _phrased(self, text: str) -> str:
        """``text`` with the library's whole phrases of advice said in flags."""
        from signattack.masking import (
            COMMON_RANGES,
            NON_SATURATING,
            range_advice,
            saturation_remedy,
        )

        if self.unsaturated:
            text = text.replace(saturation_remedy(), saturation_remedy(self.unsaturated))
        text = text.replace(NON_SATURATING, self.loss)
        ranges = {
            range_advice(b): f"did you mean --input-range {b[0]:g},{b[1]:g}?" for b in COMMON_RANGES
        }
        for python, flags in {**PHRASES, **ranges}.items():
            text = re.sub(f"{_ALONE[0]}{re.escape(python)}{_ALONE[1]}", flags, text)
        return text

    def _translated(self, text: str) -> str:
        """``text`` with every piece of the library's advice said in flags: the phrases,
        then the keyword arguments, and no advice to silence a warning in Python."""
        text = _SILENCING.sub("", self._phrased(text))
        text = _BOUNDS.sub(lambda match: f"--bounds {match[1]},{match[2]}", text)
        return _EPS.sub(lambda match: f"--eps {match[1]}", text)


def _quoted_pieces(typed: Sequence[str], translated: Callable[[str], str]) -> list[str]:
    """The paths among the arguments ``typed`` (what holds ``/``, ``.`` or ``:``) that a
    message may write unquoted and that ``translated`` would change: each argument, and
    what follows its ``module:`` or ``source:`` prefix and its ``NAME=``; the longest first,
    so that no piece splits a longer one. Quoted ones are kept by the quotes."""
    pieces: set[str] = set()
    for token in typed:
        pieces.update((token, token.partition(":")[2], token.partition("=")[2]))
    paths = (p for p in pieces if any(mark in p for mark in "/\\.:"))
    return sorted((p for p in paths if translated(p) != p), key=len, reverse=True)


def loss_advice(args: argparse.Namespace, accepted: Callable[[argparse.Namespace], object]) -> str:
    """The flags that give the options ``args`` an attack whose loss does not saturate,
    each one kept only where ``accepted`` (the selection of the attacks) takes the options
    with it: ``--loss margin`` where a selected attack takes a loss, the attacks given with
    ``apgd-dlr`` added, or the standard preset."""
    from signattack._cli_args import UsageError

    names = None if args.attacks is None else args.attacks.replace(" ", "")
    listed = [args.attack] if names is None else names.split(",")
    candidates: list[tuple[str, dict[str, object]]] = [("--loss margin", {"loss": "margin"})]
    if "apgd-dlr" not in listed:
        added = ",".join([*listed, "apgd-dlr"])
        candidates.append((f"--attacks {added}", {"attacks": added}))
    dropped = [
        flag
        for flag, given in (
            ("--loss", args.loss is not None),
            ("--step-size", args.step_size is not None),
            ("--random-start", bool(args.random_start)),
        )
        if given
    ]
    without = f" without {' and '.join(dropped)}" if dropped else ""
    candidates.append(
        (
            f"--attacks standard{without} (its APGD-T and FAB-T use margin-type losses)",
            {"attacks": "standard", "loss": None, "step_size": None, "random_start": False},
        )
    )
    kept = []
    for flags, changes in candidates:
        try:
            accepted(argparse.Namespace(**{**vars(args), **changes}))
        except UsageError:
            continue
        kept.append(flags)
    if not kept:
        return "an attack whose loss does not saturate (apgd-dlr, apgd-t or fab-t in --attacks)"
    return " or ".join(kept)


def _warner(frame: FrameType | None) -> str:
    """The module that called ``warnings.warn``: the first frame above the warnings
    machinery."""
    while frame is not None and frame.f_globals.get("__name__") in (__name__, "warnings"):
        frame = frame.f_back
    return "" if frame is None else str(frame.f_globals.get("__name__", ""))


def _is_ours(category: type[Warning], warner: str) -> bool:
    """Whether the library raised the warning: a category of its own, or a plain user,
    deprecation or future warning that its code warned with."""
    if category.__module__.split(".")[0] == "signattack":
        return True
    plain = category in (UserWarning, DeprecationWarning, FutureWarning)
    return plain and warner.split(".")[0] == "signattack"


@contextlib.contextmanager
def warning_lines(command: str, words: Words, stream: TextIO | None = None) -> Iterator[None]:
    """Inside the block, each distinct warning is shown once on standard error (or
    ``stream``): the library's as one line, ``signattack COMMAND: warning: TEXT`` with its
    advice said in flags (``words``), another library's in Python's usual form."""
    seen: set[tuple[type[Warning], str]] = set()

    def show(
        message: Warning | str,
        category: type[Warning],
        filename: str,
        lineno: int,
        file: TextIO | None = None,
        line: str | None = None,
    ) -> None:
        text = " ".join(str(message).split())
        if (category, text) in seen:
            return
        seen.add((category, text))
        if _is_ours(category, _warner(sys._getframe(1))):
            shown = f"signattack {command}: warning: {words(text)}\n"
        else:
            shown = warnings.formatwarning(message, category, filename, lineno, line)
        print(shown, end="", file=stream or sys.stderr, flush=True)

    with warnings.catch_warnings():
        warnings.simplefilter("always")  # shown once each by their text, here
        warnings.showwarning = show
        yield


def narrow_eps_warning(
    eps_text: str,
    eps: Sequence[float],
    bounds: tuple[float, float],
    input_range: tuple[float, float],
    norm: str = "linf",
) -> str | None:
    """What to say where ``--input-range`` is narrower than ``--bounds`` and the radii are
    too small for ``--bounds`` by the library's rule (`narrow_eps_problem`, the report's
    finding): radii in the model's range's units given for the data's box (``--eps 8/255``
    on CIFAR pixels moves each pixel by 8/255 of a level). ``None`` otherwise. The radius suggested
    reads ``--eps`` as RobustBench writes radii, in ``[0, 1]`` units (its ``8/255`` is 8
    levels of ``[0, 255]``), as the report's finding does, whatever the model's range."""
    from signattack.core.norms import norm_of
    from signattack.core.validation import Bounds, narrow_eps_problem

    width, taken = bounds[1] - bounds[0], input_range[1] - input_range[0]
    if not taken < width or narrow_eps_problem(max(eps), Bounds(*bounds), norm_of(norm)) is None:
        return None
    suggested = ",".join(f"{value * width:.6g}" for value in eps)
    return (
        f"radii are in --bounds units [{bounds[0]:g}, {bounds[1]:g}], not --input-range's "
        f"[{input_range[0]:g}, {input_range[1]:g}]: --eps {eps_text} is below one level of "
        f"the box, so the attack barely moves a pixel; RobustBench's {eps_text} is --eps "
        f"{suggested}"
    )
