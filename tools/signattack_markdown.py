"""A Python-Markdown extension for signattack's docs: benchmark tables and mathematics,
both rendered at build time, by any engine that runs Python-Markdown (MkDocs, Zensical).

A line ``{{ benchmark "benchmarks/cpu.json" }}`` in a page becomes the table of that file
(relative to the docs folder), so the page always shows what the benchmark scripts last
wrote.

Mathematics is written in LaTeX between ``$...$`` (inline) or ``$$...$$`` (display);
``pymdownx.arithmatex`` keeps it away from Markdown, and this extension turns it into MathML,
which browsers lay out natively: the site needs no script and no network to show it.

In ``mkdocs.yml``::

    markdown_extensions:
      - pymdownx.arithmatex:
          generic: true
      - tools.signattack_markdown:
          docs_dir: docs
"""

from __future__ import annotations

import html
import json
import re
from pathlib import Path
from typing import Any

from latex2mathml.converter import convert as latex_to_mathml
from markdown import Extension, Markdown
from markdown.postprocessors import Postprocessor
from markdown.preprocessors import Preprocessor

_MARKER = re.compile(r'^\{\{ benchmark "([^"]+)" \}\}$')


def _speed_table(data: dict[str, Any]) -> str:
    lines = [
        f"*{data['device']}, {data['threads']} threads, torch {data['torch']}, batch "
        f"{data['batch']}, {data['steps']} steps, median of {data['rounds']} rounds.*",
        "",
        "| method | median s | images/s | x floor | saved for backward, MiB | peak memory, MiB |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for row in data["rows"]:
        peak = row.get("peak_memory_mib")
        lines.append(
            f"| {row['method']} | {row['median_s']:.3f} | {row['images_per_s']:.1f} | "
            f"{row['ratio_to_floor']:.3f} | {row['saved_for_backward_mib']:.1f} | "
            f"{'' if peak is None else f'{peak:.0f}'} |"
        )
    return "\n".join(lines)


def _evaluation_table(data: dict[str, Any]) -> str:
    lines = [
        f"*eps {', '.join(f'{e:g}' for e in data['eps'])}; {data['steps']} steps.*",
        "",
        "| method | median s | sample forward passes | work vs naive | time vs naive |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    for row in data["rows"]:
        lines.append(
            f"| {row['method']} | {row['median_s']:.2f} | {row['sample_forwards']:,} | "
            f"{row['work_vs_naive']:.2f} | {row['time_vs_naive']:.2f} |"
        )
    return "\n".join(lines)


def _strength_table(data: dict[str, Any]) -> str:
    lines = [
        f"*{data['device']}, {data['threads']} threads, torch {data['torch']}; digits test set "
        f"({data['samples']} images, clean accuracy {data['clean_accuracy']:.2%}), eps "
        f"{data['eps_pixels']:g} pixel levels, {data['steps']} steps, median of "
        f"{data['rounds']} rounds.*",
        "",
        "| method | median s | s per step | per step vs IteratedSign | robust accuracy |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    for row in data["rows"]:
        step, ratio = row["per_step_s"], row["per_step_vs_iterated"]
        lines.append(
            f"| {row['method']} | {row['median_s']:.2f} | "
            f"{'' if step is None else f'{step:.4f}'} | "
            f"{'' if ratio is None else f'{ratio:.3f}'} | {row['robust_accuracy']:.2%} |"
        )
    return "\n".join(lines)


def _square_table(data: dict[str, Any]) -> str:
    lines = [
        f"*{data['device']}, {data['threads']} threads, torch {data['torch']}; digits test set "
        f"({data['samples']} images, clean accuracy {data['clean_accuracy']:.2%}), eps "
        f"{data['eps_pixels']:g} pixel levels, Square with {data['queries']} queries, APGD "
        f"with {data['steps']} steps, median of {data['rounds']} rounds.*",
        "",
        "| method | median s | model evaluations | s per 1000 evaluations | robust accuracy |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    for row in data["rows"]:
        lines.append(
            f"| {row['method']} | {row['median_s']:.2f} | {row['evaluations']:,} | "
            f"{row['per_1000_evaluations_s']:.4f} | {row['robust_accuracy']:.2%} |"
        )
    return "\n".join(lines)


def _fab_table(data: dict[str, Any]) -> str:
    lines = [
        f"*{data['device']}, {data['threads']} threads, torch {data['torch']}; digits test set "
        f"({data['samples']} images, clean accuracy {data['clean_accuracy']:.2%}); FAB-T with "
        f"{data['steps']} steps and 9 target classes, median of {data['rounds']} rounds; the "
        "suites once each.*",
        "",
        "| eps | method | median s | time vs the authors' | robust accuracy "
        "| broken by this one only |",
        "| ---: | --- | ---: | ---: | ---: | ---: |",
    ]
    for radius in data["radii"]:
        for part in (radius["fab"], radius["suite"]):
            ours, theirs = part["rows"]
            for row, ratio, only in (
                (ours, f"{part['time_ratio']:.2f}x", part["only_ours_breaks"]),
                (theirs, "", part["only_theirs_breaks"]),
            ):
                lines.append(
                    f"| {radius['eps_pixels']:g} | {row['method']} | {row['median_s']:.1f} | "
                    f"{ratio} | {row['robust_accuracy']:.2%} | {only} |"
                )
    return "\n".join(lines)


def _parity_table(data: dict[str, Any]) -> str:
    lines = [
        f"*{data['device']}, {data['threads']} threads, torch {data['torch']}; the first "
        f"{data['samples']} digits of the test set; each pair run once, signattack first.*",
        "",
        "| network | clean | eps | attack | seed | signattack | authors' | broken by "
        "signattack only | by the authors' only | time vs the authors' |",
        "| --- | ---: | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for row in data["rows"]:
        lines.append(
            f"| {row['network']} | {row['clean']:.1%} | {row['eps']:g} | {row['attack']} | "
            f"{row['seed']} | {row['ours']:.1%} | {row['theirs']:.1%} | "
            f"{row['only_ours_breaks']} | {row['only_theirs_breaks']} | "
            f"{row['time_ratio']:.2f}x |"
        )
    return "\n".join(lines)


COST_SUITES = {"authors": "the authors'", "standard": "standard suite", "fast": "fast preset"}
"""The runs of the cost layout, in the order of its columns: the authors' first, the
reference the others' ratios are taken to."""

COST_OUTSIDE = "evaluation"
"""The member the evaluation's own passes are charged to (clean pass, checks, verdicts)."""


def _per_sample(run: dict[str, Any], reference: dict[str, Any]) -> str:
    ratio = run["forward_equivalents"] / reference["forward_equivalents"]
    return f"{run['per_sample']:,.0f} ({ratio:.2f}x)"


def _member_table(data: dict[str, Any]) -> list[str]:
    """Per member and suite, forward-equivalents per sample it was handed, over every run;
    the evaluation's own passes per sample evaluated."""
    totals: dict[str, dict[str, list[int]]] = {}
    for run in data["runs"]:
        for suite in COST_SUITES:
            for member, tally in run[suite]["members"].items():
                total = totals.setdefault(member, {}).setdefault(suite, [0, 0])
                handed = data["samples"] if member == COST_OUTSIDE else tally["samples_handed"]
                total[0] += tally["forward_equivalents"]
                total[1] += handed
    lines = [
        f"*Per member, forward-equivalents per sample it attacked, over all {len(data['runs'])} "
        "runs; the evaluation's own passes (clean pass, checks, verdicts) per sample "
        "evaluated.*",
        "",
        "| member | " + " | ".join(COST_SUITES.values()) + " |",
        "| --- |" + " ---: |" * len(COST_SUITES),
    ]
    members = sorted(totals, key=lambda member: member == COST_OUTSIDE)  # stable: it goes last
    for member in members:
        cells = []
        for suite in COST_SUITES:
            passes, samples = totals[member].get(suite, [0, 0])
            digits = 1 if member == COST_OUTSIDE else 0
            cells.append(f"{passes / samples:,.{digits}f}" if samples else "")
        lines.append(f"| {member} | " + " | ".join(cells) + " |")
    return lines


def _cost_tables(data: dict[str, Any]) -> str:
    runs = data["runs"]
    threads = f"{data['threads']} thread{'' if data['threads'] == 1 else 's'}"
    seeds = ", ".join(str(seed) for seed in data["seeds"])
    early = "" if data["complete"] else f" (stopped early, after {len(runs)} runs)"
    agree = "match" if data["counts_agree"] else "do not all match"
    lines = [
        f"*{data['device']}, {threads} a run, torch {data['torch']}; the first "
        f"{data['samples']} test digits, seeds {seeds}{early}. Robust accuracy of each; the "
        "samples on which signattack's verdict differs from the authors' (broken by "
        "signattack only / by the authors' only); forward-equivalents per sample (a backward "
        "pass counts as two), with the ratio to the authors'; wall time relative to the "
        f"authors'. The passes signattack's results report of themselves {agree} the counting "
        "wrapper's.*",
        "",
        "| network | clean | eps | seed | the authors' | standard suite | fast preset "
        "| differ, standard | differ, fast | authors' per sample | standard per sample "
        "| fast per sample | time, standard / fast |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: "
        "| ---: |",
    ]
    for run in runs:
        authors, standard, fast = (run[suite] for suite in COST_SUITES)
        lines.append(
            f"| {run['network']} | {run['clean']:.1%} | {run['eps']:g} | {run['seed']} | "
            f"{authors['robust']:.1%} | {standard['robust']:.1%} | {fast['robust']:.1%} | "
            f"{standard['only_ours_breaks']} / {standard['only_theirs_breaks']} | "
            f"{fast['only_ours_breaks']} / {fast['only_theirs_breaks']} | "
            f"{authors['per_sample']:,.0f} | {_per_sample(standard, authors)} | "
            f"{_per_sample(fast, authors)} | "
            f"{standard['time_ratio']:.2f}x / {fast['time_ratio']:.2f}x |"
        )
    return "\n".join([*lines, "", *_member_table(data)])


def _conditions_table(data: dict[str, Any]) -> str:
    lines = [
        f"*{data['device']}, torch {data['torch']}; the first {data['samples']} test digits, "
        "APGD-CE with 100 steps, one run each.*",
        "",
        "| eps | seed | signattack | with the reference's conditions | authors' APGD-CE "
        "| samples the conditions change | signattack vs authors' | variant vs authors' |",
        "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for row in data["rows"]:
        lines.append(
            f"| {row['eps']:g} | {row['seed']} | {row['signattack']:.1%} | "
            f"{row['with_reference_conditions']:.1%} | {row['authors']:.1%} | "
            f"{row['conditions_differ_on']} | {row['signattack_vs_authors_differ_on']} | "
            f"{row['variant_vs_authors_differ_on']} |"
        )
    return "\n".join(lines)


def _jax_table(data: dict[str, Any]) -> str:
    lines = [
        f"*{data['device']}, {data['threads']} threads, torch {data['torch']}, jax "
        f"{data['jax']}; IteratedSign, eps {data['eps_pixels']:g}, {data['steps']} steps, "
        f"median of {data['rounds']} rounds. The two backends agree on "
        f"{data['pixel_agreement']:.2%} of the adversarial pixels; robust accuracy "
        f"{data['robust_accuracy']['torch']:.2%} (torch), "
        f"{data['robust_accuracy']['jax']:.2%} (jax).*",
        "",
        "| batch | method | median s | images/s | x torch eager | x JAX floor | compile s |",
        "| ---: | --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for row in data["rows"]:
        compile_s = row["compile_s"]
        lines.append(
            f"| {row['batch']} | {row['method']} | {row['median_s']:.3f} | "
            f"{row['images_per_s']:.0f} | {row['ratio_to_torch']:.2f} | "
            f"{row['ratio_to_jax_floor']:.2f} | {'' if compile_s is None else f'{compile_s:.2f}'} |"
        )
    return "\n".join(lines)


def _gpu_tables(data: dict[str, Any]) -> str:
    tests = data["tests"]
    parts = [f"*GPU tests (`pytest -m gpu`): {tests['summary']}.*", ""]
    parts += [_speed_table(speed) + "\n" for speed in data["speed"]]
    parts += [f"*Not measured in this run: {what}.*\n" for what in data.get("missing", [])]
    strength = data["strength"]
    if strength is None:
        return "\n".join(parts)
    lines = [
        f"*Strength of the fast variants on {strength['device']}: IteratedSign, eps "
        f"{strength['eps_pixels']:g}, {strength['steps']} steps, the {strength['samples']} "
        "digits; robust accuracy judged by the float32 network.*",
        "",
        "| variant | pixels agreeing with float32 | robust accuracy | difference, points |"
        " equal strength |",
        "| --- | ---: | ---: | ---: | --- |",
    ]
    for row in strength["rows"]:
        lines.append(
            f"| {row['variant']} | {row['pixel_agreement']:.2%} | {row['robust_accuracy']:.2%} "
            f"| {row['difference_points']:+.2f} | {'yes' if row['equal_strength'] else 'no'} |"
        )
    return "\n".join(parts + lines)


def _render(match: re.Match[str], docs: Path) -> str:
    path = docs / match.group(1)
    if not path.is_file():
        return (
            f'!!! note "Not measured in this release"\n    `{match.group(1)}` is written by '
            "the benchmark on a machine that has the hardware; none was available."
        )
    data = json.loads(path.read_text())
    if "strength" in data:
        return _gpu_tables(data)
    if "square" in data:
        return _square_table(data)
    if "fab" in data:
        return _fab_table(data)
    if "cost" in data:  # also carries the parity layout's rows
        return _cost_tables(data)
    if "parity" in data:
        return _parity_table(data)
    if "apgd_conditions" in data:
        return _conditions_table(data)
    if "jax" in data:
        return _jax_table(data)
    if "eps_pixels" in data:
        return _strength_table(data)
    return _evaluation_table(data) if "eps" in data else _speed_table(data)


class _Benchmarks(Preprocessor):
    """Every benchmark marker line becomes its table."""

    def __init__(self, md: Markdown, docs: Path) -> None:
        super().__init__(md)
        self.docs = docs

    def run(self, lines: list[str]) -> list[str]:
        out: list[str] = []
        for line in lines:
            match = _MARKER.match(line)
            out.extend(_render(match, self.docs).split("\n") if match else [line])
        return out


_INLINE_MATH = re.compile(r'<span class="arithmatex">\\\((.*?)\\\)</span>', re.DOTALL)
_DISPLAY_MATH = re.compile(r'<div class="arithmatex">\\\[(.*?)\\\]</div>', re.DOTALL)


_NAMED = {
    "\\|": "&#x02016;",
    "\\Vert": "&#x02016;",
    "\\lVert": "&#x02016;",
    "\\rVert": "&#x02016;",
    "\\vert": "|",
    "\\lvert": "|",
    "\\rvert": "|",
    "\\{": "{",
    "\\}": "}",
    "\\lbrace": "{",
    "\\rbrace": "}",
    "\\langle": "&#x027E8;",
    "\\rangle": "&#x027E9;",
    "\\arg": "arg",
}
"""What latex2mathml leaves as TeX in its output, as the character or name it stands for:
the delimiters of ``\\big``, ``\\Big``, ... (``\\Big\\|``) and the operator ``\\arg``."""

_LEFT_AS_TEX = re.compile(r"<(mo|mi)\b([^>]*)>(\\[A-Za-z]+|\\[|{}])</\1>")
_TEX_COMMAND = re.compile(r"\\[A-Za-z]+|\\[|{}]")


def _named(match: re.Match[str]) -> str:
    tag, attributes, command = match.groups()
    if command not in _NAMED:
        return match.group(0)
    return f"<{tag}{attributes}>{_NAMED[command]}</{tag}>"


def to_mathml(latex: str, display: str = "inline") -> str:
    """``latex`` as MathML, with what the converter leaves as TeX (``\\Big\\|``, ``\\arg``)
    replaced by the characters they stand for.

    Raises:
        ValueError: The MathML would still hold a TeX command, which a browser shows as
            text: rewrite the formula with commands the converter knows.
    """
    mathml = _LEFT_AS_TEX.sub(_named, latex_to_mathml(latex, display=display))
    left = _TEX_COMMAND.search(mathml)
    if left:
        raise ValueError(
            f"the formula {latex!r} renders {left.group(0)!r} as text: latex2mathml does not "
            "know it; rewrite the formula, or add the command to _NAMED"
        )
    return mathml


def _mathml(match: re.Match[str], display: str) -> str:
    return to_mathml(html.unescape(match.group(1)).strip(), display=display)


class _Mathematics(Postprocessor):
    """The LaTeX that arithmatex marked, as MathML (after the raw HTML is back in place)."""

    def run(self, text: str) -> str:
        text = _DISPLAY_MATH.sub(lambda match: _mathml(match, "block"), text)
        return _INLINE_MATH.sub(lambda match: _mathml(match, "inline"), text)


class SignattackDocs(Extension):
    """Benchmark tables and MathML; ``docs_dir`` is the folder benchmark paths start from."""

    def __init__(self, **kwargs: Any) -> None:
        self.config = {"docs_dir": ["docs", "the folder that benchmark paths are relative to"]}
        super().__init__(**kwargs)

    def extendMarkdown(self, md: Markdown) -> None:
        docs = Path(self.getConfig("docs_dir"))
        md.preprocessors.register(_Benchmarks(md, docs), "signattack_benchmarks", 40)
        md.postprocessors.register(_Mathematics(md), "signattack_mathematics", 5)


def makeExtension(**kwargs: Any) -> SignattackDocs:
    """The extension, as Python-Markdown loads it by module name."""
    return SignattackDocs(**kwargs)
