"""The JAX backend: the same attacks, guarantees and errors as on PyTorch and NumPy."""

from __future__ import annotations

import math
import subprocess
import sys

import numpy as np
import pytest
import torch
from conftest import correct, linear_pair
from hypothesis import given, settings
from hypothesis import strategies as st

from signattack import APGD, APGDT, FGSM, IteratedSign
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


# The digits CNN, its trained weights ported to JAX.


def digits_cnn_in_jax(model: torch.nn.Module):
    """The trained DigitsCNN as a JAX function, with ``lax.conv_general_dilated``."""
    p = {k: jnp.asarray(v.detach().numpy()) for k, v in model.state_dict().items()}

    def conv(x, weight, bias):
        out = jax.lax.conv_general_dilated(
            x, weight, (1, 1), "SAME", dimension_numbers=("NCHW", "OIHW", "NCHW")
        )
        return out + bias[None, :, None, None]

    def forward(pixels):
        x = (pixels - p["normalize.mean"]) / p["normalize.std"]
        x = jax.nn.relu(conv(x, p["features.0.weight"], p["features.0.bias"]))
        x = jax.nn.relu(conv(x, p["features.2.weight"], p["features.2.bias"]))
        x = jax.lax.reduce_window(x, -jnp.inf, jax.lax.max, (1, 1, 2, 2), (1, 1, 2, 2), "VALID")
        x = jnp.reshape(x, (x.shape[0], -1))
        x = jax.nn.relu(x @ p["classifier.1.weight"].T + p["classifier.1.bias"])
        return x @ p["classifier.3.weight"].T + p["classifier.3.bias"]

    return forward


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
