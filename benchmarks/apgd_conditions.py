"""What APGD's two documented differences from the reference code change, measured alone.

signattack's APGD follows the paper where the authors' code differs: condition 1 is a strict
``<`` (the code: ``<=``), and condition 2 may hold at the first checkpoint (the code starts
as if the step had just been halved). This script runs APGD-CE on the digits CNN three ways
on the same samples and seeds: signattack's rule, the same rule with the reference's two
conditions (a subclass of ``AutoSteps``, swapped in for this measurement only), and the
authors' APGD-CE; robust accuracy and the samples each pair decides differently::

    python benchmarks/apgd_conditions.py --json docs/benchmarks/apgd_conditions.json

Returning the highest-loss point where no fooling point was found (the third difference)
changes the loss trace and the returned point, never which samples are fooled: robust
accuracy cannot show it.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import io
import json
import platform
from collections.abc import Iterator
from pathlib import Path

import torch
from torch import nn

import signattack.attacks.apgd as apgd_module
from signattack import APGD
from signattack.attacks.auto_steps import AutoSteps
from signattack.digits import load_digits, train_digits_cnn
from signattack.models import Rescaled


@dataclasses.dataclass(frozen=True)
class ReferenceSteps(AutoSteps):
    """APGD's rule with the reference code's two conditions."""

    def start(self, start):  # type: ignore[no-untyped-def]
        state = super().start(start)
        return dataclasses.replace(state, reduced=state.reduced | True)  # "just halved"

    def _check(self, state, step, grad):  # type: ignore[no-untyped-def]
        index = self.marks.index(step)
        window = step - (self.marks[index - 1] if index > 0 else 0)
        # <= instead of <: shift the count so that the parent's strict test reads as <=.
        nudged = dataclasses.replace(state, increases=state.increases - 1e-6 * (window > 0))
        return super()._check(nudged, step, grad)


@contextlib.contextmanager
def reference_conditions() -> Iterator[None]:
    original = apgd_module.AutoSteps
    apgd_module.AutoSteps = ReferenceSteps  # type: ignore[misc]
    try:
        yield
    finally:
        apgd_module.AutoSteps = original  # type: ignore[misc]


def theirs(model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float, seed: int):
    from pyautoattack import AutoAttack

    attack = AutoAttack(
        Rescaled(model, (0.0, 1.0), (0.0, 255.0)),
        eps=eps / 255,
        seed=seed,
        version="custom",
        attacks=["apgd-ce"],
        device="cpu",
    )
    attack.apgd.n_restarts = 1
    with torch.random.fork_rng(devices=[]), contextlib.redirect_stdout(io.StringIO()):
        adversarial, _ = attack.run_standard_evaluation(x / 255, y, batch_size=len(y))
    with torch.no_grad():
        return model(adversarial * 255).argmax(1) == y


def main() -> None:
    cli = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    cli.add_argument("--samples", type=int, default=200)
    cli.add_argument("--eps", default="16,32")
    cli.add_argument("--seeds", type=int, default=3)
    cli.add_argument("--json", type=Path)
    args = cli.parse_args()
    data = load_digits(seed=0)
    model = train_digits_cnn(data, epochs=8, seed=0).eval()
    x, y = data.x_test[: args.samples], data.y_test[: args.samples]
    rows = []
    for eps in (float(e) for e in args.eps.split(",")):
        for seed in range(args.seeds):
            ours = ~APGD(eps, 100, seed=seed).run(model, x, y).success
            with reference_conditions():
                variant = ~APGD(eps, 100, seed=seed).run(model, x, y).success
            reference = theirs(model, x, y, eps, seed)
            row = {
                "eps": eps,
                "seed": seed,
                "signattack": float(ours.float().mean()),
                "with_reference_conditions": float(variant.float().mean()),
                "authors": float(reference.float().mean()),
                "conditions_differ_on": int((ours != variant).sum()),
                "signattack_vs_authors_differ_on": int((ours != reference).sum()),
                "variant_vs_authors_differ_on": int((variant != reference).sum()),
            }
            rows.append(row)
            print(json.dumps(row))
    if args.json is not None:
        report = {
            "apgd_conditions": True,
            "device": platform.processor() or platform.machine(),
            "torch": torch.__version__,
            "samples": args.samples,
            "rows": rows,
        }
        args.json.write_text(json.dumps(report, indent=2) + "\n")
        print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
