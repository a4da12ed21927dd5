"""Gradient masking, seen and undone: a digits CNN behind an 8-level input quantizer.

Trains the digits CNN (scikit-learn's digits, nothing downloaded) and puts a quantizer in
front of it: ``round(x / 255 * 7) / 7 * 255``, whose gradient is zero almost everywhere.
Then it measures robust accuracy at one radius under

1. the gradient attacks alone (APGD-CE, then APGD-T): fooled, they report the quantized
   model as nearly unbreakable;
2. Square, which asks for no gradient;
3. APGD-CE through ``straight_through(quantize)``: the quantizer forward, the identity
   backward (BPDA);
4. the standard suite, whose report warns that Square broke what the gradient attacks left;

and, for reference, APGD-CE on the network without the quantizer. Writes a bar chart of
robust accuracy per attack, and the numbers.

    python examples/gradient_masking.py --out out/gradient_masking
"""

from __future__ import annotations

from pathlib import Path

import torch
from _common import parser, prepare, trained_digits, write_results
from matplotlib.figure import Figure

from signattack import APGD, APGDT, Square, straight_through
from signattack.evaluation import AttackSuite, RobustnessReport, evaluate

EPS = 32.0


def quantize(x: torch.Tensor) -> torch.Tensor:
    """Eight levels over [0, 255]."""
    return torch.round(x / 255 * 7) / 7 * 255


class Preprocessed(torch.nn.Module):
    """A network behind a preprocessing step."""

    def __init__(self, step, network: torch.nn.Module) -> None:
        super().__init__()
        self.step, self.network = step, network

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.network(self.step(x))


def measure(
    network: torch.nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    steps: int,
    queries: int,
    seed: int = 0,
    eps: float = EPS,
) -> tuple[dict[str, float], RobustnessReport]:
    """Robust accuracy at ``eps`` of the quantized network under each attack (and of the
    network itself under APGD-CE); with the standard suite's report, which holds its
    masking warnings."""
    defended = Preprocessed(quantize, network).eval()
    through = Preprocessed(straight_through(quantize), network).eval()
    batches = [(x[i : i + 256], y[i : i + 256]) for i in range(0, len(y), 256)]

    def robust(model: torch.nn.Module, attacks: list) -> float:
        report = evaluate(model, batches, AttackSuite("example", attacks), [eps])
        return report.robust_accuracy[eps]

    apgd = APGD(0.0, steps, seed=seed)
    gradient = [apgd, APGDT(0.0, steps, seed=seed)]
    square = Square(0.0, queries, seed=seed)
    accuracy = {
        "APGD-CE + APGD-T": robust(defended, gradient),
        "Square": robust(defended, [square]),
        "APGD-CE, straight-through": robust(through, [apgd]),
        "standard suite": 0.0,
        "APGD-CE, no quantizer": robust(network, [apgd]),
    }
    suite = evaluate(defended, batches, AttackSuite("standard", [*gradient, square]), [eps])
    accuracy["standard suite"] = suite.robust_accuracy[eps]
    return accuracy, suite


def plot(
    accuracy: dict[str, float], clean: float, samples: int, path: Path, *, eps: float = EPS
) -> Path:
    """A bar of robust accuracy per attack, the clean accuracy as a dashed line."""
    fig = Figure(figsize=(7, 3.6), layout="constrained")
    ax = fig.add_subplot()
    names = list(accuracy)
    values = [accuracy[name] for name in names]
    colors = ["#c44e52", "#4c72b0", "#4c72b0", "#4c72b0", "#8c8c8c"]
    bars = ax.barh(names[::-1], values[::-1], color=colors[::-1])
    ax.bar_label(bars, labels=[f"{v:.1%}" for v in values[::-1]], padding=3, fontsize=9)
    ax.axvline(clean, color="black", lw=1, ls="--", label=f"clean accuracy {clean:.1%}")
    ax.set_xlim(0, 1.12)
    ax.set_xlabel(f"robust accuracy at eps = {eps:g} (pixels in [0, 255])")
    ax.set_title(f"quantized digits CNN, {samples} test digits", fontsize=10)
    ax.legend(loc="lower right", fontsize=8)
    fig.savefig(path, dpi=120)
    return path


def main() -> None:
    cli = parser(__doc__.split("\n\n")[0], default_out="out/gradient_masking")
    args = cli.parse_args()
    out = prepare(args)
    data, network = trained_digits(args)
    x, y = data.x_test, data.y_test
    if args.smoke:
        x, y = x[:48], y[:48]
    steps, queries = (10, 100) if args.smoke else (100, 1000)
    accuracy, suite = measure(network, x, y, steps=steps, queries=queries, seed=args.seed)
    clean = suite.clean_accuracy
    for name, value in accuracy.items():
        print(f"{name:28s} {value:.1%}")
    for warning in suite.warnings:
        print("warning:", warning)
    plot(accuracy, clean, len(y), out / "gradient_masking.png")
    write_results(
        out,
        {
            "eps": EPS,
            "samples": len(y),
            "clean_accuracy": clean,
            "robust_accuracy": accuracy,
            "masking_warnings": list(suite.warnings),
            "steps": steps,
            "queries": queries,
        },
    )


if __name__ == "__main__":
    main()
