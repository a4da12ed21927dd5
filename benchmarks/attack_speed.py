"""Time iterated L-inf attacks against the raw autograd floor and peer libraries.

Everything runs in one process, interleaved: each round times every method once, in a
shuffled order, so drifts of a noisy machine hit all of them alike. The report gives the
median over rounds, images per second and the ratio to the floor: a hand-written loop of
forward, ``torch.autograd.grad`` with respect to the input, and the projected sign step.

    python benchmarks/attack_speed.py                      # CPU: batch 64, 5 steps
    python benchmarks/attack_speed.py --device cuda --batch 2048 --rounds 20

The opt-in fast path, ``accelerate(model)``, is timed as bf16 autocast with channels-last
and, with ``--compile``, also under ``torch.compile`` (its first call, which compiles,
falls in the warm-up round). Peers are timed where installed
(``pip install -e ".[bench]"``): torchattacks (BIM), foolbox 3 (LinfBasicIterativeAttack)
and the Adversarial Robustness Toolbox (PGD without random start). torchattacks hard-codes
inputs in [0, 1], so it attacks the same model behind a wrapper that scales by 255.

Memory: "saved MiB" counts the tensors autograd saves for backward during one attack, exact
and repeatable. With ``--memory``, each method also runs in fresh processes (median of 3)
to report its peak memory: on CUDA the peak allocated by the caching allocator (exact), on
the CPU the peak resident set size above that of a process that only loaded the model
(glibc's allocator makes this vary by about +-50 MiB from run to run).
"""

from __future__ import annotations

import argparse
import copy
import json
import platform
import random
import resource
import statistics
import subprocess
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from torch import nn

from signattack import FGSM, IteratedSign
from signattack.fast import accelerate
from signattack.models import AllCNN

Method = Callable[[nn.Module, torch.Tensor, torch.Tensor], torch.Tensor]


def floor_iterated(eps: float, steps: int, step_size: float) -> Method:
    """The least any iterated attack must do: steps x (forward + input gradient + step)."""

    def attack(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        low, high = (x - eps).clamp_min(0), (x + eps).clamp_max(255)
        x_adv = x
        for _ in range(steps):
            leaf = x_adv.detach().requires_grad_(True)
            loss = nn.functional.cross_entropy(model(leaf), y)
            (grad,) = torch.autograd.grad(loss, leaf)
            # The step works on the detached iterate: autograd records nothing here.
            x_adv = torch.minimum(torch.maximum(x_adv + step_size * grad.sign(), low), high)
        return x_adv

    return attack


class UnitInterval(nn.Module):
    """A pixel model behind the [0, 1] input convention some peers hard-code."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x * 255)


def peers(eps: float, steps: int, step_size: float, batch: int) -> dict[str, Method]:
    """The peer libraries that are installed, each set up for the same attack."""
    found: dict[str, Method] = {}
    try:
        import torchattacks

        def bim(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
            wrapped = UnitInterval(model)
            attack = torchattacks.BIM(wrapped, eps=eps / 255, alpha=step_size / 255, steps=steps)
            return attack(x / 255, y) * 255

        found["torchattacks BIM"] = bim
    except ImportError:
        pass
    try:
        import foolbox

        def foolbox_bim(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
            fmodel = foolbox.PyTorchModel(model, bounds=(0, 255), device=x.device)
            attack = foolbox.attacks.LinfBasicIterativeAttack(
                abs_stepsize=step_size, steps=steps, random_start=False
            )
            _, clipped, _ = attack(fmodel, x, y, epsilons=eps)
            return clipped

        found["foolbox LinfBIM"] = foolbox_bim
    except ImportError:
        pass
    try:
        from art.attacks.evasion import ProjectedGradientDescent
        from art.estimators.classification import PyTorchClassifier

        def art_pgd(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
            classifier = PyTorchClassifier(
                model,
                loss=nn.CrossEntropyLoss(),
                input_shape=tuple(x.shape[1:]),
                nb_classes=10,
                clip_values=(0.0, 255.0),
                device_type="gpu" if x.is_cuda else "cpu",
            )
            attack = ProjectedGradientDescent(
                classifier,
                norm=np.inf,
                eps=eps,
                eps_step=step_size,
                max_iter=steps,
                num_random_init=0,
                batch_size=batch,
                verbose=False,
            )
            adversarial = attack.generate(x=x.cpu().numpy(), y=y.cpu().numpy())
            return torch.from_numpy(adversarial).to(x.device)

        found["ART PGD"] = art_pgd
    except ImportError:
        pass
    return found


def fast_paths(eps: float, steps: int, compiled: bool, cuda: bool = False) -> dict[str, Method]:
    """IteratedSign on ``accelerate``d copies of the model (their own copies: accelerate
    converts parameters to channels-last, which would change the other methods' timings).
    On CUDA, ``--compile`` adds CUDA graphs (``mode="reduce-overhead"``)."""
    attack = IteratedSign(eps, steps, step_size=2.5 * eps / steps)
    variants: dict[str, dict[str, object]] = {"signattack bf16 + channels-last": {"compile": False}}
    if compiled:
        variants["signattack compiled fp32"] = {"compile": True, "precision": "fp32"}
        variants["signattack compiled bf16 + cl"] = {"compile": True}
        if cuda:
            variants["signattack bf16 + CUDA graphs"] = {"compile": True, "mode": "reduce-overhead"}
    cache: dict[tuple[int, str], nn.Module] = {}

    def method(name: str, options: dict[str, object]) -> Method:
        def run(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
            key = (id(model), name)
            if key not in cache:
                cache[key] = accelerate(copy.deepcopy(model), **options)  # type: ignore[arg-type]
            return attack(cache[key], x, y)

        return run

    return {name: method(name, options) for name, options in variants.items()}


def methods(
    eps: float, steps: int, batch: int, compiled: bool = False, cuda: bool = False
) -> dict[str, Method]:
    step_size = 2.5 * eps / steps
    return {
        "floor (autograd loop)": floor_iterated(eps, steps, step_size),
        "signattack IteratedSign": IteratedSign(eps, steps, step_size=step_size),
        **fast_paths(eps, steps, compiled, cuda),
        "floor, 1 step": floor_iterated(eps, 1, eps),
        "signattack FGSM": FGSM(eps),
        **peers(eps, steps, step_size, batch),
    }


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_once(
    method: Method, model: nn.Module, x: torch.Tensor, y: torch.Tensor, device: torch.device
) -> float:
    synchronize(device)
    start = time.perf_counter()
    method(model, x, y)
    synchronize(device)
    return time.perf_counter() - start


def saved_for_backward_mib(
    method: Method, model: nn.Module, x: torch.Tensor, y: torch.Tensor
) -> float:
    """MiB of tensors autograd saves for backward during one attack: exact and repeatable.

    These activations are what dominates an attack's memory; a method that keeps graphs or
    computes more than it needs saves more.
    """
    total = 0

    def pack(tensor: torch.Tensor) -> torch.Tensor:
        nonlocal total
        total += tensor.numel() * tensor.element_size()
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        method(model, x, y)
    return total / 2**20


def peak_memory(name: str, args: argparse.Namespace, repeats: int = 3) -> float:
    """Median peak memory of one run of ``name`` in fresh processes, in MiB."""
    return statistics.median(_peak_memory_once(name, args) for _ in range(repeats))


def _peak_memory_once(name: str, args: argparse.Namespace) -> float:
    command = [
        sys.executable,
        __file__,
        "--only",
        name,
        "--device",
        args.device,
        "--batch",
        str(args.batch),
        "--steps",
        str(args.steps),
    ]
    completed = subprocess.run(command, check=True, capture_output=True, text=True)
    return float(completed.stdout.strip().splitlines()[-1])


def measure_only(name: str, args: argparse.Namespace) -> None:
    """Run one method once (or nothing, for the baseline) and print its peak memory."""
    device = torch.device(args.device)
    model, x, y = setup(args, device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        base = torch.cuda.memory_allocated(device)
    if name != "idle":
        cuda = device.type == "cuda"
        methods(args.eps, args.steps, args.batch, compiled=True, cuda=cuda)[name](model, x, y)
    if device.type == "cuda":
        print((torch.cuda.max_memory_allocated(device) - base) / 2**20)
    else:
        print(peak_resident_mib())


def peak_resident_mib() -> float:
    """This process's peak resident set size in MiB.

    ``VmHWM`` belongs to the address space and starts afresh at ``exec``; ``ru_maxrss`` on
    Linux carries over the parent's peak into a child, so it is only the fallback.
    """
    status = Path("/proc/self/status")
    if status.exists():
        for line in status.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def setup(
    args: argparse.Namespace, device: torch.device
) -> tuple[nn.Module, torch.Tensor, torch.Tensor]:
    torch.manual_seed(0)
    model = AllCNN().to(device).eval()
    x = (torch.rand(args.batch, 3, 32, 32, device=device) * 255).round()
    y = torch.randint(0, 10, (args.batch,), device=device)
    return model, x, y


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--eps", type=float, default=8.0)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--memory", action="store_true", help="also measure peak memory")
    parser.add_argument("--compile", action="store_true", help="also time torch.compile paths")
    parser.add_argument("--json", type=Path, default=None, help="write the results here")
    parser.add_argument(
        "--select",
        default=None,
        help="comma-separated parts of method names to time (the floors are always kept)",
    )
    parser.add_argument("--only", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    if args.only is not None:
        measure_only(args.only, args)
        return

    device = torch.device(args.device)
    model, x, y = setup(args, device)
    chosen = methods(
        args.eps, args.steps, args.batch, compiled=args.compile, cuda=device.type == "cuda"
    )
    if args.select:
        wanted = [part.strip() for part in args.select.split(",")]
        chosen = {
            name: method
            for name, method in chosen.items()
            if name.startswith("floor") or any(part in name for part in wanted)
        }
    # Each method attacks its own copy of the model: some peers write every parameter's
    # .grad or change the model's mode, which must not affect the others.
    copies = {name: copy.deepcopy(model) for name in chosen}
    times: dict[str, list[float]] = {name: [] for name in chosen}
    order = list(chosen)
    shuffle = random.Random(0)
    for round_index in range(args.warmup + args.rounds):
        shuffle.shuffle(order)
        for name in order:
            elapsed = time_once(chosen[name], copies[name], x, y, device)
            if round_index >= args.warmup:
                times[name].append(elapsed)
        print(f"round {round_index + 1}/{args.warmup + args.rounds}", file=sys.stderr)

    medians = {name: statistics.median(values) for name, values in times.items()}
    saved = {
        name: saved_for_backward_mib(method, copy.deepcopy(model), x, y)
        for name, method in chosen.items()
    }
    memory: dict[str, float] = {}
    if args.memory:
        idle = peak_memory("idle", args) if device.type == "cpu" else 0.0
        memory = {name: peak_memory(name, args) - idle for name in chosen}
    rows = []
    for name, median in medians.items():
        floor = medians[
            "floor, 1 step" if "FGSM" in name or "1 step" in name else "floor (autograd loop)"
        ]
        rows.append(
            {
                "method": name,
                "median_s": median,
                "images_per_s": args.batch / median,
                "ratio_to_floor": median / floor,
                "saved_for_backward_mib": saved[name],
                "peak_memory_mib": memory.get(name),
            }
        )
    device_name = (
        torch.cuda.get_device_name(device)
        if device.type == "cuda"
        else platform.processor() or "CPU"
    )
    print(
        f"\nAllCNN (1,667,166 parameters), batch {args.batch}, {args.steps} steps, "
        f"{args.rounds} rounds, {device_name}, {torch.get_num_threads()} threads, "
        f"torch {torch.__version__}"
    )
    header = f"{'method':<26} {'median s':>9} {'images/s':>9} {'x floor':>8} {'saved MiB':>9}"
    print(header + (f" {'peak MiB':>9}" if memory else ""))
    for row in rows:
        line = (
            f"{row['method']:<26} {row['median_s']:>9.3f} {row['images_per_s']:>9.1f} "
            f"{row['ratio_to_floor']:>8.3f} {row['saved_for_backward_mib']:>9.1f}"
        )
        if memory:
            line += f" {row['peak_memory_mib']:>9.1f}"
        print(line)
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(
            json.dumps(
                {
                    "device": device_name,
                    "batch": args.batch,
                    "steps": args.steps,
                    "rounds": args.rounds,
                    "threads": torch.get_num_threads(),
                    "torch": torch.__version__,
                    "rows": rows,
                },
                indent=2,
            )
            + "\n"
        )


if __name__ == "__main__":
    main()
