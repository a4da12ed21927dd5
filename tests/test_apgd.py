"""APGD and APGD-T: the schedule, the DLR losses, the contract, and strength on real digits."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from conftest import correct, linear_pair
from hypothesis import given
from hypothesis import strategies as st

from signattack import APGD, APGDT, IteratedSign
from signattack.attacks.apgd import AutoSteps, checkpoints
from signattack.attacks.loop import Start
from signattack.backends.batch import open_batch
from signattack.core import DLR, TARGETED_DLR, Bounds, dlr, targeted_dlr
from signattack.core.losses import resolve_loss
from signattack.evaluation import evaluate, gradient_attacks

# The schedule.


def test_checkpoints_follow_the_paper():
    # p = 0, .22, .41, .57, .70, .80, .87, .93, .99: w_j = ceil(p_j * 100).
    assert checkpoints(100) == (22, 41, 57, 70, 80, 87, 93, 99)
    assert checkpoints(1000) == (220, 410, 570, 700, 800, 870, 930, 990)
    assert checkpoints(10) == (3, 5, 6, 7, 8, 9)
    assert checkpoints(1) == ()


@given(st.integers(1, 3000))
def test_checkpoints_increase_and_stay_inside_the_run(steps):
    marks = checkpoints(steps)
    assert list(marks) == sorted(set(marks))
    assert all(0 < mark < steps for mark in marks)


def _drive(rule, losses_per_step, shape=(3, 4)):
    """Run the update rule by hand on given losses, with a constant gradient."""
    x = torch.zeros(shape, dtype=torch.float64)
    start = Start(x, x - 8, x + 8, 8.0, 16.0, x)
    state = rule.start(start)
    etas = []
    for step, losses in enumerate(losses_per_step):
        grad = torch.ones(shape, dtype=torch.float64)
        fooled = torch.zeros(shape[0], dtype=torch.bool)
        state = rule.update(state, step, torch.as_tensor(losses), grad, fooled)
        etas.append(state.eta[:, 0].clone())
    return state, torch.stack(etas)


def test_the_step_halves_when_the_loss_stalls_and_holds_while_it_climbs():
    marks = checkpoints(100)
    rule = AutoSteps(0.75, marks)
    climbing = [np.full(3, float(k)) for k in range(100)]
    stalling = [np.zeros(3) for _ in range(100)]
    _, climb = _drive(rule, climbing)
    _, stall = _drive(rule, stalling)
    assert torch.all(climb == 16.0), "a loss that rises every step keeps eta = 2 eps"
    # A flat loss never rises: condition 1 halves the step at every checkpoint.
    halvings = [int(torch.log2(16.0 / stall[k, 0])) for k in range(100)]
    expected = [sum(1 for mark in marks if mark <= k) for k in range(100)]
    assert halvings == expected


def test_condition_two_halves_a_step_that_stopped_improving():
    marks = (10, 20)
    rule = AutoSteps(0.75, marks)
    # Up to w_1 = 10 the loss rises at 9 of 10 steps and reaches a new best: no halving.
    # Up to w_2 = 20 it rises at 9 of 10 steps again (condition 1 does not hold) but stays
    # below its best of 9: condition 2 halves the step.
    first = [float(k) for k in range(10)]
    second = [4.0 + 0.1 * k for k in range(10)]
    losses = [np.array([v]) for v in [*first, *second, 0.0]]
    _, etas = _drive(rule, losses, shape=(1, 2))
    assert float(etas[10]) == 16.0, "improving with enough rises: no halving at w_1"
    assert float(etas[20]) == 8.0, "not halved at w_1 and no new best since: halve at w_2"


# The DLR losses.


def test_dlr_matches_its_closed_form_and_ignores_shift_and_scale():
    logits = np.array([[3.0, 1.0, 0.0, -1.0], [0.5, 2.0, 1.0, 0.0]])
    labels = np.array([0, 0])
    # Sample 0: correct, margin 2, gap 3 - 0 = 3. Sample 1: wrong, margin 1.5, gap 2 - 0.5.
    np.testing.assert_allclose(dlr(logits, labels), [-2 / 3, 1.5 / 1.5], rtol=1e-12)
    np.testing.assert_allclose(dlr(7 * logits + 3, labels), dlr(logits, labels), rtol=1e-9)
    pair = np.array([[0, 1], [0, 2]])
    # Sample 0: (z_t - z_y) / (z_1 - (z_3 + z_4) / 2) = (1 - 3) / (3 + 0.5).
    np.testing.assert_allclose(targeted_dlr(logits, pair)[0], -2 / 3.5, rtol=1e-12)


@pytest.mark.parametrize(("loss", "targets"), [(DLR, False), (TARGETED_DLR, True)])
def test_dlr_gradients_match_autograd(loss, targets):
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(16, 6)) * 4
    labels = rng.integers(0, 6, size=16)
    if targets:
        labels = np.stack([labels, (labels + rng.integers(1, 6, size=16)) % 6], axis=1)
    z = torch.tensor(logits, requires_grad=True)
    (expected,) = torch.autograd.grad(loss.value(z, torch.tensor(labels)).sum(), z)
    np.testing.assert_allclose(loss.logit_gradient(logits, labels), expected.numpy(), atol=1e-12)


def test_dlr_needs_enough_classes():
    with pytest.raises(ValueError, match="dlr loss needs logits of at least 3 classes, got 2"):
        dlr(np.zeros((1, 2)), np.array([0]))
    model, _ = linear_pair(3, 4)
    with pytest.raises(ValueError, match="APGDT needs a model of at least 4 classes, got 3"):
        APGDT(4, 3)(model, np.full((2, 4), 10.0), np.array([0, 1]))


# The contract.


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
    model = torch.nn.Sequential(
        torch.nn.Linear(features, 8), torch.nn.Tanh(), torch.nn.Linear(8, 5)
    )
    model = model.to(torch.float64 if dtype == torch.float64 else torch.float32)
    y = torch.randint(0, 5, (batch,), generator=generator)
    eps = draw(st.floats(0, (upper - lower) / 2))
    kind = draw(st.sampled_from(["apgd-ce", "apgd-dlr", "apgd-t"]))
    common = {"bounds": (lower, upper), "seed": seed, "restarts": draw(st.integers(1, 2))}
    steps = draw(st.integers(1, 12))
    if kind == "apgd-t":
        attack = APGDT(eps, steps, target_classes=draw(st.integers(1, 4)), **common)
    else:
        attack = APGD(eps, steps, loss=kind[5:], **common)
    return attack, model, x, y


@given(problem=problems())
def test_apgd_keeps_the_ball_the_box_the_dtype_and_the_model(problem):
    attack, model, x, y = problem
    model.train()
    before = [t.detach().clone() for t in model.parameters()]
    rng_state = torch.random.get_rng_state()
    result = attack.run(model, x, y)
    assert result.x_adv.dtype == x.dtype
    assert result.x_adv.shape == x.shape
    if x.dtype == torch.uint8:
        assert int((result.x_adv.int() - x.int()).abs().max()) <= np.floor(attack.eps)
    else:  # exactly, in x's dtype
        assert bool(((result.x_adv - x).abs() <= attack.eps).all())
    assert bool((result.x_adv >= attack.bounds[0]).all())
    assert bool((result.x_adv <= attack.bounds[1]).all())
    assert result.losses.shape == (attack.steps + 1, x.shape[0])
    assert model.training, "the model's mode is restored"
    assert all(p.grad is None for p in model.parameters())
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True))
    assert torch.equal(rng_state, torch.random.get_rng_state())
    with torch.no_grad():
        wrong = model.eval()(result.x_adv.to(next(model.parameters()).dtype)).argmax(1) != y
    assert torch.equal(result.success, wrong)


def test_apgd_is_reproducible_through_its_seed_or_a_generator():
    model, _ = linear_pair(4, 6, seed=2)
    rng = np.random.default_rng(0)
    x, y = rng.uniform(50, 200, size=(8, 6)), rng.integers(0, 4, size=8)
    attack = APGD(10.0, 20, restarts=2, seed=5)
    np.testing.assert_array_equal(attack(model, x, y), attack(model, x, y))
    one = attack(model, x, y, rng=np.random.default_rng(1))
    two = attack(model, x, y, rng=np.random.default_rng(1))
    np.testing.assert_array_equal(one, two)


BOX = Bounds(0.0, 255.0)


@pytest.mark.parametrize("attack", [APGD(12.0, 15, seed=1), APGD(12.0, 15, loss="dlr", seed=1)])
def test_the_numpy_and_torch_backends_agree(attack):
    # APGD is path-dependent through strict comparisons (a loss equal to the best so far, or
    # 1 ulp above it, decides a step-size halving), so two libraries whose BLAS rounds
    # differently cannot be compared bit for bit after a checkpoint. What must agree: the
    # backends' losses and gradients at the same points, and the run up to the first
    # checkpoint, where no comparison has decided anything yet.
    numpy_model, torch_model = linear_pair(4, 10, scale=0.05, seed=3)
    rng = np.random.default_rng(3)
    x, y = rng.uniform(60, 190, size=(12, 10)), rng.integers(0, 4, size=12)
    loss = resolve_loss(attack.loss)
    for point in [x, *(x + rng.uniform(-12, 12, size=x.shape) for _ in range(5))]:
        with open_batch(numpy_model, point, y, loss=loss, model_mode="eval", bounds=BOX) as a:
            losses, grad, _ = a.value_and_grad(a.x, a.labels)
        with open_batch(
            torch_model,
            torch.from_numpy(point),
            torch.from_numpy(y),
            loss=loss,
            model_mode="eval",
            bounds=BOX,
        ) as b:
            t_losses, t_grad, _ = b.value_and_grad(b.x, b.labels)
        np.testing.assert_allclose(t_losses.numpy(), losses, rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(t_grad.numpy(), grad, rtol=1e-8, atol=1e-12)
    from_numpy = attack.run(numpy_model, x, y)
    from_torch = attack.run(torch_model, torch.from_numpy(x), torch.from_numpy(y))
    first = checkpoints(attack.steps)[0]
    np.testing.assert_allclose(
        from_torch.losses.numpy()[: first + 1],
        from_numpy.losses[: first + 1],
        rtol=1e-9,
        atol=1e-12,
    )
    for result, predict in ((from_numpy, numpy_model), (from_torch, numpy_model)):
        x_adv = np.asarray(result.x_adv)
        assert np.abs(x_adv - x).max() <= attack.eps
        np.testing.assert_array_equal(np.asarray(result.success), predict(x_adv).argmax(1) != y)


def test_a_targeted_apgd_reaches_its_targets_on_a_linear_model():
    model, _ = linear_pair(4, 10, scale=0.05, seed=4)
    rng = np.random.default_rng(4)
    x = rng.uniform(60, 190, size=(12, 10))
    targets = (np.argmax(model(x), axis=1) + 1) % 4
    result = APGD(100.0, 30, targeted=True, seed=0).run(model, x, targets)
    assert result.success.mean() > 0.9
    np.testing.assert_array_equal(result.success, np.argmax(model(result.x_adv), 1) == targets)


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"eps": -1.0}, ValueError, "eps must be >= 0"),
        ({"eps": 4, "steps": 0}, ValueError, "steps must be >= 1"),
        ({"eps": 4, "restarts": 0}, ValueError, "restarts must be >= 1"),
        ({"eps": 4, "rho": 1.5}, ValueError, r"rho must lie in \(0, 1\]"),
        ({"eps": 4, "loss": "mse"}, ValueError, "loss must be one of"),
        ({"eps": 4, "seed": -1}, ValueError, "seed must be an int >= 0"),
        ({"eps": 4, "bounds": (1, 0)}, ValueError, "bounds must satisfy lower < upper"),
        ({"eps": 4, "model_mode": "x"}, ValueError, "model_mode must be one of"),
        ({"eps": 4, "targeted": 1}, TypeError, "targeted must be a bool"),
    ],
)
def test_apgd_rejects_bad_settings(kwargs, error, match):
    with pytest.raises(error, match=match):
        APGD(**kwargs)


def test_apgdt_rejects_bad_settings():
    with pytest.raises(ValueError, match="target_classes must be >= 1"):
        APGDT(4, target_classes=0)
    with pytest.raises(TypeError, match="early_stop must be a bool"):
        APGDT(4, early_stop="yes")


# Strength on real digits.


class _Scaled(torch.nn.Module):
    """Logits times 1000: a network that learned large logits."""

    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x) * 1000


@pytest.fixture(scope="module")
def robust_model(digits):
    """A DigitsCNN trained with PGD (Madry et al.): a few seconds on the digits."""
    from signattack.models import DigitsCNN

    torch.manual_seed(0)
    model = DigitsCNN()
    optimizer = torch.optim.Adam(model.parameters(), lr=2e-3)
    attack = IteratedSign(16, 3, random_start=True, seed=0)
    generator = torch.Generator().manual_seed(0)
    for epoch in range(6):
        order = torch.randperm(len(digits.y_train), generator=generator)
        for start in range(0, len(order), 64):
            index = order[start : start + 64]
            x, y = digits.x_train[index], digits.y_train[index]
            x_adv = attack(model, x, y, rng=np.random.default_rng([epoch, start]))
            model.train()
            loss = torch.nn.functional.cross_entropy(model(x_adv), y)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    return model.eval()


@pytest.mark.slow
@pytest.mark.parametrize("network", ["normal", "adversarially trained"])
def test_the_standard_evaluation_is_never_weaker_than_iterated_sign(
    digits, digits_model, robust_model, network
):
    # One APGD-CE run from a random start is about as strong as IteratedSign with Madry's
    # step on these networks (measured: within a few samples either way, seed to seed, as
    # torchattacks' APGD); with restarts, and with APGD-T, it is stronger.
    model = digits_model if network == "normal" else robust_model
    x, y = digits.x_test, digits.y_test
    steps = 20
    for eps in (16.0, 32.0):
        plain = correct(model, IteratedSign(eps, steps)(model, x, y), y)
        report = evaluate(model, [(x, y)], gradient_attacks(steps), [eps])
        standard = sum(report.robust_correct[eps])
        assert standard <= plain, f"eps {eps}: standard leaves {standard}, IteratedSign {plain}"
    restarted = correct(model, APGD(32, steps, restarts=3, seed=0)(model, x, y), y)
    assert restarted <= correct(model, IteratedSign(32, steps)(model, x, y), y)


@pytest.mark.slow
def test_the_standard_evaluation_sees_through_scaled_logits(digits, digits_model):
    scaled = _Scaled(copy.deepcopy(digits_model)).eval()
    x, y = digits.x_test, digits.y_test
    batches = [(x[i : i + 150], y[i : i + 150]) for i in range(0, len(y), 150)]
    fooled_by_ce = evaluate(scaled, batches, IteratedSign(16, 10), [16.0])
    standard = evaluate(scaled, batches, gradient_attacks(steps=10), [16.0])
    saturated = sum(fooled_by_ce.robust_correct[16.0])
    true = sum(standard.robust_correct[16.0])
    assert saturated > 0.95 * len(y), "cross-entropy saturates: the plain attack barely works"
    assert true < saturated - 0.08 * len(y), "the standard evaluation finds the real figure"
    counts = standard.broken_by[16.0]
    assert list(counts) == ["APGD-CE", "APGD-T"]
    assert sum(counts.values()) == standard.attacked[16.0] - true


@pytest.mark.slow
def test_a_sequence_is_at_least_as_strong_as_each_of_its_attacks(digits, digits_model):
    x, y = digits.x_test[:200], digits.y_test[:200]
    batches = [(x[:100], y[:100]), (x[100:], y[100:])]
    first, second = IteratedSign(0, 5), APGD(0, 10, loss="dlr", seed=0)
    both = evaluate(digits_model, batches, [first, second], [16.0, 32.0])
    singles = [evaluate(digits_model, batches, alone, [16.0, 32.0]) for alone in (first, second)]
    for eps in (16.0, 32.0):
        together = np.array(both.robust_correct[eps])
        # Counts, not samples: a random start draws differently in a sequence, and a subset
        # of another size may round differently.
        assert together.sum() <= min(sum(single.robust_correct[eps]) for single in singles)
        counts = list(both.broken_by[eps].values())
        assert sum(counts) == both.attacked[eps] - together.sum()
    assert "broken by" in both.table()


class _UnitRange(torch.nn.Module):
    """The digits network on inputs in [0, 1], the units torchattacks assumes."""

    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x * 255)


@pytest.mark.slow
@pytest.mark.parametrize("eps", [16, 32])
def test_at_least_as_strong_as_torchattacks_apgd_and_apgdt(digits, digits_model, eps):
    torchattacks = pytest.importorskip("torchattacks")
    model, x, y = digits_model.eval(), digits.x_test, digits.y_test
    unit = _UnitRange(model).eval()
    half_a_point = 0.005 * len(y)
    theirs = torchattacks.APGD(unit, eps=eps / 255, steps=20, seed=0)(x / 255, y) * 255
    ours = APGD(eps, 20, seed=0)(model, x, y)
    assert correct(model, ours, y) <= correct(model, theirs.clamp(0, 255), y) + half_a_point
    theirs = torchattacks.APGDT(unit, eps=eps / 255, steps=20, seed=0, n_classes=10)(x / 255, y)
    ours = APGDT(eps, 20, seed=0)(model, x, y)
    assert correct(model, ours, y) <= correct(model, theirs.clamp(0, 1) * 255, y) + half_a_point


def _bn_net() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(
        torch.nn.Conv2d(1, 4, 3, padding=1),
        torch.nn.BatchNorm2d(4),
        torch.nn.ReLU(),
        torch.nn.Flatten(),
        torch.nn.Linear(4 * 8 * 8, 10),
    )


@pytest.mark.parametrize("attack", [APGD(16, 5, seed=0), APGDT(16, 3, target_classes=2, seed=0)])
def test_apgd_restores_a_train_mode_network_and_takes_inference_tensors(attack):
    model = _bn_net().train()
    state = {k: v.clone() for k, v in model.state_dict().items()}
    with torch.inference_mode():
        x = torch.rand(6, 1, 8, 8) * 255
        y = torch.randint(0, 10, (6,))
    result = attack.run(model, x, y)
    assert model.training
    assert all(torch.equal(state[k], v) for k, v in model.state_dict().items())
    assert all(p.grad is None for p in model.parameters())
    assert result.x_adv.shape == x.shape


def test_apgd_does_not_synchronise_with_the_host_per_step(monkeypatch):
    from test_torch_behaviour import _count_syncs

    model = _bn_net().eval()
    x, y = torch.rand(6, 1, 8, 8) * 255, torch.randint(0, 10, (6,))
    syncs = {
        steps: _count_syncs(monkeypatch, lambda steps=steps: APGD(16, steps, seed=0)(model, x, y))
        for steps in (10, 40)
    }
    assert syncs[10] == syncs[40] > 0
