"""Edges of the first hour: numbers beyond the float range, negative channel means, checkpoints
saved by training scripts, factories that fail, advice said in flags, the stand-in named in
every CSV, and a CIFAR-10 fetch that leaves nothing behind."""

from __future__ import annotations

import csv
import hashlib
import io
import tarfile

import pytest
import torch

from signattack import data
from signattack.cli import main
from signattack.data import fetch_cifar10, write_synthetic_cifar10
from signattack.evaluation import RobustnessReport
from signattack.evaluation.report import STAND_IN

MODEL = ["--model", "torch.nn:Flatten", "--data", "digits"]


def _status(arguments: list[str]) -> int:
    try:
        return main(arguments)
    except SystemExit as exit:
        return int(exit.code or 0)


def _one_error(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    assert "Traceback" not in err, err
    assert "OverflowError" not in err, err
    return err


# -- numbers -------------------------------------------------------------------------------


@pytest.mark.parametrize("text", ["1e400", "0,1e400", "-1e400,0"])
def test_a_number_beyond_the_float_range_is_refused_not_read(text):
    from signattack._cli_args import UsageError, numbers

    with pytest.raises(UsageError, match=r"--eps must be .*beyond the range of a float"):
        numbers(text, "--eps")


@pytest.mark.parametrize(
    ("flags", "named"),
    [
        (["--eps", "1e400"], "--eps"),
        (["--eps", "8", "--bounds", "0,1e400"], "--bounds"),
        (["--eps", "8", "--input-range", "0,1e400"], "--input-range"),
        (["--eps", "8", "--mean", "1e400", "--std", "1"], "--mean"),
    ],
)
def test_a_flag_beyond_the_float_range_is_a_usage_error(capsys, flags, named):
    assert _status(["evaluate", *MODEL, *flags]) == 2
    err = _one_error(capsys)
    assert f"{named} must be" in err, err
    assert "'1e400'" in err, err


def test_a_negative_first_mean_is_a_value_not_a_flag(capsys):
    # The run stops at the radius (given after), so the means were read as values.
    flags = ["--mean", "-0.5,0.1", "--std", "-1,1", "--eps", "1e400"]
    assert _status(["evaluate", *MODEL, *flags]) == 2
    err = _one_error(capsys)
    assert "--eps must be" in err, err
    assert "expected one argument" not in err, err


def test_radii_that_print_the_same_are_refused(capsys):
    flags = ["--eps", "4/255,0.0156862745098039", "--bounds", "0,1"]
    assert _status(["evaluate", *MODEL, *flags]) == 2
    err = _one_error(capsys)
    assert "both print as 4/255" in err, err


# -- the model's flags ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("flags", "named"),
    [
        (["--model-arg", "in_features="], "--model-arg must look like NAME=VALUE"),
        (
            ["--model-arg", "in_features=3", "--model-arg", "in_features=4"],
            "names in_features twice",
        ),
        (
            ["--model-arg", "in_features=-1", "--model-arg", "out_features=2"],
            "--model 'torch.nn:Linear' failed when called with in_features=-1, out_features=2",
        ),
    ],
)
def test_factory_arguments_that_do_not_fit_name_the_flag(capsys, flags, named):
    arguments = ["evaluate", "--model", "torch.nn:Linear", "--data", "digits", "--eps", "8"]
    assert _status([*arguments, *flags]) == 2
    assert named in _one_error(capsys)


@pytest.mark.parametrize("spec", ["../nets:small", "/somewhere/nets:small", "nets.py:small"])
def test_a_model_given_as_a_path_names_the_flag_and_the_form(capsys, spec):
    assert _status(["evaluate", "--model", spec, "--data", "digits", "--eps", "8"]) == 2
    err = _one_error(capsys)
    assert f"--model {spec!r}" in err, err
    assert "module:factory" in err, err
    assert "relative import" not in err, err
    assert "No module named" not in err, err


# -- checkpoints ---------------------------------------------------------------------------


def _trained() -> dict[str, torch.Tensor]:
    torch.manual_seed(3)
    return dict(torch.nn.Linear(3, 2).state_dict())


def _fresh() -> torch.nn.Module:
    torch.manual_seed(4)
    return torch.nn.Linear(3, 2)


@pytest.mark.parametrize(
    "saved",
    [
        lambda sd: {"state_dict": {f"module.{k}": v for k, v in sd.items()}, "epoch": 3},
        lambda sd: {"state_dict": sd},
        lambda sd: {"model_state_dict": sd, "optimizer": {"lr": 0.1}},
        lambda sd: {f"_orig_mod.{k}": v for k, v in sd.items()},
        lambda sd: {"model": {f"module.model.{k}": v for k, v in sd.items()}},
    ],
)
def test_a_training_checkpoint_gives_its_weights(tmp_path, capsys, saved):
    from signattack._cli_weights import read_state

    weights = _trained()
    path = tmp_path / "w.pt"
    torch.save(saved(weights), path)
    model = _fresh()
    state = read_state(path, "m:f", model)
    model.load_state_dict(state)
    for key, value in weights.items():
        torch.testing.assert_close(model.state_dict()[key], value, rtol=0, atol=0)
    err = capsys.readouterr().err
    assert len(err.splitlines()) <= 1, err  # one line where a prefix was stripped


def test_a_checkpoint_that_does_not_fit_names_its_entry_and_prefix(tmp_path):
    from signattack._cli_args import UsageError
    from signattack._cli_weights import read_state

    weights = _trained()
    path = tmp_path / "w.pt"
    entries = {f"module.{k}": v for k, v in weights.items()} | {"module.extra": torch.zeros(1)}
    torch.save({"state_dict": entries, "epoch": 3}, path)
    with pytest.raises(UsageError, match=r"its 'state_dict' entry.*'module\.'"):
        read_state(path, "m:f", _fresh())
    torch.save({"weights": weights, "epoch": 3}, path)
    with pytest.raises(UsageError, match=r"'weights'.*no state dict under 'state_dict'"):
        read_state(path, "m:f", _fresh())


# -- advice in flags -----------------------------------------------------------------------


def test_the_saturation_diagnosis_is_said_in_flags():
    from signattack.evaluate_cli import _in_flags
    from signattack.masking import ZeroGradients, zero_gradient_problem

    python = zero_gradient_problem(0.5, ZeroGradients(samples=4, zero=2, saturated=2))
    said = _in_flags(python)
    assert "loss=" not in said, said
    assert "standard_attacks()" not in said, said
    assert "--loss margin" in said, said
    assert "run the model in float64" not in said, said


# -- the stand-in in CSV -------------------------------------------------------------------


def _report(synthetic: bool) -> RobustnessReport:
    return RobustnessReport(
        eps=(0.5,),
        attack="FGSM",
        clean_correct=(True, False, True),
        robust_correct={0.5: (False, False, True)},
        max_perturbation={0.5: 0.5},
        attacked={0.5: 2},
        metadata={"data": {"synthetic": synthetic}},
    )


@pytest.mark.parametrize("write", ["to_csv", "to_summary_csv"])
def test_every_csv_row_on_the_stand_in_says_so(write):
    rows = list(csv.reader(io.StringIO(getattr(_report(True), write)())))
    plain = list(csv.reader(io.StringIO(getattr(_report(False), write)())))
    assert rows[0][0] == "note"
    assert "note" not in plain[0]
    assert len(rows) == len(plain) > 1
    for row, real in zip(rows, plain, strict=True):
        assert row[1:] == real
    assert {row[0] for row in rows[1:]} == {STAND_IN}


# -- fetching CIFAR-10 ---------------------------------------------------------------------


@pytest.fixture
def no_network(monkeypatch):
    calls: list[str] = []

    def refuse(url: str) -> io.BytesIO:
        calls.append(url)
        raise OSError("network is unreachable")

    monkeypatch.setattr(data, "_open_url", refuse)
    return calls


def test_fetch_refuses_a_folder_that_holds_the_stand_in(tmp_path, no_network):
    write_synthetic_cifar10(tmp_path / "syn", train_size=5, test_size=5)
    with pytest.raises(ValueError, match=r"syn.*synthetic stand-in"):
        fetch_cifar10(tmp_path / "syn")
    assert no_network == []


def test_fetch_refuses_a_dangling_link_before_downloading(tmp_path, no_network):
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "cifar-10-batches-py").symlink_to(tmp_path / "nowhere")
    with pytest.raises(ValueError, match=r"cifar-10-batches-py is a link .*nowhere"):
        fetch_cifar10(tmp_path / "d")
    assert no_network == []
    assert not (tmp_path / "nowhere").exists()


def test_a_failed_fetch_removes_only_the_folders_it_created(tmp_path, no_network):
    with pytest.raises(OSError, match="unreachable"):
        fetch_cifar10(tmp_path / "new" / "deeper")
    assert list(tmp_path.iterdir()) == []
    (tmp_path / "kept").mkdir()
    with pytest.raises(OSError, match="unreachable"):
        fetch_cifar10(tmp_path / "kept")
    assert list((tmp_path / "kept").iterdir()) == []


@pytest.mark.parametrize(
    "names",
    [
        [("cifar-10-batches-py/test_batch", "file"), ("cifar-10-batches-py/test_batch/x", "file")],
        [("cifar-10-batches-py/sub", "dir"), ("cifar-10-batches-py/sub", "file")],
    ],
)
def test_an_archive_naming_a_file_and_a_folder_alike_is_refused(tmp_path, monkeypatch, names):
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for name, kind in [("cifar-10-batches-py", "dir"), *names]:
            member = tarfile.TarInfo(name)
            if kind == "dir":
                member.type = tarfile.DIRTYPE
                tar.addfile(member)
            else:
                member.size = 1
                tar.addfile(member, io.BytesIO(b"1"))
    archive = buffer.getvalue()
    monkeypatch.setattr(data, "_open_url", lambda url: io.BytesIO(archive))
    monkeypatch.setattr(data, "_CIFAR10_MD5", hashlib.md5(archive).hexdigest())
    with pytest.raises(ValueError, match="both as a file and as a folder"):
        fetch_cifar10(tmp_path / "data")
    assert not (tmp_path / "data").exists()
