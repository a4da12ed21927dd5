"""How much work ``evaluate`` saves: reuse across eps, and early stopping.

Three ways to get the same robustness curve of the digits CNN (scikit-learn's digits, no
download) at several eps, timed interleaved over rounds:

- naive: attack every correctly classified sample at every eps from scratch;
- ``evaluate``: eps in increasing order, a sample broken at a smaller eps is not attacked
  again;
- ``evaluate`` with ``IteratedSign(..., early_stop=True)``: a sample also leaves the batch
  the moment the attack succeeds.

Work is counted exactly as the number of sample forward passes the model sees (every
forward pass of an attack step is followed by one backward pass).

    python benchmarks/evaluation_savings.py --json docs/benchmarks/evaluation.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path
from typing import Any

import torch
from torch import nn

from signattack import IteratedSign
from signattack.digits import load_digits, train_digits_cnn
from signattack.evaluation import evaluate


class Counting(nn.Module):
    """Counts the samples that go through the model."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model
        self.samples = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.samples += x.shape[0]
        return self.model(x)


def naive(
    model: Counting, x: torch.Tensor, y: torch.Tensor, eps: list[float], steps: int
) -> dict[float, float]:
    with torch.no_grad():
        correct = model(x).argmax(1) == y
    result = {}
    for radius in eps:
        x_adv = IteratedSign(radius, steps)(model, x[correct], y[correct])
        with torch.no_grad():
            result[radius] = float((model(x_adv).argmax(1) == y[correct]).sum()) / len(y)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--eps", default="2,4,8,16,24,32,48")
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    eps = [float(e) for e in args.eps.split(",")]
    data = load_digits()
    model = Counting(train_digits_cnn(data, epochs=12))
    x, y = data.x_test, data.y_test
    batches = [(x[i : i + 128], y[i : i + 128]) for i in range(0, len(y), 128)]

    runs: dict[str, Any] = {
        "naive": lambda: naive(model, x, y, eps, args.steps),
        "evaluate": lambda: (
            evaluate(model, batches, IteratedSign(0, args.steps), eps).robust_accuracy
        ),
        "evaluate + early_stop": lambda: (
            evaluate(
                model, batches, IteratedSign(0, args.steps, early_stop=True), eps
            ).robust_accuracy
        ),
    }
    times: dict[str, list[float]] = {name: [] for name in runs}
    work: dict[str, int] = {}
    accuracy: dict[str, dict[float, float]] = {}
    for _ in range(args.rounds):
        for name, run in runs.items():
            model.samples = 0
            start = time.perf_counter()
            accuracy[name] = run()
            times[name].append(time.perf_counter() - start)
            work[name] = model.samples
    rows = [
        {
            "method": name,
            "median_s": statistics.median(times[name]),
            "sample_forwards": work[name],
            "work_vs_naive": work[name] / work["naive"],
            "time_vs_naive": statistics.median(times[name]) / statistics.median(times["naive"]),
            "robust_accuracy": {str(e): a for e, a in accuracy[name].items()},
        }
        for name in runs
    ]
    print(
        f"digits test set ({len(y)} images), eps {args.eps}, {args.steps} steps, "
        f"{args.rounds} rounds"
    )
    print(f"{'method':<24} {'median s':>9} {'forwards':>9} {'work':>6} {'time':>6}")
    for row in rows:
        print(
            f"{row['method']:<24} {row['median_s']:>9.2f} {row['sample_forwards']:>9} "
            f"{row['work_vs_naive']:>6.2f} {row['time_vs_naive']:>6.2f}"
        )
    for row in rows:
        curve = ", ".join(f"{float(e):g}: {a:.1%}" for e, a in row["robust_accuracy"].items())
        print(f"{row['method']:<24} {curve}")
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(
            json.dumps({"eps": eps, "steps": args.steps, "rows": rows}, indent=2) + "\n"
        )


if __name__ == "__main__":
    main()
