"""Bad input gets a clear ValueError or TypeError naming the argument; nothing is mutated."""

from __future__ import annotations

import copy
import math

import numpy as np
import pytest
import torch
from conftest import linear_pair

from signattack import FGSM, IteratedSign, LinearClassifier, LogitLoss


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"eps": -1.0}, ValueError, r"eps must be >= 0, got -1\.0"),
        ({"eps": math.nan}, ValueError, "eps must be a finite number"),
        ({"eps": math.inf}, ValueError, "eps must be a finite number"),
        ({"eps": "8"}, TypeError, "eps must be a real number, got str"),
        ({"eps": True}, TypeError, "eps must be a real number, got bool"),
        ({"eps": 8, "steps": 0}, ValueError, "steps must be >= 1, got 0"),
        ({"eps": 8, "steps": 2.0}, TypeError, "steps must be an int, got float"),
        ({"eps": 8, "step_size": -0.5}, ValueError, r"step_size must be >= 0, got -0\.5"),
        ({"eps": 8, "bounds": (1, 1)}, ValueError, "bounds must satisfy lower < upper"),
        ({"eps": 8, "bounds": (5, 1)}, ValueError, "bounds must satisfy lower < upper"),
        ({"eps": 8, "bounds": (0, math.inf)}, ValueError, r"bounds\[1\] must be a finite"),
        ({"eps": 8, "bounds": 255}, TypeError, r"bounds must be a pair \(lower, upper\)"),
        ({"eps": 8, "loss": "mse"}, ValueError, "loss must be one of 'ce', 'dlr', 'margin', got"),
        ({"eps": 8, "loss": 3}, TypeError, "loss must be 'ce', 'margin', 'dlr' or a callable"),
        ({"eps": 8, "model_mode": "test"}, ValueError, "model_mode must be one of"),
        ({"eps": 8, "random_start": 1}, TypeError, "random_start must be a bool, got int"),
        ({"eps": 8, "targeted": "yes"}, TypeError, "targeted must be a bool, got str"),
        ({"eps": 8, "seed": 1.5}, TypeError, "seed must be an int >= 0 or None, got float"),
        ({"eps": 8, "seed": -1}, ValueError, "seed must be an int >= 0 or None, got -1"),
    ],
)
def test_bad_parameters_are_rejected_at_construction(kwargs, error, match):
    with pytest.raises(error, match=match):
        IteratedSign(**kwargs)


@pytest.mark.parametrize(
    "make", [np.array, torch.tensor, lambda pair: np.asarray(pair, dtype=np.float32)]
)
def test_bounds_may_be_an_array_of_two_numbers_of_any_library(make):
    attack = IteratedSign(8, bounds=make([0, 255]))
    assert attack.bounds == (0.0, 255.0)
    assert all(type(value) is float for value in attack.bounds)
    with pytest.raises(TypeError, match=r"bounds\[0\] must be a real number, got bool"):
        IteratedSign(8, bounds=np.array([False, True]))
    with pytest.raises(TypeError, match=r"bounds must be a pair"):
        IteratedSign(8, bounds=make([0, 128, 255]))


def test_fgsm_validates_like_iterated_sign():
    with pytest.raises(ValueError, match="eps must be >= 0"):
        FGSM(-2)
    with pytest.raises(ValueError, match="bounds must satisfy lower < upper"):
        FGSM(2, bounds=(3, 3))


def _torch_problem():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(12, 4))
    x = torch.rand(5, 3, 2, 2) * 255
    y = torch.tensor([0, 1, 2, 3, 0])
    return model, x, y


def _with_nan(x):
    x = x.clone()
    x[0, 0, 0, 0] = float("nan")
    return x


@pytest.mark.parametrize(
    ("change", "error", "match"),
    [
        (lambda m, x, y: (m, _with_nan(x), y), ValueError, "x must be finite"),
        (lambda m, x, y: (m, x + 300, y), ValueError, r"x must lie inside bounds \[0, 255\]"),
        (lambda m, x, y: (m, x - 1, y), ValueError, "x must lie inside bounds"),
        (lambda m, x, y: (m, x, y[:3]), ValueError, r"y must have shape \(batch,\) = \(5,\)"),
        (lambda m, x, y: (m, x, y.float()), TypeError, "y must hold integer class labels"),
        (
            lambda m, x, y: (m, x, y + 4),
            ValueError,
            r"labels < 4 \(the model's number of classes\)",
        ),
        (lambda m, x, y: (m, x, y - 1), ValueError, "y must hold class labels >= 0, got -1"),
        (lambda m, x, y: (m, x, y.numpy()), TypeError, "y must come from the same array library"),
        (lambda m, x, y: (m, x.tolist(), y), TypeError, "x must be a torch.Tensor, a jax.Array"),
        (lambda m, x, y: (m, x > 0, y), TypeError, "real floating or integer dtype"),
        (lambda m, x, y: (m, x[0, 0, 0], y), ValueError, "ndim >= 2"),
        (lambda m, x, y: (lambda t: m(t)[None], x, y), ValueError, "logits of shape"),
        (lambda m, x, y: (lambda t: m(t)[:2], x, y), ValueError, r"\(5, classes\), got \(2, 4\)"),
        (lambda m, x, y: (lambda t: m(t).argmax(1), x, y), ValueError, "logits of shape"),
        (lambda m, x, y: ("model", x, y), TypeError, "model must be an nn.Module or a callable"),
    ],
)
def test_bad_batches_are_rejected_and_nothing_is_mutated(change, error, match):
    model, x, y = _torch_problem()
    model, bad_x, bad_y = change(model, x, y)
    snapshot = copy.deepcopy((bad_x, bad_y))
    with pytest.raises(error, match=match):
        IteratedSign(8, 2)(model, bad_x, bad_y)
    for before, after in zip(snapshot, (bad_x, bad_y), strict=True):
        if isinstance(after, torch.Tensor):
            torch.testing.assert_close(after, before, rtol=0, atol=0, equal_nan=True)


def test_inputs_within_round_off_of_the_box_are_accepted():
    model, x, y = _torch_problem()
    x[0, 0, 0, 0] = 255 * (1 + 1e-7)
    x_adv = IteratedSign(8, 2)(model, x, y)
    assert float(x_adv.max()) <= 255


def test_numpy_model_must_follow_the_protocol():
    x = np.full((2, 3), 10.0)
    y = np.array([0, 1])
    with pytest.raises(TypeError, match="NumpyModel"):
        FGSM(1)(lambda v: v, x, y)


def test_numpy_backend_needs_a_closed_form_loss_gradient():
    numpy_model, _ = linear_pair(3, 4)
    x = np.full((2, 4), 10.0)
    y = np.array([0, 1])
    with pytest.raises(TypeError, match="logit_gradient"):
        FGSM(1, loss=lambda logits, labels: logits[:, 0])(numpy_model, x, y)
    with pytest.raises(TypeError, match="logit_gradient"):
        FGSM(1, loss=LogitLoss("first", lambda logits, labels: logits[:, 0]))(numpy_model, x, y)


def test_linear_classifier_checks_its_shapes():
    with pytest.raises(ValueError, match="weight must have shape"):
        LinearClassifier(np.zeros(3), np.zeros(3))
    with pytest.raises(ValueError, match=r"bias must have shape \(2,\)"):
        LinearClassifier(np.zeros((2, 3)), np.zeros(3))
