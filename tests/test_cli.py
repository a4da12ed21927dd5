"""``python -m signattack evaluate``: every mistake is one line naming the flag, status 2."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest

from signattack.cli import main

BASE = ["evaluate", "--model", "signattack.models:DigitsCNN", "--data", "digits", "--eps", "4"]


def _status(arguments):
    """The exit status, whether main returns it or argparse exits with it."""
    try:
        return main(arguments)
    except SystemExit as exit:
        return exit.code


def _replace(arguments, flag, value):
    arguments = list(arguments)
    if flag in arguments:
        arguments[arguments.index(flag) + 1] = value
    else:
        arguments += [flag, value]
    return arguments


@pytest.fixture
def files(tmp_path):
    corrupt = tmp_path / "corrupt.pt"
    corrupt.write_bytes(b"PK\x03\x04 not really a zip")
    not_npz = tmp_path / "data.npz"
    not_npz.write_text("hello")
    unlabeled = tmp_path / "unlabeled.npz"
    np.savez(unlabeled, x=np.zeros((3, 1, 8, 8)))
    progress = tmp_path / "progress.json"
    progress.write_text("{ truncated")
    return {"corrupt": corrupt, "not_npz": not_npz, "unlabeled": unlabeled, "progress": progress}


PRESETS_OR_NAMES = r"--attacks must be a preset \(standard, fast, gradient, rand\) or comma"

CASES = [
    ("--weights", "{tmp}/missing.pt", "--weights must be a file of saved weights"),
    ("--weights", "{corrupt}", "--weights .*corrupt.pt is not a file of weights"),
    ("--checkpoint", "{corrupt}", "--weights .*corrupt.pt is not a file of weights"),
    ("--model-arg", "classes", "--model-arg must look like NAME=VALUE, got 'classes'"),
    ("--input-range", "1,0", "--input-range must be finite lower,upper with lower < upper"),
    ("--data", "npz:{tmp}/missing.npz", "--data npz:.*missing.npz: no such file"),
    ("--data", "npz:{not_npz}", "--data npz:.*data.npz is not a readable .npz file"),
    ("--data", "npz:{unlabeled}", "the file must hold arrays named x and y"),
    ("--data", "cifar10:{tmp}/nowhere", "--data cifar10:.*nowhere: no CIFAR-10 batch files"),
    ("--data", "mnist", "--data must be cifar10:DIR, digits or npz:FILE, got 'mnist'"),
    ("--eps", "", "--eps must be comma-separated numbers, got ''"),
    ("--eps", "4,,8", "--eps must be comma-separated numbers, got '4,,8'"),
    ("--eps", "four", "--eps must be comma-separated numbers, got 'four'"),
    ("--eps", "-1", "--eps must be distinct finite radii >= 0, got '-1'"),
    ("--eps", "nan", "--eps must be distinct finite radii >= 0, got 'nan'"),
    ("--bounds", "0", "--bounds must be 2 comma-separated numbers, got '0'"),
    ("--bounds", "1,0", "--bounds must be finite lower,upper with lower < upper, got '1,0'"),
    ("--bounds", "a,b", "--bounds must be 2 comma-separated numbers, got 'a,b'"),
    ("--device", "tpu9", "--device must be a device this machine has .* got 'tpu9'"),
    ("--model", "signattack.data:write_cifar10", "--model .* takes .* pass its arguments with"),
    ("--model", "signattack.models", "--model must look like module:factory"),
    ("--model", "no.such.module:f", "--model 'no.such.module:f' could not be loaded"),
    ("--model", "signattack.models:CIFAR10_MEAN", "--model .* must name a callable"),
    ("--batch-size", "0", "argument --batch-size: expected an integer >= 1, got '0'"),
    ("--batch-size", "-5", "argument --batch-size: expected an integer >= 1, got '-5'"),
    ("--limit", "-1", "argument --limit: expected an integer >= 1, got '-1'"),
    ("--steps", "1.5", "argument --steps: expected an integer, got '1.5'"),
    ("--step-size", "-1", "--step-size must be a finite number >= 0, got -1.0"),
    ("--resume-file", "{progress}", "checkpoint .*progress.json is not a signattack checkpoint"),
    ("--resume-file", "{tmp}", "--resume-file must be a file, got the folder"),
    ("--limit", "0", "argument --limit: expected an integer >= 1, got '0'"),
    (
        "--attacks",
        "apgd,pgd",
        r"--attacks must be a preset \(standard, fast, gradient, rand\) or comma",
    ),
    ("--attacks", "", r"--attacks must be a preset \(standard, fast, gradient, rand\) or comma"),
]


@pytest.mark.parametrize(("flag", "value", "message"), CASES)
def test_each_mistake_is_one_line_naming_the_flag_with_status_2(
    tmp_path, files, capsys, flag, value, message
):
    value = value.format(tmp=tmp_path, **files)
    assert _status(_replace(BASE, flag, value)) == 2
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1, captured.err
    assert lines[0].startswith("signattack evaluate: error: ")
    assert re.search(message, lines[0]), lines[0]
    assert "Traceback" not in captured.err
    assert captured.out == ""


def test_a_missing_required_flag_is_one_line_too(capsys):
    assert _status(["evaluate", "--model", "signattack.models:DigitsCNN", "--data", "digits"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [
        "signattack evaluate: error: the following arguments are required: --eps "
        "(--help lists the options)"
    ]


def test_debug_shows_the_traceback(tmp_path):
    progress = tmp_path / "progress.json"
    progress.write_text("")
    with pytest.raises(ValueError, match="is not a signattack checkpoint"):
        main([*BASE, "--limit", "8", "--resume-file", str(progress), "--debug"])


def test_labels_outside_the_model_are_a_one_line_error(tmp_path, capsys):
    data = tmp_path / "data.npz"
    np.savez(data, x=np.full((4, 1, 8, 8), 100, np.float32), y=np.array([1, 2, 3, 10]))
    status = main(_replace(BASE, "--data", f"npz:{data}"))
    assert status == 2
    err = capsys.readouterr().err
    assert err.startswith("signattack evaluate: error: y must hold labels < 10")


def test_a_good_run_still_works_and_writes_its_report(tmp_path, capsys):
    report = tmp_path / "report.json"
    assert main([*BASE, "--limit", "16", "--steps", "2", "--report", str(report)]) == 0
    assert json.loads(report.read_text())["samples"] == 16
    assert "clean" in capsys.readouterr().out


def test_the_standard_attacks_run_in_order_and_are_reported(tmp_path, capsys):
    report = tmp_path / "report.json"
    arguments = [*BASE, "--limit", "24", "--steps", "2", "--queries", "30"]
    assert main([*arguments, "--attacks", "standard", "--report", str(report)]) == 0
    written = json.loads(report.read_text())
    names = [
        "APGD-CE(steps=2, seed=0, early_stop=True)",
        "APGD-T(steps=2, seed=0, early_stop=True)",
        "FAB-T(steps=2, seed=0, minimal=False)",
        "Square(queries=30, seed=0)",
    ]
    assert written["attack"] == " + ".join(names)
    counts = written["broken_by"]["4.0"]
    assert list(counts) == ["APGD-CE", "APGD-T", "FAB-T", "Square"]
    described = [attack["description"] for attack in written["metadata"]["attacks"]]
    assert described == names
    robust = sum(written["robust_correct"]["4.0"])
    assert sum(counts.values()) == written["attacked"]["4.0"] - robust
    out = capsys.readouterr().out
    assert "broken by" in out
    expected = "attacks (standard preset): APGD-CE (2 steps), APGD-T (2 steps), FAB-T (2 steps), "
    assert expected + "Square (30" in out


@pytest.mark.parametrize(
    ("preset", "expected"),
    [
        (
            "standard",
            "APGD-CE (100 steps), APGD-T (100 steps), FAB-T (100 steps), Square (5000 queries)",
        ),
        ("gradient", "APGD-CE (100 steps), APGD-T (100 steps)"),
        (
            "rand",
            "APGD-CE (100 steps, EOT over 20 passes), APGD-DLR (100 steps, EOT over 20 passes)",
        ),
    ],
)
def test_a_preset_means_its_published_settings(preset, expected):
    from signattack._cli_attacks import selected_attacks as _attacks
    from signattack._cli_attacks import what_ran as _what_ran
    from signattack.cli import _parser
    from signattack.evaluation import gradient_attacks, rand_attacks, standard_attacks

    args = _parser().parse_args(
        ["evaluate", "--model", "m:f", "--data", "digits", "--eps", "8", "--attacks", preset]
    )
    attacks = _attacks(args, (0.0, 255.0))
    library = {"standard": standard_attacks, "gradient": gradient_attacks, "rand": rand_attacks}
    assert attacks == library[preset](), "the library's preset, with its defaults"
    assert _what_ran(attacks, args, randomized=False) == f"attacks ({preset} preset): {expected}"
    single = _parser().parse_args(
        ["evaluate", "--model", "m:f", "--data", "digits", "--eps", "8", "--attack", "iterated"]
    )
    assert _attacks(single, (0.0, 255.0))[0].steps == 10


FACTORY = """
import torch

SEEN = []


class Net(torch.nn.Module):
    def __init__(self, classes, interrupt_at=None):
        super().__init__()
        self.linear = torch.nn.Linear(64, classes)
        self.calls, self.interrupt_at = 0, interrupt_at

    def forward(self, x):
        self.calls += 1
        if self.calls == self.interrupt_at:
            raise KeyboardInterrupt
        SEEN.append(float(x.detach().max()))
        return self.linear(x.flatten(1))


def make(classes=10, interrupt_at=None):
    torch.manual_seed(0)
    return Net(classes, interrupt_at)
"""


@pytest.fixture
def own_model(tmp_path, monkeypatch):
    """A model module in the current folder, which a console script cannot see by itself."""
    import sys

    (tmp_path / "mynet.py").write_text(FACTORY)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p not in ("", str(tmp_path))])
    monkeypatch.delitem(sys.modules, "mynet", raising=False)
    return ["evaluate", "--model", "mynet:make", "--data", "digits", "--eps", "4"]


def test_a_model_of_the_current_folder_with_arguments(own_model, capsys):
    import sys

    assert main([*own_model, "--limit", "8", "--steps", "1", "--model-arg", "classes=10"]) == 0
    assert "mynet" in sys.modules
    assert "warning" not in capsys.readouterr().err


def test_a_model_with_many_more_outputs_than_classes_is_warned_about(own_model, capsys):
    assert main([*own_model, "--limit", "100", "--steps", "1", "--model-arg", "classes=1000"]) == 0
    err = capsys.readouterr().err
    assert "the model has 1000 outputs but the labels use 10 classes" in err
    assert "--model-arg num_classes=10" in err


def test_input_range_feeds_pixels_to_a_model_of_the_unit_box(own_model):
    import sys

    assert main([*own_model, "--limit", "8", "--steps", "1", "--input-range", "0,1"]) == 0
    seen = sys.modules["mynet"].SEEN
    assert seen
    assert max(seen) <= 1.0 + 1e-6


def test_weights_saved_from_a_wrapper_get_a_short_reason(tmp_path, capsys):
    import torch

    from signattack.models import DigitsCNN

    state = {f"module.{k}": v for k, v in DigitsCNN().state_dict().items()}
    state["module.extra"] = torch.zeros(1)  # one entry the model lacks: nothing to strip
    weights = tmp_path / "wrapped.pt"
    torch.save(state, weights)
    assert _status([*BASE, "--weights", str(weights)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert len(err) < 500
    assert "starts with 'module.'" in err
    assert f"{len(state)} of the file's {len(state)} entries are unknown" in err


def test_ctrl_c_is_one_line_that_says_how_to_resume(own_model, tmp_path, capsys):
    resume = tmp_path / "progress.json"
    arguments = [*own_model, "--batch-size", "50", "--steps", "1", "--resume-file", str(resume)]
    status = main([*arguments, "--model-arg", "interrupt_at=12"])
    assert status == 130
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [
        f"signattack evaluate: interrupted; the finished batches are in {resume}: run the "
        "same command to resume"
    ]
    assert main(arguments) == 0
    out = capsys.readouterr().out
    assert re.search(r"resumed: [1-9]\d* finished batches taken from", out), out


def test_the_report_as_a_table_and_a_robustbench_entry(tmp_path, capsys):
    table, entry = tmp_path / "table.md", tmp_path / "entry.json"
    arguments = [*BASE, "--limit", "16", "--steps", "2", "--report", str(table)]
    assert main([*arguments, "--robustbench", str(entry)]) == 0
    assert table.read_text().startswith("| eps | accuracy | 95% CI |")
    written = json.loads(entry.read_text())
    assert written["eps"] == "4/255"  # RobustBench's units whatever the box
    assert "autoattack_acc" not in written
    assert written["n_examples"] == 16
    assert "not AutoAttack's own code" in written["evaluation"]


@pytest.mark.slow
def test_a_researchers_resnet18_on_cifar_format_data_end_to_end(tmp_path, capsys):
    """As a researcher would: torchvision's ResNet-18 built for 10 classes, trained on
    [0, 1], evaluated on CIFAR-format 0-255 data; the table, the RobustBench entry and the
    adversarial examples written, then verified."""
    pytest.importorskip("torchvision")
    import torch

    from signattack.data import write_synthetic_cifar10

    write_synthetic_cifar10(tmp_path / "data", train_size=10, test_size=12)
    torch.manual_seed(0)
    import torchvision

    weights = tmp_path / "resnet18.pt"
    torch.save(torchvision.models.resnet18(num_classes=10).state_dict(), weights)
    model = [
        "--model", "torchvision.models:resnet18", "--model-arg", "num_classes=10",
        "--weights", str(weights), "--input-range", "0,1",
    ]  # fmt: skip
    table, entry, adversarial = tmp_path / "t.md", tmp_path / "rb.json", tmp_path / "x.pt"
    arguments = ["evaluate", *model, "--data", f"cifar10:{tmp_path / 'data'}", "--eps", "2,8"]
    outputs = [
        "--report",
        str(table),
        "--robustbench",
        str(entry),
        "--adversarial",
        str(adversarial),
    ]
    assert main([*arguments, "--steps", "2", *outputs]) == 0
    captured = capsys.readouterr()
    assert "warning" not in captured.err
    assert "12 samples" in captured.out
    assert json.loads(entry.read_text())["n_examples"] == 12
    assert table.read_text().count("\n") == 2 + 3 + 2  # and the stand-in's two lines
    assert main(["verify", *model, "--adversarial", str(adversarial)]) == 0
    assert capsys.readouterr().out.splitlines()[-1].startswith("verified")


SETTINGS_NO_ATTACK_TAKES = [
    (
        ["--attacks", "square", "--eot", "5"],
        r"--eot 5 applies to none of the selected attacks \(Square\)",
    ),
    (["--attacks", "fab-t,square", "--eot", "3"], r"--eot 3 applies to none .*\(FAB-T, Square\)"),
    (["--attack", "fgsm", "--steps", "3"], r"--steps 3 applies to none .*\(FGSM\)"),
    (["--attacks", "apgd-ce", "--loss", "margin"], r"--loss margin applies to none .*\(APGD-CE\)"),
    (["--attacks", "iterated", "--queries", "9"], r"--queries 9 applies to none"),
    (["--attacks", "square", "--early-stop"], r"--early-stop applies to none .*\(Square\)"),
]


@pytest.mark.parametrize(("extra", "message"), SETTINGS_NO_ATTACK_TAKES)
def test_a_setting_no_selected_attack_takes_is_one_line_naming_it(capsys, extra, message):
    assert _status([*BASE, "--limit", "4", *extra]) == 2
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1, captured.err
    assert lines[0].startswith("signattack evaluate: error: ")
    assert re.search(message, lines[0]), lines[0]
    assert captured.out == ""


def test_the_first_line_says_which_attacks_eot_applies_to(capsys):
    arguments = [*BASE, "--limit", "4", "--steps", "1", "--queries", "3", "--eot", "2"]
    assert main([*arguments, "--attacks", "apgd-ce,square"]) == 0
    first = capsys.readouterr().out.splitlines()[0]
    assert first == (
        "attacks: APGD-CE (1 step, EOT over 2 passes), Square (3 queries); "
        "--eot 2 applies to APGD-CE only"
    )


RANDOMIZED = """
import torch


class Noisy(torch.nn.Module):
    '''A linear model with input noise in every mode: randomized, as a defense may be.'''

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.linear = torch.nn.Linear(64, 10)

    def forward(self, x):
        return self.linear(x.flatten(1) + 50 * torch.randn_like(x.flatten(1)))


class _NoGradient(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        return x.clone()

    @staticmethod
    def backward(ctx, grad):
        raise RuntimeError("this model has no usable gradient")


class Opaque(torch.nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.linear = torch.nn.Linear(64, 10)

    def forward(self, x):
        return self.linear(_NoGradient.apply(x).flatten(1))
"""


@pytest.fixture
def special_models(tmp_path, monkeypatch):
    import sys

    (tmp_path / "special_models.py").write_text(RANDOMIZED)
    monkeypatch.chdir(tmp_path)
    monkeypatch.delitem(sys.modules, "special_models", raising=False)
    return ["evaluate", "--data", "digits", "--eps", "4", "--limit", "6", "--batch-size", "6"]


def test_the_standard_preset_switches_to_its_rand_version_on_a_randomized_model(
    special_models, tmp_path, capsys
):
    report = tmp_path / "report.json"
    arguments = [*special_models, "--model", "special_models:Noisy", "--attacks", "standard"]
    extra = ["--steps", "1", "--queries", "3", "--eot", "2", "--report", str(report)]
    assert main([*arguments, *extra]) == 0
    first = capsys.readouterr().out.splitlines()[0]
    assert first == (
        "attacks (standard preset, its rand version: the model is randomized): "
        "APGD-CE (1 step, EOT over 2 passes), APGD-DLR (1 step, EOT over 2 passes)"
    )
    written = json.loads(report.read_text())
    assert written["metadata"]["randomized_model"] is True
    assert [a["description"] for a in written["metadata"]["attacks"]] == [
        "APGD-CE(steps=1, seed=0, early_stop=True, eot=2)",
        "APGD-DLR(steps=1, loss='dlr', seed=0, early_stop=True, eot=2)",
    ]


def test_square_runs_on_a_model_without_a_usable_gradient(special_models, capsys):
    arguments = [*special_models, "--model", "special_models:Opaque", "--attacks", "square"]
    assert main([*arguments, "--queries", "3", "--debug"]) == 0
    assert capsys.readouterr().out.splitlines()[0] == "attacks: Square (3 queries)"
