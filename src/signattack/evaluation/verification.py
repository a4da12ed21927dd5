"""Evaluate a model again at the adversarial examples an evaluation exported:
[`verify`][signattack.evaluation.verification.verify] and what it finds,
[`Verification`][signattack.evaluation.verification.Verification]."""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass

from signattack._host import HostArray, dtype_name, from_host, to_flags
from signattack._typing import Array, is_array, namespace
from signattack.core.norms import NormName, norm_of
from signattack.core.threat import MODEL_MODES, ModelMode, ThreatModel
from signattack.core.validation import check_steps
from signattack.evaluation._units import norm_label, radius_text
from signattack.evaluation.adversarial import load_adversarial
from signattack.evaluation.report import RobustnessReport

__all__ = ["Verification", "verify"]


@dataclass(frozen=True)
class Verification:
    """What evaluating the model again at saved adversarial examples found.

    Attributes:
        robust_accuracy: Per radius, the accuracy at the saved points.
        reported: Per radius, the report's robust accuracy.
        largest: Per radius, the largest ``||x_adv - x||`` of the saved points, in
            [`norm`][signattack.evaluation.RobustnessReport.norm].
        inside: Per radius, whether every point lies in its ball (in
            [`norm`][signattack.evaluation.RobustnessReport.norm]) and the box.
        bounds: The box the evaluation recorded, if it recorded one.
        problems: Where the report's own evidence disagrees with the saved points or with
            itself (a largest perturbation below what the points show, counts of attacked and broken
            samples that do not add up); empty when it agrees.
        norm: The norm of the balls, as the export records it (``"linf"`` where it
            records none).
    """

    robust_accuracy: dict[float, float]
    reported: dict[float, float]
    largest: dict[float, float]
    inside: dict[float, bool]
    bounds: tuple[float, float] | None
    problems: tuple[str, ...] = ()
    norm: NormName = "linf"

    @property
    def reproduced(self) -> bool:
        """Whether the model gives the report's numbers there, every point is valid and the
        report's evidence agrees with the points."""
        return (
            not self.problems
            and all(self.inside.values())
            and all(self.robust_accuracy[e] == self.reported[e] for e in self.reported)
        )

    def summary(self) -> str:
        """One line per radius, and the verdict."""
        lines = []
        norm = norm_of(self.norm)
        ball = "the ball" if norm.name == "linf" else f"the {norm.title} ball"
        for eps, accuracy in self.robust_accuracy.items():
            radius = radius_text(eps, self.bounds, norm)
            same = "the same as" if accuracy == self.reported[eps] else "NOT the"
            valid = "all within" if self.inside[eps] else "NOT all within"
            region = f"{ball} and the box" if self.bounds is not None else f"{ball} (no box)"
            moved = radius_text(self.largest[eps], self.bounds, norm)
            lines.append(
                f"eps {radius}: {accuracy:.2%} robust at the saved points, {same} reported "
                f"{self.reported[eps]:.2%}; largest {norm_label(norm)} {moved}, {valid} "
                f"{region}"
            )
        lines.extend(f"NOT consistent: {problem}" for problem in self.problems)
        if self.reproduced:
            lines.append("verified: the saved adversarial examples give the reported numbers")
        else:
            lines.append("NOT verified: the saved adversarial examples do not give them")
        return "\n".join(lines)


def verify(model: object, path: str | os.PathLike[str], *, batch_size: int = 256) -> Verification:
    """Evaluate ``model`` again at the adversarial examples of ``path`` and compare.

    The model runs as the evaluation ran it: its recorded mode (``eval`` by default), the same
    backend and checks (inputs in the box, labels classes of the model), inputs of the recorded
    library and dtype (``bfloat16`` included): tensors on its device for a ``torch.nn.Module``. A
    randomized model gives other predictions on every pass and cannot reproduce a number exactly.
    Whether a point lies in its ball (in the norm the export records, L-inf for a file that records
    none) and the box is judged as the evaluation judged the attacks' points
    ([`within`][signattack.core.norms.Norm.within]): under L-inf ``|x_adv - x| <= eps`` computed in
    ``float16`` for ``float16`` inputs, in whole levels for integer images.

    Raises:
        TypeError: ``path`` is not a path, or ``batch_size`` is not an int.
        ValueError: The file is not a file of adversarial examples, ``batch_size < 1``, or
            the inputs' dtype has no counterpart in the model's library.
    """
    from signattack.evaluation._judging import inside_ball, moves_of

    size = check_steps(batch_size, "batch_size")
    saved = load_adversarial(path)
    report = saved.report
    norm = norm_of(saved.norm)
    bounds = report.bounds
    mode = report.metadata.get("model_mode", "eval")
    threat = None if bounds is None else ThreatModel(bounds, "ce", _mode(mode), norm)
    recorded = report.metadata.get("decision_draws", 1)
    draws = recorded if isinstance(recorded, int) and not isinstance(recorded, bool) else 1
    library, device = _library(model, saved.library)
    robust: dict[float, float] = {}
    disagree: list[str] = []
    largest: dict[float, float] = {}
    inside: dict[float, bool] = {}
    for eps, points in saved.points.items():
        largest[eps] = max(moves_of(points, saved.x, norm), default=0.0)
        inside[eps] = True
        flags: list[bool] = []
        for start in range(0, len(saved.y), size):
            part = slice(start, start + size)
            x, at, y = (
                _as_input(a[part], library, dtype, device)
                for a, dtype in (
                    (saved.x, saved.dtype),
                    (points, saved.dtype),
                    (saved.y, dtype_name(saved.y)),
                )
            )
            valid = all(inside_ball(at, x, eps, norm, bounds))
            inside[eps] = inside[eps] and valid
            if not valid and bounds is not None:  # judged, and counted where the model can run
                at = namespace(at).clip(at, bounds[0], bounds[1])
            flags += _correct(model, at, y, threat, max(draws, 1))
        robust[eps] = sum(flags) / len(saved.y)
        stated = report.robust_correct[eps]
        differ = [i for i, (a, b) in enumerate(zip(flags, stated, strict=True)) if a != b]
        if differ:
            disagree.append(
                f"eps {eps:g}: the model's verdicts at the saved points differ from the report's "
                f"for {len(differ)} samples (the first: {differ[:5]})"
            )
    reported = {e: report.robust_accuracy[e] for e in report.eps}
    problems = tuple(disagree) + _disagreements(report, largest)
    return Verification(robust, reported, largest, inside, bounds, problems, norm.name)


def _disagreements(report: RobustnessReport, largest: Mapping[float, float]) -> tuple[str, ...]:
    """Where a report's evidence disagrees with the saved points or with itself.

    The saved points are those that decided each sample (at that radius or a smaller one),
    so the largest perturbation they show can be below the report's largest up to that
    radius (which also counts attacked points that did not fool the model), never above
    it. Each radius attacks the samples robust at the radius before (the clean ones at the
    first), and each broken sample is counted by one attack.
    """
    found = []
    robust_before = sum(report.clean_correct)
    moved = 0.0  # a sample broken at a smaller radius keeps that radius's point
    for eps in report.eps:
        moved = max(moved, report.max_perturbation[eps])
        shown = largest[eps]
        if shown > moved * (1 + 2.0**-20) + 1e-12:
            points, stated = _distinct(shown, moved)
            found.append(
                f"eps {eps:g}: the points move an input by {points}, the report says at most "
                f"{stated}"
            )
        robust = sum(report.robust_correct[eps])
        broken = sum(report.broken_by.get(eps, {}).values())
        if report.attacked[eps] != robust_before or (
            report.broken_by.get(eps) and broken != robust_before - robust
        ):
            found.append(
                f"eps {eps:g}: the report attacked {report.attacked[eps]} samples and its "
                f"attacks broke {broken}, but {robust_before} were robust before and {robust} "
                "after"
            )
        robust_before = robust
    return tuple(found)


def _distinct(first: float, second: float) -> tuple[str, str]:
    """Two different numbers written with the fewest of 6, 10 or 17 significant digits
    that tell them apart (``127.50013`` and ``127.5``, never ``127.5`` and ``127.5``)."""
    for digits in (6, 10, 17):
        shown = f"{first:.{digits}g}", f"{second:.{digits}g}"
        if shown[0] != shown[1]:
            return shown
    return repr(first), repr(second)


def _mode(recorded: object) -> ModelMode:
    """The model mode a report recorded (``eval`` where it recorded none)."""
    for mode in MODEL_MODES:
        if recorded == mode:
            return mode
    return "eval"


def _library(model: object, recorded: str) -> tuple[str, object]:
    """The library whose arrays the model takes, and the device for torch: a module's own;
    else the library the evaluation ran in, where it is installed."""
    import importlib.util

    if recorded == "torch" or "torch" in sys.modules:
        import torch

        if isinstance(model, torch.nn.Module):
            parameter = next(model.parameters(), None)
            return "torch", torch.device("cpu") if parameter is None else parameter.device
    if recorded != "numpy" and importlib.util.find_spec(recorded) is not None:
        return recorded, None
    return "numpy", None


def _as_input(array: HostArray, library: str, dtype: str, device: object) -> Array:
    """A host array as the model takes it, in the evaluation's dtype."""
    try:
        taken: object = from_host(array, library, dtype, device)
    except ValueError as error:
        raise ValueError(
            f"{error}: these adversarial examples are re-evaluated in {dtype}; verify them "
            "with a torch or JAX model"
        ) from None
    if not is_array(taken):  # pragma: no cover - NumPy arrays and tensors are arrays
        raise TypeError(f"expected an array, got {type(taken).__name__}")
    return taken


def _correct(
    model: object, x: Array, y: Array, threat: ThreatModel | None, draws: int
) -> list[bool]:
    """Per sample, whether the model classifies ``x`` as ``y``, run as the attacks run it
    (the same backend, mode and checks as the evaluation's clean pass), each decided on the
    mean logits of ``draws`` passes, the evaluation's decision rule."""
    from signattack.evaluation._judging import clean_predictions

    predictions, checked = clean_predictions(model, x, y, threat, draws=draws)
    return to_flags(predictions == checked)
