"""The L2 norm: the exact projection onto ball and box, its checks, direction and rounding."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.optimize import minimize

from signattack.core.l2 import L2
from signattack.core.norms import Norm, norm_of

FLOATS = [np.float16, np.float32, np.float64, torch.float16, torch.bfloat16, torch.float32]
FLOATS += [torch.float64]


def _solver(v, x, eps, lower, upper):
    """The projection by a general solver: min ||p - v||^2 subject to ball and box."""
    ball = {
        "type": "ineq",
        "fun": lambda p: eps**2 - np.sum((p - x) ** 2),
        "jac": lambda p: -2.0 * (p - x),
    }
    found = minimize(
        lambda p: 0.5 * np.sum((p - v) ** 2),
        np.clip(x, lower, upper),
        jac=lambda p: p - v,
        bounds=[(lower, upper)] * x.size,
        constraints=[ball],
        method="SLSQP",
        options={"ftol": 1e-16, "maxiter": 1000},
    )
    return found.x


def _case(seed, size, spread, lower=0.0, upper=1.0):
    rng = np.random.default_rng(seed)
    x = rng.uniform(lower, upper, (1, size))
    return x, x + rng.normal(0.0, spread, (1, size))


def _close_to_solver(v, x, eps, lower, upper):
    projected = L2.feasible(x, eps, lower, upper).project(v)
    best = _solver(v[0], x[0], eps, lower, upper)
    assert np.linalg.norm(projected[0] - best) <= 1e-6 * eps
    # and never worse than the solver (the solver's point is feasible to its tolerance)
    assert np.sum((projected - v) ** 2) <= np.sum((best - v[0]) ** 2) * (1 + 1e-9)
    return projected


@settings(max_examples=25)
@given(
    seed=st.integers(0, 2**32 - 1),
    size=st.integers(1, 7),
    spread=st.sampled_from([0.05, 0.5, 5.0, 50.0]),
    eps=st.sampled_from([0.01, 0.2, 0.7, 1.5, 4.0]),
)
def test_projection_equals_a_general_solvers_optimum(seed, size, spread, eps):
    x, v = _case(seed, size, spread)
    _close_to_solver(v, x, eps, 0.0, 1.0)


@pytest.mark.parametrize(
    ("x", "v", "eps"),
    [
        ([0.5, 0.5, 0.5], [90.0, -40.0, 7.0], 0.3),  # far outside, box cuts the ball
        ([0.5, 0.5], [0.5 + 0.6, 0.5 + 0.8 * 0.5], 0.5),  # inside the ball after the clip
        ([0.0, 1.0, 0.3, 0.9], [-1.0, 2.0, 0.6, 1.4], 0.25),  # x on the box's faces
        ([0.2, 0.4, 0.6], [3.0, -3.0, 3.0], 10.0),  # eps larger than the box diagonal
        ([0.2, 0.4, 0.6], [0.2, 0.4, 5.0], 0.35),  # one coordinate moves
        ([0.95, 0.05, 0.5, 0.5], [1.9, -0.9, 0.6, 0.4], 0.3),  # saturates some, not all
    ],
)
def test_projection_on_adversarial_cases_equals_the_solver(x, v, eps):
    _close_to_solver(np.array([v]), np.array([x]), eps, 0.0, 1.0)


def test_projection_on_the_sphere_is_the_point_itself():
    x = np.array([[0.5, 0.5]])
    v = np.array([[0.5 + 0.3, 0.5 + 0.4]])  # exactly at distance 0.5 in binary? close to it
    projected = L2.feasible(x, 0.5, 0.0, 1.0).project(v)
    np.testing.assert_allclose(projected, v, rtol=0, atol=1e-14)


def test_clip_after_rescale_is_not_the_projection_where_the_box_cuts_the_ball():
    x, v, eps = np.array([[0.9, 0.5]]), np.array([[3.0, 1.3]]), 0.5
    delta = v - x
    rescaled = np.clip(x + eps * delta / np.linalg.norm(delta), 0.0, 1.0)  # the peers' way
    projected = _close_to_solver(v, x, eps, 0.0, 1.0)
    # the first element stops at the box (room 0.1), the second takes the rest of the ball
    np.testing.assert_allclose(projected, [[1.0, 0.5 + np.sqrt(eps**2 - 0.1**2)]], rtol=1e-12)
    assert np.linalg.norm(rescaled - projected) > 0.3
    assert np.linalg.norm(rescaled - v) > np.linalg.norm(projected - v) + 0.05


def test_per_sample_eps_projects_each_sample_onto_its_own_ball():
    rng = np.random.default_rng(3)
    x = rng.uniform(0, 1, (4, 2, 3))
    v = x + rng.normal(0, 2.0, x.shape)
    eps = np.array([0.0, 0.1, 0.6, 3.0]).reshape(4, 1, 1)
    projected = L2.feasible(x, eps, 0.0, 1.0).project(v)
    assert np.array_equal(projected[0], x[0])
    for row in range(1, 4):
        best = _solver(v[row].ravel(), x[row].ravel(), eps[row, 0, 0], 0.0, 1.0)
        assert np.linalg.norm(projected[row].ravel() - best) <= 1e-6 * eps[row, 0, 0]


def test_eps_zero_gives_x_and_eps_inf_gives_the_clip():
    x, v = _case(4, 6, 3.0)
    assert np.array_equal(L2.feasible(x, 0.0, 0.0, 1.0).project(v), x)
    assert np.array_equal(L2.feasible(x, np.inf, 0.0, 1.0).project(v), np.clip(v, 0.0, 1.0))


def _float64(values):
    return np.asarray(values.double() if isinstance(values, torch.Tensor) else values, np.float64)


def _tensor(values, dtype):
    if isinstance(dtype, torch.dtype):
        return torch.from_numpy(values).to(dtype)
    return values.astype(dtype)


@settings(max_examples=20)
@pytest.mark.parametrize("dtype", FLOATS, ids=str)
@given(
    seed=st.integers(0, 2**32 - 1),
    scale=st.sampled_from([1.0, 255.0]),
    eps=st.sampled_from([0.0, 1e-3, 0.05, 0.5, 2.0]),
    spread=st.sampled_from([0.01, 0.3, 3.0]),
)
def test_projection_is_exactly_feasible_in_every_dtype(dtype, seed, scale, eps, spread):
    rng = np.random.default_rng(seed)
    x = _tensor(rng.uniform(0, scale, (3, 2, 5)), dtype)
    v = _tensor(rng.uniform(0, scale, (3, 2, 5)) + rng.normal(0, spread * scale, (3, 2, 5)), dtype)
    radius = eps * scale
    projected = L2.feasible(x, radius, 0.0, scale).project(v)
    assert projected.dtype == v.dtype
    assert projected.shape == v.shape
    assert bool(L2.within(projected, x, radius, (0.0, scale)).all())


@settings(max_examples=15)
@pytest.mark.parametrize("dtype", [np.float16, np.float32, torch.float16, torch.bfloat16], ids=str)
@given(seed=st.integers(0, 2**32 - 1), eps=st.sampled_from([0.01, 0.3, 2.0]))
def test_projection_in_a_narrow_dtype_is_the_exact_one_to_an_ulp(dtype, seed, eps):
    rng = np.random.default_rng(seed)
    x = _tensor(rng.uniform(0, 1, (4, 12)), dtype)
    v = _tensor(rng.uniform(0, 1, (4, 12)) + rng.normal(0, 1.0, (4, 12)), dtype)
    projected = L2.feasible(x, eps, 0.0, 1.0).project(v)
    wide = [
        np.asarray(a.double() if isinstance(a, torch.Tensor) else a, np.float64) for a in (x, v)
    ]
    exact = L2.feasible(wide[0], eps, 0.0, 1.0).project(wide[1])
    got = np.asarray(projected.double() if isinstance(projected, torch.Tensor) else projected)
    unit = float(torch.finfo(dtype).eps if isinstance(dtype, torch.dtype) else np.finfo(dtype).eps)
    # one unit in the last place towards x at most (plus the rounding of x's own dtype)
    assert np.all(np.abs(got - exact) <= 2 * unit * np.abs(exact) + 1e-5 * eps)


def test_projection_on_the_boundary_stays_exact_in_float64():
    # points whose exact projection lies on the sphere: rounding must not leave it outside
    rng = np.random.default_rng(5)
    x = rng.uniform(0.3, 0.7, (64, 50))
    v = x + rng.normal(0, 1.0, x.shape) * 1e-2
    eps = float(np.min(np.linalg.norm(v - x, axis=1))) / 2
    projected = L2.feasible(x, eps, 0.0, 1.0).project(v)
    assert bool(L2.within(projected, x, eps, (0.0, 1.0)).all())
    np.testing.assert_allclose(L2.distance(projected - x), eps, rtol=1e-12)


@settings(max_examples=25)
@given(seed=st.integers(0, 2**32 - 1), eps=st.sampled_from([0.05, 0.4, 1.2]))
def test_projection_satisfies_the_variational_inequality_and_is_idempotent(seed, eps):
    rng = np.random.default_rng(seed)
    x = rng.uniform(0, 1, (8, 5))
    v = x + rng.normal(0, 1.0, x.shape)
    feasible = L2.feasible(x, eps, 0.0, 1.0)
    projected = feasible.project(v)
    assert np.array_equal(feasible.project(projected), projected)
    for _ in range(10):
        other = feasible.random_point(rng.uniform(-1, 1, x.shape))
        other = x + (other - x) * rng.uniform(0, 1, (8, 1))  # inside too: the set is convex
        inner = np.sum((v - projected) * (other - projected), axis=1)
        assert np.all(inner <= 1e-12 * (1 + np.linalg.norm(v - x, axis=1)))


def test_random_point_is_the_gaussian_direction_on_the_sphere():
    rng = np.random.default_rng(0)
    x = np.zeros((4000, 4))
    feasible = L2.feasible(x, 2.0, -np.inf, np.inf)
    start = feasible.random_point(rng.uniform(-1, 1, x.shape))
    np.testing.assert_allclose(L2.distance(start), 2.0, rtol=1e-12)
    unit = start / 2.0
    assert np.all(np.abs(unit.mean(axis=0)) < 0.05)
    np.testing.assert_allclose((unit**2).mean(axis=0), 0.25, atol=0.02)  # isotropic


@pytest.mark.parametrize("dtype", FLOATS, ids=str)
def test_random_point_is_exactly_feasible_and_takes_draws_of_either_kind(dtype):
    rng = np.random.default_rng(1)
    x = _tensor(rng.uniform(0, 1, (6, 7)), dtype)
    eps = np.array([0.0, 0.01, 0.3, 1.0, 5.0, np.inf]).reshape(6, 1)
    draws = rng.uniform(-1, 1, (6, 7))
    feasible = L2.feasible(x, eps if isinstance(x, np.ndarray) else torch.from_numpy(eps), 0, 1)
    start = feasible.random_point(draws)
    assert start.dtype == x.dtype
    assert bool(L2.within(start[:5], x[:5], 5.0, (0.0, 1.0)).all())
    assert bool(L2.within(start[1:2], x[1:2], 0.01).all())
    assert bool(L2.within(start[:1], x[:1], 0.0).all())
    if isinstance(x, torch.Tensor):
        again = feasible.random_point(torch.from_numpy(draws))
        np.testing.assert_array_equal(again.float().numpy(), start.float().numpy())


@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64, torch.bfloat16])
def test_direction_has_unit_norm_or_is_zero_and_nan_never_spreads(dtype):
    grad = np.array(
        [
            [3.0, np.nan, 4.0, 0.0],
            [0.0, 0.0, 0.0, 0.0],
            [np.nan, np.nan, np.nan, np.nan],
            [300.0, -300.0, 300.0, 300.0],
            [1e-6, 0.0, -1e-6, 0.0],
        ]
    )
    grad = _tensor(grad, dtype)
    unit = L2.direction(grad, grad.dtype)
    assert unit.dtype == grad.dtype
    values = _float64(unit)
    assert np.all(np.isfinite(values))
    np.testing.assert_allclose(values[0], [0.6, 0.0, 0.8, 0.0], atol=1e-2)
    assert np.all(values[1:3] == 0)
    np.testing.assert_allclose(np.linalg.norm(values[[0, 3, 4]], axis=1), 1.0, atol=1e-2)


def test_direction_neither_overflows_nor_underflows():
    huge = np.full((1, 1000), 300.0, dtype=np.float16)  # its squares overflow float16
    np.testing.assert_allclose(np.linalg.norm(L2.direction(huge, np.float32)), 1.0, rtol=1e-6)
    tiny = np.array([[1e-300, -1e-300]])  # its squares underflow float64
    np.testing.assert_allclose(L2.direction(tiny, np.float64), [[2**-0.5, -(2**-0.5)]])
    infinite = np.array([[np.inf, 1.0, -np.inf]])
    np.testing.assert_allclose(L2.direction(infinite, np.float64), [[2**-0.5, 0, -(2**-0.5)]])


def test_distance_is_the_euclidean_norm_in_the_widest_float():
    rng = np.random.default_rng(2)
    delta = rng.normal(size=(5, 3, 4)).astype(np.float32)
    distance = L2.distance(delta)
    assert distance.shape == (5,)
    assert distance.dtype == np.float64
    wide = delta.astype(np.float64).reshape(5, -1)
    np.testing.assert_allclose(distance, np.linalg.norm(wide, axis=1), rtol=1e-14)
    np.testing.assert_allclose(L2.distance(np.array([[3e200, 4e200]])), [5e200])
    np.testing.assert_allclose(L2.distance(np.array([[3e-200, 4e-200]])), [5e-200])
    assert np.array_equal(L2.distance(np.zeros((2, 0))), [0.0, 0.0])


def test_within_on_integers_is_exact_at_the_boundary():
    x = np.array([[10, 10], [10, 10]], dtype=np.uint8)
    x_adv = np.array([[13, 14], [7, 6]], dtype=np.uint8)
    assert L2.within(x_adv, x, 5.0).tolist() == [True, True]
    assert L2.within(x_adv, x, 4.999).tolist() == [False, False]
    assert L2.within(x_adv, x, np.inf, (0.0, 13.5)).tolist() == [False, True]
    assert L2.within(x_adv, x, 5.0, (6.5, 255.0)).tolist() == [True, False]
    # no wrap-around in uint8, no overflow of the squares
    far = np.array([[255, 0]], dtype=np.uint8)
    near = np.array([[0, 255]], dtype=np.uint8)
    assert L2.within(far, near, 360.0).tolist() == [False]  # 255 * sqrt(2) = 360.62
    assert L2.within(far, near, 360.7).tolist() == [True]
    wide = torch.tensor([[0, 2**31 - 1]], dtype=torch.int32)
    assert L2.within(wide, torch.zeros_like(wide), 1e6).tolist() == [False]


def test_within_on_floats_judges_the_norm_in_the_widest_float():
    x = np.zeros((1, 2), dtype=np.float16)
    point = np.array([[3.0, 4.0]], dtype=np.float16)
    assert L2.within(point, x, 5.0).tolist() == [True]
    assert L2.within(point, x, 4.999).tolist() == [False]
    big = np.array([[300.0, 400.0]], dtype=np.float16)  # its squares overflow float16
    assert L2.within(big, x, 500.0).tolist() == [True]
    broken = np.array([[np.nan, 0.0]], dtype=np.float16)
    assert L2.within(broken, x, np.inf).tolist() == [False]
    assert L2.within(big, x, np.inf).tolist() == [True]
    assert L2.within(big, x, np.inf, (0.0, 255.0)).tolist() == [False]


def test_round_step_keeps_nearest_integers_that_fit_and_truncates_the_rest():
    step = np.array([[2.9, 3.9], [2.6, 3.6], [-2.6, 3.6], [0.4, -0.6]])
    assert L2.round_step(step, 5.0).tolist() == [[3, 4], [3, 4], [-3, 4], [0, -1]]
    assert L2.round_step(step, 4.99).tolist() == [[2, 3], [2, 3], [-2, 3], [0, -1]]
    radius = torch.tensor([5.0, 4.99, 5.0, 0.8]).reshape(4, 1)
    rounded = L2.round_step(torch.from_numpy(step), radius)
    assert rounded.tolist() == [[3, 4], [2, 3], [-3, 4], [0, 0]]
    assert rounded.dtype == torch.float64
    outside = np.array([[4.2, 4.2]])  # a step outside the ball: no integer but zero for sure
    assert L2.round_step(outside, 5.0).tolist() == [[0, 0]]


@settings(max_examples=30)
@given(seed=st.integers(0, 2**32 - 1), radius=st.sampled_from([0.4, 1.0, 2.5, 7.0]))
def test_round_step_stays_in_the_ball_and_moves_each_element_at_most_to_its_rounding(seed, radius):
    rng = np.random.default_rng(seed)
    x = np.zeros((16, 9))
    step = L2.feasible(x, radius, -np.inf, np.inf).project(rng.normal(0, 3.0, x.shape))
    rounded = L2.round_step(step, radius)
    assert np.array_equal(rounded, np.round(rounded))
    assert np.all(np.sum(rounded**2, axis=1) <= radius**2)
    nearest = np.round(step)
    assert np.all((rounded == nearest) | (rounded == np.trunc(step)))
    fits = np.sum(nearest**2, axis=1) <= radius**2
    assert np.array_equal(rounded[fits], nearest[fits])


def test_l2_is_a_norm_and_answers_to_its_names():
    assert isinstance(L2, Norm)
    assert norm_of("l2") is L2
    assert norm_of("L2") is L2
    assert (L2.name, L2.title, L2.robustbench) == ("l2", "L2", "L2")
    assert L2.integer_radius(2.5) == 2.5


@pytest.mark.slow  # importing JAX and compiling the sort take seconds
def test_jax_compiles_the_projection():
    jax = pytest.importorskip("jax")
    jnp = jax.numpy
    rng = np.random.default_rng(6)
    x = rng.uniform(0, 1, (4, 2, 3)).astype(np.float32)
    v = x + rng.normal(0, 1.0, x.shape).astype(np.float32)
    eps = np.array([0.0, 0.2, 0.8, 3.0], dtype=np.float32).reshape(4, 1, 1)
    feasible = L2.feasible(jnp.asarray(x), jnp.asarray(eps), 0.0, 1.0)
    projected = jax.jit(feasible.project)(jnp.asarray(v))
    assert isinstance(projected, jax.Array)
    assert projected.dtype == jnp.float32
    distance = np.asarray(L2.distance(projected - feasible.x))
    assert np.all(distance <= eps.ravel())  # the check within makes, one radius per sample
    expected = L2.feasible(x, eps, 0.0, 1.0).project(v)
    np.testing.assert_allclose(np.asarray(projected), expected, atol=1e-5)


@pytest.mark.parametrize("size", [1, 3, 5])
def test_the_random_start_of_an_odd_sized_sample_is_isotropic(size):
    """The last element of an odd-sized sample has no partner draw: it must not borrow one
    that the first pair also uses (that biased its mean by ten standard errors)."""
    samples = 100_000
    x = np.full((samples, size), 127.5)
    draws = np.random.default_rng(0).uniform(-1.0, 1.0, size=(samples, size))
    moved = L2.feasible(x, 10.0, 0.0, 255.0).random_point(draws) - x
    spread = moved.std(axis=0) / np.sqrt(samples)
    assert (np.abs(moved.mean(axis=0)) < 5 * spread).all()
    np.testing.assert_allclose(np.linalg.norm(moved, axis=1), 10.0, rtol=1e-9)


def _sorted_reference(x, v, eps, lower, upper):
    """The projection with the ratio from one sort of the breakpoints (the compiled path's
    way), in float64, as a reference for the active-set search the eager path takes."""
    from signattack.core import _l2_ratio

    x, v = np.asarray(x, np.float64), np.asarray(v, np.float64)
    feasible = L2.feasible(x, eps, lower, upper)
    delta = np.clip(v, x - 1e150, x + 1e150) - x
    gap = np.clip(x + delta, lower, upper) - x
    size_of, cap = np.abs(delta), np.minimum(np.abs(gap), np.abs(delta))
    top = np.maximum(size_of.max(axis=1, keepdims=True), 1e-300)
    goal = (np.minimum(feasible.radius, top * np.sqrt(x.shape[1] + 1.0)) / top) ** 2
    breaks = cap / np.maximum(size_of, 5e-324)
    ratio = _l2_ratio._sorted_ratio(breaks, size_of / top, cap / top, goal)
    inside = np.linalg.norm(gap, axis=1, keepdims=True) <= feasible.radius
    return np.where(inside, np.clip(v, lower, upper), np.clip(x + ratio * delta, lower, upper))


@settings(max_examples=40)
@given(
    seed=st.integers(0, 2**32 - 1),
    size=st.sampled_from([1, 2, 5, 64, 300]),
    spread=st.sampled_from([0.01, 0.3, 3.0, 300.0]),
    eps=st.sampled_from([1e-4, 0.05, 0.5, 3.0, 50.0]),
    edges=st.booleans(),
)
def test_the_active_set_search_agrees_with_the_sort_where_the_box_binds_or_not(
    seed, size, spread, eps, edges
):
    # x on the box's faces (edges) makes many breakpoints 0 and ties; a small spread lets
    # the ball alone bind (the fast path), a large one stops most elements at the box
    rng = np.random.default_rng(seed)
    x = rng.uniform(0, 1, (6, size))
    if edges:
        x = np.where(rng.uniform(size=x.shape) < 0.5, np.round(x), x)
    v = x + rng.normal(0, spread, x.shape)
    projected = L2.feasible(x, eps, 0.0, 1.0).project(v)
    expected = _sorted_reference(x, v, eps, 0.0, 1.0)
    assert bool(L2.within(projected, x, eps, (0.0, 1.0)).all())
    gap = np.linalg.norm(projected - expected, axis=1)
    assert np.all(gap <= 1e-9 * eps + 1e-12)


@settings(max_examples=10)
@pytest.mark.parametrize("dtype", FLOATS, ids=str)
@given(seed=st.integers(0, 2**32 - 1), eps=st.sampled_from([0.02, 0.4, 3.0]))
def test_projection_in_every_dtype_is_the_float64_one_rounded_towards_x(dtype, seed, eps):
    rng = np.random.default_rng(seed)
    x = _tensor(rng.uniform(0, 1, (5, 40)), dtype)
    v = _tensor(rng.uniform(0, 1, (5, 40)) + rng.normal(0, 0.5, (5, 40)), dtype)
    projected = L2.feasible(x, eps, 0.0, 1.0).project(v)
    assert projected.dtype == v.dtype
    assert bool(L2.within(projected, x, eps, (0.0, 1.0)).all())
    x64, v64 = _float64(x), _float64(v)
    expected = _sorted_reference(x64, v64, eps, 0.0, 1.0)
    unit = float(torch.finfo(dtype).eps if isinstance(dtype, torch.dtype) else np.finfo(dtype).eps)
    assert np.all(np.abs(_float64(projected) - expected) <= 2 * unit * np.abs(expected) + 1e-9)


@pytest.mark.parametrize("library", ["numpy", "torch"])
def test_nan_and_infinite_entries_are_projected_as_the_point_x_and_far_away(library):
    x = np.array([[0.5, 0.5, 0.5], [0.2, 0.4, 0.6]])
    v = np.array([[np.nan, 0.9, 0.5], [np.inf, -np.inf, 0.6]])
    if library == "torch":
        x, v = torch.from_numpy(x), torch.from_numpy(v)
    projected = _float64(L2.feasible(x, 0.3, 0.0, 1.0).project(v))
    assert np.all(np.isfinite(projected))
    assert bool(L2.within(projected, _float64(x), 0.3, (0.0, 1.0)).all())
    # the NaN entry stays at x; the other moves 0.3 towards 0.9 (the whole radius)
    np.testing.assert_allclose(projected[0], [0.5, 0.8, 0.5], rtol=1e-12)
    # infinities pull equally hard on both elements until the box stops them
    np.testing.assert_allclose(projected[1], [0.2 + 0.3 / np.sqrt(2), 0.4 - 0.3 / np.sqrt(2), 0.6])


@pytest.mark.parametrize("dtype", [torch.uint8, np.uint8])
def test_integer_attacks_project_inside_the_ball_through_their_float_copy(dtype):
    # integer inputs reach the projection as float32 copies; the point, rounded by the
    # norm, stays in the ball and the box in the caller's integer dtype
    rng = np.random.default_rng(8)
    x = rng.integers(0, 256, (16, 30))
    v = x + rng.normal(0, 60.0, x.shape)
    xf, vf = x.astype(np.float32), v.astype(np.float32)
    if isinstance(dtype, torch.dtype):
        xf, vf = torch.from_numpy(xf), torch.from_numpy(vf)
    for eps in (0.5, 7.0, 40.0):
        projected = L2.feasible(xf, eps, 0.0, 255.0).project(vf)
        step = L2.round_step(projected - xf, eps)
        landed = xf + step
        integers = landed.to(dtype) if isinstance(landed, torch.Tensor) else landed.astype(dtype)
        original = (
            torch.from_numpy(x).to(dtype) if isinstance(dtype, torch.dtype) else x.astype(dtype)
        )
        assert bool(L2.within(integers, original, eps, (0.0, 255.0)).all())


@pytest.mark.parametrize(
    ("library", "dtype", "far"),
    [
        ("numpy", np.float64, 1e200),
        ("numpy", np.float32, np.inf),
        ("torch", torch.float32, np.inf),
        ("torch", torch.float64, np.inf),
        ("torch", torch.bfloat16, np.inf),
    ],
    ids=str,
)
def test_an_element_far_beyond_the_box_leaves_the_rest_of_the_ball_to_the_others(
    library, dtype, far
):
    # the box stops the far element at 1.0 (0.5 of the radius 0.52 spent); the rest,
    # sqrt(0.52^2 - 0.5^2), is shared by the three others, which v pulls equally
    x = np.array([[0.5, 0.0, 0.0, 0.0]])
    v = np.array([[far, 0.1, 0.1, 0.1]])
    if library == "torch":
        x, v = torch.from_numpy(x).to(dtype), torch.from_numpy(v).to(dtype)
    else:
        x, v = x.astype(dtype), v.astype(dtype)
    projected = _float64(L2.feasible(x, 0.52, -1.0, 1.0).project(v))
    share = np.sqrt((0.52**2 - 0.5**2) / 3)
    unit = float(torch.finfo(dtype).eps if isinstance(dtype, torch.dtype) else np.finfo(dtype).eps)
    np.testing.assert_allclose(projected[0], [1.0, share, share, share], rtol=max(4 * unit, 1e-12))


def test_jax_in_float32_leaves_the_rest_of_the_ball_to_the_others():
    jax = pytest.importorskip("jax")
    jnp = jax.numpy
    x = jnp.asarray([[0.5, 0.0, 0.0, 0.0]], dtype=jnp.float32)
    v = jnp.asarray([[1e20, 0.1, 0.1, 0.1]], dtype=jnp.float32)
    share = np.sqrt((0.52**2 - 0.5**2) / 3)
    for project in (
        lambda p: L2.feasible(x, 0.52, -1.0, 1.0).project(p),
        jax.jit(lambda p: L2.feasible(x, 0.52, -1.0, 1.0).project(p)),
    ):
        projected = np.asarray(project(v), np.float64)
        np.testing.assert_allclose(projected[0], [1.0, share, share, share], rtol=1e-4)
