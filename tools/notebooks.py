"""The tutorials' notebooks, generated from the examples: one source, so that the scripts,
the tutorials and the notebooks cannot drift apart.

Each notebook carries its example's source as it is in ``examples/`` (written to the
notebook's folder by its first cells), installs signattack where it is missing (Colab), runs
the example at the tutorial's settings or at smoke size, and shows the figures and the
results it wrote::

    python tools/notebooks.py            # write notebooks/*.ipynb
    python tools/notebooks.py --check    # fail if a committed notebook is not the generated one

A test executes every notebook at smoke size (``nbclient``) and checks its outputs.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES, TUTORIALS, NOTEBOOKS = ROOT / "examples", ROOT / "docs" / "tutorials", ROOT / "notebooks"
REPOSITORY = "signattack/signattack"
"""Where the notebooks live on GitHub, for their "Open in Colab" links."""

SITE = "https://signattack.github.io/signattack"


@dataclass(frozen=True)
class Notebook:
    """One tutorial's notebook.

    Attributes:
        name: The notebook's file name, without ``.ipynb``.
        tutorial: The tutorial page it goes with (under ``docs/tutorials``), or a concept page.
        example: The example script it runs (under ``examples/``).
        arguments: The example's arguments besides ``--out`` (its settings).
        extras: What to install besides ``signattack[demo]`` where it is missing.
        part: The part of the problem set it belongs to, for the map of the problem set.
        code: What the notebook runs where the library itself is the example (the demo).
    """

    name: str
    tutorial: str
    example: str
    arguments: tuple[str, ...] = ()
    extras: tuple[str, ...] = ()
    part: str = ""
    code: str = ""


DEMO = """from pathlib import Path

from signattack.demo import run_demo

SMOKE = True  # False: the tutorial's settings (about 10 s on two CPU cores)
report = run_demo(Path("out/demo"), epochs=2 if SMOKE else 12, steps=3 if SMOKE else 10)
print(report.table())"""

NOTEBOOKS_OF_TUTORIALS = (
    Notebook("demo", "demo.md", "", code=DEMO),
    Notebook("resnet18", "resnet18.md", "resnet18_params.py", extras=("torchvision",), part="P1"),
    Notebook(
        "cifar10_train",
        "cifar10-train.md",
        "cifar10_train.py",
        ("--synthetic", "--data-dir", "data/synthetic-cifar10"),
        part="P2",
    ),
    Notebook(
        "cifar10_attack", "cifar10-attack.md", "cifar10_attack.py", ("--data", "digits"), part="P3"
    ),
    Notebook("bn_scale_invariance", "bn-scale-invariance.md", "bn_scale_invariance.py", part="P4"),
    Notebook(
        "matrix_factorization", "matrix-factorization.md", "matrix_factorization.py", part="P5"
    ),
    Notebook("rnn", "rnn.md", "rnn_gradients.py", part="P6"),
    Notebook("robustness", "robustness.md", "robustness_curve.py"),
    Notebook("adversarial_training", "adversarial-training.md", "adversarial_training.py"),
    Notebook("loss_landscape", "loss-landscape.md", "loss_landscape.py"),
    Notebook("gradient_masking", "../concepts/gradient-masking.md", "gradient_masking.py"),
    Notebook("jax", "jax.md", "jax_equinox.py", extras=("jax", "equinox")),
)
"""Every tutorial with an example, in the order of the problem set."""


def _lines(text: str) -> list[str]:
    """A cell's source as nbformat stores it: lines that keep their line ends."""
    lines = text.splitlines(keepends=True)
    if lines:
        lines[-1] = lines[-1].rstrip("\n")
    return lines


def _markdown(text: str) -> dict[str, object]:
    return {"cell_type": "markdown", "metadata": {}, "source": _lines(text)}


def _code(text: str) -> dict[str, object]:
    return {
        "cell_type": "code",
        "execution_count": None,
        "metadata": {},
        "outputs": [],
        "source": _lines(text),
    }


def _title(page: Path) -> str:
    """The page's title: its first heading (after any front matter)."""
    for line in page.read_text().splitlines():
        if line.startswith("# "):
            return line.removeprefix("# ").strip()
    raise ValueError(f"{page} has no title")


def build(notebook: Notebook) -> dict[str, object]:
    """The notebook as nbformat 4 JSON."""
    page = (TUTORIALS / notebook.tutorial).resolve()
    title = _title(page)
    colab = f"https://colab.research.google.com/github/{REPOSITORY}/blob/main/notebooks/{notebook.name}.ipynb"
    web_page = page.relative_to(ROOT / "docs").with_suffix("")
    module = notebook.example.removesuffix(".py")
    out = f"out/{notebook.name}"
    packages = ", ".join(json.dumps(p) for p in ("signattack[demo]", *notebook.extras))
    settings = ", ".join(json.dumps(a) for a in (*notebook.arguments, "--out", out))
    source = f"`examples/{notebook.example}`" if notebook.example else "the library's demo"
    cells = [
        _markdown(
            f"# {title}\n\n"
            f"[![Open in Colab](https://colab.research.google.com/assets/colab-badge.svg)]({colab})\n\n"
            f"The notebook of the tutorial [{title}]({SITE}/{web_page.as_posix()}/): it runs "
            f"{source} and shows what it finds"
            + (
                ", with the example's source written beside the notebook exactly as it is in "
                "the repository"
                if notebook.example
                else ""
            )
            + ". `SMOKE = True` runs it in seconds; `False` at the tutorial's settings."
        ),
        _code(
            "import importlib.util\n"
            "import subprocess\n"
            "import sys\n\n"
            "# On Colab (or anywhere signattack is missing), install it and what this needs.\n"
            f"needed = [{packages}]\n"
            'if importlib.util.find_spec("signattack") is None:\n'
            '    command = [sys.executable, "-m", "pip", "install", "-q", *needed]\n'
            "    subprocess.run(command, check=True)"
        ),
        *_example_cells(notebook, module, settings),
        _markdown("## What it found\n\nThe figures and the measured results it wrote."),
        _code(
            "import json\n"
            "from pathlib import Path\n\n"
            "from IPython.display import JSON, Image, display\n\n"
            f'for figure in sorted(Path("{out}").glob("*.png")):\n'
            "    display(Image(filename=figure))\n"
            f'results = Path("{out}") / "results.json"\n'
            "if results.exists():\n"
            "    display(JSON(json.loads(results.read_text()), expanded=False))"
        ),
    ]
    for index, cell in enumerate(cells):  # stable ids: a regenerated notebook is the same file
        cell["id"] = f"{notebook.name}-{index}"
    return {
        "cells": cells,
        "metadata": {
            "kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"},
            "language_info": {"name": "python"},
        },
        "nbformat": 4,
        "nbformat_minor": 5,
    }


def _example_cells(notebook: Notebook, module: str, settings: str) -> list[dict[str, object]]:
    """The cells that bring in the example and run it; the demo's, for the library's demo."""
    if notebook.code:
        return [_markdown("## Run it"), _code(notebook.code)]
    return [
        _code(f"%%writefile _common.py\n{(EXAMPLES / '_common.py').read_text()}"),
        _code(f"%%writefile {notebook.example}\n{(EXAMPLES / notebook.example).read_text()}"),
        _markdown("## Run it\n\nThe example's settings, as on the command line."),
        _code(
            "import sys\n\n"
            f"import {module}\n\n"
            "SMOKE = True  # False: the tutorial's settings (minutes to hours)\n"
            f"settings = [{settings}]\n"
            f'sys.argv = ["{notebook.example}", *settings, *(["--smoke"] if SMOKE else [])]\n'
            f"{module}.main()"
        ),
    ]


def text_of(notebook: Notebook) -> str:
    """The notebook file's text."""
    return json.dumps(build(notebook), indent=1, ensure_ascii=False) + "\n"


def main() -> int:
    cli = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    cli.add_argument("--check", action="store_true", help="compare instead of writing")
    args = cli.parse_args()
    NOTEBOOKS.mkdir(exist_ok=True)
    stale = []
    for notebook in NOTEBOOKS_OF_TUTORIALS:
        path = NOTEBOOKS / f"{notebook.name}.ipynb"
        text = text_of(notebook)
        if args.check:
            if not path.is_file() or path.read_text() != text:
                stale.append(path.name)
        else:
            path.write_text(text)
    if stale:
        print(
            f"stale notebooks (run python tools/notebooks.py): {', '.join(stale)}", file=sys.stderr
        )
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
