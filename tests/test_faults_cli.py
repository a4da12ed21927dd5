"""The command line's outputs, one fault suite: every output flag is checked before the
evaluation, a path that cannot be written is one line naming the flag and the path with exit
status 2, and a refused run leaves nothing behind. A new output flag joins by its entry in
``signattack.evaluate_cli.OUTPUTS``."""

from __future__ import annotations

import os
import re
import stat

import pytest

import signattack.evaluation
from signattack.cli import main
from signattack.evaluate_cli import OUTPUTS

BASE = ["evaluate", "--model", "signattack.models:DigitsCNN", "--data", "digits", "--eps", "4"]
QUICK = ["--limit", "4", "--steps", "1", "--batch-size", "4"]
FLAGS = sorted(output.flag for output in OUTPUTS.values())


def _name(flag):
    """A file name the flag can write."""
    output = next(output for output in OUTPUTS.values() if output.flag == flag)
    return "out" + (output.suffixes[0] if output.suffixes else ".json")


def _tree(folder):
    """Every file and folder under ``folder`` with its kind, size and modification time."""
    found = []
    for root, folders, files in os.walk(folder):
        for name in folders + files:
            path = os.path.join(root, name)
            status = os.lstat(path)
            found.append((os.path.relpath(path, folder), status.st_mode, status.st_size))
            found[-1] += (status.st_mtime_ns,)
    return sorted(found)


@pytest.fixture
def refused(tmp_path, monkeypatch, capsys):
    """Run the command expecting a refusal before any evaluation: status 2, one line naming
    the flag and the path, nothing on stdout, nothing created or changed under tmp_path."""

    def evaluate_must_not_run(*args, **kwargs):
        raise AssertionError("the evaluation ran before the outputs were checked")

    monkeypatch.setattr(signattack.evaluation, "evaluate", evaluate_must_not_run)

    def run(flag, path, message, *extra):
        before = _tree(tmp_path)
        try:
            status = main([*BASE, *QUICK, *extra, flag, str(path)])
        except SystemExit as exit:
            status = exit.code
        captured = capsys.readouterr()
        lines = captured.err.strip().splitlines()
        assert status == 2, captured.err
        assert len(lines) == 1, captured.err
        assert lines[0].startswith(f"signattack evaluate: error: {flag}"), lines[0]
        assert str(path) in lines[0]
        assert re.search(message, lines[0]), lines[0]
        assert captured.out == ""
        assert _tree(tmp_path) == before, "a refused run left something behind"

    return run


@pytest.mark.parametrize("flag", FLAGS)
def test_a_folder_blocked_by_a_file_is_refused_before_the_run(tmp_path, refused, flag):
    blocker = tmp_path / "blocker"
    blocker.write_text("a file where a folder must be")
    refused(flag, blocker / "sub" / _name(flag), "cannot be written: .*blocker.* is not a folder")


@pytest.mark.parametrize("flag", FLAGS)
def test_a_folder_that_is_not_writable_is_refused_before_the_run(tmp_path, refused, flag):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(stat.S_IRUSR | stat.S_IXUSR)
    try:
        if os.access(locked, os.W_OK):
            pytest.skip("this user can write into read-only folders")
        refused(flag, locked / _name(flag), "the folder .*locked.* is not writable")
        refused(flag, locked / "new" / _name(flag), "the folder .*locked.* is not writable")
    finally:
        locked.chmod(stat.S_IRWXU)


@pytest.mark.parametrize("flag", FLAGS)
def test_a_folder_of_a_system_file_system_is_refused_even_for_an_administrator(refused, flag):
    if not os.path.isdir("/sys/kernel"):
        pytest.skip("no sysfs here")
    refused(flag, f"/sys/kernel/{_name(flag)}", "the folder '/sys/kernel' is not writable")


@pytest.mark.parametrize("flag", FLAGS)
def test_a_path_that_is_a_folder_is_refused_before_the_run(tmp_path, refused, flag):
    folder = tmp_path / _name(flag)
    folder.mkdir()
    refused(flag, folder, "must be a file, got the folder")


@pytest.mark.parametrize("flag", FLAGS)
def test_a_read_only_file_is_refused_and_kept(tmp_path, refused, flag):
    kept = tmp_path / _name(flag)
    kept.write_bytes(b"keep me")
    kept.chmod(stat.S_IRUSR | stat.S_IRGRP)
    refused(flag, kept, "is read-only")
    assert kept.read_bytes() == b"keep me"


@pytest.mark.parametrize("flag", FLAGS)
def test_a_device_is_not_replaced_by_a_file(refused, flag):
    if not os.path.exists(os.devnull) or os.path.isfile(os.devnull):
        pytest.skip("no null device here")
    refused(flag, os.devnull, "must be a regular file")


@pytest.mark.parametrize(
    "output", [o for o in OUTPUTS.values() if o.suffixes], ids=lambda output: output.flag
)
def test_a_suffix_no_writer_knows_is_refused_before_the_run(tmp_path, refused, output):
    refused(output.flag, tmp_path / "out.unknown", "must end in " + re.escape(output.suffixes[0]))


def test_two_outputs_naming_one_file_are_refused(tmp_path, refused):
    same = tmp_path / "same.json"
    refused("--robustbench", same, "names the same file as --report", "--report", str(same))


def test_an_output_that_would_overwrite_the_data_is_refused(tmp_path, refused):
    import numpy as np

    data = tmp_path / "data.npz"
    np.savez(data, x=np.zeros((2, 1, 8, 8), np.float32), y=np.zeros(2, np.int64))
    refused("--adversarial", data, "names the same file as --data", "--data", f"npz:{data}")


@pytest.mark.parametrize("flag", FLAGS)
def test_every_output_creates_its_missing_folders(tmp_path, capsys, flag):
    if flag == "--plot":
        pytest.importorskip("matplotlib")
    path = tmp_path / "made" / "deeper" / _name(flag)
    assert main([*BASE, *QUICK, flag, str(path)]) == 0, capsys.readouterr().err
    assert path.is_file()
    assert path.stat().st_size > 0


def test_an_output_failing_at_the_end_costs_no_other_output(tmp_path, monkeypatch, capsys):
    import errno

    from signattack.evaluation import RobustnessReport

    def full_disk(self, path):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))

    monkeypatch.setattr(RobustnessReport, "save", full_disk)
    report, entry = tmp_path / "report.json", tmp_path / "entry.json"
    arguments = [*BASE, *QUICK, "--report", str(report), "--robustbench", str(entry)]
    assert main(arguments) == 1
    captured = capsys.readouterr()
    assert f"signattack evaluate: error: --report {report}: " in captured.err
    assert entry.is_file(), "the other output is still written"
    assert "samples" in captured.out, "the table is still printed"


def test_the_demo_output_folder_is_checked_before_training(tmp_path, capsys):
    blocker = tmp_path / "results"
    blocker.write_text("a file where the demo's folder must be")
    for out, message in [
        (blocker, "--out must be a folder, got the file"),
        (blocker / "figures", "--out .* cannot be written: .*results.* is not a folder"),
    ]:
        assert main(["demo", "--smoke", "--out", str(out)]) == 2
        captured = capsys.readouterr()
        lines = captured.err.strip().splitlines()
        assert len(lines) == 1, captured.err
        assert lines[0].startswith("signattack demo: error: --out")
        assert re.search(message, lines[0]), lines[0]
    assert [path.name for path in tmp_path.iterdir()] == ["results"]


def test_the_exports_batch_folder_is_claimed_before_the_run(tmp_path, refused):
    export = tmp_path / "a.npz"
    refused(
        "--resume-file",
        tmp_path / "a.npz.parts",
        "names the same file as --adversarial",
        "--adversarial",
        str(export),
    )


def test_a_box_below_zero_is_read_as_a_value(tmp_path, capsys):
    from signattack.cli import _joined

    assert _joined(["evaluate", "--bounds", "-1,1", "--eps", "0.1"]) == [
        "evaluate",
        "--bounds=-1,1",
        "--eps",
        "0.1",
    ]
    assert _joined(["--input-range", "-0.5,0.5", "--model", "-m"]) == [
        "--input-range=-0.5,0.5",
        "--model",
        "-m",
    ]


def test_the_first_line_names_only_the_attacks_that_took_eot(capsys):
    status = main(
        [
            *BASE,
            "--limit",
            "4",
            "--batch-size",
            "4",
            "--attacks",
            "standard",
            "--eot",
            "3",
            "--steps",
            "1",
            "--queries",
            "2",
        ]
    )
    assert status == 0
    first = capsys.readouterr().out.splitlines()[0]
    assert "applies to APGD" not in first, first  # a deterministic model: the rand version
    assert "--eot 3 applies to the rand version" in first, first


def test_the_model_is_never_handed_the_data_itself(tmp_path, capsys):
    import numpy as np
    import torch

    from signattack.evaluation import load_adversarial

    (tmp_path / "inplace_model.py").write_text(
        "import torch\n"
        "class Divides(torch.nn.Module):\n"
        "    def __init__(self):\n"
        "        super().__init__()\n"
        "        torch.manual_seed(0)\n"
        "        self.lin = torch.nn.Linear(64, 10)\n"
        "    def forward(self, x):\n"
        "        with torch.no_grad():\n"
        "            x.div_(255)\n"
        "        return self.lin(x.reshape(len(x), -1))\n"
    )
    export = tmp_path / "a.npz"
    arguments = [
        "evaluate",
        "--model",
        "inplace_model:Divides",
        "--data",
        "digits",
        "--eps",
        "8",
        "--limit",
        "4",
        "--attacks",
        "fgsm",
        "--adversarial",
        str(export),
    ]
    import sys

    sys.path.insert(0, str(tmp_path))
    try:
        assert main(arguments) == 0, capsys.readouterr().err
    finally:
        sys.path.remove(str(tmp_path))
        sys.modules.pop("inplace_model", None)
    saved = load_adversarial(export)
    assert saved.x.max() > 1.0  # the digits in [0, 255], not divided by the model
    from signattack.digits import load_digits

    expected = load_digits().x_test[:4].numpy()
    np.testing.assert_array_equal(saved.x, expected)
    assert torch.is_tensor(torch.from_numpy(saved.x))


def test_a_box_the_data_leaves_is_said_in_flags(capsys):
    status = main([*BASE, *QUICK, "--bounds", "-1,1"])
    err = capsys.readouterr().err
    assert status == 2
    assert "--bounds lower,upper" in err
    assert "bounds=(lower, upper)" not in err
