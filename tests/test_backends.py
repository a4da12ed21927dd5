"""The Backend protocol from the outside: a backend for array-api-strict, registered by hand.

array-api-strict implements the array API standard and nothing more, so the attacks running
on it show that the core's kernels use the standard alone; the backend below is what a new
framework has to write (three methods and a loss), and ``register_backend`` plugs it in.
"""

from __future__ import annotations

from contextlib import contextmanager

import numpy as np
import pytest
from conftest import linear_pair

from signattack import APGD, APGDT, FGSM, IteratedSign, register_backend
from signattack.backends import compiles_per_shape
from signattack.backends.registry import _REGISTRY
from signattack.core import CROSS_ENTROPY, MARGIN, LogitLoss
from signattack.evaluation import evaluate, smallest_breaking_eps, standard_attacks
from signattack.probes import loss_surface

xp = pytest.importorskip("array_api_strict")


class StrictLinear:
    """A linear classifier on array-api-strict arrays, differentiated by hand."""

    def __init__(self, weight: np.ndarray, bias: np.ndarray) -> None:
        self.weight = xp.asarray(weight)
        self.bias = xp.asarray(bias)

    def __call__(self, x):
        flat = xp.reshape(x, (x.shape[0], -1))
        return flat @ xp.matrix_transpose(self.weight) + self.bias


class StrictBackend:
    """The three methods of the Backend protocol, and the loss."""

    def __init__(self, model: StrictLinear, loss: LogitLoss) -> None:
        self.model, self.loss = model, loss

    def prepare(self, x):
        return x

    def logits(self, x):
        return self.model(x)

    def value_and_grad(self, x, y, checks=None):
        logits = self.model(x)
        if checks is not None:
            checks.logits(logits, y)
        losses = self.loss(logits, y)
        if checks is not None:
            checks.losses(losses, y)
        grad = self.loss.logit_gradient(logits, y) @ self.model.weight
        return losses, xp.reshape(grad, x.shape), logits


@contextmanager
def open_strict(model, x, loss, model_mode):
    yield StrictBackend(model, loss)


def _is_strict(value: object) -> bool:
    return type(value).__module__.startswith("array_api_strict")


@pytest.fixture
def strict_backend():
    register_backend(_is_strict, open_strict)
    yield
    _REGISTRY.pop(0)


@pytest.mark.parametrize("loss", [CROSS_ENTROPY, MARGIN])
@pytest.mark.parametrize("attack", ["iterated", "fgsm", "early stop", "random start"])
def test_the_kernels_run_on_the_standard_alone_and_match_numpy(strict_backend, loss, attack):
    numpy_model, _ = linear_pair(3, 12, scale=0.05, seed=7)
    rng = np.random.default_rng(7)
    x = rng.uniform(30, 220, size=(9, 3, 4))
    y = rng.integers(0, 3, size=9)
    chosen = {
        "iterated": IteratedSign(16.0, 5, loss=loss),
        "fgsm": FGSM(16.0, loss=loss),
        "early stop": IteratedSign(16.0, 5, loss=loss, early_stop=True),
        "random start": IteratedSign(16.0, 5, loss=loss, random_start=True, seed=3),
    }[attack]
    strict_model = StrictLinear(numpy_model.weight, numpy_model.bias)
    result = chosen.run(strict_model, xp.asarray(x), xp.asarray(y))
    expected = chosen.run(numpy_model, x, y)
    assert type(result.x_adv).__module__.startswith("array_api_strict")
    np.testing.assert_allclose(np.asarray(result.x_adv), expected.x_adv, rtol=0, atol=1e-9)
    np.testing.assert_allclose(np.asarray(result.losses), expected.losses, rtol=1e-9, atol=1e-9)
    np.testing.assert_array_equal(np.asarray(result.success), expected.success)


@pytest.mark.parametrize(
    "attack",
    [
        IteratedSign(32.0, 5, early_stop=True),
        APGD(32.0, 5, restarts=2, seed=3),
        APGD(32.0, 5, early_stop=True, seed=3),
        APGDT(32.0, 5, target_classes=2, seed=3),
    ],
    ids=["iterated early stop", "apgd restarts", "apgd early stop", "apgd-t"],
)
def test_attacks_that_drop_samples_from_the_batch_use_the_standard_alone(strict_backend, attack):
    # Correctly classified inputs, some of them breakable at this radius: the attacks pick
    # the samples still to attack by index, which must be standard for arrays of any rank.
    numpy_model, _ = linear_pair(5, 12, scale=0.05, seed=7)
    x = np.random.default_rng(7).uniform(30, 220, size=(9, 3, 4))
    y = numpy_model(x).argmax(axis=1)
    result = attack.run(
        StrictLinear(numpy_model.weight, numpy_model.bias), xp.asarray(x), xp.asarray(y)
    )
    expected = attack.run(numpy_model, x, y)
    assert 0 < expected.success.sum() < len(y)
    np.testing.assert_array_equal(np.asarray(result.success), expected.success)
    np.testing.assert_allclose(np.asarray(result.x_adv), expected.x_adv, rtol=0, atol=1e-9)
    np.testing.assert_allclose(np.asarray(result.losses), expected.losses, rtol=1e-9, atol=1e-9)


def test_an_unregistered_array_type_is_a_clear_error():
    numpy_model, _ = linear_pair(3, 12)
    with pytest.raises(TypeError, match="or a type given to register_backend"):
        IteratedSign(4.0)(numpy_model, xp.ones((2, 12)), xp.asarray([0, 1]))


def test_a_backend_that_compiles_per_shape_sees_padded_batches_and_gives_the_same_report():
    numpy_model, _ = linear_pair(3, 12, scale=0.05, seed=7)
    rng = np.random.default_rng(11)
    x, y = rng.uniform(30, 220, size=(13, 3, 4)), rng.integers(0, 3, size=13)
    strict_model = StrictLinear(numpy_model.weight, numpy_model.bias)
    data = [(xp.asarray(x), xp.asarray(y))]
    seen: list[int] = []

    @contextmanager
    def recording(model, x, loss, model_mode):
        seen.append(x.shape[0])
        yield StrictBackend(model, loss)

    reports, sizes = {}, {}
    for compiles in (False, True):
        register_backend(_is_strict, recording, compiles_per_shape=compiles)
        try:
            assert compiles_per_shape(data[0][0]) is compiles
            seen.clear()
            reports[compiles] = evaluate(strict_model, data, IteratedSign(0, 3), [8, 16, 32, 64])
            sizes[compiles] = set(seen)
        finally:
            _REGISTRY.pop(0)
    assert reports[True] == reports[False]  # the padding copies change nothing
    assert len(sizes[False] - {13}) >= 2  # the sweep attacked sub-batches of several sizes
    # Each sub-batch is padded to the next power of two, never beyond the batch.
    assert sizes[True] == {min(13, 1 << (size - 1).bit_length()) for size in sizes[False]}


def test_the_evaluation_and_the_probes_run_on_the_standard_alone(strict_backend):
    numpy_model, _ = linear_pair(5, 12, scale=0.05, seed=7)
    x = np.random.default_rng(7).uniform(30, 220, size=(9, 3, 4))
    y = numpy_model(x).argmax(axis=1)
    strict_model = StrictLinear(numpy_model.weight, numpy_model.bias)
    strict = (xp.asarray(x), xp.asarray(y))
    attacks = standard_attacks(5, queries=20, seed=1)
    report = evaluate(strict_model, [strict], attacks, [8.0, 32.0, 64.0])
    assert report == evaluate(numpy_model, [(x, y)], attacks, [8.0, 32.0, 64.0])
    assert 0 < sum(report.robust_correct[32.0]) < len(y)
    bisected = smallest_breaking_eps(strict_model, *strict, IteratedSign(0, 5), eps_max=64.0)
    expected = smallest_breaking_eps(numpy_model, x, y, IteratedSign(0, 5), eps_max=64.0)
    np.testing.assert_array_equal(bisected, expected)
    surface = loss_surface(strict_model, *strict, [0.0, 8.0], [0.0, 8.0], seed=2)
    reference = loss_surface(numpy_model, x, y, [0.0, 8.0], [0.0, 8.0], seed=2)
    np.testing.assert_allclose(np.asarray(surface.losses), reference.losses, rtol=1e-12)
