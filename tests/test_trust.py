"""The edges of the newer surfaces: each test here failed on the code before it was written.

Per-sample radii of FGSM, labels that wrap when they are cast, half-precision DLR, attacks
from several threads, backend registration, damaged checkpoints and reports, torch's unsigned
dtypes, and the bisection's and the per-sample radius's checks.
"""

from __future__ import annotations

import json
import math
import threading
import warnings

import numpy as np
import pytest
import torch
from conftest import linear_pair

from signattack import APGD, FGSM, IteratedSign, UnitsWarning, register_backend
from signattack.backends import unregister_backend
from signattack.backends.numpy_backend import open_numpy_backend
from signattack.backends.registry import _REGISTRY
from signattack.evaluation import RobustnessReport, evaluate, smallest_breaking_eps

# -- Per-sample radii: FGSM's step is its radius --------------------------------------------


def test_the_bisection_with_fgsm_finds_the_closed_form_radius_of_a_linear_model():
    # For two classes and a linear model, FGSM at eps is the exact worst case: sample i breaks
    # exactly when eps > margin_i / |w_1 - w_0|_1 (the box never binds here).
    rng = np.random.default_rng(0)
    model, _ = linear_pair(2, 6, scale=0.05, seed=5)
    x = rng.uniform(100, 150, size=(10, 6))
    y = model(x).argmax(axis=1)
    logits = model(x)
    margin = np.abs(logits[:, 1] - logits[:, 0])
    radius = margin / np.abs(model.weight[1] - model.weight[0]).sum()
    assert radius.max() < 40, "the problem is built so that the box never binds"
    eps_max, iterations = 64.0, 14
    found = smallest_breaking_eps(model, x, y, FGSM(0), eps_max=eps_max, iterations=iterations)
    assert np.all(np.isfinite(found)), "every sample breaks below eps_max"
    np.testing.assert_array_less(radius - 1e-9, found)
    np.testing.assert_array_less(found, radius + eps_max / 2**iterations + 1e-9)


@pytest.mark.parametrize("backend", ["numpy", "torch"])
def test_fgsm_per_sample_radii_are_its_runs_at_each_radius(backend):
    numpy_model, torch_model = linear_pair(3, 8, scale=0.05, seed=2)
    x = np.random.default_rng(1).uniform(20, 230, size=(5, 8))
    y = numpy_model(x).argmax(axis=1)
    radii = np.array([0.0, 2.0, 5.0, 9.0, 30.0])
    model = numpy_model if backend == "numpy" else torch_model
    wrap = (lambda a: a) if backend == "numpy" else torch.from_numpy
    per_sample = FGSM(0).run_per_sample(model, wrap(x), wrap(y), wrap(radii))
    for index, radius in enumerate(radii):
        one = FGSM(float(radius)).run(model, wrap(x[index : index + 1]), wrap(y[index : index + 1]))
        np.testing.assert_array_equal(np.asarray(per_sample.x_adv[index]), np.asarray(one.x_adv[0]))
    moved = np.abs(np.asarray(per_sample.x_adv) - x).max(axis=1)
    np.testing.assert_array_equal(moved, radii)  # every radius is stepped in full


def test_relative_step_and_step_size_are_exclusive_and_checked():
    with pytest.raises(ValueError, match="give step_size or relative_step, not both"):
        IteratedSign(8, 3, step_size=2, relative_step=0.5)
    with pytest.raises(ValueError, match="relative_step must be >= 0"):
        IteratedSign(8, 3, relative_step=-1)
    assert IteratedSign(8, 4, relative_step=0.25).resolved_step_size == 2.0
    assert FGSM(6).as_iterated().with_eps(3).resolved_step_size == 3.0


# -- Labels that the index dtype cannot hold -------------------------------------------------


def test_unsigned_labels_too_large_for_the_index_type_are_refused():
    model, _ = linear_pair(3, 4, seed=0)
    x = np.full((2, 4), 100.0)
    y = np.array([2**63 + 1, 0], dtype=np.uint64)
    with pytest.raises(ValueError, match="y must hold class labels"):
        IteratedSign(8, 2)(model, x, y)
    with pytest.raises(ValueError, match="y must hold class labels"):
        evaluate(model, [(x, y)], IteratedSign(0, 2), [4.0])


def test_jax_uint32_labels_beyond_int32_are_refused():
    jax = pytest.importorskip("jax")
    jnp = jax.numpy
    weight = jnp.ones((4, 3)) / 255

    def model(inputs):
        return inputs @ weight

    x = jnp.full((2, 4), 100.0)
    y = jnp.asarray([2**31 + 2, 1], dtype=jnp.uint32)
    with pytest.raises(ValueError, match="y must hold class labels"):
        IteratedSign(8, 2)(model, x, y)


# -- DLR in half precision --------------------------------------------------------------------


def test_apgd_dlr_on_float16_logits_with_tied_top_classes_is_finite_and_moves():
    torch.manual_seed(0)
    direction = torch.randn(12)

    class Tied(torch.nn.Module):
        """The top three classes tie at the clean input (the DLR gap is 0 there)."""

        def __init__(self, anchor):
            super().__init__()
            self.register_buffer("anchor", anchor)

        def forward(self, x):
            offset = ((x - self.anchor).flatten(1) @ direction / 255)[:, None]
            base = torch.tensor([2.0, 2.0, 2.0, 0.0, -1.0])
            return (base + torch.cat([offset, -offset, 0 * offset.repeat(1, 3)], 1)).half()

    x = torch.full((3, 12), 120.0)
    model = Tied(x[:1])
    y = torch.tensor([0, 1, 0])
    result = APGD(8.0, 6, loss="dlr", seed=0).run(model, x, y)
    assert bool(torch.isfinite(result.losses).all()), result.losses
    assert float((result.x_adv - x).abs().max()) > 0, "the attack never moved"


# -- Attacks from several threads on one model -----------------------------------------------


def test_two_threads_attacking_one_training_model_leave_it_as_it_was():
    torch.manual_seed(0)
    model = torch.nn.Sequential(
        torch.nn.Conv2d(1, 4, 3),
        torch.nn.BatchNorm2d(4),
        torch.nn.Flatten(),
        torch.nn.Linear(4 * 4 * 4, 3),
    ).train()
    for _ in range(3):  # running statistics that differ from their initial values
        model(torch.rand(8, 1, 6, 6) * 255)
    state = {k: v.clone() for k, v in model.state_dict().items()}
    x, y = torch.rand(64, 1, 6, 6) * 255, torch.arange(64) % 3
    attack = IteratedSign(8.0, 20)
    expected = attack(model, x, y)
    results, errors = [], []
    start = threading.Barrier(4)

    def work():
        try:
            start.wait()
            for _ in range(5):
                results.append(attack(model, x, y))
        except Exception as error:  # pragma: no cover - reported below
            errors.append(error)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors, errors
    assert all(m.training for m in model.modules())
    assert all(torch.equal(v, state[k]) for k, v in model.state_dict().items())
    assert all(torch.equal(result, expected) for result in results)


# -- Registering a backend ---------------------------------------------------------------------


def test_register_backend_checks_its_arguments_and_a_bad_one_breaks_nothing():
    model, _ = linear_pair(3, 4, seed=0)
    x, y = np.full((2, 4), 100.0), np.array([0, 1])
    with pytest.raises(TypeError, match="is_array must be callable, got int"):
        register_backend(1, open_numpy_backend)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="factory must be callable"):
        register_backend(lambda value: False, None)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="is_array must return a bool"):
        register_backend(lambda value: None, open_numpy_backend)  # type: ignore[arg-type,return-value]
    with pytest.raises(TypeError, match="compiles_per_shape must be a bool"):
        register_backend(lambda value: False, open_numpy_backend, compiles_per_shape=1)  # type: ignore[arg-type]
    before = len(_REGISTRY)
    register_backend(lambda value: False, open_numpy_backend, name="nothing")
    try:
        with pytest.raises(ValueError, match="a backend named 'nothing' is registered already"):
            register_backend(lambda value: False, open_numpy_backend, name="nothing")
        with pytest.raises(ValueError, match="a backend named 'numpy' is registered already"):
            register_backend(lambda value: False, open_numpy_backend, name="numpy")
        assert IteratedSign(8, 2)(model, x, y).shape == x.shape  # attacks still work
    finally:
        unregister_backend("nothing")
    assert len(_REGISTRY) == before
    with pytest.raises(ValueError, match="cannot be unregistered"):
        unregister_backend("numpy")
    with pytest.raises(ValueError, match="no backend named 'nothing'"):
        unregister_backend("nothing")


# -- Damaged checkpoints and reports ---------------------------------------------------------


def _checkpoint(tmp_path):
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(4, 3)).double()
    x = torch.rand(6, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(0)) * 255
    data = [(x[:3], torch.tensor([0, 1, 2])), (x[3:], torch.tensor([2, 1, 0]))]
    path = tmp_path / "run.json"
    evaluate(model, data, IteratedSign(0, 2), [2.0, 8.0], checkpoint=path)
    return model, data, path


def _batch_field(field, text):
    """The checkpoint with one field of its first batch replaced by the JSON ``text``."""

    def edit(document):
        document["batches"]["0"][field] = "@"
        return json.dumps(document).replace('"@"', text)

    return edit


def _batches(text):
    """The checkpoint with its batches replaced by the JSON ``text``."""

    def edit(document):
        document["batches"] = "@"
        return json.dumps(document).replace('"@"', text)

    return edit


@pytest.mark.parametrize(
    ("edit", "match"),
    [
        (_batch_field("largest", "[1" + "0" * 400 + ", 1.0]"), "finite numbers"),
        (_batch_field("largest", "[2.0, 8.5]"), "outside the ball"),
        (_batch_field("size", "1" * 5000), "not a signattack checkpoint"),
        (_batch_field("attacked", "[1" + "0" * 1000 + ", 1]"), "attacked must hold counts"),
        (_batches('{"\u00b2": {}}'), "batch keys must be indices"),
        (_batches('{"' + "9" * 5000 + '": {}}'), "batch keys must be indices"),
        (lambda document: "[" * 100_000 + "]" * 100_000, "nested too deeply"),
        (lambda document: json.dumps({**document, "format": 10**400}), "has format 1000"),
        (lambda document: json.dumps({**document, "total": -3}), "damaged"),
    ],
    ids=[
        "huge number",
        "beyond eps",
        "too many digits",
        "huge count",
        "superscript key",
        "long key",
        "deep",
        "huge format",
        "negative total",
    ],
)
def test_a_damaged_checkpoint_is_a_value_error_naming_the_file_and_left_as_it_is(
    tmp_path, edit, match
):
    model, data, path = _checkpoint(tmp_path)
    text = edit(json.loads(path.read_text()))
    path.write_text(text)
    with pytest.raises(ValueError, match=match) as caught:
        evaluate(model, data, IteratedSign(0, 2), [2.0, 8.0], checkpoint=path)
    assert str(path) in str(caught.value)
    assert path.read_text() == text


class _Moved:
    """The result of an attack: where it went, and what the model predicts there."""

    def __init__(self, model, x_adv):
        self.x_adv, self.predictions = x_adv, model(x_adv).argmax(axis=1)


class _Outside:
    """A broken third-party attack: it moves every input by twice its radius."""

    def __init__(self, eps):
        self.eps = eps

    def __call__(self, model, x, y):
        return x + 2 * self.eps

    def run(self, model, x, y):
        return _Moved(model, self(model, x, y))


def test_an_attack_that_leaves_the_ball_is_refused_by_the_evaluation():
    model, _ = linear_pair(3, 4, seed=0)
    data = [(np.full((3, 4), 100.0), np.array([0, 1, 2]))]
    with pytest.raises(
        ValueError, match=r"moved an input by 8 \(\|d\|\) at eps 4: it leaves the L-inf"
    ):
        evaluate(model, data, _Outside, [4.0])


@pytest.mark.parametrize(
    ("number", "match"),
    [
        (10**400, "too large"),
        (math.nan, "finite number"),
        (math.inf, "finite number"),
        (-1.0, "finite number >= 0"),
    ],
)
def test_a_report_dictionary_with_numbers_out_of_range_is_refused(number, match):
    good = {
        "eps": [1.0],
        "attack": "a",
        "clean_correct": [True],
        "robust_correct": {"1.0": [True]},
        "max_perturbation": {"1.0": 0.5},
        "attacked": {"1.0": 1},
        "warnings": [],
    }
    assert RobustnessReport.from_dict(good).samples == 1
    for key in ("eps", "max_perturbation"):
        bad = dict(good)
        bad[key] = [number] if key == "eps" else {"1.0": number}
        with pytest.raises(ValueError, match=match):
            RobustnessReport.from_dict(bad)


# -- torch's unsigned dtypes --------------------------------------------------------------------


@pytest.mark.parametrize("label_dtype", [torch.uint8, torch.uint16, torch.uint32, torch.uint64])
@pytest.mark.parametrize("image_dtype", [torch.uint8, torch.uint16, torch.float32])
def test_torch_unsigned_images_and_labels_are_attacked(image_dtype, label_dtype):
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(12, 4))
    x = torch.randint(0, 256, (5, 3, 4)).to(image_dtype)
    y = torch.tensor([0, 1, 2, 3, 1]).to(label_dtype)
    result = IteratedSign(8, 3).run(model, x, y)
    assert result.x_adv.dtype == image_dtype
    change = result.x_adv.to(torch.float64) - x.to(torch.float64)
    assert float(change.abs().max()) <= 8
    report = evaluate(model, [(x, y)], IteratedSign(0, 3), [8.0])
    assert report.samples == 5


def test_torch_uint64_values_beyond_int64_are_a_clear_error():
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(12, 4))
    x = torch.full((2, 12), 100.0)
    y = torch.tensor([2**63 + 3, 1], dtype=torch.uint64)
    with pytest.raises(ValueError, match=r"values >= 2\*\*63"):
        IteratedSign(8, 2)(model, x, y)


# -- The bisection's eps_max and per-sample radii wider than the box --------------------------


def test_an_eps_max_beyond_every_float_names_eps_max():
    """Radii are bisected in the widest float of x's library (float64 for torch), so only a
    radius beyond every float is refused, by name."""
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(12, 4))
    x, y = torch.full((2, 12), 100.0), torch.tensor([0, 1])
    with pytest.raises(ValueError, match=r"eps_max must be a finite number >= 0, got inf"):
        smallest_breaking_eps(model, x, y, IteratedSign(0, 2), eps_max=float("1e308") * 10)


@pytest.mark.parametrize("backend", ["numpy", "torch"])
def test_a_per_sample_radius_wider_than_the_box_warns_like_a_scalar_one(backend):
    numpy_model, torch_model = linear_pair(3, 4, seed=0)
    x, y, radii = np.full((2, 4), 100.0), np.array([0, 1]), np.array([4.0, 300.0])
    model, wrap = (
        (numpy_model, np.asarray) if backend == "numpy" else (torch_model, torch.from_numpy)
    )
    with pytest.warns(UnitsWarning, match="eps = 300 is larger than the whole box"):
        IteratedSign(0, 2).run_per_sample(model, wrap(x), wrap(y), wrap(radii))
    with pytest.warns(UnitsWarning, match="eps = 300 is larger than the whole box"):
        IteratedSign(300, 2)(model, wrap(x), wrap(y))


def test_the_problem_sets_spelling_warns_that_it_saturates_after_one_step():
    with pytest.warns(UserWarning, match=r"IteratedSign\(eps=40, steps=5, step_size=8\)"):
        IteratedSign(eps=8, steps=5, step_size=8)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        IteratedSign(eps=40, steps=5, step_size=8)  # the pseudo-code's reach: no warning
        IteratedSign(eps=8, steps=1, step_size=8)  # FGSM
        IteratedSign(eps=8, steps=5)  # the default step
        IteratedSign(eps=0, steps=5, step_size=2)  # a preset's radius, replaced later
