"""Verdict-keeping savings in APGD and APGD-T, APGD-T's boundary ranking, the escalating
Square probe and the fast preset."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import linear_pair

from signattack import APGD, APGDT, FGSM, Square
from signattack.evaluation import (
    EscalatingSquare,
    audit,
    evaluate,
    fast_attacks,
    gradient_attacks,
    rand_attacks,
    standard_attacks,
)


class _RowByRow(torch.nn.Module):
    """Evaluates one sample at a time, so that a sample's logits are the same bits whatever
    batch it comes in; counts the samples it sees."""

    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.model = model
        self.samples = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.samples += x.shape[0]
        return torch.cat([self.model(x[i : i + 1]) for i in range(x.shape[0])])


def _problem(
    samples: int = 24, seed: int = 1
) -> tuple[torch.nn.Module, torch.Tensor, torch.Tensor]:
    _, module = linear_pair(10, 16, scale=0.02, seed=seed)
    rng = np.random.default_rng(seed)
    x = torch.from_numpy(rng.uniform(60, 190, size=(samples, 16)))
    with torch.no_grad():
        y = module(x).argmax(1)  # every sample correctly classified at first
    return module, x, y


@pytest.mark.parametrize(
    "make",
    [
        lambda stop: APGD(6.0, 12, loss="ce", restarts=2, early_stop=stop, seed=0),
        lambda stop: APGDT(6.0, 12, target_classes=3, early_stop=stop, seed=0),
    ],
    ids=["APGD", "APGD-T"],
)
def test_early_stop_keeps_every_verdict_at_fewer_model_passes(make):
    module, x, y = _problem()
    full_model, stopping_model = _RowByRow(module), _RowByRow(module)
    full = make(False).run(full_model, x, y)
    stopping = make(True).run(stopping_model, x, y)
    broken = int(full.success.sum())
    assert 0 < broken < len(y), "the problem should break some samples only"
    assert torch.equal(stopping.success, full.success)
    assert torch.equal(stopping.predictions, full.predictions)
    assert stopping_model.samples < full_model.samples
    # The counts the results report are the model's own.
    assert full.forward_passes == full_model.samples
    assert stopping.forward_passes == stopping_model.samples


def test_every_apgd_member_of_the_presets_stops_early():
    for suite in (gradient_attacks(), standard_attacks(), rand_attacks(), fast_attacks()):
        members = [attack for attack in suite if isinstance(attack, (APGD, APGDT))]
        assert members, suite.name
        assert all(attack.early_stop for attack in members), suite.name


def _near_and_far(
    norm: str,
) -> tuple[torch.nn.Module, torch.Tensor, torch.Tensor, float]:
    """A linear model whose second-highest class is far (its weights barely differ from the
    true class's) and whose lowest class is near, along directions that do not meet; and a
    radius that reaches the near one only."""
    centre = torch.full((2, 1, 4, 4), 100.0, dtype=torch.float64)
    weight = torch.zeros(5, 16, dtype=torch.float64)
    weight[1, :8] = 0.001  # logit 9, distance 1 / ||w_1 - w_0||_*: 125 (L-inf), 354 (L2)
    weight[2, 8:] = 0.25  # logit 0, distance 10 / ||w_2 - w_0||_*: 5 (L-inf), 14.1 (L2)
    logits = torch.tensor([10.0, 9.0, 0.0, 5.0, 5.0], dtype=torch.float64)
    module = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(16, 5)).double()
    with torch.no_grad():
        module[1].weight.copy_(weight)
        module[1].bias.copy_(logits - weight @ centre[0].reshape(16))
    eps = 5.5 if norm == "linf" else 16.0
    return module, centre, torch.zeros(2, dtype=torch.int64), eps


@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_boundary_ranking_attacks_the_nearest_class_that_the_logits_rank_lower(norm):
    module, x, y, eps = _near_and_far(norm)
    settings = {"target_classes": 1, "seed": 0, "norm": norm}
    by_logits = APGDT(eps, 10, **settings).run(module, x, y)
    by_boundary = APGDT(eps, 10, ranking="boundary", **settings).run(module, x, y)
    assert not by_logits.success.any()  # class 1 lies beyond the ball
    assert by_boundary.success.all()
    assert torch.equal(by_boundary.predictions, torch.full((2,), 2))
    # One clean pass and one gradient per candidate (four classes besides the true one).
    assert by_boundary.backward_passes >= by_logits.backward_passes + 2 * 4


def test_the_probe_escalates_only_where_it_breaks_something():
    module, x, y = _problem(samples=12, seed=2)
    images = x.reshape(12, 1, 4, 4)
    model = torch.nn.Sequential(torch.nn.Flatten(), module)
    quiet = EscalatingSquare(0.01, probe=20, queries=200, seed=0).run(model, images, y)
    assert not quiet.success.any()
    assert quiet.forward_passes <= 12 * (20 + 3)  # the probe's queries only
    assert quiet.losses.shape == (201, 12)
    probe = Square(10.0, 20, seed=0).run(model, images, y)
    escalated = EscalatingSquare(10.0, probe=20, queries=200, seed=0).run(model, images, y)
    assert 0 < int(probe.success.sum()) < 12, "the probe should break some samples only"
    assert torch.all(escalated.success >= probe.success)
    left = ~probe.success
    assert torch.all(escalated.queries[left] > 20)  # the full search ran on the rest
    assert escalated.forward_passes > probe.forward_passes
    assert escalated.losses.shape == (201, 12)


def test_bad_settings_are_refused_by_name():
    with pytest.raises(ValueError, match="probe"):
        EscalatingSquare(1.0, probe=300, queries=100)
    with pytest.raises(ValueError, match="ranking"):
        APGDT(1.0, ranking="nearest")
    with pytest.raises(ValueError, match="target_classes"):
        fast_attacks(target_classes=0)
    with pytest.raises(ValueError, match="norm"):
        fast_attacks(norm="l3")


def test_the_fast_preset_runs_in_an_evaluation_in_either_norm():
    module, x, y = _problem(samples=8, seed=3)
    images, model = x.reshape(8, 1, 4, 4), torch.nn.Sequential(torch.nn.Flatten(), module)
    for norm, eps in (("linf", 12.0), ("l2", 48.0)):
        suite = fast_attacks(5, target_steps=5, probe=10, queries=20, norm=norm)
        assert suite.name == "fast"
        assert all(a.threat.geometry.name == norm for a in suite)
        report = evaluate(model, [(images, y)], suite, [eps], progress=False)
        broken = [not robust for robust in report.robust_correct[eps]]
        assert report.samples == 8
        assert 0 < sum(broken) <= 8


def test_the_audit_counts_what_the_fast_suite_misses_on_the_same_samples_whatever_the_batches():
    module, x, y = _problem(samples=16, seed=4)
    images, model = x.reshape(16, 1, 4, 4), torch.nn.Sequential(torch.nn.Flatten(), module)
    weak, strong = [Square(0.0, 1, seed=0)], [APGD(0.0, 10, seed=0)]
    found = [
        audit(
            model,
            [(images[i : i + size], y[i : i + size]) for i in range(0, 16, size)],
            6.0,
            share=0.5,
            seed=1,
            fast=weak,
            standard=strong,
        )
        for size in (16, 5)
    ]
    first, second = found
    assert 0 < first.audited < 16
    assert first.audited == second.audited
    quick, full = first.fast.robust_correct[6.0], first.standard.robust_correct[6.0]
    assert first.missed == sum(q and not f for q, f in zip(quick, full, strict=True)) > 0
    assert first.missed == second.missed
    assert first.rate == first.missed / first.audited
    assert first.rate < first.upper <= 1
    same = audit(model, [(images, y)], 6.0, share=0.5, seed=1, fast=strong, standard=strong)
    assert same.missed == same.extra == 0
    assert 0 < same.upper < 1
    with pytest.raises(ValueError, match="share"):
        audit(model, [(images, y)], 6.0, share=0.0, fast=strong, standard=strong)


def test_the_audit_picks_its_samples_as_the_audited_preset_does_whatever_their_order():
    from signattack.evaluation._audit import chosen

    module, x, y = _problem(samples=16, seed=4)
    images, model = x.reshape(16, 1, 4, 4), torch.nn.Sequential(torch.nn.Flatten(), module)
    weak, strong = [Square(0.0, 1, seed=0)], [APGD(0.0, 10, seed=0)]
    picked = set(chosen(images, y, 0.5, 3))
    order = torch.flip(torch.arange(16), (0,))
    found = [
        audit(model, [(xs, ys)], 6.0, share=0.5, seed=3, fast=weak, standard=strong)
        for xs, ys in ((images, y), (images[order], y[order]))
    ]
    assert 0 < len(picked) < 16
    for each in found:
        assert each.audited == len(picked)
    ahead, behind = (each.fast.robust_correct[6.0] for each in found)
    assert sorted(ahead) == sorted(behind)  # the same samples, judged alike, in either order
    assert found[0].missed == found[1].missed


def test_the_fast_preset_names_target_steps_and_the_audit_needs_a_seed():
    from signattack.evaluation import audit, fast_attacks

    with pytest.raises(ValueError, match="target_steps must be >= 1"):
        fast_attacks(target_steps=0)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(4, 2))
    x, y = torch.rand(4, 4) * 255, torch.zeros(4, dtype=torch.long)
    with pytest.raises(TypeError, match="seed must be an int"):
        audit(model, [(x, y)], 8.0, share=0.5, seed=None)


def test_the_audit_refuses_bad_data_and_seeds_in_evaluates_words():
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(4, 2))
    x, y = torch.rand(4, 4) * 255, torch.zeros(4, dtype=torch.long)
    weak = FGSM(1.0)
    with pytest.raises(ValueError, match="batch 1 holds no samples"):
        audit(model, [(x, y), (x[:0], y[:0])], 8.0, share=0.5, fast=weak, standard=weak)
    with pytest.raises(ValueError, match="data must hold at least one batch"):
        audit(model, [], 8.0, share=0.5, fast=weak, standard=weak)
    for seed, error in ((None, TypeError), (-1, ValueError), (1.5, TypeError), (True, TypeError)):
        with pytest.raises(error, match="seed must be an int >= 0") as caught:
            audit(model, [(x, y)], 8.0, share=0.5, seed=seed, fast=weak, standard=weak)
        assert "or None" not in str(caught.value)
        assert repr(seed) in str(caught.value)
