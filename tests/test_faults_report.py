"""The fault suite of the report's outputs: every export format, hostile names, numbers that
JSON can hold, copies instead of views, and RobustBench's units and field names.

A new export format joins by adding itself to ``EXPORTS`` (and, where it has a grammar that
a name could break, a parser to ``test_a_hostile_name_survives_every_format``).
"""

from __future__ import annotations

import csv
import html
import io
import json
import math
import re
import unicodedata

import numpy as np
import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from signattack import APGD, LinearClassifier
from signattack.evaluation import RobustnessReport, evaluate, rand_attacks, standard_attacks

EXPORTS = {
    "table": lambda report: report.table(),
    "markdown": lambda report: report.to_markdown(),
    "notebook": lambda report: report._repr_markdown_(),
    "latex": lambda report: report.to_latex(),
    "summary_csv": lambda report: report.to_summary_csv(),
    "csv": lambda report: report.to_csv(),
    "json": lambda report: report.to_json(),
    "robustbench": lambda report: json.dumps(report.to_robustbench(), allow_nan=False),
}
"""Every way a report leaves the library as text."""

EPS = (0.0, 4.0, 16.0)


def _report(
    names: tuple[str, str] = ("APGD-CE", "Square"),
    *,
    attack: str = "APGD(steps=3) + Square(queries=10)",
    warnings: tuple[str, ...] = (),
    metadata: dict | None = None,
    eps: tuple[float, ...] = EPS,
) -> RobustnessReport:
    """A report of 4 samples, built directly: no evaluation runs."""
    first, second = names
    return RobustnessReport(
        eps=eps,
        attack=attack,
        clean_correct=(True, True, True, False),
        robust_correct={e: (True, i == 0, False, False) for i, e in enumerate(eps)},
        max_perturbation={e: e / 2 for e in eps},
        attacked={e: 3 if i == 0 else 2 for i, e in enumerate(eps)},
        broken_by={e: {first: 1, second: 0} for e in eps[1:]} | {eps[0]: {first: 1, second: 0}},
        warnings=warnings,
        metadata={"bounds": [0.0, 255.0], "attacks": [{"name": first}]}
        if metadata is None
        else metadata,
    )


def _one_line(text: str) -> str:
    """What a line-based format keeps of ``text``: line breaks and control characters as
    spaces."""
    return "".join(" " if unicodedata.category(c) in ("Cc", "Zl", "Zp") else c for c in text)


# -- numbers -------------------------------------------------------------------------------


def _refuse_constant(name: str) -> float:
    raise AssertionError(f"the export holds {name}, which JSON cannot hold")


@pytest.mark.parametrize("export", sorted(EXPORTS))
def test_no_export_writes_nan_or_infinity(export):
    hostile = {
        "bounds": [0.0, 255.0],
        "model": {"temperature": math.nan, "scale": math.inf, "shift": -math.inf},
        "wall_time_s": math.nan,
        "attacks": [{"name": "APGD-CE", "settings": {"rho": math.inf}}],
    }
    text = EXPORTS[export](_report(metadata=hostile))
    if export in ("json", "robustbench"):  # JSON: a non-finite number is kept as its text
        json.loads(text, parse_constant=_refuse_constant)
    else:
        assert not re.search(r"\b(nan|inf|infinity)\b", text, flags=re.IGNORECASE), text
    if export.endswith("csv"):
        for row in list(csv.reader(io.StringIO(text, newline="")))[1:]:
            for cell in row[2:]:
                assert cell == "" or math.isfinite(float(cell))


@pytest.mark.parametrize(
    ("field", "value", "error"),
    [
        ("max_perturbation", {0.0: math.nan, 4.0: 1.0, 16.0: 2.0}, "max_perturbation"),
        ("max_perturbation", {0.0: 0.0, 4.0: math.inf, 16.0: 2.0}, "max_perturbation"),
        ("max_perturbation", {0.0: 0.0, 4.0: -1.0, 16.0: 2.0}, "max_perturbation"),
        ("eps", (0.0, math.nan, 16.0), "eps"),
        ("eps", (16.0, 4.0, 0.0), "eps must hold increasing radii"),
        ("attacked", {0.0: 3, 4.0: 9, 16.0: 2}, "attacked"),
        ("robust_correct", {0.0: (True,), 4.0: (True,) * 4, 16.0: (True,) * 4}, "robust_correct"),
        ("clean_correct", (), "at least one sample"),
        ("broken_by", {0.0: {"A": -1}}, "broken_by"),
        ("broken_by", {8.0: {"A": 1}}, "broken_by must have the keys"),
        ("warnings", ("fine", 3), "each warning"),
        ("metadata", {"model": object()}, "metadata"),
        ("metadata", {1: "key"}, "metadata must have str keys"),
    ],
)
def test_a_report_refuses_fields_that_no_export_could_write(field, value, error):
    good = _report()
    fields = {
        "eps": good.eps,
        "attack": good.attack,
        "clean_correct": good.clean_correct,
        "robust_correct": dict(good.robust_correct),
        "max_perturbation": dict(good.max_perturbation),
        "attacked": dict(good.attacked),
        "broken_by": {e: dict(c) for e, c in good.broken_by.items()},
        "warnings": good.warnings,
        "metadata": dict(good.metadata),
    }
    RobustnessReport(**fields)  # the fields as they are make a report
    with pytest.raises((TypeError, ValueError), match=re.escape(error)):
        RobustnessReport(**{**fields, field: value})


# -- copies, not views ---------------------------------------------------------------------

DICT_EXPORTS = {
    "to_dict": lambda report: report.to_dict(),
    "to_robustbench": lambda report: report.to_robustbench(),
    "metadata": lambda report: dict(report.metadata),
    "metadata_item": lambda report: report.metadata["attacks"],
    "curves": lambda report: report.curves(),
}


def _scribble(value: object) -> None:
    """Change every list and dict inside ``value``, in place."""
    if isinstance(value, dict):
        for key in list(value):
            _scribble(value[key])
        value["scribbled"] = True
    elif isinstance(value, list):
        for item in value:
            _scribble(item)
        value.append("scribbled")


@pytest.mark.parametrize("export", sorted(DICT_EXPORTS))
def test_every_export_is_a_fresh_copy(export):
    report = _report()
    before = report.to_json()
    first = DICT_EXPORTS[export](report)
    _scribble(first)
    assert report.to_json() == before
    assert DICT_EXPORTS[export](report) != first


def test_the_report_cannot_be_changed_through_its_attributes():
    report = _report()
    before = report.to_json()
    for mapping in (report.metadata, report.robust_correct, report.attacked, report.broken_by):
        with pytest.raises(TypeError):
            mapping["new"] = 1  # type: ignore[index]
    with pytest.raises(TypeError):
        report.broken_by[4.0]["APGD-CE"] = 0  # type: ignore[index]
    report.metadata["attacks"].append({"name": "forged"})
    report.metadata.get("bounds").append(1.0)
    assert report.to_json() == before
    given_metadata = {"bounds": [0.0, 255.0], "attacks": []}
    held = _report(metadata=given_metadata)
    given_metadata["bounds"].append(9.0)  # the caller's own dict, changed afterwards
    assert held.metadata["bounds"] == [0.0, 255.0]


def test_a_report_read_back_equals_the_one_written_and_stays_frozen():
    report = _report()
    again = RobustnessReport.from_dict(json.loads(report.to_json()))
    assert again == report
    assert again.metadata == report.metadata
    with pytest.raises(TypeError):
        again.metadata["bounds"] = None  # type: ignore[index]


# -- hostile names -------------------------------------------------------------------------

_LATEX_ESCAPES = re.compile(
    r"\\(?:textbackslash|textasciitilde|textasciicircum|textbar|textless|textgreater)\{\}"
    r"|\\[#$%&_{}]"
)
_LATEX_UNESCAPED = {
    r"\textbackslash{}": "\\",
    r"\textasciitilde{}": "~",
    r"\textasciicircum{}": "^",
    r"\textbar{}": "|",
    r"\textless{}": "<",
    r"\textgreater{}": ">",
}


def _latex_text(cell: str) -> str:
    """The text a LaTeX cell prints; fails on a special character that is not escaped."""
    bare = _LATEX_ESCAPES.sub("", cell)
    assert not set(bare) & set("\\#$%&_{}~^"), f"unescaped LaTeX in {cell!r}"
    return _LATEX_ESCAPES.sub(lambda m: _LATEX_UNESCAPED.get(m.group(), m.group()[1:]), cell)


def _markdown_cells(line: str) -> list[str]:
    """The cells of a Markdown table row, split at the pipes that are not escaped, each
    unescaped."""
    cells, current, index = [], [], 0
    while index < len(line):
        char = line[index]
        if char == "\\" and index + 1 < len(line):
            current.append(line[index + 1])
            index += 2
            continue
        if char == "|":
            cells.append("".join(current))
            current = []
        else:
            current.append(char)
        index += 1
    cells.append("".join(current))
    assert cells[0] == "", f"a row must start with a pipe: {line!r}"
    assert cells[-1] == "", f"a row must end with a pipe: {line!r}"
    return [cell.strip() for cell in cells[1:-1]]


_names = st.text(min_size=1, max_size=16)


@given(st.tuples(_names, _names).filter(lambda pair: pair[0] != pair[1]), _names)
@example(("APGD-CE", "APGD-CE #2"), "APGD(steps=3) + APGD(steps=3) #2")
@example(("a|b", "c\nd"), "`x` *y* _z_ <b>&amp;</b> [l](u)")
@example(("\\", "%$#&_{}~^"), "\u2028\r\n\x85\x1c")
def test_a_hostile_name_survives_every_format(names, description):
    from signattack._io import escaped

    first, second = names
    warning = f"{first} broke samples"
    report = _report(names, attack=description, warnings=(warning,))
    broken = f"{first} 1, {second} 0"
    rows = 1 + len(report.eps)

    # Markdown: every row keeps the header's cells, and each cell reads as its text.
    markdown = report.to_markdown().splitlines()
    lines = [line for line in markdown if line.startswith("|")]
    assert len(lines) == 2 + rows
    assert markdown[-1] == f"> **Warning:** {escaped(warning, 'markdown')}"
    cells = [_markdown_cells(line) for line in lines]
    assert {len(row) for row in cells} == {6}
    assert cells[-1][5] == _one_line(broken).strip()  # a cell's outer spaces are no text
    shown = report._repr_markdown_().splitlines()
    notes = [line for line in shown if line.startswith("- ")]
    assert [_markdown_cells(f"|{note[2:]}|")[0] for note in notes] == [
        _one_line(f"attacks: {description}").strip(),
    ]
    assert shown.count(f"> **Warning:** {escaped(warning, 'markdown')}") == 1  # said once

    # LaTeX: no special character unescaped, and each cell prints its text.
    tex = report.to_latex().splitlines()
    body = tex[2 : tex.index(r"\bottomrule")]
    assert tex[-1] == f"% warning: {escaped(warning, 'latex')}"
    latex = [line.removesuffix(r" \\").split(" & ") for line in body if line != r"\midrule"]
    assert {len(row) for row in latex} == {6}
    assert _latex_text(latex[-1][5]) == _one_line(broken)
    assert all(_latex_text(cell) is not None for row in latex for cell in row)

    # CSV: the summary's header round-trips through csv.reader, whatever the name holds.
    header = next(csv.reader(io.StringIO(report.to_summary_csv(), newline="")))
    assert header[-2:] == [f"broken_by:{first}", f"broken_by:{second}"]

    # Text: one line per row and per note, the names readable.
    text = report.table().splitlines()
    assert len(text) == 1 + rows + 2
    assert text[-1] == f"warning: {escaped(warning, 'text')}"

    # HTML: html.escape'd, and unescaping gives the text back.
    assert html.unescape(escaped(description, "html")) == _one_line(description)
    assert not set(escaped(description, "html")) & set("<>\"'")

    # JSON: the names are kept exactly.
    again = RobustnessReport.from_dict(json.loads(report.to_json()))
    assert list(again.broken_by[EPS[-1]]) == [first, second]
    assert again.attack == description
    assert again.warnings == (warning,)


def test_a_second_run_of_an_attack_compiles_in_latex():
    report = _report(("APGD-CE", "APGD-CE #2"))
    assert r"APGD-CE \#2 0" in report.to_latex()
    assert "#" not in _LATEX_ESCAPES.sub("", report.to_latex())


# -- RobustBench ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("bounds", "eps", "shown"),
    [
        ((0.0, 255.0), 16.0, "16/255"),
        ((0.0, 255.0), 8.0, "8/255"),
        ((0.0, 1.0), 8 / 255, "8/255"),
        ((-1.0, 1.0), 16 / 255, "8/255"),
        ((-1.0, 1.0), 0.25, "0.125"),
        ((0.0, 1.0), 0.03, "0.03"),
        ((0.0, 255.0), 0.5, f"{0.5 / 255:g}"),
    ],
)
def test_robustbench_eps_is_in_its_own_units_whatever_the_box(bounds, eps, shown):
    metadata = {"bounds": list(bounds), "attacks": []}
    report = _report(metadata=metadata, eps=(0.0, eps, 2 * eps))
    entry = report.to_robustbench(eps)
    assert entry["eps"] == shown
    again = RobustnessReport.from_dict(json.loads(report.to_json()))
    assert again.to_robustbench(eps) == entry


def test_robustbench_needs_the_box():
    report = _report(metadata={})
    with pytest.raises(ValueError, match="box"):
        report.to_robustbench()


def _records(attacks) -> list:
    from signattack.evaluation.standard import attack_record

    return json.loads(json.dumps([attack_record(attack) for attack in attacks]))


@pytest.mark.parametrize(
    ("suite", "randomized", "autoattack"),
    [
        (standard_attacks(), False, True),
        (standard_attacks(bounds=(0, 1), seed=7), False, True),
        (standard_attacks().randomized, True, True),  # the preset switched to its rand version
        (rand_attacks(), False, False),  # rand on a model found deterministic
        (standard_attacks(2, queries=10), False, False),
        (standard_attacks(queries=4999), False, False),
        ([*standard_attacks()][:3], False, False),  # without Square
        ([APGD(0, 100, seed=0)], False, False),
        (list(reversed(standard_attacks())), False, False),
    ],
)
def test_only_the_published_standard_suite_fills_autoattack_acc(suite, randomized, autoattack):
    box = list(suite[0].bounds)
    metadata = {"bounds": box, "attacks": _records(suite), "randomized_model": randomized}
    report = _report(metadata=metadata, eps=(0.0, 0.1, 0.2))
    for read in (report, RobustnessReport.from_dict(json.loads(report.to_json()))):
        entry = read.to_robustbench()
        assert ("autoattack_acc" in entry) is autoattack
        assert ("robust_acc" in entry) is not autoattack
        accuracy = entry["autoattack_acc" if autoattack else "robust_acc"]
        assert accuracy == f"{100 * report.robust_accuracy[0.2]:.2f}"
        if not autoattack:
            assert entry["robust_acc_attacks"] == report.attack
            assert "not AutoAttack's standard suite" in entry["evaluation"]


def test_a_real_evaluation_with_the_published_preset_is_an_autoattack_entry():
    """On a linear model every sample falls to APGD-CE at a radius this large, so the
    preset's costly members have nothing left to attack."""
    rng = np.random.default_rng(0)
    model = LinearClassifier(rng.normal(size=(10, 6)), rng.normal(size=10))
    x = rng.uniform(0, 255, size=(4, 6))
    y = model(x).argmax(1)
    report = evaluate(model, [(x, y)], standard_attacks(), [128.0])
    entry = report.to_robustbench()
    assert entry["eps"] == "128/255"
    assert entry["autoattack_acc"] == f"{100 * report.robust_accuracy[128.0]:.2f}"
    quick = evaluate(model, [(x, y)], standard_attacks(2, queries=10), [128.0])
    assert "autoattack_acc" not in quick.to_robustbench()


def test_markdown_leaves_no_mathematics_to_a_renderer():
    report = _report(("Evil $x$", "Square"))
    for form in ("markdown", "notebook"):
        text = EXPORTS[form](report)
        assert re.search(r"(?<!\\)\$", text) is None, text


def test_every_attack_keeps_its_own_count_whatever_it_calls_itself():
    import dataclasses

    import torch

    from signattack import FGSM

    @dataclasses.dataclass(frozen=True)
    class Renamed(FGSM):
        @property
        def name(self) -> str:
            return "FGSM #3"  # the name the library would give the third FGSM

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(16, 3)).eval()
    x = (torch.rand(8, 1, 4, 4) * 255).round()
    with torch.no_grad():
        y = model(x).argmax(1)
    report = evaluate(model, [(x, y)], [Renamed(0), FGSM(0), FGSM(0)], [255.0], progress=False)
    counts = report.broken_by[255.0]
    assert len(counts) == 3
    lost = sum(report.clean_correct) - sum(report.robust_correct[255.0])
    assert sum(counts.values()) == lost
    assert counts["FGSM #3"] == lost  # the first attack broke everything it could
