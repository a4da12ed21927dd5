"""A report's summary in its text formats: the aligned table, Markdown, LaTeX, the summary
and per-sample CSV, the notes under a table and the cost breakdown, with the Wilson
interval every accuracy is stated with and the stand-in data's warning every format
starts with. Each reads a report
through `Summarised`, what the formats need of
one, and escapes every cell for its format (attack names come from their users)."""

from __future__ import annotations

import math
import statistics
from collections.abc import Mapping
from typing import Protocol

from signattack._io import Json, TextFormat, csv_text, escaped, text_table
from signattack.core.norms import Norm
from signattack.evaluation._cost import COST_HEADER, Cost, PassCount, cost_note, cost_rows
from signattack.evaluation._cost import per_sample as per_sample_of
from signattack.evaluation._units import norm_label, recorded_dtype, shown_largest

STAND_IN = "SYNTHETIC STAND-IN DATA, not CIFAR-10: never report these numbers"
"""What every output of a report made on synthetic stand-in data says first."""


def stand_in_note(metadata: Mapping[str, Json]) -> str | None:
    """`STAND_IN` where ``metadata`` records stand-in data (``data.synthetic`` true:
    the command line sets it for a folder
    [`write_synthetic_cifar10`][signattack.data.write_synthetic_cifar10]
    marked), else ``None``. The one rule every output of a report and an export asks."""
    data = metadata.get("data")
    return STAND_IN if isinstance(data, dict) and data.get("synthetic") is True else None


GIST_LENGTH = 72
"""The most characters of a warning that a one-line summary (a report's repr) quotes."""


def warnings_gist(warnings: tuple[str, ...]) -> str:
    """``", 2 warnings: <the first one's gist>"`` (``""`` for none): the count, then the
    first warning up to its first clause break (``": "``, ``"; "``, ``". "``), cut to
    `GIST_LENGTH` characters; for a one-line summary whose reader must not miss them."""
    if not warnings:
        return ""
    first = " ".join(warnings[0].split())  # one line, whatever the warning holds
    for stop in (": ", "; ", ". "):
        first = first.split(stop, 1)[0]
    if len(first) > GIST_LENGTH:
        first = first[: GIST_LENGTH - 3].rstrip() + "..."
    counted = "1 warning" if len(warnings) == 1 else f"{len(warnings)} warnings"
    return f", {counted}: {first}"


def with_stand_in(warnings: tuple[str, ...], metadata: Mapping[str, Json]) -> tuple[str, ...]:
    """``warnings``, led by the stand-in data's (`STAND_IN`) where ``metadata`` records
    synthetic stand-in data: every reader of a report's warnings (its repr, its JSON, a
    notebook) learns first that its numbers are not to be reported. It is said once, first,
    in whatever order the warnings came, and a copy of it with other whitespace
    (``" " + STAND_IN``) is the same warning."""
    stand_in = stand_in_note(metadata)
    if stand_in is None:
        return warnings
    plain = " ".join(stand_in.split())
    return (stand_in, *(w for w in warnings if " ".join(w.split()) != plain))


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


class Summarised(Protocol):
    """What the text formats read of a report."""

    @property
    def eps(self) -> tuple[float, ...]: ...

    @property
    def attack(self) -> str: ...

    @property
    def clean_correct(self) -> tuple[bool, ...]: ...

    @property
    def robust_correct(self) -> Mapping[float, tuple[bool, ...]]: ...

    @property
    def max_perturbation(self) -> Mapping[float, float]: ...

    @property
    def attacked(self) -> Mapping[float, int]: ...

    @property
    def broken_by(self) -> Mapping[float, Mapping[str, int]]: ...

    @property
    def warnings(self) -> tuple[str, ...]: ...

    @property
    def metadata(self) -> Mapping[str, Json]: ...

    @property
    def cost(self) -> Cost | None: ...

    @property
    def samples(self) -> int: ...

    @property
    def clean_accuracy(self) -> float: ...

    @property
    def robust_accuracy(self) -> dict[float, float]: ...

    @property
    def norm(self) -> Norm: ...

    def interval(self, eps: float | None = None, level: float = 0.95) -> tuple[float, float]: ...

    def radius(self, eps: float) -> str: ...


def _several(report: Summarised) -> bool:
    """Whether some radius ran more than one attack: the table then says which broke what."""
    return any(len(counts) > 1 for counts in report.broken_by.values())


def _rows(report: Summarised, level: float) -> list[list[str]]:
    """The summary: per line, the radius, accuracy, its interval, the largest move, the
    samples attacked, the passes per sample and what broke the samples (``-`` where nothing
    was left to attack)."""
    several = _several(report)
    low, high = report.interval(None, level)
    rows = [["clean", f"{report.clean_accuracy:.2%}", _span(low, high), "", ""]]
    if report.cost is not None:  # the clean row: the evaluation's own passes
        rows[0].append(per_sample_of(report.cost.evaluation, report.samples))
    for eps in report.eps:
        low, high = report.interval(eps, level)
        idle = report.attacked[eps] == 0
        row = [
            report.radius(eps),
            f"{report.robust_accuracy[eps]:.2%}",
            _span(low, high),
            "-" if idle else report.radius(_largest(report, eps)),
            f"{report.attacked[eps]}",
        ]
        if report.cost is not None:
            row.append(per_sample_of(report.cost.at(eps), report.samples))
        if several:
            row.append(", ".join(f"{n} {c}" for n, c in report.broken_by[eps].items()))
        rows.append(row)
    if several:
        rows[0].append("")
    return rows


def _header(report: Summarised, level: float) -> list[str]:
    ci = f"{level:.0%} CI"
    largest = f"max {norm_label(report.norm)}"
    passes = ["passes/sample"] if report.cost is not None else []
    broken = ["broken by"] if _several(report) else []
    return ["eps", "accuracy", ci, largest, "attacked", *passes, *broken]


def _left(report: Summarised, level: float) -> set[int]:
    """The columns of text, left-aligned: the radius and what broke the samples."""
    header = _header(report, level)
    return {0} | ({header.index("broken by")} if "broken by" in header else set())


def notes(report: Summarised, form: TextFormat, *, warned: bool = True) -> list[str]:
    """The attacks, the cost and (with ``warned``) the warnings, each a line, escaped for
    ``form``."""
    lines = [f"attacks: {report.attack}"] if report.attack else []
    if report.cost is not None:
        lines.append(cost_note(report.cost, report.samples))
    lines += audit_notes(report)
    if warned:
        lines += [f"warning: {w}" for w in _warnings(report)]
    return [escaped(line, form) for line in lines]


def _warnings(report: Summarised) -> list[str]:
    """The report's warnings but the stand-in data's (a table's first line says it); each
    format's escaping keeps a warning on one line."""
    said = stand_in_note(report.metadata)
    return [w for w in report.warnings if w != said]


def _title(report: Summarised, form: TextFormat) -> list[str]:
    """The stand-in data's warning as the first line of a table file, if it applies."""
    stand_in = stand_in_note(report.metadata)
    if stand_in is None:
        return []
    line = escaped(stand_in, form)
    return [f"**{line}**", ""] if form == "markdown" else [line, ""]


def _cells(report: Summarised, level: float, form: TextFormat) -> list[list[str]]:
    """The header and the rows, every cell escaped for ``form``."""
    return [
        [escaped(c, form) for c in row] for row in [_header(report, level), *_rows(report, level)]
    ]


def text_summary(report: Summarised, level: float) -> str:
    """The aligned text table, then the notes; on stand-in data, a first line that says so."""
    lines = text_table(_header(report, level), _rows(report, level), left=_left(report, level))
    stand_in = stand_in_note(report.metadata)
    first = [stand_in] if stand_in is not None else []
    return "\n".join([*first, *lines, *notes(report, "text")])


def markdown_summary(report: Summarised, level: float) -> str:
    """The summary as a Markdown table."""
    header, *rows = _cells(report, level, "markdown")
    left = _left(report, level)
    lines = [*_title(report, "markdown"), "| " + " | ".join(header) + " |"]
    lines.append(
        "| " + " | ".join("---" if i in left else "---:" for i in range(len(header))) + " |"
    )
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    for warning in _warnings(report):  # each its own quote, a blank line before it
        lines += ["", f"> **Warning:** {escaped(warning, 'markdown')}"]
    return "\n".join(lines) + "\n"


def latex_summary(report: Summarised, level: float) -> str:
    """The summary as a LaTeX ``tabular`` with booktabs rules."""
    cells = _cells(report, level, "latex")
    left = _left(report, level)
    columns = "".join("l" if i in left else "r" for i in range(len(cells[0])))
    body = [" & ".join(row) + r" \\" for row in cells]
    lines = [
        *_title(report, "latex"),
        rf"\begin{{tabular}}{{{columns}}}",
        r"\toprule",
        body[0],
        r"\midrule",
        *body[1:],
        r"\bottomrule",
        r"\end{tabular}",
        *(f"% warning: {escaped(w, 'latex')}" for w in _warnings(report)),
    ]
    return "\n".join(lines) + "\n"


def notebook_summary(report: Summarised) -> str:
    """The Markdown table, then the notes as a list: what a notebook shows."""
    listed = "".join(f"\n- {note}" for note in notes(report, "markdown", warned=False))
    return markdown_summary(report, 0.95) + ("\n" + listed if listed else "")


def _noted(report: Summarised, rows: list[list[object]]) -> str:
    """``rows`` (a header, then data) as CSV; on synthetic stand-in data with a first
    column ``note`` that holds the stand-in's warning in every row, so that a reader of
    any row (or a spreadsheet, or ``pandas.read_csv``) sees it and the file stays plain
    CSV."""
    stand_in = stand_in_note(report.metadata)
    if stand_in is not None:
        rows = [["note", *rows[0]], *([stand_in, *row] for row in rows[1:])]
    return csv_text(rows)


def summary_csv(report: Summarised, level: float) -> str:
    """One row per radius (and one for clean): accuracy, its interval's ends, the largest
    perturbation, the samples attacked, the passes, and one column per attack of the
    samples it broke.

    ``max_perturbation`` is the measurement itself, never rounded (it may exceed ``eps`` by
    the rounding of the inputs' dtype); ``max_perturbation_shown`` is what the tables show,
    written as ``eps_shown`` writes the radius (`shown_largest`: the radius where the
    measurement exceeds it by that rounding only)."""
    names = list(dict.fromkeys(n for counts in report.broken_by.values() for n in counts))
    header = ["eps", "eps_shown", "accuracy", "ci_low", "ci_high", "max_perturbation"]
    header.append("max_perturbation_shown")
    low, high = report.interval(None, level)
    cost = report.cost
    spent = [] if cost is None else ["forward_passes", "backward_passes", "forward_equivalents"]
    rows: list[list[object]] = [
        [*header, "attacked", *spent, *(f"broken_by:{name}" for name in names)],
        ["0", "clean", report.clean_accuracy, low, high, "", "", ""]
        + ([] if cost is None else _passes(cost.evaluation))
        + [""] * len(names),
    ]
    for eps in report.eps:
        low, high = report.interval(eps, level)
        counts = report.broken_by.get(eps, {})
        accuracy = report.robust_accuracy[eps]
        measured = report.max_perturbation[eps]
        shown = report.radius(_largest(report, eps))
        rows.append(
            [repr(eps), report.radius(eps), accuracy, low, high, measured, shown]
            + [report.attacked[eps]]
            + ([] if cost is None else _passes(cost.at(eps)))
            + [counts.get(name, 0) for name in names]
        )
    return _noted(report, rows)


def _largest(report: Summarised, eps: float) -> float:
    """The largest perturbation at ``eps`` as the tables show it (`shown_largest`, with the
    rounding of the dtype that ``report``'s metadata records)."""
    return shown_largest(report.max_perturbation[eps], eps, recorded_dtype(report.metadata))


def per_sample_csv(report: Summarised) -> str:
    """One row per sample: index, clean correctness, correctness at each eps."""
    header: list[object] = ["sample", "clean", *[f"eps={e:g}" for e in report.eps]]
    rows = [header] + [
        [index, int(clean), *[int(report.robust_correct[e][index]) for e in report.eps]]
        for index, clean in enumerate(report.clean_correct)
    ]
    return _noted(report, rows)


def cost_breakdown(report: Summarised) -> str:
    """The passes per radius and attack as aligned text, then the evaluation's own and
    the total.

    Raises:
        ValueError: The report records no cost.
    """
    if report.cost is None:
        raise ValueError("this report records no cost: it was made before passes were counted")
    rows = cost_rows(report.cost, report.attacked, report.broken_by, report.samples, report.radius)
    return "\n".join(text_table(COST_HEADER, rows, left={0, 1}))


def _passes(count: PassCount | None) -> list[object]:
    """Forward, backward and forward-equivalent passes as CSV cells (empty: not known)."""
    if count is None:
        return ["", "", ""]
    return [count.forward, count.backward, count.forward_equivalents]


def _span(low: float, high: float) -> str:
    return f"[{100 * low:.1f}, {100 * high:.1f}]"


def audit_notes(report: Summarised) -> list[str]:
    """The lines a table states the audit and the escalation in."""
    record = report.metadata.get("audit")
    if not isinstance(record, dict) or not isinstance(record.get("radii"), dict):
        return []
    radii = record["radii"]
    assert isinstance(radii, dict)
    lines = []
    share = record.get("share")
    for key, entry in radii.items():
        if not isinstance(entry, dict):
            continue
        shown = report.radius(float(key))
        parts = []
        if share is not None:
            try:
                passes = PassCount.of_json("passes", entry.get("passes"))
            except (TypeError, ValueError):
                passes = None
            spent = (
                "passes unknown"
                if passes is None
                else f"{passes.forward_equivalents:,} forward-equivalent passes"
            )
            parts.append(
                f"audited {entry.get('audited')}, missed {entry.get('missed')} (95% upper bound "
                f"of the miss rate {entry.get('upper', 1.0):.1%}), extra {entry.get('extra')}, "
                f"{spent} apart from the cost"
            )
        parts.append(f"escalation {entry.get('escalation')}")
        if "handed" in entry:
            parts[-1] += f" on {entry['handed']} samples"
        lines.append(f"audit at eps {shown}: " + "; ".join(parts))
    return lines
