"""L2PGD: projected gradient descent under L2, checked against closed forms on linear models
and against the exact ball and box in every dtype."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import signattack
from signattack import L2PGD, EpsAttack, LinearClassifier
from signattack.attacks import PerSampleAttack
from signattack.core.l2 import L2
from signattack.core.threat import PIXEL_BOUNDS

FEATURES = 6


def _two_class(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.normal(size=(2, FEATURES)), rng.normal(size=2)


def _batch(count: int, seed: int = 1, low: float = 60.0, high: float = 190.0):
    rng = np.random.default_rng(seed)
    return rng.uniform(low, high, size=(count, FEATURES)), rng.integers(0, 2, size=count)


def test_l2pgd_is_exported_named_and_in_l2():
    assert signattack.L2PGD is L2PGD is signattack.attacks.L2PGD
    attack = L2PGD(0.5, bounds=(0, 1))
    assert attack.name == "PGD-L2"
    assert attack.threat.geometry is L2
    assert attack.resolved_step_size == pytest.approx(2.5 * 0.5 / 10)
    assert isinstance(attack, PerSampleAttack)
    assert isinstance(attack, EpsAttack)
    moved = attack.with_eps(2.0)
    assert isinstance(moved, L2PGD)
    assert moved.eps == 2.0
    assert moved.threat.geometry is L2


@pytest.mark.parametrize(
    ("settings", "error", "match"),
    [
        ({"eps": -1.0}, ValueError, "eps must be >= 0"),
        ({"eps": float("nan")}, ValueError, "eps must be a finite number"),
        ({"eps": "1"}, TypeError, "eps must be a real number"),
        ({"eps": 1.0, "steps": 0}, ValueError, "steps must be >= 1"),
        ({"eps": 1.0, "steps": 2.0}, TypeError, "steps must be an int"),
        ({"eps": 1.0, "step_size": -0.1}, ValueError, "step_size must be >= 0"),
        ({"eps": 1.0, "step_size": 0.1, "relative_step": 0.2}, ValueError, "not both"),
        ({"eps": 1.0, "loss": "hinge"}, ValueError, "loss"),
        ({"eps": 1.0, "bounds": (1, 0)}, ValueError, "bounds must satisfy lower < upper"),
        ({"eps": 1.0, "random_start": 1}, TypeError, "random_start must be a bool"),
        ({"eps": 1.0, "seed": -1}, ValueError, "seed must be"),
    ],
)
def test_settings_are_validated(settings, error, match):
    with pytest.raises(error, match=match):
        L2PGD(**settings)


def test_it_reaches_the_closed_form_distance_to_a_linear_boundary():
    """Two classes, logits ``W x + b``: the smallest L2 perturbation that flips a sample at
    signed distance ``s`` from the boundary ``(w_1 - w_0) . x + b_1 - b_0 = 0`` is ``|s|``.
    The normalised gradient points straight at the boundary, so 5% above that distance every
    sample breaks and 5% below none does (the box, far away, never binds)."""
    rng = np.random.default_rng(0)
    weight = rng.normal(size=(2, FEATURES))
    normal = (weight[1] - weight[0]) / np.linalg.norm(weight[1] - weight[0])
    centre = rng.uniform(110.0, 140.0, size=FEATURES)
    bias = np.array([0.0, -float((weight[1] - weight[0]) @ centre)])
    model = LinearClassifier(weight, bias)
    signed = np.array([5.0, -8.0, 13.0, -21.0, 30.0, -2.5])
    along = rng.normal(scale=10.0, size=(len(signed), FEATURES))
    along -= np.outer(along @ normal, normal)  # moves along the boundary
    x = centre + along + signed[:, None] * normal
    y = (signed > 0).astype(np.int64)
    np.testing.assert_array_equal(np.argmax(x @ weight.T + bias, axis=1), y)
    for i, distance in enumerate(np.abs(signed)):
        one_x, one_y = x[i : i + 1], y[i : i + 1]
        above = L2PGD(1.05 * distance, steps=10).run(model, one_x, one_y)
        below = L2PGD(0.95 * distance, steps=10).run(model, one_x, one_y)
        assert bool(above.success[0])
        assert not bool(below.success[0])
        assert bool(L2.within(above.x_adv, one_x, 1.05 * distance, PIXEL_BOUNDS)[0])


def test_one_step_moves_eps_along_the_unit_gradient():
    """One step of size eps from x (box far away): ``x + eps * g / ||g||_2``, the point of
    the L2 ball that maximises the linearised loss; for a two-class linear model with
    cross-entropy ``g`` is a positive multiple of ``w_other - w_y``."""
    weight, bias = _two_class(3)
    x, _ = _batch(4, seed=4, low=100.0, high=150.0)
    y = np.argmax(x @ weight.T + bias, axis=1)
    eps = 5.0
    x_adv = L2PGD(eps, steps=1, relative_step=1.0)(LinearClassifier(weight, bias), x, y)
    toward = weight[1 - y] - weight[y]
    expected = x + eps * toward / np.linalg.norm(toward, axis=1, keepdims=True)
    np.testing.assert_allclose(x_adv, expected, rtol=0, atol=1e-9 * 255)


def _torch_model(dtype: torch.dtype = torch.float32) -> torch.nn.Module:
    weight, bias = _two_class(5)
    linear = torch.nn.Linear(FEATURES, 2)
    with torch.no_grad():
        linear.weight.copy_(torch.from_numpy(weight))
        linear.bias.copy_(torch.from_numpy(bias))

    class Model(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.linear = linear

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.linear(x.to(torch.float32))

    return Model().eval()


@pytest.mark.parametrize(
    "dtype", [torch.float16, torch.bfloat16, torch.float32, torch.float64, torch.uint8]
)
@pytest.mark.parametrize("random_start", [False, True])
def test_results_lie_in_the_l2_ball_and_the_box_exactly(dtype, random_start):
    """Near the box's corners, where the box cuts the ball, in every dtype: the projection
    keeps every result inside both exactly, as the norm judges it in the input's dtype."""
    x, y = _batch(6, seed=6, low=0.0, high=255.0)
    x[:2] = np.clip(x[:2], 250.0, 255.0)  # samples at the box's edge
    inputs = torch.from_numpy(np.round(x) if dtype == torch.uint8 else x).to(dtype)
    labels = torch.from_numpy(y)
    eps = 30.5
    attack = L2PGD(eps, steps=4, random_start=random_start, seed=2)
    result = attack.run(_torch_model(), inputs, labels)
    assert result.x_adv.dtype == dtype
    assert result.x_adv.shape == inputs.shape
    assert bool(L2.within(result.x_adv, inputs, eps, PIXEL_BOUNDS).all())
    assert not torch.equal(result.x_adv, inputs)


def test_integer_images_round_inside_the_l2_ball():
    """uint8 inputs: every value of the real iterate would round up (the issue's 50.04 at
    radius 50); the integer result still satisfies sum d_i^2 <= eps^2 exactly."""
    weight = np.ones((2, 7)) * np.array([[1.0], [-1.0]])
    model = LinearClassifier(weight, np.zeros(2))
    x = np.full((1, 7), 100, dtype=np.uint8)
    y = np.array([0])
    x_adv = L2PGD(50.0, steps=3, loss="margin")(model, x, y)
    assert x_adv.dtype == np.uint8
    d = x_adv.astype(np.int64) - x.astype(np.int64)
    assert int(np.sum(d * d)) <= 2500
    assert int(np.sum(d * d)) >= 2500 - 2 * 7 * 19  # it moved to the ball's edge, rounded


def test_per_sample_radii_bound_each_sample_and_zero_is_the_identity():
    weight, bias = _two_class(7)
    model = LinearClassifier(weight, bias)
    x, y = _batch(4, seed=8)
    radii = np.array([0.0, 1.0, 10.0, 40.0])
    result = L2PGD(0.0, steps=3).run_per_sample(model, x, y, radii)
    np.testing.assert_array_equal(result.x_adv[0], x[0])
    for i, radius in enumerate(radii):
        assert bool(L2.within(result.x_adv[i : i + 1], x[i : i + 1], radius, PIXEL_BOUNDS)[0])
    np.testing.assert_array_equal(
        result.x_adv[2:3], L2PGD(10.0, steps=3).run(model, x[2:3], y[2:3]).x_adv
    )


def test_targeted_steps_descend_towards_the_target():
    weight, bias = np.eye(3, FEATURES), np.zeros(3)  # class k scores feature k
    model = LinearClassifier(weight, bias)
    x, _ = _batch(5, seed=10)
    predicted = np.argmax(x @ weight.T + bias, axis=1)
    target = (predicted + 1) % 3
    result = L2PGD(200.0, steps=20, targeted=True, loss="margin").run(model, x, target)
    np.testing.assert_array_equal(result.success, result.predictions == target)
    assert bool(np.all(result.success))
    losses = result.losses
    assert bool(np.all(losses[-1] <= losses[0]))  # descended the loss to the targets


def test_a_random_start_is_reproducible_and_keyed_by_the_seed():
    weight, bias = _two_class(11)
    model = LinearClassifier(weight, bias)
    x, y = _batch(3, seed=12)
    attack = L2PGD(20.0, steps=1, step_size=0.0, random_start=True, seed=3)
    start = attack(model, x, y)
    np.testing.assert_array_equal(start, attack(model, x, y))
    other = L2PGD(20.0, steps=1, step_size=0.0, random_start=True, seed=4)
    assert not np.array_equal(start, other(model, x, y))
    assert not np.array_equal(start, x)
    assert bool(L2.within(start, x, 20.0, PIXEL_BOUNDS).all())
