"""The result of an evaluation: [`RobustnessReport`][signattack.evaluation.report.RobustnessReport],
with its table, files and plot."""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn, TypeVar, cast

from signattack._fields import set_field
from signattack._io import (
    Json,
    ReadOnly,
    as_count,
    as_distance,
    as_flags,
    as_text,
    as_tuple,
    json_copy,
    write_atomically,
)
from signattack.core.norms import Norm
from signattack.evaluation._audit import check_record
from signattack.evaluation._cost import Cost, checked_cost, totals_json
from signattack.evaluation._tables import STAND_IN as STAND_IN  # its former home
from signattack.evaluation._tables import (
    cost_breakdown,
    latex_summary,
    markdown_summary,
    notebook_summary,
    per_sample_csv,
    summary_csv,
    text_summary,
    warnings_gist,
    with_stand_in,
)
from signattack.evaluation._tables import stand_in_note as stand_in_note
from signattack.evaluation._tables import wilson_interval as wilson_interval
from signattack.evaluation._units import radius_text, recorded_norm

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = ["RobustnessReport"]

T = TypeVar("T")

REPORT_FORMAT = 2
"""The version of
[`RobustnessReport.to_dict`][signattack.evaluation.report.RobustnessReport.to_dict]'s layout (1 had
no ``metadata``)."""


@dataclass(frozen=True)
class RobustnessReport:
    """Clean and robust accuracy of a model over a dataset, per sample and in total.

    Attributes:
        eps: The radii, increasing.
        attack: A description of the attack.
        clean_correct: Per sample: classified correctly without attack.
        robust_correct: Per eps, per sample: still classified correctly under the attack.
        max_perturbation: Per eps, the largest ``||x_adv - x||`` the attack actually
            produced, in the evaluation's norm
            ([`norm`][signattack.evaluation.RobustnessReport.norm]); above eps would mean a broken
            threat model.
        attacked: Per eps, how many samples were attacked (the others were already broken).
        broken_by: Per eps, per attack in the order they ran, how many samples it broke.
        warnings: Signs of gradient masking on the first batch
            ([`check_gradients`][signattack.probes.check_gradients], run when an attack asks for a
            gradient), each saying what to do: with any, every robust accuracy here may be an
            overestimate. On synthetic stand-in data (``metadata["data"]["synthetic"]``) the
            first says so (`STAND_IN`), added where not given. The repr counts them and quotes
            the first.
        metadata: What was evaluated and how, for a reader of the numbers: the library and
            framework versions, the model, the data (samples, batches, a digest), the box, whether
            the data is synthetic stand-in data (``data.synthetic``: every output then says so
            first, a CSV in a first column ``note``), the norm (``"linf"`` or ``"l2"``; a report
            without one is L-inf), each attack's settings, seed and passes per decision, the passes
            per decision of the evaluation, the device, the wall time, the batches taken from a
            checkpoint, and the model's passes in total (``passes``: forward, backward,
            forward-equivalents and those per sample; ``null`` where not known). JSON values; a
            non-finite number is kept as its text (``"nan"``). Not compared: two runs of one
            evaluation are equal reports.
        cost: The model's passes, per eps and attack (the names of ``broken_by``) and the
            evaluation's own ([`Cost`][signattack.evaluation.Cost]); ``None`` where the
            report records none (reports before passes were counted). Not compared.

    The report cannot be changed: its mappings are read-only copies of what it was given, every
    value read from `metadata` is a fresh copy, and every export is made anew.

    Raises:
        TypeError, ValueError: A field is not what it says above (the message names it):
            no sample or no radius, radii not increasing, an accuracy list of another length, a
            perturbation that is NaN, infinite or negative, a count out of range, a
            ``metadata["norm"]`` that names no norm, a cost whose radii or attack names are
            not the report's or whose counts are not ``int >= 0``.
    """

    eps: tuple[float, ...]
    attack: str
    clean_correct: tuple[bool, ...]
    robust_correct: Mapping[float, tuple[bool, ...]]
    max_perturbation: Mapping[float, float]
    attacked: Mapping[float, int]
    broken_by: Mapping[float, Mapping[str, int]] = field(default_factory=dict)
    warnings: tuple[str, ...] = ()
    metadata: Mapping[str, Json] = field(default_factory=dict, compare=False)
    cost: Cost | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        eps = tuple(as_distance("eps", value) for value in as_tuple("eps", self.eps))
        if not eps or list(eps) != sorted(set(eps)):
            raise ValueError(f"eps must hold increasing radii without repeats, got {eps!r}")
        if not isinstance(self.attack, str):
            raise TypeError(f"attack must be a str, got {type(self.attack).__name__}")
        if not isinstance(self.metadata, Mapping):
            raise TypeError(f"metadata must be a mapping, got {type(self.metadata).__name__}")
        recorded_norm(self.metadata)
        clean = as_flags("clean_correct", self.clean_correct, None)
        samples = len(clean)
        if not samples:
            raise ValueError("clean_correct must hold at least one sample, got none")
        fields: dict[str, object] = {
            "eps": eps,
            "clean_correct": clean,
            "robust_correct": _each(
                "robust_correct", self.robust_correct, eps, lambda n, v: as_flags(n, v, samples)
            ),
            "max_perturbation": _each("max_perturbation", self.max_perturbation, eps, as_distance),
            "attacked": _each("attacked", self.attacked, eps, lambda n, v: as_count(n, v, samples)),
            "broken_by": _each(
                "broken_by", self.broken_by, eps, lambda n, v: _counts(n, v, samples), some=True
            ),
            "warnings": with_stand_in(
                tuple(as_text("each warning", w) for w in as_tuple("warnings", self.warnings)),
                self.metadata,
            ),
            "metadata": ReadOnly(_mapping(json_copy(self.metadata, "metadata")), copies=True),
        }
        broken_by = cast("Mapping[float, Mapping[str, int]]", fields["broken_by"])
        check_record(self.metadata, eps, samples, broken_by)
        fields["cost"] = checked_cost(self.cost, eps, broken_by)
        for name, value in fields.items():
            set_field(self, name, value)

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
    def forward_equivalents(self) -> int | None:
        """Every model pass of the evaluation in forward passes, a backward pass counting
        two (``forward + 2 * backward``, as AutoAttack's cost is usually stated); ``None``
        where some count is not known. See
        [`cost_table`][signattack.evaluation.RobustnessReport.cost_table]."""
        spent = None if self.cost is None else self.cost.total
        return None if spent is None else spent.forward_equivalents

    @property
    def forward_equivalents_per_sample(self) -> float | None:
        """[`forward_equivalents`][signattack.evaluation.RobustnessReport.forward_equivalents]
        per sample evaluated."""
        spent = self.forward_equivalents
        return None if spent is None else spent / self.samples

    def cost_table(self) -> str:
        """The model's passes per eps and attack as aligned text: forward, backward,
        forward-equivalents, and those per sample the attack was handed; then the
        evaluation's own and the total, per sample evaluated (``unknown`` where not known).

        Raises:
            ValueError: The report records no cost.
        """
        return cost_breakdown(self)

    @property
    def bounds(self) -> tuple[float, float] | None:
        """The box the inputs lived in, where the metadata records one."""
        box = self.metadata.get("bounds")
        if isinstance(box, list) and len(box) == 2:
            lower, upper = box
            if isinstance(lower, (int, float)) and isinstance(upper, (int, float)):
                return float(lower), float(upper)
        return None

    @property
    def norm(self) -> Norm:
        """The norm every radius and perturbation of the report is measured in, as the
        metadata records it (L-inf where it records none: reports before the L2 threat
        model)."""
        return recorded_norm(self.metadata)

    def interval(self, eps: float | None = None, level: float = 0.95) -> tuple[float, float]:
        """The Wilson confidence interval of the robust accuracy at ``eps`` (of the clean
        accuracy for ``None``) over the [`samples`][signattack.evaluation.RobustnessReport.samples]:
        how far another draw of as many test samples could move it.

        Raises:
            ValueError: ``eps`` is not one of the report's radii, or ``level`` not in (0, 1).
        """
        if eps is None:
            return wilson_interval(sum(self.clean_correct), self.samples, level)
        if eps not in self.robust_correct:
            raise ValueError(f"eps must be one of the report's radii {list(self.eps)}, got {eps!r}")
        return wilson_interval(sum(self.robust_correct[eps]), self.samples, level)

    def radius(self, eps: float) -> str:
        """``eps`` in its user's units (``8/255`` on a ``[0, 1]`` box under L-inf; a
        decimal under L2)."""
        return radius_text(eps, self.bounds, self.norm)

    def table(self, level: float = 0.95) -> str:
        """Accuracy against eps as aligned text, with confidence intervals (the largest
        perturbation's column names the norm) and the passes per sample, then the attacks
        once, the cost and any warnings; on synthetic stand-in data, a first line that says
        so (as in every format)."""
        return text_summary(self, level)

    def to_markdown(self, level: float = 0.95) -> str:
        """The summary as a Markdown table, to paste into a README or a notebook."""
        return markdown_summary(self, level)

    def to_latex(self, level: float = 0.95) -> str:
        """The summary as a LaTeX ``tabular`` (booktabs rules), to paste into a paper."""
        return latex_summary(self, level)

    def to_summary_csv(self, level: float = 0.95) -> str:
        """One row per radius (and one for clean): accuracy, its interval's ends, the
        largest perturbation, the samples attacked, the model's passes at that radius
        (``forward_passes``, ``backward_passes``, ``forward_equivalents``; empty where not
        known), and one column per attack of the samples it broke. On synthetic stand-in
        data, a first column ``note`` says so in every row."""
        return summary_csv(self, level)

    def to_robustbench(self, eps: float | None = None) -> dict[str, Json]:
        """The entry RobustBench's model cards hold, at ``eps`` (by default the largest
        radius), honestly named: a signattack evaluation, not AutoAttack's own code.

        ``threat_model`` is the report's [`norm`][signattack.evaluation.RobustnessReport.norm] as
        RobustBench writes it (``"Linf"``, ``"L2"``). ``eps`` is written in RobustBench's units, a
        share of the box's width as for images in ``[0, 1]``: under L-inf ``16`` on ``[0, 255]`` is
        ``"16/255"``, ``8/255`` on ``[0, 1]`` stays ``"8/255"``, ``16/255`` on ``[-1, 1]`` is
        ``"8/255"``, and a radius that is no whole number of 8-bit levels is written as a decimal;
        under L2 always a decimal: ``127.5`` on ``[0, 255]`` is ``"0.5"``.

        ``autoattack_acc`` is filled only when `metadata` records AutoAttack's standard suite for
        the report's norm at its published settings (the members and settings
        [`standard_attacks`][signattack.evaluation.standard_attacks] makes, or its randomized
        version where the evaluation switched to it); any other evaluation gets ``robust_acc`` and
        ``robust_acc_attacks`` (what ran) instead, so that no entry passes for AutoAttack's. A
        report read back from JSON decides the same. An entry of a report made on synthetic stand-in
        data starts with ``synthetic_data: true`` and a ``warning`` never to report it.

        Raises:
            ValueError: ``eps`` is not one of the report's radii, or the report records no
                box to convert it with.
        """
        from signattack.evaluation._robustbench import robustbench_entry

        entry = robustbench_entry(self, eps)
        stand_in = stand_in_note(self.metadata)
        return entry if stand_in is None else {"synthetic_data": True, "warning": stand_in, **entry}

    def __repr__(self) -> str:
        accuracies = ", ".join(f"{self.radius(e)}: {self.robust_accuracy[e]:.1%}" for e in self.eps)
        stand_in = "" if stand_in_note(self.metadata) is None else ", SYNTHETIC STAND-IN DATA"
        return (
            f"RobustnessReport({self.samples} samples{stand_in}, clean {self.clean_accuracy:.1%}, "
            f"robust at eps {accuracies}{warnings_gist(self.warnings)})"
        )

    def _repr_markdown_(self) -> str:
        """The table, the attacks and the warnings: what a notebook shows."""
        return notebook_summary(self)

    def to_dict(self) -> dict[str, Json]:
        """Everything, JSON-ready (eps keys as strings)."""
        return {
            "format": REPORT_FORMAT,
            "metadata": dict(self.metadata),  # every value read is a fresh copy
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
            "cost": None if self.cost is None else self.cost.to_dict(),
        }

    def to_json(self) -> str:
        """[`to_dict`][signattack.evaluation.RobustnessReport.to_dict] as a JSON document."""
        return json.dumps(self.to_dict(), indent=2, allow_nan=False) + "\n"

    def to_csv(self) -> str:
        """One row per sample: index, clean correctness, correctness at each eps. On
        synthetic stand-in data, a first column ``note`` says so in every row."""
        return per_sample_csv(self)

    @classmethod
    def from_dict(cls, data: Json) -> RobustnessReport:
        """The report that [`to_dict`][signattack.evaluation.RobustnessReport.to_dict] wrote.

        Raises:
            ValueError: ``data`` is not such a report: a key is missing, a value has the
                wrong type, or the per-sample lists differ in length.
        """
        try:
            if not isinstance(data, dict):
                raise ValueError(f"expected a dict, got {type(data).__name__}")
            eps = tuple(as_distance("eps", value) for value in _entries(_member(data, "eps")))
            clean = as_flags("clean_correct", _member(data, "clean_correct"))
            samples = len(clean)
            attack = as_text("attack", _member(data, "attack"))
            robust = _mapping(_member(data, "robust_correct"))
            largest = _mapping(_member(data, "max_perturbation"))
            attacked = _mapping(_member(data, "attacked"))
            broken_by = _mapping(data.get("broken_by", {}))
            report = cls(
                eps=eps,
                attack=attack,
                clean_correct=clean,
                robust_correct={
                    e: as_flags(f"robust_correct[{e!r}]", _member(robust, str(e))) for e in eps
                },
                max_perturbation={
                    e: as_distance(f"max_perturbation[{e!r}]", _member(largest, str(e)))
                    for e in eps
                },
                attacked={
                    e: as_count(f"attacked[{e!r}]", _member(attacked, str(e)), samples) for e in eps
                },
                broken_by={
                    e: {
                        name: as_count(f"broken_by[{e!r}]", count, samples)
                        for name, count in _mapping(broken_by[str(e)]).items()
                    }
                    for e in eps
                    if str(e) in broken_by
                },
                warnings=tuple(
                    as_text("each warning", w) for w in _entries(data.get("warnings", []))
                ),
                metadata=_mapping(data.get("metadata", {})),
                cost=None if data.get("cost") is None else Cost.from_dict(data["cost"], eps),
            )
            _check_stated(data, report)
            return report
        except (TypeError, ValueError) as error:
            raise ValueError(f"data is not a RobustnessReport dictionary: {error}") from None

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
        from the counts each attack broke: what
        [`plot`][signattack.evaluation.RobustnessReport.plot] draws."""
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
        ran (the accuracy after it and the ones before), the clean accuracy marked, radii in the
        user's units; returns the figure, saved to ``path``. See
        [`signattack.plots.plot_report`][signattack.plots.plot_report]."""
        from signattack.plots import plot_report

        return plot_report(self, path=path, note=stand_in_note(self.metadata))


def _check_stated(data: dict[str, Json], report: RobustnessReport) -> None:
    """Refuse accuracies written beside the per-sample flags that the flags do not give:
    a reader of the file would see one number and the report hold another."""
    stated = {"clean": data.get("clean_accuracy")}
    robust = data.get("robust_accuracy")
    if isinstance(robust, dict):
        stated.update({f"robust at eps {e:g}": robust.get(str(e)) for e in report.eps})
    computed = {"clean": report.clean_accuracy}
    computed.update({f"robust at eps {e:g}": a for e, a in report.robust_accuracy.items()})
    _check_stated_cost(report)
    for what, value in stated.items():
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ValueError(f"its {what} accuracy must be a number, got {value!r}")
        if not math.isclose(value, computed[what], rel_tol=1e-9, abs_tol=1e-12):
            raise ValueError(
                f"its {what} accuracy says {value!r}, its per-sample flags give {computed[what]!r}"
            )


def _check_stated_cost(report: RobustnessReport) -> None:
    """Refuse a cost that cannot be: passes of an attack at a radius where no sample was
    attacked, the evaluation's own passes fewer than its clean pass, or totals in the
    metadata that the cost does not give."""
    cost = report.cost
    if cost is None:
        return
    for eps in report.eps:
        for name, count in cost.attacks[eps].items():
            if report.attacked[eps] == 0 and count is not None and count.forward:
                raise ValueError(
                    f"its cost states {count.forward} forward passes of {name} at eps {eps:g}, "
                    "where no sample was attacked"
                )
    own = cost.evaluation
    if own is not None and own.forward < report.samples:
        raise ValueError(
            f"its cost states {own.forward} forward passes of the evaluation's own, fewer than "
            f"its clean pass over {report.samples} samples"
        )
    if "passes" in report.metadata:
        stated, expected = report.metadata["passes"], totals_json(cost, report.samples)
        if json.dumps(stated, sort_keys=True) != json.dumps(expected, sort_keys=True):
            raise ValueError(f"its metadata's passes say {stated!r}, its cost gives {expected!r}")


def _member(data: dict[str, Json], key: str) -> Json:
    if key not in data:
        raise ValueError(f"missing key {key!r}")
    return data[key]


def _wrong(expected: str, value: object) -> NoReturn:
    raise TypeError(f"expected {expected}, got {type(value).__name__}")


def _entries(value: Json) -> list[Json]:
    return value if isinstance(value, list) else _wrong("a list", value)


def _mapping(value: Json) -> dict[str, Json]:
    return value if isinstance(value, dict) else _wrong("a dict", value)


def _each(
    name: str,
    values: object,
    eps: tuple[float, ...],
    check: Callable[[str, object], T],
    *,
    some: bool = False,
) -> ReadOnly[float, T]:
    """A checked value per radius (with ``some``, for some of the radii), read-only."""
    if not isinstance(values, Mapping):
        raise TypeError(f"{name} must be a mapping from eps, got {type(values).__name__}")
    given: Mapping[object, object] = values
    if set(given) - set(eps) or (not some and set(given) != set(eps)):
        raise ValueError(f"{name} must have the keys {list(eps)}, got {list(given)}")
    return ReadOnly({e: check(f"{name}[{e!r}]", given[e]) for e in eps if e in given})


def _counts(name: str, counts: object, samples: int) -> ReadOnly[str, int]:
    """Per attack, how many samples it broke."""
    if not isinstance(counts, Mapping):
        raise TypeError(f"{name} must be a mapping, got {type(counts).__name__}")
    return ReadOnly({as_text(name, k): as_count(name, n, samples) for k, n in counts.items()})
