"""APGD and APGD-T under L2: the settings, the ball and the box exactly, the closed form on a
linear model, and strength against the authors' APGD L2 on real digits."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import correct
from hypothesis import given, settings
from hypothesis import strategies as st

from signattack import APGD, APGDT, LinearClassifier
from signattack.attacks.auto_steps import AutoSteps
from signattack.core.l2 import L2
from signattack.core.linf import LINF

# The settings.


@pytest.mark.parametrize("kind", [APGD, APGDT])
def test_the_norm_is_checked_kept_named_and_carried(kind):
    default = kind(4.0)
    assert default.norm == "linf"
    assert default.threat.geometry is LINF
    l2 = kind(4.0, norm="L2")
    assert l2.norm == "l2", "another spelling is kept as the norm's own name"
    assert l2.threat.geometry is L2
    moved = l2.with_eps(9.0)
    assert (moved.eps, moved.norm, moved.threat.geometry) == (9.0, "l2", L2)
    assert l2 != default
    base = "APGD-T" if kind is APGDT else "APGD-CE"
    assert default.name == base, "the L-inf names stay as they were"
    assert l2.name == f"{base} (L2)"


def test_the_name_under_l2_shows_the_loss():
    assert APGD(4.0, loss="dlr", norm="l2").name == "APGD-DLR (L2)"


@pytest.mark.parametrize("kind", [APGD, APGDT])
@pytest.mark.parametrize(
    ("norm", "error"), [("l1", ValueError), ("", ValueError), (2.0, TypeError), (None, TypeError)]
)
def test_an_unknown_norm_is_refused_by_name(kind, norm, error):
    with pytest.raises(error, match="norm must be"):
        kind(4.0, norm=norm)


def test_the_rule_needs_the_box_of_a_norm_other_than_linf():
    with pytest.raises(ValueError, match="bounds must be the box"):
        AutoSteps(0.75, (3,), norm=L2)


# The ball and the box, exactly.


@st.composite
def problems(draw):
    dtype = draw(st.sampled_from([torch.float32, torch.float64, torch.uint8]))
    batch = draw(st.integers(1, 4))
    features = draw(st.integers(2, 8))
    seed = draw(st.integers(0, 2**16))
    generator = torch.Generator().manual_seed(seed)
    lower = draw(st.integers(0, 100))
    upper = lower + draw(st.integers(5, 155))
    x = lower + torch.rand(batch, features, generator=generator, dtype=torch.float64) * (
        upper - lower
    )
    x = x.round().to(dtype) if dtype == torch.uint8 else x.to(dtype).clamp(lower, upper)
    # Some samples on the box's faces, where the box cuts the ball.
    x[:, 0] = lower
    x[:, -1] = upper
    model = torch.nn.Sequential(
        torch.nn.Linear(features, 8), torch.nn.Tanh(), torch.nn.Linear(8, 5)
    )
    model = model.to(torch.float64 if dtype == torch.float64 else torch.float32)
    y = torch.randint(0, 5, (batch,), generator=generator)
    # Radii up to beyond the box's diagonal, where the box is the whole feasible set.
    eps = draw(st.floats(0, 1.2 * (upper - lower) * features**0.5))
    common = {"bounds": (lower, upper), "seed": seed, "norm": "l2"}
    steps = draw(st.integers(1, 12))
    if draw(st.booleans()):
        attack = APGDT(eps, steps, target_classes=draw(st.integers(1, 2)), **common)
    else:
        attack = APGD(eps, steps, loss=draw(st.sampled_from(["ce", "dlr"])), **common)
    return attack, model, x, y


@pytest.mark.filterwarnings(
    "ignore::signattack.UnitsWarning"
)  # radii beyond the diagonal, on purpose
@settings(max_examples=30)
@given(problem=problems())
def test_apgd_l2_keeps_the_ball_the_box_and_the_dtype_exactly(problem):
    attack, model, x, y = problem
    result = attack.run(model, x, y)
    assert result.x_adv.dtype == x.dtype
    assert result.x_adv.shape == x.shape
    assert bool(L2.within(result.x_adv, x, attack.eps, attack.bounds).all())
    assert result.losses.shape == (attack.steps + 1, x.shape[0])
    with torch.no_grad():
        wrong = model(result.x_adv.to(next(model.parameters()).dtype)).argmax(1) != y
    assert torch.equal(result.success, wrong)


def test_apgd_l2_leaves_the_inputs_and_the_global_random_state_alone():
    model = torch.nn.Sequential(torch.nn.Linear(6, 5)).double()
    x = torch.rand(5, 6, dtype=torch.float64) * 255
    y = torch.randint(0, 5, (5,))
    before, state = x.clone(), torch.random.get_rng_state()
    attack = APGD(30.0, 8, restarts=2, norm="l2", seed=3)
    first = attack(model, x, y)
    assert torch.equal(x, before)
    assert torch.equal(state, torch.random.get_rng_state())
    assert torch.equal(first, attack(model, x, y)), "the seed decides every draw"


# The closed form: the L2 distance to a linear classifier's hyperplane.


def _at_distance(distance, features, count, seed, *, pinned=False):
    """A two-class linear model ``z = (0, w.x + b)`` and ``count`` samples, each at L2
    distance ``distance`` from its hyperplane within the box [0, 255] (half on each side),
    labelled with their class. ``pinned``: every sample lies on the face ``x_0 = 0`` of the
    box and ``w_0`` pushes it out through that face, so that the shortest way to the
    hyperplane inside the box moves the other coordinates only."""
    rng = np.random.default_rng(seed)
    w = rng.normal(size=features)
    w *= 0.1 / np.linalg.norm(w)  # margins of a few logits: cross-entropy does not saturate
    centre = np.full(features, 127.5)
    if pinned:
        w[0] = 3 * np.linalg.norm(w[1:])
        centre[0] = 0.0
    b = -float(w @ centre)
    model = LinearClassifier(np.stack([np.zeros(features), w]), np.array([0.0, b]))
    free = np.arange(1 if pinned else 0, features)
    unit = np.zeros(features)
    unit[free] = w[free] / np.linalg.norm(w[free])
    points = rng.uniform(110, 145, size=(count, features))
    if pinned:
        points[:, 0] = 0.0
    # Move each point along the free directions onto the hyperplane, then off it.
    points -= ((points @ w + b) / (w @ unit))[:, None] * unit
    side = np.where(np.arange(count) % 2 == 0, 1.0, -1.0)
    if pinned:
        side[:] = 1.0  # class 1: the attack must lower w.x, which pushes x_0 below 0
    x = points + side[:, None] * distance * unit
    labels = (side > 0).astype(np.int64)
    assert np.all((x >= 0) & (x <= 255))
    return model, x, labels


@pytest.mark.parametrize("pinned", [False, True], ids=["open", "box-face"])
@pytest.mark.parametrize("loss", ["ce", "margin"])
def test_apgd_l2_reaches_the_closed_form_distance_to_the_hyperplane(pinned, loss):
    # The smallest L2 perturbation that crosses w.x + b = 0 has length |w.x + b| / ||w||
    # (with x_0 pinned to the box's face: / ||w_free||). A little beyond it every sample
    # breaks; a little short of it none can. On the box's face, rescaling into the ball and
    # then clipping (the authors' code) spends most of the radius on x_0, which the clip
    # takes back: in 10 steps it breaks none of these samples; the exact projection gives
    # the whole radius to the other coordinates.
    distance = 12.0
    model, x, labels = _at_distance(distance, 10, 8, seed=1, pinned=pinned)
    beyond = APGD(1.01 * distance, 10, loss=loss, norm="l2", seed=0).run(model, x, labels)
    assert bool(np.all(beyond.success)), np.asarray(beyond.success)
    assert bool(np.all(L2.within(beyond.x_adv, x, 1.01 * distance, (0.0, 255.0))))
    short = APGD(0.99 * distance, 10, loss=loss, norm="l2", seed=0).run(model, x, labels)
    assert not bool(np.any(short.success))


def test_apgd_l2_on_torch_reaches_the_closed_form_distance_too():
    distance = 20.0
    model, x, labels = _at_distance(distance, 12, 6, seed=2)
    module = torch.nn.Linear(12, 2).double()
    with torch.no_grad():
        module.weight.copy_(torch.from_numpy(model.weight))
        module.bias.copy_(torch.from_numpy(model.bias))
    x_t, y_t = torch.from_numpy(x), torch.from_numpy(labels)
    beyond = APGD(1.01 * distance, 10, norm="l2", seed=1).run(module, x_t, y_t)
    assert bool(beyond.success.all())
    assert not bool(
        APGD(0.99 * distance, 10, norm="l2", seed=1).run(module, x_t, y_t).success.any()
    )


# Strength against the authors' APGD L2 on real digits.


@pytest.fixture(scope="module")
def digits_mlp(digits):
    """A small MLP trained for a few seconds on the digits."""
    torch.manual_seed(0)
    model = torch.nn.Sequential(
        torch.nn.Flatten(), torch.nn.Linear(64, 64), torch.nn.ReLU(), torch.nn.Linear(64, 10)
    )
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    generator = torch.Generator().manual_seed(0)
    x, y = digits.x_train / 255, digits.y_train
    for _ in range(15):
        order = torch.randperm(len(y), generator=generator)
        for start in range(0, len(order), 64):
            index = order[start : start + 64]
            loss = torch.nn.functional.cross_entropy(model(x[index]), y[index])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    return _PixelUnits(model).eval()


class _PixelUnits(torch.nn.Module):
    """A network on [0, 1] taking pixels in [0, 255]."""

    def __init__(self, network: torch.nn.Module) -> None:
        super().__init__()
        self.network = network

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.network(x / 255)


@pytest.mark.slow
@pytest.mark.parametrize("eps", [0.5, 0.7])
def test_apgd_l2_is_at_least_as_strong_as_the_authors_apgd_l2(digits, digits_mlp, eps):
    reference = pytest.importorskip("pyautoattack.autopgd_base")
    x, y = digits.x_test[:200], digits.y_test[:200]
    unit = digits_mlp.network
    ours, theirs = [], []
    for seed in range(3):
        attack = APGD(eps * 255, 50, norm="l2", seed=seed)
        adversarial = attack(digits_mlp, x, y)
        assert bool(L2.within(adversarial, x, eps * 255, (0.0, 255.0)).all())
        ours.append(correct(digits_mlp, adversarial, y))
        with torch.random.fork_rng(devices=[]):  # the reference seeds torch's global RNG
            peer = reference.APGDAttack(
                unit, n_iter=50, norm="L2", eps=eps, seed=seed, device="cpu"
            )
            theirs.append(correct(unit, peer.perturb(x / 255, y), y))
    # Robust accuracy in samples, averaged over seeds: never weaker than the authors' code
    # beyond a few samples of seed noise.
    assert np.mean(ours) <= np.mean(theirs) + 0.015 * len(y), (ours, theirs)
