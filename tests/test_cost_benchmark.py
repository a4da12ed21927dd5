"""The cost benchmark's counting wrapper (benchmarks/cost.py) charges each member of an
evaluation the passes it reports of itself, and leaves the attack classes as it found them."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

import pytest
import torch

from signattack import APGD, IteratedSign
from signattack.evaluation.standard import traits_of

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
cost = importlib.import_module("cost")  # its helpers import the parity script beside it


def _tiny() -> tuple[torch.nn.Module, torch.Tensor, torch.Tensor]:
    """A linear model on 4x4 images and four samples it classifies as labelled."""
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(16, 3)).eval()
    x = torch.round(torch.rand(4, 1, 4, 4) * 255)
    with torch.no_grad():
        y = model(x).argmax(1)
    return model, x, y


def test_the_wrapper_charges_each_member_what_it_reports():
    model, x, y = _tiny()
    members = [IteratedSign(8, steps=3), APGD(8, 4, loss="ce", seed=0)]
    counter = cost.Counting(model)
    cost.run_ours(counter, members, x, y, 8.0)
    first = counter.tallies[traits_of(members[0]).name]
    # every sample attacked: (steps + 1) forward and steps backward passes each
    assert (first.forward, first.backward, first.handed) == (4 * 4, 4 * 3, 4)
    ran = [
        counter.tallies[traits_of(a).name] for a in members if traits_of(a).name in counter.tallies
    ]
    assert ran
    assert all(t.reported for t in ran)
    assert all(t.reported == t.counted for t in ran)
    assert counter.tallies[cost.OUTSIDE].forward >= 4  # the clean pass, at least
    forward, backward = counter.totals()
    assert forward == sum(t.forward for t in counter.tallies.values())
    assert backward >= first.backward


def test_charging_leaves_the_attack_classes_as_they_were():
    model, x, y = _tiny()
    before = {cls: cls.__dict__.get("run") for cls in (IteratedSign, APGD)}
    with pytest.raises(ValueError, match="eps"):
        cost.run_ours(cost.Counting(model), [IteratedSign(8, steps=1), APGD(8, 2)], x, y, -1.0)
    cost.run_ours(cost.Counting(model), [IteratedSign(8, steps=1)], x, y, 8.0)
    assert {cls: cls.__dict__.get("run") for cls in (IteratedSign, APGD)} == before
