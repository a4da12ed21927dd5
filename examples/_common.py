"""What every example shares: its command line, its output folder, its device."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import torch


def parser(description: str, *, default_out: str) -> argparse.ArgumentParser:
    """An argument parser with the options every example has."""
    result = argparse.ArgumentParser(description=description)
    result.add_argument("--out", type=Path, default=Path(default_out), help="output folder")
    result.add_argument("--seed", type=int, default=0, help="random seed")
    result.add_argument("--smoke", action="store_true", help="a run of seconds, for checks")
    return result


def prepare(args: argparse.Namespace) -> Path:
    """Seed torch and create the output folder."""
    torch.manual_seed(args.seed)
    args.out.mkdir(parents=True, exist_ok=True)
    return Path(args.out)


def device() -> torch.device:
    """The GPU where there is one, else the CPU."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def show_progress() -> bool:
    """Progress bars on a terminal and in a notebook (Jupyter, Colab), not in a log."""
    return sys.stderr.isatty() or "ipykernel" in sys.modules


def write_results(out: Path, results: dict[str, Any]) -> Path:
    """Write ``results.json`` and say where."""
    path = out / "results.json"
    path.write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {path}")
    return path


def trained_digits(args: argparse.Namespace) -> tuple[Any, torch.nn.Module]:
    """scikit-learn's digits and a DigitsCNN trained on them (briefly with ``--smoke``)."""
    return digits_and_model(seed=args.seed, smoke=args.smoke)


def digits_and_model(*, seed: int = 0, smoke: bool = False) -> tuple[Any, torch.nn.Module]:
    """scikit-learn's digits and a DigitsCNN trained on them: 12 epochs, or 2 with ``smoke``."""
    from signattack.digits import load_digits, train_digits_cnn

    data = load_digits(seed=seed)
    epochs = 2 if smoke else 12
    return data, train_digits_cnn(data, epochs=epochs, seed=seed, progress=show_progress())


def markdown_table(header: Sequence[str], rows: Iterable[Sequence[object]]) -> str:
    """A Markdown table (for ``IPython.display.Markdown``); ``|`` in a cell is escaped."""

    def cell(value: object) -> str:
        return str(value).replace("|", "\\|").replace("\n", " ")

    lines = ["| " + " | ".join(map(cell, header)) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(map(cell, row)) + " |" for row in rows]
    return "\n".join(lines)
