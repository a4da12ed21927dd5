"""A sample's verdict in ``evaluate`` belongs to the sample: the model, the sample, the seed
and the settings decide it, not the batch size, the order of the data, the other samples of
its batch, or how many processes share the work.

The models compute every sample's logits and gradient by a computation of its own (row by
row), so that the same sample gives the same bits in any batch and position: any difference
between two runs is then the library's, and the verdicts can be compared exactly. (The
attacks alone are held to this in ``tests/test_contract.py``; here the whole evaluation is:
the radii, the suite's order, the clean pass, the samples the earlier attacks leave.)
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import pytest
import torch

from signattack import APGD, APGDT, FABT, IteratedSign, LinearClassifier, Square
from signattack.evaluation import evaluate, standard_attacks, sweep
from signattack.evaluation.distributed import Ranks

CLASSES, SHAPE = 10, (1, 4, 4)
SEED = 3
SIZES = (1, 7, 24)


class _RowLinear(LinearClassifier):
    """``LinearClassifier`` computed row by row (an elementwise product and a sum over each
    sample's own features), so that a sample's logits and gradient are the same bits in a
    batch of any size, at any position."""

    def __call__(self, x: np.ndarray) -> np.ndarray:
        flat = x.reshape(len(x), 1, -1)
        return (flat * self.weight[None]).sum(axis=-1) + self.bias

    def vjp(self, x: np.ndarray, cotangent: np.ndarray) -> np.ndarray:
        return (cotangent[:, :, None] * self.weight[None]).sum(axis=1).reshape(x.shape)


def _linear() -> _RowLinear:
    rng = np.random.default_rng(0)
    return _RowLinear(rng.normal(scale=0.02, size=(CLASSES, 16)), rng.normal(size=CLASSES))


def _samples(model: Callable[[np.ndarray], np.ndarray], count: int = 24):
    """Integer-valued inputs in ``[0, 255]`` with small clean margins (so that the radii
    break some and not others), labelled as the model classifies them except every eighth,
    which carries the runner-up class (clean errors count too)."""
    pool = np.round(np.random.default_rng(7).uniform(0, 255, size=(400, *SHAPE)))
    logits = np.asarray(model(pool))
    top = np.sort(logits, axis=1)
    x = pool[np.argsort(top[:, -1] - top[:, -2])[: 4 * count : 4]]
    ranked = np.argsort(np.asarray(model(x)), axis=1)
    y = ranked[:, -1].copy()
    y[::8] = ranked[::8, -2]
    return x, y


@dataclass(frozen=True)
class _Verdicts:
    """A report's per-sample results, in the order of the samples before any shuffle."""

    clean: tuple[bool, ...]
    robust: dict[float, tuple[bool, ...]]
    broken_by: dict[float, dict[str, int]]


def _evaluate(model, x, y, attack, eps, size: int, order: Sequence[int] | None = None):
    """``evaluate`` on ``x[order]`` in batches of ``size``, the verdicts put back in the
    order of ``x``."""
    order = np.arange(len(y)) if order is None else np.asarray(order)
    shuffled_x, shuffled_y = x[order], y[order]
    batches = [(shuffled_x[i : i + size], shuffled_y[i : i + size]) for i in range(0, len(y), size)]
    report = evaluate(model, batches, attack, eps, progress=False)
    return _unshuffled(report, order)


def _unshuffled(report, order) -> _Verdicts:
    back = np.argsort(order)

    def restore(flags) -> tuple[bool, ...]:
        return tuple(bool(flag) for flag in np.asarray(flags)[back])

    return _Verdicts(
        restore(report.clean_correct),
        {e: restore(flags) for e, flags in report.robust_correct.items()},
        {e: dict(counts) for e, counts in report.broken_by.items()},
    )


def _assert_same(got: _Verdicts, expected: _Verdicts, how: str) -> None:
    assert got.clean == expected.clean, how
    for e, flags in expected.robust.items():
        differ = [i for i, (a, b) in enumerate(zip(got.robust[e], flags, strict=True)) if a != b]
        assert not differ, f"{how}: at eps {e}, the samples {differ} changed their verdict"
    assert got.broken_by == expected.broken_by, how


def _assert_decisive(verdicts: _Verdicts) -> None:
    """The radii break some of the clean-correct samples and leave others: a verdict that
    moved with the batch would show."""
    assert not all(verdicts.clean)
    broken = [
        sum(c and not r for c, r in zip(verdicts.clean, flags, strict=True))
        for flags in verdicts.robust.values()
    ]
    assert any(broken), "no attack broke any sample: the test could not fail"
    assert any(verdicts.robust[max(verdicts.robust)]), "every sample broke: nothing to compare"


NUMPY_ATTACKS = {
    "pgd random start": IteratedSign(0.0, 2, relative_step=0.25, random_start=True, seed=SEED),
    "apgd restarts": APGD(0.0, 1, loss="dlr", restarts=2, seed=SEED),
    "apgd-t": APGDT(0.0, 1, target_classes=3, restarts=2, seed=SEED),
    "fab-t restarts": FABT(0.0, 2, target_classes=3, restarts=2, seed=SEED),
    "square restarts": Square(0.0, 8, restarts=2, seed=SEED),
    "weak start, then square": [
        IteratedSign(0.0, 1, relative_step=0.5, random_start=True, seed=SEED),
        Square(0.0, 8, seed=SEED + 1),
    ],
    "standard": pytest.param(standard_attacks(2, queries=8, seed=SEED), marks=pytest.mark.slow),
}
EPS = [0.5, 1.5, 3.0]


@pytest.mark.parametrize("attack", NUMPY_ATTACKS.values(), ids=NUMPY_ATTACKS.keys())
def test_a_verdict_does_not_depend_on_the_batch_size_or_the_order(attack):
    """Batches of 1 and of 7, and shuffled batches of 7 and of 24, give every sample the
    verdicts (clean, and at every radius) it gets in one batch in order, and every attack
    of a suite breaks as many samples."""
    model = _linear()
    x, y = _samples(model)
    whole = _evaluate(model, x, y, attack, EPS, len(y))
    _assert_decisive(whole)
    shuffle = np.random.default_rng(1).permutation(len(y))
    for size in SIZES[:-1]:
        _assert_same(_evaluate(model, x, y, attack, EPS, size), whole, f"batches of {size}")
    for size in SIZES[1:]:
        got = _evaluate(model, x, y, attack, EPS, size, shuffle)
        _assert_same(got, whole, f"shuffled, batches of {size}")


class _MLP(torch.nn.Module):
    """A small float64 MLP on ``[0, 255]`` inputs that runs every sample alone, so that a
    sample's logits and gradient are the same bits in a batch of any size, at any position
    (a batched matrix product may round a row differently with another number of rows)."""

    def __init__(self) -> None:
        super().__init__()
        with torch.random.fork_rng():
            torch.manual_seed(0)
            self.layers = torch.nn.Sequential(
                torch.nn.Flatten(),
                torch.nn.Linear(16, 16),
                torch.nn.ReLU(),
                torch.nn.Linear(16, CLASSES),
            ).double()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.layers(row[None] / 255) for row in x])


TORCH_ATTACKS = {
    "pgd random start": IteratedSign(
        0.0, 2, relative_step=0.25, random_start=True, loss="margin", seed=SEED
    ),
    "weak start, then apgd-t, fab-t, square": [
        IteratedSign(0.0, 1, relative_step=0.5, random_start=True, loss="margin", seed=SEED),
        APGDT(0.0, 1, target_classes=3, seed=SEED),
        FABT(0.0, 1, target_classes=3, restarts=2, seed=SEED),
        Square(0.0, 8, seed=SEED),
    ],
    "apgd-dlr restarts": APGD(0.0, 2, loss="dlr", restarts=2, seed=SEED),
}
TORCH_EPS = [3.0, 8.0, 16.0]


@pytest.mark.parametrize("attack", TORCH_ATTACKS.values(), ids=TORCH_ATTACKS.keys())
def test_a_verdict_on_a_torch_model_does_not_depend_on_the_batch_size_or_the_order(attack):
    """The same on a float64 torch model, alone, then shuffled in batches of 5.

    The losses are margins (``"margin"``, DLR and the targeted DLR, FAB-T's and Square's),
    not cross-entropy: torch's cross-entropy takes an elementwise ``exp`` over the whole
    batch, whose vectorised body and scalar tail may round a last bit differently, and
    which elements fall in the tail depends on the batch's length. The margins use exact
    operations only.
    """
    model = _MLP()

    def numpy_model(x):
        with torch.no_grad():
            return model(torch.from_numpy(x)).numpy()

    x, y = (torch.from_numpy(v) for v in _samples(numpy_model, 16))
    whole = _evaluate(model, x, y, attack, TORCH_EPS, len(y))
    _assert_decisive(whole)
    alone = _evaluate(model, x, y, attack, TORCH_EPS, 1)
    _assert_same(alone, whole, "batches of 1")
    shuffle = np.random.default_rng(1).permutation(len(y))
    got = _evaluate(model, x, y, attack, TORCH_EPS, 5, shuffle)
    _assert_same(got, whole, "shuffled, batches of 5")


class _Handed(Exception):
    """A process other than rank 0 has handed its results over."""


def _sharded(model, x, y, attack, eps, size: int, world: int) -> _Verdicts:
    """``evaluate`` as ``world`` processes under ``torchrun`` run it, one after the other
    in this process: each evaluates the batches it owns, rank 0 last, gathering what the
    others handed over (where ``torch.distributed`` would gather it)."""
    handed: dict[int, object] = {}
    batches = [(x[i : i + size], y[i : i + size]) for i in range(0, len(y), size)]

    class Shard(Ranks):
        def gather(self, payload):
            owned = [i for i in range(len(batches)) if i % world == self.rank]
            results, _, _ = payload  # the batches' results, the passes outside them, resumed
            assert sorted(results) == owned, "each process hands over its own batches only"
            handed[self.rank] = payload
            if self.rank:
                raise _Handed
            return [handed[rank] for rank in range(world)]

    class Launched:
        """Which process ``evaluate`` finds itself in (``Ranks.current()``)."""

        rank = 0

        @classmethod
        def current(cls) -> Ranks:
            return Shard(cls.rank, world)

    report = None
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(sweep, "Ranks", Launched)
        for rank in reversed(range(world)):
            Launched.rank = rank
            if rank:
                with pytest.raises(_Handed):
                    evaluate(model, batches, attack, eps, progress=False)
            else:
                report = evaluate(model, batches, attack, eps, progress=False)
    return _unshuffled(report, np.arange(len(y)))


@pytest.mark.parametrize("world", [2, 3])
def test_a_verdict_does_not_depend_on_how_many_processes_share_the_work(world):
    """Batches of 5 shared by ``world`` processes (each evaluates the batches whose index
    it owns) give every sample the verdict of one process with one batch."""
    model = _linear()
    x, y = _samples(model)
    attack = NUMPY_ATTACKS["weak start, then square"]
    whole = _evaluate(model, x, y, attack, EPS, len(y))
    _assert_decisive(whole)
    sharded = _sharded(model, x, y, attack, EPS, 5, world)
    _assert_same(sharded, whole, "sharded")
    _assert_same(sharded, _evaluate(model, x, y, attack, EPS, 5), "sharded, same batches")
