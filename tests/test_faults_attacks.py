"""Faults users met in the attacks, each pinned by the rule behind it: a model that is not
finite at a point an attack visits, a model that writes into its input, integer images
whose reported distance and success must describe the point returned, and random draws
that belong to the sample rather than to the batch."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from signattack import APGD, APGDT, FABT, FGSM, IteratedSign, LinearClassifier, Square
from signattack.attacks.loop import random_start
from signattack.attacks.square import SquareDraws
from signattack.core import LINF
from signattack.core.streams import SampleStreams

RNG_ROOT = bytes(range(16))


def _linear(seed: int = 0, classes: int = 4, features: int = 12) -> LinearClassifier:
    rng = np.random.default_rng(seed)
    return LinearClassifier(
        rng.normal(scale=0.05, size=(classes, features)), rng.normal(size=classes)
    )


# Random streams that belong to the sample.


def test_a_samples_key_travels_with_it_whatever_its_batch_and_dtype():
    x = np.random.default_rng(0).uniform(0, 255, size=(5, 3, 4))
    y = np.arange(5) % 3
    whole = SampleStreams.of(RNG_ROOT, x, y)
    reversed_ = SampleStreams.of(RNG_ROOT, x[::-1], y[::-1])
    assert whole.keys == reversed_.keys[::-1]
    assert SampleStreams.of(RNG_ROOT, x[2:3], y[2:3]).keys == whole.keys[2:3]
    assert SampleStreams.of(RNG_ROOT, x.astype(np.float32).astype(np.float64), y).keys != ()
    integers = np.round(x)
    assert (
        SampleStreams.of(RNG_ROOT, integers.astype(np.float32), y).keys
        == SampleStreams.of(RNG_ROOT, integers.astype(np.int64), y).keys
    )
    assert SampleStreams.of(RNG_ROOT, -np.zeros((1, 3)), [0]).keys == (
        SampleStreams.of(RNG_ROOT, np.zeros((1, 3)), [0]).keys
    )
    assert len(set(whole.keys)) == 5
    # The label, the root and one value each make another stream.
    assert SampleStreams.of(RNG_ROOT, x[:1], [1]).keys != whole.keys[:1]
    assert SampleStreams.of(bytes(16), x[:1], y[:1]).keys != whole.keys[:1]
    nudged = x[:1].copy()
    nudged[0, 0, 0] = np.nextafter(np.float32(nudged[0, 0, 0]), np.float32(np.inf))
    assert SampleStreams.of(RNG_ROOT, nudged, y[:1]).keys != whole.keys[:1]


def test_streams_of_different_purposes_and_samples_are_independent_and_uniform():
    x = np.zeros((400, 2))
    streams = SampleStreams.of(RNG_ROOT, x + np.arange(400)[:, None], np.zeros(400))
    draws = streams.uniform(("start", 0), (50,))
    assert draws.shape == (400, 50)
    assert draws.min() >= -1.0
    assert draws.max() < 1.0
    # 20,000 uniform draws: mean within 5 standard errors of 0, a quarter in each quarter.
    assert abs(draws.mean()) < 5 * np.sqrt(1 / 3 / draws.size)
    counts = np.histogram(draws, bins=4, range=(-1, 1))[0]
    assert np.all(np.abs(counts - draws.size / 4) < 5 * np.sqrt(draws.size * 3 / 16))
    again = streams.uniform(("start", 0), (50,))
    np.testing.assert_array_equal(draws, again)
    other = streams.uniform(("start", 1), (50,))
    assert abs(np.corrcoef(draws.ravel(), other.ravel())[0, 1]) < 0.05
    # Neighbouring samples draw unrelated numbers.
    assert abs(np.corrcoef(draws[:-1].ravel(), draws[1:].ravel())[0, 1]) < 0.05


def test_the_random_start_is_uniform_in_the_ball_per_sample():
    x = np.full((300, 40), 100.0)
    x += np.arange(300)[:, None] * 1e-3  # 300 different samples
    streams = SampleStreams.of(RNG_ROOT, x, np.zeros(300))
    start = random_start(LINF.feasible(x, 8.0, 0.0, 255.0), x, streams, ("random start",))
    step = start - x
    assert np.abs(step).max() <= 8.0
    assert abs(step.mean()) < 5 * 8.0 * np.sqrt(1 / 3 / step.size)
    assert abs(step.var() - 64 / 3) < 0.05 * 64 / 3
    alone = LINF.feasible(x[7:8], 8.0, 0.0, 255.0)
    one = random_start(alone, x[7:8], streams.take([7]), ("random start",))
    np.testing.assert_array_equal(one, start[7:8])


def test_squares_draws_keep_the_papers_distribution():
    x = np.zeros((64, 3, 8, 8)) + np.arange(64)[:, None, None, None]
    streams = SampleStreams.of(RNG_ROOT, x, np.zeros(64))
    queries = 300
    draws = SquareDraws.drawn(x, streams, ("square", 0), queries, 0.05)
    assert set(np.unique(draws.stripes)) == {-1.0, 1.0}
    assert set(np.unique(draws.signs)) == {-1.0, 1.0}
    assert abs(draws.signs.mean()) < 5 / np.sqrt(draws.signs.size)
    assert draws.tops.shape == (64, queries)
    # At the first query the window is round(sqrt(0.05 * 64)) = 2 pixels high: 7 positions,
    # every one of them drawn, none beyond.
    first = draws.tops[:, 0]
    assert set(np.unique(first)) == set(range(7))
    assert set(np.unique(draws.lefts[:, 0])) == set(range(7))
    last_rows = draws.tops[:, -1]
    assert last_rows.max() <= 7


# A non-finite model output at a visited point.


def _nan_beyond(limit: float, linear: LinearClassifier):
    """A NumPy model: ``linear``, NaN for every sample with a pixel above ``limit``."""

    def model(x: np.ndarray) -> np.ndarray:
        logits = linear(x)
        return np.where((x.reshape(len(x), -1) > limit).any(axis=1)[:, None], np.nan, logits)

    return model


def test_square_refuses_a_model_that_is_nan_where_it_searches():
    base = _linear(1)
    # Class 1 wins everywhere near x, so that the argmax of a NaN row (class 0) was the
    # old false success.
    linear = LinearClassifier(base.weight, base.bias + np.array([0.0, 40.0, 0.0, 0.0]))
    x = np.random.default_rng(2).uniform(50, 150, size=(6, 12))
    y = linear(x).argmax(axis=1)
    assert (y == 1).all()
    with pytest.raises(ValueError, match="NaN or inf logits at a point the attack visited"):
        Square(8.0, 20, seed=0).run(_nan_beyond(150.5, linear), x, y)


class _NanForOneSample(torch.nn.Module):
    """Finite, except for the sample whose first pixel starts at 7: NaN once it moves."""

    def __init__(self) -> None:
        super().__init__()
        self.linear = torch.nn.Linear(12, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits = self.linear(x.flatten(1).float())
        moved = ((x[:, 0] - 7).abs() > 0.01) & (x[:, 0] < 50)
        return torch.where(moved[:, None], torch.nan, logits)


@pytest.mark.parametrize(
    "attack",
    [
        FGSM(8.0),
        IteratedSign(8.0, 3, random_start=True, seed=0),
        APGD(8.0, 3, seed=0),
        APGDT(8.0, 3, target_classes=2, seed=0),
        Square(8.0, 10, seed=0),
        FABT(8.0, 3, target_classes=2, restarts=2, seed=0),
    ],
    ids=lambda attack: type(attack).__name__,
)
def test_every_attack_refuses_a_model_nan_for_one_sample_and_restores_it(attack):
    torch.manual_seed(0)
    model = _NanForOneSample().train()
    x = torch.full((4, 12), 100.0)
    x[:, 1:] += torch.arange(4)[:, None] * 10.0
    x[2, 0] = 7.0
    with torch.no_grad():
        y = model(x).argmax(dim=1)  # every sample is attacked
    with pytest.raises(ValueError, match=r"(?i)NaN or inf"):
        attack.run(model, x, y)
    assert model.training  # the model's mode is restored after the refusal
    assert x[2, 0] == 7.0


def test_a_model_finite_wherever_the_attack_goes_is_attacked_as_before():
    linear = _linear(1)
    x = np.random.default_rng(2).uniform(50, 150, size=(6, 12))
    y = linear(x).argmax(axis=1)
    result = Square(8.0, 20, seed=0).run(_nan_beyond(250.0, linear), x, y)
    assert np.isfinite(result.losses).all()


# A model that writes into its input.


class _WritesWithAutograd(torch.nn.Module):
    """Subtracts 100 from its input in place, autograd on, after using it."""

    def __init__(self) -> None:
        super().__init__()
        self.linear = torch.nn.Linear(12, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits = self.linear(x.flatten(1).float().clone())
        x -= 100
        return logits


def test_square_on_a_torch_model_writing_into_its_input_keeps_the_ball():
    torch.manual_seed(0)
    x = torch.rand(5, 12) * 100 + 50
    y = torch.tensor([0, 1, 2, 3, 0])
    before = x.clone()
    for restarts in (1, 2):
        result = Square(8.0, 30, restarts=restarts, seed=0).run(_WritesWithAutograd(), x, y)
        assert torch.equal(x, before)
        assert (result.x_adv - x).abs().max() <= 8.0
        assert result.x_adv.min() >= 0


def test_a_numpy_model_writing_into_its_input_under_eot_sees_the_point_each_time():
    linear = _linear(3)
    seen: list[np.ndarray] = []

    class Writer:
        def __call__(self, x: np.ndarray) -> np.ndarray:
            seen.append(x.copy())
            logits = linear(x)
            x -= 1000
            return logits

        def vjp(self, x: np.ndarray, cotangent: np.ndarray) -> np.ndarray:
            return linear.vjp(x, cotangent)

    x = np.random.default_rng(0).uniform(50, 150, size=(3, 12))
    y = np.array([0, 1, 2])
    result = IteratedSign(8.0, 2, eot=2).run(Writer(), x, y)
    assert min(float(point.min()) for point in seen) >= x.min() - 8.0
    assert np.abs(result.x_adv - x).max() <= 8.0


# Integer images: distance, success and point describe the same rounded point.


def test_fab_t_on_uint8_reports_the_rounded_point_it_returns():
    linear = _linear(4, classes=3)
    rng = np.random.default_rng(5)
    x = rng.integers(60, 190, size=(12, 12)).astype(np.uint8)
    y = linear(x.astype(np.float64)).argmax(axis=1)
    result = FABT(40.0, 20, target_classes=2, seed=0).run(linear, x, y)
    moved = np.abs(result.x_adv.astype(np.int64) - x.astype(np.int64)).max(axis=1)
    assert result.success.any()
    np.testing.assert_array_equal(result.success, result.distances <= 40.0)
    np.testing.assert_array_equal(result.distances[result.success], moved[result.success])
    np.testing.assert_array_equal(moved[~result.success], 0)
    np.testing.assert_array_equal(result.distances, np.round(result.distances))
    predicted = linear(result.x_adv.astype(np.float64)).argmax(axis=1)
    np.testing.assert_array_equal(result.success, predicted != y)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_fab_t_in_half_precision_reports_the_point_it_returns(dtype):
    torch.manual_seed(1)
    model = torch.nn.Sequential(torch.nn.Linear(12, 3)).to(dtype)
    x = (torch.rand(10, 12) * 120 + 60).round().to(dtype)
    with torch.no_grad():
        y = model(x).argmax(dim=1)
    result = FABT(30.0, 20, target_classes=2, seed=0).run(model, x, y)
    moved = (result.x_adv - x).abs().amax(dim=1).float()
    distances = result.distances.float()
    assert torch.equal(result.success, distances <= 30.0)
    assert torch.equal(distances[result.success], moved[result.success])
    assert torch.equal(moved[~result.success], torch.zeros_like(moved[~result.success]))
    with torch.no_grad():
        assert torch.equal(result.success, model(result.x_adv).argmax(dim=1) != y)


def test_a_model_that_writes_into_its_input_while_autograd_records_is_named():
    import torch

    from signattack import IteratedSign

    class Centres(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.linear = torch.nn.Linear(4, 3)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            x -= 100.0  # in place, recorded by autograd
            return self.linear(x)

    x = torch.full((2, 4), 120.0)
    y = torch.tensor([0, 1])
    with pytest.raises(ValueError, match="the model writes into its input"):
        IteratedSign(4.0, steps=2).run(Centres(), x, y)
    assert bool((x == 120.0).all())
