"""FAB-T under L2: the L2 projection onto a hyperplane within the box against a general
solver, the closed form on linear models, ball and box exactness in every dtype, and the
authors' FAB-T L2 (``pyautoattack``) on the real digits."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from conftest import linear_pair
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from scipy.optimize import minimize

from signattack import FABT, LinearClassifier
from signattack.core.hyperplane import hyperplane_move, project_l2, project_linf
from signattack.core.l2 import L2
from signattack.core.linf import LINF
from signattack.core.streams import SampleStreams


def _room(p: np.ndarray, w: np.ndarray, gap: float) -> np.ndarray:
    """Per coordinate, the most it can move towards closing the gap inside [0, 1]."""
    way = -np.sign(gap) * np.sign(w)
    return np.where(way > 0, 1 - p, np.where(way < 0, p, 0.0))


def _solver(p: np.ndarray, w: np.ndarray, gap: float) -> np.ndarray | None:
    """The smallest L2 move onto ``w . d = -gap`` inside [0, 1], by SLSQP."""
    found = minimize(
        lambda d: d @ d,
        np.zeros_like(p),
        jac=lambda d: 2 * d,
        constraints=[{"type": "eq", "fun": lambda d: w @ d + gap, "jac": lambda d: w}],
        bounds=[(-pi, 1 - pi) for pi in p],
        method="SLSQP",
        options={"ftol": 1e-15, "maxiter": 1000},
    )
    ok = found.success and abs(w @ found.x + gap) < 1e-10
    return found.x if ok else None


@given(
    st.integers(1, 8),
    st.integers(0, 2**32 - 1),
    st.floats(-3.0, 3.0),
    st.booleans(),
)
@settings(max_examples=60, deadline=None)
def test_the_l2_projection_is_the_solvers_smallest_move_onto_the_hyperplane(n, seed, gap, sparse):
    rng = np.random.default_rng(seed)
    p = rng.uniform(0, 1, size=n)
    w = rng.normal(size=n) * (rng.uniform(size=n) < 0.5 if sparse else 1.0)
    d = project_l2(p[None, :], w[None, :], np.array([gap]), 0.0, 1.0)[0]
    assert np.all(p + d >= 0.0)
    assert np.all(p + d <= 1.0)
    if np.abs(w) @ _room(p, w, gap) < abs(gap):
        # The hyperplane misses the box: every coordinate that helps goes all the way, to
        # the point of the box closest to it, and the others stay.
        np.testing.assert_allclose(np.abs(d), _room(p, w, gap) * (w != 0), atol=1e-12)
        return
    np.testing.assert_allclose(w @ d, -gap, atol=1e-9 * max(1.0, np.abs(w).sum()))
    best = _solver(p, w, gap)
    assume(best is not None)  # SLSQP did not converge: nothing to compare against
    np.testing.assert_allclose(d, best, atol=1e-6)
    assert d @ d <= best @ best * (1 + 1e-9) + 1e-15


@given(st.integers(2, 6), st.integers(0, 2**32 - 1))
@settings(max_examples=30, deadline=None)
def test_no_point_of_the_hyperplane_in_the_box_is_closer(n, seed):
    """The variational inequality of the projection: any other feasible point of the
    hyperplane is at least as far (here: the projection of random points onto it)."""
    rng = np.random.default_rng(seed)
    p, w = rng.uniform(0, 1, size=n), rng.normal(size=n)
    target = rng.uniform(0, 1, size=n)  # a point of the box; its hyperplane meets the box
    gap = w @ (p - target)
    d = project_l2(p[None, :], w[None, :], np.array([gap]), 0.0, 1.0)[0]
    for _ in range(20):
        other = rng.uniform(0, 1, size=n)
        # Move `other` onto the hyperplane along the segment to `target`, inside the box.
        towards = target - other
        slope = w @ towards
        if abs(slope) < 1e-9:
            continue
        t = (w @ (target - other)) / slope
        if not 0 <= t <= 1:
            continue
        q = other + t * towards
        assert d @ d <= (q - p) @ (q - p) + 1e-12


def test_the_l2_projection_handles_rows_independently_and_edge_rows():
    p = np.array([[0.5, 0.5], [0.2, 0.4], [0.5, 0.5], [0.1, 0.9], [0.9, 0.5]])
    w = np.array([[3.0, 4.0], [1.0, 1.0], [1.0, -1.0], [0.0, 0.0], [1.0, 0.0]])
    gap = np.array([2.5, 0.3, 0.0, 1.0, 5.0])
    d = project_l2(p, w, gap, 0.0, 1.0)
    np.testing.assert_allclose(d[0], [-0.3, -0.4])  # 2.5 / 25 along -w: the box is far
    np.testing.assert_allclose(d[1], [-0.15, -0.15])
    np.testing.assert_array_equal(d[2], [0.0, 0.0])  # already on its plane
    np.testing.assert_array_equal(d[3], [0.0, 0.0])  # no normal: nothing can move it
    np.testing.assert_allclose(d[4], [-0.9, 0.0])  # out of reach: as far as the box allows
    # The box binds one coordinate: the other takes up the rest.
    d = project_l2(np.array([[0.9, 0.5]]), np.array([[1.0, 1.0]]), np.array([-0.4]), 0.0, 1.0)
    np.testing.assert_allclose(d[0], [0.1, 0.3])


def test_a_gradient_that_would_overflow_half_precision_still_projects():
    """The sum of squared normals overflows float16 (and the projection computes wider)."""
    p = torch.full((2, 6), 0.5, dtype=torch.float16)
    w = torch.full((2, 6), 300.0, dtype=torch.float16)
    gap = torch.tensor([300.0, -300.0], dtype=torch.float16)
    for dtype in (torch.float16, torch.bfloat16):
        d = hyperplane_move(L2, p.to(dtype), w.to(dtype), gap.to(dtype), 0.0, 1.0)
        assert d.dtype == dtype
        expected = torch.tensor([[-1 / 6] * 6, [1 / 6] * 6], dtype=torch.float64)
        torch.testing.assert_close(d.double(), expected, atol=2e-3, rtol=0)


def test_the_projections_are_chosen_by_the_norm_and_keep_the_old_import_path():
    from signattack.attacks import fab

    assert fab.project_linf is project_linf
    p, w, gap = np.array([[0.2, 0.4]]), np.array([[1.0, 2.0]]), np.array([0.5])
    np.testing.assert_array_equal(
        hyperplane_move(LINF, p, w, gap, 0.0, 1.0), project_linf(p, w, gap, 0.0, 1.0)
    )
    np.testing.assert_array_equal(
        hyperplane_move(L2, p, w, gap, 0.0, 1.0), project_l2(p, w, gap, 0.0, 1.0)
    )
    empty = np.zeros((0, 2))
    assert hyperplane_move(L2, empty, empty, np.zeros(0), 0.0, 1.0).shape == (0, 2)


# --- the attack's settings --------------------------------------------------------------------


def test_the_norm_is_a_validated_setting_that_names_the_attack():
    attack = FABT(100.0, 5, norm="L2")
    assert attack.norm == "l2"
    assert attack.threat.geometry is L2
    assert attack.name == "FAB-T (L2)"
    assert FABT(8.0, 5).name == "FAB-T"
    assert FABT(8.0, 5).threat.geometry is LINF
    assert attack.with_eps(50.0).norm == "l2"
    assert attack.with_eps(50.0).eps == 50.0
    with pytest.raises(ValueError, match="norm"):
        FABT(8.0, 5, norm="l1")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="norm"):
        FABT(8.0, 5, norm=2)  # type: ignore[arg-type]


# --- closed forms on linear models ------------------------------------------------------------


def test_on_a_two_class_linear_model_the_l2_distance_is_the_closed_form():
    """The boundary of a linear model is its own linearization: the first step lands on it
    overshot by eta, and the closest point is ``|margin| / ||w_1 - w_0||_2`` away."""
    rng = np.random.default_rng(3)
    weight, bias = rng.normal(size=(2, 12)), rng.normal(size=2)
    model = LinearClassifier(weight, bias)
    x = rng.uniform(100, 150, size=(20, 12))
    logits = x @ weight.T + bias
    y = logits.argmax(1)
    exact = np.abs(logits[:, 1] - logits[:, 0]) / np.linalg.norm(weight[1] - weight[0])
    first = FABT(800.0, 1, bounds=(0, 255), norm="l2").run(model, x, y)
    assert first.distances is not None
    assert np.all(first.success)
    np.testing.assert_allclose(first.distances, 1.05 * exact, rtol=1e-9)
    later = FABT(800.0, 10, bounds=(0, 255), norm="l2").run(model, x, y)
    assert later.distances is not None
    assert np.all(later.distances >= exact * (1 - 1e-9))
    assert np.all(later.distances <= exact * 1.01)
    moved = np.linalg.norm(later.x_adv - x, axis=1)
    np.testing.assert_allclose(moved, later.distances, rtol=1e-9)
    # The L-inf distance of the same points exceeds the L-inf closed form: it is L2 FAB.
    linf = np.abs(logits[:, 1] - logits[:, 0]) / np.abs(weight[1] - weight[0]).sum()
    assert np.all(np.max(np.abs(later.x_adv - x), axis=1) > linf * 1.01)


def test_where_the_box_binds_the_distance_is_the_projection_within_the_box():
    """Inputs at the edge of the box: the closest point moves the free coordinates only,
    and its distance is the exact projection's (longer than the unboxed closed form)."""
    weight = np.array([[0.0, 0.0, 0.0], [1.0, 1.0, 1.0]])
    model = LinearClassifier(weight, np.array([0.0, -330.0]))
    x = np.array([[255.0, 0.0, 20.0], [255.0, 30.0, 0.0]])
    y = np.zeros(2, dtype=np.int64)
    result = FABT(300.0, 30, bounds=(0, 255), norm="l2").run(model, x, y)
    assert result.distances is not None
    # Two coordinates share the gap equally: 330 - 275 = 55 and 330 - 285 = 45.
    exact = np.array([55.0, 45.0]) / math.sqrt(2)
    assert np.all(result.success)
    assert np.all(result.distances >= exact * (1 - 1e-9))
    assert np.all(result.distances <= exact * 1.01)
    assert np.all(result.x_adv[:, 0] == 255.0)


def test_a_radius_below_the_l2_distance_returns_the_input_and_reports_the_distance():
    numpy_model, _ = linear_pair(2, 12, scale=1.0, seed=2)
    x = np.random.default_rng(0).uniform(50, 200, size=(16, 12))
    y = numpy_model(x).argmax(1)
    wide = FABT(800.0, 20, norm="l2").run(numpy_model, x, y)
    radius = float(np.median(wide.distances))
    narrow = FABT(radius, 20, norm="l2").run(numpy_model, x, y)
    inside = wide.distances <= radius * (1 - 1e-3)
    outside = wide.distances > radius * (1 + 1e-3)
    assert inside.any()
    assert outside.any()
    assert np.all(narrow.success[inside])
    assert not np.any(narrow.success[outside])
    np.testing.assert_array_equal(narrow.x_adv[outside], x[outside])
    np.testing.assert_allclose(narrow.distances, wide.distances, rtol=1e-9)


# --- ball and box, exactly, in every dtype ----------------------------------------------------


def _boundary_case(dtype: torch.dtype) -> tuple[torch.nn.Module, torch.Tensor, torch.Tensor]:
    torch.manual_seed(1)
    model = torch.nn.Sequential(torch.nn.Linear(12, 3)).double()
    x = (torch.rand(24, 12, dtype=torch.float64) * 120 + 60).round()
    with torch.no_grad():
        y = model(x).argmax(dim=1)
    return model.to(dtype if dtype.is_floating_point else torch.float64), x.to(dtype), y


@pytest.mark.parametrize(
    "dtype", [torch.float64, torch.float32, torch.float16, torch.bfloat16, torch.uint8]
)
def test_success_is_distances_within_eps_and_points_lie_in_the_ball_and_box(dtype):
    model, x, y = _boundary_case(dtype)
    wide = FABT(800.0, 10, target_classes=2, norm="l2", seed=0).run(
        lambda z: model(z.to(next(model.parameters()).dtype)), x, y
    )
    # A radius inside the spread of distances, and not a number the dtype holds.
    eps = float(torch.quantile(wide.distances.double(), 0.5)) * 1.0001 + 1e-3
    attack = FABT(eps, 8, target_classes=2, restarts=2, norm="l2", seed=0)
    result = attack.run(lambda z: model(z.to(next(model.parameters()).dtype)), x, y)
    assert result.distances is not None
    assert result.x_adv.dtype == dtype
    success = result.success
    assert success.any()
    assert not success.all()
    assert torch.equal(success, result.distances <= eps)
    assert torch.equal(result.x_adv[~success], x[~success])
    assert bool(L2.within(result.x_adv, x, eps, (0.0, 255.0)).all())
    moved = torch.linalg.vector_norm(result.x_adv.double() - x.double(), dim=1)
    assert bool((moved[success] <= eps).all())
    tolerance = 4 * torch.finfo(result.distances.dtype).eps
    torch.testing.assert_close(
        result.distances[success].double(), moved[success], rtol=tolerance, atol=0
    )
    with torch.no_grad():
        predicted = model(result.x_adv.to(next(model.parameters()).dtype)).argmax(dim=1)
    assert torch.equal(success, predicted != y)


def test_misclassified_inputs_are_at_distance_zero_and_left_alone_under_l2():
    numpy_model, _ = linear_pair(3, 12, scale=1.0, seed=4)
    x = np.random.default_rng(1).uniform(0, 255, size=(10, 12))
    wrong = (numpy_model(x).argmax(1) + 1) % 3
    result = FABT(8.0, 5, norm="l2").run(numpy_model, x, wrong)
    np.testing.assert_array_equal(result.distances, np.zeros(10))
    np.testing.assert_array_equal(result.x_adv, x)


# --- restarts -------------------------------------------------------------------------------


@pytest.mark.parametrize("norm", [LINF, L2])
def test_a_restart_starts_at_half_the_radius_in_the_norm(norm):
    from signattack.attacks.fab import _restart_point
    from signattack.core.validation import Bounds

    x = np.full((4, 30), 127.5)
    streams = SampleStreams(tuple(range(1, 5)))
    start = _restart_point(x, 20.0, norm, Bounds(0.0, 255.0), streams, ("fab-t", 2, 1))
    np.testing.assert_allclose(norm.distance(start - x), 10.0, rtol=1e-12)
    # An infinite radius starts half the box's diameter away, not at infinity.
    far = _restart_point(x, math.inf, norm, Bounds(0.0, 255.0), streams, ("fab-t", 2, 1))
    assert np.all(np.isfinite(far))
    assert np.all((far >= 0) & (far <= 255))


def test_restarts_under_l2_draw_from_the_samples_own_streams():
    numpy_model, _ = linear_pair(3, 12, scale=1.0, seed=5)
    x = np.random.default_rng(2).uniform(60, 190, size=(8, 12))
    y = numpy_model(x).argmax(1)
    attack = FABT(30.0, 4, target_classes=2, restarts=3, norm="l2", seed=3)
    whole = attack.run(numpy_model, x, y)
    halves = [attack.run(numpy_model, x[part], y[part]) for part in (slice(0, 4), slice(4, 8))]
    np.testing.assert_array_equal(whole.success, np.concatenate([h.success for h in halves]))
    np.testing.assert_allclose(
        whole.distances, np.concatenate([h.distances for h in halves]), rtol=1e-9
    )


# --- against the authors ------------------------------------------------------------------------


@pytest.mark.slow
def test_as_strong_as_the_authors_fab_t_l2_on_the_real_digits(digits, digits_model):
    reference = pytest.importorskip("pyautoattack.fab_pt")
    eps = 150.0  # about the median distance (0.59 on the [0, 1] box): half the samples robust
    x, y = digits.x_test[:128], digits.y_test[:128]
    ours = FABT(eps, 50, target_classes=9, norm="l2", seed=0).run(digits_model, x, y)
    theirs = (
        reference.FABAttack_PT(
            lambda z: digits_model(z * 255),
            norm="L2",
            n_restarts=1,
            n_iter=50,
            eps=eps / 255,
            seed=0,
            targeted=True,
            n_target_classes=9,
            device="cpu",
        ).perturb(x / 255, y)
        * 255
    )
    with torch.no_grad():
        their_robust = (digits_model(theirs).argmax(1) == y).float().mean().item()
    our_robust = 1 - ours.success.float().mean().item()
    assert our_robust <= their_robust + 0.03
    moved = torch.linalg.vector_norm((ours.x_adv - x).flatten(1).double(), dim=1)
    assert bool((moved <= eps).all())
    # The distances found agree with the authors' where both found a point.
    their_moved = torch.linalg.vector_norm((theirs - x).flatten(1).double(), dim=1)
    with torch.no_grad():
        both = ours.success & (digits_model(theirs).argmax(1) != y)
    assert float(moved[both].median()) <= float(their_moved[both].median()) * 1.1


# --- edges ------------------------------------------------------------------------------------


class _NanPartial(torch.nn.Module):
    """A linear model plus ``0 * sqrt(x_0 - x_0)``: finite logits everywhere, a NaN
    partial derivative in the first coordinate (``0 * inf``)."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(2)
        self.linear = torch.nn.Linear(12, 3).double()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        kink = torch.sqrt(x[:, :1] - x[:, :1])
        return self.linear(x) + 0.0 * kink


@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_a_nan_partial_derivative_moves_nothing_and_never_spreads(norm):
    model = _NanPartial()
    x = torch.rand(8, 12, dtype=torch.float64) * 120 + 60
    with torch.no_grad():
        y = model(x).argmax(dim=1)
    result = FABT(800.0 if norm == "l2" else 200.0, 5, target_classes=2, norm=norm).run(model, x, y)
    assert result.distances is not None
    assert bool(torch.isfinite(result.x_adv).all())
    assert bool(result.success.all())
    # The NaN coordinate moved by round-off only (the mix of x and x0, both there).
    torch.testing.assert_close(result.x_adv[:, 0], x[:, 0], rtol=1e-6, atol=0)


def test_a_one_sample_batch_under_l2():
    numpy_model, _ = linear_pair(3, 12, scale=1.0, seed=6)
    size = 1
    x = np.random.default_rng(3).uniform(60, 190, size=(size, 12))
    y = numpy_model(x).argmax(1)
    result = FABT(100.0, 3, target_classes=2, restarts=2, norm="l2", seed=0).run(numpy_model, x, y)
    assert result.x_adv.shape == x.shape
    assert result.distances is not None
    assert result.distances.shape == (size,)
    np.testing.assert_array_equal(result.success, result.distances <= 100.0)


@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_distances_are_measured_not_rounded_to_a_half_precision_input(norm):
    """A bfloat16 distance holds three digits: 68.10 would read 68.0, and 14.97 would read
    15.0, above a radius of 14.99 that the point is within."""
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 10)).to(torch.bfloat16)
    x = (torch.rand(6, 1, 8, 8) * 255).round().to(torch.bfloat16)
    y = model(x).argmax(1)
    result = FABT(255.0, steps=5, norm=norm, seed=0, target_classes=3).run(model, x, y)
    moved = (result.x_adv.double() - x.double()).flatten(1)
    measured = moved.norm(dim=1) if norm == "l2" else moved.abs().amax(dim=1)
    assert result.distances.dtype == torch.float64
    found = result.success
    assert found.any()
    torch.testing.assert_close(result.distances[found], measured[found], rtol=1e-12, atol=0)
    for eps in measured[found].tolist():
        at = FABT(eps, steps=5, norm=norm, seed=0, target_classes=3).run(model, x, y)
        assert torch.equal(at.success, at.distances <= eps)
