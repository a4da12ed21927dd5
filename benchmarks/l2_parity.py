"""signattack's L2 standard suite against the authors' AutoAttack on four digits networks.

The L2 counterpart of ``autoattack_parity.py``. On the first ``--samples`` real test digits
and the digits CNN four ways: normally trained; trained on L2PGD's examples (the
adversarial-training example's training, in L2); its logits times 1000 (where cross-entropy
saturates); and behind an 8-level input quantizer (the gradient-masking example's, which
hides the gradient). Per network, radius and seed, ``standard_attacks(norm="l2", seed=s)``
against ``AutoAttack(norm="L2", version="standard", seed=s)``: robust accuracy, the samples
one breaks and the other does not, and the time; on the normal network, each member alone
against its counterpart too::

    python benchmarks/l2_parity.py --json docs/benchmarks/l2_parity.json

Radii are L2 lengths in ``[0, 1]`` units (the authors' convention): the authors' code
attacks the network behind ``Rescaled``, from ``[0, 1]`` to pixels, at ``eps``; signattack
attacks it in pixels at ``255 * eps``, the same ball. The time is the process's CPU time
(one thread), which another load on the machine does not inflate; the wall time's ratio
is recorded too. ``--quick`` runs a reduced version in well under a minute.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

from signattack import APGD, APGDT, FABT, L2PGD, Square
from signattack.digits import load_digits, train_digits_cnn
from signattack.evaluation import evaluate, standard_attacks
from signattack.models import DigitsCNN, Rescaled

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "examples"))
from adversarial_training import train
from gradient_masking import Preprocessed, quantize

PIXELS = 255.0
"""Pixels per unit of the ``[0, 1]`` scale: an L2 radius ``r`` is ``255 r`` in pixels."""


class Scaled(nn.Module):
    """The network's logits times ``factor``: the same decisions, a saturated cross-entropy."""

    def __init__(self, network: nn.Module, factor: float) -> None:
        super().__init__()
        self.network, self.factor = network, factor

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.network(x) * self.factor


NAMES = ("normal", "L2PGD-trained", "logits x1000", "quantized input (8 levels)")


def networks(
    names: list[str], seed: int, epochs: int, pgd_steps: int, train_eps: float
) -> dict[str, nn.Module]:
    """The networks named; the robust one trained on L2PGD at ``train_eps`` ([0, 1] units),
    trained only if asked for."""
    data = load_digits(seed=0)
    normal = train_digits_cnn(data, epochs=epochs, seed=seed).eval()
    made: dict[str, nn.Module] = {
        "normal": normal,
        "logits x1000": Scaled(normal, 1000.0).eval(),
        "quantized input (8 levels)": Preprocessed(quantize, normal).eval(),
    }
    if "L2PGD-trained" in names:
        radius = train_eps * PIXELS
        step = 2.5 * radius / pgd_steps
        pgd = L2PGD(radius, pgd_steps, step_size=step, random_start=True, seed=seed)
        made["L2PGD-trained"] = train(
            DigitsCNN, data.x_train, data.y_train, pgd, epochs=epochs, seed=seed
        )
    return {name: made[name].eval() for name in names}


Run = Callable[[nn.Module, torch.Tensor, torch.Tensor, float, int], torch.Tensor]
"""Attacks a network at an L2 radius ([0, 1] units) with a seed; which samples stay robust."""


def ours_suite(steps: int, queries: int) -> Run:
    def run(model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float, seed: int):
        suite = standard_attacks(steps, queries=queries, seed=seed, norm="l2")
        radius = eps * PIXELS
        report = evaluate(model, [(x, y)], suite, [radius], progress=False)
        return torch.tensor(report.robust_correct[radius])

    return run


def theirs(attacks: list[str] | None, steps: int, queries: int) -> Run:
    def run(model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float, seed: int):
        from pyautoattack import AutoAttack

        version = "standard" if attacks is None else "custom"
        attack = AutoAttack(
            Rescaled(model, (0.0, 1.0), (0.0, PIXELS)),
            norm="L2",
            eps=eps,
            seed=seed,
            version=version,
            attacks=attacks,
            device="cpu",
        )
        # The standard version's settings (set by the standard version itself, and by hand
        # for a member alone), with the budget asked for.
        attack.apgd.n_restarts = attack.fab.n_restarts = attack.apgd_targeted.n_restarts = 1
        attack.apgd_targeted.n_target_classes = attack.fab.n_target_classes = 9
        attack.apgd.n_iter = attack.apgd_targeted.n_iter = attack.fab.n_iter = steps
        attack.square.n_queries = queries
        with torch.random.fork_rng(devices=[]), contextlib.redirect_stdout(io.StringIO()):
            adversarial, _ = attack.run_standard_evaluation(x / PIXELS, y, batch_size=len(y))
        with torch.no_grad():
            return model(adversarial * PIXELS).argmax(1) == y

    return run


def ours_member(make: Callable[[float, int], object]) -> Run:
    def run(model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float, seed: int):
        radius = eps * PIXELS
        report = evaluate(model, [(x, y)], make(radius, seed), [radius], progress=False)
        return torch.tensor(report.robust_correct[radius])

    return run


def members(steps: int, queries: int) -> dict[str, tuple[Run, Run]]:
    """Each member of the suite, signattack's and the authors', with the suite's settings."""
    return {
        "APGD-CE": (
            ours_member(lambda e, s: APGD(e, steps, loss="ce", seed=s, norm="l2")),
            theirs(["apgd-ce"], steps, queries),
        ),
        "APGD-T": (
            ours_member(lambda e, s: APGDT(e, steps, seed=s, norm="l2")),
            theirs(["apgd-t"], steps, queries),
        ),
        "FAB-T": (
            ours_member(lambda e, s: FABT(e, steps, seed=s, norm="l2")),
            theirs(["fab-t"], steps, queries),
        ),
        "Square": (
            ours_member(lambda e, s: Square(e, queries, seed=s, norm="l2")),
            theirs(["square"], steps, queries),
        ),
    }


def _timed(run: Run, model, x, y, eps: float, seed: int) -> tuple[torch.Tensor, float, float]:
    wall, cpu = time.perf_counter(), time.process_time()
    robust = run(model, x, y, eps, seed)
    return robust, time.process_time() - cpu, time.perf_counter() - wall


def compare(
    ours: Run, reference: Run, model, x, y, eps: float, seed: int, repeats: int = 1
) -> dict[str, object]:
    """Both runs ``repeats`` times, alternately: the verdicts of the first (the runs are
    seeded, so every repeat decides alike) and the median CPU and wall times of each."""
    timed: dict[str, list[tuple[torch.Tensor, float, float]]] = {"ours": [], "theirs": []}
    for _ in range(repeats):
        timed["ours"].append(_timed(ours, model, x, y, eps, seed))
        timed["theirs"].append(_timed(reference, model, x, y, eps, seed))
    for side, found in timed.items():
        if any(not torch.equal(found[0][0], again[0]) for again in found[1:]):
            raise RuntimeError(f"{side}: the repeats of one seeded run decided differently")
    mine, other = timed["ours"][0][0], timed["theirs"][0][0]
    cpu = {side: statistics.median(t[1] for t in found) for side, found in timed.items()}
    wall = {side: statistics.median(t[2] for t in found) for side, found in timed.items()}
    return {
        "ours": float(mine.float().mean()),
        "theirs": float(other.float().mean()),
        "only_ours_breaks": int((~mine & other).sum()),
        "only_theirs_breaks": int((mine & ~other).sum()),
        "robust": {"ours": int(mine.sum()), "theirs": int(other.sum())},
        "time_ratio": cpu["ours"] / cpu["theirs"],
        "wall_time_ratio": wall["ours"] / wall["theirs"],
        "seconds": cpu,
        "repeats": repeats,
    }


def summary(rows: list[dict[str, object]], samples: int) -> list[dict[str, object]]:
    """Per network, radius and attack, over seeds: the mean difference in samples (ours
    minus theirs; negative is stricter) and the worst time ratio."""
    groups: dict[tuple[object, object, object], list[dict[str, object]]] = {}
    for row in rows:
        groups.setdefault((row["network"], row["eps"], row["attack"]), []).append(row)
    out = []
    for (network, eps, attack), found in groups.items():
        differences = [r["robust"]["ours"] - r["robust"]["theirs"] for r in found]
        out.append(
            {
                "network": network,
                "eps": eps,
                "attack": attack,
                "seeds": len(found),
                "mean_difference_samples": sum(differences) / len(differences),
                "largest_difference_points": max(abs(d) for d in differences) * 100 / samples,
                "largest_time_ratio": max(float(r["time_ratio"]) for r in found),
            }
        )
    return out


def merged(paths: list[Path]) -> dict[str, object]:
    """Several runs' files (other networks, other seeds) as one, the summary recomputed."""
    parts = [json.loads(path.read_text()) for path in paths]
    first = parts[0]
    for part in parts[1:]:
        for key in ("samples", "steps", "queries", "train_eps"):
            if part[key] != first[key]:
                raise SystemExit(f"--merge: {key} differs: {first[key]} and {part[key]}")
    rows = [row for part in parts for row in part["rows"]]
    return {**first, "rows": rows, "summary": summary(rows, first["samples"])}


def main() -> None:
    cli = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    cli.add_argument("--samples", type=int, default=200)
    cli.add_argument("--eps", default="0.5,1", help="L2 radii in [0, 1] units")
    cli.add_argument("--train-eps", type=float, default=0.5, help="the robust network's radius")
    cli.add_argument("--seeds", default="0,1,2", help="seeds of every network's suite")
    cli.add_argument("--networks", default=",".join(NAMES), help="comma-separated names")
    cli.add_argument("--no-members", action="store_true", help="skip the members alone")
    cli.add_argument(
        "--repeats", type=int, default=1, help="runs of each side per row, alternately: median"
    )
    cli.add_argument("--quick", action="store_true", help="a smoke run: tiny budget, one net")
    cli.add_argument("--merge", type=Path, nargs="+", help="combine these runs' files")
    cli.add_argument("--json", type=Path)
    args = cli.parse_args()
    report = merged(args.merge) if args.merge else measure(args)
    for line in report["summary"]:
        print(json.dumps(line))
    if args.json is not None:
        args.json.write_text(json.dumps(report, indent=2) + "\n")
        print(f"wrote {args.json}")


def measure(args: argparse.Namespace) -> dict[str, object]:
    """The rows of every pair asked for, and their summary."""
    torch.set_num_threads(1)  # CPU time then measures the work, whatever else runs
    steps, queries, epochs, pgd_steps = 100, 5000, 8, 7
    names, seeds = args.networks.split(","), [int(s) for s in args.seeds.split(",")]
    unknown = sorted(set(names) - set(NAMES))
    if unknown:
        raise SystemExit(f"--networks: expected names among {list(NAMES)}, got {unknown}")
    if args.quick:
        args.samples, seeds, args.eps, names = min(args.samples, 12), [0], "0.5", ["normal"]
        steps, queries, epochs, pgd_steps = 5, 50, 1, 1
    data = load_digits(seed=0)
    x, y = data.x_test[: args.samples], data.y_test[: args.samples]
    radii = [float(e) for e in args.eps.split(",")]
    rows: list[dict[str, object]] = []
    for name, model in networks(names, 0, epochs, pgd_steps, args.train_eps).items():
        with torch.no_grad():
            clean = float((model(x).argmax(1) == y).float().mean())
        for eps in radii:
            runs: list[tuple[str, int, Run, Run]] = [
                ("standard suite", seed, ours_suite(steps, queries), theirs(None, steps, queries))
                for seed in seeds
            ]
            if name == "normal" and not args.no_members:
                runs += [(m, 0, a, b) for m, (a, b) in members(steps, queries).items()]
            for attack, seed, mine, reference in runs:
                found = compare(mine, reference, model, x, y, eps, seed, args.repeats)
                row = {"network": name, "clean": clean, "eps": eps, "seed": seed}
                rows.append({**row, "attack": attack, **found})
                print(json.dumps(rows[-1]), flush=True)
                if args.json is not None:  # every pair as it comes: a long run keeps its rows
                    args.json.write_text(json.dumps(header(args, steps, queries, rows)) + "\n")
    return header(args, steps, queries, rows)


def header(
    args: argparse.Namespace, steps: int, queries: int, rows: list[dict[str, object]]
) -> dict[str, object]:
    """The file's contents: the settings, the rows and their summary."""
    return {
        "parity": True,
        "norm": "l2",
        "eps_units": "[0, 1]",
        "train_eps": args.train_eps,
        "time": "process CPU time, one thread",
        "device": platform.processor() or platform.machine(),
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "samples": args.samples,
        "steps": steps,
        "queries": queries,
        "rows": rows,
        "summary": summary(rows, args.samples),
    }


if __name__ == "__main__":
    main()
