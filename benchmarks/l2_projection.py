"""The exact L2 projection onto ball and box: this version against an earlier one.

Everything runs in one process, interleaved: each round times every method (APGD over
``--apgd-repeats`` calls), in a shuffled order, and the report gives medians over the
rounds and their ratios, and for the step the median of the rounds' own ratios. Two parts:

- the projection alone, on batches of 128 digits-sized (64 values, pixels in [0, 255]) and
  CIFAR-sized (3x32x32, values in [0, 1]) samples in float32: a step of APGD-L2's size from a
  point on the sphere (``--spread`` radii long, along a random direction), projected by the
  current `L2Feasible.project` and by the one at ``--old-rev`` (the earlier ``core/l2.py``
  read from git and loaded beside the current one);
- APGD-L2 on the digits CNN (128 test digits, ``--steps`` steps, no early stop) with the
  current projection and with the earlier one, against APGD under L-inf, the same attack
  with a clip for its projection: the ratio is the L2 step's cost over the L-inf step's.

The time is the process's CPU time on one thread, which another load on the machine does
not inflate::

    python benchmarks/l2_projection.py --json docs/benchmarks/l2_projection.json
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import platform
import random
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

import numpy as np
import torch

from signattack import APGD
from signattack.core import l2 as current
from signattack.digits import load_digits, train_digits_cnn

ROOT = Path(__file__).resolve().parents[1]
BATCH = 128


def earlier_module(rev: str) -> ModuleType:
    """``src/signattack/core/l2.py`` at git revision ``rev``, loaded as a module of its own."""
    source = subprocess.run(
        ["git", "show", f"{rev}:src/signattack/core/l2.py"],
        cwd=ROOT,
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    folder = Path(tempfile.mkdtemp())
    path = folder / "earlier_l2.py"
    path.write_text(source)
    spec = importlib.util.spec_from_file_location("earlier_l2", path)
    if spec is None or spec.loader is None:
        raise RuntimeError(f"cannot load {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules["earlier_l2"] = module
    spec.loader.exec_module(module)
    return module


def earlier_project(
    module: ModuleType,
) -> Callable[[current.L2Feasible, torch.Tensor], torch.Tensor]:
    """The earlier projection, called on the current feasible set's fields."""

    def project(feasible: current.L2Feasible, v: torch.Tensor) -> torch.Tensor:
        fields = (feasible.x, feasible.eps, feasible.lower, feasible.upper, feasible.center)
        old = module.L2Feasible(*fields, feasible.radius, feasible.low, feasible.high)
        result: torch.Tensor = old.project(v)
        return result

    return project


def cpu_time(run: Callable[[], object], repeat: int) -> float:
    """CPU seconds per call of ``run``, over ``repeat`` calls."""
    start = time.process_time()
    for _ in range(repeat):
        run()
    return (time.process_time() - start) / repeat


def projection_cases(spread: float) -> dict[str, tuple[current.L2Feasible, torch.Tensor]]:
    """Per size, the feasible set and the points to project (seeded)."""
    generator = torch.Generator().manual_seed(0)
    cases = {}
    for name, shape, scale, eps in (
        ("digits 64", (BATCH, 1, 8, 8), 255.0, 0.5 * 255.0),
        ("CIFAR 3x32x32", (BATCH, 3, 32, 32), 1.0, 0.5),
    ):
        x = torch.rand(shape, generator=generator) * scale
        direction = torch.randn(shape, generator=generator)
        direction /= direction.flatten(1).norm(dim=1).reshape(-1, 1, 1, 1)
        feasible = current.L2.feasible(x, eps, 0.0, scale)
        start = feasible.project(x + eps * direction)
        step = torch.randn(shape, generator=generator)
        step /= step.flatten(1).norm(dim=1).reshape(-1, 1, 1, 1)
        cases[name] = (feasible, start + spread * eps * step)
    return cases


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--old-rev", default="HEAD", help="git revision of the earlier l2.py")
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--apgd-repeats", type=int, default=3, help="APGD calls per round")
    parser.add_argument("--spread", type=float, default=2.0, help="step length, in radii")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    torch.set_num_threads(1)
    rng = random.Random(0)
    old = earlier_project(earlier_module(args.old_rev))
    revision = subprocess.run(
        ["git", "rev-parse", args.old_rev], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.strip()

    times: dict[str, list[float]] = {}
    agreement: dict[str, float] = {}
    methods: list[tuple[str, Callable[[], object], int]] = []
    for name, (feasible, v) in projection_cases(args.spread).items():
        new_point, old_point = feasible.project(v), old(feasible, v)
        gap = (new_point.double() - old_point.double()).flatten(1).norm(dim=1)
        agreement[name] = float(gap.max() / float(feasible.eps))
        repeat = 200 if "digits" in name else 10
        methods.append((f"project {name}, current", lambda f=feasible, p=v: f.project(p), repeat))
        methods.append((f"project {name}, earlier", lambda f=feasible, p=v: old(f, p), repeat))

    data = load_digits(seed=0)
    model = train_digits_cnn(data, epochs=3, seed=0).eval()
    x, y = data.x_test[:BATCH], data.y_test[:BATCH]
    apgd_l2 = APGD(0.5 * 255.0, args.steps, norm="l2", seed=0)
    apgd_linf = APGD(8.0, args.steps, seed=0)
    now = current.L2Feasible.project

    def with_earlier() -> object:
        current.L2Feasible.project = old  # type: ignore[method-assign]
        try:
            return apgd_l2(model, x, y)
        finally:
            current.L2Feasible.project = now  # type: ignore[method-assign]

    methods.append(("APGD-L2 step, current", lambda: apgd_l2(model, x, y), args.apgd_repeats))
    methods.append(("APGD-L2 step, earlier", with_earlier, args.apgd_repeats))
    methods.append(("APGD-Linf step", lambda: apgd_linf(model, x, y), args.apgd_repeats))
    for _, run, _ in methods:  # warm up
        run()
    for round_ in range(args.rounds):
        order = list(methods)
        rng.shuffle(order)
        for name, run, repeat in order:
            seconds = cpu_time(run, repeat)
            if name.startswith("APGD"):
                seconds /= args.steps
            times.setdefault(name, []).append(seconds)
        print(f"round {round_ + 1} of {args.rounds}", flush=True)

    median = {name: statistics.median(values) for name, values in times.items()}
    ratios = {
        f"{name}: earlier / current": median[f"project {name}, earlier"]
        / median[f"project {name}, current"]
        for name in agreement
    }
    ratios["APGD-L2 step, current / APGD-Linf step"] = (
        median["APGD-L2 step, current"] / median["APGD-Linf step"]
    )
    steps_l2, steps_linf = times["APGD-L2 step, current"], times["APGD-Linf step"]
    per_round = [mine / theirs for mine, theirs in zip(steps_l2, steps_linf, strict=True)]
    ratios["APGD-L2 step, current / APGD-Linf step, median of rounds"] = statistics.median(
        per_round
    )
    ratios["APGD-L2 step, earlier / APGD-Linf step"] = (
        median["APGD-L2 step, earlier"] / median["APGD-Linf step"]
    )
    report = {
        "earlier_revision": revision,
        "time": "CPU seconds (one thread), median over rounds; APGD per step",
        "rounds": args.rounds,
        "apgd_repeats": args.apgd_repeats,
        "steps": args.steps,
        "spread": args.spread,
        "batch": BATCH,
        "device": platform.processor() or platform.machine(),
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "numpy": np.__version__,
        "median_seconds": median,
        "ratios": ratios,
        "largest_difference_over_eps": agreement,
    }
    print(json.dumps({"ratios": ratios, "agreement": agreement}, indent=2))
    if args.json is not None:
        args.json.write_text(json.dumps(report, indent=2) + "\n")
        print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
