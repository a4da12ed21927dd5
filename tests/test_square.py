"""Square: a random search that never asks for a gradient (Andriushchenko et al., 2020)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import correct, linear_pair

from signattack import APGD, IteratedSign, Square
from signattack.attacks.square import window_fraction


def test_the_window_schedule_is_the_papers_scaled_to_the_budget():
    fractions = [window_fraction(query, 10_000, 0.8) for query in (0, 10, 11, 50, 51, 8001)]
    assert fractions == [0.8, 0.8, 0.4, 0.4, 0.2, 0.8 / 512]
    # A budget of 1000 reaches each halving ten times sooner.
    assert window_fraction(2, 1000, 0.8) == 0.4
    assert window_fraction(999, 1000, 0.8) == 0.8 / 512


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"queries": 0}, ValueError, "queries must be >= 1"),
        ({"queries": 2.5}, TypeError, "queries must be an int"),
        ({"p_init": 0.0}, ValueError, r"p_init must lie in \(0, 1\]"),
        ({"p_init": 1.5}, ValueError, r"p_init must lie in \(0, 1\]"),
        ({"restarts": 0}, ValueError, "restarts must be >= 1"),
        ({"loss": "mse"}, ValueError, "loss must be one of"),
        ({"targeted": "yes"}, TypeError, "targeted must be a bool"),
        ({"seed": -2}, ValueError, "seed must be an int >= 0"),
    ],
)
def test_square_rejects_bad_settings(kwargs, error, match):
    with pytest.raises(error, match=match):
        Square(8.0, **kwargs)


class _NoBackward(torch.autograd.Function):
    """The identity whose backward pass raises: a model that cannot be differentiated."""

    @staticmethod
    def forward(ctx, x):
        return x.clone()

    @staticmethod
    def backward(ctx, grad):
        raise RuntimeError("this model has no backward pass")


def test_square_runs_on_a_torch_model_whose_backward_raises(digits, digits_model):
    model = torch.nn.Sequential(_Lambda(_NoBackward.apply), digits_model).eval()
    x, y = digits.x_test[:64], digits.y_test[:64]
    with pytest.raises(RuntimeError, match="no backward pass"):
        IteratedSign(32.0, 2)(model, x, y)
    result = Square(32.0, 200, seed=0).run(model, x, y)
    assert float((result.x_adv - x).abs().max()) <= 32
    assert int(result.success.sum()) > 0
    assert correct(digits_model, result.x_adv, y) == int((~result.success).sum())


class _Lambda(torch.nn.Module):
    def __init__(self, function):
        super().__init__()
        self.function = function

    def forward(self, x):
        return self.function(x)


class _Counting:
    """A plain function on NumPy arrays (no ``vjp``) that counts the samples it sees."""

    def __init__(self, weight: np.ndarray, bias: np.ndarray) -> None:
        self.weight, self.bias, self.seen = weight, bias, 0

    def __call__(self, x: np.ndarray) -> np.ndarray:
        self.seen += x.shape[0]
        return x.reshape(x.shape[0], -1) @ self.weight.T + self.bias


@pytest.mark.parametrize("restarts", [1, 3])
def test_square_runs_on_a_numpy_function_and_counts_every_evaluation(restarts):
    linear, _ = linear_pair(4, 12, scale=0.05, seed=1)
    model = _Counting(linear.weight, linear.bias)
    rng = np.random.default_rng(0)
    x = rng.uniform(40, 215, size=(20, 3, 4))
    y = linear(x).argmax(axis=1)
    y[:2] = (y[:2] + 1) % 4  # two samples misclassified before any attack
    with pytest.raises(TypeError, match="vjp"):
        IteratedSign(8.0, 2)(model, x, y)
    model.seen = 0
    queries = 40
    result = Square(12.0, queries, restarts=restarts, seed=3).run(model, x, y)
    assert result.queries is not None
    assert int(result.queries.sum()) == model.seen, "every evaluation is counted, no other"
    assert np.all(result.queries[:2] == 2)  # the clean check and the final one
    robust = ~result.success
    assert robust.any()
    assert result.success[2:].any()
    expected_robust = 1 + restarts * (queries + 1) + 1
    assert np.all(result.queries[robust] == expected_robust)
    assert np.all(result.queries[result.success] <= expected_robust)
    assert np.abs(result.x_adv - x).max() <= 12.0
    np.testing.assert_array_equal(result.success, linear(result.x_adv).argmax(axis=1) != y)
    assert result.losses.shape == (queries + 1, len(y))
    # The trace is the best loss so far: it never falls.
    assert np.all(np.diff(result.losses[1:], axis=0) >= 0)


def test_integer_images_stay_integers_within_floor_eps():
    linear, _ = linear_pair(3, 16, scale=0.05, seed=2)
    x = np.random.default_rng(1).integers(0, 256, size=(10, 1, 4, 4)).astype(np.uint8)
    y = linear(x.astype(np.float64)).argmax(axis=1)
    x_adv = Square(7.9, 60, seed=0)(lambda z: linear(z), x, y)
    assert x_adv.dtype == np.uint8
    moved = np.abs(x_adv.astype(int) - x.astype(int))
    assert moved.max() == 7


def test_targeted_square_reaches_its_targets_on_a_linear_model():
    linear, _ = linear_pair(4, 12, scale=0.05, seed=4)
    x = np.random.default_rng(4).uniform(60, 190, size=(12, 12))
    targets = (np.argmax(linear(x), axis=1) + 1) % 4
    result = Square(100.0, 200, targeted=True, seed=0).run(lambda z: linear(z), x, targets)
    assert result.success.mean() > 0.9
    np.testing.assert_array_equal(result.success, np.argmax(linear(result.x_adv), 1) == targets)


def test_square_refuses_samples_of_more_than_three_axes():
    linear, _ = linear_pair(3, 16, seed=0)
    with pytest.raises(ValueError, match=r"Square searches images of shape"):
        Square(8.0, 5)(linear, np.full((2, 1, 2, 2, 4), 100.0), np.array([0, 1]))


class _Quantized(torch.nn.Module):
    """The digits CNN behind an 8-level quantizer of its input: zero gradients almost
    everywhere, the textbook case of gradient masking."""

    def __init__(self, network: torch.nn.Module) -> None:
        super().__init__()
        self.network = network

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.network(torch.round(x / 255 * 7) / 7 * 255)


@pytest.mark.slow
def test_square_sees_through_a_quantized_input_that_fools_apgd(digits, digits_model):
    model = _Quantized(digits_model).eval()
    x, y = digits.x_test[:150], digits.y_test[:150]
    clean = correct(model, x, y)
    through_gradients = int((~APGD(32.0, 50, seed=0).run(model, x, y).success).sum())
    random_search = int((~Square(32.0, 500, seed=0).run(model, x, y).success).sum())
    assert through_gradients >= clean - 3, "the quantizer masks APGD's gradients"
    assert random_search < through_gradients - 30


@pytest.mark.slow
@pytest.mark.parametrize("eps", [16.0, 32.0])
def test_square_is_at_least_as_strong_as_the_authors_square(digits, digits_model, eps):
    reference = pytest.importorskip("pyautoattack.square")
    x, y = digits.x_test[:200], digits.y_test[:200]

    class Unit(torch.nn.Module):  # the authors' code takes images in [0, 1]
        def forward(self, z):
            return digits_model(z * 255)

    ours, theirs = [], []
    for seed in range(3):
        ours.append(int((~Square(eps, 300, seed=seed).run(digits_model, x, y).success).sum()))
        with torch.random.fork_rng(devices=[]):  # the reference seeds torch's global RNG
            attack = reference.SquareAttack(
                Unit().eval(), n_queries=300, eps=eps / 255, seed=seed, device="cpu"
            )
            adversarial = attack.perturb(x / 255, y) * 255
        theirs.append(correct(digits_model, adversarial, y))
    # Robust accuracy in points, averaged over seeds: never weaker than the reference by
    # more than two points (it is stronger here: every sample draws its own windows, and
    # windows reach the image's last row and column).
    assert np.mean(ours) <= np.mean(theirs) + 0.02 * len(y), (ours, theirs)
