"""``evaluate --attacks fast --audit SHARE [--no-escalate]``: the fast preset's audit and its
escalation from the command line, and every mistake in their flags as one line, status 2."""

from __future__ import annotations

import json
import re
import sys

import pytest
import torch

from signattack.cli import main

BASE = ["evaluate", "--model", "signattack.models:DigitsCNN", "--data", "digits", "--eps", "4"]

ROUNDED = """
import torch
from sklearn.datasets import load_digits


class Rounded(torch.nn.Module):
    '''A nearest-class-mean classifier of the digits behind a rounding step: no input
    gradient, so the gradient attacks fail and the Square probe breaks samples.'''

    def __init__(self):
        super().__init__()
        digits = load_digits()
        x = torch.tensor(digits.data[:600] * 255 / 16, dtype=torch.float32)
        y = torch.tensor(digits.target[:600])
        self.register_buffer("means", torch.stack([x[y == c].mean(0) for c in range(10)]))

    def forward(self, x):
        q = torch.round(x.flatten(1) / 32) * 32
        return q @ self.means.T / 1000 - (self.means**2).sum(1) / 2000
"""


def _status(arguments):
    """The exit status, whether main returns it or argparse exits with it."""
    try:
        return main(arguments)
    except SystemExit as exit:
        return exit.code


@pytest.fixture
def rounded(tmp_path, monkeypatch):
    """The command up to the attacks, with the rounded model of the current folder."""
    (tmp_path / "audit_models.py").write_text(ROUNDED)
    monkeypatch.chdir(tmp_path)
    monkeypatch.delitem(sys.modules, "audit_models", raising=False)
    return [
        *["evaluate", "--model", "audit_models:Rounded", "--data", "digits", "--eps", "32"],
        *["--limit", "24", "--batch-size", "10", "--attacks", "fast", "--steps", "1"],
        *["--queries", "20", "--seed", "3", "--quiet"],
    ]


def _chosen(share, seed):
    """The samples of the command's data that an audit of ``share`` and ``seed`` picks."""
    from signattack._cli_data import load_data
    from signattack.evaluation._audit import chosen

    x, y = load_data("digits", "test", 24)
    return chosen(torch.as_tensor(x).float(), torch.as_tensor(y).long(), share, seed)


def test_the_audit_and_the_escalation_reach_the_report(rounded, tmp_path, capsys):
    path = tmp_path / "report.json"
    assert main([*rounded, "--audit", "1/2", "--report", str(path)]) == 0
    out = capsys.readouterr().out
    report = json.loads(path.read_text())
    record = report["metadata"]["audit"]
    assert (record["share"], record["seed"], record["escalate"]) == (0.5, 3, True)
    # The reference is the standard preset with the same --steps, --queries and --seed.
    assert record["reference"] == (
        "APGD-CE(steps=1, seed=3, early_stop=True) + APGD-T(steps=1, seed=3, early_stop=True) + "
        "FAB-T(steps=1, seed=3, minimal=False) + Square(queries=20, seed=3)"
    )
    entry = record["radii"]["32.0"]
    assert entry["audited"] == len(_chosen(0.5, 3)) > 0
    assert entry["probe_broke"] + entry["missed"] > 0, "the model masks its gradients"
    assert entry["escalation"] == "ran"
    escalated = report["broken_by"]["32.0"]["escalated to reference"]
    robust = sum(report["robust_correct"]["32.0"])
    assert robust + sum(report["broken_by"]["32.0"].values()) == report["attacked"]["32.0"]
    assert out.splitlines()[0].endswith(
        "Square probe (20 queries); 0.5 of the samples audited (reference: the standard preset)"
    )
    assert f"audit at eps 32: audited {entry['audited']}, missed {entry['missed']}" in out
    assert f"escalated to reference {escalated}" in out

    # --no-escalate: the probe alone decides, and the table says what would have run.
    assert main([*rounded, "--audit", "0.5", "--no-escalate", "--report", str(path)]) == 0
    out = capsys.readouterr().out
    off = json.loads(path.read_text())
    entry_off = off["metadata"]["audit"]["radii"]["32.0"]
    assert off["metadata"]["audit"]["escalate"] is False
    assert entry_off["escalation"] == "off"
    assert entry_off["handed"] == entry["handed"] > 0
    assert "escalated to reference" not in off["broken_by"]["32.0"]
    assert sum(off["robust_correct"]["32.0"]) == robust + escalated
    assert "escalation off (reference: the standard preset)" in out.splitlines()[0]
    assert f"escalation off on {entry['handed']} samples" in out
    assert "--no-escalate turned it off: run without --no-escalate" in out
    assert "escalate=True" not in out, "the library's advice said in flags"


def test_the_flags_build_the_fast_preset_with_its_audit():
    from signattack._cli_attacks import selected_attacks, what_ran
    from signattack.cli import _parser
    from signattack.evaluation import fast_attacks, standard_attacks

    command = ["evaluate", "--model", "m:f", "--data", "digits", "--eps", "8", "--attacks", "fast"]
    args = _parser().parse_args([*command, "--audit", "1", "--seed", "2", "--queries", "40"])
    suite = selected_attacks(args, (0.0, 255.0))
    assert (suite.audit.share, suite.audit.seed, suite.audit.escalate) == (1.0, 2, True)
    assert suite.audit.reference == standard_attacks(seed=2, queries=40)
    assert list(suite) == list(fast_attacks(seed=2, queries=40, probe=40))
    assert what_ran(suite, args, randomized=True).endswith(
        "; neither audited nor escalated: the rand version has no audit"
    )
    plain = selected_attacks(_parser().parse_args(command), (0.0, 255.0))
    assert (plain.audit.share, plain.audit.escalate) == (None, True)
    assert what_ran(plain, _parser().parse_args(command), randomized=False) == (
        "attacks (fast preset): APGD-CE (100 steps), APGD-T (50 steps), "
        "APGD-T (boundary, 50 steps), Square probe (5000 queries)"
    )
    off = selected_attacks(_parser().parse_args([*command, "--no-escalate"]), (0.0, 255.0))
    assert (off.audit.share, off.audit.escalate) == (None, False)


SHARE = r"--audit must be a share of the samples in \(0, 1\] such as 0.1 or 1/10, got "

MISTAKES = [
    (["--attacks", "fast", "--audit", "0"], SHARE + "'0'$"),
    (["--attacks", "fast", "--audit", "-0.1"], SHARE + "'-0.1'$"),
    (["--attacks", "fast", "--audit", "1.5"], SHARE + "'1.5'$"),
    (["--attacks", "fast", "--audit", "nan"], SHARE + "'nan'$"),
    (["--attacks", "fast", "--audit", "inf"], SHARE + "'inf'$"),
    (["--attacks", "fast", "--audit", "tenth"], SHARE + "'tenth': 'tenth' is not a number"),
    (["--attacks", "fast", "--audit", "1/0"], SHARE + "'1/0': '1/0' divides by zero"),
    (["--attacks", "fast", "--audit", "0.1,0.2"], SHARE + "'0.1,0.2'$"),
    (["--audit", "0.1"], r"--audit 0.1 applies to none of the selected attacks \(IteratedSign\)"),
    (
        ["--attacks", "standard", "--audit", "0.1"],
        r"--audit 0.1 applies to none of the selected attacks \(APGD-CE, .*only --attacks fast",
    ),
    (["--attacks", "apgd-ce", "--no-escalate"], r"--no-escalate applies to none .*\(APGD-CE\)"),
    (["--attacks", "gradient", "--no-escalate"], r"--no-escalate applies to none .*fast"),
]


@pytest.mark.parametrize(("extra", "message"), MISTAKES)
def test_each_mistake_in_the_audits_flags_is_one_line_naming_it(capsys, extra, message):
    assert _status([*BASE, "--limit", "4", *extra]) == 2
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1, captured.err
    assert lines[0].startswith("signattack evaluate: error: ")
    assert re.search(message, lines[0]), lines[0]
    assert captured.out == ""
