"""The adversarial examples of an evaluation, exported and verified.

RobustBench's external evaluations ask for the adversarial examples as one array of the
test set's size, and re-evaluating a saved ``x_adv`` is where a number is found not to
reproduce (the model's mode, randomness). :func:`~signattack.evaluation.evaluate` with
``adversarial=`` writes, per radius, the point that decided each sample (the adversarial
point where an attack broke it, at that radius or a smaller one; the clean input where none
did) with the clean inputs, the labels and the report; :func:`verify` evaluates the model
there again and says whether it gives the report's numbers, and whether every point lies in
its ball and the box.

The file is a NumPy ``.npz`` (any framework), or a ``.pt`` dictionary of tensors for
``torch.load``: ``x`` (clean inputs), ``y`` (labels), ``eps`` (the radii), ``x_adv_<i>``
(the points at radius ``eps[i]``, in the inputs' dtype) and ``report`` (the report's JSON).
"""

from __future__ import annotations

import io
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from signattack._host import (
    HostArray,
    largest_difference,
    npz_bytes,
    read_npz,
    read_tensors,
    to_flags,
    to_values,
    within,
)
from signattack._io import parse, write_atomically
from signattack._typing import Array, is_array
from signattack.core.threat import MODEL_MODES, ModelMode, ThreatModel
from signattack.evaluation.report import RobustnessReport, radius_text

__all__ = ["Adversarial", "Verification", "load_adversarial", "verify"]

_SUFFIXES = (".npz", ".pt")


def check_path(path: str | Path) -> Path:
    """``path`` as a file to write the adversarial examples to.

    Raises:
        ValueError: It does not end in ``.npz`` or ``.pt``, or names a folder.
    """
    chosen = Path(path)
    if chosen.suffix not in _SUFFIXES:
        raise ValueError(
            f"adversarial must be a .npz or .pt file, got {str(chosen)!r}: .npz for any "
            "framework, .pt for torch.load"
        )
    if chosen.is_dir():
        raise ValueError(f"adversarial must be a file, got the folder {str(chosen)!r}")
    return chosen


class Collected:
    """The points of every batch at every radius, in order, kept on the host."""

    def __init__(self, radii: int) -> None:
        self.clean: list[HostArray] = []
        self.labels: list[HostArray] = []
        self.points: list[list[HostArray]] = [[] for _ in range(radii)]

    def add(self, x: HostArray, y: HostArray, points: list[HostArray]) -> None:
        self.clean.append(x)
        self.labels.append(y)
        for kept, batch in zip(self.points, points, strict=True):
            kept.append(batch)

    def save(self, path: Path, report: RobustnessReport) -> Path:
        """Write everything to ``path`` atomically."""
        arrays: dict[str, HostArray] = {
            "x": np.concatenate(self.clean),
            "y": np.concatenate(self.labels),
            "eps": np.asarray(report.eps, dtype=np.float64),
        }
        for index, points in enumerate(self.points):
            arrays[f"x_adv_{index}"] = np.concatenate(points)
        if path.suffix == ".pt":
            import torch

            tensors: dict[str, object] = {k: torch.from_numpy(v) for k, v in arrays.items()}
            tensors["report"] = report.to_json()
            buffer = io.BytesIO()
            torch.save(tensors, buffer)
            data = buffer.getvalue()
        else:
            data = npz_bytes({**arrays, "report": np.asarray(report.to_json())}, compressed=True)
        write_atomically(path, data)
        return path


@dataclass(frozen=True)
class Adversarial:
    """A file of adversarial examples, read.

    Attributes:
        x: The clean inputs.
        y: The labels.
        points: Per radius, the points that decided each sample.
        report: The report of the evaluation that wrote them.
    """

    x: HostArray
    y: HostArray
    points: dict[float, HostArray]
    report: RobustnessReport


def load_adversarial(path: str | Path) -> Adversarial:
    """The adversarial examples that an evaluation wrote to ``path``.

    Raises:
        ValueError: The file is missing, is not such a file, or its parts disagree.
    """
    source = Path(path)
    if not source.is_file():
        raise ValueError(f"adversarial {str(source)!r} must be a file written by evaluate")
    try:
        arrays, text = _read(source)
        report = RobustnessReport.from_dict(parse(text))
        eps = [float(e) for e in to_values(arrays["eps"])]
        points = {e: arrays[f"x_adv_{i}"] for i, e in enumerate(eps)}
        x, y = arrays["x"], arrays["y"]
    except (KeyError, OSError, ValueError, TypeError, RuntimeError) as error:
        raise ValueError(
            f"adversarial {str(source)!r} is not a file of adversarial examples written by "
            f"evaluate ({type(error).__name__}: {str(error)[:200]})"
        ) from None
    if tuple(eps) != report.eps or any(p.shape != x.shape for p in points.values()):
        raise ValueError(f"adversarial {str(source)!r} is damaged: its radii or shapes disagree")
    if len(y) != report.samples or len(x) != report.samples:
        raise ValueError(f"adversarial {str(source)!r} is damaged: not one entry per sample")
    return Adversarial(x, y, points, report)


@dataclass(frozen=True)
class Verification:
    """What evaluating the model again at saved adversarial examples found.

    Attributes:
        robust_accuracy: Per radius, the accuracy at the saved points.
        reported: Per radius, the report's robust accuracy.
        largest: Per radius, the largest ``|x_adv - x|_inf`` of the saved points.
        inside: Per radius, whether every point lies in its ball and the box.
        bounds: The box the evaluation recorded, if it recorded one.
    """

    robust_accuracy: dict[float, float]
    reported: dict[float, float]
    largest: dict[float, float]
    inside: dict[float, bool]
    bounds: tuple[float, float] | None

    @property
    def reproduced(self) -> bool:
        """Whether the model gives the report's numbers there and every point is valid."""
        return all(self.inside.values()) and all(
            self.robust_accuracy[e] == self.reported[e] for e in self.reported
        )

    def summary(self) -> str:
        """One line per radius, and the verdict."""
        lines = []
        for eps, accuracy in self.robust_accuracy.items():
            radius = radius_text(eps, self.bounds)
            same = "the same as" if accuracy == self.reported[eps] else "NOT the"
            valid = "all within" if self.inside[eps] else "NOT all within"
            moved = radius_text(self.largest[eps], self.bounds)
            lines.append(
                f"eps {radius}: {accuracy:.2%} robust at the saved points, {same} reported "
                f"{self.reported[eps]:.2%}; largest |d| {moved}, {valid} the ball and the box"
            )
        if self.reproduced:
            lines.append("verified: the saved adversarial examples give the reported numbers")
        else:
            lines.append("NOT verified: the saved adversarial examples do not give them")
        return "\n".join(lines)


def _mode(recorded: object) -> ModelMode:
    """The model mode a report recorded (``eval`` where it recorded none)."""
    for mode in MODEL_MODES:
        if recorded == mode:
            return mode
    return "eval"


def _read(source: Path) -> tuple[dict[str, HostArray], str]:
    """The arrays and the report's JSON text of an export."""
    if source.suffix == ".pt":
        stored = read_tensors(source)
        text = stored.pop("report")
        arrays = {key: value for key, value in stored.items() if not isinstance(value, str)}
    else:
        arrays = read_npz(source)
        text = str(arrays.pop("report"))
    if not isinstance(text, str):
        raise TypeError("the report must be JSON text")
    return arrays, text


def verify(model: object, path: str | Path, *, batch_size: int = 256) -> Verification:
    """Evaluate ``model`` again at the adversarial examples of ``path`` and compare.

    The model runs as the evaluation ran it: its recorded mode (``eval`` by default), the
    same backend and checks (inputs in the box, labels classes of the model). A randomized
    model gives other predictions on every pass and cannot reproduce a number exactly.
    Inputs go to the model as the arrays the file holds (NumPy), or as tensors on its
    device for a ``torch.nn.Module``.

    Raises:
        ValueError: The file is not a file of adversarial examples.
    """
    saved = load_adversarial(path)
    report = saved.report
    bounds = report.bounds
    mode = report.metadata.get("model_mode", "eval")
    threat = None if bounds is None else ThreatModel(bounds, "ce", _mode(mode))
    robust: dict[float, float] = {}
    largest: dict[float, float] = {}
    inside: dict[float, bool] = {}
    for eps, points in saved.points.items():
        largest[eps] = largest_difference(points, saved.x)
        in_box = bounds is None or within(points, *bounds)
        slack = 1e-6 * max(abs(eps), 1.0) if np.issubdtype(points.dtype, np.floating) else 0.0
        inside[eps] = in_box and largest[eps] <= eps + slack
        correct = _predict(model, points, saved.y, batch_size, threat)
        robust[eps] = correct / len(saved.y)
    reported = {e: report.robust_accuracy[e] for e in report.eps}
    return Verification(robust, reported, largest, inside, bounds)


def _predict(
    model: object, x: HostArray, y: HostArray, size: int, threat: ThreatModel | None
) -> int:
    """How many of ``x`` the model classifies as ``y``, batch by batch, run as the attacks
    run it (the same backend, mode and checks as the evaluation's clean pass)."""
    from signattack.evaluation.sweep import clean_predictions

    correct = 0
    for start in range(0, len(y), size):
        inputs, labels = (_for(model, a[start : start + size]) for a in (x, y))
        predictions, checked = clean_predictions(model, inputs, labels, threat)
        correct += sum(to_flags(predictions == checked))
    return correct


def _for(model: object, array: HostArray) -> Array:
    """``array`` as the model takes it: a tensor on its device for a torch module, else the
    NumPy array."""
    taken: object = array
    if "torch" in sys.modules:
        import torch

        if isinstance(model, torch.nn.Module):
            parameter = next(model.parameters(), None)
            device = torch.device("cpu") if parameter is None else parameter.device
            taken = torch.from_numpy(np.ascontiguousarray(array)).to(device)
    if not is_array(taken):  # pragma: no cover - NumPy arrays and tensors are arrays
        raise TypeError(f"expected an array, got {type(taken).__name__}")
    return taken


def store_points(parts: Path, index: int, digest: str, points: list[HostArray]) -> None:
    """Keep one batch's points beside the export, for a resumed run."""
    arrays = {f"point_{i}": point for i, point in enumerate(points)}
    write_atomically(parts / f"{index}.npz", npz_bytes({**arrays, "digest": np.asarray(digest)}))


def stored_points(parts: Path | None, index: int, digest: str) -> list[HostArray] | None:
    """The points a checkpointed batch kept, or ``None`` where nothing is exported.

    Raises:
        ValueError: The batch finished in an earlier run without its points.
    """
    if parts is None:
        return None
    part = parts / f"{index}.npz"
    try:
        stored = read_npz(part)
        if str(stored.pop("digest")) != digest:
            raise ValueError("digest")
        return [stored[f"point_{i}"] for i in range(len(stored))]
    except (OSError, KeyError, ValueError):
        raise ValueError(
            f"batch {index} finished in an earlier run whose adversarial examples are not in "
            f"{parts}: resume without adversarial=, or start afresh with a new checkpoint"
        ) from None
