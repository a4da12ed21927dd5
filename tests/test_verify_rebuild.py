"""``signattack verify FILE`` rebuilds the model from the flags the export records; outputs
made on the synthetic CIFAR-10 stand-in say so."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from signattack import FGSM
from signattack.cli import main
from signattack.evaluation import RobustnessReport, evaluate, load_adversarial

FACTORY = """
import torch


class Net(torch.nn.Module):
    def __init__(self, features, classes):
        super().__init__()
        self.linear = torch.nn.Linear(features, classes)

    def forward(self, x):
        return self.linear(x.flatten(1))


def make(features=3072, classes=10):
    torch.manual_seed(0)
    return Net(features, classes)
"""


@pytest.fixture
def folder(tmp_path, monkeypatch):
    """A model module and its weights in the current folder, and the CIFAR-10 stand-in."""
    from signattack.data import write_synthetic_cifar10

    (tmp_path / "recnet.py").write_text(FACTORY)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p not in ("", str(tmp_path))])
    monkeypatch.delitem(sys.modules, "recnet", raising=False)
    torch.manual_seed(1)
    net = torch.nn.Linear(3072, 10)
    torch.save({f"linear.{k}": v for k, v in net.state_dict().items()}, tmp_path / "w.pt")
    write_synthetic_cifar10(tmp_path / "data", train_size=10, test_size=6)
    return tmp_path


MODEL = ["--model", "recnet:make", "--model-arg", "classes=10", "--weights", "w.pt"]


def _evaluate(folder, data, *extra):
    arguments = ["evaluate", *MODEL, "--input-range", "0,1", "--data", data, "--eps", "2,8"]
    return main([*arguments, "--steps", "1", "--quiet", *extra])


def _status(arguments):
    try:
        return main(arguments)
    except SystemExit as exit:
        return exit.code


def test_verify_rebuilds_the_model_from_the_export_alone(folder, capsys):
    export = folder / "x.npz"
    assert _evaluate(folder, "cifar10:data", "--adversarial", str(export)) == 0
    capsys.readouterr()
    command = load_adversarial(export).record["command"]
    assert command["model"] == "recnet:make"
    assert command["model_arg"] == ["classes=10"]
    assert command["input_range"] == "0,1"
    assert command["eps"] == "2,8"
    assert command["data"]["split"] == "test"
    assert len(command["weights_sha256"]) == 64
    assert main(["verify", str(export)]) == 0
    captured = capsys.readouterr()
    assert captured.out.splitlines()[-1].startswith("verified")
    assert "warning: the model built" not in captured.err
    # the same flags as recorded are accepted, the weights by content wherever they lie
    (folder / "w.pt").rename(folder / "moved.pt")
    assert main(["verify", str(export), "--weights", "moved.pt", "--input-range", "0.0,1"]) == 0


@pytest.mark.parametrize(
    ("flags", "named"),
    [
        (["--input-range", "0,2"], "--input-range '0,2' differs from the evaluation's '0,1'"),
        (["--model-arg", "classes=11"], "--model-arg 'classes=11' differs from the evaluation's"),
        (["--mean", "0.5", "--std", "0.2"], "--mean '0.5' differs from the evaluation's (not"),
        (["--model", "recnet:other"], "--model 'recnet:other' differs from the evaluation's"),
    ],
)
def test_a_flag_that_differs_from_the_record_is_named_with_both_values(
    folder, capsys, flags, named
):
    export = folder / "x.npz"
    assert _evaluate(folder, "cifar10:data", "--adversarial", str(export)) == 0
    capsys.readouterr()
    assert main(["verify", str(export), *flags]) == 2
    err = capsys.readouterr().err
    assert named in err, err
    assert len(err.strip().splitlines()) == 1


def test_changed_weights_are_refused_not_verified(folder, capsys):
    export = folder / "x.pt"
    assert _evaluate(folder, "cifar10:data", "--adversarial", str(export)) == 0
    torch.save({"linear.weight": torch.zeros(10, 3072), "linear.bias": torch.zeros(10)}, "w.pt")
    capsys.readouterr()
    assert main(["verify", str(export)]) == 2
    assert "changed since it ran" in capsys.readouterr().err
    (folder / "w.pt").unlink()
    assert main(["verify", str(export)]) == 2
    assert "are not there" in capsys.readouterr().err


def test_a_python_export_says_which_flags_to_give(tmp_path, capsys):
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(4, 3))
    x = torch.rand(5, 4) * 255
    export = tmp_path / "py.npz"
    evaluate(model, [(x, torch.tensor([0, 1, 2, 0, 1]))], FGSM(0), [2.0], adversarial=export)
    record = load_adversarial(export).record
    assert record["made_by"] == "python"
    assert "command" not in record
    assert record["model"]["module"] == "torch.nn.modules.container.Sequential"
    assert len(record["model"]["state"]) == 64
    assert record["bounds"] == [0.0, 255.0]
    assert record["norm"] == "linf"
    assert record["eps"] == [2.0]
    assert main(["verify", str(export)]) == 2
    err = capsys.readouterr().err
    assert "written by evaluate() in Python" in err
    assert "give --model module:factory" in err
    assert "Sequential" in err


def test_an_export_without_a_record_still_verifies_with_flags(folder, capsys):
    export = folder / "x.npz"
    assert _evaluate(folder, "cifar10:data", "--adversarial", str(export)) == 0
    with np.load(export) as stored:
        arrays = {key: stored[key] for key in stored.files if key != "record"}
    np.savez(export, **arrays)  # as exports were written before they held a record
    capsys.readouterr()
    assert main(["verify", str(export)]) == 2
    assert "records no model" in capsys.readouterr().err
    flags = [*MODEL, "--input-range", "0,1"]
    assert main(["verify", *flags, str(export)]) == 0
    assert main(["verify", *flags, "--adversarial", str(export)]) == 0


@pytest.mark.parametrize(
    ("factory", "arguments"),
    [
        ("os:system", ["command='touch ran'"]),
        # installed libraries whose functions run code or write files
        ("numpy:savetxt", ["fname='ran'", "X=['x']", "fmt='%s'"]),
        ("sympy:sympify", ["a=\"__import__('pathlib').Path('ran').touch()\""]),
    ],
)
def test_a_recorded_factory_that_builds_no_model_is_never_called(
    folder, capsys, factory, arguments
):
    export = folder / "x.npz"
    assert _evaluate(folder, "cifar10:data", "--adversarial", str(export)) == 0
    with np.load(export) as stored:
        arrays = {key: stored[key] for key in stored.files}
    record = json.loads(str(arrays["record"]))
    record["command"].update(model=factory, model_arg=arguments, weights=None)
    arrays["record"] = np.asarray(json.dumps(record))
    np.savez(export, **arrays)
    capsys.readouterr()
    assert main(["verify", str(export)]) == 2
    assert "verify calls a recorded factory only from" in capsys.readouterr().err
    assert not (folder / "ran").exists()
    assert not Path("ran").exists()


def test_every_output_on_the_stand_in_says_so(folder, capsys):
    from signattack.evaluation.report import STAND_IN

    report, entry, export = folder / "r.json", folder / "rb.json", folder / "x.npz"
    outputs = ["--report", str(report), "--robustbench", str(entry), "--adversarial", str(export)]
    assert _evaluate(folder, "cifar10:data", *outputs) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0] == f"warning: {STAND_IN}"
    read = RobustnessReport.from_dict(json.loads(report.read_text()))
    assert read.metadata["data"]["synthetic"] is True
    assert read.metadata["data"]["source"].startswith("cifar10:")
    for text in (read.table(), read.to_markdown(), read.to_latex(), repr(read)):
        assert "STAND-IN" in text.splitlines()[0], text
    written = json.loads(entry.read_text())
    assert written["synthetic_data"] is True
    assert written["warning"] == STAND_IN
    record = load_adversarial(export).record
    assert record["synthetic_data"] is True
    assert record["command"]["data"]["synthetic"] is True
    assert main(["verify", str(export)]) == 0
    assert capsys.readouterr().out.splitlines()[0] == f"warning: {STAND_IN}"


def test_real_data_is_not_called_a_stand_in(folder, capsys):
    from signattack.data import SYNTHETIC_MARK

    (folder / "data" / "cifar-10-batches-py" / SYNTHETIC_MARK).unlink()
    report, entry = folder / "r.md", folder / "rb.json"
    assert (
        _evaluate(folder, "cifar10:data", "--report", str(report), "--robustbench", str(entry)) == 0
    )
    assert "STAND-IN" not in capsys.readouterr().out
    assert report.read_text().startswith("| eps |")
    assert "synthetic_data" not in json.loads(entry.read_text())


def test_verify_from_another_folder_says_where_to_run_it(folder, capsys, monkeypatch):
    export = folder / "x.npz"
    assert _evaluate(folder, "cifar10:data", "--adversarial", str(export)) == 0
    elsewhere = folder / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    capsys.readouterr()
    assert main(["verify", str(export)]) == 2
    err = capsys.readouterr().err
    assert f"made in the folder {str(folder)!r}" in err, err
    assert "run verify from there" in err, err
    assert "No module named" not in err, err


def test_the_recorded_weights_given_again_after_a_change_are_called_changed(folder, capsys):
    export = folder / "x.npz"
    assert _evaluate(folder, "cifar10:data", "--adversarial", str(export)) == 0
    torch.save({"linear.weight": torch.zeros(10, 3072), "linear.bias": torch.zeros(10)}, "w.pt")
    capsys.readouterr()
    for given in ("w.pt", str(folder / "w.pt"), "./w.pt"):
        assert main(["verify", str(export), "--weights", given]) == 2
        err = capsys.readouterr().err
        assert "changed since it ran" in err, err
        assert "differs" not in err, err
