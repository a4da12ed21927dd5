"""Passes saved by early stopping's cycle check: fixed-step IteratedSign on integer images.

With a fixed step on ``uint8`` images the iterates of IteratedSign are integer points, and a
sample that reaches a corner of the ball often stops moving (a fixed point) or jumps
between two points (a 2-cycle). With ``early_stop=True`` such a sample leaves the batch the
model sees, with the losses and the point its cycle leads to. This script counts the model's
passes (``forward_passes`` and ``backward_passes`` of the result: counts, not time) with the
check and without it (every rule told it has a memory), on the PGD-trained digits network
(``examples/adversarial_training.py``'s ``train``, as ``benchmarks/autoattack_parity.py``
builds it) at 50 steps, and compares the results exactly: images, the whole loss trace,
predictions and success. The model evaluates one sample at a time, so its answer for a
sample is the same bits in a batch of any size, and exact equality is meaningful.

    python benchmarks/cycles.py --json docs/benchmarks/cycles.json
    python benchmarks/cycles.py --samples 24 --epochs 1      # a quick look
"""

from __future__ import annotations

import argparse
import contextlib
import json
import platform
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import torch
from torch import nn

from signattack import AttackResult, IteratedSign
from signattack.attacks.pgd_l2 import L2Steps
from signattack.attacks.sign import SignSteps
from signattack.digits import load_digits
from signattack.models import DigitsCNN

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "examples"))
from adversarial_training import train


class OneAtATime(nn.Module):
    """A model evaluated one sample at a time: its answer for a sample does not depend on the
    batch it comes in, so runs that hand it different batches compare bit for bit."""

    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.inner(x[index : index + 1]) for index in range(len(x))])


@contextlib.contextmanager
def without_cycles() -> Iterator[None]:
    """Every projected-gradient rule says it has a memory: the loop never looks for cycles."""
    saved = SignSteps.memoryless, L2Steps.memoryless
    SignSteps.memoryless = L2Steps.memoryless = False  # type: ignore[misc]
    try:
        yield
    finally:
        SignSteps.memoryless, L2Steps.memoryless = saved  # type: ignore[misc]


def same(a: AttackResult[torch.Tensor], b: AttackResult[torch.Tensor]) -> bool:
    """Whether two results are equal, element for element."""
    names = ("x_adv", "losses", "predictions", "success")
    return all(torch.equal(getattr(a, name), getattr(b, name)) for name in names)


def measure(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: int, steps: int
) -> dict[str, object]:
    """The passes with and without the cycle check at ``eps`` (step ``eps / 4``), and
    whether the results agree exactly."""
    attack = IteratedSign(eps, steps=steps, step_size=eps / 4, early_stop=True)
    checked = attack.run(model, x, y)
    with without_cycles():
        full = attack.run(model, x, y)
    robust = int((~checked.success).sum())
    return {
        "eps": eps,
        "step_size": eps / 4,
        "steps": steps,
        "samples": len(y),
        "robust": robust,
        "identical": same(checked, full),
        "with_cycles": {"forward": checked.forward_passes, "backward": checked.backward_passes},
        "without_cycles": {"forward": full.forward_passes, "backward": full.backward_passes},
        "backward_saved": 1 - checked.backward_passes / full.backward_passes,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=200, help="uint8 test digits")
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--eps", type=int, nargs="+", default=[16, 32])
    parser.add_argument("--epochs", type=int, default=8, help="of PGD training")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path, help="write the results here")
    args = parser.parse_args()
    torch.set_num_threads(1)
    data = load_digits(seed=0)
    started = time.perf_counter()
    pgd = IteratedSign(16, 7, step_size=4, random_start=True, seed=args.seed)
    net = train(DigitsCNN, data.x_train, data.y_train, pgd, epochs=args.epochs, seed=args.seed)
    model = OneAtATime(net.eval())
    trained = time.perf_counter() - started
    x = data.x_test[: args.samples].round().to(torch.uint8)
    y = data.y_test[: args.samples]
    rows = [measure(model, x, y, eps, args.steps) for eps in args.eps]
    for row in rows:
        print(json.dumps(row))
    report = {
        "network": f"DigitsCNN, PGD-trained (IteratedSign eps 16, 7 steps), {args.epochs} epochs",
        "train_seconds": round(trained, 1),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "rows": rows,
    }
    if args.json is not None:
        args.json.write_text(json.dumps(report, indent=2) + "\n")
        print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
