"""The cost of an attack, counted at the model: every ``AttackResult`` carries the forward
and backward sample-passes its model saw, and they equal what a wrapper around the model
counts by itself, sample by sample, on every backend, dtype, batch size and setting.

Early stopping lowers the count twice: a fooled sample leaves the batch, and so does one
whose iterate under a memoryless rule (signed or normalised steps) has entered a cycle; the
second keeps the result exactly as the full loop computes it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest
import torch

from signattack import APGD, APGDT, FABT, FGSM, L2PGD, IteratedSign, Square
from signattack.attacks.pgd_l2 import L2Steps
from signattack.attacks.sign import SignSteps

SHAPE = (1, 4, 4)
FEATURES = 16


class _Tap(torch.autograd.Function):
    """The identity, counting the samples of every gradient that flows back through it."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, counter: CountingTorch) -> torch.Tensor:
        ctx.counter = counter
        return x.clone()

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        ctx.counter.backward += grad.shape[0]
        return grad, None


class CountingTorch(torch.nn.Module):
    """A torch model that counts the samples of its forward passes and of the input
    gradients taken through it (it computes in ``dtype``, whatever the input's)."""

    def __init__(self, inner: torch.nn.Module, dtype: torch.dtype = torch.float64) -> None:
        super().__init__()
        self.inner, self.dtype = inner, dtype
        self.forward_count = 0
        self.backward = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.forward_count += x.shape[0]
        return self.inner(_Tap.apply(x, self).to(self.dtype))

    def counts(self) -> tuple[int, int]:
        return self.forward_count, self.backward


@dataclass
class CountingNumpy:
    """A NumPy model (``__call__`` and ``vjp``) that counts the samples it is handed."""

    inner: Any
    forward: int = 0
    backward: int = 0

    def __call__(self, x: np.ndarray) -> np.ndarray:
        self.forward += len(x)
        return self.inner(x)

    def vjp(self, x: np.ndarray, cotangent: np.ndarray) -> np.ndarray:
        self.backward += len(x)
        return self.inner.vjp(x, cotangent)

    def counts(self) -> tuple[int, int]:
        return self.forward, self.backward


@dataclass
class RowLinear:
    """``z = W flatten(x) + b`` computed row by row (an elementwise product and a sum over
    each sample's own features): a sample's logits and gradient are the same bits in a batch
    of any size. ``noise`` adds a fresh random shift to the logits at every call (a
    randomized model)."""

    weight: np.ndarray
    bias: np.ndarray
    noise: float = 0.0

    def __post_init__(self) -> None:
        self.draws = np.random.default_rng(5)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        flat = x.reshape(len(x), 1, -1).astype(np.float64)
        logits = (flat * self.weight[None]).sum(axis=-1) + self.bias
        if self.noise:
            logits = logits + self.draws.normal(scale=self.noise, size=logits.shape)
        return logits

    def vjp(self, x: np.ndarray, cotangent: np.ndarray) -> np.ndarray:
        grad = (cotangent[:, :, None] * self.weight[None]).sum(axis=1)
        return grad.reshape(x.shape).astype(x.dtype)


def _weights(classes: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.normal(scale=0.02, size=(classes, FEATURES)), rng.normal(size=classes)


def _torch_model(classes: int = 5) -> CountingTorch:
    weight, bias = _weights(classes)
    linear = torch.nn.Linear(FEATURES, classes).double()
    with torch.no_grad():
        linear.weight.copy_(torch.from_numpy(weight))
        linear.bias.copy_(torch.from_numpy(bias))
    return CountingTorch(torch.nn.Sequential(torch.nn.Flatten(), linear))


def _batch(library: str, count: int, dtype: str, seed: int = 1) -> tuple[Any, Any]:
    rng = np.random.default_rng(seed)
    x = np.round(rng.uniform(0, 255, size=(count, *SHAPE)))
    y = rng.integers(0, 5, size=count)
    x = x.astype(np.uint8) if dtype == "uint8" else x
    if library == "torch":
        return torch.from_numpy(x), torch.from_numpy(y)
    return x, y


def _model(library: str) -> CountingTorch | CountingNumpy:
    if library == "torch":
        return _torch_model()
    return CountingNumpy(RowLinear(*_weights(5)))


def _reported(result: Any) -> tuple[int, int]:
    return result.forward_passes, result.backward_passes


@pytest.mark.parametrize("library", ["torch", "numpy"])
@pytest.mark.parametrize(("steps", "eot", "count"), [(1, 1, 1), (3, 1, 4), (4, 3, 2)])
def test_iterated_sign_costs_its_closed_form(library: str, steps: int, eot: int, count: int):
    """Without early stopping every step evaluates and differentiates every sample, ``eot``
    times, and ``run`` evaluates the final point once more: ``eot * n * (k + 1)`` forward
    and ``eot * n * k`` backward passes."""
    model = _model(library)
    x, y = _batch(library, count, "float64")
    result = IteratedSign(8, steps=steps, eot=eot).run(model, x, y)
    expected = (eot * count * (steps + 1), eot * count * steps)
    assert _reported(result) == expected
    assert model.counts() == expected


@pytest.mark.parametrize("library", ["torch", "numpy"])
def test_fgsm_and_l2pgd_cost_their_closed_forms(library: str):
    count = 3
    model = _model(library)
    x, y = _batch(library, count, "float64")
    assert _reported(FGSM(8).run(model, x, y)) == (2 * count, count)
    assert _reported(L2PGD(40.0, steps=5).run(model, x, y)) == (6 * count, 5 * count)
    assert model.counts() == (8 * count, 6 * count)


def _attacks(early_stop: bool) -> list[Any]:
    return [
        IteratedSign(24, steps=6, early_stop=early_stop),
        IteratedSign(24, steps=6, step_size=8, early_stop=early_stop, random_start=True, seed=3),
        IteratedSign(24, steps=4, early_stop=early_stop, eot=2),
        L2PGD(300.0, steps=6, early_stop=early_stop, random_start=True, seed=3),
    ]


@pytest.mark.parametrize("library", ["torch", "numpy"])
@pytest.mark.parametrize("dtype", ["float64", "uint8"])
@pytest.mark.parametrize("early_stop", [False, True])
def test_reported_passes_are_the_models_own_count(library: str, dtype: str, early_stop: bool):
    """Whatever the attack, the dtype and the early stopping, the result reports exactly the
    samples the model was handed and the input gradients taken through it."""
    x, y = _batch(library, 6, dtype)
    for attack in [*_attacks(early_stop), FGSM(24)]:
        model = _model(library)
        result = attack.run(model, x, y)
        assert _reported(result) == model.counts(), attack
    model = _model(library)
    radii = np.array([0.0, 4.0, 8.0, 16.0, 24.0, 40.0])
    eps = torch.from_numpy(radii) if library == "torch" else radii
    result = IteratedSign(24, steps=5, early_stop=early_stop).run_per_sample(model, x, y, eps)
    assert _reported(result) == model.counts()


@pytest.mark.parametrize("library", ["torch", "numpy"])
def test_a_refused_batch_costs_nothing_and_one_sample_costs_one_each(library: str):
    model = _model(library)
    x, y = _batch(library, 1, "uint8")
    with pytest.raises(ValueError, match="non-empty batch"):
        IteratedSign(8, steps=3).run(model, x[:0], y[:0])
    assert model.counts() == (0, 0)
    assert _reported(IteratedSign(8, steps=3).run(model, x, y)) == (4, 3)
    assert model.counts() == (4, 3)


def _two_class_batch(robust: int, fooled: int) -> tuple[np.ndarray, np.ndarray, RowLinear]:
    """Integer-valued pixels well inside the box, a two-class linear model that puts every
    one of them in class 0 by a margin no step can overcome, and labels: 0 for ``robust``
    samples, 1 (misclassified from the start) for ``fooled`` ones. Under the margin loss the
    gradient is ``w_1 - w_0`` everywhere: the signed steps walk straight to a corner of the
    ball and stay there."""
    rng = np.random.default_rng(2)
    weight = rng.normal(scale=0.02, size=(2, FEATURES))
    weight[1, np.abs(weight[1] - weight[0]) < 1e-3] += 0.01  # no pixel without a sign
    x = np.round(rng.uniform(60, 190, size=(robust + fooled, *SHAPE)))
    y = np.array([0] * robust + [1] * fooled)
    return x, y, RowLinear(weight, np.array([1000.0, 0.0]))


@pytest.mark.parametrize(("eps", "step_size", "corner"), [(8, 2, 4), (9, 2, 5), (6, 5, 2)])
def test_a_sample_at_a_fixed_point_leaves_the_batch(eps: int, step_size: int, corner: int):
    """A robust sample reaches the corner after ``ceil(eps / a)`` steps; evaluated there a
    second time (the model confirms the loss), it leaves: ``corner + 2`` gradients instead of
    ``steps``. A sample fooled at the start costs one. The result is the full loop's."""
    robust, fooled, steps = 3, 2, 12
    x, y, linear = _two_class_batch(robust, fooled)
    attack = IteratedSign(eps, steps=steps, step_size=step_size, loss="margin", early_stop=True)
    model = CountingNumpy(linear)
    result = attack.run(model, x, y)
    backward = robust * (corner + 2) + fooled
    assert _reported(result) == model.counts() == (backward + robust + fooled, backward)
    full = _without_cycles(attack, linear, x, y)
    _assert_same(result, full)
    assert full.backward_passes == robust * steps + fooled


@dataclass
class Bowl:
    """Two classes: ``z = (0, t.(x - c) - |x - c|^2)`` with ``|t| < 2``. Class 0 always wins
    on odd offsets, and the margin loss (``z_1``) pulls every pixel towards ``c``: with steps
    of 2 from an odd offset, a pixel walks to ``c - 1`` or ``c + 1`` and then jumps across
    ``c`` and back at every step, a 2-cycle whose two points have different losses."""

    centre: np.ndarray
    tilt: np.ndarray

    def __call__(self, x: np.ndarray) -> np.ndarray:
        offset = (x - self.centre).reshape(len(x), -1)
        loss = (self.tilt.reshape(1, -1) * offset - offset**2).sum(axis=1)
        return np.stack([np.zeros_like(loss), loss], axis=1)

    def vjp(self, x: np.ndarray, cotangent: np.ndarray) -> np.ndarray:
        slope = self.tilt - 2 * (x - self.centre)
        return cotangent[:, 1].reshape(-1, 1, 1, 1) * slope


@pytest.mark.parametrize("steps", [11, 12])
def test_a_sample_on_a_two_cycle_leaves_the_batch(steps: int):
    """A sample whose farthest pixel is ``2t + 1`` from the centre oscillates from step
    ``t``; the states and the loss repeat two steps apart from step ``t + 2`` on, and it
    leaves after ``t + 3`` gradients. Its last point is the one of the cycle that the
    remaining steps' parity leads to: the full loop's, for an odd and an even count."""
    rng = np.random.default_rng(4)
    offsets = rng.choice([-5, -3, -1, 1, 3, 5], size=(4, *SHAPE)).astype(np.float64)
    offsets[0] = 1.0  # oscillating from the start
    centre = np.round(rng.uniform(20, 230, size=SHAPE))
    x, y = centre + offsets, np.zeros(4, dtype=np.int64)
    bowl = Bowl(centre, rng.choice([-0.5, 0.5], size=SHAPE))
    model = CountingNumpy(bowl)
    attack = IteratedSign(20, steps=steps, step_size=2, loss="margin", early_stop=True)
    result = attack.run(model, x, y)
    walks = (np.abs(offsets).reshape(4, -1).max(axis=1) - 1) // 2
    backward = int((walks + 3).sum())
    assert _reported(result) == model.counts() == (backward + 4, backward)
    full = _without_cycles(attack, bowl, x, y)
    _assert_same(result, full)
    assert full.backward_passes == 4 * steps
    assert np.all(np.abs(result.x_adv - centre) == 1)  # on the cycle


def _without_cycles(attack: Any, model: Any, x: Any, y: Any) -> Any:
    """The attack's result with the cycle check off (every rule says it has a memory)."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(SignSteps, "memoryless", False)
        patch.setattr(L2Steps, "memoryless", False)
        return attack.run(model, x, y)


def _assert_same(result: Any, full: Any) -> None:
    for name in ("x_adv", "losses", "predictions", "success"):
        assert np.array_equal(np.asarray(getattr(result, name)), np.asarray(getattr(full, name)))


def test_a_model_that_answers_differently_is_never_cut_short():
    """At the same point a randomized model gives another loss: no cycle is taken on its
    word, and neither with several EOT draws, which average independent passes."""
    robust, steps = 3, 8
    x, y, linear = _two_class_batch(robust, 0)
    noisy = CountingNumpy(RowLinear(linear.weight, linear.bias, noise=1e-3))
    attack = IteratedSign(8, steps=steps, step_size=4, loss="margin", early_stop=True)
    assert _reported(attack.run(noisy, x, y)) == ((steps + 1) * robust, steps * robust)
    drawn = IteratedSign(8, steps=steps, step_size=4, loss="margin", early_stop=True, eot=2)
    assert drawn.run(CountingNumpy(linear), x, y).backward_passes == 2 * steps * robust


def test_the_summary_shows_the_passes():
    model = _torch_model()
    x, y = _batch("torch", 5, "float64")
    shown = repr(IteratedSign(8, steps=3).run(model, x, y))
    assert "model passes (samples) 20 forward, 15 backward" in shown


class _Rows(torch.nn.Module):
    """A model evaluated one sample at a time: its answer for a sample is the same bits in
    a batch of any size, so two runs that hand it different batches compare exactly."""

    def __init__(self, inner: torch.nn.Module) -> None:
        super().__init__()
        self.inner = inner

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.inner(x[index : index + 1] / 255) for index in range(len(x))])


@pytest.fixture(scope="module")
def digits_mlp(digits) -> torch.nn.Module:
    """A small MLP trained for a moment on the real digits."""
    generator = torch.Generator().manual_seed(0)
    net = torch.nn.Sequential(
        torch.nn.Flatten(), torch.nn.Linear(64, 32), torch.nn.ReLU(), torch.nn.Linear(32, 10)
    )
    for parameter in net.parameters():
        with torch.no_grad():
            parameter.copy_(torch.randn(parameter.shape, generator=generator) * 0.2)
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-2)
    for _ in range(120):
        optimizer.zero_grad()
        torch.nn.functional.cross_entropy(net(digits.x_train / 255), digits.y_train).backward()
        optimizer.step()
    return net.eval()


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore:IteratedSign.*corners of the ball:UserWarning")
@pytest.mark.parametrize(("eps", "step_size"), [(16, 4), (16, 16)])
def test_cycles_on_integer_digits_keep_the_result_and_save_passes(
    digits, digits_mlp, eps: int, step_size: int
):
    """IteratedSign at 50 fixed steps on uint8 digits: samples that settle into a fixed point
    or a 2-cycle leave the batch. The returned images, the whole loss trace, predictions and
    success are those of the full loop, bit for bit, for far fewer passes."""
    x, y = digits.x_test[:24].to(torch.uint8), digits.y_test[:24]
    attack = IteratedSign(eps, steps=50, step_size=step_size, early_stop=True)
    model = CountingTorch(_Rows(digits_mlp), torch.float32)
    unchecked = CountingTorch(_Rows(digits_mlp), torch.float32)
    result = attack.run(model, x, y)
    full = _without_cycles(attack, unchecked, x, y)
    _assert_same(result, full)
    assert result.x_adv.dtype == torch.uint8
    assert _reported(result) == model.counts()
    assert _reported(full) == unchecked.counts()
    assert result.backward_passes < full.backward_passes / 2


@pytest.mark.slow
def test_compiled_loop_counts_every_sample_at_every_step():
    """JAX runs the loop as one computation, the whole batch at every step (early stopping
    is a mask there): ``n * k`` gradients and ``n * (k + 1)`` evaluations."""
    jax = pytest.importorskip("jax")
    jnp = jax.numpy
    weight, bias = (jnp.asarray(array, dtype=jnp.float32) for array in _weights(5))

    def model(x: Any) -> Any:
        return x.reshape(x.shape[0], -1) @ weight.T + bias

    x, y = _batch("numpy", 4, "float64")
    x, y = jnp.asarray(x, dtype=jnp.float32), jnp.asarray(y)
    for early_stop in (False, True):
        result = IteratedSign(8, steps=3, early_stop=early_stop).run(model, x, y)
        assert _reported(result) == (16, 12)


OTHERS = [
    APGD(16, steps=4, early_stop=True, seed=0),
    APGDT(16, steps=3, target_classes=2, seed=0),
    Square(16, queries=6, seed=0),
    FABT(16, steps=3, target_classes=2, seed=0),
]


@pytest.mark.parametrize("attack", OTHERS, ids=["APGD", "APGD-T", "Square", "FAB-T"])
def test_the_other_attacks_report_the_models_count(attack: Any):
    model = _model("torch")
    x, _ = _batch("torch", 5, "uint8")
    y = model(x).argmax(dim=1)  # classified correctly: every sample is attacked
    model.forward_count = 0
    result = attack.run(model, x, y)
    assert _reported(result) == model.counts()
    assert (result.backward_passes == 0) == attack.gradient_free
