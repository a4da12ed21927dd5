"""evaluate(), early stopping, resumable and distributed runs, smallest breaking eps, CLI."""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import HANG_LIMIT, linear_pair

from signattack import APGD, FGSM, AttackResult, IteratedSign, PerSampleAttack
from signattack.evaluation import RobustnessReport, evaluate, smallest_breaking_eps

EPS = [4.0, 16.0, 32.0]


def _batches(x, y, size=64):
    return [(x[i : i + size], y[i : i + size]) for i in range(0, len(y), size)]


@pytest.fixture(scope="module")
def report(digits, digits_model):
    return evaluate(digits_model, _batches(digits.x_test, digits.y_test), IteratedSign(0, 5), EPS)


@pytest.mark.slow
def test_report_agrees_with_attacking_every_sample_directly(digits, digits_model, report):
    # Counts, never float means: a float64 fraction and a float32 mean of the same count
    # differ in the last bit on some CPUs.
    x, y = digits.x_test, digits.y_test
    assert report.samples == len(y)
    with torch.no_grad():
        clean = (digits_model(x).argmax(1) == y).numpy()
    assert report.clean_correct == tuple(clean.tolist())
    previous = np.array(report.clean_correct)
    for eps in EPS:
        with torch.no_grad():
            direct = (digits_model(IteratedSign(eps, 5)(digits_model, x, y)).argmax(1) == y).numpy()
        robust = np.array(report.robust_correct[eps])
        # Robust in the report means attacked at this eps and survived, as directly.
        assert np.all(direct[robust])
        assert robust.sum() <= direct.sum()
        # Broken at a smaller eps stays broken; only survivors were attacked.
        assert np.all(previous >= robust)
        assert report.attacked[eps] == previous.sum()
        assert 0 < report.max_perturbation[eps] <= eps
        previous = robust
    counts = [sum(report.robust_correct[eps]) for eps in EPS]
    assert counts[-1] < counts[0] < sum(report.clean_correct)


@pytest.mark.slow
def test_report_renders_and_round_trips(report, tmp_path):
    assert "clean" in report.table()
    assert RobustnessReport.from_dict(json.loads(report.to_json())) == report
    rows = report.to_csv().splitlines()
    assert rows[0] == "sample,clean,eps=4,eps=16,eps=32"
    assert len(rows) == report.samples + 1
    assert report.save(tmp_path / "r.csv").read_text() == report.to_csv()
    assert report.plot(tmp_path / "curve.png").axes
    assert (tmp_path / "curve.png").read_bytes().startswith(b"\x89PNG")


class _Counting(torch.nn.Module):
    def __init__(self, model):
        super().__init__()
        self.model = model
        self.samples = 0

    def forward(self, x):
        self.samples += x.shape[0]
        return self.model(x)


@pytest.mark.slow
def test_early_stop_does_less_work_and_is_never_weaker(digits, digits_model):
    x, y = digits.x_test, digits.y_test
    counting = _Counting(digits_model)
    plain = evaluate(counting, _batches(x, y), IteratedSign(0, 10), EPS)
    plain_work, counting.samples = counting.samples, 0
    stopping = evaluate(counting, _batches(x, y), IteratedSign(0, 10, early_stop=True), EPS)
    assert counting.samples < 0.95 * plain_work
    for eps in EPS:
        assert np.all(np.array(plain.robust_correct[eps]) >= np.array(stopping.robust_correct[eps]))


def test_early_stop_freezes_samples_at_their_first_success():
    numpy_model, _ = linear_pair(2, 6, scale=0.05, seed=3)
    rng = np.random.default_rng(0)
    x, y = rng.uniform(50, 200, size=(16, 6)), rng.integers(0, 2, size=16)
    steps, eps = 8, 10.0
    step_size = IteratedSign(eps, steps).resolved_step_size
    result = IteratedSign(eps, steps, early_stop=True).run(numpy_model, x, y)
    assert result.losses.shape == (steps + 1, 16)
    # The plain attack's iterates; a sample freezes at the first one it is misclassified at.
    iterates = [x] + [
        IteratedSign(eps, k, step_size=step_size)(numpy_model, x, y) for k in range(1, steps + 1)
    ]
    wrong = np.array([np.argmax(numpy_model(it), axis=1) != y for it in iterates])
    frozen_at = np.where(wrong.any(axis=0), wrong.argmax(axis=0), steps)
    assert 0 < np.sum(frozen_at < steps) < 16, "the problem should freeze some samples only"
    expected = np.stack([iterates[k][i] for i, k in enumerate(frozen_at)])
    np.testing.assert_array_equal(result.x_adv, expected)
    full = IteratedSign(eps, steps).run(numpy_model, x, y)
    assert np.all(result.success >= full.success)


def test_numpy_models_evaluate_too():
    numpy_model, _ = linear_pair(3, 8, seed=1)
    rng = np.random.default_rng(1)
    x, y = rng.uniform(0, 255, size=(30, 8)), rng.integers(0, 3, size=30)
    result = evaluate(numpy_model, _batches(x, y, 7), FGSM(0), [1.0, 8.0], progress=False)
    assert result.samples == 30
    assert result.max_perturbation[8.0] <= 8.0


class _Interrupt(Exception):
    pass


def _interrupted(batches, after):
    for index, batch in enumerate(batches):
        if index == after:
            raise _Interrupt
        yield batch


@pytest.mark.slow
def test_an_interrupted_run_resumes_to_the_same_report(digits, digits_model, tmp_path):
    batches = _batches(digits.x_test, digits.y_test, 50)
    attack = IteratedSign(0, 5, random_start=True, seed=7)
    expected = evaluate(digits_model, batches, attack, EPS)
    checkpoint = tmp_path / "progress.json"
    with pytest.raises(_Interrupt):
        evaluate(digits_model, _interrupted(batches, 3), attack, EPS, checkpoint=checkpoint)
    assert len(json.loads(checkpoint.read_text())["batches"]) == 3
    assert evaluate(digits_model, batches, attack, EPS, checkpoint=checkpoint) == expected
    with pytest.raises(ValueError, match="belongs to another evaluation"):
        evaluate(digits_model, batches, attack, [1.0], checkpoint=checkpoint)


def _two_class_problem(samples, seed):
    """A two-class linear model, inputs inside the box, and every sample's exact smallest
    breaking L-inf radius: margin / |w_other - w_label|_1 (0 where already wrong)."""
    numpy_model, torch_model = linear_pair(2, 10, seed=seed)
    rng = np.random.default_rng(seed)
    x, y = rng.uniform(100, 150, size=(samples, 10)), rng.integers(0, 2, size=samples)
    w = numpy_model.weight
    logits = numpy_model(x)
    margin = logits[np.arange(samples), y] - logits[np.arange(samples), 1 - y]
    exact = np.where(margin > 0, margin / np.abs(w[1 - y] - w[y]).sum(axis=1), 0.0)
    return numpy_model, torch_model, x, y, exact


def test_smallest_breaking_eps_matches_the_closed_form_of_a_linear_model():
    numpy_model, torch_model, x, y, exact = _two_class_problem(12, seed=5)
    attack = IteratedSign(0, 10, loss="margin")
    found = smallest_breaking_eps(numpy_model, x, y, attack, eps_max=40.0, iterations=12)
    breakable = exact <= 40
    assert np.all(np.isinf(found[~breakable]))
    assert np.all(found[breakable] >= exact[breakable] - 1e-9)
    assert np.all(found[breakable] <= exact[breakable] + 40 / 2**12 + 1e-9)
    from_torch = smallest_breaking_eps(
        torch_model, torch.from_numpy(x), torch.from_numpy(y), attack, eps_max=40.0, iterations=12
    )
    # Each backend against the closed form, not against each other: a bisection decides at
    # every midpoint, and two libraries may round a sample lying within 1 ulp of one apart.
    assert np.all(np.isinf(from_torch[~breakable]))
    assert np.all(from_torch[breakable] >= exact[breakable] - 1e-9)
    assert np.all(from_torch[breakable] <= exact[breakable] + 40 / 2**12 + 1e-9)


@dataclasses.dataclass(frozen=True)
class _ExactLinearAttack:
    """A third-party attack: the exact worst case of a two-class linear model, per sample."""

    weight: np.ndarray
    eps: float = 0.0
    bounds: tuple[float, float] = (0.0, 255.0)
    seed: int | None = None

    def with_eps(self, eps):
        return dataclasses.replace(self, eps=eps)

    def __call__(self, model, x, y):
        return self.run(model, x, y).x_adv

    def run(self, model, x, y, *, rng=None):
        return self.run_per_sample(model, x, y, np.full(len(y), float(self.eps)))

    def run_per_sample(self, model, x, y, eps):
        direction = np.sign(self.weight[1 - y] - self.weight[y])
        x_adv = np.clip(x + eps[:, None] * direction, *self.bounds)
        predictions = model(x_adv).argmax(axis=1)
        return AttackResult(x_adv, np.zeros((1, len(y))), predictions, predictions != y)


def test_smallest_breaking_eps_bisects_any_attack_with_per_sample_radii():
    numpy_model, _, x, y, exact = _two_class_problem(16, seed=7)
    attack = _ExactLinearAttack(numpy_model.weight)
    assert isinstance(attack, PerSampleAttack)
    found = smallest_breaking_eps(numpy_model, x, y, attack, eps_max=32.0, iterations=14)
    breakable = exact <= 32
    assert (exact > 0).sum() >= 4  # some radii to find
    assert (~breakable).sum() >= 2  # and some beyond eps_max
    assert np.all(np.isinf(found[~breakable]))
    assert np.all(found[breakable] >= exact[breakable] - 1e-9)
    assert np.all(found[breakable] <= exact[breakable] + 32 / 2**14 + 1e-9)
    # APGD has no radius per sample: refused by name, before any work.
    assert not isinstance(APGD(8, 5), PerSampleAttack)
    with pytest.raises(TypeError, match=r"run_per_sample\), got APGD"):
        smallest_breaking_eps(numpy_model, x, y, APGD(8, 5), eps_max=8.0)


def test_bad_input_is_rejected():
    numpy_model, _ = linear_pair(2, 4)
    x, y = np.full((3, 4), 10.0), np.array([0, 1, 0])
    with pytest.raises(ValueError, match="at least one batch"):
        evaluate(numpy_model, [], FGSM(0), [1.0])
    with pytest.raises(ValueError, match="at least one radius"):
        evaluate(numpy_model, [(x, y)], FGSM(0), [])
    with pytest.raises(ValueError, match="eps must be >= 0"):
        evaluate(numpy_model, [(x, y)], FGSM(0), [-1.0])
    with pytest.raises(TypeError, match="sequence of radii"):
        evaluate(numpy_model, [(x, y)], FGSM(0), 8.0)
    with pytest.raises(ValueError, match="must not repeat"):
        evaluate(numpy_model, [(x, y)], FGSM(0), [1.0, 1.0])
    with pytest.raises(ValueError, match=r"batch 0: y must hold one label per sample of x \(3\)"):
        evaluate(numpy_model, [(x, y[:2])], FGSM(0), [1.0])
    with pytest.raises(TypeError, match=r"\(x, y\) pairs"):
        evaluate(numpy_model, [x], FGSM(0), [1.0])


def test_progress_is_quiet_when_not_on_a_terminal(capsys):
    numpy_model, _ = linear_pair(2, 4)
    evaluate(numpy_model, [(np.full((3, 4), 10.0), np.array([0, 1, 0]))], FGSM(0), [1.0])
    captured = capsys.readouterr()
    assert captured.err == ""
    assert captured.out == ""


# The command line, on a checkpoint of the trained digits model.


@pytest.fixture(scope="module")
def weights(digits_model, tmp_path_factory):
    path = tmp_path_factory.mktemp("weights") / "digits.pt"
    torch.save(digits_model.state_dict(), path)
    return path


def _cli(*args, env=None, check=True):
    return subprocess.run(
        [sys.executable, "-m", "signattack", "evaluate", *map(str, args)],
        capture_output=True,
        text=True,
        check=check,
        env=env,
        timeout=HANG_LIMIT,
    )


COMMON = ["--model", "signattack.models:DigitsCNN", "--data", "digits", "--eps", "4,16,32"]


@pytest.mark.slow
def test_cli_reports_and_refuses_a_checkpoint_that_does_not_fit(weights, tmp_path, report):
    out = tmp_path / "report.json"
    completed = _cli(*COMMON, "--checkpoint", weights, "--steps", "5", "--report", out)
    assert "clean" in completed.stdout
    written = RobustnessReport.from_dict(json.loads(out.read_text()))
    assert written.robust_correct == report.robust_correct
    # A checkpoint for another model fails clearly and leaves the report as it was.
    wrong = tmp_path / "wrong.pt"
    torch.save(torch.nn.Linear(2, 2).state_dict(), wrong)
    before = out.read_text()
    failed = _cli(*COMMON, "--checkpoint", wrong, "--report", out, check=False)
    assert failed.returncode != 0
    assert "does not fit the model" in failed.stderr
    assert out.read_text() == before
    bad_eps = _cli(
        "--model", "signattack.models:DigitsCNN", "--data", "digits", "--eps", "-1", check=False
    )
    assert bad_eps.returncode == 2
    expected = "signattack evaluate: error: --eps must be distinct finite radii >= 0, got '-1'\n"
    assert bad_eps.stderr == expected


@pytest.mark.slow
def test_cli_run_killed_midway_resumes_to_the_uninterrupted_result(weights, tmp_path):
    args = [*COMMON, "--checkpoint", weights, "--batch-size", "16", "--random-start", "--seed", "3"]
    expected_path = tmp_path / "expected.json"
    _cli(*args, "--report", expected_path)
    progress = tmp_path / "progress.json"
    process = subprocess.Popen(
        [sys.executable, "-m", "signattack", "evaluate", *args, "--resume-file", str(progress)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if progress.exists() and len(json.loads(progress.read_text())["batches"]) >= 3:
            break
        time.sleep(0.05)
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    finished = len(json.loads(progress.read_text())["batches"])
    assert 3 <= finished < 29, "the run was not killed midway"
    resumed_path = tmp_path / "resumed.json"
    _cli(*args, "--resume-file", progress, "--report", resumed_path)
    assert _numbers(resumed_path) == _numbers(expected_path)


@pytest.mark.slow
@pytest.mark.parametrize(
    "attack",
    [["--steps", "3"], ["--attacks", "standard", "--steps", "2", "--queries", "20"]],
    ids=["bim", "standard"],
)
def test_two_processes_under_torchrun_give_the_single_process_result(weights, tmp_path, attack):
    args = [*COMMON, "--checkpoint", weights, "--batch-size", "32", *attack]
    single = tmp_path / "single.json"
    _cli(*args, "--report", single)
    double = tmp_path / "double.json"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    subprocess.run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--nproc_per_node=2",
            f"--master_port={_free_port()}",
            "-m",
            "signattack",
            "evaluate",
            *map(str, args),
            "--report",
            str(double),
        ],
        check=True,
        capture_output=True,
        env=env,
        timeout=HANG_LIMIT,
    )
    one, two = _numbers(single), _numbers(double)
    # Each process checks once whether the model is randomized, outside the batches: the
    # evaluation's own passes differ by that check; every attack's are the same.
    own = one["cost"].pop("evaluation"), two["cost"].pop("evaluation")
    assert two == one
    assert own[1]["forward"] >= own[0]["forward"]


def _numbers(report: Path) -> dict:
    """A report file's results, without its metadata (the wall time, the batches resumed)."""
    written = json.loads(report.read_text())
    written.pop("metadata")
    return written


FAILING_MODEL = """
import os

from signattack.models import DigitsCNN


class FailsOnRankOne(DigitsCNN):
    def forward(self, x):
        if os.environ.get("RANK") == "1":
            raise RuntimeError("the model broke on rank 1")
        return super().forward(x)


def make():
    return FailsOnRankOne()
"""


def _free_port():
    import socket

    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        return server.getsockname()[1]


@pytest.mark.slow
def test_when_one_process_fails_every_process_exits_promptly_with_an_error(tmp_path):
    (tmp_path / "failing_model.py").write_text(FAILING_MODEL)
    port = str(_free_port())
    processes = []
    start = time.monotonic()
    for rank in range(2):  # launched by hand: no torchrun agent to kill the survivor
        env = {
            **os.environ,
            "PYTHONPATH": str(tmp_path),
            "OMP_NUM_THREADS": "1",
            "MASTER_ADDR": "127.0.0.1",
            "MASTER_PORT": port,
            "RANK": str(rank),
            "LOCAL_RANK": str(rank),
            "WORLD_SIZE": "2",
        }
        command = [sys.executable, "-m", "signattack", "evaluate", "--model"]
        command += ["failing_model:make", "--data", "digits", "--eps", "4", "--batch-size", "32"]
        processes.append(
            subprocess.Popen(command, env=env, stderr=subprocess.PIPE, stdout=subprocess.PIPE)
        )
    errors = []
    for process in processes:
        _, stderr = process.communicate(timeout=HANG_LIMIT)
        errors.append(stderr.decode())
    elapsed = time.monotonic() - start
    assert [p.returncode for p in processes] == [1, 1], errors
    # gloo's collectives time out after 30 minutes: a survivor that waited for that would
    # take it; one told of the failure stops with its peer, even on a machine under load.
    assert elapsed < 20 * 60, "the survivor should not wait for a collective timeout"
    everything = "".join(errors)
    assert everything.count("the model broke on rank 1") == 1
    assert "rank 1 failed" in errors[0]
    assert all(len(e.strip().splitlines()) == 1 for e in errors), errors


def test_progress_goes_to_a_log_as_lines_when_the_run_is_long(capsys, monkeypatch):
    from signattack import _progress

    numpy_model, _ = linear_pair(2, 4)
    batches = [(np.full((3, 4), 10.0), np.array([0, 1, 0]))] * 3
    monkeypatch.setattr(_progress, "INTERVAL", 0.0)  # every run counts as long
    evaluate(numpy_model, batches, FGSM(0), [1.0])
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("evaluating")]
    assert len([line for line in err.splitlines() if line.startswith("eps 1, FGSM: ")]) == 3
    assert lines[:3] == [f"evaluating: {n} of 3 batches done, 0 s" for n in (1, 2, 3)]
    assert lines[-1] == "evaluating: finished 3 batches in 0 s"
    evaluate(numpy_model, batches, FGSM(0), [1.0], progress=False)
    assert capsys.readouterr().err == ""
    evaluate(numpy_model, iter(batches), FGSM(0), [1.0])  # no length: no total
    lines = [line for line in capsys.readouterr().err.splitlines() if line.startswith("evaluating")]
    assert lines[0] == "evaluating: 1 batches done, 0 s"


def test_progress_is_a_bar_with_a_total_in_a_notebook(capsys, monkeypatch):
    import types

    from signattack import _progress

    class Kernel:
        kernel = object()

    ipython = types.ModuleType("IPython")
    ipython.get_ipython = lambda: Kernel()  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "IPython", ipython)
    assert _progress.in_notebook()
    seen = []

    def bar(items, *, desc, unit, total=None, **options):
        seen.append((desc, unit, total))
        return items

    tqdm_auto = types.ModuleType("tqdm.auto")
    tqdm_auto.tqdm = bar  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "tqdm.auto", tqdm_auto)
    numpy_model, _ = linear_pair(2, 4)
    batches = [(np.full((3, 4), 10.0), np.array([0, 1, 0]))] * 3
    evaluate(numpy_model, batches, FGSM(0), [1.0])
    assert [shown for shown in seen if shown[1] == "batches"] == [("evaluating", "batches", 3)]
    monkeypatch.setitem(sys.modules, "IPython", types.ModuleType("IPython"))
    assert not _progress.in_notebook()
