"""signattack's standard suite against the authors' AutoAttack on four digits networks.

On the first ``--samples`` real test digits and the digits CNN four ways: normally trained;
PGD-trained (the adversarial-training example's training); its logits times 1000 (where
cross-entropy saturates); and behind an 8-level input quantizer (the gradient-masking
example's, which hides the gradient). Per network and radius, ``standard_attacks(seed=s)``
and ``AutoAttack(version="standard", seed=s)``: robust accuracy, the samples one breaks
and the other does not, and wall time; over several seeds on the normal network, and each
member alone there::

    python benchmarks/autoattack_parity.py --json docs/benchmarks/parity.json

The authors' code attacks the same network behind ``Rescaled``, from [0, 1] to pixels.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import platform
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

from signattack import APGD, APGDT, FABT, IteratedSign, Square
from signattack.digits import load_digits, train_digits_cnn
from signattack.evaluation import evaluate, standard_attacks
from signattack.models import DigitsCNN, Rescaled

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "examples"))
from adversarial_training import train
from gradient_masking import Preprocessed, quantize


class Scaled(nn.Module):
    """The network's logits times ``factor``: the same decisions, a saturated cross-entropy."""

    def __init__(self, network: nn.Module, factor: float) -> None:
        super().__init__()
        self.network, self.factor = network, factor

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.network(x) * self.factor


def networks(seed: int) -> dict[str, nn.Module]:
    data = load_digits(seed=0)
    normal = train_digits_cnn(data, epochs=8, seed=seed).eval()
    pgd = IteratedSign(16, 7, step_size=4, random_start=True, seed=seed)
    robust = train(DigitsCNN, data.x_train, data.y_train, pgd, epochs=8, seed=seed)
    return {
        "normal": normal,
        "PGD-trained (eps 16)": robust.eval(),
        "logits x1000": Scaled(normal, 1000.0).eval(),
        "quantized input (8 levels)": Preprocessed(quantize, normal).eval(),
    }


Run = Callable[[nn.Module, torch.Tensor, torch.Tensor, float, int], torch.Tensor]
"""Attacks a network at a radius with a seed; returns which samples stay robust."""


def ours_suite(model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float, seed: int):
    report = evaluate(model, [(x, y)], standard_attacks(seed=seed), [eps], progress=False)
    return torch.tensor(report.robust_correct[eps])


def theirs(attacks: list[str] | None) -> Run:
    def run(model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float, seed: int):
        from pyautoattack import AutoAttack

        version = "standard" if attacks is None else "custom"
        attack = AutoAttack(
            Rescaled(model, (0.0, 1.0), (0.0, 255.0)),
            eps=eps / 255,
            seed=seed,
            version=version,
            attacks=attacks,
            device="cpu",
        )
        if attacks is not None:  # the members' settings of the standard version
            attack.apgd.n_restarts, attack.fab.n_restarts = 1, 1
            attack.apgd_targeted.n_target_classes = attack.fab.n_target_classes = 9
            attack.square.n_queries = 5000
        with torch.random.fork_rng(devices=[]), contextlib.redirect_stdout(io.StringIO()):
            adversarial, _ = attack.run_standard_evaluation(x / 255, y, batch_size=len(y))
        with torch.no_grad():
            return model(adversarial * 255).argmax(1) == y

    return run


def ours_member(make: Callable[[float, int], object]) -> Run:
    def run(model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float, seed: int):
        report = evaluate(model, [(x, y)], make(eps, seed), [eps], progress=False)
        return torch.tensor(report.robust_correct[eps])

    return run


MEMBERS: dict[str, tuple[Run, Run]] = {
    "APGD-CE": (ours_member(lambda e, s: APGD(e, 100, loss="ce", seed=s)), theirs(["apgd-ce"])),
    "APGD-T": (ours_member(lambda e, s: APGDT(e, 100, seed=s)), theirs(["apgd-t"])),
    "FAB-T": (ours_member(lambda e, s: FABT(e, 100, seed=s)), theirs(["fab-t"])),
    "Square": (ours_member(lambda e, s: Square(e, 5000, seed=s)), theirs(["square"])),
}


def compare(ours: Run, reference: Run, model, x, y, eps: float, seed: int) -> dict[str, object]:
    start = time.perf_counter()
    mine = ours(model, x, y, eps, seed)
    middle = time.perf_counter()
    other = reference(model, x, y, eps, seed)
    end = time.perf_counter()
    return {
        "ours": float(mine.float().mean()),
        "theirs": float(other.float().mean()),
        "only_ours_breaks": int((~mine & other).sum()),
        "only_theirs_breaks": int((mine & ~other).sum()),
        "time_ratio": (middle - start) / (end - middle),
    }


def main() -> None:
    cli = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    cli.add_argument("--samples", type=int, default=200)
    cli.add_argument("--eps", default="16,32")
    cli.add_argument("--seeds", type=int, default=3, help="seeds of the normal network's runs")
    cli.add_argument("--json", type=Path)
    args = cli.parse_args()
    data = load_digits(seed=0)
    x, y = data.x_test[: args.samples], data.y_test[: args.samples]
    radii = [float(e) for e in args.eps.split(",")]
    rows = []
    for name, model in networks(0).items():
        with torch.no_grad():
            clean = float((model(x).argmax(1) == y).float().mean())
        seeds = range(args.seeds) if name == "normal" else range(1)
        for eps in radii:
            for seed in seeds:
                found = compare(ours_suite, theirs(None), model, x, y, eps, seed)
                rows.append(
                    {
                        "network": name,
                        "clean": clean,
                        "eps": eps,
                        "seed": seed,
                        "attack": "standard suite",
                        **found,
                    }
                )
                print(json.dumps(rows[-1]))
            if name == "normal":
                for member, (mine, reference) in MEMBERS.items():
                    found = compare(mine, reference, model, x, y, eps, 0)
                    rows.append(
                        {
                            "network": name,
                            "clean": clean,
                            "eps": eps,
                            "seed": 0,
                            "attack": member,
                            **found,
                        }
                    )
                    print(json.dumps(rows[-1]))
    report = {
        "parity": True,
        "device": platform.processor() or platform.machine(),
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "samples": args.samples,
        "rows": rows,
    }
    if args.json is not None:
        args.json.write_text(json.dumps(report, indent=2) + "\n")
        print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
