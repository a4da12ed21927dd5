"""Exported adversarial examples: what they hold, and that evaluating the model again at
them gives the reported numbers (and catches a file that does not)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from signattack import APGD, FGSM, IteratedSign
from signattack.cli import main
from signattack.evaluation import evaluate, load_adversarial, verify


def _problem(dtype=torch.float32):
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(16, 3)).eval()
    x = torch.rand(30, 1, 4, 4) * 255
    x = x.round().to(dtype) if dtype == torch.uint8 else x
    with torch.no_grad():
        y = model(x.float()).argmax(1)
    y[:2] = (y[:2] + 1) % 3
    return model, [(x[:16], y[:16]), (x[16:], y[16:])], x, y


@pytest.mark.parametrize("suffix", [".npz", ".pt"])
def test_the_saved_points_give_the_reported_numbers(tmp_path, suffix):
    model, data, x, y = _problem()
    path = tmp_path / f"x_adv{suffix}"
    report = evaluate(model, data, [FGSM(0), APGD(0, 3, seed=1)], [4.0, 16.0], adversarial=path)
    saved = load_adversarial(path)
    np.testing.assert_array_equal(saved.x, x.numpy())
    np.testing.assert_array_equal(saved.y, y.numpy())
    assert saved.report == report
    for eps, points in saved.points.items():
        assert points.shape == tuple(x.shape)
        assert np.abs(points - saved.x).max() <= eps
        with torch.no_grad():
            robust = (model(torch.from_numpy(points)).argmax(1) == y).numpy()
        np.testing.assert_array_equal(robust, report.robust_correct[eps])
    found = verify(model, path)
    assert found.reproduced
    assert found.robust_accuracy == report.robust_accuracy
    assert found.summary().splitlines()[-1].startswith("verified")


def test_integer_images_are_saved_as_integers(tmp_path):
    model, data, x, _ = _problem(torch.uint8)
    path = tmp_path / "x_adv.npz"
    evaluate(model, data, IteratedSign(0, 2), [3.0], adversarial=path)
    saved = load_adversarial(path)
    assert saved.points[3.0].dtype == np.uint8
    assert np.abs(saved.points[3.0].astype(int) - x.numpy().astype(int)).max() <= 3
    assert verify(model, path).reproduced


def test_a_tampered_file_is_not_verified(tmp_path):
    model, data, _, _ = _problem()
    path = tmp_path / "x_adv.npz"
    evaluate(model, data, FGSM(0), [4.0], adversarial=path)
    with np.load(path) as stored:
        arrays = dict(stored)
    arrays["x_adv_0"] = np.clip(arrays["x_adv_0"] + 10.0, 0, 255).astype(np.float32)
    np.savez(path, **arrays)
    found = verify(model, path)
    assert not found.inside[4.0]
    assert not found.reproduced
    assert "NOT verified" in found.summary()
    other = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(16, 3)).eval()
    evaluate(model, data, FGSM(0), [4.0], adversarial=path)
    assert not verify(other, path).reproduced  # another model: other numbers


def test_a_resumed_run_exports_every_batch(tmp_path):
    model, data, _, _ = _problem()
    checkpoint, path = tmp_path / "run.json", tmp_path / "x_adv.npz"
    evaluate(model, data[:1], FGSM(0), [4.0], checkpoint=tmp_path / "other.json")
    # A run interrupted in its second batch, then resumed.
    second = data[1][0][0]
    armed = {"on": True}

    class Interrupt(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.inner = model

        def forward(self, z):
            if armed["on"] and torch.equal(z[0].detach(), second):
                raise KeyboardInterrupt
            return self.inner(z)

    flaky = Interrupt().eval()
    run = {"checkpoint": checkpoint, "adversarial": path, "model_name": "m"}
    with pytest.raises(KeyboardInterrupt):
        evaluate(flaky, data, FGSM(0), [4.0], **run)
    assert not path.exists()
    assert (tmp_path / "x_adv.npz.parts" / "0.npz").is_file()
    armed["on"] = False
    report = evaluate(flaky, data, FGSM(0), [4.0], **run)
    assert report.metadata["resumed_batches"] == 1
    assert load_adversarial(path).x.shape[0] == 30
    assert verify(model, path).reproduced


def test_a_resume_without_the_first_runs_points_attacks_those_batches_again(tmp_path):
    model, data, _, _ = _problem()
    checkpoint = tmp_path / "run.json"
    first = evaluate(model, data, FGSM(0), [4.0], checkpoint=checkpoint)
    output = tmp_path / "x_adv.npz"
    calls = []
    model.register_forward_hook(lambda module, inputs, output: calls.append(len(output)))
    again = evaluate(model, data, FGSM(0), [4.0], checkpoint=checkpoint, adversarial=output)
    assert calls, "the finished batches had no points kept: they must be attacked again"
    assert again.robust_correct == first.robust_correct
    saved = load_adversarial(output)
    assert len(saved.y) == first.samples
    assert not Path(f"{output}.parts").exists()
    assert verify(model, output).reproduced


def test_a_bad_path_names_the_argument(tmp_path):
    model, data, _, _ = _problem()
    with pytest.raises(ValueError, match=r"adversarial must be a \.npz or \.pt file"):
        evaluate(model, data, FGSM(0), [4.0], adversarial=tmp_path / "x_adv.json")
    folder = tmp_path / "folder.npz"
    folder.mkdir()
    with pytest.raises(ValueError, match="adversarial must be a file, got the folder"):
        evaluate(model, data, FGSM(0), [4.0], adversarial=folder)


def test_a_file_that_is_not_an_export_is_refused(tmp_path):
    bad = tmp_path / "x.npz"
    np.savez(bad, a=np.zeros(3))
    with pytest.raises(ValueError, match="is not a file of adversarial examples"):
        load_adversarial(bad)
    with pytest.raises(ValueError, match="must be a file written by evaluate"):
        load_adversarial(tmp_path / "missing.npz")


def test_the_command_line_exports_and_verifies(tmp_path, capsys):
    from signattack.models import DigitsCNN

    path, weights = tmp_path / "x_adv.npz", tmp_path / "net.pt"
    torch.save(DigitsCNN().state_dict(), weights)
    base = ["--model", "signattack.models:DigitsCNN", "--weights", str(weights)]
    arguments = ["evaluate", *base, "--data", "digits", "--eps", "8", "--limit", "24"]
    assert main([*arguments, "--steps", "2", "--adversarial", str(path)]) == 0
    assert "check it: signattack verify" in capsys.readouterr().out
    assert main(["verify", *base, "--adversarial", str(path)]) == 0
    assert capsys.readouterr().out.splitlines()[-1].startswith("verified")
    assert main(["verify", *base, "--adversarial", str(tmp_path / "none.npz")]) == 2
    assert "must be a file written by evaluate" in capsys.readouterr().err


def test_the_model_runs_again_in_the_mode_the_evaluation_ran_it(tmp_path):
    """A network whose answer depends on its mode: verified in the attacks' mode, it gives
    the report's numbers; the recorded mode is what makes that so."""
    torch.manual_seed(0)
    model = torch.nn.Sequential(
        torch.nn.Flatten(), torch.nn.Linear(16, 8), torch.nn.Dropout(0.9), torch.nn.Linear(8, 3)
    )
    x = torch.rand(20, 1, 4, 4) * 255
    with torch.no_grad():
        y = model.eval()(x).argmax(1)
    path = tmp_path / "x_adv.npz"
    report = evaluate(model.train(), [(x, y)], FGSM(0), [2.0], adversarial=path)
    assert report.metadata["model_mode"] == "eval"
    assert verify(model.train(), path).reproduced
    assert model.training  # restored
