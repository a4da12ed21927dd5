"""Figures for attacks and probes (needs matplotlib: ``pip install "signattack[demo]"``).

Every helper takes NumPy arrays or tensors (on any device), returns the matplotlib
``Figure`` and, given ``path``, also saves it there. No window opens; in a notebook the
figure shows as the cell's image by itself (no ``%matplotlib inline`` needed).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from signattack._figure import new_figure
from signattack._host import to_numpy
from signattack.core.linf import LINF
from signattack.core.norms import Norm

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

    from signattack.probes.input_space import LossSurface
    from signattack.probes.weights import LossSlice

__all__ = [
    "plot_curves",
    "plot_gradient_maps",
    "plot_loss_along",
    "plot_loss_slice",
    "plot_loss_surface",
    "plot_loss_trace",
    "plot_report",
    "plot_robustness_curves",
    "radius_label",
    "step_axis",
]


def _numpy(array: Any) -> np.ndarray[Any, Any]:
    return to_numpy(array)


def _new_figure(size: tuple[float, float]) -> Figure:
    return new_figure(size)


def _finish(fig: Figure, path: str | Path | None) -> Figure:
    if path is not None:
        fig.savefig(path, dpi=120)
    return fig


def step_axis(ax: Axes, label: str = "attack step") -> None:
    """Label ``ax``'s x axis as a count of steps, with whole-number ticks only (a step
    ``0.5`` does not exist), starting at step 0 (no step ``-1`` exists either: the axis
    keeps its right end as the data set it). Every loss-against-step figure uses it, after
    plotting."""
    from matplotlib.ticker import MaxNLocator

    ax.set_xlabel(label)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    right = ax.get_xlim()[1]
    ax.set_xlim(0.0, right if right > 0 else 1.0)


def radius_label(norm: Norm, bounds: tuple[float, float] | None, ticks: Sequence[str] = ()) -> str:
    """The label of a radius axis: the norm by its own title (``L-inf``, ``L2``) and the
    unit the radii are written in. Only an L-inf radius is a number of 8-bit levels (the
    ticks ``8/255`` of a ``[0, 1]`` box, as
    [`RobustnessReport.radius`][signattack.evaluation.RobustnessReport.radius] writes them);
    an L2 radius is a Euclidean length in the inputs' units.

    Args:
        norm: The norm the radii are measured in.
        bounds: The inputs' box, if known.
        ticks: The radii as the axis writes them (``"8/255"``, ``"0.5"``), if it writes them
            in the user's units.
    """
    levels = [tick.endswith("/255") for tick in ticks if tick != "0"]
    if norm.name == "linf" and levels and all(levels):
        return f"{norm.title} radius eps (of 255 levels)"
    unit = "input units" if bounds is None else f"input units, box [{bounds[0]:g}, {bounds[1]:g}]"
    if norm.name == "linf" and any(levels):
        unit = f"{unit}; k/255 is k of 255 levels"
    if norm.name == "l2":
        unit = f"Euclidean length, {unit}"
    return f"{norm.title} radius eps ({unit})"


def plot_loss_trace(
    losses: Any, *, title: str = "loss vs attack step", path: str | Path | None = None
) -> Figure:
    """Per-sample loss against attack step (thin lines) and their mean (thick).

    Args:
        losses: An [`AttackResult`][signattack.AttackResult], or its
            `losses`: ``(steps + 1, batch)`` of any library and dtype (``bfloat16`` included).
        title: Axes title.
        path: Where to save the figure, if anywhere.

    Raises:
        ValueError: ``losses`` is not of shape ``(steps + 1, batch)``.
    """
    from signattack.attacks.base import AttackResult

    trace: object = losses.losses if isinstance(losses, AttackResult) else losses
    values = _numpy(trace)
    if values.ndim != 2:
        raise ValueError(
            "losses must be an AttackResult or its losses of shape (steps + 1, batch), got "
            f"shape {values.shape}"
        )
    fig = _new_figure((6, 4))
    ax = fig.add_subplot()
    ax.plot(values, color="tab:blue", alpha=min(1.0, 8 / max(values.shape[1], 1)), lw=0.8)
    ax.plot(values.mean(axis=1), color="black", lw=2.5, label=f"mean of {values.shape[1]}")
    step_axis(ax)
    ax.set_ylabel("loss")
    ax.set_title(title)
    ax.legend()
    return _finish(fig, path)


def plot_loss_along(
    radii: Sequence[float],
    losses: Mapping[str, Any],
    *,
    title: str = "loss along directions",
    path: str | Path | None = None,
) -> Figure:
    """Mean loss (with its interquartile band) against radius, one curve per direction.

    Args:
        radii: The radii of [`signattack.probes.loss_along`][signattack.probes.loss_along].
        losses: Direction name to its ``(len(radii), batch)`` losses.
        title: Axes title.
        path: Where to save the figure, if anywhere.
    """
    fig = _new_figure((6, 4))
    ax = fig.add_subplot()
    for name, value in losses.items():
        values = _numpy(value)
        low, high = np.percentile(values, [25, 75], axis=1)
        (line,) = ax.plot(radii, values.mean(axis=1), lw=2, label=name)
        ax.fill_between(radii, low, high, color=line.get_color(), alpha=0.2)
    ax.set_xlabel(f"{LINF.title} radius (input units)")  # the probes' directions are L-inf
    ax.set_ylabel("loss")
    ax.set_title(title)
    ax.legend()
    return _finish(fig, path)


def plot_loss_slice(
    slice_: LossSlice, *, title: str = "loss slice", path: str | Path | None = None
) -> Figure:
    """A 1-D weight-space slice as a curve, a 2-D one as filled contours."""
    fig = _new_figure((6, 4.5))
    ax = fig.add_subplot()
    if not slice_.betas:
        ax.plot(slice_.alphas, slice_.losses, marker="o", lw=2)
        ax.set_xlabel("alpha")
        ax.set_ylabel("loss")
    else:
        grid = np.asarray(slice_.losses, dtype=float)
        contour = ax.contourf(slice_.betas, slice_.alphas, grid, levels=20, cmap="viridis")
        ax.contour(slice_.betas, slice_.alphas, grid, levels=20, colors="white", linewidths=0.4)
        fig.colorbar(contour, ax=ax, label="loss")
        ax.set_xlabel("beta")
        ax.set_ylabel("alpha")
    ax.set_title(title)
    return _finish(fig, path)


def plot_loss_surface(
    surface: LossSurface[Any],
    *,
    sample: int | None = None,
    title: str = "loss around x",
    path: str | Path | None = None,
) -> Figure:
    """Contours of [`signattack.probes.loss_surface`][signattack.probes.loss_surface], for one
    sample or the mean."""
    losses = _numpy(surface.losses)
    grid = losses.mean(axis=2) if sample is None else losses[:, :, sample]
    fig = _new_figure((6, 4.5))
    ax = fig.add_subplot()
    contour = ax.contourf(surface.orthogonal_radii, surface.gradient_radii, grid, levels=20)
    fig.colorbar(contour, ax=ax, label="loss")
    ax.set_xlabel("orthogonal random direction")
    ax.set_ylabel("signed gradient direction")
    ax.set_title(title if sample is None else f"{title} (sample {sample})")
    return _finish(fig, path)


def plot_gradient_maps(
    images: Any,
    gradients: Any,
    *,
    titles: Sequence[str] | None = None,
    path: str | Path | None = None,
) -> Figure:
    """Images (top row) above their input gradients (bottom row), each map on its own scale.

    The bottom row shows the gradient summed over the channels, signed, on a diverging
    scale symmetric about zero (red: raising the pixel raises the loss; blue: lowering it
    does). Each map is scaled to its own largest magnitude, written under it, so that the
    shape of every map shows even when the magnitudes differ by orders (a confidently
    correct image has a gradient near zero beside a wrong one's). A map that is exactly
    zero, or not finite, is left blank with a note saying so.

    Args:
        images: ``(n, channels, height, width)`` in ``[0, 255]``, or ``(n, height, width)``.
        gradients: Input gradients of the same shape.
        titles: One title per image.
        path: Where to save the figure, if anywhere.
    """
    pictures, grads = _numpy(images), _numpy(gradients)
    if pictures.ndim == 3:
        pictures, grads = pictures[:, None], grads[:, None]
    count = pictures.shape[0]
    signed = grads.astype(np.float64).sum(axis=1)
    fig = _new_figure((1.6 * count + 1.2, 4.1))
    shown = None
    bottoms = []
    for i in range(count):
        picture = np.moveaxis(pictures[i], 0, -1) / 255.0
        top = fig.add_subplot(2, count, i + 1)
        top.imshow(
            picture.squeeze(-1) if picture.shape[-1] == 1 else picture.clip(0, 1),
            cmap="gray_r" if picture.shape[-1] == 1 else None,
        )
        bottom = fig.add_subplot(2, count, count + i + 1)
        bottoms.append(bottom)
        scale = float(np.abs(signed[i]).max()) if signed[i].size else 0.0
        if not np.isfinite(scale) or scale == 0.0:
            note = (
                "gradient is zero:\nflat loss here" if scale == 0.0 else "gradient is\nnot finite"
            )
            bottom.imshow(np.zeros_like(signed[i]), cmap="RdBu_r", vmin=-1.0, vmax=1.0)
            bottom.text(
                0.5, 0.5, note, ha="center", va="center", fontsize=7, transform=bottom.transAxes
            )
        else:
            shown = bottom.imshow(signed[i] / scale, cmap="RdBu_r", vmin=-1.0, vmax=1.0)
            bottom.set_xlabel(f"max |g| = {scale:.2g}", fontsize=7)
        if titles is not None:
            top.set_title(titles[i], fontsize=8)
        for ax in (top, bottom):
            ax.set_xticks([])
            ax.set_yticks([])
    if shown is not None:
        fig.colorbar(shown, ax=bottoms, shrink=0.9, label="d loss / d pixel\n/ the map's max |g|")
    return _finish(fig, path)


def plot_curves(
    panels: Mapping[str, Mapping[str, Sequence[float]]],
    *,
    x: Sequence[float] | None = None,
    xlabel: str = "step",
    ylabel: str | Sequence[str] = "",
    log_y: bool = False,
    ylim: tuple[float, float] | None = None,
    path: str | Path | None = None,
) -> Figure:
    """Named series side by side: one panel per title, one line per label.

    Args:
        panels: Per panel title, per line label, the values.
        x: The x values shared by every line (default ``0, 1, 2, ...``, with whole-number
            ticks).
        xlabel: The x axis label.
        ylabel: One y axis label, of one y axis the panels share; or one label per panel,
            for panels that plot different quantities, each on its own y axis.
        log_y: A logarithmic y axis (gradient norms, excess losses).
        ylim: The y range, if fixed.
        path: Where to save the figure, if anywhere.
    """
    shared = isinstance(ylabel, str)
    labels = [ylabel] + [""] * (len(panels) - 1) if isinstance(ylabel, str) else list(ylabel)
    if len(labels) != len(panels):
        raise ValueError(f"ylabel must be one label or {len(panels)}, got {len(labels)}")
    fig = _new_figure((4.2 * len(panels), 3.8))
    axes = fig.subplots(1, len(panels), sharey=shared, squeeze=False)[0]
    for ax, (title, lines) in zip(axes, panels.items(), strict=True):
        for label, values in lines.items():
            along = list(range(len(values))) if x is None else list(x)
            ax.plot(
                along,
                list(values),
                marker="o" if len(values) <= 20 else None,
                ms=3,
                lw=2,
                label=label,
            )
        if log_y:
            ax.set_yscale("log")
        if ylim is not None:
            ax.set_ylim(*ylim)
        ax.set_title(title, fontsize=10)
        if x is None:
            step_axis(ax, xlabel)
        else:
            ax.set_xlabel(xlabel)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    for ax, label in zip(axes, labels, strict=True):
        ax.set_ylabel(label)
    return _finish(fig, path)


def plot_robustness_curves(
    panels: Mapping[str, Mapping[str, Curves]],
    *,
    eps_label: str | None = None,
    path: str | Path | None = None,
) -> Figure:
    """Accuracy against eps: one panel per model, one curve per attack, on shared axes.

    Every report must use the same radii, in the same norm.

    Args:
        panels: Per panel title (a model), per curve label (an attack), its report.
        eps_label: The x axis label; by default the reports' norm and box
            (``"L2 radius eps (Euclidean length, input units, box [0, 1])"``).
        path: Where to save the figure, if anywhere.

    Raises:
        ValueError: ``panels`` holds no report, or the reports use different radii or
            different norms.
    """
    reports = [report for curves in panels.values() for report in curves.values()]
    if not reports:
        raise ValueError(
            "panels must hold at least one report (per panel title, per curve label, a "
            f"report), got {len(panels)} panels and no report"
        )
    radii = {report.eps for report in reports}
    if len(radii) != 1:
        raise ValueError(f"the reports must share their eps, got {sorted(radii)}")
    norms = {report.norm.name: report.norm for report in reports}
    if len(norms) != 1:
        raise ValueError(f"the reports must share their norm, got {sorted(norms)}")
    if eps_label is None:
        boxes = {report.bounds for report in reports}
        eps_label = radius_label(norms.popitem()[1], boxes.pop() if len(boxes) == 1 else None)
    series = {
        title: {
            label: [report.clean_accuracy, *(report.robust_accuracy[e] for e in report.eps)]
            for label, report in curves.items()
        }
        for title, curves in panels.items()
    }
    return plot_curves(
        series,
        x=[0.0, *radii.pop()],
        xlabel=eps_label,
        ylabel="accuracy",
        ylim=(0, 1),
        path=path,
    )


class Curves(Protocol):
    """What [`plot_report`][signattack.plots.plot_report] and
    [`plot_robustness_curves`][signattack.plots.plot_robustness_curves] read of a report (a
    [`RobustnessReport`][signattack.evaluation.RobustnessReport] has it all)."""

    @property
    def eps(self) -> tuple[float, ...]: ...

    @property
    def clean_accuracy(self) -> float: ...

    @property
    def bounds(self) -> tuple[float, float] | None: ...

    @property
    def samples(self) -> int: ...

    @property
    def robust_accuracy(self) -> dict[float, float]: ...

    @property
    def norm(self) -> Norm: ...

    def curves(self) -> dict[str, list[float]]: ...

    def radius(self, eps: float) -> str: ...


def plot_report(
    report: Curves, *, path: str | Path | None = None, note: str | None = None
) -> Figure:
    """A report's accuracy against the radius, as a figure for a paper: one curve per attack
    when several ran (the accuracy after it and the ones before), the clean accuracy marked,
    radii in the user's units and the report's norm (``8/255`` on a ``[0, 1]`` box under
    L-inf, a decimal under L2) with the axis named by the norm (``L-inf radius eps``,
    ``L2 radius eps``), accuracy in percent.

    Args:
        report: The evaluation's report.
        path: Where to save the figure, if anywhere.
        note: A warning shown in red above the axes, wrapped to the figure's width (a
            report on synthetic stand-in data says so there).
    """
    import textwrap

    from matplotlib.ticker import PercentFormatter

    fig = _new_figure((5, 3.6))
    ax = fig.add_subplot()
    curves = report.curves()
    for index, (name, accuracy) in enumerate(curves.items()):
        last = index == len(curves) - 1
        ax.plot(
            [0.0, *report.eps],
            [report.clean_accuracy, *accuracy],
            marker="o",
            lw=2.2 if last else 1.2,
            alpha=1.0 if last else 0.6,
            label=f"after {name}" if len(curves) > 1 else name,
        )
    ax.axhline(report.clean_accuracy, color="gray", ls="--", lw=1)
    ax.annotate(
        f"clean {report.clean_accuracy:.1%}",
        (report.eps[-1], report.clean_accuracy),
        xytext=(0, -12),
        textcoords="offset points",
        ha="right",
        fontsize=8,
        color="gray",
    )
    ticks = [report.radius(e) for e in report.eps]
    ax.set_xticks([0.0, *report.eps], ["0", *ticks])
    ax.set_xlabel(radius_label(report.norm, report.bounds, ticks))
    ax.set_ylabel(f"accuracy ({report.samples} samples)")
    ax.set_ylim(0, 1.02)
    ax.yaxis.set_major_formatter(PercentFormatter(1.0))
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower left")
    if note is not None:
        fig.suptitle(textwrap.fill(note, 60), color="red", fontsize=9)
    if path is not None:
        fig.savefig(path, dpi=150)
    return fig
