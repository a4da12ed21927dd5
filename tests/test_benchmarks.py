"""The benchmark scripts run end to end (tiny sizes, on the CPU): the GPU table's script
in particular must work the first time it meets a GPU."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import HANG_LIMIT

ROOT = Path(__file__).resolve().parents[1]


def _rehearse_gpu_script(out, **settings):
    """Run benchmarks/gpu.sh on the CPU with tiny sizes; the table it wrote."""
    environment = {
        **os.environ,
        "DEVICE": "cpu",
        "ROUNDS": "1",
        "STEPS": "1",
        "OUT": str(out),
        "PYTHON": sys.executable,
        # The script's own limits are for a GPU lent for minutes; rehearsed here, a part may
        # take many times longer on a machine under load, and must not time out for it.
        "TIME_TESTS": str(HANG_LIMIT),
        "TIME_SPEED": str(HANG_LIMIT),
        "TIME_STRENGTH": str(HANG_LIMIT),
        **settings,
    }
    completed = subprocess.run(
        ["bash", str(ROOT / "benchmarks" / "gpu.sh")],
        env=environment,
        capture_output=True,
        text=True,
        timeout=HANG_LIMIT,
    )
    assert completed.returncode == 0, completed.stderr[-2000:]
    return json.loads((out / "gpu.json").read_text())


@pytest.mark.slow
def test_the_gpu_script_rehearses_on_the_cpu_and_writes_the_table(tmp_path):
    table = _rehearse_gpu_script(tmp_path, BATCHES="4 8")
    assert table["tests"]["exit_status"] == 0
    assert table["missing"] == []
    assert [speed["batch"] for speed in table["speed"]] == [4, 8]
    for speed in table["speed"]:
        methods = {row["method"] for row in speed["rows"]}
        assert {"floor (autograd loop)", "signattack IteratedSign"} <= methods
        assert "signattack compiled bf16 + cl" in methods
    strength = table["strength"]["rows"]
    assert strength[0]["variant"] == "float32 eager (reference)"
    assert all(0 <= row["pixel_agreement"] <= 1 for row in strength)
    assert all(row["equal_strength"] for row in strength)  # on the real digits


def test_a_part_of_the_gpu_script_that_runs_out_of_time_is_named_and_the_rest_kept(tmp_path):
    table = _rehearse_gpu_script(tmp_path, BATCHES="4", TIME_SPEED="1", TIME_STRENGTH="1")
    assert table["tests"]["exit_status"] == 0  # the GPU tests ran (skipped on the CPU)
    assert table["speed"] == []
    assert table["strength"] is None
    assert table["missing"] == [
        "the speeds at batch 4: timed out",
        "the strength of the fast variants: timed out",
    ]


@pytest.mark.slow
def test_the_l2_parity_script_runs_quickly_and_its_rows_add_up(tmp_path):
    pytest.importorskip("pyautoattack")
    out = tmp_path / "l2.json"
    completed = subprocess.run(
        [
            sys.executable,
            str(ROOT / "benchmarks" / "l2_parity.py"),
            "--quick",
            "--repeats",
            "2",
            "--json",
            str(out),
        ],
        env={**os.environ, "OMP_NUM_THREADS": "1"},
        capture_output=True,
        text=True,
        timeout=HANG_LIMIT,
    )
    assert completed.returncode == 0, completed.stderr[-2000:]
    table = json.loads(out.read_text())
    assert table["parity"] is True
    assert table["norm"] == "l2"
    samples = table["samples"]
    attacks = [row["attack"] for row in table["rows"]]
    assert attacks == ["standard suite", "APGD-CE", "APGD-T", "FAB-T", "Square"]
    for row in table["rows"]:
        ours, theirs = row["robust"]["ours"], row["robust"]["theirs"]
        assert row["ours"] == pytest.approx(ours / samples)
        assert row["theirs"] == pytest.approx(theirs / samples)
        # Broken by one only: the difference of the robust counts, both ways.
        assert ours - theirs == row["only_theirs_breaks"] - row["only_ours_breaks"]
        assert ours <= round(row["clean"] * samples)
        assert theirs <= round(row["clean"] * samples)
        assert row["time_ratio"] > 0
        assert row["repeats"] == 2
        seconds = row["seconds"]
        assert row["time_ratio"] == pytest.approx(seconds["ours"] / seconds["theirs"])
    suite = next(line for line in table["summary"] if line["attack"] == "standard suite")
    first = table["rows"][0]["robust"]
    assert suite["mean_difference_samples"] == first["ours"] - first["theirs"]
