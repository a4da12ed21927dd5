"""The JAX backend: the same attacks, guarantees and errors as on PyTorch and NumPy."""

from __future__ import annotations

import dataclasses
import math
import subprocess
import sys

import numpy as np
import pytest
import torch
from conftest import correct, linear_pair
from hypothesis import given, settings
from hypothesis import strategies as st

from signattack import APGD, APGDT, FGSM, IteratedSign, UnitsWarning
from signattack.core.losses import CROSS_ENTROPY
from signattack.digits import digits_cnn_in_jax
from signattack.evaluation import evaluate

jax = pytest.importorskip("jax")
jnp = jax.numpy


def _jax_linear(weight: np.ndarray, bias: np.ndarray, dtype=jnp.float32):
    w, b = jnp.asarray(weight, dtype=dtype), jnp.asarray(bias, dtype=dtype)
    return lambda x: jnp.reshape(x, (x.shape[0], -1)).astype(dtype) @ w.T + b


def test_import_signattack_imports_neither_jax_nor_torch():
    script = "import sys, signattack; print('jax' in sys.modules, 'torch' in sys.modules)"
    completed = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True
    )
    assert completed.stdout.split() == ["False", "False"]


ATTACKS = {
    "iterated": lambda loss: IteratedSign(16.0, 5, loss=loss),
    "fgsm": lambda loss: FGSM(16.0, loss=loss),
    "early stop": lambda loss: IteratedSign(16.0, 5, loss=loss, early_stop=True),
    "random start": lambda loss: IteratedSign(16.0, 5, loss=loss, random_start=True, seed=3),
    "targeted": lambda loss: IteratedSign(64.0, 5, loss=loss, targeted=True),
    "apgd": lambda loss: APGD(16.0, 8, loss=loss, seed=1),
}


@pytest.mark.parametrize("loss", ["ce", "margin", "dlr"])
@pytest.mark.parametrize("name", sorted(ATTACKS))
def test_jax_matches_numpy_on_a_linear_model(name, loss):
    if name == "fgsm" and loss == "dlr":
        loss = "margin"
    # Logits of a few units: with larger ones float32 cross-entropy saturates to an exactly
    # zero gradient where float64 still has one.
    numpy_model, _ = linear_pair(4, 12, scale=0.01, seed=11)
    rng = np.random.default_rng(11)
    x = rng.uniform(30, 220, size=(10, 3, 4))
    # Correctly classified samples (and, targeted, the runner-up as target): where the true
    # class ranks third, DLR's gradient is exactly zero and its sign is rounding noise.
    ranking = np.argsort(-numpy_model(x), axis=1)
    y = ranking[:, 1] if name == "targeted" else ranking[:, 0]
    attack = ATTACKS[name](loss)
    expected = attack.run(numpy_model, x, y)
    jax_model = _jax_linear(numpy_model.weight, numpy_model.bias)
    result = attack.run(jax_model, jnp.asarray(x, dtype=jnp.float32), jnp.asarray(y))
    assert isinstance(result.x_adv, jax.Array)
    assert result.losses.shape == expected.losses.shape
    # float32 against float64: a pixel may differ where a gradient entry rounds to zero.
    agree = np.isclose(np.asarray(result.x_adv), expected.x_adv, atol=1e-3)
    assert agree.mean() >= 0.98
    assert np.mean(np.asarray(result.success) == expected.success) >= 0.9


@pytest.mark.slow  # JAX compiles every new shape eagerly: about a second an example
@settings(max_examples=20)
@given(
    eps=st.sampled_from([math.nextafter(8.0, 0.0), 0.0, 3.5, 16.0]),
    steps=st.integers(1, 4),
    seed=st.integers(0, 1000),
    dtype=st.sampled_from(["uint8", "float32"]),
)
def test_jax_keeps_the_ball_the_box_and_the_dtype(eps, steps, seed, dtype):
    rng = np.random.default_rng(seed)
    numpy_model, _ = linear_pair(3, 8, scale=0.05, seed=seed)
    x = rng.integers(0, 256, size=(5, 8)).astype(dtype)
    y = rng.integers(0, 3, size=5)
    model = _jax_linear(numpy_model.weight, numpy_model.bias)
    for attack in (
        IteratedSign(eps, steps, random_start=True, seed=seed),
        APGD(eps, steps, seed=seed),
    ):
        x_adv = attack(model, jnp.asarray(x), jnp.asarray(y))
        assert x_adv.dtype == jnp.asarray(x).dtype
        moved = np.abs(np.asarray(x_adv, dtype=np.float64) - x.astype(np.float64))
        limit = math.floor(eps) if dtype == "uint8" else float(np.float32(eps))
        assert moved.max() <= limit
        assert np.asarray(x_adv).min() >= 0
        assert np.asarray(x_adv).max() <= 255


def test_jax_per_sample_eps_and_generators():
    numpy_model, _ = linear_pair(3, 8, scale=0.05, seed=2)
    model = _jax_linear(numpy_model.weight, numpy_model.bias)
    x = jnp.full((4, 8), 100.0)
    y = jnp.asarray([0, 1, 2, 0])
    radii = jnp.asarray([0.0, 2.0, 4.0, 8.0])
    result = IteratedSign(0, 4).run(model, x, y, eps=radii)
    moved = np.abs(np.asarray(result.x_adv) - 100.0).max(axis=1)
    assert np.all(moved <= np.asarray(radii))
    attack = IteratedSign(8.0, 3, random_start=True)
    one = attack(model, x, y, rng=np.random.default_rng(4))
    two = attack(model, x, y, rng=np.random.default_rng(4))
    assert bool(jnp.all(one == two))


@pytest.mark.parametrize(
    ("call", "error", "match"),
    [
        (lambda m, x, y: (m, x, y[:2]), ValueError, r"y must have shape \(batch,\)"),
        (lambda m, x, y: (m, x + 1000, y), ValueError, "x must lie inside bounds"),
        (lambda m, x, y: (m, x.at[0, 0].set(jnp.nan), y), ValueError, "x must be finite"),
        (lambda m, x, y: (lambda v: m(v)[:, 0], x, y), ValueError, "logits of shape"),
        (lambda m, x, y: (lambda v: m(v) * jnp.nan, x, y), ValueError, "finite logits"),
        (lambda m, x, y: (m, x, y + 5), ValueError, r"labels < 3"),
        (lambda m, x, y: (3, x, y), TypeError, "model must be a JAX function"),
    ],
)
def test_jax_gets_the_same_clear_errors(call, error, match):
    numpy_model, _ = linear_pair(3, 8, seed=1)
    model = _jax_linear(numpy_model.weight, numpy_model.bias)
    args = call(model, jnp.full((4, 8), 100.0), jnp.asarray([0, 1, 2, 0]))
    with pytest.raises(error, match=match):
        IteratedSign(8.0, 2)(*args)


@pytest.mark.slow
def test_the_digits_cnn_attacked_through_torch_and_jax_agrees(digits, digits_model):
    model = digits_model.eval()
    jax_model = digits_cnn_in_jax(model)
    x, y = digits.x_test, digits.y_test
    jx, jy = jnp.asarray(x.numpy()), jnp.asarray(y.numpy())
    with torch.no_grad():
        np.testing.assert_allclose(np.asarray(jax_model(jx)), model(x).numpy(), atol=1e-3)
    for attack in (IteratedSign(16, 10), FGSM(32), APGD(32, 5, seed=0)):
        ours = attack(model, x, y)
        theirs = attack(jax_model, jx, jy)
        same = np.isclose(np.asarray(theirs), ours.numpy(), atol=1e-3).mean()
        assert same >= 0.99, f"{attack}: {same:.2%} of pixels agree"
        robust_jax = int(np.sum(np.argmax(np.asarray(jax_model(theirs)), axis=1) == y.numpy()))
        assert abs(robust_jax - correct(model, ours, y)) <= 2  # of 449
    report = evaluate(jax_model, [(jx, jy)], IteratedSign(0, 5), [8.0, 16.0])
    expected = evaluate(model, [(x, y)], IteratedSign(0, 5), [8.0, 16.0])
    for eps in (8.0, 16.0):
        assert abs(sum(report.robust_correct[eps]) - sum(expected.robust_correct[eps])) <= 2
    assert report.clean_correct == expected.clean_correct


@pytest.mark.slow
def test_apgdt_runs_on_jax(digits, digits_model):
    jax_model = digits_cnn_in_jax(digits_model.eval())
    x, y = jnp.asarray(digits.x_test[:32].numpy()), jnp.asarray(digits.y_test[:32].numpy())
    result = APGDT(32, 3, target_classes=2, seed=0).run(jax_model, x, y)
    wrong = np.argmax(np.asarray(jax_model(result.x_adv)), axis=1) != np.asarray(y)
    np.testing.assert_array_equal(np.asarray(result.success), wrong)
    assert float(jnp.max(jnp.abs(result.x_adv - x))) <= 32


# The compiled loop: one jax.jit over lax.scan, against the eager loop of the same backend.


def _eager(monkeypatch):
    """Make IteratedSign's rule run one step at a time, as on the other backends."""
    from signattack.attacks.sign import SignSteps

    monkeypatch.setattr(SignSteps, "traceable", False)


@pytest.mark.parametrize(
    "attack",
    [
        IteratedSign(16.0, 6),
        IteratedSign(16.0, 6, early_stop=True),
        IteratedSign(48.0, 6, targeted=True, early_stop=True),
        IteratedSign(16.0, 6, loss="margin", random_start=True, seed=5),
        FGSM(24.0),
    ],
    ids=["plain", "early stop", "targeted early stop", "margin random start", "fgsm"],
)
def test_the_compiled_loop_matches_the_eager_loop(attack, monkeypatch):
    numpy_model, _ = linear_pair(4, 12, scale=0.01, seed=3)
    model = _jax_linear(numpy_model.weight, numpy_model.bias)
    rng = np.random.default_rng(3)
    x = jnp.asarray(rng.uniform(30, 220, size=(40, 12)), dtype=jnp.float32)
    ranking = np.argsort(-np.asarray(model(x)), axis=1)
    y = jnp.asarray(ranking[:, 1] if attack.targeted else ranking[:, 0])
    compiled = attack.run(model, x, y)
    _eager(monkeypatch)
    eager = attack.run(model, x, y)
    # XLA fuses the compiled loop differently from the step-by-step one, so float32 results
    # differ in the last bits, and a gradient entry within rounding of 0 may take the other
    # sign: compare pixels with a budget for such flips, and success where the margin is
    # clear of rounding.
    moved = np.abs(np.asarray(compiled.x_adv) - np.asarray(eager.x_adv)) > 1e-3
    assert moved.mean() <= 0.01, f"{moved.sum()} of {moved.size} pixels differ"
    logits = np.sort(np.asarray(model(eager.x_adv)), axis=1)
    clear = logits[:, -1] - logits[:, -2] > 1e-2
    np.testing.assert_array_equal(
        np.asarray(compiled.success)[clear], np.asarray(eager.success)[clear]
    )
    assert clear.mean() > 0.8
    np.testing.assert_allclose(
        np.asarray(compiled.losses)[:, clear], np.asarray(eager.losses)[:, clear], rtol=1e-3
    )
    if getattr(
        attack, "early_stop", False
    ):  # some samples stopped early: the mask must have frozen them
        assert 0 < int(eager.success.sum()) < x.shape[0]


def test_the_compiled_loop_keeps_integer_images_and_per_sample_radii(monkeypatch):
    numpy_model, _ = linear_pair(3, 8, scale=0.05, seed=2)
    model = _jax_linear(numpy_model.weight, numpy_model.bias)
    x = jnp.asarray(np.random.default_rng(0).integers(0, 256, size=(6, 8)), dtype=jnp.uint8)
    y = jnp.asarray([0, 1, 2, 0, 1, 2])
    radii = jnp.asarray([0.0, 1.5, 3.0, 7.75, 8.0, 300.0])
    with pytest.warns(UnitsWarning, match="eps = 300 is larger than the whole box"):
        compiled = IteratedSign(0, 4).run(model, x, y, eps=radii)
    _eager(monkeypatch)
    with pytest.warns(UnitsWarning):
        eager = IteratedSign(0, 4).run(model, x, y, eps=radii)
    assert compiled.x_adv.dtype == jnp.uint8
    np.testing.assert_array_equal(np.asarray(compiled.x_adv), np.asarray(eager.x_adv))
    moved = np.abs(np.asarray(compiled.x_adv, dtype=int) - np.asarray(x, dtype=int)).max(axis=1)
    np.testing.assert_array_equal(moved[:5], [0, 1, 3, 7, 8])  # every radius binds


def _compiled_loops(model) -> int:
    """How many loops are compiled for ``model``'s form and the cross-entropy."""
    from signattack.backends.jax_backend import _programs, _Same, _split, native_loss

    return _programs(_split(model)[0], _Same(native_loss(CROSS_ENTROPY))).steps._cache_size()


def test_the_compiled_loop_is_compiled_once_for_a_model_and_its_shapes():
    eqx = pytest.importorskip("equinox")

    class Net(eqx.Module):
        linear: eqx.nn.Linear

        def __call__(self, x):
            return jax.vmap(self.linear)(jnp.reshape(x, (x.shape[0], -1)) / 255)

    x = jnp.full((5, 16), 120.0)
    y = jnp.asarray([0, 1, 2, 0, 1])
    attack = IteratedSign(8.0, 3)
    attack(Net(eqx.nn.Linear(16, 3, key=jax.random.key(0))), x, y)
    first = Net(eqx.nn.Linear(16, 3, key=jax.random.key(0)))
    before = _compiled_loops(first)
    assert before >= 1
    for seed in range(1, 4):  # new parameters, same shapes: the same computation
        attack(Net(eqx.nn.Linear(16, 3, key=jax.random.key(seed))), x, y)
    attack.with_eps(4.0)(Net(eqx.nn.Linear(16, 3, key=jax.random.key(9))), x, y)
    assert _compiled_loops(first) == before
    IteratedSign(8.0, 4)(Net(eqx.nn.Linear(16, 3, key=jax.random.key(0))), x, y)  # steps
    attack(Net(eqx.nn.Linear(16, 3, key=jax.random.key(0))), x[:4], y[:4])  # shape
    assert _compiled_loops(first) == before + 2


def test_models_attacked_once_are_not_kept_alive():
    # A plain function is part of the compiled computation's form; a cache that kept every
    # form would keep every model (and the arrays it closes over) alive.
    import gc
    import weakref

    from signattack.backends.jax_backend import PROGRAMS_KEPT

    x, y = jnp.full((4, 16), 120.0), jnp.asarray([0, 1, 2, 0])
    alive = []
    for seed in range(PROGRAMS_KEPT + 12):
        weight = jax.random.normal(jax.random.key(seed), (16, 3)) / 255

        def model(inputs, weight=weight):
            return inputs @ weight

        IteratedSign(8.0, 2)(model, x, y)
        alive.append(weakref.ref(model))
        del model
    gc.collect()
    kept = sum(ref() is not None for ref in alive)
    assert kept <= PROGRAMS_KEPT, f"{kept} of {len(alive)} models are still alive"
    assert alive[-1]() is not None  # the most recent ones are kept, to be reused


@pytest.mark.parametrize("make_key", [jax.random.key, jax.random.PRNGKey], ids=["key", "raw"])
def test_a_jax_random_key_seeds_the_random_start(make_key):
    numpy_model, _ = linear_pair(3, 8, scale=0.05, seed=2)
    model = _jax_linear(numpy_model.weight, numpy_model.bias)
    x, y = jnp.full((4, 8), 100.0), jnp.asarray([0, 1, 2, 0])
    for attack in (IteratedSign(8.0, 2, random_start=True), APGD(8.0, 3)):
        # The loss at the random start: both steps then reach the same corner of the ball.
        start = attack.run(model, x, y, rng=make_key(7)).losses[0]
        assert bool(jnp.all(start == attack.run(model, x, y, rng=make_key(7)).losses[0]))
        assert not bool(jnp.all(start == attack.run(model, x, y, rng=make_key(8)).losses[0]))
    with pytest.raises(TypeError, match=r"rng must be .* a jax\.random key"):
        IteratedSign(8.0, 2, random_start=True)(model, x, y, rng=7)


def test_a_callable_loss_need_not_be_hashable():
    @dataclasses.dataclass  # eq=True, so instances are unhashable
    class Scaled:
        factor: float

        def __call__(self, logits, labels):
            return -self.factor * jnp.take_along_axis(logits, labels[:, None], axis=1)[:, 0]

    numpy_model, _ = linear_pair(3, 8, scale=0.05, seed=2)
    model = _jax_linear(numpy_model.weight, numpy_model.bias)
    x, y = jnp.full((4, 8), 100.0), jnp.asarray([0, 1, 2, 0])
    x_adv = IteratedSign(8.0, 2, loss=Scaled(2.0))(model, x, y)
    # Ascending -2 z_y of a linear model moves every pixel against sign(W[y]) to the ball.
    expected = x - 8.0 * np.sign(numpy_model.weight[np.asarray(y)])
    np.testing.assert_array_equal(np.asarray(x_adv), expected)


@pytest.mark.parametrize(
    "attack",
    [APGD(24.0, 6, restarts=4, seed=0), APGDT(24.0, 6, target_classes=3, seed=0)],
    ids=["apgd restarts", "apgd-t targets"],
)
def test_apgd_runs_its_survivors_in_a_few_compiled_shapes(attack):
    # Restarts and targets run on the samples still robust; on a backend that compiles per
    # shape those sub-batches are padded to powers of two, as the evaluation pads its own.
    numpy_model, _ = linear_pair(5, 12, scale=0.05, seed=7)
    x = np.random.default_rng(7).uniform(30, 220, size=(13, 12))
    y = numpy_model(x).argmax(axis=1)
    linear = _jax_linear(numpy_model.weight, numpy_model.bias)
    traced: list[int] = []

    def model(inputs):
        traced.append(inputs.shape[0])  # runs once per compiled shape
        return linear(inputs)

    result = attack.run(model, jnp.asarray(x), jnp.asarray(y))
    wrong = np.argmax(np.asarray(linear(result.x_adv)), axis=1) != y
    np.testing.assert_array_equal(np.asarray(result.success), wrong)
    assert 0 < int(wrong.sum()) < len(y), "some samples survive: sub-batches were attacked"
    assert set(traced) <= {13, 8, 4, 2, 1}, f"compiled for sizes {sorted(set(traced))}"
