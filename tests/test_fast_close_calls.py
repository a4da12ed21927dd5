"""The fast preset's target classes: the clean logits' ranking and the linearised boundary's.

A linear model with logits in the thousands (the cross-entropy saturates: its gradient is
exactly zero in float64, so APGD-CE cannot move) whose second-highest class lies far away and
whose third lies within the radius: the logits' ranking attacks the far class, the boundary's
the near one. Linear, so the verdict has a closed form: a sample is broken at radius ``eps``
exactly where its L-inf distance to the near class's boundary, ``margin / ||w_y - w_t||_1``,
is below ``eps`` (the box never binds).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.linalg import hadamard

from signattack import APGD
from signattack.evaluation import evaluate, fast_attacks

FAR, NEAR, LAST = (torch.from_numpy(hadamard(16)[row]).double() for row in (6, 5, 7))
"""Orthogonal sign patterns whose every row and column of the 4x4 image sums to zero (the
Square probe's first query, stripes of +-eps, moves no logit)."""

SLOPES = (1.0, 10.0, 1.0)
GAPS = (1000.0, 2000.0, 3000.0)
"""Classes 1, 2, 3: the slope of ``z_t - z_0`` along its pattern per pixel, and its gap below
class 0 at the centre. Class 1 is second by the logits, at distance 1000 / 16 = 62.5; class 2
third, at 2000 / 160 = 12.5; class 3 at 187.5."""

CENTRE = 128.0
SHIFTS = (-6.0, -3.0, -1.0, 0.0, 2.0, 4.0)
"""Samples at ``CENTRE + shift * NEAR``: class 2's distance is ``12.5 - shift``."""


def _model() -> torch.nn.Module:
    """Class 0 at logit 0 everywhere; class ``t`` at ``slope * pattern . (x - CENTRE) - gap``."""
    weight = torch.stack(
        [torch.zeros(16)] + [s * p for s, p in zip(SLOPES, (FAR, NEAR, LAST), strict=True)]
    )
    bias = torch.tensor([0.0] + [-g for g in GAPS], dtype=torch.float64)
    bias -= weight.sum(dim=1) * CENTRE
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(16, 4)).double()
    with torch.no_grad():
        model[1].weight.copy_(weight)
        model[1].bias.copy_(bias)
    return model.eval()


def _data() -> tuple[torch.Tensor, torch.Tensor]:
    x = torch.stack([CENTRE + shift * NEAR for shift in SHIFTS]).reshape(-1, 1, 4, 4)
    return x, torch.zeros(len(SHIFTS), dtype=torch.long)


def _closed_form(eps: float) -> list[bool]:
    """Robust exactly where class 2's distance, ``(gap - slope * 16 * shift) / (slope * 16)``,
    exceeds ``eps`` (classes 1 and 3 lie beyond every radius tested)."""
    slope, gap = SLOPES[1], GAPS[1]
    return [(gap - slope * 16 * shift) / (slope * 16) > eps for shift in SHIFTS]


def _suite(**settings: object):
    """The preset at small budgets; one target class by the clean logits, and a probe of one
    query, which breaks nothing here."""
    budget = {"target_classes": 1, "target_steps": 10, "probe": 1, "queries": 1}
    return fast_attacks(5, **budget, reference=[APGD(0.0, 1, seed=0)], **settings)


RADII = [12.0, 16.0]


def test_the_cross_entropy_is_saturated_and_the_logits_rank_the_far_class_first():
    model, (x, y) = _model(), _data()
    x = x.clone().requires_grad_(True)
    logits = model(x)
    loss = torch.nn.functional.cross_entropy(logits, y, reduction="sum")
    (grad,) = torch.autograd.grad(loss, x)
    assert torch.count_nonzero(grad) == 0
    assert (logits.detach().argsort(dim=1, descending=True)[:, 1] == 1).all()


def test_the_nearest_class_by_the_boundary_is_attacked_where_the_logits_rank_it_low():
    model, data = _model(), [_data()]
    report = evaluate(model, data, _suite(), RADII, progress=False)
    for eps in RADII:
        assert list(report.robust_correct[eps]) == _closed_form(eps), eps
    assert report.broken_by[16.0]["APGD-T (boundary)"] > 0
    assert report.broken_by[16.0]["APGD-CE"] == 0
    # One class by each ranking suffices; without the second, the near class is never tried.
    one = evaluate(model, data, _suite(other_classes=1), RADII, progress=False)
    assert one.robust_correct == report.robust_correct
    alone = evaluate(model, data, _suite(other_classes=0), RADII, progress=False)
    assert all(all(alone.robust_correct[eps]) for eps in RADII)
    assert "APGD-T (boundary)" not in alone.broken_by[16.0]


def test_with_the_boundary_ranking_first_the_second_run_ranks_by_the_logits():
    suite = _suite(ranking="boundary", other_classes=2)
    kinds = [(type(a).__name__, getattr(a, "ranking", None)) for a in suite]
    assert kinds[1:3] == [("APGDT", "boundary"), ("RankedAPGDT", "logits")]
    assert suite[2].target_classes == 2
    assert suite.audit.probe == 3  # the Square probe's place, which calls for the escalation
    report = evaluate(_model(), [_data()], suite, RADII, progress=False)
    for eps in RADII:
        assert list(report.robust_correct[eps]) == _closed_form(eps), eps
    assert report.broken_by[16.0]["APGD-T"] > 0
    assert report.broken_by[16.0]["APGD-T (logits)"] == 0


@pytest.mark.parametrize("size", [1, 4])
def test_the_verdicts_do_not_depend_on_the_batches(size):
    model, (x, y) = _model(), _data()
    order = torch.from_numpy(np.random.default_rng(0).permutation(len(y)))
    shuffled = [(x[order[i : i + size]], y[order[i : i + size]]) for i in range(0, len(y), size)]
    report = evaluate(model, shuffled, _suite(), RADII, progress=False)
    for eps in RADII:
        found = [False] * len(y)
        for place, sample in enumerate(order.tolist()):
            found[sample] = report.robust_correct[eps][place]
        assert found == _closed_form(eps), eps


@pytest.mark.parametrize(
    ("value", "error"), [(-1, ValueError), (1.5, TypeError), (True, TypeError), ("3", TypeError)]
)
def test_bad_other_classes_are_refused_by_name(value, error):
    with pytest.raises(error, match=r"other_classes must be an int >= 0, got .*"):
        fast_attacks(other_classes=value)


def test_the_second_run_is_named_by_its_ranking_and_its_norm():
    from signattack.evaluation._fast import RankedAPGDT

    assert RankedAPGDT(1.0, ranking="boundary").name == "APGD-T (boundary)"
    assert RankedAPGDT(1.0, ranking="logits", norm="l2").name == "APGD-T (logits, L2)"


@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_the_second_run_is_described_under_the_papers_name_with_its_ranking_among_the_settings(
    norm,
):
    from signattack.evaluation.standard import traits_of

    members = list(fast_attacks(norm=norm))
    described = [traits_of(member).description for member in members]
    second = described[2]
    assert second.startswith("APGD-T(")
    assert "ranking='boundary'" in second
    assert second.count("l2") == (1 if norm == "l2" else 0)
    assert len({traits_of(member).name for member in members}) == len(members)
