"""MkDocs hook: render the benchmark JSON files as tables at build time.

A line ``{{ benchmark "benchmarks/cpu.json" }}`` in a page becomes the table of that file,
so the page always shows what the benchmark scripts last wrote.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

_MARKER = re.compile(r'^\{\{ benchmark "([^"]+)" \}\}$', re.MULTILINE)


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


def _render(match: re.Match[str], docs: Path) -> str:
    data = json.loads((docs / match.group(1)).read_text())
    if "eps_pixels" in data:
        return _strength_table(data)
    return _evaluation_table(data) if "eps" in data else _speed_table(data)


def on_page_markdown(markdown: str, page: Any, config: Any, files: Any) -> str:
    """Replace every benchmark marker with its table."""
    docs = Path(config["docs_dir"])
    return _MARKER.sub(lambda match: _render(match, docs), markdown)
