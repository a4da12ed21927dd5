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

from signattack import (
    APGD,
    APGDT,
    FABT,
    FGSM,
    L2PGD,
    EpsAttack,
    IteratedSign,
    LinearClassifier,
    Square,
)
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
    "apgd-ce l2": APGD(8.0, 4, norm="l2", seed=1),
    "apgd-t l2": APGDT(8.0, 4, target_classes=2, norm="l2", restarts=2, seed=1),
    "square": Square(8.0, 12, seed=1),
    "square restarts": Square(8.0, 6, restarts=2, loss="ce", seed=1),
    "square l2": Square(40.0, 12, norm="l2", seed=1),
    "fab-t": FABT(8.0, 4, target_classes=2, seed=1),
    "fab-t restarts": FABT(8.0, 3, target_classes=2, restarts=2, seed=1),
    "fab-t l2": FABT(40.0, 4, target_classes=2, norm="l2", seed=1),
    "pgd-l2": L2PGD(8.0, 3, random_start=True, seed=1),
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
        if attack.threat.geometry.name == "l2":  # and the L2 ball, measured exactly
            moved = (backend.host(result.x_adv).astype(np.float64) - x).reshape(len(y), -1)
            assert (np.sqrt((moved**2).sum(axis=1)) <= attack.eps).all(), dtype
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


def _near_the_boundary(size: int = 9) -> tuple[np.ndarray, np.ndarray]:
    """Integer-valued inputs in ``[0, 200]`` whose clean margin is small enough that eps 8
    fools the model on some and not on others, labelled as the model classifies them."""
    weight, bias = _weights()
    pool = np.round(np.random.default_rng(7).uniform(0, 200, size=(200, *SHAPE)))
    logits = pool.reshape(len(pool), -1) @ weight.T + bias
    top = np.sort(logits, axis=1)
    x = pool[np.argsort(top[:, -1] - top[:, -2])[: 5 * size : 5]]
    return x, np.argmax(x.reshape(size, -1) @ weight.T + bias, axis=1)


class _RowLinear:
    """The contract's linear classifier computed row by row (an elementwise product and a
    sum), so that a sample's logits are the same bits in a batch of any size."""

    def __init__(self) -> None:
        self.weight, self.bias = _weights()

    def __call__(self, x: np.ndarray) -> np.ndarray:
        flat = x.reshape(len(x), 1, -1)
        return (flat * self.weight[None]).sum(axis=-1) + self.bias

    def vjp(self, x: np.ndarray, cotangent: np.ndarray) -> np.ndarray:
        return (cotangent[:, :, None] * self.weight[None]).sum(axis=1).reshape(x.shape)


def _fields(result) -> dict[str, np.ndarray]:
    """Every per-sample output of an attack, on the host, batch first."""
    fields = {
        "x_adv": np.asarray(result.x_adv),
        "losses": np.asarray(result.losses).T,
        "predictions": np.asarray(result.predictions),
        "success": np.asarray(result.success),
    }
    for name in ("queries", "distances"):
        if getattr(result, name) is not None:
            fields[name] = np.asarray(getattr(result, name))
    return fields


def test_a_samples_result_does_not_depend_on_its_batch(attack):
    """Batches of 1, 3 and the whole, shuffled, give every sample the same result, bit for
    bit on a model whose rows are exact (with the seed, and with a generator per call)."""
    x, y = _near_the_boundary()
    model = _RowLinear()
    order = np.random.default_rng(1).permutation(len(y))
    for seed in (None, 5):

        def draws(seed: int | None = seed) -> np.random.Generator | None:
            return None if seed is None else np.random.default_rng(seed)

        whole = _fields(attack.run(model, x, y, rng=draws()))
        assert whole["success"].any()  # both kinds of sample
        assert not whole["success"].all()
        for size in (1, 3):
            parts = [
                _fields(
                    attack.run(model, x[order[i : i + size]], y[order[i : i + size]], rng=draws())
                )
                for i in range(0, len(y), size)
            ]
            for name, expected in whole.items():
                got = np.concatenate([part[name] for part in parts])
                np.testing.assert_array_equal(got, expected[order], err_msg=f"{name}, {size}")


def test_a_sample_keeps_its_result_in_any_batch_where_rounding_cannot_decide(backend, attack):
    """On torch (whose kernels may round a row differently in another batch size), success
    agrees wherever the margin at both points is clear of rounding. JAX draws through the
    same host streams and would compile every attack for every batch size here: the exact
    NumPy case above and this one cover the draws."""
    if backend.name != "torch":
        pytest.skip("the draws are the host streams the NumPy and torch cases check")
    x, y = _near_the_boundary()
    model = backend.model()
    inputs, labels = (
        backend.array(x, np.float32 if backend.name != "torch" else torch.float64),
        backend.array(y),
    )
    whole = attack.run(model, inputs, labels)
    cut = max(1, len(y) // 3)  # two batches of other sizes than the whole
    parts = [(0, cut), (cut, len(y))]
    for start, stop in parts:
        part = attack.run(model, inputs[start:stop], labels[start:stop])
        for i in range(start, stop):
            points = (whole.x_adv[i : i + 1], part.x_adv[i - start : i - start + 1])
            with torch.no_grad():
                margins = [np.sort(backend.host(model(p))[0]) for p in points]
            if min(m[-1] - m[-2] for m in margins) > 1e-3:
                alone = bool(backend.host(part.success)[i - start])
                assert alone == bool(backend.host(whole.success)[i])


def _poisoned(backend, ceiling: float, value: float):
    """The contract's model, returning ``value`` (NaN, or +inf for class 0) for every
    sample with a pixel above ``ceiling``."""
    model = backend.model()
    if backend.name == "numpy":

        class Poisoned:
            def __call__(self, x):
                logits = np.array(model(x))
                far = x.reshape(len(x), -1).max(axis=1) > ceiling
                if np.isnan(value):
                    logits[far] = value
                else:
                    logits[far, 0] = value
                return logits

            def vjp(self, x, cotangent):
                return model.vjp(x, np.nan_to_num(cotangent))

        return Poisoned()
    if backend.name == "torch":

        def poisoned_torch(x):
            logits = model(x)
            far = x.flatten(1).to(torch.float32).amax(dim=1) > ceiling
            column = (
                torch.arange(CLASSES) == 0
                if not np.isnan(value)
                else torch.ones(CLASSES, dtype=torch.bool)
            )
            return torch.where(far[:, None] & column[None, :], torch.tensor(value), logits)

        return poisoned_torch
    jnp = backend.jnp

    def poisoned_jax(x):
        logits = model(x)
        far = jnp.max(jnp.reshape(x, (x.shape[0], -1)).astype(jnp.float32), axis=1) > ceiling
        column = (jnp.arange(CLASSES) == 0) if not np.isnan(value) else jnp.ones(CLASSES, bool)
        return jnp.where(far[:, None] & column[None, :], value, logits)

    return poisoned_jax


@pytest.mark.parametrize("value", [np.nan, np.inf], ids=["nan", "inf"])
def test_a_non_finite_output_at_a_visited_point_never_counts_as_success(backend, attack, value):
    """The model is finite at the inputs and NaN (or +inf at class 0) once a pixel moves
    up: the attack refuses with a ValueError, or every success it reports is at a point
    where the model is finite and fooled, with a finite loss trace."""
    if backend.name == "jax" and not np.isnan(value):
        pytest.skip("JAX compiles every attack again: NaN checks its compiled watch")
    x, y = _near_the_boundary()
    keep = y != 0  # argmax of a NaN row is class 0: success there would be a false one
    x, y = x[keep], y[keep]
    # JAX compiles per dtype: one dtype there, the first and the last elsewhere
    dtypes = (
        backend.dtypes[:1] if backend.name == "jax" else (backend.dtypes[0], backend.dtypes[-1])
    )
    for dtype in dtypes:
        inputs, labels = backend.array(x, dtype), backend.array(y)
        model = _poisoned(backend, float(x.max()) + 0.5, value)
        try:
            result = attack.run(model, inputs, labels)
        except ValueError as error:
            refusal = str(error)
        else:
            refusal = None
        if refusal is not None:
            assert "nan or inf" in refusal.lower(), refusal
            continue
        with torch.no_grad():
            logits = backend.host(model(result.x_adv))
        success = backend.host(result.success).astype(bool)
        assert np.isfinite(logits[success]).all(), dtype
        assert (np.argmax(logits[success], axis=1) != y[success]).all(), dtype
        assert np.isfinite(backend.host(result.losses)).all(), dtype


class _WritesIntoItsInput(_TorchLinear):
    """Computes its logits, then zeroes its input and moves it 100 below the box, with
    autograd off (as a careless preprocessing step would)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits = super().forward(x.clone())
        with torch.no_grad():
            x.mul_(0)
            x -= 100
        return logits


class _NumpyWriter:
    def __init__(self) -> None:
        self.linear = LinearClassifier(*_weights())

    def __call__(self, x: np.ndarray) -> np.ndarray:
        logits = self.linear(x)
        x *= 0
        x -= 100
        return logits

    def vjp(self, x: np.ndarray, cotangent: np.ndarray) -> np.ndarray:
        grad = self.linear.vjp(x, cotangent)
        x *= 0
        return grad


def test_a_model_that_writes_into_its_input_changes_neither_the_ball_nor_x(backend, attack):
    if backend.name == "jax":
        pytest.skip("JAX arrays cannot be written into")
    x, y = _near_the_boundary()
    model = _NumpyWriter() if backend.name == "numpy" else _WritesIntoItsInput().eval()
    for dtype in (backend.dtypes[0], backend.dtypes[-1]):  # a float and uint8
        inputs, labels = backend.array(x, dtype), backend.array(y)
        before = backend.host(inputs).copy()
        result = attack.run(model, inputs, labels)
        np.testing.assert_array_equal(backend.host(inputs), before)
        moved = np.abs(backend.host(result.x_adv).astype(np.float64) - x)
        assert moved.max() <= attack.eps, dtype
        adversarial = backend.host(result.x_adv)
        assert adversarial.min() >= attack.bounds[0], dtype
        assert adversarial.max() <= attack.bounds[1], dtype


def test_success_distances_and_points_describe_the_same_point(backend, attack):
    """In every dtype (integers rounded): success is the model fooled at the point
    returned; a minimum-norm attack reports the distance of that point where it succeeds,
    returns the input unchanged where it does not, and succeeds exactly within eps (at a
    radius that is not an integer too)."""
    x, y = _near_the_boundary()
    model = backend.model()
    radii = (8.0, 40.5) if isinstance(attack, FABT) else (8.0,)
    for eps, dtype in ((eps, dtype) for eps in radii for dtype in backend.dtypes):
        attack = attack.with_eps(eps)
        inputs, labels = backend.array(x, dtype), backend.array(y)
        result = attack.run(model, inputs, labels)
        with torch.no_grad():
            predicted = np.argmax(backend.host(model(result.x_adv)), axis=1)
        success = backend.host(result.success).astype(bool)
        if not getattr(attack, "targeted", False):
            np.testing.assert_array_equal(success, predicted != y, err_msg=str(dtype))
        if result.distances is None:
            continue
        distances = backend.host(result.distances).astype(np.float64)
        # The distance of the returned point in the attack's norm, measured on the host in
        # float64 (the library measures in its widest float: float32 for JAX by default).
        steps = (backend.host(result.x_adv).astype(np.float64) - x).reshape(len(y), -1)
        l2 = attack.threat.geometry.name == "l2"
        moved = np.sqrt((steps**2).sum(axis=1)) if l2 else np.abs(steps).max(axis=1)
        np.testing.assert_array_equal(success, distances <= eps, err_msg=str(dtype))
        np.testing.assert_array_equal(moved[~success], 0.0, err_msg=str(dtype))
        np.testing.assert_allclose(
            distances[success], moved[success], rtol=1e-6, err_msg=str(dtype)
        )
