"""Attacks on linear models, where the answer is known in closed form."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import linear_pair
from hypothesis import given
from hypothesis import strategies as st

from signattack import FGSM, IteratedSign
from signattack.core import ball_box_limits


def _softmax(z):
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


@pytest.mark.parametrize("backend", ["numpy", "torch"])
@pytest.mark.parametrize("loss", ["ce", "margin"])
@given(
    eps=st.floats(0.5, 60),
    steps=st.integers(1, 8),
    targeted=st.booleans(),
    seed=st.integers(0, 1000),
)
def test_two_class_attack_reaches_the_corner_of_ball_and_box(
    backend, loss, eps, steps, targeted, seed
):
    """Two classes: the loss grows along d = w_other - w_label, so the optimum is a corner."""
    numpy_model, torch_model = linear_pair(2, 10, seed=seed)
    rng = np.random.default_rng(seed)
    x = rng.uniform(0, 255, size=(6, 10))
    y = rng.integers(0, 2, size=6)
    attack = IteratedSign(eps, steps, bounds=(0, 255), targeted=targeted, loss=loss)
    if backend == "numpy":
        x_adv = attack(numpy_model, x, y)
    else:
        x_adv = attack(torch_model, torch.from_numpy(x), torch.from_numpy(y)).numpy()
    w = numpy_model.weight
    other = 1 - y
    direction = np.sign(w[other] - w[y]) * (-1 if targeted else 1)
    low, high = ball_box_limits(x, eps, 0, 255)
    corner = np.where(direction > 0, high, np.where(direction < 0, low, x))
    np.testing.assert_array_equal(x_adv, corner)


@pytest.mark.parametrize("backend", ["numpy", "torch"])
@given(eps=st.floats(0.1, 30), seed=st.integers(0, 1000), targeted=st.booleans())
def test_fgsm_on_multiclass_softmax_regression(backend, eps, seed, targeted):
    """grad_x CE = W^T (softmax(Wx + b) - onehot(y)), so FGSM has a closed form."""
    numpy_model, torch_model = linear_pair(5, 12, seed=seed)
    rng = np.random.default_rng(seed)
    x = rng.uniform(0, 255, size=(7, 12))
    y = rng.integers(0, 5, size=7)
    attack = FGSM(eps, targeted=targeted)
    if backend == "numpy":
        x_adv = attack(numpy_model, x, y)
    else:
        x_adv = attack(torch_model, torch.from_numpy(x), torch.from_numpy(y)).numpy()
    w, b = numpy_model.weight, numpy_model.bias
    grad = (_softmax(x @ w.T + b) - np.eye(5)[y]) @ w
    expected = np.clip(x + (-eps if targeted else eps) * np.sign(grad), 0, 255)
    np.testing.assert_allclose(x_adv, expected, rtol=0, atol=1e-9)


@given(eps=st.floats(0.5, 20), steps=st.integers(1, 6), seed=st.integers(0, 1000))
def test_margin_trace_follows_the_linear_loss(eps, steps, seed):
    """For a linear model the margin at x_adv is margin(x) + (w_o - w_y) . (x_adv - x)."""
    numpy_model, _ = linear_pair(2, 9, seed=seed)
    rng = np.random.default_rng(seed)
    x = rng.uniform(0, 255, size=(4, 9))
    y = rng.integers(0, 2, size=4)
    result = IteratedSign(eps, steps, loss="margin").run(numpy_model, x, y)
    w = numpy_model.weight
    slope = w[1 - y] - w[y]
    logits = numpy_model(x)
    clean = logits[np.arange(4), 1 - y] - logits[np.arange(4), y]
    np.testing.assert_allclose(result.losses[0], clean, rtol=1e-10)
    final = clean + np.sum(slope * (result.x_adv - x), axis=1)
    np.testing.assert_allclose(result.losses[-1], final, rtol=1e-9, atol=1e-9)
    assert np.all(np.diff(result.losses, axis=0) >= -1e-9), "an untargeted step lowered the loss"
