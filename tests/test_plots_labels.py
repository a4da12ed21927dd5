"""Figure labels say what the numbers are: a radius axis names the report's own norm and
the unit its ticks are in; a step axis has whole-number ticks only."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("matplotlib")

from signattack import IteratedSign
from signattack.core import L2, LINF
from signattack.evaluation import RobustnessReport
from signattack.plots import (
    plot_curves,
    plot_loss_trace,
    plot_robustness_curves,
    radius_label,
)

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def _report(eps: tuple[float, ...], norm: str | None, bounds=(0.0, 1.0)) -> RobustnessReport:
    metadata = {"bounds": list(bounds)}
    if norm is not None:
        metadata["norm"] = norm
    return RobustnessReport(
        eps=eps,
        attack="A",
        clean_correct=(True, True, False),
        robust_correct=dict.fromkeys(eps, (True, False, False)),
        max_perturbation={e: e for e in eps},
        attacked=dict.fromkeys(eps, 2),
        metadata=metadata,
    )


def test_an_l2_report_is_labelled_l2_in_its_units_not_in_levels():
    report = _report((0.25, 0.5), "l2")
    label = report.plot().axes[0].get_xlabel()
    assert label.startswith("L2 radius eps")
    assert "L-inf" not in label
    assert "255" not in label


def test_an_linf_report_in_levels_says_levels_and_in_decimals_does_not():
    levels = _report((2 / 255, 8 / 255), None).plot().axes[0].get_xlabel()
    assert levels == "L-inf radius eps (of 255 levels)"
    decimals = _report((0.03, 0.1), "linf").plot().axes[0].get_xlabel()
    assert decimals.startswith("L-inf radius eps")
    assert "levels" not in decimals


@pytest.mark.parametrize("norm", [LINF, L2], ids=lambda n: n.name)
def test_the_label_names_the_norm_by_its_own_title(norm):
    for bounds in [None, (0.0, 1.0), (0.0, 255.0)]:
        assert radius_label(norm, bounds, ["0.5"]).startswith(f"{norm.title} radius eps (")
    assert ("levels" in radius_label(norm, (0.0, 1.0), ["8/255"])) == (norm is LINF)


def test_robustness_curves_take_the_reports_norm_and_refuse_mixed_norms():
    l2 = {"a": _report((0.5, 1.0), "l2"), "b": _report((0.5, 1.0), "l2")}
    label = plot_robustness_curves({"model": l2}).axes[0].get_xlabel()
    assert label.startswith("L2 radius eps")
    assert "pixels" not in label
    mixed = {"a": _report((0.5, 1.0), "l2"), "b": _report((0.5, 1.0), "linf")}
    with pytest.raises(ValueError, match="share their norm"):
        plot_robustness_curves({"model": mixed})
    assert plot_robustness_curves({"m": l2}, eps_label="mine").axes[0].get_xlabel() == "mine"


def _whole(ticks) -> bool:
    return bool(len(ticks)) and all(float(t) == round(float(t)) for t in ticks)


@pytest.mark.parametrize("steps", [1, 2, 3, 5])
def test_loss_against_step_has_whole_step_ticks(steps):
    losses = np.linspace(0.0, 1.0, (steps + 1) * 4).reshape(steps + 1, 4)
    ax = plot_loss_trace(losses).axes[0]
    assert ax.get_xlabel() == "attack step"
    assert _whole(ax.get_xticks())
    curves = plot_curves({"p": {"loss": list(losses.mean(axis=1))}}).axes[0]
    assert _whole(curves.get_xticks())


def _shown_ticks(ax) -> list[float]:
    low, high = ax.get_xlim()
    return [float(t) for t in ax.get_xticks() if low <= t <= high]


@pytest.mark.parametrize("steps", [0, 1, 2, 5, 40])
def test_the_step_axis_starts_at_step_zero(steps):
    losses = np.linspace(0.0, 1.0, (steps + 1) * 3).reshape(steps + 1, 3)
    figures = [plot_loss_trace(losses), plot_curves({"p": {"loss": list(losses[:, 0])}})]
    for ax in (figure.axes[0] for figure in figures):
        assert ax.get_xlim()[0] == 0.0
        assert ax.get_xlim()[1] >= steps  # every step is drawn
        ticks = _shown_ticks(ax)
        assert ticks
        assert min(ticks) == 0.0, ticks


def test_robustness_curves_need_a_report():
    for panels in ({}, {"model": {}}):
        with pytest.raises(ValueError, match="at least one report"):
            plot_robustness_curves(panels)


def test_the_attack_example_names_the_step_size_and_ticks_whole_steps(monkeypatch, tmp_path):
    torch = pytest.importorskip("torch")
    monkeypatch.syspath_prepend(str(EXAMPLES))
    import cifar10_attack

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(16, 3))
    images = torch.randint(0, 256, (6, 1, 4, 4), dtype=torch.uint8)
    labels = torch.tensor([0, 1, 2, 0, 1, 2])
    results = cifar10_attack.study(
        model, images, labels, ("a", "b", "c"), tmp_path, eps=8.0, steps=3, batch_size=6
    )
    projected = list(results["mean_loss_by_step"])[1]
    step_size = IteratedSign(8.0, 3).resolved_step_size
    assert projected.endswith(f", step size {step_size:g}"), projected
    figure = cifar10_attack.plot_loss_curves(
        results["mean_loss_by_step"], tmp_path / "again.png", images=6, steps=3, eps=8.0
    )
    assert _whole(figure.axes[0].get_xticks())
