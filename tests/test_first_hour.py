"""The first hour with the library: progress while the worst case runs, diagnoses that name
the likely cause (saturation or masking, wrong units), and the flags people type."""

from __future__ import annotations

import json
import re
import sys
from fractions import Fraction

import numpy as np
import pytest
import torch

from signattack.attacks import FGSM, IteratedSign
from signattack.cli import main
from signattack.evaluation import evaluate

# -- progress ------------------------------------------------------------------------------

LINE = re.compile(
    r"^eps (?P<eps>\S+), (?P<attack>[^:]+): (broke (?P<broke>\d+) of (?P<tried>\d+)|nothing "
    r"left to attack); robust "
    r"accuracy so far (?P<accuracy>[\d.]+)% \((?P<robust>\d+) of (?P<seen>\d+)\); batch "
    r"(?P<batch>\d+) of (?P<batches>\d+); \d[^;]* spent, (about \d.* left|done)$"
)


def _linear(weight: torch.Tensor, scale: float = 1.0) -> torch.nn.Module:
    model = torch.nn.Linear(weight.shape[1], weight.shape[0], bias=False)
    with torch.no_grad():
        model.weight.copy_(weight * scale)
    return torch.nn.Sequential(torch.nn.Flatten(), model).eval()


def _problem(samples: int = 6, scale: float = 1.0):
    """A linear model on ``[0, 1]`` inputs and the labels it predicts: every sample clean."""
    generator = torch.Generator().manual_seed(0)
    weight = torch.randn(3, 4, generator=generator)
    x = torch.rand(samples, 4, generator=generator)
    return _linear(weight, scale), x, (x @ weight.T).argmax(1)


def _lines(err: str) -> list[re.Match[str]]:
    return [match for line in err.splitlines() if (match := LINE.match(line))]


def test_a_line_after_each_attack_at_each_radius_with_what_it_did(capsys):
    model, x, y = _problem()
    batches = [(x[:4], y[:4]), (x[4:], y[4:])]
    attacks = [FGSM(0.0, bounds=(0, 1)), IteratedSign(0.0, 2, bounds=(0, 1))]
    report = evaluate(model, batches, attacks, [0.05, 0.5], progress=True)
    lines = _lines(capsys.readouterr().err)
    assert len(lines) == len(batches) * 2 * len(attacks)  # per batch, radius and attack
    seen = [(m["batch"], m["eps"], m["attack"]) for m in lines]
    assert len(set(seen)) == len(seen)
    assert {m["batches"] for m in lines} == {"2"}
    assert {m["attack"] for m in lines} == set(report.broken_by[0.5])
    for eps in (0.05, 0.5):  # the last line at a radius holds the report's robust accuracy
        last = [m for m in lines if float(m["eps"]) == eps][-1]
        robust = sum(report.robust_correct[eps])
        assert (int(last["robust"]), int(last["seen"])) == (robust, report.samples)
        broke = [m for m in lines if float(m["eps"]) == eps]
        for name, count in report.broken_by[eps].items():
            assert sum(int(m["broke"] or 0) for m in broke if m["attack"] == name) == count
    assert lines[-1].group(0).endswith("done")


def test_progress_false_is_silent(capsys):
    model, x, y = _problem()
    evaluate(model, [(x, y)], FGSM(0.0, bounds=(0, 1)), [0.1], progress=False)
    assert capsys.readouterr().err == ""


# -- diagnoses -------------------------------------------------------------------------------


class _Rounded(torch.nn.Module):
    """Masks its gradient: the input is rounded to a grid before a linear layer."""

    def __init__(self, inner: torch.nn.Module) -> None:
        super().__init__()
        self.inner = inner

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.inner(torch.round(x * 4) / 4)


def _zero_gradient_warning(report) -> str:
    found = [w for w in report.warnings if "have no gradient at all" in w]
    assert len(found) == 1, report.warnings
    return found[0]


def test_a_saturated_softmax_is_told_from_masking_and_not_sent_to_straight_through():
    model, x, y = _problem(scale=1e4)  # float32 logits 1e4 apart: softmax is one-hot
    report = evaluate(model, [(x, y)], IteratedSign(0.0, 1, bounds=(0, 1)), [0.01])
    text = _zero_gradient_warning(report)
    assert f"{len(y)} of the {len(y)} samples" in text
    assert "saturates" in text
    assert "loss='margin'" in text
    assert "straight_through(step)" not in text
    assert "masked gradients" not in text


def test_an_evaluation_that_already_climbs_a_margin_is_not_told_to_switch_to_one():
    from signattack import APGD

    model, x, y = _problem(scale=1e4)
    attacks = [IteratedSign(0.0, 1, bounds=(0, 1)), APGD(0.0, 1, loss="dlr", bounds=(0, 1))]
    text = _zero_gradient_warning(evaluate(model, [(x, y)], attacks, [0.01]))
    assert "saturates" in text
    assert "APGD-DLR already climbs a loss that does not saturate" in text
    assert "loss='margin'" not in text


def test_a_quantizer_is_masking_and_gets_straight_through():
    inner, x, y = _problem()
    model = _Rounded(inner)
    y = model(x).argmax(1)
    report = evaluate(model, [(x, y)], IteratedSign(0.0, 1, bounds=(0, 1)), [0.01])
    text = _zero_gradient_warning(report)
    assert "no margin gradient either: the gradient vanishes inside the model, masked" in text
    assert "straight_through(step)" in text
    assert "saturates" not in text


def test_the_gradient_probe_names_saturation_as_the_evaluation_does():
    from signattack.probes import GradientMaskingWarning, check_gradients

    model, x, y = _problem(scale=1e4)
    with pytest.warns(GradientMaskingWarning) as caught:
        check_gradients(model, x, y, bounds=(0, 1))
    text = " ".join(str(warning.message) for warning in caught)
    assert "saturates" in text
    assert "straight_through(step)" not in text


class _UnitBox(torch.nn.Module):
    """Two classes on inputs in [0, 1]: class 0 where the features' sum exceeds 2."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        total = (x.flatten(1) - 0.5).sum(1)
        return torch.stack([total, -total], dim=1)


def _unit_box_data():
    """Three of four samples of class 1 in [0, 1]; as 0-255 pixels all look like class 0.
    Twelve of them: on four, 3 of 4 right could be chance, and the hint says nothing."""
    x = torch.tensor([0.1, 0.2, 0.3, 0.9] * 3).repeat_interleave(4).reshape(12, 1, 2, 2)
    return x, torch.tensor([1, 1, 1, 0] * 3)


def test_a_unit_box_model_given_pixels_is_asked_whether_it_meant_the_unit_box():
    x, y = _unit_box_data()
    pixels = x * 255
    report = evaluate(_UnitBox(), [(pixels, y)], FGSM(0.0), [1.0])
    found = [w for w in report.warnings if "did you mean bounds=(0, 1)" in w]
    assert len(found) == 1, report.warnings
    assert "25%" in found[0]
    assert "100%" in found[0]
    right = evaluate(_UnitBox(), [(x, y)], FGSM(0.0, bounds=(0, 1)), [0.01])
    assert not [w for w in right.warnings if "did you mean" in w]


def test_four_samples_right_by_chance_in_the_other_range_raise_no_hint():
    x, y = _unit_box_data()
    report = evaluate(_UnitBox(), [(x[:4] * 255, y[:4])], FGSM(0.0), [1.0])
    assert not [w for w in report.warnings if "did you mean" in w]


# -- the command line ------------------------------------------------------------------------

FACTORY = """
import torch

from signattack.models import DigitsCNN, Normalize

SEEN = []


class UnitBox(torch.nn.Module):
    def forward(self, x):
        SEEN.append(x.detach().clone())
        total = (x.flatten(1) - 0.5).sum(1)
        return torch.stack([total, -total], dim=1)


def unit_box():
    return UnitBox()


def wrapped():
    return torch.nn.Sequential(Normalize(None, 0.0, 1.0), DigitsCNN())
"""


@pytest.fixture
def command(tmp_path, monkeypatch):
    """``signattack evaluate`` of a model of the current folder on four 0-255 samples."""
    (tmp_path / "firsthour.py").write_text(FACTORY)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p not in ("", str(tmp_path))])
    monkeypatch.delitem(sys.modules, "firsthour", raising=False)
    x, y = _unit_box_data()
    np.savez(tmp_path / "pixels.npz", x=(x * 255).numpy(), y=y.numpy())
    return ["evaluate", "--model", "firsthour:unit_box", "--data", "npz:pixels.npz"]


def _run(arguments, capsys):
    try:
        status = main(arguments)
    except SystemExit as exit:
        status = exit.code
    out, err = capsys.readouterr()
    return status, out, err


def test_the_command_line_asks_for_input_range_where_the_other_range_does_much_better(
    command, capsys
):
    status, out, _ = _run([*command, "--eps", "1", "--attack", "fgsm"], capsys)
    assert status == 0
    assert "did you mean --input-range 0,1?" in out
    assert "bounds=(" not in out
    status, out, _ = _run([*command, "--eps", "1", "--input-range", "0,1"], capsys)
    assert status == 0
    assert "did you mean" not in out


def test_eps_as_fractions_is_read_exactly(command, tmp_path, capsys):
    report = tmp_path / "report.json"
    unit = [*command, "--input-range", "0,1", "--attack", "fgsm"]
    arguments = [*unit, "--eps", "4/255, 8/255", "--report", str(report)]
    assert _run(arguments, capsys)[0] == 0
    radii = json.loads(report.read_text())["eps"]
    assert radii == [float(Fraction(4, 255)), float(Fraction(8, 255))]
    status, _, err = _run([*unit, "--eps", "8/0"], capsys)
    assert status == 2
    assert err.count("\n") == 1
    assert "--eps must be comma-separated numbers" in err
    assert "'8/0' divides by zero" in err


def test_mean_and_std_put_the_model_behind_normalize(command, capsys):
    arguments = [*command, "--eps", "1", "--attack", "fgsm", "--mean", "127.5", "--std", "127.5"]
    assert _run(arguments, capsys)[0] == 0
    seen = sys.modules["firsthour"].SEEN
    assert seen
    assert min(float(x.min()) for x in seen) >= -1.0 - 1e-6
    assert max(float(x.max()) for x in seen) <= 1.0 + 1e-6
    assert max(float(x.max()) for x in seen) > 0.5  # the pixels, normalised


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--mean", "1,2", "--std", "1"], "--mean and --std must have one value per channel"),
        (["--mean", "1"], "--mean needs --std as well"),
        (["--mean", "1", "--std", "0"], "--mean '1' and --std '0': std must be positive"),
        (["--mean", "1,2,3", "--std", "1,1,1"], r"per channel of the data \(channels first: 1"),
        (["--mean", "a", "--std", "1"], "--mean must be comma-separated numbers"),
    ],
)
def test_mean_and_std_are_checked(command, capsys, extra, message):
    status, _, err = _run([*command, "--eps", "1", *extra], capsys)
    assert status == 2
    assert err.count("\n") == 1
    assert re.search(message, err), err


def test_norm_reaches_the_attacks(command, capsys):
    from signattack._cli_attacks import selected_attacks as _attacks
    from signattack.cli import _parser

    for norm in ("linf", "l2"):
        args = _parser().parse_args(
            [*command, "--eps", "1", "--attacks", "apgd-ce", "--norm", norm]
        )
        (attack,) = _attacks(args, (0.0, 255.0))
        assert getattr(attack.norm, "name", attack.norm) == norm
    status, _, err = _run([*command, "--eps", "1", "--norm", "l3"], capsys)
    assert status == 2
    assert "--norm" in err
    assert "'l3'" in err


def test_the_iterated_attack_under_l2_is_pgd_l2_and_fgsm_is_refused(command, capsys):
    from signattack import L2PGD
    from signattack._cli_attacks import selected_attacks
    from signattack.cli import _parser

    args = _parser().parse_args([*command, "--eps", "1", "--attacks", "iterated", "--norm", "l2"])
    (attack,) = selected_attacks(args, (0.0, 255.0))
    assert isinstance(attack, L2PGD)
    status, _, err = _run([*command, "--eps", "1", "--attacks", "fgsm", "--norm", "l2"], capsys)
    assert status == 2
    assert err.count("\n") == 1
    assert "fgsm" in err
    assert "iterated" in err


def test_the_units_warning_gives_an_l2_radius_under_l2():
    from signattack import L2PGD, UnitsWarning

    model, x, y = _problem()
    with pytest.warns(UnitsWarning, match="127.5"):
        L2PGD(0.5, 1, bounds=(0, 255))(model, x, y)


def test_quiet_silences_the_progress_lines(command, capsys, monkeypatch):
    monkeypatch.setattr("signattack._progress.in_notebook", lambda: True)
    unit = [*command, "--eps", "1,2", "--input-range", "0,1"]
    _, _, err = _run(unit, capsys)
    assert len(_lines(err)) == 2  # one attack at two radii, one batch
    status, _, err = _run([*unit, "--quiet"], capsys)
    assert status == 0
    assert not _lines(err)
    assert "robust accuracy so far" not in err


def _weights_error(tmp_path, capsys, state, model="signattack.models:DigitsCNN"):
    path = tmp_path / "weights.pt"
    torch.save(state, path)
    arguments = ["evaluate", "--model", model, "--data", "digits", "--eps", "1"]
    status, _, err = _run([*arguments, "--weights", str(path)], capsys)
    assert status == 2
    assert err.count("\n") == 1
    return err


def test_weights_from_a_sequential_wrapper_name_the_prefix_and_the_fix(tmp_path, capsys):
    from signattack.models import DigitsCNN, Normalize

    wrapper = torch.nn.Sequential(Normalize(None, 0.0, 1.0), DigitsCNN())
    err = _weights_error(tmp_path, capsys, wrapper.state_dict())
    assert "the model's keys as one that starts with '1.' (and 2 more" in err
    assert "save the network's own state_dict" in err


@pytest.mark.parametrize("prefix", ["module.", "model.", "module.model."])
def test_weights_under_a_checkpoints_prefix_name_it(tmp_path, capsys, prefix):
    from signattack.models import DigitsCNN

    state = {f"{prefix}{k}": v for k, v in DigitsCNN().state_dict().items()}
    err = _weights_error(tmp_path, capsys, {**state, "extra.step": torch.tensor(1)})
    assert f"the model's keys as one that starts with {prefix!r} (and 1 more" in err


def test_a_factory_that_wraps_the_saved_network_is_named(command, tmp_path, capsys):
    from signattack.models import DigitsCNN

    err = _weights_error(tmp_path, capsys, DigitsCNN().state_dict(), "firsthour:wrapped")
    assert "the model's keys are the file's under '1.'" in err
    assert "--model wraps the network" in err


def test_an_attack_that_runs_long_shows_a_bar_of_its_steps_unless_silenced(monkeypatch, capsys):
    """Square's queries (or any attack's steps) get a bar within the evaluation's progress,
    after a delay that short attacks never reach; ``progress=False`` silences it."""
    from signattack import Square

    monkeypatch.setattr("signattack._progress.in_notebook", lambda: True)
    monkeypatch.setattr("signattack._progress.STEP_BAR_DELAY", 0.0)
    model, x, y = _problem()
    attack = Square(0.0, queries=40, bounds=(0, 1), seed=0)
    evaluate(model, [(x, y)], attack, [0.05], progress=True)
    assert "Square queries" in capsys.readouterr().err
    evaluate(model, [(x, y)], attack, [0.05], progress=False)
    assert "Square queries" not in capsys.readouterr().err
    attack.run(model, x, y)  # outside an evaluation: no bar
    assert "Square queries" not in capsys.readouterr().err


def test_the_fast_preset_takes_a_small_query_budget_and_the_steps(command):
    from signattack._cli_attacks import selected_attacks
    from signattack.cli import _parser

    arguments = [*command, "--eps", "1", "--attacks", "fast", "--steps", "2", "--queries", "30"]
    apgd, targets, nearest, square = selected_attacks(_parser().parse_args(arguments), (0.0, 255.0))
    assert (apgd.steps, targets.steps, nearest.steps) == (2, 2, 2)
    assert (square.probe, square.queries) == (30, 30)
