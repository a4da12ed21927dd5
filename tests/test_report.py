"""The report as a reader of the numbers needs it: metadata, intervals, radii in the user's
units, tables to paste, a RobustBench entry and a figure."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from signattack import APGD, FGSM, IteratedSign, Square
from signattack.evaluation import RobustnessReport, evaluate
from signattack.evaluation.report import radius_text, wilson_interval


def _problem(seed: int = 0):
    torch.manual_seed(seed)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(12, 4)).eval()
    x = torch.rand(40, 12)
    with torch.no_grad():
        y = model(x).argmax(1)
    y[:3] = (y[:3] + 1) % 4  # three misclassified samples
    return model, [(x[:20], y[:20]), (x[20:], y[20:])]


@pytest.fixture(scope="module")
def report() -> RobustnessReport:
    model, data = _problem()
    attacks = [APGD(0, 3, bounds=(0, 1), seed=5), Square(0, 20, bounds=(0, 1), seed=6)]
    return evaluate(model, data, attacks, [0.0, 2 / 255, 8 / 255, 0.3])


def test_wilson_intervals_match_their_closed_form_values():
    low, high = wilson_interval(0, 10)
    assert low == pytest.approx(0.0, abs=1e-12)
    assert high == pytest.approx(0.2775, abs=1e-4)
    low, high = wilson_interval(50, 100)
    assert (low, high) == pytest.approx((0.4038, 0.5962), abs=1e-4)
    with pytest.raises(ValueError, match="trials must be >= 1"):
        wilson_interval(0, 0)
    with pytest.raises(ValueError, match="level must be in"):
        wilson_interval(1, 2, level=1.0)


@given(st.integers(1, 5000), st.data())
def test_a_wilson_interval_holds_its_share_and_narrows_with_more_samples(trials, data):
    successes = data.draw(st.integers(0, trials))
    low, high = wilson_interval(successes, trials)
    assert 0 <= low <= successes / trials <= high <= 1
    wider_low, wider_high = wilson_interval(successes, trials, level=0.99)
    assert wider_low <= low
    assert high <= wider_high
    more_low, more_high = wilson_interval(4 * successes, 4 * trials)
    assert more_high - more_low < high - low


def test_radii_are_shown_in_their_users_units():
    assert radius_text(8 / 255, (0.0, 1.0)) == "8/255"
    assert radius_text(0.5 / 255, (0.0, 1.0)) == f"{0.5 / 255:g}"
    assert radius_text(8.0, (0.0, 255.0)) == "8"
    assert radius_text(0.03, None) == "0.03"
    assert radius_text(0.0, (0.0, 1.0)) == "0"


def test_the_report_records_what_was_evaluated(report):
    meta = report.metadata
    assert meta["bounds"] == [0.0, 1.0]
    assert meta["model_mode"] == "eval"
    assert meta["data"]["samples"] == 40
    assert meta["data"]["batches"] == 2
    assert len(meta["data"]["digest"]) == 64
    assert meta["frameworks"]["torch"] == torch.__version__
    assert [a["name"] for a in meta["attacks"]] == ["APGD-CE", "Square"]
    assert [a["seed"] for a in meta["attacks"]] == [5, 6]
    assert meta["model"]["module"].endswith("Sequential")
    assert meta["device"] == "cpu"
    assert meta["wall_time_s"] > 0
    assert meta["resumed_batches"] == 0
    assert list(report.broken_by[8 / 255]) == ["APGD-CE", "Square"]


def test_metadata_survives_the_file_and_does_not_make_two_runs_differ(report, tmp_path):
    again = RobustnessReport.from_dict(json.loads(report.to_json()))
    assert again == report
    assert again.metadata == report.metadata
    model, data = _problem()
    attacks = [APGD(0, 3, bounds=(0, 1), seed=5), Square(0, 20, bounds=(0, 1), seed=6)]
    rerun = evaluate(model, data, attacks, [0.0, 2 / 255, 8 / 255, 0.3])
    assert rerun == report  # the same numbers; the wall time differs
    older = report.to_dict()
    del older["metadata"]
    older["format"] = 1
    assert RobustnessReport.from_dict(older).metadata == {}


def test_a_resume_is_recorded(tmp_path):
    model, data = _problem()
    path = tmp_path / "run.json"
    evaluate(model, data[:1], FGSM(0, bounds=(0, 1)), [0.1], checkpoint=path)
    with pytest.raises(ValueError, match="belongs to another evaluation"):
        evaluate(model, data[1:], FGSM(0, bounds=(0, 1)), [0.1], checkpoint=path)
    resumed = evaluate(model, data, IteratedSign(0, 1, bounds=(0, 1)), [0.1])
    assert resumed.metadata["resumed_batches"] == 0
    first = evaluate(model, data, FGSM(0, bounds=(0, 1)), [0.1], checkpoint=tmp_path / "b.json")
    second = evaluate(model, data, FGSM(0, bounds=(0, 1)), [0.1], checkpoint=tmp_path / "b.json")
    assert first.metadata["resumed_batches"] == 0
    assert second.metadata["resumed_batches"] == 2
    assert second == first


def test_the_table_shows_intervals_user_units_and_each_attack_once(report):
    text = report.table()
    lines = text.splitlines()
    assert lines[0].split()[:3] == ["eps", "accuracy", "95%"]
    assert any(line.split()[0] == "8/255" for line in lines)
    assert any(line.split()[0] == "2/255" for line in lines)
    zero = next(line for line in lines if line.split()[0] == "0")
    assert zero.split()[4] == "0"  # attacked, and nothing moved
    assert text.count(report.attack) == 1
    assert "APGD-CE" in text
    low, high = report.interval(8 / 255)
    assert f"[{100 * low:.1f}, {100 * high:.1f}]" in text


def test_a_radius_at_which_nothing_was_left_shows_a_dash_not_zero():
    report = RobustnessReport(
        eps=(1.0, 2.0),
        attack="A",
        clean_correct=(True, False),
        robust_correct={1.0: (False, False), 2.0: (False, False)},
        max_perturbation={1.0: 0.5, 2.0: 0.0},
        attacked={1.0: 1, 2.0: 0},
    )
    row = next(line for line in report.table().splitlines() if line.split()[0] == "2")
    assert row.split()[4] == "-"
    with pytest.raises(ValueError, match="eps must be one of"):
        report.interval(3.0)


def test_markdown_latex_and_summary_csv_hold_the_same_numbers(report, tmp_path):
    markdown = report.to_markdown().splitlines()
    table = [line for line in markdown if line.startswith("|")]
    assert len(table) == 2 + 1 + len(report.eps)
    warned = [line for line in markdown if line.startswith("> **Warning:** ")]
    assert len(warned) == len(report.warnings) > 0  # the masking finding goes with the table
    assert markdown[-1] == warned[-1]
    assert markdown[0] == (
        "| eps | accuracy | 95% CI | max \\|d\\| | attacked | passes/sample | broken by |"
    )
    latex = report.to_latex()
    assert latex.startswith("\\begin{tabular}")
    assert "\\toprule" in latex
    assert "\\bottomrule" in latex
    assert f"{100 * report.robust_accuracy[0.3]:.2f}\\%" in latex
    commented = [line for line in latex.splitlines() if line.startswith("% warning: ")]
    assert len(commented) == len(report.warnings)  # for the author, not the printed table
    rows = report.to_summary_csv().splitlines()
    assert rows[0].split(",")[-2:] == ["broken_by:APGD-CE", "broken_by:Square"]
    assert len(rows) == 2 + len(report.eps)
    last = rows[-1].split(",")
    assert float(last[2]) == report.robust_accuracy[0.3]
    assert (tmp_path / "t.md").name == report.save(tmp_path / "t.md").name
    assert (tmp_path / "t.md").read_text() == report.to_markdown()
    assert report.save(tmp_path / "t.tex").read_text() == latex


def test_the_robustbench_entry_is_named_honestly(report):
    entry = report.to_robustbench(8 / 255)
    assert entry["eps"] == "8/255"
    assert entry["clean_acc"] == f"{100 * report.clean_accuracy:.2f}"
    assert "autoattack_acc" not in entry  # a 3-step APGD and a 20-query Square are not it
    assert entry["robust_acc"] == f"{100 * report.robust_accuracy[8 / 255]:.2f}"
    assert entry["n_examples"] == 40
    assert "not AutoAttack's own code" in entry["evaluation"]
    assert report.to_robustbench()["eps"] == report.radius(0.3)
    with pytest.raises(ValueError, match="eps must be one of"):
        report.to_robustbench(0.5)


def test_one_curve_per_attack_ends_at_the_robust_accuracy(report):
    curves = report.curves()
    assert list(curves) == ["APGD-CE", "Square"]
    assert curves["Square"] == [report.robust_accuracy[e] for e in report.eps]
    for first, then in zip(curves["APGD-CE"], curves["Square"], strict=True):
        assert then <= first <= report.clean_accuracy
    figure = report.plot()
    ax = figure.axes[0]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["0", "0", "2/255", "8/255", "0.3"]
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["after APGD-CE", "after Square"]
    assert "255 levels" in ax.get_xlabel()
    assert not ax.get_title()
    assert math.isclose(ax.lines[-1].get_ydata()[0], report.clean_accuracy)


def test_a_report_of_an_older_version_reads_without_metadata():
    data = {
        "format": 1,
        "attack": "FGSM()",
        "samples": 2,
        "eps": [1.0],
        "clean_correct": [True, True],
        "robust_correct": {"1.0": [True, False]},
        "max_perturbation": {"1.0": 1.0},
        "attacked": {"1.0": 2},
    }
    report = RobustnessReport.from_dict(data)
    assert report.bounds is None
    assert report.radius(1.0) == "1"
    assert np.isclose(report.robust_accuracy[1.0], 0.5)
