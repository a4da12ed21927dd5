"""Time and strength of APGD against IteratedSign and the peers, on the real digits.

Everything runs in one process, interleaved: each round times every method once, in a
shuffled order. The report gives, per method, the median time per attack step (over the
rounds), its ratio to IteratedSign's, and the robust accuracy it leaves on the digits test
set (449 real images), all at the same eps and steps:

    python benchmarks/apgd.py                          # eps 32, 20 steps, 5 rounds
    python benchmarks/apgd.py --steps 100 --json docs/benchmarks/apgd.json

Time per step is shown for the single-run attacks (APGD-T and the sequences run a varying
number of steps per sample, on the samples still robust: their total time is what
compares). Methods: IteratedSign (BIM with Madry's step), APGD-CE, APGD-DLR, APGD-T (9
targets) and
signattack's standard evaluation (APGD-CE then APGD-T on the survivors); torchattacks' APGD,
APGD-T and its AutoAttack (version "standard": also FAB-T and Square, which explains most
of its time) where installed (``pip install -e ".[bench]"``). torchattacks hard-codes inputs
in [0, 1]: it attacks the same network behind a wrapper that scales by 255.
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
from attack_speed import UnitInterval  # the same [0, 1] wrapper for torchattacks
from torch import nn

from signattack import APGD, APGDT, IteratedSign
from signattack.digits import load_digits, train_digits_cnn
from signattack.evaluation import evaluate, gradient_attacks

Method = Callable[[nn.Module, torch.Tensor, torch.Tensor], torch.Tensor]
"""Returns the per-sample robustness mask (True: still correct)."""


def _robust(model: nn.Module, x_adv: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return model(x_adv.clamp(0, 255)).argmax(1) == y


def ours(eps: float, steps: int) -> dict[str, tuple[Method, int]]:
    """signattack's methods, each with its number of gradient steps per sample."""

    def attack_with(attack: Callable[..., torch.Tensor]) -> Method:
        return lambda model, x, y: _robust(model, attack(model, x, y), y)

    def standard(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        report = evaluate(model, [(x, y)], gradient_attacks(steps), [eps], progress=False)
        return torch.tensor(report.robust_correct[eps])

    return {
        "signattack IteratedSign": (attack_with(IteratedSign(eps, steps)), steps),
        "signattack APGD-CE": (attack_with(APGD(eps, steps, seed=0)), steps),
        "signattack APGD-DLR": (attack_with(APGD(eps, steps, loss="dlr", seed=0)), steps),
        "signattack APGD-T (9 targets)": (attack_with(APGDT(eps, steps, seed=0)), 0),
        "signattack standard (CE + T)": (standard, 0),
    }


def peers(eps: float, steps: int) -> dict[str, tuple[Method, int]]:
    """torchattacks' APGD, APGD-T and AutoAttack, where installed."""
    try:
        import torchattacks
    except ImportError:
        return {}

    def wrapped(make: Callable[[nn.Module], Callable[..., torch.Tensor]]) -> Method:
        def run(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
            return _robust(model, make(UnitInterval(model).eval())(x / 255, y) * 255, y)

        return run

    radius = eps / 255
    return {
        "torchattacks APGD": (
            wrapped(lambda m: torchattacks.APGD(m, eps=radius, steps=steps, seed=0)),
            steps,
        ),
        "torchattacks APGDT": (
            wrapped(lambda m: torchattacks.APGDT(m, eps=radius, steps=steps, seed=0, n_classes=10)),
            0,
        ),
        "torchattacks AutoAttack (standard)": (
            wrapped(
                lambda m: torchattacks.AutoAttack(
                    m, eps=radius, version="standard", n_classes=10, seed=0
                )
            ),
            0,
        ),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--eps", type=float, default=32.0)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--no-peers", action="store_true", help="skip torchattacks")
    parser.add_argument("--json", type=Path, help="write the results here")
    args = parser.parse_args()

    torch.manual_seed(0)
    data = load_digits(seed=0)
    model = train_digits_cnn(data, epochs=8, seed=0).eval()
    x, y = data.x_test, data.y_test
    candidates = ours(args.eps, args.steps)
    if not args.no_peers:
        candidates.update(peers(args.eps, args.steps))
    times: dict[str, list[float]] = {name: [] for name in candidates}
    robust: dict[str, int] = {}
    order = list(candidates)
    for round_index in range(args.rounds + 1):  # round 0 warms up and is not timed
        random.Random(round_index).shuffle(order)
        for name in order:
            method, _ = candidates[name]
            start = time.perf_counter()
            mask = method(model, x, y)
            elapsed = time.perf_counter() - start
            robust[name] = int(mask.sum())
            if round_index:
                times[name].append(elapsed)

    base = statistics.median(times["signattack IteratedSign"]) / args.steps
    rows = []
    for name, (_, gradient_steps) in candidates.items():
        median = statistics.median(times[name])
        per_step = median / gradient_steps if gradient_steps else None
        rows.append(
            {
                "method": name,
                "median_s": median,
                "per_step_s": per_step,
                "per_step_vs_iterated": None if per_step is None else per_step / base,
                "robust_accuracy": robust[name] / len(y),
            }
        )
    report = {
        "device": platform.processor() or platform.machine(),
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "eps_pixels": args.eps,
        "steps": args.steps,
        "rounds": args.rounds,
        "samples": len(y),
        "clean_accuracy": float((model(x).argmax(1) == y).float().mean()),
        "rows": rows,
    }
    print(f"digits test set ({len(y)}), eps {args.eps:g}, {args.steps} steps, ", end="")
    print(f"median of {args.rounds} rounds, {report['threads']} threads")
    print(f"{'method':36} {'median s':>9} {'s/step':>9} {'x IteratedSign':>15} {'robust':>8}")
    for row in rows:
        step = "" if row["per_step_s"] is None else f"{row['per_step_s']:.4f}"
        ratio = "" if row["per_step_vs_iterated"] is None else f"{row['per_step_vs_iterated']:.3f}"
        print(
            f"{row['method']:36} {row['median_s']:>9.3f} {step:>9} {ratio:>15} "
            f"{row['robust_accuracy']:>8.2%}"
        )
    if args.json is not None:
        args.json.write_text(json.dumps(report, indent=2) + "\n")
        print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
