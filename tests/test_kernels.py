"""Properties of the array-API kernels, on NumPy and on torch."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from signattack.core import ball_box_limits, clip, round_into_limits, sign_step, signed_unit

DTYPES = [np.float32, np.float64]


@st.composite
def box_problems(draw, dtype=np.float32):
    lower = draw(st.floats(-300, 300, allow_nan=False))
    width = draw(st.floats(1e-3, 600, allow_nan=False))
    upper = lower + width
    shape = draw(hnp.array_shapes(min_dims=1, max_dims=3, max_side=6))
    unit = draw(hnp.arrays(np.float64, shape, elements=st.floats(0, 1)))
    x = np.clip((lower + unit * width).astype(dtype), lower, upper).astype(dtype)
    x = x[(x >= lower) & (x <= upper)]  # keep only points inside the box after rounding
    eps = draw(st.one_of(st.floats(0, 2 * width), st.sampled_from([0.0, 1e-7, 7e-8, 8.0])))
    return x, eps, lower, upper


@pytest.mark.parametrize("dtype", DTYPES)
@given(data=st.data())
def test_limits_contain_x_and_hold_the_ball_exactly(dtype, data):
    x, eps, lower, upper = data.draw(box_problems(dtype))
    low, high = ball_box_limits(x, eps, lower, upper)
    radius = dtype(eps)
    assert low.dtype == high.dtype == x.dtype
    assert np.all(low <= x)
    assert np.all(x <= high)
    assert np.all(np.abs(high - x) <= radius)
    assert np.all(np.abs(x - low) <= radius)
    assert np.all(low >= dtype(lower))
    assert np.all(high <= dtype(upper))


@given(data=st.data())
def test_limits_are_tight_up_to_one_ulp(data):
    x, eps, lower, upper = data.draw(box_problems(np.float64))
    _low, high = ball_box_limits(x, eps, lower, upper)
    ideal_high = np.minimum(upper, x + eps)
    assert np.all(high >= np.nextafter(np.nextafter(ideal_high, -np.inf), -np.inf))


@given(data=st.data())
def test_clip_is_a_projection(data):
    x, eps, lower, upper = data.draw(box_problems(np.float64))
    low, high = ball_box_limits(x, eps, lower, upper)
    v = x + data.draw(hnp.arrays(np.float64, x.shape, elements=st.floats(-500, 500)))
    once = clip(v, low, high)
    assert np.array_equal(clip(once, low, high), once)
    assert np.all((low <= once) & (once <= high))
    inside = (v >= low) & (v <= high)
    assert np.array_equal(once[inside], v[inside])


def test_signed_unit_is_zero_for_zero_and_nan():
    grad = np.array([-2.0, 0.0, np.nan, 3.0, -0.0])
    assert signed_unit(grad, np.float32).tolist() == [-1.0, 0.0, 0.0, 1.0, 0.0]
    assert signed_unit(grad, np.float32).dtype == np.float32


def test_sign_step_matches_formula_on_torch():
    x = torch.tensor([10.0, 250.0, 0.0, 100.0])
    grad = torch.tensor([1.0, 1.0, -1.0, float("nan")])
    low, high = ball_box_limits(x, 8.0, 0.0, 255.0)
    stepped = sign_step(x, grad, 4.0, low, high)
    assert stepped.tolist() == [14.0, 254.0, 0.0, 100.0]
    assert sign_step(stepped, grad, 6.0, low, high).tolist() == [18.0, 255.0, 0.0, 100.0]


@given(
    x=hnp.arrays(np.uint8, st.integers(1, 20)),
    eps=st.floats(0, 40),
    delta=st.floats(-1, 1),
)
def test_rounding_stays_inside_limits_and_is_integral(x, eps, delta):
    x0 = x.astype(np.float32)
    low, high = ball_box_limits(x0, eps, 0.0, 255.0)
    x_adv = clip(x0 + np.float32(delta * eps), low, high)
    rounded = round_into_limits(x_adv, x0, low, high)
    assert np.array_equal(rounded, np.round(rounded))
    assert np.all((rounded >= low) & (rounded <= high))
    assert np.all(np.abs(rounded - x0) <= np.floor(np.float32(eps)))
