"""Every library rule keeps its per-sample data in its state (``per_sample``).

The loop may then take a rule's state down to the samples still attacked: a step on the
taken state must be the whole batch's step taken at those samples, exactly (the same
element-wise arithmetic on the same values).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch

from signattack import L2PGD, IteratedSign, Square
from signattack.attacks.loop import take_state
from signattack.backends.batch import open_threat
from signattack.core.linf import LINF
from signattack.core.rules import Start

SHAPE = (1, 4, 4)


def _batch() -> tuple[torch.Tensor, torch.Tensor, Any]:
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(16, 3)).double()
    x = torch.round(torch.rand(5, *SHAPE, dtype=torch.float64) * 200 + 20)
    return x, torch.tensor([0, 1, 2, 0, 1]), model


def _rule_and_start(attack: Any, batch: Any, eps: Any) -> tuple[Any, Start]:
    """The rule and start of ``attack`` on ``batch`` with per-sample radii."""
    if isinstance(attack, Square):
        radius = batch.radius(attack.eps)
        box = batch.norm.feasible(batch.x, radius, *batch.bounds)
        box = (
            box
            if attack.norm == "linf"
            else IteratedSign(radius).threat.geometry.feasible(batch.x, radius, *batch.bounds)
        )
        streams = batch.streams(np.random.default_rng(0))
        rule = attack._rule(batch, radius, box, streams, 0)
        return rule, Start(batch.x, box.low, box.high, radius, radius, batch.x)
    radius, step = attack._radius_and_step(batch, eps)
    feasible = batch.norm.feasible(batch.x, radius, *batch.bounds)
    hull = LINF.feasible(batch.x, radius, *batch.bounds)
    rule = attack._rule(batch, feasible, radius, step)
    return rule, Start(batch.x, hull.low, hull.high, radius, step, batch.x)


@pytest.mark.parametrize(
    "attack",
    [
        IteratedSign(16, steps=3),
        L2PGD(300.0, steps=3),
        Square(16, queries=4, seed=0),
        Square(300.0, queries=4, seed=0, norm="l2"),
    ],
    ids=["IteratedSign", "L2PGD", "Square", "Square-L2"],
)
def test_a_step_on_the_taken_state_is_the_whole_steps_taken(attack: Any):
    x, y, model = _batch()
    index = torch.tensor([1, 3, 4])
    with open_threat(model, x, y, attack.threat, eps=None) as batch:
        radii = torch.tensor([8.0, 12.0, 16.0, 20.0, 24.0], dtype=torch.float64)
        eps = None if isinstance(attack, Square) else radii
        rule, start = _rule_and_start(attack, batch, eps)
        assert rule.per_sample
        state = rule.start(start)
        losses, grad, predictions = batch.value_and_grad(rule.point(state), batch.labels)
        fooled = predictions != batch.labels
        whole = rule.update(state, 0, losses, grad if rule.needs_gradient else None, fooled)
        part = take_state(state, index, 5)
        moved = rule.update(
            part,
            0,
            losses[index],
            grad[index] if rule.needs_gradient else None,
            fooled[index],
        )
        assert torch.equal(rule.point(moved), rule.point(whole)[index])
        assert torch.equal(rule.finish(moved, None), rule.finish(take_state(whole, index, 5), None))
