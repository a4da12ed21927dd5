"""The package's public surface: imports, __all__, docstrings, typing marker, version, demo."""

from __future__ import annotations

import importlib.metadata
import importlib.resources
import inspect
import json
import subprocess
import sys

import pytest

import signattack
import signattack.backends
import signattack.core


def test_import_does_not_import_torch():
    code = "import sys, signattack; assert 'torch' not in sys.modules, 'torch was imported'"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_numpy_attack_runs_without_importing_torch():
    code = (
        "import sys, numpy as np\n"
        "from signattack import IteratedSign, LinearClassifier\n"
        "m = LinearClassifier(np.eye(3, 4) * 0.01, np.zeros(3))\n"
        "x = np.full((2, 4), 100.0); y = np.array([0, 1])\n"
        "assert np.abs(IteratedSign(8, 3)(m, x, y) - x).max() == 8\n"
        "assert 'torch' not in sys.modules\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def _isort_key(name: str) -> tuple[int, str]:
    """Constants, then classes, then the rest: the order ruff's RUF022 keeps."""
    kind = 0 if name.isupper() else 1 if name[0].isupper() else 2
    return kind, name


@pytest.mark.parametrize("module", [signattack, signattack.core, signattack.backends])
def test_all_is_sorted_and_every_public_name_is_documented(module):
    assert list(module.__all__) == sorted(module.__all__, key=_isort_key)
    for name in module.__all__:
        obj = getattr(module, name)
        if name == "__version__":
            continue
        if inspect.isclass(obj) or inspect.isfunction(obj):
            assert inspect.getdoc(obj), f"{module.__name__}.{name} has no docstring"


def test_public_methods_are_documented():
    for cls in (signattack.IteratedSign, signattack.FGSM, signattack.LinearClassifier):
        for name, member in inspect.getmembers(cls, inspect.isfunction):
            if not name.startswith("_") or name == "__call__":
                assert inspect.getdoc(member), f"{cls.__name__}.{name} has no docstring"


def test_version_and_typing_marker():
    assert signattack.__version__ == importlib.metadata.version("signattack")
    assert importlib.resources.files("signattack").joinpath("py.typed").is_file()


def test_project_urls_name_the_docs_the_source_and_the_changelog():
    from importlib.metadata import metadata

    urls = dict(
        entry.split(", ", 1) for entry in metadata("signattack").get_all("Project-URL") or []
    )
    assert {"Documentation", "Source", "Changelog", "Issues"} <= set(urls)
    assert all(url.startswith("https://") for url in urls.values())


@pytest.mark.slow
def test_demo_smoke_run_writes_table_figure_and_json(tmp_path):
    out = tmp_path / "demo"
    completed = subprocess.run(
        [sys.executable, "-m", "signattack", "demo", "--smoke", "--out", str(out)],
        check=True,
        capture_output=True,
        text=True,
    )
    assert "IteratedSign" in completed.stdout
    assert "FGSM" in completed.stdout
    png = (out / "digits_attack.png").read_bytes()
    assert png.startswith(b"\x89PNG")
    assert len(png) > 10_000
    report = json.loads((out / "results.json").read_text())
    assert len(report["fgsm_accuracy"]) == len(report["eps"]) == len(report["iterated_accuracy"])
    assert all(0 <= a <= report["clean_accuracy"] + 0.02 for a in report["iterated_accuracy"])
    assert len(report["mean_loss_by_step"]) == report["steps"] + 1


def test_lazy_probe_names_are_the_weight_space_module():
    import signattack.probes.weights as weights

    assert set(weights.__all__) == signattack.probes._WEIGHT_SPACE
    assert signattack.probes.scale_invariance is weights.scale_invariance
    with pytest.raises(AttributeError, match="has no attribute 'nothing'"):
        _ = signattack.probes.nothing


def test_torch_only_names_say_how_to_install_torch_when_it_is_missing():
    script = """
import sys
sys.modules["torch"] = None  # as if torch were not installed
import signattack
for load in (lambda: signattack.param_groups, lambda: signattack.accelerate,
             lambda: __import__("signattack.models"), lambda: __import__("signattack.params")):
    try:
        load()
    except ModuleNotFoundError as error:
        print(error)
"""
    completed = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True
    )
    lines = completed.stdout.strip().splitlines()
    assert len(lines) == 4
    assert all(line.endswith('pip install "signattack[torch]"') for line in lines), lines
    assert lines[0].startswith("signattack.param_groups needs PyTorch")
