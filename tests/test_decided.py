"""Rules own their per-sample state, and may say when a sample is decided.

The loop takes the state of a ``per_sample`` rule down to the samples still attacked, and a
rule that ``decides`` lets a decided sample leave the batch: FAB-T with ``minimal=False`` stops
a sample once it holds a point within the radius, at fewer model passes and the same verdicts.
"""

from __future__ import annotations

import dataclasses
from typing import ClassVar

import numpy as np
import pytest
import torch

from signattack import APGD, FABT
from signattack.attacks.loop import iterate
from signattack.backends.batch import open_batch
from signattack.core import LINF, Bounds
from signattack.core.losses import resolve_loss
from signattack.core.rules import Start

DIGITS_EPS = 6.0


class Counting(torch.nn.Module):
    """A model that counts the samples of every forward pass it sees."""

    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.model = model
        self.samples = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.samples += int(x.shape[0])
        return self.model(x)


@pytest.fixture(scope="module")
def digits_linear(digits):
    """A linear classifier of the digits, least squares on one-hot labels: fast and exact."""
    features = digits.x_train.reshape(len(digits.x_train), -1).double() / 255
    design = torch.cat([features, torch.ones(len(features), 1, dtype=torch.float64)], dim=1)
    targets = torch.nn.functional.one_hot(digits.y_train, 10).double()
    solution = torch.linalg.lstsq(design, targets).solution
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 10))
    with torch.no_grad():
        model[1].weight.copy_((solution[:64].T / 255).float())
        model[1].bias.copy_(solution[64].float())
    model.eval()
    x, y = digits.x_test[:48], digits.y_test[:48]
    with torch.no_grad():
        right = model(x).argmax(dim=1) == y
    return model, x[right][:32], y[right][:32]


def test_fab_with_a_radius_stops_broken_samples_and_keeps_every_verdict(digits_linear):
    model, x, y = digits_linear
    runs = {}
    for minimal in (True, False):
        counting = Counting(model)
        attack = FABT(DIGITS_EPS, 30, target_classes=3, seed=0, minimal=minimal)
        result = attack.run(counting, x, y)
        assert result.forward_passes == counting.samples, "the result counts what the model saw"
        runs[minimal] = (result, counting.samples)
    full, fast = runs[True][0], runs[False][0]
    broken = int(full.success.sum())
    assert 0 < broken < len(y), "the radius breaks some samples and not others"
    assert torch.equal(fast.success, full.success), "every sample keeps its verdict"
    assert runs[False][1] < runs[True][1], "samples broken early leave the batch"
    assert fast.backward_passes < full.backward_passes
    assert fast.distances is None
    assert full.distances is not None
    assert bool(LINF.within(fast.x_adv, x, DIGITS_EPS, (0.0, 255.0)).all())
    # A sample not broken returns unchanged; a broken one fools the model where it lands.
    with torch.no_grad():
        predictions = model(fast.x_adv).argmax(dim=1)
    assert torch.equal(predictions != y, fast.success)
    assert torch.equal(fast.x_adv[~fast.success], x[~fast.success])


def test_fab_costs_the_same_on_samples_it_cannot_break(digits_linear):
    model, x, y = digits_linear
    robust = ~FABT(DIGITS_EPS, 30, target_classes=3, seed=0).run(model, x, y).success
    costs = []
    for minimal in (True, False):
        counting = Counting(model)
        FABT(DIGITS_EPS, 30, target_classes=3, seed=0, minimal=minimal).run(
            counting, x[robust], y[robust]
        )
        costs.append(counting.samples)
    assert costs[0] == costs[1], "nothing is decided where no point within eps is found"


@dataclasses.dataclass(frozen=True)
class _Walk:
    x: torch.Tensor
    low: torch.Tensor
    high: torch.Tensor
    steps: torch.Tensor


@dataclasses.dataclass(frozen=True)
class SignWalk:
    """Signed steps whose limits live in the state; records the batch `update` sees, and
    decides a sample after ``patience`` updates when given one."""

    needs_gradient: ClassVar[bool] = True
    per_sample: ClassVar[bool] = True
    seen: list[int] = dataclasses.field(default_factory=list)
    patience: int | None = None

    @property
    def decides(self) -> bool:
        return self.patience is not None

    def decided(self, state: _Walk) -> torch.Tensor:
        return state.steps >= (self.patience or 0)

    def start(self, start: Start) -> _Walk:
        return _Walk(start.begin, start.low, start.high, torch.zeros(len(start.x)))

    def point(self, state: _Walk) -> torch.Tensor:
        return state.x

    def update(self, state, step, losses, grad, fooled):
        self.seen.append(len(state.x))
        moved = torch.minimum(torch.maximum(state.x + 4 * grad.sign(), state.low), state.high)
        return _Walk(moved, state.low, state.high, state.steps + 1)

    def finish(self, state, final):
        return state.x


def _walk(rule, model, x, y, *, early_stop):
    ce = resolve_loss("ce")
    with open_batch(model, x, y, bounds=Bounds(0.0, 255.0), loss=ce, model_mode="eval") as batch:
        low, high = (batch.x - 40).clamp(0, 255), (batch.x + 40).clamp(0, 255)
        start = Start(batch.x, low, high, 40.0, 4.0, batch.x)
        return iterate(batch, rule, start, 12, early_stop=early_stop), batch.passes.forward


def test_update_sees_the_samples_still_attacked_only(digits_linear):
    model, x, y = digits_linear
    rule = SignWalk()
    outcome, _ = _walk(rule, model, x, y, early_stop=True)
    assert rule.seen[0] == len(y)
    assert min(rule.seen) < len(y), "fooled samples leave the state that update sees"
    assert rule.seen == sorted(rule.seen, reverse=True)
    # Every sample's state comes back, in its place: a lone run of each sample agrees.
    for i in (0, len(y) - 1):
        alone, _ = _walk(SignWalk(), model, x[i : i + 1], y[i : i + 1], early_stop=True)
        torch.testing.assert_close(outcome.state.x[i : i + 1], alone.state.x)
        assert float(outcome.state.steps[i]) == float(alone.state.steps[0])


def test_a_decided_sample_leaves_with_the_state_that_decided_it(digits_linear):
    model, x, y = digits_linear
    rule = SignWalk(patience=3)
    outcome, passes = _walk(rule, model, x, y, early_stop=False)
    assert passes == 3 * len(y), "three steps each, then every sample is decided"
    assert torch.all(outcome.state.steps == 3)
    assert len(outcome.rows) == 12
    assert torch.equal(outcome.rows[-1], outcome.rows[2])
    undecided, passes = _walk(SignWalk(), model, x, y, early_stop=False)
    assert passes == 12 * len(y)
    assert torch.all(undecided.state.steps == 12)


def test_apgd_survivors_match_a_run_on_them_alone(digits_linear):
    model, x, y = digits_linear
    attack = APGD(DIGITS_EPS, 20, seed=3, early_stop=True)
    together = attack.run(model, x, y)
    survivors = ~together.success
    assert 0 < int(survivors.sum()) < len(y)
    alone = attack.run(model, x[survivors], y[survivors])
    assert torch.equal(alone.success, torch.zeros_like(alone.success))
    tolerance = 1e-3 * 255  # float32 logits of other batch shapes may round differently
    torch.testing.assert_close(together.x_adv[survivors], alone.x_adv, atol=tolerance, rtol=0)
    np.testing.assert_array_equal(together.success.numpy()[~survivors.numpy()], True)


def test_a_state_that_widened_after_its_start_is_not_rounded_back_when_a_sample_leaves():
    """bfloat16 inputs, float32 logits: APGD's best losses widen to float32 after the first
    step; a batch-mate leaving must not round them back, or the sample still attacked
    returns a worse point than without early stopping."""
    generator = torch.Generator().manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 10))
    with torch.no_grad():
        net[1].weight.copy_(torch.randn(10, 64, generator=generator) * 0.01)
        net[1].bias.copy_(torch.randn(10, generator=generator) * 0.1)

    def model(z):
        return net(z.float())

    pixels = torch.Generator().manual_seed(1)
    x = torch.randint(0, 256, (8, 1, 8, 8), generator=pixels, dtype=torch.uint8)
    y = net(x.float()).argmax(1)
    y[0] = (y[0] + 1) % 10
    x, target = x.to(torch.bfloat16)[[0, 7]], ((y + 3) % 10)[[0, 7]]
    runs = [
        APGD(16, steps=10, targeted=True, seed=2, early_stop=stop).run(model, x, target)
        for stop in (False, True)
    ]
    assert torch.equal(runs[0].success, runs[1].success)
    assert not bool(runs[0].success[1])  # the sample still attacked after its mate left
    moved = (runs[0].x_adv[1].float() - runs[1].x_adv[1].float()).abs().max()
    assert float(moved) <= 2.0  # rounding at most (bfloat16's spacing near 255 is 1)
