"""A robustness curve two ways: ``evaluate`` at a list of eps, and per-sample bisection.

Trains the digits CNN (scikit-learn's digits, nothing downloaded), then

1. ``evaluate`` at several eps with ``IteratedSign(..., early_stop=True)``: accuracy
   against eps, the largest perturbation actually used, the report as JSON and CSV;
2. ``smallest_breaking_eps``: each sample's smallest breaking eps by bisection, whose
   survival curve is the whole accuracy-against-eps curve from one run.

    python examples/robustness_curve.py --out out/robustness
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from _common import parser, prepare, trained_digits, write_results
from matplotlib.figure import Figure

from signattack import IteratedSign
from signattack.evaluation import RobustnessReport, evaluate, smallest_breaking_eps

EPS = (2.0, 4.0, 8.0, 16.0, 24.0, 32.0, 48.0, 64.0)
EPS_MAX = 96.0


def curve(
    model: torch.nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    steps: int,
    eps: Sequence[float] = EPS,
) -> RobustnessReport:
    """``evaluate`` at each of ``eps`` with ``IteratedSign(..., early_stop=True)``."""
    batches = [(x[i : i + 128], y[i : i + 128]) for i in range(0, len(y), 128)]
    return evaluate(model, batches, IteratedSign(0, steps, early_stop=True), list(eps))


def bisection(
    model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, *, steps: int, iterations: int
) -> np.ndarray:
    """Each sample's smallest breaking eps up to ``EPS_MAX`` (inf: unbroken, 0: misclassified)."""
    return smallest_breaking_eps(
        model, x, y, IteratedSign(0, steps), eps_max=EPS_MAX, iterations=iterations
    )


def plot(breaking: np.ndarray, report: RobustnessReport, steps: int, path: Path) -> Path:
    """The survival curve of the smallest breaking eps beside ``evaluate``'s points."""
    radii = np.linspace(0, EPS_MAX, 97)
    survival = [(breaking > r).mean() for r in radii]
    fig = Figure(figsize=(6, 4), layout="constrained")
    ax = fig.add_subplot()
    ax.plot(radii, survival, lw=2, label="bisection: share with smallest breaking eps > eps")
    ax.plot(
        [0.0, *report.robust_accuracy],
        [report.clean_accuracy, *report.robust_accuracy.values()],
        "o",
        label="evaluate() at a list of eps",
    )
    ax.set_xlabel("eps (pixels in [0, 255])")
    ax.set_ylabel("accuracy")
    ax.set_title(f"digits CNN under IteratedSign({steps} steps)")
    ax.legend(fontsize=8)
    fig.savefig(path, dpi=120)
    return path


def median_breaking_eps(breaking: np.ndarray) -> float | None:
    """The median smallest breaking eps of the samples an attack broke (None: none broken)."""
    finite = breaking[np.isfinite(breaking) & (breaking > 0)]
    return float(np.median(finite)) if finite.size else None


def main() -> None:
    cli = parser(__doc__.split("\n\n")[0], default_out="out/robustness")
    args = cli.parse_args()
    out = prepare(args)
    data, model = trained_digits(args)
    x, y = data.x_test, data.y_test
    if args.smoke:
        x, y = x[:64], y[:64]
    steps = 3 if args.smoke else 10
    report = curve(model, x, y, steps=steps)
    print(report.table())
    report.save(out / "report.json")
    report.save(out / "report.csv")
    breaking = bisection(model, x, y, steps=steps, iterations=4 if args.smoke else 8)
    plot(breaking, report, steps, out / "robustness_curve.png")
    write_results(
        out,
        {
            "clean_accuracy": report.clean_accuracy,
            "robust_accuracy": {str(e): a for e, a in report.robust_accuracy.items()},
            "max_perturbation": {str(e): m for e, m in report.max_perturbation.items()},
            "attacked": {str(e): n for e, n in report.attacked.items()},
            "median_smallest_breaking_eps": median_breaking_eps(breaking),
            "unbroken_at_96": int(np.isinf(breaking).sum()),
            "device": str(torch.device("cpu")),
        },
    )


if __name__ == "__main__":
    main()
