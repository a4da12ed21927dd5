"""Invariants of FGSM and IteratedSign over random shapes, bounds, eps, steps, dtypes and
backends: the same network as a torch module, a NumPy model with its own vjp, and a JAX
function."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest
import torch
from hypothesis import assume, given
from hypothesis import strategies as st

from signattack import FGSM, IteratedSign

# The boxes are arbitrary: a sample in [0, 1] inside bounds (-9, 1) is what is meant here.
# The strategies draw step sizes at random, many of them at least the radius: the warning
# that says so has its own test (test_trust.py).
pytestmark = [
    pytest.mark.filterwarnings("ignore::signattack.UnitsWarning"),
    pytest.mark.filterwarnings("ignore:IteratedSign.*a step of at least the radius"),
]

DTYPES = {"float32": torch.float32, "float64": torch.float64, "uint8": torch.uint8}
BACKENDS = [
    pytest.param("torch"),
    pytest.param("numpy"),
    pytest.param("jax", marks=pytest.mark.slow),  # compiles a loop for every drawn shape
]


def _model(features: int, classes: int, dtype: torch.dtype, seed: int) -> torch.nn.Module:
    generator = torch.Generator().manual_seed(seed)
    model = torch.nn.Sequential(
        torch.nn.Flatten(),
        torch.nn.Linear(features, 16),
        torch.nn.Tanh(),
        torch.nn.Linear(16, classes),
    )
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.copy_(torch.randn(parameter.shape, generator=generator) * 0.3)
    return model.to(torch.float64 if dtype == torch.float64 else torch.float32)


class NumpyMLP:
    """The torch network's weights as a NumPy model with its own vjp."""

    def __init__(self, module: torch.nn.Module) -> None:
        self.w1, self.b1, self.w2, self.b2 = (p.detach().numpy() for p in module.parameters())

    def _hidden(self, x: np.ndarray) -> np.ndarray:
        return np.tanh(x.reshape(len(x), -1).astype(self.w1.dtype) @ self.w1.T + self.b1)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return self._hidden(x) @ self.w2.T + self.b2

    def vjp(self, x: np.ndarray, cotangent: np.ndarray) -> np.ndarray:
        hidden = self._hidden(x)
        back = ((cotangent @ self.w2) * (1 - hidden**2)) @ self.w1
        return back.reshape(x.shape).astype(x.dtype)


def _jax_forward(params: Any, x: Any) -> Any:
    jnp = pytest.importorskip("jax").numpy
    w1, b1, w2, b2 = params
    hidden = jnp.tanh(jnp.reshape(x, (x.shape[0], -1)).astype(w1.dtype) @ w1.T + b1)
    return hidden @ w2.T + b2


def _jax_mlp(module: torch.nn.Module) -> Any:
    """The torch network's weights as a JAX pytree model: the compiled attack loop takes the
    weights as arguments, so draws of the same shapes share one compilation."""
    jax = pytest.importorskip("jax")
    params = tuple(jax.numpy.asarray(p.detach().numpy()) for p in module.parameters())
    return jax.tree_util.Partial(_jax_forward, params)


@dataclass
class Problem:
    """An attack, a model and a batch on one backend, with the host views tests compare."""

    attack: IteratedSign
    model: Any
    x: Any
    y: Any
    backend: str

    def predict(self, x: Any) -> np.ndarray:
        if self.backend == "torch":
            with torch.no_grad():
                parameter = next(self.model.parameters())
                return self.model(x.to(parameter.dtype)).argmax(dim=1).numpy()
        return np.asarray(self.model(x)).argmax(axis=1)


def host(array: Any) -> np.ndarray:
    return array.numpy() if isinstance(array, torch.Tensor) else np.asarray(array)


def same(a: Any, b: Any) -> bool:
    return type(a) is type(b) and a.dtype == b.dtype and np.array_equal(host(a), host(b))


@st.composite
def problems(draw, backend):
    dtype_name = draw(st.sampled_from(sorted(DTYPES)))
    assume(not (backend == "jax" and dtype_name == "float64"))  # JAX's default is 32-bit
    dtype = DTYPES[dtype_name]
    if backend == "jax":  # a few shapes and step counts: each compiles a loop once
        batch = draw(st.sampled_from([2, 5]))
        shape = (batch, *draw(st.sampled_from([(4,), (2, 3)])))
    else:
        batch = draw(st.integers(1, 5))
        shape = (batch, *draw(st.lists(st.integers(1, 4), min_size=1, max_size=3)))
    if dtype == torch.uint8:
        lower = draw(st.integers(0, 200))
        upper = draw(st.integers(lower + 1, 255))
    else:
        lower = draw(st.floats(-100, 100))
        upper = lower + draw(st.floats(0.01, 300))
    seed = draw(st.integers(0, 2**16))
    generator = torch.Generator().manual_seed(seed)
    unit = torch.rand(shape, generator=generator, dtype=torch.float64)
    x = (lower + unit * (upper - lower)).clamp(lower, upper)
    x = x.round().to(dtype) if dtype == torch.uint8 else x.to(dtype).clamp(lower, upper)
    classes = draw(st.integers(2, 5))
    y = torch.randint(0, classes, (batch,), generator=generator)
    model = _model(int(np.prod(shape[1:])), classes, dtype, seed)
    attack = IteratedSign(
        draw(st.floats(0, (upper - lower) / 2)),
        draw(st.sampled_from([1, 3]) if backend == "jax" else st.integers(1, 6)),
        step_size=draw(st.none() | st.floats(0, 50)),
        bounds=(lower, upper),
        random_start=draw(st.booleans()),
        targeted=draw(st.booleans()),
        loss=draw(st.sampled_from(["ce", "margin"])),
        seed=seed,
    )
    if backend == "numpy":
        return Problem(attack, NumpyMLP(model), x.numpy(), y.numpy(), backend)
    if backend == "jax":
        jnp = pytest.importorskip("jax").numpy
        return Problem(attack, _jax_mlp(model), jnp.asarray(x.numpy()), jnp.asarray(y), backend)
    return Problem(attack, model, x, y, backend)


def _within_ball_and_box(attack, x, x_adv):
    x, x_adv = host(x), host(x_adv)
    if x.dtype == np.uint8:
        distance = np.abs(x_adv.astype(np.int16) - x.astype(np.int16))
        assert int(distance.max()) <= attack.eps
    else:
        assert bool((np.abs(x_adv - x) <= attack.eps).all())
    lower, upper = attack.bounds
    assert bool((x_adv >= lower).all())
    assert bool((x_adv <= upper).all())


@pytest.mark.parametrize("backend", BACKENDS)
@given(data=st.data())
def test_result_keeps_type_shape_dtype_device_and_stays_in_ball_and_box(backend, data):
    problem = data.draw(problems(backend))
    attack, model, x, y = problem.attack, problem.model, problem.x, problem.y
    before = host(x).copy()
    x_adv = attack(model, x, y)
    assert type(x_adv) is type(x)
    assert x_adv.shape == x.shape
    assert x_adv.dtype == x.dtype
    if problem.backend == "torch":
        assert x_adv.device == x.device
    _within_ball_and_box(attack, x, x_adv)
    assert np.array_equal(host(x), before), "x was mutated"


@pytest.mark.parametrize("backend", BACKENDS)
@given(data=st.data())
def test_run_agrees_with_call_and_reports_a_consistent_trace(backend, data):
    problem = data.draw(problems(backend))
    attack, model, x, y = problem.attack, problem.model, problem.x, problem.y
    result = attack.run(model, x, y)
    assert same(result.x_adv, attack(model, x, y))
    assert tuple(result.losses.shape) == (attack.steps + 1, x.shape[0])
    assert tuple(result.predictions.shape) == tuple(result.success.shape) == (x.shape[0],)
    predictions = host(result.predictions)
    np.testing.assert_array_equal(predictions, problem.predict(result.x_adv))
    expected = predictions == host(y) if attack.targeted else predictions != host(y)
    np.testing.assert_array_equal(host(result.success), expected)


@pytest.mark.parametrize("backend", BACKENDS)
@given(data=st.data())
def test_zero_eps_is_the_identity(backend, data):
    problem = data.draw(problems(backend))
    attack, model, x, y = problem.attack, problem.model, problem.x, problem.y
    zero = IteratedSign(0.0, attack.steps, bounds=attack.bounds, random_start=attack.random_start)
    assert same(zero(model, x, y), x)


@pytest.mark.parametrize("backend", BACKENDS)
@given(data=st.data())
def test_fgsm_is_one_iterated_step_of_size_eps(backend, data):
    problem = data.draw(problems(backend))
    attack, model, x, y = problem.attack, problem.model, problem.x, problem.y
    fgsm = FGSM(attack.eps, bounds=attack.bounds, targeted=attack.targeted, loss=attack.loss)
    one_step = IteratedSign(
        attack.eps,
        1,
        step_size=attack.eps,
        bounds=attack.bounds,
        targeted=attack.targeted,
        loss=attack.loss,
    )
    assert same(fgsm(model, x, y), one_step(model, x, y))
    assert same(fgsm.run(model, x, y).losses, one_step.run(model, x, y).losses)


class _OneByOne(torch.nn.Module):
    """Runs the model on one sample at a time: a batch sees exactly the arithmetic of its
    samples alone, whatever kernels the CPU picks for other batch sizes."""

    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.model(x[i : i + 1]) for i in range(x.shape[0])])


@pytest.mark.parametrize("backend", ["torch", "numpy"])
@given(data=st.data())
def test_batch_elements_are_independent(backend, data):
    # NumPy's matrix products may also pick kernels by batch size: the one-by-one model
    # keeps the comparison to the attack's own arithmetic. (JAX compiles a batch as one
    # program, whose fusion may differ in the last bit between batch sizes.)
    problem = data.draw(problems(backend))
    attack, model, x, y = problem.attack, problem.model, problem.x, problem.y
    if attack.random_start:
        return  # the random start draws noise for the whole batch
    model = _OneByOne(model) if problem.backend == "torch" else _NumpyOneByOne(model)
    batch = attack(model, x, y)
    for i in range(x.shape[0]):
        alone = attack(model, x[i : i + 1], y[i : i + 1])
        assert same(alone, batch[i : i + 1])


class _NumpyOneByOne:
    def __init__(self, model: NumpyMLP) -> None:
        self.model = model

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return np.concatenate([self.model(x[i : i + 1]) for i in range(len(x))])

    def vjp(self, x: np.ndarray, cotangent: np.ndarray) -> np.ndarray:
        return np.concatenate(
            [self.model.vjp(x[i : i + 1], cotangent[i : i + 1]) for i in range(len(x))]
        )


@pytest.mark.parametrize("backend", BACKENDS)
@given(data=st.data())
def test_random_start_is_reproducible_and_leaves_global_rng_alone(backend, data):
    problem = data.draw(problems(backend))
    attack, model, x, y = problem.attack, problem.model, problem.x, problem.y
    np_state = np.random.get_state()[1].copy()  # noqa: NPY002 - the global state is the point
    torch_state = torch.random.get_rng_state()
    first = attack(model, x, y)
    assert same(first, attack(model, x, y))
    assert np.array_equal(np.random.get_state()[1], np_state)  # noqa: NPY002
    assert torch.equal(torch.random.get_rng_state(), torch_state)


def test_random_start_differs_between_seeds_and_rng_overrides_seed():
    model = _model(12, 3, torch.float32, 0)
    x = torch.full((4, 12), 100.0)
    y = torch.tensor([0, 1, 2, 0])
    first = IteratedSign(8, 1, step_size=0.0, random_start=True, seed=1)
    second = IteratedSign(8, 1, step_size=0.0, random_start=True, seed=2)
    assert not torch.equal(first(model, x, y), second(model, x, y))
    rng_result = first(model, x, y, rng=np.random.default_rng(2))
    assert torch.equal(rng_result, second(model, x, y))


def test_default_step_size_is_madry_rule():
    assert IteratedSign(8, 5).resolved_step_size == pytest.approx(4.0)
    assert IteratedSign(8, 5, step_size=1.5).resolved_step_size == 1.5


def test_course_unprojected_attack_adds_eight_times_the_sign_each_step():
    """IteratedSign(eps=40, steps=5, step_size=8) never binds the ball: each step adds 8*sign."""
    torch.manual_seed(0)
    model = torch.nn.Linear(6, 2)
    x = torch.full((3, 6), 100.0)
    y = torch.tensor([0, 1, 0])
    result = IteratedSign(40, 5, step_size=8).run(model, x, y)
    sign = torch.sign(model.weight[1 - y] - model.weight[y]).detach()
    assert torch.equal(result.x_adv, x + 40 * sign)
