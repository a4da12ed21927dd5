"""Is the fast path as strong as float32? Pixel agreement and robust accuracy on real digits.

``accelerate(model)`` attacks a faster stand-in of the network (bf16 autocast,
channels-last, ``torch.compile``, CUDA graphs). A faster attack is only worth having at
equal strength: this script attacks the digits CNN's 449 test digits with
``IteratedSign(eps, steps)`` through every variant and reports, against the float32 eager
attack, the share of adversarial pixels that agree (to 1e-3) and the robust accuracy
(equal strength: within half a point, as the fast path promises).

    python benchmarks/fast_strength.py --device cuda --json out/fast_strength.json
    python benchmarks/fast_strength.py --no-compile          # CPU rehearsal, seconds
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
import time
import warnings
from pathlib import Path

import torch
from torch import nn

from signattack import IteratedSign
from signattack.digits import load_digits, train_digits_cnn
from signattack.fast import accelerate


def variants(device: torch.device, compiled: bool) -> dict[str, dict[str, object]]:
    """The fast-path settings to compare, by name."""
    chosen: dict[str, dict[str, object]] = {
        "bf16 + channels-last": {"compile": False},
        "fp16 + channels-last": {"compile": False, "precision": "fp16"},
    }
    if compiled:
        chosen["compiled fp32"] = {"compile": True, "precision": "fp32"}
        chosen["compiled bf16 + channels-last"] = {"compile": True}
        if device.type == "cuda":
            chosen["compiled bf16 + CUDA graphs"] = {"compile": True, "mode": "reduce-overhead"}
    return chosen


def robust(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> int:
    with torch.no_grad():
        return int((model(x).argmax(1) == y).sum())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--eps", type=float, default=16.0)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--no-compile", dest="compile", action="store_false")
    parser.add_argument("--json", type=Path, help="write the results here")
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    device = torch.device(args.device)

    data = load_digits()
    model = train_digits_cnn(data).eval().to(device)
    x, y = data.x_test.to(device), data.y_test.to(device)
    attack = IteratedSign(args.eps, args.steps)
    reference = attack(model, x, y)
    robust_fp32 = robust(model, reference, y)
    rows = [
        {
            "variant": "float32 eager (reference)",
            "pixel_agreement": 1.0,
            "robust_correct": robust_fp32,
            "robust_accuracy": robust_fp32 / len(y),
            "difference_points": 0.0,
            "equal_strength": True,
            "first_call_s": None,
        }
    ]
    for name, options in variants(device, args.compile).items():
        fast = accelerate(copy.deepcopy(model), **options)  # type: ignore[arg-type]
        begin = time.perf_counter()
        x_adv = attack(fast, x, y)
        first = time.perf_counter() - begin
        agreement = float(((x_adv - reference).abs() <= 1e-3).float().mean())
        correct = robust(model, x_adv, y)  # judged by the float32 network
        points = 100 * (correct - robust_fp32) / len(y)
        rows.append(
            {
                "variant": name,
                "pixel_agreement": agreement,
                "robust_correct": correct,
                "robust_accuracy": correct / len(y),
                "difference_points": points,
                "equal_strength": abs(points) <= 0.5,
                "first_call_s": first,
            }
        )
        print(
            f"{name:>32}: {agreement:7.2%} of pixels agree, robust {correct}/{len(y)} "
            f"({points:+.2f} points)",
            file=sys.stderr,
        )
    report = {
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "torch": torch.__version__,
        "eps_pixels": args.eps,
        "steps": args.steps,
        "samples": len(y),
        "rows": rows,
    }
    text = json.dumps(report, indent=2) + "\n"
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(text)
        print(f"wrote {args.json}", file=sys.stderr)
    else:
        print(text)


if __name__ == "__main__":
    main()
