"""The result of an evaluation: :class:`RobustnessReport`, with its table, files and plot."""

from __future__ import annotations

import csv
import io
import json
import textwrap
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn

from signattack._io import Json, finite_nonnegative, text_table, write_atomically

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = ["RobustnessReport"]

REPORT_FORMAT = 1
"""The version of :meth:`RobustnessReport.to_dict`'s layout."""


@dataclass(frozen=True)
class RobustnessReport:
    """Clean and robust accuracy of a model over a dataset, per sample and in total.

    Attributes:
        eps: The radii, increasing.
        attack: A description of the attack.
        clean_correct: Per sample: classified correctly without attack.
        robust_correct: Per eps, per sample: still classified correctly under the attack.
        max_perturbation: Per eps, the largest ``|x_adv - x|_inf`` the attack actually
            produced; above eps would mean a broken threat model.
        attacked: Per eps, how many samples were attacked (the others were already broken).
        broken_by: Per eps, per attack in the order they ran, how many samples it broke.
        warnings: Signs of gradient masking on the first batch
            (:func:`~signattack.probes.check_gradients`), each saying what to do: with any,
            every robust accuracy here may be an overestimate.
    """

    eps: tuple[float, ...]
    attack: str
    clean_correct: tuple[bool, ...]
    robust_correct: dict[float, tuple[bool, ...]]
    max_perturbation: dict[float, float]
    attacked: dict[float, int]
    broken_by: dict[float, dict[str, int]] = field(default_factory=dict)
    warnings: tuple[str, ...] = ()

    @property
    def samples(self) -> int:
        """Number of samples evaluated."""
        return len(self.clean_correct)

    @property
    def clean_accuracy(self) -> float:
        """Share of samples classified correctly without attack."""
        return sum(self.clean_correct) / self.samples

    @property
    def robust_accuracy(self) -> dict[float, float]:
        """Per eps, the share of samples classified correctly under the attack."""
        return {e: sum(correct) / self.samples for e, correct in self.robust_correct.items()}

    def table(self) -> str:
        """Accuracy against eps as aligned text."""
        several = any(len(counts) > 1 for counts in self.broken_by.values())
        header = ["eps", "accuracy", "max |d|", "attacked"] + (["broken by"] if several else [])
        rows = [["clean", f"{self.clean_accuracy:.2%}", "", ""] + ([""] if several else [])]
        for eps in self.eps:
            row = [
                f"{eps:g}",
                f"{self.robust_accuracy[eps]:.2%}",
                f"{self.max_perturbation[eps]:.4g}",
                f"{self.attacked[eps]}",
            ]
            if several:
                row.append(", ".join(f"{n} {c}" for n, c in self.broken_by[eps].items()))
            rows.append(row)
        lines = text_table(header, rows, left={4})
        return "\n".join([*lines, *(f"warning: {text}" for text in self.warnings)])

    def to_dict(self) -> dict[str, Json]:
        """Everything, JSON-ready (eps keys as strings)."""
        return {
            "format": REPORT_FORMAT,
            "attack": self.attack,
            "samples": self.samples,
            "eps": list(self.eps),
            "clean_accuracy": self.clean_accuracy,
            "robust_accuracy": {str(e): a for e, a in self.robust_accuracy.items()},
            "max_perturbation": {str(e): m for e, m in self.max_perturbation.items()},
            "attacked": {str(e): n for e, n in self.attacked.items()},
            "clean_correct": list(self.clean_correct),
            "robust_correct": {str(e): list(c) for e, c in self.robust_correct.items()},
            "broken_by": {str(e): dict(counts) for e, counts in self.broken_by.items()},
            "warnings": list(self.warnings),
        }

    def to_json(self) -> str:
        """:meth:`to_dict` as a JSON document."""
        return json.dumps(self.to_dict(), indent=2) + "\n"

    def to_csv(self) -> str:
        """One row per sample: index, clean correctness, correctness at each eps."""
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        header = ["sample", "clean", *[f"eps={e:g}" for e in self.eps]]
        writer.writerow(header)
        for index, clean in enumerate(self.clean_correct):
            row = [index, int(clean), *[int(self.robust_correct[e][index]) for e in self.eps]]
            writer.writerow(row)
        return buffer.getvalue()

    @classmethod
    def from_dict(cls, data: Json) -> RobustnessReport:
        """The report that :meth:`to_dict` wrote.

        Raises:
            ValueError: ``data`` is not such a report: a key is missing, a value has the
                wrong type, or the per-sample lists differ in length.
        """
        try:
            if not isinstance(data, dict):
                raise ValueError(f"expected a dict, got {type(data).__name__}")
            eps = tuple(_real(value) for value in _entries(_member(data, "eps")))
            clean_correct = _member(data, "clean_correct")
            samples = len(_entries(clean_correct))
            attack = _member(data, "attack")
            robust = _mapping(_member(data, "robust_correct"))
            largest = _mapping(_member(data, "max_perturbation"))
            attacked = _mapping(_member(data, "attacked"))
            broken_by = _mapping(data.get("broken_by", {}))
            report = cls(
                eps=eps,
                attack=attack if isinstance(attack, str) else _wrong("a string for attack", attack),
                clean_correct=_flags(clean_correct, samples),
                robust_correct={e: _flags(_member(robust, str(e)), samples) for e in eps},
                max_perturbation={e: _real(_member(largest, str(e))) for e in eps},
                attacked={e: _count(_member(attacked, str(e))) for e in eps},
                broken_by={
                    e: {name: _count(n) for name, n in _mapping(broken_by[str(e)]).items()}
                    for e in eps
                    if str(e) in broken_by
                },
                warnings=tuple(_sentence(text) for text in _entries(data.get("warnings", []))),
            )
        except ValueError as error:
            raise ValueError(f"data is not a RobustnessReport dictionary: {error}") from None
        if not eps or not samples:
            raise ValueError("data is not a RobustnessReport dictionary: no eps or no samples")
        return report

    def save(self, path: str | Path) -> Path:
        """Write the report as ``.json`` or ``.csv`` (by suffix), atomically: an existing file
        is replaced only by a complete report."""
        path = Path(path)
        text = self.to_csv() if path.suffix == ".csv" else self.to_json()
        write_atomically(path, text.encode())
        return path

    def plot(self, path: str | Path | None = None) -> Figure:
        """Accuracy against eps (needs matplotlib); returns the figure, saved to ``path``."""
        from matplotlib.figure import Figure

        fig = Figure(figsize=(6, 4), layout="constrained")
        ax = fig.add_subplot()
        radii = [0.0, *self.eps]
        accuracy = [self.clean_accuracy, *[self.robust_accuracy[e] for e in self.eps]]
        ax.plot(radii, accuracy, marker="o", lw=2)
        ax.set_xlabel("eps (input units)")
        ax.set_ylabel("accuracy")
        ax.set_ylim(0, 1)
        # The attack's description can be long: wrap it rather than cut it at both sides.
        ax.set_title("\n".join(textwrap.wrap(self.attack, 60)), fontsize=9)
        ax.grid(alpha=0.3)
        if path is not None:
            fig.savefig(path, dpi=120)
        return fig


def _member(data: dict[str, Json], key: str) -> Json:
    if key not in data:
        raise ValueError(f"missing key {key!r}")
    return data[key]


def _wrong(expected: str, value: Json) -> NoReturn:
    raise ValueError(f"expected {expected}, got {type(value).__name__}")


def _entries(value: Json) -> list[Json]:
    return value if isinstance(value, list) else _wrong("a list", value)


def _mapping(value: Json) -> dict[str, Json]:
    return value if isinstance(value, dict) else _wrong("a dict", value)


def _real(value: Json) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        _wrong("a number", value)
    number = finite_nonnegative(value)
    if number is None:
        too_large = isinstance(value, int) and value > 0
        shown = "an integer too large" if too_large else repr(value)
        raise ValueError(f"expected a finite number >= 0, got {shown}")
    return number


def _count(value: Json) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        _wrong("a count >= 0", value)
    return value


def _sentence(value: Json) -> str:
    return value if isinstance(value, str) else _wrong("a string for each warning", value)


def _flags(values: Json, samples: int) -> tuple[bool, ...]:
    if not isinstance(values, list) or len(values) != samples:
        raise ValueError(f"per-sample results must be lists of {samples} entries")
    flags = tuple(value for value in values if isinstance(value, bool))
    if len(flags) != samples:
        raise ValueError("per-sample results must hold true/false values")
    return flags
