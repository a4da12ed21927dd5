"""Edges found by trying to break the round's fixes: radii past the box's diameter on the
scalar path, what the command line quotes, batches of several dtypes, names that fail."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from signattack import APGD, FGSM, L2PGD, IteratedSign
from signattack.cli import main
from signattack.evaluation import evaluate


def _linear(features: int = 64, classes: int = 10) -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(features, classes))


@pytest.mark.parametrize(
    ("wide", "diameter"),
    [
        (IteratedSign(3e38, 2), IteratedSign(255.0, 2)),
        (FGSM(3e38), FGSM(255.0)),
        (L2PGD(1e6, 2, random_start=True, seed=0), L2PGD(255.0 * 8, 2, random_start=True, seed=0)),
    ],
    ids=["iterated sign", "fgsm", "l2pgd"],
)
@pytest.mark.filterwarnings("ignore::signattack.UnitsWarning")  # a radius past the box, asked for
def test_a_radius_past_the_diameter_steps_as_the_diameter(wide, diameter):
    model = _linear()
    x = torch.rand(3, 1, 8, 8) * 255
    y = model(x).argmax(1)
    far, near = wide.run(model, x, y), diameter.run(model, x, y)
    assert torch.isfinite(far.x_adv).all()
    assert float(far.x_adv.min()) >= 0.0
    assert float(far.x_adv.max()) <= 255.0
    assert torch.equal(far.x_adv, near.x_adv)  # the same ball and box, the same steps


class _Widened(torch.nn.Module):
    """A float32 network that takes inputs of any floating dtype."""

    def __init__(self) -> None:
        super().__init__()
        self.net = _linear()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x.float())


def test_the_shown_largest_perturbation_allows_the_coarsest_batchs_rounding():
    model = _Widened()
    x = torch.rand(6, 1, 8, 8) * 255
    y = model(x).argmax(1)
    data = [(x[:3].double(), y[:3]), (x[3:].half(), y[3:])]
    report = evaluate(model, data, APGD(1.0, 3, seed=0), [7.3], progress=False)
    assert report.metadata["data"]["dtype"] == "float16"
    shown = report.to_summary_csv().splitlines()[-1].split(",")
    header = report.to_summary_csv().splitlines()[0].split(",")
    assert float(shown[header.index("max_perturbation_shown")]) <= 7.3


class _Failing(APGD):
    @property
    def name(self) -> str:
        raise RuntimeError("a name that cannot be read")


def test_an_attack_whose_name_fails_is_named_by_its_description():
    model = _linear()
    x = torch.rand(4, 1, 8, 8) * 255
    y = model(x).argmax(1)
    report = evaluate(model, [(x, y)], _Failing(1.0, 2, seed=0), [4.0], progress=False)
    assert list(report.broken_by[4.0]) == [report.attack]
    assert report.attack.startswith("_Failing(")


def _run(arguments, capsys):
    try:
        status = main(arguments)
    except SystemExit as exit:
        status = exit.code
    return status, capsys.readouterr()


def test_the_command_line_quotes_a_folder_it_resolved_as_it_is(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "eps=8").write_text("a file where a folder would be")
    arguments = ["evaluate", "--model", "signattack.models:DigitsCNN", "--data", "digits"]
    status, captured = _run([*arguments, "--eps", "8", "--report", "eps=8/r.md"], capsys)
    assert status == 2
    assert f"{tmp_path}/eps=8" in captured.err, captured.err
    assert "--eps 8'" not in captured.err


def test_advice_is_said_in_flags_beside_a_path_that_looks_like_it(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "eps=8", x=rng.random((4, 1, 8, 8)).astype(np.float32), y=np.arange(4))
    arguments = ["evaluate", "--model", "signattack.models:DigitsCNN", "--data", "npz:eps=8.npz"]
    quick = ["--limit", "4", "--steps", "1", "--quiet"]
    status, captured = _run([*arguments, "--eps", "8/255", *quick], capsys)
    assert status == 0, captured.err
    said = captured.out + captured.err
    assert "--bounds 0,1" in said, said  # the units advice, in flags
    assert "bounds=(" not in said
