"""What a new user reads first: a warning that names the real cause of a radius in the wrong
units, and a report whose words are true (the largest perturbation never above eps, the
settings that ran, the paper's names, the warnings in its one-line summary)."""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import pathlib
import re
import warnings

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from signattack import (
    APGD,
    APGDT,
    FABT,
    FGSM,
    IteratedSign,
    LinearClassifier,
    Square,
    UnitsWarning,
)
from signattack.core import L2
from signattack.core.validation import Bounds
from signattack.evaluation import RobustnessReport, evaluate, standard_attacks
from signattack.evaluation.report import STAND_IN
from signattack.evaluation.standard import attack_record, traits_of

DOCS = pathlib.Path(__file__).resolve().parents[1] / "docs"


def _problem(
    classes: int = 4, features: int = 6, samples: int = 5, scale: float = 255.0
) -> tuple[LinearClassifier, np.ndarray, np.ndarray]:
    """A NumPy linear model and inputs in ``[0, scale]`` that it classifies as labelled."""
    rng = np.random.default_rng(0)
    model = LinearClassifier(rng.normal(size=(classes, features)), np.zeros(classes))
    x = rng.uniform(0, scale, size=(samples, features))
    return model, x, model(x).argmax(1)


def _units_warnings(run) -> list[str]:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        run()
    return [str(w.message) for w in caught if issubclass(w.category, UnitsWarning)]


# -- 1. a radius in [0, 1] units on a pixel box ----------------------------------------------


def _narrow(report: RobustnessReport) -> list[str]:
    return [w for w in report.warnings if "smaller than one 8-bit level" in w]


@pytest.mark.parametrize(
    ("attack", "eps", "suggested"),
    [
        (IteratedSign(0.0, 2), [8 / 255], "eps=8 on [0, 255]"),
        (FGSM(0.0), [1 / 255, 4 / 255], "eps=4 on [0, 255]"),  # the largest radius is judged
        (APGD(0.0, 1, norm="l2", seed=0), [0.5], "eps=127.5 on [0, 255]"),
    ],
    ids=["iterated sign", "fgsm", "apgd l2"],
)
def test_an_evaluation_below_a_pixel_level_says_the_radius_it_likely_meant(attack, eps, suggested):
    model, x, y = _problem()
    report = evaluate(model, [(x, y)], attack, eps, progress=False)
    said = _narrow(report)
    assert len(said) == 1, report.warnings
    assert suggested in said[0]
    assert f"eps = {max(eps):g}" in said[0]
    assert "RobustBench's" in said[0]
    assert any("smaller than one 8-bit level" in line for line in report.table().splitlines())


def test_integer_pixels_are_judged_alike():
    model, x, _ = _problem()
    pixels = np.round(x).astype(np.uint8)
    labels = model(pixels.astype(float)).argmax(1)
    report = evaluate(model, [(pixels, labels)], IteratedSign(0.0, 2), [8 / 255], progress=False)
    assert len(_narrow(report)) == 1


@pytest.mark.parametrize(
    ("eps", "bounds"),
    [
        ([0.0], (0.0, 255.0)),  # the identity, asked for
        ([0.25], (0.0, 255.0)),  # a quarter level, on float inputs
        ([0.01, 8.0], (0.0, 255.0)),  # a sweep up to 8 levels
        ([8 / 255], (0.0, 1.0)),  # [0, 1] units on a [0, 1] box
        ([0.05], (0.0, 5.0)),  # no pixel box
    ],
)
def test_no_such_finding_for_radii_in_the_box_units(eps, bounds):
    model, x, y = _problem(scale=bounds[1])
    attack = IteratedSign(0.0, 1, bounds=bounds)
    assert _narrow(evaluate(model, [(x, y)], attack, eps, progress=False)) == []


def test_an_attack_called_alone_takes_any_radius_without_a_warning():
    model, x, y = _problem()
    assert _units_warnings(lambda: IteratedSign(8 / 255, 2).run(model, x, y)) == []


def test_a_box_of_other_pixel_units_is_judged_by_its_own_level():
    from signattack.core.validation import narrow_eps_problem

    narrow = Bounds(0.0, 64.0)  # one level is 0.25098; a quarter of it 0.062745
    assert narrow_eps_problem(0.062, narrow) is not None
    assert narrow_eps_problem(0.063, narrow) is None
    assert narrow_eps_problem(0.25, narrow, L2) is not None  # under L2: a whole level
    assert narrow_eps_problem(0.26, narrow, L2) is None
    wide = Bounds(0.0, 65535.0)  # 16-bit images: a radius of a few values is no [0, 1] radius
    assert narrow_eps_problem(5.5, wide) is None
    said = narrow_eps_problem(8 / 255, wide)
    assert said is not None
    assert f"eps={8 / 255 * 65535:g} on [0, 65535]" in said


def test_inputs_in_0_1_on_a_pixel_box_get_one_warning_that_names_the_box():
    model, x, y = _problem(scale=1.0)
    said = _units_warnings(lambda: IteratedSign(8 / 255, 1).run(model, x, y))
    assert len(said) == 1
    assert "bounds=(0, 1)" in said[0]


# -- 2. the largest perturbation is never shown above eps -------------------------------------


def _shown(report: RobustnessReport, form: str) -> tuple[str, str]:
    """The eps and the largest perturbation as ``form`` writes them, for the report's one radius."""
    if form == "csv":
        row = list(csv.DictReader(io.StringIO(report.to_summary_csv())))[-1]
        return row["eps_shown"], row["max_perturbation_shown"]
    if form == "text":
        cells = re.split(r" {2,}", report.table().splitlines()[2].strip())  # header, clean
        return cells[0], cells[3]
    text = {"markdown": report.to_markdown, "latex": report.to_latex}[form]()
    if form == "markdown":
        cells = [c.strip() for c in text.strip().splitlines()[-1].strip("|").split("|")]
    else:
        row = [line for line in text.splitlines() if line.endswith(r"\\")][-1]
        cells = [c.strip() for c in row.removesuffix(r"\\").split("&")]
    return cells[0], cells[3]


def _one_radius(eps: float, largest: float, norm: str = "linf") -> RobustnessReport:
    return RobustnessReport(
        eps=(eps,),
        attack="APGD-CE(steps=3)",
        clean_correct=(True, True),
        robust_correct={eps: (True, False)},
        max_perturbation={eps: largest},
        attacked={eps: 2},
        metadata={"bounds": [-1.0, 1.0], "norm": norm},
    )


FORMS = ("text", "markdown", "latex", "csv")


@given(
    eps=st.floats(1e-6, 100.0, allow_nan=False),
    norm=st.sampled_from(["linf", "l2"]),
)
def test_a_float32_radius_is_never_shown_above_the_radius_it_rounds(eps, norm):
    """``float32(eps)`` may lie above ``eps``: a point that passed the ball check in
    ``float32``. Every format shows it at most at the shown eps."""
    report = _one_radius(eps, float(np.float32(eps)), norm)
    for form in FORMS:
        shown_eps, shown_max = _shown(report, form)
        assert float(shown_max) <= float(shown_eps), (form, shown_eps, shown_max)


def test_the_reported_example_reads_true_in_every_format():
    eps = 8 / 255  # on [-1, 1]: shown as a decimal, 0.0313725
    report = _one_radius(eps, float(np.float32(eps)))
    for form in FORMS:
        shown_eps, shown_max = _shown(report, form)
        assert float(shown_max) <= float(shown_eps), (form, shown_eps, shown_max)
    assert report.max_perturbation[eps] == float(np.float32(eps))  # the measurement is kept


@pytest.mark.parametrize("form", FORMS)
def test_a_point_outside_the_ball_is_shown_as_measured(form):
    report = _one_radius(0.5, 0.6)  # a broken threat model must not hide
    shown_eps, shown_max = _shown(report, form)
    assert float(shown_max) == pytest.approx(0.6)
    assert float(shown_max) > float(shown_eps)


# -- 3. the settings record the radius that ran, or none ---------------------------------------


def test_recorded_settings_hold_no_placeholder_radius():
    model, x, y = _problem()
    attacks = [IteratedSign(0.0, 2, seed=0), APGD(0.0, 2, seed=0)]
    report = evaluate(model, [(x, y)], attacks, [2.0, 4.0], progress=False)
    for records in (report.metadata["attacks"], report.to_robustbench()["attacks"]):
        for record in records:
            assert "eps" not in record["settings"]["fields"], record
    again = RobustnessReport.from_dict(json.loads(report.to_json()))
    assert again.metadata["attacks"] == report.metadata["attacks"]


def test_a_factory_made_attack_records_no_radius_of_its_first_call():
    record = attack_record(IteratedSign(4.0, 2))
    assert "eps" not in record["settings"]["fields"]
    assert record["settings"]["fields"]["steps"] == 2


def test_a_report_with_the_old_placeholder_still_reads_as_the_standard_suite():
    records = json.loads(json.dumps([attack_record(a) for a in standard_attacks()]))
    old = [
        {**r, "settings": {**r["settings"], "fields": {"eps": 0.0, **r["settings"]["fields"]}}}
        for r in records
    ]
    for recorded in (records, old):
        report = RobustnessReport(
            eps=(8.0,),
            attack="standard",
            clean_correct=(True,),
            robust_correct={8.0: (True,)},
            max_perturbation={8.0: 8.0},
            attacked={8.0: 1},
            metadata={"bounds": [0.0, 255.0], "attacks": recorded},
        )
        assert "autoattack_acc" in report.to_robustbench()


# -- 4. one spelling of each attack: the paper's ----------------------------------------------


@pytest.mark.parametrize(
    ("attack", "start"),
    [
        (APGD(0, 5), "APGD-CE(steps=5"),
        (APGD(0, 5, loss="dlr"), "APGD-DLR(steps=5"),
        (APGDT(0, 5), "APGD-T(steps=5"),
        (APGDT(0, 5, norm="l2"), "APGD-T(steps=5"),
        (FABT(0, 5), "FAB-T(steps=5"),
        (Square(0, 30), "Square(queries=30"),
        (IteratedSign(0, 5), "IteratedSign(steps=5"),
    ],
)
def test_a_description_uses_the_name_the_attack_gives(attack, start):
    described = traits_of(attack).description
    assert described.startswith(start), described
    assert "APGDT" not in described
    assert "FABT" not in described
    assert "(L2)(" not in described  # the norm is said once, among the settings


def test_table_footer_and_robustbench_entry_name_the_attacks_as_the_broken_by_column():
    model, x, y = _problem()
    attacks = [APGD(0.0, 2, seed=0), APGDT(0.0, 2, target_classes=2, seed=0)]
    report = evaluate(model, [(x, y)], attacks, [8.0], progress=False)
    entry = report.to_robustbench()
    for shown in (report.attack, entry["robust_acc_attacks"], entry["evaluation"]):
        assert "APGD-CE(steps=2" in shown, shown
        assert "APGD-T(steps=2" in shown, shown
        assert "APGDT(" not in shown
    assert list(report.broken_by[8.0]) == ["APGD-CE", "APGD-T"]
    assert "attacks: APGD-CE(steps=2" in report.table()


def test_the_docs_show_output_with_the_papers_names():
    """A text block (what a program printed) never spells an attack as its Python class."""
    for page in DOCS.rglob("*.md"):
        blocks = re.findall(r"```text\n(.*?)```", page.read_text(encoding="utf-8"), re.DOTALL)
        for block in blocks:
            assert not re.search(r"\b(APGDT|FABT)\(", block), (page, block)


# -- 5. the warnings in the one-line summary, the stand-in data among them ---------------------


def _warned(warnings_: tuple[str, ...], metadata: dict | None = None) -> RobustnessReport:
    return RobustnessReport(
        eps=(4.0,),
        attack="APGD-CE(steps=3)",
        clean_correct=(True, True),
        robust_correct={4.0: (True, False)},
        max_perturbation={4.0: 4.0},
        attacked={4.0: 2},
        warnings=warnings_,
        metadata={"bounds": [0.0, 255.0], **(metadata or {})},
    )


def test_the_repr_counts_the_warnings_and_gives_the_first_ones_gist():
    masking = (
        "at eps 4, Square broke 3 of 20 samples (15.0%) that the gradient attacks before it "
        "left robust: the model likely masks its gradients"
    )
    shown = repr(_warned((masking, "100% of the input-gradient entries are exactly zero")))
    assert "2 warnings: at eps 4, Square broke 3 of 20" in shown
    assert "masks its gradients" not in shown  # the gist, not the whole
    assert "\n" not in shown
    assert len(shown) < 240
    assert "1 warning: " in repr(_warned(("a\nsplit; warning",)))
    assert "warning" not in repr(_warned(()))


def test_a_report_on_the_stand_in_data_carries_it_in_its_warnings():
    report = _warned((), {"data": {"synthetic": True}})
    assert report.warnings[0] == STAND_IN
    assert json.loads(report.to_json())["warnings"] == [STAND_IN]
    assert "1 warning: SYNTHETIC STAND-IN DATA" in repr(report)
    again = RobustnessReport.from_dict(json.loads(report.to_json()))
    assert again.warnings == report.warnings  # said once, also when read back
    assert report.table().count(STAND_IN) == 1  # the table's first line says it, once
    marked = dataclasses.replace(_warned(("masking",)), metadata={"data": {"synthetic": True}})
    assert marked.warnings == (STAND_IN, "masking")


def test_the_figure_of_a_report_on_the_stand_in_data_says_so_inside_its_frame():
    pytest.importorskip("matplotlib")
    figure = _warned((), {"data": {"synthetic": True}}).plot()
    figure.canvas.draw()
    title = figure.get_suptitle()
    assert "SYNTHETIC STAND-IN DATA" in title
    assert "never report these numbers" in title.replace("\n", " ")
    shown = figure._suptitle.get_window_extent()
    frame = figure.bbox
    assert frame.x0 <= shown.x0 and shown.x1 <= frame.x1  # noqa: PT018 - one bound, both sides
    assert _warned(()).plot().get_suptitle() == ""
