"""Square under L2 (Andriushchenko et al., 2020): the ball, the box, the budget, the paper."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import correct, linear_pair

from signattack import Square, UnitsWarning
from signattack.attacks.square import _pseudo_gaussian
from signattack.core.l2 import L2


def _l2_distance(x_adv, x) -> np.ndarray:
    delta = np.asarray(x_adv, dtype=np.float64) - np.asarray(x, dtype=np.float64)
    return np.sqrt((delta.reshape(len(delta), -1) ** 2).sum(axis=1))


def test_square_takes_the_norm_keeps_it_and_names_it():
    attack = Square(50.0, 10, norm="L2", seed=0)
    assert attack.norm == "l2"
    assert attack.threat.geometry is L2
    assert attack.name == "Square (L2)"
    assert attack.with_eps(20.0).norm == "l2"
    assert attack.with_eps(20.0).threat.geometry is L2
    assert Square(8.0).name == "Square"
    assert Square(8.0).norm == "linf"
    with pytest.raises(ValueError, match="norm must be one of"):
        Square(8.0, norm="l1")
    with pytest.raises(TypeError, match="norm must be"):
        Square(8.0, norm=2)


@pytest.mark.parametrize("side", [1, 2, 3, 4, 5, 8, 9, 16])
def test_the_bump_is_the_authors(side):
    reference = pytest.importorskip("pyautoattack.square")
    bump = _pseudo_gaussian(side)
    assert bump.shape == (side, side)
    assert np.sum(bump**2) == pytest.approx(1.0)
    attack = reference.SquareAttack(lambda z: z, norm="L2", device="cpu")
    with torch.random.fork_rng(devices=[]):  # the reference turns its bump by torch's RNG
        torch.manual_seed(side)
        theirs = attack.eta(side).double().numpy()
    assert np.allclose(theirs, bump, atol=1e-6) or np.allclose(theirs, bump.T, atol=1e-6)


def _numpy_case(dtype, features=(3, 6, 5), size=12, seed=0):
    classes = 4
    count = int(np.prod(features))
    linear, _ = linear_pair(classes, count, scale=0.05, seed=seed)
    rng = np.random.default_rng(seed)
    if np.issubdtype(dtype, np.integer):
        x = rng.integers(0, 256, size=(size, *features)).astype(dtype)
        x[0].flat[:5] = [0, 255, 0, 255, 0]  # pixels on the box's faces
    else:
        x = rng.uniform(0, 255, size=(size, *features)).astype(dtype)
        x[0].flat[:5] = [0, 255, 0, 255, 0]
    y = linear(x.astype(np.float64)).argmax(axis=1)
    return linear, x, y


@pytest.mark.parametrize(
    ("dtype", "features", "eps"),
    [
        (np.float32, (3, 6, 5), 30.0),
        (np.float32, (20,), 0.7),
        (np.float64, (7, 4), 400.0),
        (np.float64, (3, 6, 5), 30.0),
        (np.uint8, (3, 6, 5), 30.0),
        (np.uint8, (20,), 400.0),
        (np.uint8, (7, 4), 0.7),  # no integer step fits: the clean image comes back
    ],
)
def test_square_l2_stays_exactly_in_ball_and_box(dtype, features, eps):
    linear, x, y = _numpy_case(dtype, features)
    result = Square(eps, 25, norm="l2", seed=1, restarts=2).run(lambda z: linear(z), x, y)
    assert result.x_adv.dtype == x.dtype
    assert result.x_adv.shape == x.shape
    assert np.all(np.asarray(L2.within(result.x_adv, x, eps, (0.0, 255.0))))
    assert result.x_adv.min() >= 0
    assert result.x_adv.max() <= 255
    if np.issubdtype(dtype, np.integer):
        assert np.all(_l2_distance(result.x_adv, x) <= eps)
        if eps < 1:
            np.testing.assert_array_equal(result.x_adv, x)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32])
def test_square_l2_on_torch_keeps_the_dtype_and_stays_in_the_ball(dtype):
    _, module = linear_pair(3, 48, scale=0.05, seed=5)
    model = torch.nn.Sequential(module).float()
    generator = torch.Generator().manual_seed(0)
    x = (torch.rand(10, 3, 4, 4, generator=generator) * 255).to(dtype)
    y = model(x.float()).argmax(dim=1)
    result = Square(300.0, 20, norm="l2", seed=0).run(lambda z: model(z.float()), x, y)
    assert result.x_adv.dtype == dtype
    assert bool(L2.within(result.x_adv, x, 300.0, (0.0, 255.0)).all())
    assert torch.isfinite(result.x_adv).all()


def test_square_l2_moves_on_the_sphere_where_the_box_does_not_bind():
    """Every proposal is scaled to ``||delta||_2 = eps`` before the box: far from the box's
    faces, the points of the samples it could not fool lie on the sphere."""
    linear, _ = linear_pair(3, 60, scale=0.01, seed=3)
    x = np.random.default_rng(3).uniform(100, 150, size=(8, 3, 4, 5))
    y = linear(x).argmax(axis=1)
    eps = 20.0
    result = Square(eps, 30, norm="l2", seed=2).run(linear, x, y)
    robust = ~result.success
    assert robust.any()
    assert np.allclose(_l2_distance(result.x_adv[robust], x[robust]), eps, rtol=1e-6)
    # Under L2 a point moves far less per pixel than the L-inf ball of the same radius allows.
    assert np.abs(result.x_adv - x).max() < eps


class _Counting:
    """A plain function on NumPy arrays that counts the samples it sees."""

    def __init__(self, weight: np.ndarray, bias: np.ndarray) -> None:
        self.weight, self.bias, self.seen = weight, bias, 0

    def __call__(self, x: np.ndarray) -> np.ndarray:
        self.seen += x.shape[0]
        return x.reshape(x.shape[0], -1) @ self.weight.T + self.bias


@pytest.mark.parametrize("restarts", [1, 2])
def test_square_l2_honours_its_query_budget(restarts):
    linear, _ = linear_pair(4, 48, scale=0.05, seed=1)
    model = _Counting(linear.weight, linear.bias)
    x = np.random.default_rng(0).uniform(40, 215, size=(20, 3, 4, 4))
    y = linear(x).argmax(axis=1)
    y[:2] = (y[:2] + 1) % 4  # misclassified before any attack
    queries = 30
    result = Square(150.0, queries, norm="l2", restarts=restarts, seed=3).run(model, x, y)
    assert int(result.queries.sum()) == model.seen, "every evaluation is counted, no other"
    assert np.all(result.queries[:2] == 2)
    expected_robust = 1 + restarts * (queries + 1) + 1
    robust = ~result.success
    assert robust.any()
    assert result.success[2:].any()
    assert np.all(result.queries[robust] == expected_robust)
    assert np.all(result.queries <= expected_robust)
    assert result.losses.shape == (queries + 1, len(y))
    assert np.all(np.diff(result.losses[1:], axis=0) >= 0)  # the best loss so far


@pytest.mark.parametrize("targeted", [False, True])
def test_square_l2_judges_success_at_the_point_it_returns(targeted):
    linear, _ = linear_pair(4, 36, scale=0.05, seed=4)
    x = np.random.default_rng(4).integers(0, 256, size=(16, 4, 9)).astype(np.uint8)
    clean = linear(x.astype(np.float64)).argmax(axis=1)
    y = (clean + 1) % 4 if targeted else clean
    attack = Square(300.0, 60, norm="l2", targeted=targeted, seed=0)
    result = attack.run(lambda z: linear(z), x, y)
    predicted = linear(result.x_adv.astype(np.float64)).argmax(axis=1)
    np.testing.assert_array_equal(result.predictions, predicted)
    np.testing.assert_array_equal(
        result.success, (predicted == y) if targeted else (predicted != y)
    )
    assert 0 < result.success.sum() < len(y)


def test_square_l2_sees_through_a_model_that_writes_into_its_input():
    linear, _ = linear_pair(3, 16, scale=0.05, seed=6)

    def vandal(z: np.ndarray) -> np.ndarray:
        logits = linear(z)
        z *= 0  # writes into what it was given
        return logits

    x = np.random.default_rng(6).uniform(50, 200, size=(6, 4, 4))
    before = x.copy()
    y = linear(x).argmax(axis=1)
    result = Square(60.0, 15, norm="l2", seed=0).run(vandal, x, y)
    np.testing.assert_array_equal(x, before)
    assert np.all(np.asarray(L2.within(result.x_adv, x, 60.0, (0.0, 255.0))))
    assert result.success.any() or _l2_distance(result.x_adv, x).max() > 0


@pytest.mark.slow
def test_square_l2_is_at_least_as_strong_as_the_authors_square(digits, digits_model):
    reference = pytest.importorskip("pyautoattack.square")
    x, y = digits.x_test[:100], digits.y_test[:100]
    eps = 200.0  # about 40% robust for the authors' search at 300 queries, 30% for ours

    class Unit(torch.nn.Module):  # the authors' code takes images in [0, 1]
        def forward(self, z):
            return digits_model(z * 255)

    ours, theirs = [], []
    for seed in range(3):
        found = Square(eps, 300, norm="l2", seed=seed).run(digits_model, x, y)
        ours.append(int((~found.success).sum()))
        with torch.random.fork_rng(devices=[]):  # the reference seeds torch's global RNG
            attack = reference.SquareAttack(
                Unit().eval(), norm="L2", n_queries=300, eps=eps / 255, seed=seed, device="cpu"
            )
            adversarial = attack.perturb(x / 255, y) * 255
        assert np.all(_l2_distance(adversarial, x) <= eps * (1 + 1e-5))
        theirs.append(correct(digits_model, adversarial, y))
    # Robust accuracy in points, averaged over seeds: never weaker than the reference by
    # more than two points.
    assert np.mean(ours) <= np.mean(theirs) + 0.02 * len(y), (ours, theirs)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_square_l2_with_a_radius_far_beyond_the_box_overflows_nothing(dtype):
    linear, x, y = _numpy_case(dtype, (3, 4, 4), size=6)
    with pytest.warns(UnitsWarning):
        result = Square(1e30, 8, norm="l2", seed=0).run(lambda z: linear(z), x, y)
    assert np.all(np.isfinite(result.x_adv))
    assert result.x_adv.min() >= 0
    assert result.x_adv.max() <= 255
