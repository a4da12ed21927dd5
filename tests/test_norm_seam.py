"""The norm seam: every geometric question of an attack goes to its norm, named once.

Names and errors of :func:`norm_of`, the threat model's norm, the batch that carries it (the
radius and the rounding of integer images), the attack base that reports it, the random
start that asks the feasible set, and the units warning that measures a radius in it.
"""

from __future__ import annotations

import dataclasses
import warnings

import numpy as np
import pytest
import torch

from signattack import FGSM, IteratedSign, LinearClassifier, UnitsWarning
from signattack.attacks import BallAttack, LinfAttack
from signattack.backends.batch import open_batch, open_threat
from signattack.core.l2 import L2
from signattack.core.linf import LINF
from signattack.core.losses import cross_entropy
from signattack.core.norms import Norm, norm_of
from signattack.core.threat import PIXEL_BOUNDS, ThreatModel
from signattack.core.validation import Bounds


@pytest.mark.parametrize(
    ("name", "norm"),
    [
        ("linf", LINF),
        ("Linf", LINF),
        ("L-inf", LINF),
        ("inf", LINF),
        (" linf ", LINF),
        ("l2", L2),
        ("L2", L2),
        ("2", L2),
    ],
)
def test_norm_of_reads_every_spelling(name, norm):
    assert norm_of(name) is norm
    assert norm_of(norm) is norm
    assert isinstance(norm, Norm)


def test_norm_of_names_the_argument_and_what_came():
    with pytest.raises(ValueError, match=r"norm must be one of 'linf', 'l2', got 'l1'"):
        norm_of("l1")
    for wrong in (2, None, 2.0):
        with pytest.raises(TypeError, match="norm must be 'linf', 'l2' or a Norm, got"):
            norm_of(wrong)


def test_the_threat_model_stores_its_norm_and_compares_by_it():
    assert ThreatModel().geometry is LINF
    assert ThreatModel(norm="L2").norm is L2
    assert ThreatModel(norm="l2") == ThreatModel(norm=L2)
    assert ThreatModel(norm="l2") != ThreatModel()
    assert hash(ThreatModel(norm="l2")) == hash(ThreatModel(norm="L2"))
    with pytest.raises(ValueError, match="norm must be one of"):
        ThreatModel(norm="l3")


def _model():
    rng = np.random.default_rng(0)
    return LinearClassifier(rng.normal(size=(3, 7)), rng.normal(size=3))


def test_the_batch_carries_the_norm_of_its_threat():
    x, y = np.full((2, 7), 100.0), np.array([0, 1])
    with open_threat(_model(), x, y, ThreatModel(norm="l2")) as batch:
        assert batch.norm is L2
    with open_threat(_model(), x, y, ThreatModel()) as batch:
        assert batch.norm is LINF
    opened = open_batch(
        _model(), x, y, loss=cross_entropy, model_mode="eval", bounds=PIXEL_BOUNDS, norm="L2"
    )
    with opened as batch:
        assert batch.norm is L2
    opened = open_batch(
        _model(), x, y, loss=cross_entropy, model_mode="eval", bounds=PIXEL_BOUNDS, norm="l7"
    )
    with pytest.raises(ValueError, match="norm must be one of"):
        opened.__enter__()


def test_integer_rounding_under_l2_stays_inside_the_l2_ball():
    """A real step just inside the L2 ball whose every value rounds up: rounded to the nearest
    integers it is 19 per value, ||d|| = 19 sqrt(7) = 50.27 > 50. The rounding must ask the
    norm (the L-inf rounding clips each value to [-50, 50] and leaves the ball)."""
    eps, size = 50.0, 7
    x = np.full((1, size), 100, dtype=np.uint8)
    with open_threat(_model(), x, np.array([0]), ThreatModel(norm="l2")) as batch:
        radius = batch.radius(eps)
        assert radius == eps  # no floor under L2: an integer d with ||d|| <= 50.5 may not pass
        step = np.full((1, size), np.float32(eps / np.sqrt(size) - 1e-3), dtype=np.float32)
        assert float(np.linalg.norm(step.astype(np.float64))) <= eps
        x_int = batch.to_input(batch.x + step, radius)
        seen = batch.rounded(radius)(batch.x + step)
    assert x_int.dtype == np.uint8
    d = x_int.astype(np.int64) - x.astype(np.int64)
    assert int(np.sum(d * d)) <= int(eps) ** 2
    assert bool(L2.within(x_int, x, eps, PIXEL_BOUNDS)[0])
    np.testing.assert_array_equal(seen, x_int.astype(np.float32))  # the model sees the same


def test_integer_rounding_under_linf_keeps_floor_eps():
    x = np.full((1, 4), 10, dtype=np.uint8)
    with open_threat(_model4(), x, np.array([0]), ThreatModel()) as batch:
        assert batch.radius(7.9999) == 7.0
        x_int = batch.to_input(batch.x + np.float32(7.9), batch.radius(7.9999))
    np.testing.assert_array_equal(x_int, np.full((1, 4), 17, dtype=np.uint8))


def _model4():
    rng = np.random.default_rng(1)
    return LinearClassifier(rng.normal(size=(3, 4)), rng.normal(size=3))


@dataclasses.dataclass(frozen=True)
class _NormedAttack(BallAttack):
    """A minimal attack with a ``norm`` field, as APGD and the others declare it."""

    eps: float
    bounds: Bounds | tuple[float, float] = PIXEL_BOUNDS
    model_mode: str = "eval"
    seed: int | None = None
    norm: str = "linf"

    def __post_init__(self) -> None:
        self._check("ce")

    def run(self, model, x, y, *, rng=None):  # pragma: no cover - never run
        raise NotImplementedError


def test_the_attack_base_reports_the_norm_field_in_its_threat():
    assert _NormedAttack(1.0).threat.geometry is LINF
    attack = _NormedAttack(1.0, norm="L2")
    assert attack.threat.geometry is L2
    assert attack.norm == "l2"  # stored in the library's own spelling
    assert attack.with_eps(2.0).threat.geometry is L2
    with pytest.raises(ValueError, match="norm must be one of 'linf', 'l2', got 'l3'"):
        _NormedAttack(1.0, norm="l3")
    with pytest.raises(TypeError, match="norm must be"):
        _NormedAttack(1.0, norm=2)


def test_attacks_without_a_norm_field_report_linf_and_the_old_base_name_works():
    assert LinfAttack is BallAttack
    assert IteratedSign(8.0).threat.geometry is LINF
    assert FGSM(8.0).threat.geometry is LINF
    assert "norm" not in {field.name for field in dataclasses.fields(IteratedSign)}


def _warned(run) -> list[str]:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        run()
    return [str(w.message) for w in caught if issubclass(w.category, UnitsWarning)]


def _open(norm: str, eps: float, shape=(2, 3, 8, 8)):
    x = np.full(shape, 100.0)
    model = LinearClassifier(np.zeros((3, int(np.prod(shape[1:])))), np.zeros(3))

    def run() -> None:
        with open_threat(model, x, np.array([0, 1]), ThreatModel(norm=norm), eps=eps):
            pass

    return run


def test_the_units_warning_measures_the_radius_in_the_norm():
    # L-inf: a radius wider than the box constrains nothing.
    (message,) = _warned(_open("linf", 300.0))
    assert "eps = 300 is larger than the whole box" in message
    assert "L-inf" in message
    # L2: RobustBench's ImageNet radius 3 on [0, 1] is 765 on [0, 255], more than the box's
    # width but far inside the box's diagonal over 192 values (255 * sqrt(192) = 3533).
    assert _warned(_open("l2", 765.0)) == []
    assert _warned(_open("l2", 127.5)) == []
    # An L2 radius longer than the whole diagonal is a units mistake.
    (message,) = _warned(_open("l2", 4000.0))
    assert "eps = 4000 is larger than the whole box" in message
    assert "L2" in message
    assert "192 values" in message


def test_random_start_asks_the_feasible_set_and_stays_in_ball_and_box():
    """IteratedSign's random start through LINF's feasible set: every point exactly inside
    ball and box in the input's dtype (float16 included), reproducible by seed."""
    rng = np.random.default_rng(3)
    model = torch.nn.Linear(12, 3).eval()
    x = torch.from_numpy(rng.uniform(0, 255, size=(5, 12)))
    y = torch.from_numpy(rng.integers(0, 3, size=5))
    for dtype in (torch.float16, torch.bfloat16, torch.float32, torch.float64):
        inputs = x.to(dtype)
        attack = IteratedSign(8.0, 1, step_size=0.0, random_start=True, seed=4)

        def wide(inputs: torch.Tensor, model=model) -> torch.Tensor:
            return model(inputs.to(torch.float32))

        start = attack(wide, inputs, y)
        assert bool(LINF.within(start, inputs, 8.0, PIXEL_BOUNDS).all())
        assert not torch.equal(start, inputs)
        assert torch.equal(start, attack(wide, inputs, y))
