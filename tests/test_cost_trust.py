"""The cost a report states is what the model saw, or unknown: never a user's attack's word,
never a cost that contradicts the report around it."""

from __future__ import annotations

import json

import pytest
import torch

from signattack import APGD, IteratedSign
from signattack.core import L2, LINF
from signattack.evaluation import PassCount, RobustnessReport, evaluate


def _setup():
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 10))
    x = torch.rand(4, 1, 8, 8) * 255
    return net, x, net(x).argmax(1)


class BestOfTwo:
    """A user's attack that runs two of the library's and returns one result."""

    def __init__(self, eps: float) -> None:
        self.eps = eps

    def __call__(self, model, x, y):
        return self.run(model, x, y).x_adv

    def run(self, model, x, y):
        first = IteratedSign(self.eps, 3, step_size=2).run(model, x, y)
        second = APGD(self.eps, 3, seed=0).run(model, x, y)
        return first if first.success.sum() >= second.success.sum() else second


def test_a_users_attack_that_returns_a_library_result_is_not_taken_at_its_word():
    net, x, y = _setup()
    report = evaluate(net, [(x, y)], BestOfTwo, [4.0], progress=False)
    assert report.cost is not None
    assert report.cost.attacks[4.0]["BestOfTwo"] is None
    assert report.cost.total is None
    assert report.metadata["passes"] is None


def _report() -> dict:
    net, x, y = _setup()
    report = evaluate(net, [(x, y)], IteratedSign(4.0, 2), [4.0], progress=False)
    return json.loads(report.to_json())


def test_a_report_whose_cost_contradicts_its_metadata_is_refused():
    data = _report()
    name = next(iter(data["cost"]["attacks"]["4.0"]))
    data["cost"]["attacks"]["4.0"][name]["forward"] += 1000
    with pytest.raises(ValueError, match="passes"):
        RobustnessReport.from_dict(data)


def test_a_report_whose_own_passes_miss_the_clean_pass_is_refused():
    data = _report()
    data["cost"]["evaluation"] = {"forward": 0, "backward": 0}
    data["metadata"].pop("passes")
    with pytest.raises(ValueError, match="clean pass"):
        RobustnessReport.from_dict(data)


def test_pass_counts_add_only_to_pass_counts_and_a_missing_radius_is_named():
    with pytest.raises(TypeError):
        PassCount(1, 1) + 1
    report = RobustnessReport.from_dict(_report())
    assert report.cost is not None
    with pytest.raises(ValueError, match="eps must be one of"):
        report.cost.at(5.0)


@pytest.mark.parametrize("norm", [LINF, L2])
def test_a_feasible_set_refuses_an_inverted_box(norm):
    x = torch.rand(2, 4) * 255
    with pytest.raises(ValueError, match="lower <= upper"):
        norm.feasible(x, 5.0, 255.0, 0.0)
