"""Exactness at the edges and a clear error (or warning) for every misuse."""

from __future__ import annotations

import math
import pickle
import warnings

import numpy as np
import pytest
import torch
from conftest import linear_pair
from hypothesis import given
from hypothesis import strategies as st

from signattack import FGSM, IteratedSign, LinearClassifier, UnitsWarning, probes
from signattack.data import read_cifar10, write_cifar10
from signattack.evaluation import RobustnessReport, evaluate, smallest_breaking_eps

BACKENDS = ["torch", "numpy"]


def _linear(features: int, classes: int, backend: str, scale: float):
    numpy_model, torch_model = linear_pair(classes, features, scale=scale, seed=1)
    if backend == "numpy":
        return numpy_model
    return lambda x: torch_model(x.double())


def _array(values: np.ndarray, backend: str):
    return torch.from_numpy(values) if backend == "torch" else values


# Integer images.

JUST_BELOW = [math.nextafter(float(k), 0.0) for k in range(1, 12)]


@pytest.mark.parametrize("backend", BACKENDS)
@given(
    eps=st.sampled_from(JUST_BELOW) | st.floats(0, 12),
    dtype=st.sampled_from(["uint8", "int16", "int32", "int64"]),
    steps=st.integers(1, 4),
    random_start=st.booleans(),
    seed=st.integers(0, 1000),
)
def test_integer_images_move_at_most_floor_eps(backend, eps, dtype, steps, random_start, seed):
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 256, size=(4, 6)).astype(dtype)
    y = rng.integers(0, 3, size=4)
    model = _linear(6, 3, backend, scale=0.05)
    attack = IteratedSign(eps, steps, random_start=random_start, seed=seed)
    x_adv = attack(model, _array(x, backend), _array(y, backend))
    result = np.asarray(x_adv)
    assert result.dtype == x.dtype
    moved = np.abs(result.astype(np.int64) - x.astype(np.int64))
    assert moved.max() <= math.floor(eps)
    assert result.min() >= 0
    assert result.max() <= 255


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", ["int32", "int64"])
def test_integers_beyond_float32_precision_are_kept_exactly(backend, dtype):
    top = 2**31 - 2 if dtype == "int32" else 2**40
    rng = np.random.default_rng(0)
    x = rng.integers(top - 5000, top, size=(3, 6)).astype(dtype)
    x[0, 0] = 2**24 + 1  # not a float32 number
    y = np.array([0, 1, 2])
    model = _linear(6, 3, backend, scale=1e-9)
    bounds = (0, float(top))
    unchanged = IteratedSign(0, 3, bounds=bounds)(model, _array(x, backend), _array(y, backend))
    np.testing.assert_array_equal(np.asarray(unchanged), x)
    moved = IteratedSign(5.5, 3, bounds=bounds)(model, _array(x, backend), _array(y, backend))
    assert np.abs(np.asarray(moved).astype(np.int64) - x.astype(np.int64)).max() <= 5


@pytest.mark.parametrize("backend", BACKENDS)
def test_per_sample_eps_just_below_an_integer_is_floored_before_any_cast(backend):
    x = np.full((3, 6), 100, dtype=np.uint8)
    y = np.array([0, 1, 2])
    eps = np.full(3, math.nextafter(8.0, 0.0))
    model = _linear(6, 3, backend, scale=0.05)
    x_adv = IteratedSign(8, 4).run(
        model, _array(x, backend), _array(y, backend), eps=_array(eps, backend)
    )
    assert np.abs(np.asarray(x_adv.x_adv).astype(int) - 100).max() == 7


# Bad input to the attacks and models.


def test_a_numpy_model_whose_gradient_has_the_wrong_shape_is_refused():
    class Broadcasting(LinearClassifier):
        def vjp(self, x, cotangent):
            return super().vjp(x, cotangent)[:1]  # one sample's gradient, broadcast to all

    model = Broadcasting(np.ones((2, 4)), np.zeros(2))
    with pytest.raises(
        ValueError, match=r"the input gradient \(a NumPy model's vjp\) must have x's shape"
    ):
        FGSM(4)(model, np.full((3, 4), 10.0), np.array([0, 1, 0]))


@pytest.mark.parametrize(
    ("weight", "bias", "error", "match"),
    [
        (np.ones(4), np.zeros(2), ValueError, "weight must have shape"),
        (np.ones((2, 4)), np.zeros(3), ValueError, r"bias must have shape \(2,\)"),
        (np.ones((2, 4), dtype=int), np.zeros(2), TypeError, "weight must have a floating dtype"),
        (np.full((2, 4), np.nan), np.zeros(2), ValueError, "weight must be finite"),
        (np.ones((2, 4)), np.array([0.0, np.inf]), ValueError, "bias must be finite"),
        ([[1.0]], np.zeros(1), TypeError, "weight must be a numpy.ndarray, got list"),
    ],
)
def test_linear_classifier_validates_its_weights(weight, bias, error, match):
    with pytest.raises(error, match=match):
        LinearClassifier(weight, bias)


def test_rng_per_sample_eps_and_meta_tensors_get_clear_errors():
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(4, 2))
    x, y = torch.full((3, 4), 10.0), torch.tensor([0, 1, 0])
    with pytest.raises(
        TypeError,
        match=r"rng must be a numpy\.random\.Generator, a jax\.random key or None, got int",
    ):
        IteratedSign(4, random_start=True)(model, x, y, rng=3)
    with pytest.raises(TypeError, match="RandomState"):
        IteratedSign(4, random_start=True)(model, x, y, rng=np.random.RandomState(0))
    for per_sample in (4.0, [4.0, 4.0, 4.0], np.full(3, 4.0)):
        with pytest.raises(TypeError, match=r"eps \(per sample\) must be an array"):
            IteratedSign(4).run(model, x, y, eps=per_sample)
    with pytest.raises(ValueError, match=r"eps \(per sample\) must have shape \(3,\)"):
        IteratedSign(4).run(model, x, y, eps=torch.full((2,), 4.0))
    with pytest.raises(ValueError, match="meta device"):
        IteratedSign(4)(model.to("meta"), x.to("meta"), y.to("meta"))


def test_a_negative_seed_is_refused_at_construction():
    with pytest.raises(ValueError, match="seed must be an int >= 0 or None, got -3"):
        IteratedSign(4, seed=-3)


# The units trap.


def test_images_in_unit_range_with_pixel_bounds_warn_once_and_say_what_to_do():
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(4, 2))
    x, y = torch.rand(3, 4), torch.tensor([0, 1, 0])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        IteratedSign(8, 3)(model, x, y)
    assert [w.category for w in caught] == [UnitsWarning]
    assert "bounds=(0, 1)" in str(caught[0].message)
    assert "8/255" in str(caught[0].message)
    assert caught[0].filename == __file__, "the warning points at the caller's line"
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        IteratedSign(8 / 255, 3, bounds=(0, 1))(model, x, y)  # the right units: silent
        IteratedSign(8, 3)(model, x * 255, y)
        warnings.filterwarnings("ignore", category=UnitsWarning)
        IteratedSign(8, 3)(model, x, y)  # silenced as the message says


def test_eps_larger_than_the_box_warns():
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(4, 2))
    x, y = torch.rand(3, 4), torch.tensor([0, 1, 0])
    with pytest.warns(UnitsWarning, match="larger than the whole box"):
        FGSM(8, bounds=(0, 1))(model, x, y)
    with pytest.warns(UnitsWarning, match="bounds=\\(0, 1\\)"):
        probes.input_gradient(model, x, y)


# Evaluation checks every sample.


def test_labels_are_checked_against_the_classes_in_every_batch():
    numpy_model, _ = linear_pair(3, 4, seed=0)
    x = np.full((3, 4), 10.0)
    good, one_based = np.array([0, 1, 2]), np.array([1, 2, 3])
    with pytest.raises(ValueError, match=r"labels < 3 \(the model's number of classes\), got 3"):
        evaluate(numpy_model, [(x, good), (x, one_based)], FGSM(0), [1.0])


def test_inputs_are_checked_against_the_bounds_even_when_misclassified():
    numpy_model, _ = linear_pair(2, 4, seed=0)
    x = np.full((3, 4), 10.0)
    y = 1 - np.argmax(numpy_model(x), axis=1)  # every sample misclassified: never attacked
    outside = x.copy()
    outside[2, 0] = 300.0
    with pytest.raises(ValueError, match=r"x must lie inside bounds \[0, 255\]"):
        evaluate(numpy_model, [(x, y), (outside, y)], FGSM(0), [1.0])


def test_data_without_samples_is_refused():
    numpy_model, _ = linear_pair(2, 4, seed=0)
    empty = (np.zeros((0, 4)), np.zeros(0, dtype=int))
    with pytest.raises(ValueError, match="batch 0 holds no samples"):
        evaluate(numpy_model, [empty], FGSM(0), [1.0])
    with pytest.raises(ValueError, match="at least one batch"):
        evaluate(numpy_model, iter([]), FGSM(0), [1.0])


def test_inputs_made_in_inference_mode_work_everywhere():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(12, 3))
    dataset = torch.utils.data.TensorDataset(
        torch.rand(10, 1, 3, 4) * 255, torch.randint(0, 3, (10,))
    )
    loader = torch.utils.data.DataLoader(dataset, batch_size=4)
    with torch.inference_mode():
        x, y = next(iter(loader))
        inside = evaluate(model, loader, IteratedSign(0, 3), [4.0, 8.0])
    expected = evaluate(model, list(loader), IteratedSign(0, 3), [4.0, 8.0])
    assert inside == expected
    assert IteratedSign(8, 3)(model, x, y).shape == x.shape
    assert probes.input_gradient(model, x, y).shape == x.shape


# CIFAR-10 files.


def _cifar(tmp_path, data, labels):
    folder = write_cifar10(
        tmp_path,
        (np.zeros((5, 3, 32, 32), np.uint8), np.arange(5)),
        (np.zeros((2, 3, 32, 32), np.uint8), [0, 1]),
    )
    (folder / "test_batch").write_bytes(
        pickle.dumps({b"data": data, b"labels": labels}, protocol=2)
    )
    return tmp_path


@pytest.mark.parametrize(
    ("data", "labels", "match"),
    [
        (np.full((2, 3072), 0.7, np.float32), [0, 1], "data must be a uint8 array, got float32"),
        (np.full((2, 3072), 300, np.int64), [0, 1], "data must be a uint8 array, got int64"),
        (np.zeros((2, 3071), np.uint8), [0, 1], r"data must have shape \(n, 3072\)"),
        (np.zeros((2, 3072), np.uint8), [0.0, 1.0], "labels must be a list of integers"),
        (np.zeros((2, 3072), np.uint8), np.zeros((2, 1), int), r"labels must be integers of shape"),
        (np.zeros((2, 3072), np.uint8), [0, 10], "labels outside 0..9"),
        (np.zeros((2, 3072), np.uint8), [0], "2 images but 1 labels"),
    ],
)
def test_read_cifar10_refuses_what_is_not_cifar10(tmp_path, data, labels, match):
    root = _cifar(tmp_path, data, labels)
    with pytest.raises(ValueError, match=rf"test_batch (is not a CIFAR-10 batch: )?.*{match}"):
        read_cifar10(root, "test")


@pytest.mark.parametrize("cut", [0, 10, 200])
def test_read_cifar10_refuses_damaged_files(tmp_path, cut):
    root = _cifar(tmp_path, np.zeros((2, 3072), np.uint8), [0, 1])
    batch = root / "cifar-10-batches-py" / "test_batch"
    batch.write_bytes(batch.read_bytes()[:cut])
    with pytest.raises(ValueError, match="test_batch is not a CIFAR-10 batch: it cannot be read"):
        read_cifar10(root, "test")


def test_an_empty_split_round_trips(tmp_path):
    empty = np.zeros((0, 3, 32, 32), np.uint8)
    images = np.arange(2 * 3072, dtype=np.int64).reshape(2, 3, 32, 32).astype(np.uint8)
    write_cifar10(tmp_path, (images, [3, 9]), (empty, []))
    test_x, test_y = read_cifar10(tmp_path, "test")
    assert test_x.shape == (0, 3, 32, 32)
    assert test_y.shape == (0,)
    train_x, train_y = read_cifar10(tmp_path, "train")
    np.testing.assert_array_equal(train_x, images)
    np.testing.assert_array_equal(train_y, [3, 9])


def test_write_cifar10_refuses_labels_it_cannot_write(tmp_path):
    images = np.zeros((2, 3, 32, 32), np.uint8)
    with pytest.raises(ValueError, match=r"labels must lie in 0\.\.9"):
        write_cifar10(tmp_path, (images, [0, 10]), (images, [0, 1]))
    with pytest.raises(ValueError, match="labels must be 2 integers"):
        write_cifar10(tmp_path, (images, [0.5, 1.0]), (images, [0, 1]))
    assert not (tmp_path / "cifar-10-batches-py").exists()


# More misuse, each answered by name.


def test_numpy_scalars_are_accepted_as_settings():
    attack = IteratedSign(
        np.float32(4), np.int64(3), step_size=np.float64(2), bounds=np.array([0, 255])
    )
    assert (type(attack.eps), type(attack.steps), type(attack.step_size)) == (float, int, float)
    assert attack.bounds == (0.0, 255.0)
    assert FGSM(np.float32(8)).eps == 8.0


def test_a_model_with_non_finite_logits_is_refused():
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(4, 2))
    x, y = torch.full((2, 4), 10.0), torch.tensor([0, 1])
    with pytest.raises(ValueError, match="model must return finite logits, got NaN or Inf"):
        IteratedSign(4)(lambda t: model(t) * float("nan"), x, y)


def test_evaluate_names_a_bad_attack_factory_or_data():
    numpy_model, _ = linear_pair(2, 4, seed=0)
    batch = (np.full((2, 4), 10.0), np.array([0, 1]))
    with pytest.raises(TypeError, match=r"attack must be an attack \(IteratedSign, FGSM, APGD"):
        evaluate(numpy_model, [batch], None, [1.0])
    with pytest.raises(TypeError, match="the attack factory must return an attack"):
        evaluate(numpy_model, [batch], lambda eps: 3, [1.0])
    with pytest.raises(TypeError, match="data must be an iterable of"):
        evaluate(numpy_model, 3, FGSM(0), [1.0])
    with pytest.raises(TypeError, match="x and y must be arrays"):
        evaluate(numpy_model, [(batch[0], [0, 1])], FGSM(0), [1.0])


def test_smallest_breaking_eps_checks_its_arguments_and_takes_fgsm():
    numpy_model, _ = linear_pair(2, 4, seed=0)
    x, y = np.full((2, 4), 10.0), np.array([0, 1])
    with pytest.raises(ValueError, match="iterations must be >= 1, got 0"):
        smallest_breaking_eps(numpy_model, x, y, IteratedSign(0), eps_max=8, iterations=0)
    with pytest.raises(TypeError, match="iterations must be an int, got float"):
        smallest_breaking_eps(numpy_model, x, y, IteratedSign(0), eps_max=8, iterations=2.5)
    with pytest.raises(TypeError, match="attack must be an IteratedSign or an FGSM"):
        smallest_breaking_eps(numpy_model, x, y, "fgsm", eps_max=8)
    from_fgsm = smallest_breaking_eps(numpy_model, x, y, FGSM(0), eps_max=8, iterations=4)
    from_one_step = smallest_breaking_eps(
        numpy_model, x, y, IteratedSign(0, 1, step_size=0), eps_max=8, iterations=4
    )
    assert from_fgsm.shape == from_one_step.shape == (2,)


@pytest.mark.parametrize(
    ("data", "match"),
    [
        ({"eps": [1.0]}, "missing key 'clean_correct'"),
        ({"eps": [1.0], "clean_correct": [True], "attack": "a"}, "missing key 'robust_correct'"),
        (
            {
                "eps": [1.0],
                "attack": "a",
                "clean_correct": [True, False],
                "robust_correct": {"1.0": [True]},
                "max_perturbation": {"1.0": 0.5},
                "attacked": {"1.0": 1},
            },
            "lists of 2 entries",
        ),
        ([], "not a RobustnessReport"),
        ({"eps": ["1.0"], "clean_correct": [True]}, "expected a number, got str"),
        (
            {
                "eps": [1.0],
                "attack": "a",
                "clean_correct": [True],
                "robust_correct": {"1.0": [True]},
                "max_perturbation": {"1.0": 0.5},
                "attacked": {"1.0": 1},
                "warnings": [3],
            },
            "expected a string for each warning, got int",
        ),
    ],
)
def test_a_report_dictionary_is_checked(data, match):
    with pytest.raises(ValueError, match=match):
        RobustnessReport.from_dict(data)


def test_each_first_call_check_runs_even_after_a_forward_pass_without_a_loss():
    # check_gradients runs the model twice before any loss: the loss is still checked.
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(4, 2))
    x, y = torch.full((3, 4), 10.0), torch.tensor([0, 1, 0])
    with pytest.raises(ValueError, match=r"loss must return per-sample losses of shape \(3,\)"):
        probes.check_gradients(model, x, y, loss=lambda logits, labels: logits.sum())
