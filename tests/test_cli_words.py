"""The command line speaks in flags: every warning of the library is one line with its advice
in flags, advice is only ever what the command line accepts, and tables are left as written."""

from __future__ import annotations

import io
import re
import warnings

import numpy as np
import pytest

from signattack.cli import main

DIGITS = ["evaluate", "--model", "signattack.models:DigitsCNN", "--data", "digits"]
QUICK = ["--limit", "4", "--batch-size", "2", "--steps", "1", "--quiet"]


def _run(arguments, capsys):
    try:
        status = main(arguments)
    except SystemExit as exit:
        status = exit.code
    captured = capsys.readouterr()
    return status, captured.out, captured.err


def _warnings(err):
    """The warning lines of standard error; none may be in Python's raw form."""
    assert "Warning:" not in err, err  # `file:line: UnitsWarning: ...` and its source line
    assert "raise SystemExit" not in err, err
    return [line for line in err.splitlines() if "warning" in line]


@pytest.fixture
def unit_data(tmp_path):
    """Digits-shaped images scaled to [0, 1], as many users have them."""
    rng = np.random.default_rng(0)
    path = tmp_path / "unit.npz"
    np.savez(path, x=rng.random((4, 1, 8, 8)).astype(np.float32), y=np.arange(4))
    return f"npz:{path}"


def test_a_units_warning_is_one_line_with_its_advice_in_flags(unit_data, capsys):
    arguments = [*DIGITS[:4], unit_data, "--eps", "4", *QUICK]
    status, _, err = _run(arguments, capsys)
    assert status == 0, err
    lines = _warnings(err)
    said = [line for line in lines if "x lies in [0, 1]" in line]
    assert len(said) == 1, err
    assert said[0].startswith("signattack evaluate: warning: x lies in [0, 1] but bounds are")
    assert "--bounds 0,1" in said[0], said[0]
    assert "--eps 8/255" in said[0], said[0]
    assert "bounds=(" not in said[0], said[0]
    assert "eps=" not in said[0], said[0]
    assert "filterwarnings" not in err


@pytest.mark.parametrize(
    ("model", "extra", "eps"),
    [("signattack.models:DigitsCNN", [], "300"), ("saturating:Sure", ["--bounds", "0,1"], "2")],
)
def test_a_radius_wider_than_the_box_is_one_line_in_flags(
    saturated, unit_data, capsys, model, extra, eps
):
    source = "digits" if extra == [] else unit_data
    arguments = ["evaluate", "--model", model, "--data", source, "--eps", eps, *extra, *QUICK]
    status, _, err = _run(arguments, capsys)
    assert status == 0, err
    said = [line for line in _warnings(err) if "larger than the whole box" in line]
    assert len(said) == 1, err  # two batches, one line
    assert said[0].startswith(f"signattack evaluate: warning: eps = {eps} is larger")
    assert "--eps 8/255" in said[0], said[0]
    assert "--bounds 0,1" in said[0], said[0]
    assert "filterwarnings" not in said[0], said[0]
    assert "eps=" not in said[0], said[0]


def test_radii_of_the_models_range_on_pixels_say_what_to_type(capsys):
    arguments = [*DIGITS, "--eps", "2/255,8/255", "--input-range", "0,1", *QUICK]
    status, _, err = _run(arguments, capsys)
    assert status == 0, err
    lines = _warnings(err)
    assert len(lines) == 1, err  # the library's warning of that radius is not repeated
    assert lines[0].startswith("signattack evaluate: warning: radii are in --bounds units [0, 255]")
    assert lines[0].endswith("RobustBench's 2/255,8/255 is --eps 2,8"), lines[0]


def test_radii_for_a_model_on_minus_one_to_one_read_as_robustbench_writes_them(capsys):
    arguments = [*DIGITS, "--eps", "8/255", "--input-range", "-1,1", *QUICK]
    status, out, err = _run(arguments, capsys)
    assert status == 0, err
    said = [line for line in _warnings(err) if "radii are in --bounds units" in line]
    assert len(said) == 1, err
    assert "not --input-range's [-1, 1]" in said[0]
    assert said[0].endswith("RobustBench's 8/255 is --eps 8"), said[0]  # as the report says
    assert "--eps 8 on [0, 255]" in out


def test_what_the_user_typed_is_quoted_as_typed(tmp_path, capsys, monkeypatch):
    folder = tmp_path / "runs" / "eps=8 bounds=(0, 1)"
    folder.mkdir(parents=True)
    monkeypatch.chdir(tmp_path)
    missing = "runs/eps=8 bounds=(0, 1)/test.npz"
    status, _, err = _run([*DIGITS[:4], f"npz:{missing}", "--eps", "8", *QUICK], capsys)
    assert status == 2
    assert missing in err, err
    assert "--eps 8 --bounds" not in err, err
    (folder / "adv.npz").write_text("garbage")
    status, _, err = _run(["verify", "runs/eps=8 bounds=(0, 1)/adv.npz"], capsys)
    assert status == 2
    assert "runs/eps=8 bounds=(0, 1)/adv.npz" in err, err


@pytest.mark.parametrize(
    "extra",
    [
        ["--eps", "8", "--input-range", "0,1"],
        ["--eps", "8/255", "--input-range", "1,256"],
        ["--eps", "0.5", "--input-range", "0,1"],  # half a level: meant, as the report judges
    ],
)
def test_radii_in_the_boxs_units_get_no_such_warning(capsys, extra):
    status, _, err = _run([*DIGITS, *extra, *QUICK], capsys)
    assert status == 0, err
    assert "radii are in --bounds units" not in err


SATURATED = """
import torch


class Sure(torch.nn.Module):
    '''Four classes, two told apart by the mean pixel with logits 1e5 apart: the softmax is
    exactly one-hot in float32, so the cross-entropy has no gradient and the margin has one.'''

    def forward(self, x):
        m = x.flatten(1).mean(1, keepdim=True)
        zero = torch.zeros_like(m)
        return 1000.0 * torch.cat([100 - m, m - 100, zero, zero], 1)
"""


@pytest.fixture
def saturated(tmp_path, monkeypatch):
    import sys

    (tmp_path / "saturating.py").write_text(SATURATED)
    data = tmp_path / "data.npz"
    x = np.concatenate([np.full((2, 1, 4, 4), 10.0), np.full((2, 1, 4, 4), 200.0)])
    np.savez(data, x=x.astype(np.float32), y=np.array([0, 0, 1, 1]))
    monkeypatch.chdir(tmp_path)
    monkeypatch.delitem(sys.modules, "saturating", raising=False)
    return ["evaluate", "--model", "saturating:Sure", "--data", f"npz:{data}", "--eps", "4"]


def _saturation(out):
    said = [line for line in out.splitlines() if "the softmax saturates" in line]
    assert len(said) == 1, out
    return said[0]


def _with(arguments, flag, value):
    if flag in arguments:
        index = arguments.index(flag)
        return [*arguments[: index + 1], value, *arguments[index + 2 :]]
    return [*arguments, flag, value]


@pytest.mark.parametrize(
    "chosen",
    [
        ["--steps", "1"],
        ["--attacks", "apgd-ce", "--steps", "1"],
        ["--attack", "fgsm"],
        ["--attack", "iterated", "--steps", "1", "--random-start", "--step-size", "2"],
    ],
)
def test_the_saturation_advice_is_a_command_line_that_is_accepted(saturated, capsys, chosen):
    from signattack._cli_attacks import selected_attacks
    from signattack.cli import _parser

    arguments = [*saturated, "--quiet", *chosen]
    status, out, err = _run(arguments, capsys)
    assert status == 0, err
    line = _saturation(out)
    advised = re.findall(
        r"(--loss margin|--attacks [a-z-]+(?:,[a-z-]+)*)"
        r"((?: without --[a-z-]+(?: and --[a-z-]+)*)?)",
        line,
    )
    assert advised, line
    assert "loss=" not in line, line
    assert "standard_attacks()" not in line, line
    for advice, without in advised:
        flag, value = advice.split(" ")
        changed = _without(_with(arguments, flag, value), re.findall(r"--[a-z-]+", without))
        args = _parser().parse_args(changed)
        assert selected_attacks(args, (0.0, 255.0)), advice  # accepted, not refused


def _without(arguments, flags):
    """``arguments`` without the ``flags`` the advice says to drop (and their values)."""
    kept, skip = [], False
    for token in arguments:
        if skip:
            skip = False
            continue
        if token in flags:
            skip = token != "--random-start"  # the others take a value
            continue
        kept.append(token)
    return kept


@pytest.mark.parametrize("attacks", ["apgd-dlr", "apgd-ce,apgd-t"])
def test_attacks_that_already_climb_a_margin_are_not_told_to_switch(saturated, capsys, attacks):
    arguments = [*saturated, "--steps", "1", "--quiet", "--attacks", attacks]
    status, out, err = _run(arguments, capsys)
    assert status == 0, err
    line = _saturation(out)
    name = "APGD-DLR" if attacks == "apgd-dlr" else "APGD-T"
    assert f"{name} already climbs a loss that does not saturate" in line, line
    assert "--attacks apgd-dlr" not in line, line
    assert "--loss margin" not in line, line
    assert "Attack with a loss" not in line, line


def test_the_attacks_line_under_the_table_is_not_translated(capsys):
    arguments = [*DIGITS, "--eps", "4", *QUICK, "--attacks", "apgd-dlr"]
    status, out, err = _run(arguments, capsys)
    assert status == 0, err
    footer = [line for line in out.splitlines() if line.startswith("attacks: ")]
    assert footer, out
    assert all("--" not in line for line in footer), footer


def test_each_warning_once_the_librarys_in_flags_anothers_in_its_usual_form():
    from signattack import UnitsWarning
    from signattack._cli_words import Words, warning_lines

    stream = io.StringIO()
    with warning_lines("verify", Words(), stream):
        for _ in range(3):
            warnings.warn("a radius: pass bounds=(-1, 1) and eps=0.5", UnitsWarning, stacklevel=1)
            warnings.warn("something of another library", UserWarning, stacklevel=1)
    lines = stream.getvalue().splitlines()
    assert lines[0] == "signattack verify: warning: a radius: pass --bounds -1,1 and --eps 0.5"
    others = [line for line in lines if "UserWarning: something of another library" in line]
    assert len(others) == 1, lines
    assert "UserWarning" in others[0], lines
    assert sum("warning: a radius" in line for line in lines) == 1, lines


@pytest.mark.parametrize(
    ("python", "flags"),
    [
        ("need bounds=(0, 1) and eps=8/255 for 8 levels", "need --bounds 0,1 and --eps 8/255"),
        ("eps = 300 is larger; use eps=2.5e-1", "eps = 300 is larger; use --eps 2.5e-1"),
        (
            'x; if the box is meant, silence this with warnings.filterwarnings("ignore", '
            "category=signattack.UnitsWarning)",
            "x",
        ),
        # prose with apostrophes is no quote; a full stop ends advice
        (
            "the box's units (eps=0.5 for RobustBench's L2)",
            "the box's units (--eps 0.5 for RobustBench's L2)",
        ),
        ("pass bounds=(0, 1).", "pass --bounds 0,1."),
        ("use loss='margin'.", "use --loss margin."),
        # quoted text and paths stay as they came
        (
            "file 'standard_attacks() notes.txt' missing",
            "file 'standard_attacks() notes.txt' missing",
        ),
        ("file \"loss='margin'\" missing", "file \"loss='margin'\" missing"),
        ("npz:eps=8 and /data/eps=8 kept", "npz:eps=8 and /data/eps=8 kept"),
    ],
)
def test_python_advice_in_flags(python, flags):
    from signattack._cli_words import Words

    assert Words()(python).startswith(flags)
    assert "filterwarnings" not in Words()(python)
