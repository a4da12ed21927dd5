"""Faults of the evaluation: one decision rule for clean and attacked predictions of a
randomized model, an attack asked (not its spec) for what the evaluation needs, and no
gradient asked of a model that a gradient-free suite attacks."""

from __future__ import annotations

import functools

import numpy as np
import pytest
import torch

from signattack import APGD, FGSM, IteratedSign, Square
from signattack.evaluation import evaluate, rand_attacks, smallest_breaking_eps


class _CoinToss:
    """A NumPy linear model whose every pass adds large noise to the logits, drawn from the
    model's own generator: one pass is a coin toss near the boundary, the mean of many
    passes the model's expected answer."""

    def __init__(self, noise: float = 3.0, seed: int = 0) -> None:
        self.weight = np.random.default_rng(3).normal(size=(4, 16)) / 100
        self.noise = noise
        self.draws = np.random.default_rng(seed)

    def expected(self, x: np.ndarray) -> np.ndarray:
        return x.reshape(len(x), -1) @ self.weight.T

    def __call__(self, x: np.ndarray) -> np.ndarray:
        expected = self.expected(x)
        return expected + self.noise * self.draws.normal(size=expected.shape)

    def vjp(self, x: np.ndarray, cotangent: np.ndarray) -> np.ndarray:
        return (cotangent @ self.weight).reshape(x.shape)


def _coin_problem(samples: int = 200, seed: int = 0):
    model = _CoinToss(seed=seed)
    x = np.random.default_rng(4).uniform(0, 255, size=(samples, 16))
    order = np.argsort(model.expected(x), axis=1)
    y = order[:, -1].copy()
    # A quarter of the labels is the runner-up class: a single pass calls some of those
    # samples correct, the mean of many passes does not.
    y[::4] = order[::4, -2]
    return model, x, y


@pytest.mark.parametrize(
    "attack",
    [APGD(0.0, 1, eot=20, seed=0), rand_attacks(1, seed=0)],
    ids=["APGD-eot20", "rand_attacks"],
)
def test_at_eps_0_a_randomized_model_loses_nothing_the_clean_pass_called_correct(attack):
    model, x, y = _coin_problem(120)
    report = evaluate(model, [(x[:60], y[:60]), (x[60:], y[60:])], attack, [0.0])
    assert report.robust_correct[0.0] == report.clean_correct
    assert sum(report.broken_by[0.0].values()) == 0
    assert report.max_perturbation[0.0] == 0.0
    assert report.metadata["decision_draws"] == 20


def test_every_prediction_of_a_suite_is_made_with_its_most_passes():
    """Samples whose expected margin dwarfs the noise of a 20-pass mean are correct by the
    suite's rule at the clean input and at every point within a small radius: neither the
    clean pass nor an attack that decides with a single pass may call them wrong."""
    model, x, y = _coin_problem(300, seed=1)
    expected = model.expected(x)
    top = np.sort(expected, axis=1)
    eps = 1.0
    shift = eps * np.abs(model.weight).sum(1).max()  # the most a logit moves within eps
    clear = (top[:, -1] - top[:, -2] > 7.0 + 2 * shift) & (expected.argmax(1) == y)
    assert int(clear.sum()) > 40
    suite = [FGSM(0.0), APGD(0.0, 2, eot=20, seed=0)]
    report = evaluate(model, [(x, y)], suite, [eps])
    wrong = [i for i in np.flatnonzero(clear) if not report.clean_correct[i]]
    broken = [i for i in np.flatnonzero(clear) if not report.robust_correct[eps][i]]
    assert wrong == []
    assert broken == []
    assert report.metadata["decision_draws"] == 20


def test_bisection_judges_the_clean_input_as_its_attack_does():
    model, x, y = _coin_problem(80, seed=2)
    attack = IteratedSign(0.0, 1, eot=20)
    found = smallest_breaking_eps(model, x, y, attack, eps_max=4.0, iterations=2)
    mean = np.mean([model(x) for _ in range(200)], axis=0)
    expected_wrong = mean.argmax(1) != y
    ordered = np.sort(mean, axis=1)
    clear = ordered[:, -1] - ordered[:, -2] > 6.0  # far from a 20-pass coin toss
    assert int((expected_wrong & clear).sum()) >= 5
    assert int((~expected_wrong & clear).sum()) >= 5
    assert np.all(found[expected_wrong & clear] == 0.0)
    assert np.all(found[~expected_wrong & clear] > 0.0)


# -- the evaluation asks the attack it made -----------------------------------------------


class _Masked:
    """A NumPy linear model whose gradient is zero everywhere: gradient attacks see
    nothing, Square sees the logits."""

    def __init__(self) -> None:
        rng = np.random.default_rng(5)
        self.weight = rng.normal(size=(4, 12))

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return x.reshape(len(x), -1) @ self.weight.T

    def vjp(self, x: np.ndarray, cotangent: np.ndarray) -> np.ndarray:
        return np.zeros_like(x)


def _masked_problem():
    model = _Masked()
    x = np.random.default_rng(6).uniform(0, 1, size=(40, 12))
    return model, [(x, model(x).argmax(1))]


@pytest.mark.parametrize(
    "square",
    [
        Square(0.0, 60, bounds=(0, 1), seed=0),
        lambda eps: Square(eps, 60, bounds=(0, 1), seed=0),
        functools.partial(Square, queries=60, bounds=(0, 1), seed=0),
    ],
    ids=["instance", "lambda", "partial"],
)
def test_the_masking_warning_comes_however_square_is_given(square):
    model, data = _masked_problem()
    suite = [IteratedSign(0.0, 3, bounds=(0, 1)), square]
    report = evaluate(model, data, suite, [0.5])
    assert [w for w in report.warnings if "masks its gradients" in w], report.warnings
    assert list(report.broken_by[0.5]) == ["IteratedSign", "Square"]
    assert report.broken_by[0.5]["Square"] > 0
    recorded = report.metadata["attacks"][1]
    assert recorded["name"] == "Square"
    assert recorded["gradient_free"] is True
    assert recorded["seed"] == 0
    assert recorded["settings"]["fields"]["queries"] == 60


# -- no gradient asked of a model a gradient-free suite attacks ----------------------------


def _plain_function():
    weight = np.random.default_rng(7).normal(size=(4, 12))

    def model(x: np.ndarray) -> np.ndarray:  # logits, and no vjp
        return x.reshape(len(x), -1) @ weight.T

    x = np.random.default_rng(8).uniform(0, 1, size=(16, 12))
    return model, x, model(x).argmax(1)


class _NoBackward(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        return x.clone()

    @staticmethod
    def backward(ctx, grad):
        raise RuntimeError("this model has no backward pass")


class _Forward(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.linear = torch.nn.Linear(12, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(_NoBackward.apply(x))


def _forward_only():
    torch.manual_seed(9)
    model = _Forward().eval()
    x = torch.rand(16, 12)
    with torch.no_grad():
        return model, x, model(x).argmax(1)


@pytest.mark.parametrize("problem", [_plain_function, _forward_only], ids=["numpy", "torch"])
def test_a_gradient_free_suite_runs_on_a_model_without_gradients(problem):
    model, x, y = problem()
    report = evaluate(model, [(x, y)], Square(0.0, 30, bounds=(0, 1), seed=0), [0.05, 0.5])
    assert report.samples == 16
    assert report.robust_accuracy[0.5] <= report.robust_accuracy[0.05] <= report.clean_accuracy
    assert report.warnings == ()
    with pytest.raises((TypeError, RuntimeError)):  # a gradient attack needs the gradient
        evaluate(model, [(x, y)], IteratedSign(0.0, 2, bounds=(0, 1)), [0.05])


def test_the_gradient_checks_still_run_when_an_attack_asks_for_a_gradient():
    model, data = _masked_problem()
    alone = evaluate(model, data, Square(0.0, 10, bounds=(0, 1), seed=0), [0.1])
    both = evaluate(model, data, [FGSM(0.0, bounds=(0, 1)), Square(0.0, 10, bounds=(0, 1))], [0.1])
    assert not [w for w in alone.warnings if "gradient" in w and "zero" in w]
    assert [w for w in both.warnings if "zero" in w], both.warnings
