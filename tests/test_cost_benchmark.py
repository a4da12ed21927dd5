"""The cost benchmark's counting wrapper (benchmarks/cost.py) charges each member of an
evaluation the passes it reports of itself, and leaves the attack classes as it found them."""

from __future__ import annotations

import importlib
import json
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


REPORT = Path(__file__).resolve().parents[1] / "docs" / "benchmarks" / "cost.json"


def test_relayout_gives_the_recorded_report_back(tmp_path, capsys):
    copy = tmp_path / "cost.json"
    copy.write_bytes(REPORT.read_bytes())
    cost.main(["--relayout", str(copy)])
    assert capsys.readouterr().out == f"wrote {copy}\n"
    assert json.loads(copy.read_text()) == json.loads(REPORT.read_text())
    # Its rows are computed from its runs: a run changed is a row changed.
    report = json.loads(copy.read_text())
    run = report["runs"][0]
    run["fast"]["robust"] += 1
    copy.write_text(json.dumps(report))
    cost.main(["--relayout", str(copy)])
    rows = json.loads(copy.read_text())["rows"]
    fast = next(row for row in rows if row["attack"].startswith("fast preset"))
    assert fast["ours"] == run["fast"]["robust"]
    assert list(tmp_path.iterdir()) == [copy], "nothing written beside it"


def _damaged(report: dict) -> dict[str, tuple[str, str]]:
    """Damaged reports, by what is wrong, with the error each should raise."""
    without_meta = {k: v for k, v in report.items() if k != "samples"}
    run = dict(report["runs"][0])
    del run["fast"]
    return {
        "truncated": (REPORT.read_text()[:200], "expected a readable JSON report"),
        "not an object": ("[1, 2]", "expected a cost report with a list of runs"),
        "runs not a list": (json.dumps({**report, "runs": {}}), "with a list of runs"),
        "no samples": (json.dumps(without_meta), r"without \['samples'\]"),
        "a run lacks a suite": (
            json.dumps({**report, "runs": [run, *report["runs"][1:]]}),
            "a run in .* lacks what it should record: KeyError\\('fast'\\)",
        ),
        "a run is a number": (
            json.dumps({**report, "runs": [3]}),
            "a run in .* lacks what it should record",
        ),
        "not UTF-8": ("\udcff", "expected a readable JSON report"),
    }


@pytest.mark.parametrize(
    "damage",
    [
        "truncated",
        "not an object",
        "runs not a list",
        "no samples",
        "a run lacks a suite",
        "a run is a number",
        "not UTF-8",
    ],
)
def test_relayout_refuses_a_damaged_report_and_leaves_it_as_it_was(tmp_path, capsys, damage):
    text, message = _damaged(json.loads(REPORT.read_text()))[damage]
    path = tmp_path / "cost.json"
    path.write_bytes(text.encode("utf-8", "surrogateescape"))
    before = path.read_bytes()
    with pytest.raises(ValueError, match=f"^--relayout: .*{message}"):
        cost.relayout(path)
    with pytest.raises(SystemExit) as exit:
        cost.main(["--relayout", str(path)])
    assert exit.value.code == 2
    assert "--relayout: " in capsys.readouterr().err
    assert path.read_bytes() == before
    assert list(tmp_path.iterdir()) == [path], "no partial file left beside it"


def test_relayout_names_a_missing_file(tmp_path):
    with pytest.raises(ValueError, match="--relayout: expected a readable JSON report, got "):
        cost.relayout(tmp_path / "missing.json")
    assert not (tmp_path / "missing.json").exists()
