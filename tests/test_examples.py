"""Every example runs in --smoke mode and its results say what the example claims."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import HANG_LIMIT

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"

pytestmark = pytest.mark.slow


def run(name: str, *args: str | Path) -> str:
    completed = subprocess.run(
        [sys.executable, str(EXAMPLES / name), *map(str, args)],
        check=True,
        capture_output=True,
        text=True,
        timeout=HANG_LIMIT,
    )
    return completed.stdout


def results(folder: Path) -> dict:
    return json.loads((folder / "results.json").read_text())


def pngs(folder: Path) -> set[str]:
    return {p.name for p in folder.glob("*.png") if p.read_bytes().startswith(b"\x89PNG")}


def test_cifar10_train_resumes_and_attack_reads_its_checkpoint(tmp_path):
    data, train, attack = tmp_path / "data", tmp_path / "train", tmp_path / "attack"
    run(
        "cifar10_train.py",
        "--synthetic",
        "--smoke",
        "--epochs",
        "1",
        "--data-dir",
        data,
        "--out",
        train,
    )
    assert len(results(train)["history"]["val_error"]) == 1
    # An interrupted run is continued, not restarted.
    output = run(
        "cifar10_train.py",
        "--smoke",
        "--epochs",
        "2",
        "--resume",
        "--data-dir",
        data,
        "--out",
        train,
    )
    assert "resumed" in output
    report = results(train)
    assert len(report["history"]["val_error"]) == 2
    assert report["parameter_groups"]["biases"] > 0
    state = torch.load(train / "checkpoint.pt", weights_only=True)
    assert state["epoch"] == 1
    assert pngs(train) == {"training_curves.png"}

    run(
        "cifar10_attack.py",
        "--smoke",
        "--checkpoint",
        train / "checkpoint.pt",
        "--data-dir",
        data,
        "--out",
        attack,
    )
    report = results(attack)
    assert set(report["accuracy"]) == {"clean", "fgsm_eps8", "iterated_eps8_steps5"}
    assert all(0 <= value <= 1 for value in report["accuracy"].values())
    assert all(len(curve) == 6 for curve in report["mean_loss_by_step"].values())
    assert pngs(attack) == {"gradient_maps.png", "loss_vs_step.png"}


def test_resnet18_params(tmp_path):
    pytest.importorskip("torchvision")
    output = run("resnet18_params.py", "--smoke", "--out", tmp_path)
    report = results(tmp_path)
    assert report["total"] == 11_689_512
    assert report["groups"] == {"bn_affine": 9_600, "biases": 1_000, "weights": 11_678_912}
    assert sum(report["stages"].values()) == 11_689_512
    assert "11,689,512" in output
    layers = report["layers"]
    assert len(layers) == 41
    assert sum(layers.values()) == 11_689_512
    downsampling = {k: v for k, v in layers.items() if ".downsample." in k}
    assert downsampling == {
        "layer2.0.downsample.0": 8_192,
        "layer2.0.downsample.1": 256,
        "layer3.0.downsample.0": 32_768,
        "layer3.0.downsample.1": 512,
        "layer4.0.downsample.0": 131_072,
        "layer4.0.downsample.1": 1_024,
    }
    assert "scale-invariant" in output
    assert "0.09%" in output
    assert pngs(tmp_path) == {"resnet18_architecture.png"}
    assert (tmp_path / "resnet18_parameters.csv").read_text().startswith("name,layer_type")


def test_rnn_gradients(tmp_path):
    run("rnn_gradients.py", "--smoke", "--out", tmp_path)
    report = results(tmp_path)
    assert report["autograd_relative_error"] < 1e-10
    assert report["rho_power_law_relative_error"] < 1e-10
    linear = report["linear"]
    assert (
        linear["rho = 0.9"][-1]
        < linear["rho = 0.9"][0]
        < linear["rho = 1.1"][0]
        < linear["rho = 1.1"][-1]
    )
    clipping = report["clipping"]
    assert clipping["loss_after_clipped"] < clipping["loss_before"] < clipping["loss_after_raw"]
    lstm = report["lstm"]
    assert lstm["LSTM, forget-gate bias +3"][-1] > 100 * lstm["LSTM, default init"][-1]
    weight = report["weight_gradient"]
    assert weight["rho = 0.9"][-1] < weight["rho = 1.0"][-1] < weight["rho = 1.1"][-1]
    skewed = report["non_normal"]
    assert skewed["spectral_radius"] == pytest.approx(0.9)
    assert skewed["norm"] > 1.5  # the norm would allow growth ...
    assert skewed["late_rate"] == pytest.approx(0.9, abs=0.03)  # ... the radius decides
    assert pngs(tmp_path) == {"gradient_norms.png", "weight_and_lstm_gradients.png"}


def test_matrix_factorization(tmp_path):
    run("matrix_factorization.py", "--smoke", "--out", tmp_path)
    report = results(tmp_path)
    assert report["relative_gap"] < 1e-2
    assert report["reparametrized_loss"] == pytest.approx(report["gradient_descent_loss"], rel=1e-9)
    # Not convex: along the segment between two minima f rises above them; for G = -I the
    # midpoint is (0, 0), where f = |X|_F^2.
    for values in report["segment_losses"].values():
        assert max(values) > 1.5 * max(values[0], values[-1])
    middle = report["segment_losses"]["G = -I"][len(report["segment_t"]) // 2]
    assert middle == pytest.approx(report["frobenius_norm_squared"])
    assert pngs(tmp_path) == {"factorization_loss.png", "nonconvex_path.png"}


def test_bn_scale_invariance(tmp_path):
    run("bn_scale_invariance.py", "--smoke", "--out", tmp_path)
    report = results(tmp_path)
    assert report["grad_norm_exponent"] == pytest.approx(-1.0, abs=0.01)
    losses = report["train_mode_losses"]
    assert (
        max(losses) - min(losses)
        < 1e-2
        < max(report["eval_mode_losses"]) - min(report["eval_mode_losses"])
    )
    assert set(report["training"]) == {"weight decay 0", "weight decay 0.005"}
    # Equation (2): the predicted step of w/|w| is right to first order in lr.
    assert report["direction_step_error_exponent"] == pytest.approx(2.0, abs=0.1)
    assert abs(report["direction_steps"]["cosine_grad_weight"][0]) < 1e-3
    assert pngs(tmp_path) == {"scale_invariance.png"}


def test_robustness_curve(tmp_path):
    run("robustness_curve.py", "--smoke", "--out", tmp_path)
    report = results(tmp_path)
    accuracies = list(report["robust_accuracy"].values())
    assert accuracies == sorted(accuracies, reverse=True)
    assert all(float(m) <= float(e) for e, m in report["max_perturbation"].items())
    assert pngs(tmp_path) == {"robustness_curve.png"}
    assert (tmp_path / "report.csv").read_text().startswith("sample,clean")


def test_loss_landscape(tmp_path):
    output = run("loss_landscape.py", "--smoke", "--out", tmp_path)
    report = results(tmp_path)
    along = report["mean_loss_along"]
    assert along["signed_gradient"][-1] > along["rademacher"][-1]
    assert along["signed_gradient"][0] == pytest.approx(along["gaussian"][0])
    assert report["rounding_report"]["zero_gradient_samples"] == 1.0
    assert report["healthy_report"]["zero_gradient_samples"] == 0.0
    assert "exactly zero" in output
    assert pngs(tmp_path) == {
        "loss_along.png",
        "loss_surface.png",
        "weight_slice_1d.png",
        "weight_slice_2d.png",
        "gradient_maps.png",
        "linearization_gap.png",
    }


def test_adversarial_training(tmp_path):
    run("adversarial_training.py", "--smoke", "--out", tmp_path)
    report = results(tmp_path)
    assert set(report["accuracy"]) == {"normal", "PGD training", "fast FGSM training"}
    samples = report["test_images"]
    for curves in report["accuracy"].values():
        for curve in curves.values():
            accuracies = [curve["clean"], *(curve[e] for e in ("8.0", "16.0", "32.0"))]
            # A sample broken at a smaller eps stays broken: the curve never rises.
            assert accuracies == sorted(accuracies, reverse=True)
        _, pgd, standard = curves.values()
        # The standard evaluation finds at least about what PGD finds (two samples of
        # slack for the random starts of a 3-step smoke run).
        assert standard["32.0"] <= pgd["32.0"] + 2 / samples
    assert pngs(tmp_path) == {"robustness_by_training.png"}


def test_jax_equinox(tmp_path):
    pytest.importorskip("equinox")
    output = run("jax_equinox.py", "--smoke", "--out", tmp_path)
    report = results(tmp_path)
    robust = report["robust_correct_at_eps_32"]
    assert robust["IteratedSign(3 steps)"] <= robust["FGSM"] <= report["clean_correct"]
    for curve in report["robust_accuracy"].values():
        accuracies = list(curve.values())
        assert accuracies == sorted(accuracies, reverse=True)
    # The loop compiles on the first call; later calls, another eps and retrained
    # parameters reuse it.
    assert report["later_call_seconds"] < report["first_call_seconds"] / 2
    assert report["retrained_model_seconds"] < report["first_call_seconds"] / 2
    assert "compiles the loop" in output
    assert pngs(tmp_path) == {"robustness.png"}


def test_attack_study_on_the_digits_shows_misclassified_images(tmp_path):
    output = run("cifar10_attack.py", "--data", "digits", "--smoke", "--out", tmp_path)
    report = results(tmp_path)
    assert report["gradient_maps"] == {"correct": 4, "wrong": 4}  # real data has mistakes
    assert report["minibatch_images"] == 100
    assert "4 wrongly classified" in output
    unprojected, projected = report["mean_loss_by_step"].values()
    assert unprojected[-1] > projected[-1] >= projected[0]
    assert "step size 4" in list(report["mean_loss_by_step"])[1]
    assert pngs(tmp_path) == {"gradient_maps.png", "loss_vs_step.png"}


def test_attack_study_needs_a_checkpoint_for_cifar10(tmp_path):
    completed = subprocess.run(
        [sys.executable, str(EXAMPLES / "cifar10_attack.py"), "--out", str(tmp_path)],
        capture_output=True,
        text=True,
    )
    assert completed.returncode == 2
    assert "--checkpoint is required" in completed.stderr


def test_gradient_masking(tmp_path):
    output = run("gradient_masking.py", "--smoke", "--out", tmp_path)
    report = results(tmp_path)
    robust = report["robust_accuracy"]
    # The quantizer fools the gradient attacks; Square and straight-through gradients see
    # through it, and the standard suite's report says so.
    assert robust["APGD-CE + APGD-T"] > robust["Square"] + 0.2
    assert robust["APGD-CE + APGD-T"] > robust["APGD-CE, straight-through"] + 0.2
    assert robust["standard suite"] <= robust["APGD-CE + APGD-T"]
    assert any("masks its gradients" in warning for warning in report["masking_warnings"])
    assert "masks its gradients" in output
    assert pngs(tmp_path) == {"gradient_masking.png"}


ARCHITECTURE = '''
import torch


def make(num_classes: int = 10) -> torch.nn.Module:
    """A torchvision-style network (features, pool, classifier), small enough for a test."""
    torch.manual_seed(0)
    network = torch.nn.Module()
    network.features = torch.nn.Sequential(
        torch.nn.Conv2d(3, 4, 3, stride=2, padding=1), torch.nn.BatchNorm2d(4), torch.nn.ReLU()
    )
    network.classifier = torch.nn.Linear(4, num_classes)
    network.forward = lambda x: network.classifier(network.features(x).mean(dim=(2, 3)))
    return network
'''


def _bash_blocks(page: Path) -> list[str]:
    return re.findall(r"^```bash\n(.*?)^```", page.read_text(), re.MULTILINE | re.DOTALL)


def test_the_robustbench_recipe_evaluates_a_checkpoint_saved_from_data_parallel(tmp_path):
    """The tutorial's commands, as written, on a small network whose weights were saved from
    DataParallel (keys under ``module.``, inside ``state_dict``) as RobustBench's are."""
    from signattack.data import SYNTHETIC_MARK, read_cifar10, write_synthetic_cifar10

    (tmp_path / "architecture.py").write_text(ARCHITECTURE)
    sys.path.insert(0, str(tmp_path))
    try:
        import architecture
    finally:
        sys.path.remove(str(tmp_path))
        sys.modules.pop("architecture", None)
    folder = write_synthetic_cifar10(tmp_path / "data", train_size=200, test_size=8)
    (folder / SYNTHETIC_MARK).unlink()  # the recipe fetches CIFAR-10: here, the data it finds
    network = architecture.make()
    images, labels = (torch.from_numpy(a) for a in read_cifar10(folder, "train"))
    optimizer = torch.optim.Adam(network.parameters(), lr=0.05)
    for _ in range(30):  # a network that has learnt something, so that its weights show
        optimizer.zero_grad()
        torch.nn.functional.cross_entropy(network(images.float() / 255), labels).backward()
        optimizer.step()
    wrapped = torch.nn.DataParallel(network)
    assert all(key.startswith("module.") for key in wrapped.state_dict())
    checkpoint = tmp_path / "models" / "cifar10" / "Linf" / "Carmon2019Unlabeled.pt"
    checkpoint.parent.mkdir(parents=True)
    torch.save({"state_dict": wrapped.state_dict(), "epoch": 3}, checkpoint)

    blocks = _bash_blocks(EXAMPLES.parent / "docs" / "tutorials" / "robustbench.md")
    assert blocks[0].startswith("pip install")  # the install is not run here
    fast = " --steps 2 --queries 10 --limit 8 --batch-size 8"
    for block in blocks[1:]:
        lines = [
            line + fast if "signattack evaluate" in line else line for line in block.split("\n")
        ]
        script = "\n".join(lines).replace("python ", f"{sys.executable} ")
        completed = subprocess.run(
            ["bash", "-euo", "pipefail", "-c", script],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=HANG_LIMIT,
        )
        assert completed.returncode == 0, completed.stderr
    entry = json.loads((tmp_path / "entry.json").read_text())
    assert entry["n_examples"] == 8
    images, labels = read_cifar10(tmp_path / "data", "test")
    with torch.no_grad():
        predictions = network.eval()(torch.from_numpy(images).float() / 255).argmax(1)
    correct = int((predictions == torch.from_numpy(labels)).sum())
    # The same weights give the same verdicts (one sample's margin may round either way).
    assert correct >= 4
    clean = float(entry["clean_acc"])  # RobustBench's percentages, as strings
    assert abs(round(clean * 8 / 100) - correct) <= 1
    assert float(entry["robust_acc"]) <= clean  # not autoattack_acc: fewer steps than published
    assert json.loads((tmp_path / "report.json").read_text())
