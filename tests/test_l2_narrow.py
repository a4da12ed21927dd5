"""The L2 projection's narrow path: inputs of float32, float16 or bfloat16 take plain sums of
squares in float64 and a search on squares, and give the general path's answer."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from signattack.core import l2
from signattack.core.l2 import L2

NARROW = [np.float32, np.float16, torch.float32, torch.float16, torch.bfloat16]


def _array(values, dtype):
    if isinstance(dtype, torch.dtype):
        return torch.from_numpy(np.asarray(values, np.float64)).to(dtype)
    return np.asarray(values, np.float64).astype(dtype)


def _float64(a):
    return np.asarray(a.double() if isinstance(a, torch.Tensor) else a, np.float64)


def _general(feasible, v):
    """The answer of the general path (scaled sums, the breakpoints' search), landed in v's
    dtype the same way."""
    return feasible._land(feasible._point(v), v.dtype)


@pytest.mark.parametrize("dtype", NARROW, ids=str)
def test_narrow_inputs_take_the_narrow_path_and_wide_ones_do_not(dtype):
    x = _array(np.full((2, 5), 0.5), dtype)
    assert L2.feasible(x, 0.1, 0.0, 1.0)._narrow(x.dtype)
    wide = _array(np.full((2, 5), 0.5), torch.float64 if isinstance(dtype, torch.dtype) else None)
    assert not L2.feasible(wide, 0.1, 0.0, 1.0)._narrow(wide.dtype)
    # x and v of different dtypes: their differences are not the narrow dtype's
    assert not L2.feasible(wide, 0.1, 0.0, 1.0)._narrow(x.dtype)


@settings(max_examples=25, deadline=None)
@pytest.mark.parametrize("dtype", NARROW, ids=str)
@given(
    seed=st.integers(0, 2**32 - 1),
    size=st.sampled_from([1, 3, 64, 300]),
    spread=st.sampled_from([0.01, 0.3, 3.0, 300.0]),
    eps=st.sampled_from([0.0, 1e-3, 0.05, 0.5, 3.0, 50.0, float("inf")]),
    faces=st.booleans(),
)
def test_the_narrow_path_gives_the_general_answer(dtype, seed, size, spread, eps, faces):
    # x on the box's faces makes breakpoints 0 and ties; a small spread lets the ball alone
    # bind, a large one stops most elements at the box; rows of v equal to x move nothing
    rng = np.random.default_rng(seed)
    x = rng.uniform(0, 1, (5, size))
    if faces:
        x = np.where(rng.uniform(size=x.shape) < 0.5, np.round(x), x)
    v = x + rng.normal(0, spread, x.shape)
    x, v = _array(x, dtype), _array(v, dtype)
    v[0] = x[0]
    feasible = L2.feasible(x, eps, 0.0, 1.0)
    narrow = feasible._narrow_answer(v)
    assert narrow is not None
    projected = feasible.project(v)
    assert projected.dtype == v.dtype
    assert bool(L2.within(projected, x, eps, (0.0, 1.0)).all())
    general = _float64(_general(feasible, v))
    unit = float(torch.finfo(dtype).eps if isinstance(dtype, torch.dtype) else np.finfo(dtype).eps)
    # the two searches round apart: one unit in the last place, and the ratio to 1e-9
    tolerance = 2 * unit * np.abs(general) + 1e-9 * (eps if np.isfinite(eps) else 1.0)
    assert np.all(np.abs(_float64(narrow) - general) <= tolerance)
    np.testing.assert_array_equal(_float64(projected[0]), _float64(x[0]))


@pytest.mark.parametrize("dtype", NARROW, ids=str)
def test_per_sample_radii_take_the_narrow_path(dtype):
    rng = np.random.default_rng(3)
    x = _array(rng.uniform(0, 1, (4, 20)), dtype)
    v = _array(_float64(x) + rng.normal(0, 1.0, (4, 20)), dtype)
    eps = _array([0.0, 0.1, 0.5, 5.0], dtype)
    feasible = L2.feasible(x, eps, 0.0, 1.0)
    narrow = _float64(feasible._narrow_answer(v))
    general = _float64(_general(feasible, v))
    unit = float(torch.finfo(dtype).eps if isinstance(dtype, torch.dtype) else np.finfo(dtype).eps)
    assert np.all(np.abs(narrow - general) <= 2 * unit * np.abs(general) + 1e-9)
    assert bool(L2.within(feasible.project(v), x, eps, (0.0, 1.0)).all())


@pytest.mark.parametrize("dtype", NARROW, ids=str)
def test_nan_and_infinite_entries_leave_the_narrow_path_for_the_general_one(dtype):
    x = _array([[0.5, 0.5, 0.5], [0.2, 0.4, 0.6]], dtype)
    v = _array([[np.nan, 0.9, 0.5], [np.inf, -np.inf, 0.6]], dtype)
    feasible = L2.feasible(x, 0.3, 0.0, 1.0)
    assert feasible._narrow_answer(v) is None
    projected = _float64(feasible.project(v))
    assert np.all(np.isfinite(projected))
    assert bool(L2.within(feasible.project(v), x, 0.3, (0.0, 1.0)).all())


def test_the_search_on_squares_is_exact_where_the_box_stops_elements():
    # x = 0.9 in three elements, v far above: the box stops each at 1.0 (room 0.1), and the
    # ball's remaining length goes to the free element: t^2 = (eps^2 - 3 * 0.01) / 4
    x = np.array([[0.9, 0.9, 0.9, 0.0]], np.float32)
    v = np.array([[2.9, 2.9, 2.9, 2.0]], np.float32)
    eps = 0.5
    projected = _float64(L2.feasible(x, eps, 0.0, 1.0).project(v))
    free = np.sqrt(eps**2 - 3 * 0.1**2)
    expected = [1.0, 1.0, 1.0, free]
    np.testing.assert_allclose(projected[0], expected, rtol=2e-7, atol=1e-7)


@pytest.mark.parametrize("dtype", [np.float32, torch.float32, torch.bfloat16], ids=str)
def test_the_narrow_direction_is_the_general_one(dtype):
    rng = np.random.default_rng(4)
    grad = rng.normal(0, 1, (6, 50)) * np.array([[1e-30], [1e-3], [1.0], [1e3], [1e30], [0.0]])
    unit = L2.direction(_array(grad, dtype), dtype)
    norms = np.linalg.norm(_float64(unit), axis=1)
    precision = float(torch.finfo(dtype).eps if isinstance(dtype, torch.dtype) else 1e-6)
    np.testing.assert_allclose(norms[:5], 1.0, rtol=30 * precision)
    assert norms[5] == 0.0
    wide = np.asarray(_float64(_array(grad, dtype)))
    expected = wide[:5] / np.linalg.norm(wide[:5], axis=1, keepdims=True)
    np.testing.assert_allclose(_float64(unit)[:5], expected, rtol=4 * precision, atol=1e-12)


def test_squares_fit_only_where_the_wide_float_holds_every_sum():
    wide = np.zeros((1, 10), np.float64)
    assert l2._squares_fit(wide, np.float32)
    assert l2._squares_fit(wide, np.float16)
    assert not l2._squares_fit(wide, np.float64)
    assert not l2._squares_fit(np.zeros((1, 10), np.float32), np.float32)
    assert not l2._squares_fit(wide, np.int32)


@pytest.mark.parametrize("size", [64, 3072])
def test_a_float32_projection_with_no_wider_float_ends_near_the_sphere(size):
    """Under JAX without 64-bit floats the widest float is float32 itself: where the
    rounding of ``x + step`` leaves the first answer outside, the shortened answer lands
    every element no farther from ``x`` than its step, so it ends about as near the sphere
    as a float32 answer from float64 sums does (earlier: 1.3% of the radius short)."""
    jnp = pytest.importorskip("jax.numpy")
    rng = np.random.default_rng(1)
    eps = 1e-3
    x = rng.uniform(0.0, 1.0, size=(8, size)).astype(np.float32)
    v = (x + rng.normal(size=x.shape) * eps * 10).astype(np.float32)
    exact = np.asarray(
        L2.feasible(x.astype(np.float64), eps, 0.0, 1.0).project(v.astype(np.float64))
    )
    landed = L2.feasible(jnp.asarray(x), eps, 0.0, 1.0).project(jnp.asarray(v))
    assert bool(np.all(np.asarray(L2.within(landed, jnp.asarray(x), eps, (0.0, 1.0)))))
    reached = np.linalg.norm(np.asarray(landed, dtype=np.float64) - x, axis=1)
    assert np.all(np.linalg.norm(exact - x, axis=1) - reached <= 5e-3 * eps)


def test_a_feasible_set_made_eagerly_projects_under_jit_and_eagerly_again():
    """What the set makes once is made with it: a first projection traced by `jax.jit`
    leaves no traced value behind for the calls after it."""
    jax = pytest.importorskip("jax")
    jnp = pytest.importorskip("jax.numpy")
    x = jnp.asarray(np.random.default_rng(0).uniform(0, 255, (4, 16)).astype(np.float32))
    feasible = L2.feasible(x, 5.0, 0.0, 255.0)
    traced = jax.jit(feasible.project)(x + 40.0)
    eager = feasible.project(x + 40.0)
    again = jax.jit(feasible.project)(x + 41.0)
    for point in (traced, eager, again):
        assert bool(jnp.all(L2.within(point, x, 5.0, (0.0, 255.0))))
    assert float(jnp.max(jnp.abs(traced - eager))) <= 1e-3
