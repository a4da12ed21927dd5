"""The fast preset's audit and its escalation, decided over the whole dataset."""

from __future__ import annotations

import copy
import json

import numpy as np
import pytest
import torch
from conftest import linear_pair

from signattack import APGD, Square
from signattack.evaluation import RobustnessReport, evaluate, fast_attacks, rand_attacks, verify
from signattack.evaluation._audit import ESCALATION, chosen
from signattack.evaluation.report import wilson_interval

RADII = [12.0, 30.0]


class _Quantized(torch.nn.Module):
    """A linear model behind a rounding step (no input gradient: the gradient attacks fail
    and the Square probe breaks samples), one sample at a time, so that a sample's logits
    are the same bits whatever batch it comes in."""

    def __init__(self, seed: int) -> None:
        super().__init__()
        _, self.net = linear_pair(4, 16, scale=0.05, seed=seed)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        q = torch.round(x / 32) * 32
        return torch.cat([self.net(q[i : i + 1]) for i in range(q.shape[0])])


def _problem(seed: int = 2) -> tuple[torch.nn.Module, torch.Tensor, torch.Tensor]:
    model = _Quantized(seed)
    x = torch.from_numpy(np.random.default_rng(seed).uniform(60, 190, size=(24, 1, 4, 4)))
    with torch.no_grad():
        y = model(x).argmax(1)
    return model, x, y


def _reference() -> list[object]:
    return [APGD(0.0, 3, seed=0), Square(0.0, 40, seed=0)]


def _suite(**settings: object):
    budget = {"target_steps": 2, "target_classes": 1, "probe": 4, "queries": 40}
    settings.setdefault("reference", _reference())
    return fast_attacks(3, **budget, **settings)


def _batched(x, y, size, order=None):
    order = torch.arange(len(y)) if order is None else order
    return [(x[order[i : i + size]], y[order[i : i + size]]) for i in range(0, len(y), size)]


def _flags(report, order):
    """Per radius, the verdicts in the data's original order."""
    found = {}
    for eps in report.eps:
        row = [False] * len(order)
        for place, sample in enumerate(order.tolist()):
            row[sample] = report.robust_correct[eps][place]
        found[eps] = row
    return found


@pytest.mark.parametrize("size", [pytest.param(1, marks=pytest.mark.slow), 7])
def test_the_fast_presets_verdicts_do_not_depend_on_the_batches(size):
    model, x, y = _problem()
    whole = evaluate(model, [(x, y)], _suite(audit=0.5), RADII, progress=False)
    record = whole.metadata["audit"]["radii"]
    assert record["12.0"]["probe_broke"] > 0, "the probe should call for the escalation"
    assert whole.broken_by[12.0][ESCALATION] > 0
    expected = _flags(whole, torch.arange(24))
    shuffled = torch.from_numpy(np.random.default_rng(0).permutation(24))
    report = evaluate(model, _batched(x, y, size, shuffled), _suite(audit=0.5), RADII)
    assert _flags(report, shuffled) == expected
    assert report.metadata["audit"]["radii"] == record  # the same samples, same counts
    # Without the escalation the probe alone decides: it leaves robust what escalation broke.
    off = evaluate(model, [(x, y)], _suite(escalate=False), RADII, progress=False)
    assert sum(off.robust_correct[12.0]) > sum(whole.robust_correct[12.0])


def test_the_audit_counts_what_both_suites_give_on_the_chosen_samples():
    model, x, y = _problem(seed=1)
    report = evaluate(model, _batched(x, y, 5), _suite(audit=0.5, seed=3), RADII)
    picked = chosen(x, y, 0.5, 3)
    assert 0 < len(picked) < 24
    index = torch.tensor(picked)
    quick = evaluate(model, [(x[index], y[index])], _suite(escalate=False, seed=3), RADII)
    full = evaluate(model, [(x[index], y[index])], _reference(), RADII, progress=False)
    record = report.metadata["audit"]
    for eps in RADII:
        pairs = list(zip(quick.robust_correct[eps], full.robust_correct[eps], strict=True))
        entry = record["radii"][str(eps)]
        assert entry["audited"] == len(picked)
        assert entry["missed"] == sum(a and not b for a, b in pairs)
        assert entry["extra"] == sum(b and not a for a, b in pairs)
        assert entry["missed"] <= len(picked) * entry["upper"] + 1e-9
        assert entry["passes"]["forward"] > 0
    assert record["radii"]["30.0"]["missed"] > 0
    assert any("the audit at eps" in w for w in report.warnings)
    assert "audit at eps" in report.table()
    # The audit's passes are not in the evaluation's cost; the escalation's are.
    assert set(report.cost.attacks[30.0]) == set(report.broken_by[30.0])
    again = RobustnessReport.from_dict(json.loads(report.to_json()))
    assert again.metadata["audit"] == record


def test_a_resumed_evaluation_gives_the_same_audit(tmp_path):
    model, x, y = _problem()
    data = _batched(x, y, 8)
    path = tmp_path / "run.json"
    first = evaluate(model, data, _suite(audit=0.5), RADII, checkpoint=path, progress=False)

    def broken():
        yield from data[:2]
        raise RuntimeError("interrupted")

    part = tmp_path / "part.json"
    with pytest.raises(RuntimeError, match="interrupted"):
        evaluate(model, broken(), _suite(audit=0.5), RADII, checkpoint=part, progress=False)
    resumed = evaluate(model, data, _suite(audit=0.5), RADII, checkpoint=part, progress=False)
    assert resumed.metadata["resumed_batches"] == 2
    assert resumed.metadata["audit"] == first.metadata["audit"]
    assert resumed.robust_correct == first.robust_correct
    # Another share is another evaluation: its checkpoint is not reused.
    with pytest.raises(ValueError, match="another evaluation"):
        evaluate(model, data, _suite(audit=0.25), RADII, checkpoint=path, progress=False)


def test_a_damaged_audit_is_refused_by_name(tmp_path):
    model, x, y = _problem()
    path = tmp_path / "run.json"
    report = evaluate(model, [(x, y)], _suite(audit=0.5), RADII, checkpoint=path)
    data = json.loads(report.to_json())
    data["metadata"]["audit"]["radii"]["12.0"]["missed"] = 99
    with pytest.raises(ValueError, match=r"metadata\.audit"):
        RobustnessReport.from_dict(data)
    data = json.loads(report.to_json())
    data["metadata"]["audit"]["radii"]["12.0"]["upper"] = 0.0
    with pytest.raises(ValueError, match=r"metadata\.audit.*upper"):
        RobustnessReport.from_dict(data)
    stored = json.loads(path.read_text())
    stored["batches"]["0"]["audit"]["missed"] = [1]
    path.write_text(json.dumps(stored))
    with pytest.raises(ValueError, match=r"damaged.*audit\.missed"):
        evaluate(model, [(x, y)], _suite(audit=0.5), RADII, checkpoint=path)


def test_escalation_off_says_what_it_would_have_run():
    model, x, y = _problem()
    report = evaluate(model, [(x, y)], _suite(audit=0.5, escalate=False), RADII)
    entry = report.metadata["audit"]["radii"]["12.0"]
    assert entry["escalation"] == "off"
    assert entry["handed"] == sum(report.robust_correct[12.0]) > 0
    assert ESCALATION not in report.broken_by[12.0]
    assert any("escalate=False" in w for w in report.warnings)


def test_a_one_shot_iterator_is_not_escalated_silently():
    model, x, y = _problem()
    report = evaluate(model, iter(_batched(x, y, 8)), _suite(), RADII, progress=False)
    assert report.metadata["audit"]["radii"]["12.0"]["escalation"] == "not possible"
    assert any("one-shot iterator" in w for w in report.warnings)


def test_bad_audit_settings_are_refused_by_name():
    with pytest.raises(ValueError, match="audit"):
        fast_attacks(audit=0.0)
    with pytest.raises(TypeError, match="escalate"):
        fast_attacks(escalate="yes")
    with pytest.raises(TypeError, match="reference"):
        fast_attacks(reference=3)


def test_an_escalated_report_at_several_radii_keeps_the_sweeps_bookkeeping(tmp_path):
    model, x, y = _problem()
    path = tmp_path / "points.npz"
    report = evaluate(model, _batched(x, y, 8), _suite(audit=0.5), RADII, adversarial=path)
    assert report.metadata["audit"]["radii"]["30.0"]["escalation"] == "ran"
    robust_before = sum(report.clean_correct)
    for eps in RADII:  # attacked: the samples robust when the radius's attacks began
        robust = sum(report.robust_correct[eps])
        assert report.attacked[eps] == robust_before
        assert report.attacked[eps] - sum(report.broken_by[eps].values()) == robust
        robust_before = robust
    checked = verify(model, path)
    assert checked.problems == ()
    assert checked.reproduced


@pytest.mark.parametrize(
    ("settings", "reference", "said"),
    [
        ({"norm": "l2"}, [Square(0.0, 40, seed=0)], r"reference.*L2.*L-inf"),
        ({}, [Square(0.0, 40, seed=0, bounds=(0.0, 1000.0))], r"reference.*bounds.*1000"),
        ({}, [Square(0.0, 40, seed=0, model_mode="train")], r"reference.*model_mode"),
        ({}, [APGD(0.0, 3, seed=0, eot=2)], r"reference\[0\].*eot=1.*eot=2"),
    ],
)
def test_a_reference_outside_the_presets_threat_model_is_refused(settings, reference, said):
    budget = {"target_steps": 2, "target_classes": 1, "probe": 4, "queries": 40}
    with pytest.raises(ValueError, match=said):
        fast_attacks(3, **budget, **settings, audit=0.5, reference=reference)


def test_a_reference_that_is_not_a_plain_suite_is_refused_by_name():
    with pytest.raises(ValueError, match=r"reference must hold at least one attack"):
        _suite(reference=[])
    with pytest.raises(TypeError, match=r"reference\[1\].*function"):
        _suite(reference=[APGD(0.0, 3, seed=0), lambda eps: Square(eps, 40)])
    with pytest.raises(TypeError, match=r"reference.*audit"):
        _suite(reference=_suite(audit=0.5))


class _Noisy(torch.nn.Module):
    """A randomized linear model: the fast preset switches to its randomized suite."""

    def __init__(self) -> None:
        super().__init__()
        _, self.net = linear_pair(4, 16, scale=0.05, seed=0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x + 30 * torch.randn_like(x))


def test_an_audit_dropped_for_a_randomized_model_is_said():
    torch.manual_seed(0)
    x = torch.from_numpy(np.random.default_rng(0).uniform(60, 190, size=(2, 1, 4, 4)))
    y = torch.tensor([0, 1])
    suite = fast_attacks(1, target_steps=1, target_classes=1, probe=1, queries=2, audit=0.5)
    suite = type(suite)(suite.name, list(suite), rand_attacks(1, eot=2), suite.audit)
    report = evaluate(_Noisy(), [(x, y)], suite, [4.0], progress=False)
    assert report.metadata["randomized_model"] is True
    assert "audit" not in report.metadata
    assert any("audit" in w and "dropped" in w and "randomized" in w for w in report.warnings)


@pytest.fixture(scope="module", name="escalated")
def _escalated() -> dict:
    model, x, y = _problem()
    report = evaluate(model, _batched(x, y, 12), _suite(audit=0.5), RADII, progress=False)
    data = json.loads(report.to_json())
    assert data["metadata"]["audit"]["radii"]["12.0"]["escalation"] == "ran"
    return data


def _audit(data):
    return data["metadata"]["audit"]


def _radius(data):
    return _audit(data)["radii"]["12.0"]


def _set_audited(data, audited):
    entry = _radius(data)
    entry["audited"] = audited
    entry["upper"] = wilson_interval(entry["missed"], audited)[1]


@pytest.mark.parametrize(
    "damage",
    [
        lambda d: _set_audited(d, 10**6),  # more than the samples
        lambda d: _set_audited(d, _radius(d)["audited"] + 1),  # differs across radii
        lambda d: _radius(d).update(extra=_radius(d)["audited"] - _radius(d)["missed"] + 1),
        lambda d: _radius(d).update(escalation="not needed"),
        lambda d: _radius(d).update(escalation="bogus"),
        lambda d: _radius(d).update(handed=-1),
        lambda d: _radius(d).update(handed=10**6),
        lambda d: _radius(d).update(probe_broke=True),
        lambda d: _radius(d).pop("passes"),
        lambda d: _radius(d).update(unknown=1),
        lambda d: _audit(d).update(seed="0"),
        lambda d: _audit(d).update(escalate="yes"),
        lambda d: _audit(d).update(reference=5),
        lambda d: _audit(d).update(share="0.5"),
        lambda d: _audit(d).update(unknown=1),
        lambda d: _audit(d)["radii"]["30.0"].update(
            escalation="not needed", probe_broke=0, missed=0, extra=0, upper=1.0
        ),
        lambda d: d["metadata"].pop("audit"),
    ],
)
def test_every_damage_to_the_audit_record_is_refused_by_name(escalated, damage):
    data = copy.deepcopy(escalated)
    RobustnessReport.from_dict(copy.deepcopy(data))  # undamaged, it loads
    damage(data)
    with pytest.raises(ValueError, match=r"metadata\.audit"):
        RobustnessReport.from_dict(data)
