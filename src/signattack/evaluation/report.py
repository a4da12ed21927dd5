"""The result of an evaluation: :class:`RobustnessReport`, with its table, files and plot."""

from __future__ import annotations

import csv
import io
import json
import math
import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn

from signattack._io import Json, finite_nonnegative, text_table, write_atomically

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = ["RobustnessReport"]

REPORT_FORMAT = 2
"""The version of :meth:`RobustnessReport.to_dict`'s layout (1 had no ``metadata``)."""

LEVELS = 255
"""Pixel levels of an 8-bit image: a radius of a ``[0, 1]`` box is shown as ``k/255``."""


def radius_text(eps: float, bounds: tuple[float, float] | None) -> str:
    """``eps`` as its user thinks of it: ``8/255`` for a box of width one where ``eps`` is a
    whole number of 8-bit levels, else ``8`` or ``0.03``."""
    if bounds is not None and math.isclose(bounds[1] - bounds[0], 1.0) and eps > 0:
        levels = eps * LEVELS
        if math.isclose(levels, round(levels), rel_tol=1e-6):
            return f"{round(levels)}/{LEVELS}"
    return f"{eps:g}"


def wilson_interval(successes: int, trials: int, level: float = 0.95) -> tuple[float, float]:
    """The Wilson score interval of a proportion: ``successes`` of ``trials`` at confidence
    ``level``. Unlike the normal approximation, it stays inside ``[0, 1]`` and is honest at
    0% and 100%."""
    if trials <= 0:
        raise ValueError(f"trials must be >= 1, got {trials}")
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1), got {level!r}")
    z = statistics.NormalDist().inv_cdf(0.5 + level / 2)
    share = successes / trials
    middle = (share + z * z / (2 * trials)) / (1 + z * z / trials)
    half = z * math.sqrt(share * (1 - share) / trials + z * z / (4 * trials * trials))
    half /= 1 + z * z / trials
    # At 0% and 100% the end is exactly 0 or 1; rounding would leave it a hair inside.
    low = 0.0 if successes == 0 else max(0.0, middle - half)
    high = 1.0 if successes == trials else min(1.0, middle + half)
    return low, high


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
        metadata: What was evaluated and how, for a reader of the numbers: the library and
            framework versions, the model, the data (samples, batches, a digest), the box,
            each attack's settings and seed, the device, the wall time, the batches taken
            from a checkpoint. Not compared: two runs of one evaluation are equal reports.
    """

    eps: tuple[float, ...]
    attack: str
    clean_correct: tuple[bool, ...]
    robust_correct: dict[float, tuple[bool, ...]]
    max_perturbation: dict[float, float]
    attacked: dict[float, int]
    broken_by: dict[float, dict[str, int]] = field(default_factory=dict)
    warnings: tuple[str, ...] = ()
    metadata: dict[str, Json] = field(default_factory=dict, compare=False)

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

    @property
    def bounds(self) -> tuple[float, float] | None:
        """The box the inputs lived in, where the metadata records one."""
        box = self.metadata.get("bounds")
        if isinstance(box, list) and len(box) == 2:
            lower, upper = box
            if isinstance(lower, (int, float)) and isinstance(upper, (int, float)):
                return float(lower), float(upper)
        return None

    def interval(self, eps: float | None = None, level: float = 0.95) -> tuple[float, float]:
        """The Wilson confidence interval of the robust accuracy at ``eps`` (of the clean
        accuracy for ``None``) over the :attr:`samples`: how far another draw of as many
        test samples could move it.

        Raises:
            ValueError: ``eps`` is not one of the report's radii, or ``level`` not in (0, 1).
        """
        if eps is None:
            return wilson_interval(sum(self.clean_correct), self.samples, level)
        if eps not in self.robust_correct:
            raise ValueError(f"eps must be one of the report's radii {list(self.eps)}, got {eps!r}")
        return wilson_interval(sum(self.robust_correct[eps]), self.samples, level)

    def radius(self, eps: float) -> str:
        """``eps`` in its user's units (``8/255`` on a ``[0, 1]`` box)."""
        return radius_text(eps, self.bounds)

    def _rows(self, level: float) -> list[list[str]]:
        """The summary: per line, the radius, accuracy, its interval, the largest move, the
        samples attacked and what broke them (``-`` where nothing was left to attack)."""
        several = any(len(counts) > 1 for counts in self.broken_by.values())
        low, high = self.interval(None, level)
        rows = [["clean", f"{self.clean_accuracy:.2%}", _span(low, high), "", ""]]
        for eps in self.eps:
            low, high = self.interval(eps, level)
            idle = self.attacked[eps] == 0
            row = [
                self.radius(eps),
                f"{self.robust_accuracy[eps]:.2%}",
                _span(low, high),
                "-" if idle else self.radius(self.max_perturbation[eps]),
                f"{self.attacked[eps]}",
            ]
            if several:
                row.append(", ".join(f"{n} {c}" for n, c in self.broken_by[eps].items()))
            rows.append(row)
        if several:
            rows[0].append("")
        return rows

    def _header(self, level: float) -> list[str]:
        several = any(len(counts) > 1 for counts in self.broken_by.values())
        ci = f"{level:.0%} CI"
        return ["eps", "accuracy", ci, "max |d|", "attacked"] + (["broken by"] if several else [])

    def table(self, level: float = 0.95) -> str:
        """Accuracy against eps as aligned text, with confidence intervals, then the attacks
        once and any warnings."""
        lines = text_table(self._header(level), self._rows(level), left={0, 5})
        return "\n".join([*lines, *self._notes()])

    def _notes(self) -> list[str]:
        notes = [f"attacks: {self.attack}"] if self.attack else []
        return notes + [f"warning: {text}" for text in self.warnings]

    def to_markdown(self, level: float = 0.95) -> str:
        """The summary as a Markdown table, to paste into a README or a notebook."""
        header = [cell.replace("|", "\\|") for cell in self._header(level)]
        rows = self._rows(level)
        lines = ["| " + " | ".join(header) + " |"]
        lines.append(
            "| " + " | ".join("---" if i in (0, 5) else "---:" for i in range(len(header))) + " |"
        )
        lines += ["| " + " | ".join(row) + " |" for row in rows]
        return "\n".join(lines) + "\n"

    def to_latex(self, level: float = 0.95) -> str:
        """The summary as a LaTeX ``tabular`` (booktabs rules), to paste into a paper."""
        header, rows = self._header(level), self._rows(level)
        columns = "l" + "r" * (len(header) - 1) if len(header) < 6 else "lrrrrl"
        escaped = [[_latex(cell) for cell in row] for row in [header, *rows]]
        body = [" & ".join(row) + r" \\" for row in escaped]
        return (
            "\n".join(
                [
                    rf"\begin{{tabular}}{{{columns}}}",
                    r"\toprule",
                    body[0],
                    r"\midrule",
                    *body[1:],
                    r"\bottomrule",
                    r"\end{tabular}",
                ]
            )
            + "\n"
        )

    def to_summary_csv(self, level: float = 0.95) -> str:
        """One row per radius (and one for clean): accuracy, its interval's ends, the
        largest perturbation, the samples attacked, and one column per attack of the samples
        it broke."""
        names = list(dict.fromkeys(n for counts in self.broken_by.values() for n in counts))
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(
            ["eps", "eps_shown", "accuracy", "ci_low", "ci_high", "max_perturbation", "attacked"]
            + [f"broken_by:{name}" for name in names]
        )
        low, high = self.interval(None, level)
        writer.writerow(["0", "clean", self.clean_accuracy, low, high, "", ""] + [""] * len(names))
        for eps in self.eps:
            low, high = self.interval(eps, level)
            counts = self.broken_by.get(eps, {})
            writer.writerow(
                [
                    repr(eps),
                    self.radius(eps),
                    self.robust_accuracy[eps],
                    low,
                    high,
                    self.max_perturbation[eps],
                    self.attacked[eps],
                ]
                + [counts.get(name, 0) for name in names]
            )
        return buffer.getvalue()

    def to_robustbench(self, eps: float | None = None) -> dict[str, Json]:
        """The entry RobustBench's model cards hold (``clean_acc``, ``autoattack_acc``,
        ``eps`` as ``"8/255"``, ``n_examples``), at ``eps`` (by default the largest radius),
        honestly named: a signattack evaluation checked against AutoAttack, not AutoAttack's
        own code.

        Raises:
            ValueError: ``eps`` is not one of the report's radii.
        """
        radius = self.eps[-1] if eps is None else eps
        if radius not in self.robust_correct:
            raise ValueError(f"eps must be one of the report's radii {list(self.eps)}, got {eps!r}")
        version = self.metadata.get("signattack", "unknown")
        return {
            "clean_acc": f"{100 * self.clean_accuracy:.2f}",
            "autoattack_acc": f"{100 * self.robust_accuracy[radius]:.2f}",
            "eps": self.radius(radius),
            "n_examples": self.samples,
            "evaluation": (
                f"signattack {version}: {self.attack}; a signattack evaluation whose members "
                "are checked against the authors' AutoAttack (pyautoattack), not AutoAttack's "
                "own code"
            ),
            "attacks": self.metadata.get("attacks", []),
            "versions": {
                key: self.metadata[key]
                for key in ("signattack", "frameworks")
                if key in self.metadata
            },
        }

    def __repr__(self) -> str:
        accuracies = ", ".join(f"{self.radius(e)}: {self.robust_accuracy[e]:.1%}" for e in self.eps)
        return (
            f"RobustnessReport({self.samples} samples, clean {self.clean_accuracy:.1%}, "
            f"robust at eps {accuracies})"
        )

    def _repr_markdown_(self) -> str:
        """The table, the attacks and the warnings: what a notebook shows."""
        notes = "".join(f"\n- {note}" for note in self._notes())
        return self.to_markdown() + ("\n" + notes if notes else "")

    def to_dict(self) -> dict[str, Json]:
        """Everything, JSON-ready (eps keys as strings)."""
        return {
            "format": REPORT_FORMAT,
            "metadata": self.metadata,
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
                metadata=_mapping(data.get("metadata", {})),
            )
        except ValueError as error:
            raise ValueError(f"data is not a RobustnessReport dictionary: {error}") from None
        if not eps or not samples:
            raise ValueError("data is not a RobustnessReport dictionary: no eps or no samples")
        return report

    def save(self, path: str | Path) -> Path:
        """Write the report by suffix, atomically (an existing file is replaced only by a
        complete report): ``.json`` everything, ``.csv`` per sample, ``.md`` and ``.tex``
        the summary table."""
        path = Path(path)
        writers = {".csv": self.to_csv, ".md": self.to_markdown, ".tex": self.to_latex}
        text = writers.get(path.suffix, self.to_json)()
        write_atomically(path, text.encode())
        return path

    def curves(self) -> dict[str, list[float]]:
        """Accuracy per radius after each attack in order (the last is the robust accuracy),
        from the counts each attack broke: what :meth:`plot` draws."""
        names = list(dict.fromkeys(n for counts in self.broken_by.values() for n in counts))
        if len(names) <= 1:
            return {names[0] if names else self.attack: [self.robust_accuracy[e] for e in self.eps]}
        found: dict[str, list[float]] = {}
        broken = dict.fromkeys(self.eps, 0)
        for name in names:
            for eps in self.eps:
                broken[eps] += self.broken_by[eps].get(name, 0)
            # The samples attacked at eps were all correct before; those still correct after
            # this attack are the ones it and the attacks before it did not break.
            found[name] = [(self.attacked[e] - broken[e]) / self.samples for e in self.eps]
        return found

    def plot(self, path: str | Path | None = None) -> Figure:
        """Accuracy against the radius (needs matplotlib): one curve per attack when several
        ran (the accuracy after it and the ones before), the clean accuracy marked, radii in
        the user's units; returns the figure, saved to ``path``. See
        :func:`signattack.plots.plot_report`."""
        from signattack.plots import plot_report

        return plot_report(self, path=path)


def _span(low: float, high: float) -> str:
    return f"[{100 * low:.1f}, {100 * high:.1f}]"


def _latex(cell: str) -> str:
    return cell.replace("%", r"\%").replace("|", r"$|$").replace("_", r"\_")


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
