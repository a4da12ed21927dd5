"""FAB-T and the standard suite against the authors' code (``pyautoattack``), side by side.

On the real digits (the trained digits CNN, 449 test images), in one process. Per radius:
signattack's FAB-T and the authors' FAB-T with AutoAttack's settings (100 steps, 9 target
classes, one run each), interleaved over rounds in a shuffled order, with their median
times, the robust accuracy each leaves, and the samples that one breaks and the other does
not; then signattack's standard suite (``standard_attacks()``) and the authors' AutoAttack
``version="standard"`` once each, with the same comparison:

    python benchmarks/fab.py                               # eps 16 and 32, 2 rounds
    python benchmarks/fab.py --json docs/benchmarks/fab.json

The authors' code takes images in [0, 1]: it attacks the same network behind a wrapper that
scales by 255. Its AutoAttack reseeds from the clock unless given a seed: it gets seed 0.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import platform
import random
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

from signattack import FABT
from signattack.digits import load_digits, train_digits_cnn
from signattack.evaluation import evaluate, standard_attacks
from signattack.models import Rescaled

Method = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
"""Runs on the digits; returns which samples stay robust, ``(batch,)`` booleans."""


def fab_methods(network: nn.Module, eps: float, steps: int) -> dict[str, Method]:
    from pyautoattack.fab_pt import FABAttack_PT

    def ours(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return ~FABT(eps, steps, target_classes=9, seed=0).run(network, x, y).success

    def theirs(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        attack = FABAttack_PT(
            Rescaled(network, (0.0, 1.0), (0.0, 255.0)),
            norm="Linf",
            n_restarts=1,
            n_iter=steps,
            eps=eps / 255,
            seed=0,
            targeted=True,
            n_target_classes=9,
            device="cpu",
        )
        with torch.random.fork_rng(devices=[]), torch.no_grad():
            adversarial = attack.perturb(x / 255, y) * 255
            return network(adversarial).argmax(1) == y

    return {"signattack FABT": ours, "authors' FAB-T": theirs}


def suite_methods(network: nn.Module, eps: float) -> dict[str, Method]:
    from pyautoattack import AutoAttack

    def ours(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        report = evaluate(network, [(x, y)], standard_attacks(seed=0), [eps], progress=False)
        return torch.tensor(report.robust_correct[eps])

    def theirs(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        attack = AutoAttack(
            Rescaled(network, (0.0, 1.0), (0.0, 255.0)), eps=eps / 255, seed=0, device="cpu"
        )
        with torch.random.fork_rng(devices=[]), contextlib.redirect_stdout(io.StringIO()):
            adversarial, _ = attack.run_standard_evaluation(x / 255, y, batch_size=len(y))
        adversarial = adversarial * 255
        with torch.no_grad():
            return network(adversarial).argmax(1) == y

    return {"signattack standard_attacks()": ours, "authors' AutoAttack standard": theirs}


def _timed(method: Method, x: torch.Tensor, y: torch.Tensor) -> tuple[float, torch.Tensor]:
    start = time.perf_counter()
    robust = method(x, y)
    return time.perf_counter() - start, robust


def _compare(
    candidates: dict[str, Method], x: torch.Tensor, y: torch.Tensor, rounds: int
) -> dict[str, object]:
    times: dict[str, list[float]] = {name: [] for name in candidates}
    robust: dict[str, torch.Tensor] = {}
    order = list(candidates)
    for round_index in range(rounds):
        random.Random(round_index).shuffle(order)
        for name in order:
            seconds, robust[name] = _timed(candidates[name], x, y)
            times[name].append(seconds)
    ours, theirs = list(candidates)
    return {
        "rows": [
            {
                "method": name,
                "median_s": statistics.median(times[name]),
                "robust_accuracy": float(robust[name].float().mean()),
            }
            for name in candidates
        ],
        "time_ratio": statistics.median(times[ours]) / statistics.median(times[theirs]),
        "only_ours_breaks": int((~robust[ours] & robust[theirs]).sum()),
        "only_theirs_breaks": int((robust[ours] & ~robust[theirs]).sum()),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--eps", default="16,32", help="radii in pixel levels")
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=2, help="timed rounds of FAB-T")
    parser.add_argument("--json", type=Path, help="write the results here")
    args = parser.parse_args()

    data = load_digits(seed=0)
    network = train_digits_cnn(data, epochs=8, seed=0).eval()
    x, y = data.x_test, data.y_test
    with torch.no_grad():
        clean = float((network(x).argmax(1) == y).float().mean())
    radii = [float(e) for e in args.eps.split(",")]
    results = []
    for eps in radii:
        fab = _compare(fab_methods(network, eps, args.steps), x, y, args.rounds)
        suite = _compare(suite_methods(network, eps), x, y, 1)
        results.append({"eps_pixels": eps, "fab": fab, "suite": suite})
        for part in (fab, suite):
            for row in part["rows"]:  # type: ignore[union-attr]
                print(
                    f"eps {eps:>4g}  {row['method']:32} {row['median_s']:>8.2f} s  "
                    f"robust {row['robust_accuracy']:.2%}"
                )
            print(
                f"           time ratio {part['time_ratio']:.2f}x; broken by signattack only "
                f"{part['only_ours_breaks']}, by the authors' only {part['only_theirs_breaks']}"
            )
    report = {
        "fab": True,
        "device": platform.processor() or platform.machine(),
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "steps": args.steps,
        "rounds": args.rounds,
        "samples": len(y),
        "clean_accuracy": clean,
        "radii": results,
    }
    if args.json is not None:
        args.json.write_text(json.dumps(report, indent=2) + "\n")
        print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
