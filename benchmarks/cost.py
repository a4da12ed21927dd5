"""What the worst case costs: the model passes of the standard suite, the fast preset and
the authors' AutoAttack, counted the same way at the model.

One wrapper, `Counting`, sits between every attack and the digits network: it counts the
samples of each forward pass, and those of each backward pass through a tensor hook on the
output. On the first ``--samples`` test digits, the networks of
``benchmarks/autoattack_parity.py`` (``--networks``) and radii 16 and 32 on [0, 255], per
seed: the authors' ``AutoAttack(version="standard", seed=s)`` (through ``Rescaled``, as the
parity script attacks), ``evaluate`` with ``standard_attacks(seed=s)`` and with
``fast_attacks(seed=s)``, run in turn, signattack's first. Each member's
passes are charged to it while it runs, in the suite, on the samples the members before it
left robust; what the evaluation itself spends (clean pass, checks, the verdicts) is charged
to ``evaluation``. signattack's own counts (each result's ``forward_passes`` and
``backward_passes``) are checked against the wrapper's::

    python benchmarks/cost.py --json docs/benchmarks/cost.json

``--relayout FILE`` rewrites a report in the current layout from the runs it records,
without running anything.

A forward-equivalent is a forward pass; a backward pass counts as two.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import multiprocessing
import platform
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from autoattack_parity import networks
from torch import nn

from signattack.digits import load_digits
from signattack.evaluation import Attacks, evaluate, fast_attacks, standard_attacks
from signattack.evaluation.standard import traits_of
from signattack.models import Rescaled

OUTSIDE = "evaluation"
"""What passes outside any member's run are charged to: the clean pass, the checks on the
model, the verdicts on the members' points."""

AUTHORS_MEMBERS = {"apgd": "APGD-CE", "apgd_targeted": "APGD-T", "fab": "FAB-T", "square": "Square"}
"""The authors' ``AutoAttack`` attributes that run the standard version's members."""


@dataclass
class Tally:
    """The passes charged to one member: samples through the forward and the backward pass,
    the samples it was handed (over its calls), and what it reported of itself."""

    forward: int = 0
    backward: int = 0
    handed: int = 0
    seconds: float = 0.0
    reported: list[tuple[int, int]] = field(default_factory=list)
    counted: list[tuple[int, int]] = field(default_factory=list)

    def record(self) -> dict[str, Any]:
        return {
            "forward": self.forward,
            "backward": self.backward,
            "forward_equivalents": self.forward + 2 * self.backward,
            "samples_handed": self.handed,
            "seconds": self.seconds,
        }


class Counting(nn.Module):
    """``network``, counting the samples of every forward pass and of every gradient that
    flows back through its output, and charging them to the member that runs."""

    def __init__(self, network: nn.Module) -> None:
        super().__init__()
        self.network = network
        self.tallies: dict[str, Tally] = {}
        self.member: str | None = None

    def tally(self, member: str | None = None) -> Tally:
        return self.tallies.setdefault(member or self.member or OUTSIDE, Tally())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        tally = self.tally()
        tally.forward += int(x.shape[0])
        out: torch.Tensor = self.network(x)
        if out.requires_grad:

            def backward(grad: torch.Tensor) -> None:
                tally.backward += int(grad.shape[0])

            out.register_hook(backward)
        return out

    def totals(self) -> tuple[int, int]:
        return (
            sum(t.forward for t in self.tallies.values()),
            sum(t.backward for t in self.tallies.values()),
        )

    @contextlib.contextmanager
    def charging(self, member: str, handed: int) -> Iterator[bool]:
        """Charge the passes to ``member`` while it runs; a member run inside another (the
        probe's Square) is charged to the outer one. Yields whether this call is the outer."""
        if self.member is not None:
            yield False
            return
        self.member = member
        tally = self.tally()
        tally.handed += handed
        start = time.perf_counter()
        try:
            yield True
        finally:
            self.member = None
            tally.seconds += time.perf_counter() - start


def _charged(counter: Counting, run: Callable[..., Any], member: Callable[[Any], str], inputs: int):
    """``run`` (an attack's method, its argument ``inputs`` the samples), its passes charged
    to ``member(attack)``; with a signattack result, its own counts kept beside the
    wrapper's."""

    def wrapped(attack: Any, *args: Any, **kwargs: Any) -> Any:
        name = member(attack)
        before = counter.totals()
        with counter.charging(name, int(args[inputs].shape[0])) as outer:
            result = run(attack, *args, **kwargs)
        if outer and getattr(result, "forward_passes", None) is not None:
            after = counter.totals()
            tally = counter.tally(name)
            tally.reported.append((result.forward_passes, result.backward_passes))
            tally.counted.append((after[0] - before[0], after[1] - before[1]))
        return result

    return wrapped


@contextlib.contextmanager
def _charging_classes(counter: Counting, attacks: Iterable[object]) -> Iterator[None]:
    """Every attack class's ``run`` charges its passes, for the duration; the classes are
    left as they were, also on failure."""
    classes = {type(attack) for attack in attacks}
    own = {cls: cls.__dict__.get("run") for cls in classes}  # None: inherited
    try:
        for cls in classes:
            charged = _charged(counter, cls.run, lambda a: traits_of(a).name, 1)
            cls.run = charged
        yield
    finally:
        for cls, run in own.items():
            if run is None:
                delattr(cls, "run")
            else:
                cls.run = run


def run_ours(counter: Counting, attacks: Attacks, x, y, eps: float) -> torch.Tensor:
    """``evaluate`` with ``attacks`` (a suite or a list of attacks) through ``counter``:
    which samples stay robust."""
    members = attacks if isinstance(attacks, Iterable) else [attacks]
    with _charging_classes(counter, members):
        report = evaluate(counter, [(x, y)], attacks, [eps], progress=False)
    return torch.tensor(report.robust_correct[eps])


def run_theirs(counter: Counting, x, y, eps: float, seed: int) -> torch.Tensor:
    """The authors' standard version through ``counter``: which samples stay robust."""
    from pyautoattack import AutoAttack

    attack = AutoAttack(
        Rescaled(counter, (0.0, 1.0), (0.0, 255.0)),
        eps=eps / 255,
        seed=seed,
        version="standard",
        device="cpu",
    )
    for attribute, name in AUTHORS_MEMBERS.items():
        member = getattr(attack, attribute)
        perturb = _charged(counter, type(member).perturb, lambda _, name=name: name, 0)
        member.perturb = perturb.__get__(member)
    with torch.random.fork_rng(devices=[]), contextlib.redirect_stdout(io.StringIO()):
        adversarial, _ = attack.run_standard_evaluation(x / 255, y, batch_size=len(y))
    with torch.no_grad():  # judged by the bare network: not counted
        return counter.network(adversarial * 255).argmax(1) == y


def _passes(counter: Counting, samples: int, seconds: float, robust: torch.Tensor):
    members = {name: tally.record() for name, tally in counter.tallies.items()}
    forward, backward = counter.totals()
    total = forward + 2 * backward
    return {
        "robust": float(robust.float().mean()),
        "forward": forward,
        "backward": backward,
        "forward_equivalents": total,
        "per_sample": total / samples,
        "seconds": seconds,
        "members": members,
    }


def _agree(counter: Counting) -> bool:
    """Whether every signattack result reported the passes the wrapper counted."""
    return all(t.reported == t.counted for t in counter.tallies.values())


def measure(network: nn.Module, x, y, eps: float, seed: int) -> dict[str, Any]:
    """The three evaluations of ``network`` at ``eps`` with ``seed``, one after the other,
    signattack's first (as the parity table says)."""
    runs: dict[str, Callable[[Counting], torch.Tensor]] = {
        "standard": lambda c: run_ours(c, standard_attacks(seed=seed), x, y, eps),
        "fast": lambda c: run_ours(c, fast_attacks(seed=seed), x, y, eps),
        "authors": lambda c: run_theirs(c, x, y, eps, seed),
    }
    found: dict[str, dict[str, Any]] = {}
    robust: dict[str, torch.Tensor] = {}
    agree = True
    for name in runs:
        counter = Counting(network).eval()
        start = time.perf_counter()
        robust[name] = runs[name](counter)
        seconds = time.perf_counter() - start
        found[name] = _passes(counter, len(y), seconds, robust[name])
        agree = agree and (name == "authors" or _agree(counter))
    theirs = found["authors"]
    for name in ("standard", "fast"):
        mine, other = robust[name], robust["authors"]
        found[name] |= {
            "only_ours_breaks": int((~mine & other).sum()),
            "only_theirs_breaks": int((mine & ~other).sum()),
            "work_ratio": found[name]["forward_equivalents"] / theirs["forward_equivalents"],
            "time_ratio": found[name]["seconds"] / theirs["seconds"],
        }
    return {"counts_agree": agree, **found}


def _row(network: str, clean: float, eps: float, seed: int, suite: str, run: dict[str, Any]):
    """A row of the parity table's shape, the cost in its attack cell."""
    ours, theirs = run[suite], run["authors"]
    label = "standard suite" if suite == "standard" else "fast preset"
    return {
        "network": network,
        "clean": clean,
        "eps": eps,
        "seed": seed,
        "attack": (
            f"{label}: {ours['per_sample']:,.0f} vs {theirs['per_sample']:,.0f} "
            f"forward-equivalents a sample ({ours['work_ratio']:.2f}x)"
        ),
        "ours": ours["robust"],
        "theirs": theirs["robust"],
        "only_ours_breaks": ours["only_ours_breaks"],
        "only_theirs_breaks": ours["only_theirs_breaks"],
        "time_ratio": ours["time_ratio"],
        "forward_equivalents": ours["forward_equivalents"],
        "authors_forward_equivalents": theirs["forward_equivalents"],
        "work_ratio": ours["work_ratio"],
    }


_NETWORKS: dict[str, nn.Module] = {}
"""The networks, trained once before the workers start (they inherit them)."""


def _task(task: tuple[str, float, int, int]) -> dict[str, Any]:
    name, eps, seed, samples = task
    torch.set_num_threads(1)
    data = load_digits(seed=0)
    x, y = data.x_test[:samples], data.y_test[:samples]
    network = _NETWORKS[name]
    with torch.no_grad():
        clean = float((network(x).argmax(1) == y).float().mean())
    return {
        "network": name,
        "clean": clean,
        "eps": eps,
        "seed": seed,
        **measure(network, x, y, eps, seed),
    }


META = ("device", "threads", "torch", "samples", "seeds", "complete")
"""What a report states besides its runs."""


def layout(meta: dict[str, Any], runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The JSON of ``runs`` (in the order given) and ``meta`` (device, threads, torch,
    samples, seeds, complete): the cost layout, read from ``runs``, and beside it the
    parity table's rows (the cost in the attack cell), both from the same runs."""
    rows = [
        _row(r["network"], r["clean"], r["eps"], r["seed"], suite, r)
        for r in runs
        for suite in ("standard", "fast")
    ]
    return {
        "cost": True,  # rendered as the cost tables, from "runs"
        "parity": True,
        **{key: meta[key] for key in META},
        "counts_agree": all(run["counts_agree"] for run in runs),
        "rows": rows,
        "runs": runs,
    }


def _report(args: argparse.Namespace, runs: list[dict[str, Any]], done: bool) -> dict[str, Any]:
    order = list(_NETWORKS)
    runs = sorted(runs, key=lambda r: (order.index(r["network"]), r["eps"], r["seed"]))
    meta = {
        "device": platform.processor() or platform.machine(),
        "threads": 1,
        "torch": torch.__version__,
        "samples": args.samples,
        "seeds": args.seeds,
        "complete": done,
    }
    return layout(meta, runs)


def _write(path: Path, report: dict[str, Any]) -> None:
    """``report`` as the JSON at ``path``, whole or not at all: a file beside it is written,
    then renamed over it."""
    partial = path.with_name(path.name + ".partial")
    try:
        partial.write_text(json.dumps(report, indent=2) + "\n")
        partial.replace(path)
    finally:
        partial.unlink(missing_ok=True)


def relayout(path: Path) -> None:
    """Rewrite the report at ``path`` in the current layout, from the runs it records (the
    benchmark is not run again); on any failure the file is left as it was."""
    try:
        report = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ValueError(
            f"--relayout: expected a readable JSON report, got {path}: {error}"
        ) from None
    keys = (*META, "runs")
    if not isinstance(report, dict) or not isinstance(report.get("runs"), list):
        raise ValueError(f"--relayout: expected a cost report with a list of runs, got {path}")
    missing = [key for key in keys if key not in report]
    if missing:
        raise ValueError(
            f"--relayout: expected a cost report with {list(keys)}, got {path} without {missing}"
        )
    try:
        relaid = layout(report, report["runs"])
    except (KeyError, TypeError, ValueError) as error:
        raise ValueError(
            f"--relayout: a run in {path} lacks what it should record: {error!r}"
        ) from None
    _write(path, relaid)


def main(argv: Sequence[str] | None = None) -> None:
    cli = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    cli.add_argument("--samples", type=int, default=100)
    cli.add_argument("--eps", default="16,32")
    cli.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    cli.add_argument(
        "--networks", nargs="+", help="the parity script's networks to run (default: all)"
    )
    cli.add_argument("--jobs", type=int, default=1, help="processes, one thread each")
    cli.add_argument("--json", type=Path, help="written after every finished run")
    cli.add_argument(
        "--relayout",
        type=Path,
        metavar="FILE",
        help="rewrite the report FILE in the current layout from its runs, and run nothing",
    )
    args = cli.parse_args(argv)
    if args.relayout is not None:
        try:
            relayout(args.relayout)
        except ValueError as error:
            cli.error(str(error))
        print(f"wrote {args.relayout}")
        return
    radii = [float(e) for e in args.eps.split(",")]
    trained = networks(0)
    unknown = set(args.networks or ()) - set(trained)
    if unknown:
        cli.error(f"--networks: expected some of {sorted(trained)}, got {sorted(unknown)}")
    _NETWORKS.update((k, v) for k, v in trained.items() if k in (args.networks or trained))
    # seed by seed: a run stopped early has every network at the first seeds
    tasks = [(n, e, s, args.samples) for s in args.seeds for n in _NETWORKS for e in radii]
    runs: list[dict[str, Any]] = []
    with multiprocessing.get_context("fork").Pool(args.jobs) as pool:
        for run in pool.imap_unordered(_task, tasks):
            runs.append(run)
            for suite in ("standard", "fast"):
                print(
                    json.dumps(
                        _row(run["network"], run["clean"], run["eps"], run["seed"], suite, run)
                    ),
                    flush=True,
                )
            if args.json is not None:
                args.json.parent.mkdir(parents=True, exist_ok=True)
                _write(args.json, _report(args, runs, len(runs) == len(tasks)))
    if args.json is not None:
        print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
