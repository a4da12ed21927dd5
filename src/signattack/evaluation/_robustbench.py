"""A report as RobustBench's model cards hold it: the threat model (``Linf``, ``L2``), eps
in their units, and ``autoattack_acc`` only for AutoAttack's standard suite at its published
settings for that norm."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Protocol

from signattack._io import Json, parse
from signattack.core.norms import Norm
from signattack.evaluation._units import robustbench_eps
from signattack.evaluation.standard import attack_record, standard_attacks


class _Report(Protocol):
    """What the entry reads of a report."""

    @property
    def eps(self) -> tuple[float, ...]: ...

    @property
    def attack(self) -> str: ...

    @property
    def robust_correct(self) -> Mapping[float, tuple[bool, ...]]: ...

    @property
    def metadata(self) -> Mapping[str, Json]: ...

    @property
    def bounds(self) -> tuple[float, float] | None: ...

    @property
    def norm(self) -> Norm: ...

    @property
    def samples(self) -> int: ...

    @property
    def clean_accuracy(self) -> float: ...

    @property
    def robust_accuracy(self) -> dict[float, float]: ...


def runs_autoattack(metadata: Mapping[str, Json], norm: Norm) -> bool:
    """Whether a report's metadata records AutoAttack's standard suite at its published
    settings for ``norm``: exactly the attacks, in order and with every setting, that
    [`standard_attacks`][signattack.evaluation.standard_attacks] makes for the recorded box, seed
    and norm (APGD-CE and APGD-T with 100 steps and 9 targets, FAB-T, Square with 5000 queries), or,
    where the evaluation found the model randomized and switched, its
    [`rand_attacks`][signattack.evaluation.rand_attacks]. Decided from the
    recorded settings alone, so that a report read back from JSON decides the same."""
    attacks, box = metadata.get("attacks"), metadata.get("bounds")
    if not isinstance(attacks, list) or not attacks or not isinstance(attacks[0], dict):
        return False
    seed = attacks[0].get("seed")
    if not isinstance(box, list) or len(box) != 2 or not isinstance(seed, int):
        return False
    lower, upper = box
    if not (isinstance(lower, (int, float)) and isinstance(upper, (int, float))):
        return False
    try:
        suite = standard_attacks(bounds=(lower, upper), seed=seed, norm=norm)
    except (TypeError, ValueError):  # a box or a seed that no preset takes
        return False
    published = suite.randomized if metadata.get("randomized_model") is True else suite
    if published is None:  # pragma: no cover - the standard suite has a randomized version
        return False
    expected = [_verdicts(attack_record(attack)["settings"]) for attack in published]
    recorded = [
        _verdicts(entry.get("settings")) if isinstance(entry, dict) else None for entry in attacks
    ]
    return parse(json.dumps(expected)) == parse(json.dumps(recorded))


_SAVINGS = ("early_stop", "minimal", "eps")
"""Settings that save passes and keep every verdict, and the radius (set at every eps)."""


def _verdicts(settings: Json) -> Json:
    """An attack's recorded settings less those that cannot change a verdict: early stopping
    leaves a sample at the step that breaks it, and FAB-T without ``minimal`` at the first point
    it finds within eps (the presets do both since 0.2, and a report written before still ran
    the published suite); and ``eps``, which a record leaves out (the attack ran at every radius
    of the report) and an earlier one holds as the placeholder ``0.0``."""
    fields = settings.get("fields") if isinstance(settings, dict) else None
    if not isinstance(settings, dict) or not isinstance(fields, dict):
        return settings
    return {**settings, "fields": {name: v for name, v in fields.items() if name not in _SAVINGS}}


def robustbench_entry(report: _Report, eps: float | None = None) -> dict[str, Json]:
    """[`RobustnessReport.to_robustbench`][signattack.evaluation.RobustnessReport.to_robustbench]:
    the entry RobustBench's model cards hold, with the threat model of the report's norm
    (``"Linf"``, ``"L2"``).

    Raises:
        ValueError: ``eps`` is not one of the report's radii, or the report records no box.
    """
    radius = report.eps[-1] if eps is None else eps
    if radius not in report.robust_correct:
        raise ValueError(f"eps must be one of the report's radii {list(report.eps)}, got {eps!r}")
    bounds = report.bounds
    if bounds is None:
        raise ValueError(
            "to_robustbench needs the box the inputs lived in, to write eps in "
            "RobustBench's [0, 1] units; this report's metadata records none"
        )
    version = report.metadata.get("signattack", "unknown")
    accuracy = f"{100 * report.robust_accuracy[radius]:.2f}"
    entry: dict[str, Json] = {"clean_acc": f"{100 * report.clean_accuracy:.2f}"}
    norm = report.norm
    if runs_autoattack(report.metadata, norm):
        entry["autoattack_acc"] = accuracy
        ran = f"AutoAttack's standard {norm.title} suite at its published settings"
    else:
        entry["robust_acc"] = accuracy
        entry["robust_acc_attacks"] = report.attack
        ran = f"{report.attack}, not AutoAttack's standard suite (no autoattack_acc)"
    return {
        **entry,
        "threat_model": norm.robustbench,
        "eps": robustbench_eps(radius, bounds, norm),
        "n_examples": report.samples,
        "evaluation": (
            f"signattack {version}: {ran}; a signattack evaluation whose members "
            "are checked against the authors' AutoAttack (pyautoattack), not AutoAttack's "
            "own code"
        ),
        "attacks": report.metadata.get("attacks", []),
        "versions": {
            key: report.metadata[key]
            for key in ("signattack", "frameworks")
            if key in report.metadata
        },
    }
