"""Square against the authors' Square (``pyautoattack``), and what Square adds to the suite.

On the real digits (the trained digits CNN, 449 test images), in one process, interleaved:
each round runs every method once in a shuffled order. Per method, the median time over the
rounds, the model evaluations it made (one per sample and query, counted by a wrapper around
the network), the time per 1000 of them, and the robust accuracy it leaves:

    python benchmarks/square.py                          # eps 32, 1000 queries, 3 rounds
    python benchmarks/square.py --queries 5000 --json docs/benchmarks/square.json

The authors' code takes images in [0, 1]: it attacks the same network behind a wrapper that
scales by 255, with the same budget and seed. Then the evaluation's cost: the gradient preset
(APGD-CE, APGD-T) against the standard suite (the same, then Square on the survivors).
"""

from __future__ import annotations

import argparse
import json
import platform
import random
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

from signattack import Square
from signattack.digits import load_digits, train_digits_cnn
from signattack.evaluation import evaluate, gradient_attacks, standard_attacks


class Counting(nn.Module):
    """The network, counting the samples it evaluates; ``scale`` maps the caller's units to
    pixels (255 for a caller in [0, 1])."""

    def __init__(self, network: nn.Module, scale: float = 1.0) -> None:
        super().__init__()
        self.network, self.scale, self.seen = network, scale, 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.seen += x.shape[0]
        return self.network(x * self.scale)


Method = Callable[[torch.Tensor, torch.Tensor], tuple[int, int]]
"""Runs on the digits; returns the robust count and the samples the network evaluated."""


FIXED_BATCH_EPS, FIXED_BATCH_QUERIES = 1.0, 300
"""A radius at which almost nothing breaks: every query then runs on the whole batch, so
that the time per query compares at one batch size (where samples break, each attack's
batches shrink at its own pace)."""


def methods(network: nn.Module, eps: float, queries: int, steps: int) -> dict[str, Method]:
    def square(radius: float, budget: int) -> Method:
        def run(x: torch.Tensor, y: torch.Tensor) -> tuple[int, int]:
            model = Counting(network).eval()
            result = Square(radius, budget, seed=0).run(model, x, y)
            return int((~result.success).sum()), model.seen

        return run

    def preset(make: Callable[..., object]) -> Method:
        def run(x: torch.Tensor, y: torch.Tensor) -> tuple[int, int]:
            model = Counting(network).eval()
            report = evaluate(model, [(x, y)], make(), [eps], progress=False)
            return sum(report.robust_correct[eps]), model.seen

        return run

    fixed = f"at eps {FIXED_BATCH_EPS:g}, {FIXED_BATCH_QUERIES} queries (the whole batch)"
    found: dict[str, Method] = {
        "signattack Square": square(eps, queries),
        f"signattack Square {fixed}": square(FIXED_BATCH_EPS, FIXED_BATCH_QUERIES),
        f"gradient preset (APGD-CE, APGD-T; {steps} steps)": preset(
            lambda: gradient_attacks(steps)
        ),
        f"standard suite (+ Square, {queries} queries)": preset(
            lambda: standard_attacks(steps, queries=queries)
        ),
    }
    try:
        from pyautoattack.square import SquareAttack
    except ImportError:
        return found

    def theirs(radius: float, budget: int) -> Method:
        def run(x: torch.Tensor, y: torch.Tensor) -> tuple[int, int]:
            model = Counting(network, scale=255.0).eval()
            with torch.random.fork_rng(devices=[]):  # the reference seeds torch's global RNG
                attack = SquareAttack(
                    model, n_queries=budget, eps=radius / 255, seed=0, device="cpu"
                )
                adversarial = attack.perturb(x / 255, y) * 255
            seen = model.seen
            with torch.no_grad():
                robust = int((network(adversarial).argmax(1) == y).sum())
            return robust, seen

        return run

    found["authors' Square (pyautoattack)"] = theirs(eps, queries)
    found[f"authors' Square {fixed}"] = theirs(FIXED_BATCH_EPS, FIXED_BATCH_QUERIES)
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--eps", type=float, default=32.0)
    parser.add_argument("--queries", type=int, default=1000)
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--json", type=Path, help="write the results here")
    args = parser.parse_args()

    data = load_digits(seed=0)
    network = train_digits_cnn(data, epochs=8, seed=0).eval()
    x, y = data.x_test, data.y_test
    candidates = methods(network, args.eps, args.queries, args.steps)
    times: dict[str, list[float]] = {name: [] for name in candidates}
    outcome: dict[str, tuple[int, int]] = {}
    order = list(candidates)
    for round_index in range(args.rounds + 1):  # round 0 warms up and is not timed
        random.Random(round_index).shuffle(order)
        for name in order:
            start = time.perf_counter()
            outcome[name] = candidates[name](x, y)
            if round_index:
                times[name].append(time.perf_counter() - start)
    rows = []
    for name in candidates:
        median = statistics.median(times[name])
        robust, seen = outcome[name]
        rows.append(
            {
                "method": name,
                "median_s": median,
                "evaluations": seen,
                "per_1000_evaluations_s": 1000 * median / seen,
                "robust_accuracy": robust / len(y),
            }
        )
    with torch.no_grad():
        clean = float((network(x).argmax(1) == y).float().mean())
    report = {
        "square": True,
        "device": platform.processor() or platform.machine(),
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "eps_pixels": args.eps,
        "queries": args.queries,
        "steps": args.steps,
        "rounds": args.rounds,
        "samples": len(y),
        "clean_accuracy": clean,
        "rows": rows,
    }
    print(f"digits test set ({len(y)}), eps {args.eps:g}, {args.queries} queries, ", end="")
    print(f"median of {args.rounds} rounds, {report['threads']} threads")
    print(f"{'method':50} {'median s':>9} {'evaluations':>12} {'s/1000':>8} {'robust':>8}")
    for row in rows:
        print(
            f"{row['method']:50} {row['median_s']:>9.2f} {row['evaluations']:>12,} "
            f"{row['per_1000_evaluations_s']:>8.4f} {row['robust_accuracy']:>8.2%}"
        )
    if args.json is not None:
        args.json.write_text(json.dumps(report, indent=2) + "\n")
        print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
