"""The contract every attack keeps, checked for every attack on every backend.

A new attack joins by adding one line to ``ATTACKS``: it then gets every check below. The
checks compare nothing computed two ways through a branch: each one is exact (the ball, the
box, dtypes, identity at eps 0, reproducibility) or compares one computation with itself.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from signattack import APGD, APGDT, FABT, FGSM, EpsAttack, IteratedSign, LinearClassifier, Square
from signattack.attacks import PerSampleAttack
from signattack.evaluation import evaluate

ATTACKS: dict[str, EpsAttack] = {
    "fgsm": FGSM(8.0),
    "bim": IteratedSign(8.0, 3),
    "pgd": IteratedSign(8.0, 3, random_start=True, seed=1),
    "bim early stop": IteratedSign(8.0, 3, early_stop=True),
    "apgd-ce": APGD(8.0, 4, seed=1),
    "apgd-dlr restarts": APGD(8.0, 4, loss="dlr", restarts=2, seed=1),
    "apgd-t": APGDT(8.0, 4, target_classes=2, seed=1),
    "square": Square(8.0, 12, seed=1),
    "square restarts": Square(8.0, 6, restarts=2, loss="ce", seed=1),
    "fab-t": FABT(8.0, 4, target_classes=2, seed=1),
    "fab-t restarts": FABT(8.0, 3, target_classes=2, restarts=2, seed=1),
}
"""One of each kind of attack: a new attack adds its line here."""

CLASSES, SHAPE = 5, (3, 4)


def _weights(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.normal(scale=0.02, size=(CLASSES, 12)), rng.normal(scale=0.2, size=CLASSES)


class _TorchLinear(torch.nn.Module):
    """A linear classifier in float32 that takes inputs of any dtype, with a dropout layer
    (active in training mode) so that a mode left switched shows."""

    def __init__(self) -> None:
        super().__init__()
        weight, bias = _weights()
        self.linear = torch.nn.Linear(12, CLASSES)
        self.dropout = torch.nn.Dropout(0.5)
        with torch.no_grad():
            self.linear.weight.copy_(torch.from_numpy(weight))
            self.linear.bias.copy_(torch.from_numpy(bias))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(self.dropout(x.flatten(1).to(torch.float32)))


class _Backend:
    """A model and the conversions to and from one array library."""

    name = "numpy"
    dtypes = (np.float32, np.float64, np.uint8)

    def model(self):
        return LinearClassifier(*_weights())

    def array(self, values: np.ndarray, dtype=None):
        return values if dtype is None else values.astype(dtype)

    def host(self, values) -> np.ndarray:
        return np.asarray(values)

    def is_ours(self, values) -> bool:
        return isinstance(values, np.ndarray)


class _Torch(_Backend):
    name = "torch"
    dtypes = (torch.float16, torch.bfloat16, torch.float32, torch.float64, torch.uint8)

    def model(self):
        return _TorchLinear().eval()

    def array(self, values, dtype=None):
        tensor = torch.from_numpy(np.ascontiguousarray(values))
        return tensor if dtype is None else tensor.to(dtype)

    def host(self, values):
        return (
            values.detach().to(torch.float64).numpy()
            if values.is_floating_point()
            else (values.numpy())
        )

    def is_ours(self, values) -> bool:
        return isinstance(values, torch.Tensor)


class _Jax(_Backend):
    name = "jax"

    def __init__(self) -> None:
        jax = pytest.importorskip("jax")
        self.jnp = jax.numpy
        self.dtypes = (self.jnp.float32, self.jnp.uint8)

    def model(self):
        weight, bias = _weights()
        w, b = self.jnp.asarray(weight, dtype=self.jnp.float32), self.jnp.asarray(bias)
        jnp = self.jnp
        return lambda x: jnp.reshape(x, (x.shape[0], -1)).astype(jnp.float32) @ w.T + b

    def array(self, values, dtype=None):
        return self.jnp.asarray(values) if dtype is None else self.jnp.asarray(values, dtype=dtype)

    def host(self, values):
        return np.asarray(values, dtype=np.float64 if values.dtype.kind == "f" else None)

    def is_ours(self, values) -> bool:
        return type(values).__module__.startswith("jax")


BACKENDS = {
    "numpy": _Backend,
    "torch": _Torch,
    "jax": lambda: _Jax(),
}


@pytest.fixture(params=["numpy", "torch", pytest.param("jax", marks=pytest.mark.slow)])
def backend(request):
    return BACKENDS[request.param]()


@pytest.fixture(params=list(ATTACKS), ids=list(ATTACKS))
def attack(request) -> EpsAttack:
    return ATTACKS[request.param]


def _batch(seed: int = 0, size: int = 8) -> tuple[np.ndarray, np.ndarray]:
    """Inputs in the box, some on its faces (so that the box binds), and their labels."""
    rng = np.random.default_rng(seed)
    x = rng.uniform(0, 255, size=(size, *SHAPE))
    x[0, 0], x[1, 1] = 0.0, 255.0
    x = np.round(x)  # integers: the same values in every dtype, uint8 included
    y = rng.integers(0, CLASSES, size=size)
    return x, y


def test_dtype_type_shape_ball_and_box_are_kept_exactly(backend, attack):
    x, y = _batch()
    model = backend.model()
    for dtype in backend.dtypes:
        inputs, labels = backend.array(x, dtype), backend.array(y)
        result = attack.run(model, inputs, labels)
        assert backend.is_ours(result.x_adv)
        assert result.x_adv.dtype == inputs.dtype, dtype
        assert tuple(result.x_adv.shape) == tuple(inputs.shape)
        assert tuple(result.predictions.shape) == (len(y),)
        assert tuple(result.success.shape) == (len(y),)
        assert result.losses.ndim == 2
        assert result.losses.shape[1] == len(y)
        # The ball in the input's own dtype: the difference of two values of that dtype,
        # computed in that dtype, against eps in that dtype.
        difference = abs(result.x_adv - inputs) if "int" not in str(dtype) else None
        if difference is None:
            wide = backend.host(result.x_adv).astype(np.int64) - x.astype(np.int64)
            assert np.abs(wide).max() <= np.floor(attack.eps), dtype
        else:
            radius = backend.array(np.asarray(attack.eps), dtype)
            assert bool((difference <= radius).all()), dtype
        adversarial = backend.host(result.x_adv)
        assert adversarial.min() >= attack.bounds[0], dtype
        assert adversarial.max() <= attack.bounds[1], dtype
        assert np.all(np.isfinite(adversarial))


def test_eps_zero_is_the_identity(backend, attack):
    x, y = _batch(1)
    model = backend.model()
    for dtype in backend.dtypes:
        inputs = backend.array(x, dtype)
        x_adv = attack.with_eps(0.0)(model, inputs, backend.array(y))
        np.testing.assert_array_equal(backend.host(x_adv), backend.host(inputs))


def test_run_agrees_with_call_and_is_reproducible(backend, attack):
    x, y = _batch(2)
    model = backend.model()
    inputs, labels = backend.array(x, backend.dtypes[0]), backend.array(y)
    result = attack.run(model, inputs, labels)
    again = attack.run(model, inputs, labels)
    called = attack(model, inputs, labels)
    np.testing.assert_array_equal(backend.host(result.x_adv), backend.host(called))
    np.testing.assert_array_equal(backend.host(result.x_adv), backend.host(again.x_adv))
    np.testing.assert_array_equal(backend.host(result.losses), backend.host(again.losses))
    generator = attack.run(model, inputs, labels, rng=np.random.default_rng(5))
    same = attack.run(model, inputs, labels, rng=np.random.default_rng(5))
    np.testing.assert_array_equal(backend.host(generator.x_adv), backend.host(same.x_adv))
    with torch.no_grad():
        predicted = np.argmax(backend.host(model(result.x_adv)), axis=1)
    if not getattr(attack, "targeted", False):
        np.testing.assert_array_equal(backend.host(result.success), predicted != y)


PER_SAMPLE = {
    name: attack for name, attack in ATTACKS.items() if isinstance(attack, PerSampleAttack)
}
"""The attacks that give every sample a radius of its own."""


@pytest.mark.parametrize("name", list(PER_SAMPLE))
def test_per_sample_radii_equal_the_runs_at_each_radius(backend, name):
    attack = PER_SAMPLE[name]
    x, y = _batch(3)
    model = backend.model()
    inputs, labels = backend.array(x, backend.dtypes[0]), backend.array(y)
    unit = attack.with_eps(0.0)  # the bisection's way: the radius comes per sample alone
    for eps in (0.0, 3.0, 8.0):
        radii = backend.array(np.full(len(y), eps), backend.dtypes[0])
        per_sample = unit.run_per_sample(model, inputs, labels, radii)
        whole = attack.with_eps(eps).run(model, inputs, labels)
        np.testing.assert_array_equal(backend.host(per_sample.x_adv), backend.host(whole.x_adv))
        np.testing.assert_array_equal(backend.host(per_sample.success), backend.host(whole.success))


def test_labels_are_validated(backend, attack):
    x, y = _batch(4)
    model = backend.model()
    inputs = backend.array(x, backend.dtypes[0])
    bad = {
        "a label beyond the classes": (np.where(np.arange(len(y)) == 2, CLASSES, y), ValueError),
        "a negative label": (np.where(np.arange(len(y)) == 2, -1, y), ValueError),
        "too few labels": (y[:-1], ValueError),
        "float labels": (y.astype(np.float64), TypeError),
    }
    for case, (labels, error) in bad.items():
        with pytest.raises(error, match="y must"):  # noqa: PT012 - the case names the failure
            attack(model, inputs, backend.array(labels))
            pytest.fail(f"{case} was accepted")


class _Failing(_TorchLinear):
    """Raises on its ``fail_at``-th call."""

    def __init__(self, fail_at: int) -> None:
        super().__init__()
        self.calls, self.fail_at = 0, fail_at

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        if self.calls == self.fail_at:
            raise RuntimeError("the model broke")
        return super().forward(x)


@pytest.mark.parametrize("fail_at", [None, 1, 2])
def test_no_side_effects_also_when_the_model_raises(attack, fail_at):
    x, y = _batch(5)
    model = _Failing(fail_at or 10**9).train()
    inputs = torch.from_numpy(x).float().requires_grad_(False)
    labels = torch.from_numpy(y)
    before_x = inputs.clone()
    state = {k: v.clone() for k, v in model.state_dict().items()}
    torch_rng, numpy_rng = torch.random.get_rng_state(), np.random.get_state()[1].copy()  # noqa: NPY002
    if fail_at is None:
        attack.run(model, inputs, labels)
    else:
        with pytest.raises(RuntimeError, match="the model broke"):
            attack.run(model, inputs, labels)
    assert all(module.training for module in model.modules())
    assert all(p.grad is None and p.requires_grad for p in model.parameters())
    assert all(torch.equal(v, state[k]) for k, v in model.state_dict().items())
    assert torch.equal(inputs, before_x)
    assert not inputs.requires_grad
    assert inputs.grad is None
    assert torch.equal(torch.random.get_rng_state(), torch_rng)
    assert np.array_equal(np.random.get_state()[1], numpy_rng)  # noqa: NPY002


def _evaluation_data(backend):
    x, y = _batch(6, size=12)
    # Labels the model gives, so that there is something to attack.
    with torch.no_grad():
        logits = backend.model()(backend.array(x, backend.dtypes[0]))
    y = np.argmax(backend.host(logits), axis=1)
    return [
        (backend.array(x[i : i + 4], backend.dtypes[0]), backend.array(y[i : i + 4]))
        for i in range(0, 12, 4)
    ]


def test_an_evaluation_checkpoints_and_resumes_to_the_uninterrupted_result(
    backend, attack, tmp_path
):
    data, model = _evaluation_data(backend), backend.model()
    eps, path = [2.0, 8.0], tmp_path / "run.json"
    name = {"model_name": "linear"} if backend.name == "jax" else {}
    expected = evaluate(model, data, attack, eps)

    def interrupted():
        yield from data[:2]
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        evaluate(model, interrupted(), attack, eps, checkpoint=path, **name)
    assert sorted(json.loads(path.read_text())["batches"]) == ["0", "1"]
    resumed = evaluate(model, data, attack, eps, checkpoint=path, **name)
    assert resumed == expected
    for radius in eps:
        assert resumed.max_perturbation[radius] <= radius
