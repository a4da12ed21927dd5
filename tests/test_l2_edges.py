"""Every norm's checks at their edges: the radius (negative, NaN, per sample, misshapen),
arrays without a batch axis, and integer differences that do not fit the widest integer."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from signattack.core.kernels import within_linf_ball
from signattack.core.l2 import L2
from signattack.core.linf import LINF

NORMS = [LINF, L2]
DTYPES = [np.uint8, np.int64, np.float32, np.float64]


def _rows(moves: list[float], dtype) -> tuple[np.ndarray, np.ndarray]:
    """Clean inputs at 10 and points moved by ``moves[i]`` along the first element: the
    distance of row ``i`` is ``moves[i]`` in every norm."""
    x = np.full((len(moves), 3), 10, dtype=dtype)
    x_adv = x.copy()
    x_adv[:, 0] = np.asarray(moves) + 10
    return x_adv, x


@pytest.mark.parametrize("norm", NORMS, ids=lambda n: n.name)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("eps", [-1.0, -0.0 - 1e-300, math.nan, -math.inf])
def test_within_refuses_a_negative_or_nan_radius(norm, dtype, eps):
    x_adv, x = _rows([0.0, 2.0], dtype)
    with pytest.raises(ValueError, match="eps must be >= 0"):
        norm.within(x_adv, x, eps)
    with pytest.raises(ValueError, match="eps must be >= 0"):
        norm.within(x_adv, x, np.array([1.0, eps]))


@pytest.mark.parametrize("norm", NORMS, ids=lambda n: n.name)
@pytest.mark.parametrize("dtype", DTYPES)
def test_within_takes_one_radius_per_sample(norm, dtype):
    x_adv, x = _rows([3.0, 3.0, 0.0, 5.0], dtype)
    eps = np.array([3.0, 2.5, 0.0, math.inf])
    assert norm.within(x_adv, x, eps).tolist() == [True, False, True, True]
    shaped = torch.as_tensor(eps)
    assert norm.within(torch.as_tensor(x_adv), torch.as_tensor(x), shaped).tolist() == [
        True,
        False,
        True,
        True,
    ]
    # the same verdicts, one sample at a time
    for i, radius in enumerate(eps):
        alone = norm.within(x_adv[i : i + 1], x[i : i + 1], float(radius))
        assert alone.tolist() == [[True, False, True, True][i]]


@pytest.mark.parametrize("norm", NORMS, ids=lambda n: n.name)
@pytest.mark.parametrize("dtype", [np.uint8, np.float64])
@pytest.mark.parametrize("shape", [(4, 1), (3,), (1, 4), (5,)])
def test_within_refuses_a_radius_of_another_shape(norm, dtype, shape):
    x_adv, x = _rows([1.0, 1.0, 1.0, 1.0], dtype)
    with pytest.raises(ValueError, match=r"eps must be .*shape \(4,\), got shape"):
        norm.within(x_adv, x, np.ones(shape))


@pytest.mark.parametrize("norm", NORMS, ids=lambda n: n.name)
def test_within_refuses_points_that_are_not_one_per_input(norm):
    x_adv, x = _rows([1.0, 1.0], np.float64)
    with pytest.raises(ValueError, match=r"x_adv must have x's shape \(2, 3\)"):
        norm.within(x_adv[:1], x, 1.0)
    with pytest.raises(ValueError, match="x must have a batch axis"):
        norm.within(np.array(1.0), np.array(1.0), 1.0)


@pytest.mark.parametrize("norm", NORMS, ids=lambda n: n.name)
def test_distance_refuses_an_array_without_a_batch_axis(norm):
    with pytest.raises(ValueError, match="delta must have a batch axis"):
        norm.distance(np.array(3.0))
    assert norm.distance(np.array([[3.0, -4.0]])).tolist() == [4.0 if norm is LINF else 5.0]


@pytest.mark.parametrize("norm", NORMS, ids=lambda n: n.name)
@pytest.mark.parametrize("shape", [(2,), (2, 1), (3, 2), (3, 1, 1, 1)])
def test_feasible_refuses_per_sample_radii_of_another_length(norm, shape):
    x = np.full((3, 2), 0.5)
    with pytest.raises(ValueError, match=r"eps must be .*shape \(3,\) or \(3, 1, \.\.\.\), got"):
        norm.feasible(x, np.full(shape, 0.1), 0.0, 1.0)
    with pytest.raises(ValueError, match="eps must be >= 0"):
        norm.feasible(x, -0.1, 0.0, 1.0)


@pytest.mark.parametrize("norm", NORMS, ids=lambda n: n.name)
@pytest.mark.parametrize("shape", [(3,), (3, 1)])
def test_feasible_takes_per_sample_radii_flat_or_shaped(norm, shape):
    """A ``(batch,)`` radius is one per sample, never broadcast along a sample's elements
    (a ``(3, 3)`` input would take it per column)."""
    x = np.full((3, 3), 0.5)
    eps = np.array([0.0, 0.1, 0.2])
    projected = norm.feasible(x, np.reshape(eps, shape), 0.0, 1.0).project(np.ones((3, 3)))
    assert np.allclose(norm.distance(projected - x), eps, atol=1e-12)


BIG = 2**62


@pytest.mark.parametrize("norm", NORMS, ids=lambda n: n.name)
@pytest.mark.parametrize("library", [np.asarray, torch.as_tensor])
def test_integer_differences_beyond_the_widest_integer_do_not_wrap(norm, library):
    """``2**62 - (-2**62) = 2**63`` wraps to ``-2**63`` in int64: it must count as far."""
    x_adv = library(np.array([[BIG, 0], [5, 0], [-BIG, BIG]], dtype=np.int64))
    x = library(np.array([[-BIG, 0], [0, 0], [BIG, -BIG]], dtype=np.int64))
    assert norm.within(x_adv, x, 10.0).tolist() == [False, True, False]
    bounds = (-(2.0**62), 2.0**62)
    assert norm.within(x_adv, x, 10.0, bounds).tolist() == [False, True, False]
    # a radius beyond int64 (no OverflowError) admits what lies inside it
    assert norm.within(x_adv, x, 1e19).tolist() == [True, True, norm is LINF]
    assert norm.within(x_adv, x, 1e20).tolist() == [True, True, True]
    assert norm.within(x_adv, x, math.inf).tolist() == [True, True, True]


def test_within_linf_ball_is_the_lint_norms_check():
    x_adv, x = _rows([3.0, 4.0], np.uint8)
    assert within_linf_ball(x_adv, x, np.array([3.0, 3.9])).tolist() == [True, False]
    with pytest.raises(ValueError, match="eps must be >= 0"):
        within_linf_ball(x_adv, x, -1.0)
