"""A report names only the library's own attacks by their papers' names, shows the largest
perturbation with the rounding of the dtype that made it, and puts the stand-in data's
warning first; an attack whose radius is wider than the box computes with the box's
diameter, so that no narrow dtype overflows."""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import math
import re

import pytest
import torch

from signattack import APGD, APGDT, FABT, L2PGD, IteratedSign, Square
from signattack.backends.batch import open_threat
from signattack.evaluation import RobustnessReport, _units, evaluate
from signattack.evaluation.report import STAND_IN
from signattack.evaluation.standard import traits_of

# -- 1. a user's subclass is named as the user's -----------------------------------------------


def _tiny() -> tuple[torch.nn.Module, torch.Tensor, torch.Tensor]:
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(16, 4)).eval()
    x = torch.rand(5, 1, 4, 4) * 255
    with torch.no_grad():
        y = net(x).argmax(1)
    return net, x, y


@dataclasses.dataclass(frozen=True)
class NoOpAPGD(APGD):
    """A user's attack that returns its inputs unchanged, under APGD's settings."""

    def run(self, model, x, y, **kwargs):
        result = super().run(model, x, y, **kwargs)
        return dataclasses.replace(result, x_adv=x.clone())


@dataclasses.dataclass(frozen=True)
class Named(IteratedSign):
    @property
    def name(self) -> str:
        return "Mine"


def _named(name: str) -> type[IteratedSign]:
    @dataclasses.dataclass(frozen=True)
    class Blank(IteratedSign):
        @property
        def name(self) -> str:
            return name

    return Blank


def test_a_users_subclass_is_never_reported_under_the_papers_name():
    net, x, y = _tiny()
    report = evaluate(net, [(x, y)], NoOpAPGD(1.0, 3), [40.0], progress=False)
    assert list(report.broken_by[40.0]) == ["NoOpAPGD"]
    assert report.attack.startswith("NoOpAPGD(steps=3"), report.attack
    assert "APGD-CE" not in report.table()
    assert "APGD-CE" not in report.to_robustbench()["robust_acc_attacks"]
    assert report.metadata["attacks"][0]["name"] == "NoOpAPGD"
    library = evaluate(net, [(x, y)], APGD(1.0, 3), [40.0], progress=False)
    assert list(library.broken_by[40.0]) == ["APGD-CE"]  # the library's own keeps its name


@pytest.mark.parametrize(
    ("attack", "name"),
    [
        (Named(1.0, 2), "Mine"),  # a name the user's class defines itself
        (_named("")(1.0, 2), "Blank"),  # empty: the class's name
        (_named("  \t")(1.0, 2), "Blank"),  # whitespace: the class's name
        (NoOpAPGD(1.0, 2, loss="dlr"), "NoOpAPGD"),  # inherited from the library: not said
        (APGD(1.0, 2, loss="dlr"), "APGD-DLR"),
        (IteratedSign(1.0, 2), "IteratedSign"),
    ],
)
def test_the_name_is_said_only_by_the_class_that_defines_it(attack, name):
    traits = traits_of(attack)
    assert traits.name == name
    assert traits.description.startswith(f"{name}("), traits.description


def test_a_blank_name_never_numbers_whitespace():
    net, x, y = _tiny()
    blank = _named("   ")
    suite = [blank(1.0, 2), blank(1.0, 2)]
    report = evaluate(net, [(x, y)], suite, [4.0], progress=False)
    assert list(report.broken_by[4.0]) == ["Blank", "Blank #2"]
    assert all(name.strip() == name for name in report.broken_by[4.0])


# -- 2. the largest perturbation, with the rounding of its dtype --------------------------------


def _one_radius(eps: float, largest: float, metadata: dict | None = None) -> RobustnessReport:
    return RobustnessReport(
        eps=(eps,),
        attack="A",
        clean_correct=(True, True),
        robust_correct={eps: (True, False)},
        max_perturbation={eps: largest},
        attacked={eps: 2},
        metadata={"bounds": [0.0, 255.0], **(metadata or {})},
    )


def _shown_max(report: RobustnessReport) -> str:
    cells = re.split(r" {2,}", report.table().splitlines()[2].strip())  # header, clean, eps
    return cells[3]


@pytest.mark.parametrize("largest", [8.06, 8 * (1 + 2**-10)])
def test_a_float32_or_unknown_dtype_report_shows_a_violation_as_measured(largest):
    for metadata in ({}, {"data": {"dtype": "float32"}}, {"data": {"dtype": "float64"}}):
        report = _one_radius(8.0, largest, metadata)
        assert float(_shown_max(report)) > 8.0, (metadata, report.table())
        row = list(csv.DictReader(io.StringIO(report.to_summary_csv())))[-1]
        assert float(row["max_perturbation"]) == largest  # the measurement, never rounded
        assert float(row["max_perturbation_shown"]) > 8.0


def test_the_rounding_of_the_recorded_dtype_is_shown_as_the_radius():
    above = 8 * (1 + 2**-9)  # within bfloat16's rounding, beyond float16's and float32's
    bfloat16 = _one_radius(8.0, above, {"data": {"dtype": "bfloat16"}})
    assert _shown_max(bfloat16) == "8"
    row = list(csv.DictReader(io.StringIO(bfloat16.to_summary_csv())))[-1]
    assert (row["max_perturbation_shown"], float(row["max_perturbation"])) == ("8", above)
    for dtype in ("float16", "float32"):
        assert float(_shown_max(_one_radius(8.0, above, {"data": {"dtype": dtype}}))) > 8


@pytest.mark.parametrize("dtype", ["bfloat16", "float16", "float32", "float64"])
def test_the_slack_is_the_rounding_of_a_radius_in_that_dtype(dtype):
    slack = _units.ball_slack(dtype)
    assert slack == float(torch.finfo(getattr(torch, dtype)).eps)
    radius = 8 / 255
    rounded = float(torch.tensor(radius, dtype=torch.float64).to(getattr(torch, dtype)))
    assert _units.shown_largest(max(rounded, radius), radius, dtype) == radius
    assert _units.shown_largest(radius * (1 + 2 * slack), radius, dtype) > radius
    assert _units.ball_slack(None) == _units.ball_slack("float32")  # a report that records none
    assert _units.ball_slack("uint8") <= _units.ball_slack("float32")


# -- 5. the stand-in data's warning comes first, once --------------------------------------------


def _stand_in(warnings: tuple[str, ...]) -> RobustnessReport:
    return dataclasses.replace(
        _one_radius(8.0, 8.0, {"data": {"synthetic": True}}), warnings=warnings
    )


@pytest.mark.parametrize(
    "given",
    [
        ("first thing: a", STAND_IN),
        ("first thing: a", f"  {STAND_IN} "),
        (f"{STAND_IN}\n", "first thing: a", STAND_IN),
        ("first thing: a",),
    ],
)
def test_the_stand_in_warning_leads_once_whatever_order_it_came_in(given):
    report = _stand_in(given)
    assert report.warnings == (STAND_IN, "first thing: a")
    again = RobustnessReport.from_dict(json.loads(report.to_json()))
    assert again.warnings == report.warnings
    assert dataclasses.replace(again).warnings == report.warnings


# -- 3. a radius wider than the box computes with the box's diameter -----------------------------


def _half(dtype: torch.dtype) -> tuple[torch.nn.Module, torch.Tensor, torch.Tensor]:
    net, x, y = _tiny()
    return net, x.to(dtype), y


def _float_model(net: torch.nn.Module):
    def model(z: torch.Tensor) -> torch.Tensor:
        return net(z.float())

    return model


WIDE_EPS = pytest.mark.filterwarnings("ignore::signattack.UnitsWarning")  # said, and meant

WIDE = [
    lambda eps, norm: APGD(eps, 3, norm=norm, seed=0),
    lambda eps, norm: APGDT(eps, 3, target_classes=2, norm=norm, seed=0),
    lambda eps, norm: Square(eps, 6, norm=norm, seed=0),
    lambda eps, norm: FABT(eps, 3, target_classes=2, norm=norm, seed=0),
    lambda eps, norm: IteratedSign(eps, 2) if norm == "linf" else L2PGD(eps, 2),
]


@WIDE_EPS
@pytest.mark.parametrize("make", WIDE, ids=["APGD", "APGD-T", "Square", "FAB-T", "iterated"])
@pytest.mark.parametrize("norm", ["linf", "l2"])
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_a_radius_beyond_a_narrow_dtype_gives_a_finite_point_in_the_box(make, norm, dtype):
    net, x, y = _half(dtype)
    result = make(1e6, norm).run(_float_model(net), x, y)
    points = result.x_adv.float()
    assert result.x_adv.dtype == dtype
    assert bool(torch.isfinite(points).all())
    assert float(points.min()) >= 0.0
    assert float(points.max()) <= 255.0


@WIDE_EPS
@pytest.mark.parametrize("make", WIDE[:3], ids=["APGD", "APGD-T", "Square"])
@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_a_radius_wider_than_the_box_is_the_box_diameter(make, norm):
    net, x, y = _tiny()
    diameter = 255.0 if norm == "linf" else 255.0 * math.sqrt(16)
    wide = make(1e6, norm).run(net, x, y)
    same = make(diameter, norm).run(net, x, y)  # the same ball-and-box, the same numbers
    assert torch.equal(wide.x_adv, same.x_adv)
    assert torch.equal(wide.losses, same.losses)


@pytest.mark.parametrize(("norm", "diameter"), [("linf", 255.0), ("l2", 255.0 * 4)])
@pytest.mark.parametrize("dtype", [torch.float32, torch.uint8])
def test_the_kernels_radius_is_eps_up_to_the_box_diameter(norm, diameter, dtype):
    """Up to the diameter the radius is ``eps`` itself (the same numbers as ever); beyond,
    the diameter, per sample too."""
    net, x, y = _tiny()
    x = x.round().to(dtype)
    integer = dtype == torch.uint8
    with open_threat(net, x, y, APGD(8.0, 1, norm=norm).threat) as batch:
        for eps in (0.0, 7.5, 8.0, diameter / 3, diameter):
            expected = math.floor(eps) if integer and norm == "linf" else eps
            assert batch.radius(eps) == expected
        assert batch.radius(1e6) == batch.radius(diameter)
        assert batch.radius(math.inf) == batch.radius(diameter)
        radii = torch.tensor([0.5, diameter, 1e6, 8.0, math.inf], dtype=torch.float64)
        held = batch.radius(radii)
        expected = batch.radius(torch.tensor([0.5, diameter, diameter, 8.0, diameter]))
        assert torch.equal(held, expected.to(held.dtype))
