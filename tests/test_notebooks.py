"""The tutorials' notebooks: generated from the examples (never drifted), and each runs at
smoke size and shows its figures, with progress bars where the example has long loops."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import HANG_LIMIT

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tools.notebooks import NOTEBOOKS_OF_TUTORIALS, text_of  # noqa: E402

WITH_BARS = {"demo", "cifar10_train", "cifar10_attack", "bn_scale_invariance", "robustness"}
"""The notebooks whose examples train or attack in a loop long enough for a progress bar."""


@pytest.mark.parametrize("notebook", NOTEBOOKS_OF_TUTORIALS, ids=lambda n: n.name)
def test_the_committed_notebook_is_the_one_its_example_gives(notebook):
    path = ROOT / "notebooks" / f"{notebook.name}.ipynb"
    assert path.is_file(), f"run python tools/notebooks.py to write {path.name}"
    assert path.read_text() == text_of(notebook), f"{path.name} is stale: run tools/notebooks.py"


def test_every_tutorial_with_an_example_has_a_notebook_and_a_colab_link():
    examples = {n.example for n in NOTEBOOKS_OF_TUTORIALS if n.example}
    scripts = {p.name for p in (ROOT / "examples").glob("*.py") if not p.name.startswith("_")}
    assert scripts == examples
    for notebook in NOTEBOOKS_OF_TUTORIALS:
        page = (ROOT / "docs" / "tutorials" / notebook.tutorial).resolve().read_text()
        assert f"notebooks/{notebook.name}.ipynb" in page
        cells = json.loads(text_of(notebook))["cells"]
        assert "colab.research.google.com" in "".join(cells[0]["source"])


def _outputs(executed: dict) -> list[dict]:
    return [
        output
        for cell in executed["cells"]
        if cell["cell_type"] == "code"
        for output in cell["outputs"]
    ]


@pytest.mark.slow
@pytest.mark.parametrize("notebook", NOTEBOOKS_OF_TUTORIALS, ids=lambda n: n.name)
def test_the_notebook_runs_and_shows_its_figures(notebook, tmp_path):
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    shutil.copy(ROOT / "notebooks" / f"{notebook.name}.ipynb", tmp_path)
    document = nbformat.read(tmp_path / f"{notebook.name}.ipynb", as_version=4)
    client = nbclient.NotebookClient(
        document,
        timeout=HANG_LIMIT,
        kernel_name="python3",
        resources={"metadata": {"path": str(tmp_path)}},
    )
    client.execute()
    outputs = _outputs(json.loads(nbformat.writes(document)))
    kinds = {kind for output in outputs for kind in output.get("data", {})}
    errors = [output for output in outputs if output["output_type"] == "error"]
    assert not errors
    assert "image/png" in kinds, kinds
    texts = "".join(
        "".join(output.get("text", "")) + "".join(output.get("data", {}).get("text/plain", ""))
        for output in outputs
    )
    assert "tensor([" not in texts  # no array dumps
    assert "Parameter containing" not in texts
    if notebook.name in WITH_BARS:
        assert "application/vnd.jupyter.widget-view+json" in kinds, kinds
    # The installer cell did nothing here: signattack is importable.
    assert not any("pip install" in "".join(output.get("text", "")) for output in outputs)


def test_the_generator_finds_no_stale_notebook():
    completed = subprocess.run(
        [sys.executable, str(ROOT / "tools" / "notebooks.py"), "--check"],
        capture_output=True,
        text=True,
        timeout=HANG_LIMIT,
    )
    assert completed.returncode == 0, completed.stderr
