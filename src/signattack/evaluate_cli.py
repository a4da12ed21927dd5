"""``python -m signattack evaluate``: robustness of your own model from the command line.

    python -m signattack evaluate --model mypackage.models:make_net --checkpoint net.pt \\
        --data cifar10:data/ --eps 2,4,8 --steps 5 --report report.json

Under ``torchrun --nproc_per_node=N`` the processes share the batches (gloo on the CPU,
NCCL on GPUs) and process 0 writes the report.
"""

from __future__ import annotations

import argparse
import importlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

__all__ = ["add_parser", "run"]


def add_parser(commands: Any) -> None:
    """Add the ``evaluate`` subcommand to an ``argparse`` subparsers object."""
    parser = commands.add_parser(
        "evaluate",
        help="clean and robust accuracy of a model over a dataset",
        description="Attack every batch of a dataset at every eps and report accuracy.",
    )
    parser.add_argument("--model", required=True, help="module:factory returning an nn.Module")
    parser.add_argument("--checkpoint", type=Path, help="state dict (loaded weights_only)")
    parser.add_argument(
        "--data",
        required=True,
        help="cifar10:DIR (python-format batches), digits (scikit-learn), or npz:FILE with x, y",
    )
    parser.add_argument("--split", default="test", choices=["train", "test"])
    parser.add_argument("--eps", required=True, help="comma-separated radii, e.g. 2,4,8")
    parser.add_argument("--attack", default="iterated", choices=["iterated", "fgsm"])
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--step-size", type=float, default=None)
    parser.add_argument("--loss", default="ce", choices=["ce", "margin"])
    parser.add_argument("--bounds", default="0,255", help="the pixel box, e.g. 0,1")
    parser.add_argument("--random-start", action="store_true")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--early-stop", action="store_true")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--limit", type=int, default=None, help="first N samples only")
    parser.add_argument("--report", type=Path, help="write the report (.json or .csv)")
    parser.add_argument("--plot", type=Path, help="write accuracy against eps (.png)")
    parser.add_argument("--resume-file", type=Path, help="progress checkpoint, for resuming")
    parser.add_argument("--device", default=None, help="default: cuda if available, else cpu")


def _numbers(text: str, name: str) -> list[float]:
    try:
        return [float(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise SystemExit(f"--{name} must be comma-separated numbers, got {text!r}") from None


def _load_model(spec: str, checkpoint: Path | None, device: Any) -> Any:
    import torch

    module_name, _, factory_name = spec.partition(":")
    if not factory_name:
        raise SystemExit(f"--model must look like module:factory, got {spec!r}")
    try:
        factory = getattr(importlib.import_module(module_name), factory_name)
    except (ImportError, AttributeError) as error:
        raise SystemExit(f"--model {spec!r} could not be loaded: {error}") from error
    model = factory()
    if not isinstance(model, torch.nn.Module):
        raise SystemExit(f"--model {spec!r} must return a torch.nn.Module, got {type(model)}")
    if checkpoint is not None:
        state = torch.load(checkpoint, map_location="cpu", weights_only=True)
        if isinstance(state, dict) and isinstance(state.get("model"), dict):
            state = state["model"]  # a training checkpoint that holds more than the weights
        try:
            model.load_state_dict(state)
        except RuntimeError as error:
            first = str(error).strip().splitlines()
            raise SystemExit(
                f"--checkpoint {checkpoint} does not fit the model from {spec}: "
                + " ".join(line.strip() for line in first[:3])
            ) from error
    return model.to(device).eval()


def _load_data(spec: str, split: str, limit: int | None) -> tuple[Any, Any]:
    import numpy as np

    x: Any
    y: Any
    if spec == "digits":
        from signattack.demo import load_digits

        data = load_digits()
        pair = (data.x_test, data.y_test) if split == "test" else (data.x_train, data.y_train)
        x, y = pair[0].numpy(), pair[1].numpy()
    elif spec.startswith("cifar10:"):
        from signattack.data import read_cifar10

        x, y = read_cifar10(spec.partition(":")[2], "test" if split == "test" else "train")
    elif spec.startswith("npz:"):
        with np.load(spec.partition(":")[2]) as arrays:
            if "x" not in arrays or "y" not in arrays:
                raise SystemExit(f"--data {spec}: the file must hold arrays named x and y")
            x, y = arrays["x"], arrays["y"]
    else:
        raise SystemExit(f"--data must be cifar10:DIR, digits or npz:FILE, got {spec!r}")
    if limit is not None:
        x, y = x[:limit], y[:limit]
    if len(x) == 0:
        raise SystemExit(f"--data {spec} holds no samples")
    return x, y


def _batches(x: Any, y: Any, size: int, device: Any) -> Iterator[tuple[Any, Any]]:
    import torch

    for start in range(0, len(y), size):
        images = torch.as_tensor(x[start : start + size]).to(device)
        yield images.float(), torch.as_tensor(y[start : start + size]).long().to(device)


def run(args: argparse.Namespace) -> int:
    """Run the ``evaluate`` subcommand."""
    try:
        import torch
    except ImportError as error:
        raise SystemExit('evaluate needs PyTorch: pip install "signattack[torch]"') from error
    from signattack import FGSM, IteratedSign
    from signattack.evaluation import evaluate

    eps = _numbers(args.eps, "eps")
    bounds = _numbers(args.bounds, "bounds")
    distributed = int(os.environ.get("WORLD_SIZE", "1")) > 1
    if distributed:
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        torch.distributed.init_process_group(backend)
    local = int(os.environ.get("LOCAL_RANK", "0"))
    device = torch.device(args.device or (f"cuda:{local}" if torch.cuda.is_available() else "cpu"))
    try:
        model = _load_model(args.model, args.checkpoint, device)
        x, y = _load_data(args.data, args.split, args.limit)
        options = {"bounds": tuple(bounds), "loss": args.loss}
        attack = (
            FGSM(eps[0], **options)
            if args.attack == "fgsm"
            else IteratedSign(
                eps[0],
                args.steps,
                step_size=args.step_size,
                random_start=args.random_start,
                seed=args.seed,
                early_stop=args.early_stop,
                **options,
            )
        )
        report = evaluate(
            model,
            _batches(x, y, args.batch_size, device),
            attack,
            eps,
            checkpoint=args.resume_file,
        )
    except ValueError as error:
        raise SystemExit(f"evaluate: {error}") from error
    finally:
        if distributed:
            torch.distributed.barrier()
    if not distributed or torch.distributed.get_rank() == 0:
        print(f"{report.samples} samples, {report.attack}")
        print(report.table())
        if args.report is not None:
            print(f"wrote {report.save(args.report)}")
        if args.plot is not None:
            report.plot(args.plot)
            print(f"wrote {args.plot}")
    if distributed:
        torch.distributed.destroy_process_group()
    return 0
