"""Train the All-CNN of the problem set (1,667,166 parameters) on CIFAR-10.

The recipe of the problem set: 100 epochs of SGD with Nesterov momentum 0.9, learning rate
0.1 for the first 40% of the epochs, 0.01 for the next 40% and 0.001 for the last 20%,
weight decay 1e-3 on the weights only (``param_groups``: batch-norm affine parameters and
biases are not decayed), optional flips and brightness/contrast augmentation. The target is
a validation error below 12%.

The model takes pixels in [0, 255] and normalises inside. A checkpoint is written after
every epoch (atomically) and ``--resume`` continues from it after an interruption.

    python examples/cifar10_train.py --data-dir data/ --download  # fetch CIFAR-10, then train
    python examples/cifar10_train.py --data-dir data/          # real CIFAR-10, python format
    python examples/cifar10_train.py --synthetic --smoke      # seconds, synthetic data of its own
"""

from __future__ import annotations

import math
import os
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from _common import device, parser, prepare, show_progress, write_results
from torch import nn
from tqdm.auto import tqdm

from signattack import param_groups
from signattack.data import fetch_cifar10, read_cifar10, write_synthetic_cifar10
from signattack.models import AllCNN

COURSE_CHANNELS = (96, 192)
SMOKE_CHANNELS = (16, 32)


def learning_rate(epoch: int, epochs: int, base: float) -> float:
    """``base`` for the first 40% of the epochs, ``base / 10`` for the next 40%, then
    ``base / 100``."""
    if epoch < math.ceil(0.4 * epochs):
        return base
    if epoch < math.ceil(0.8 * epochs):
        return base / 10
    return base / 100


def augment(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Random horizontal flips, brightness (+-20 levels) and contrast (x0.8 to x1.2)."""
    n = x.shape[0]
    flip = torch.rand(n, generator=generator) < 0.5
    x = torch.where(flip.view(-1, 1, 1, 1).to(x.device), x.flip(3), x)
    brightness = (torch.rand(n, 1, 1, 1, generator=generator) * 40 - 20).to(x.device)
    contrast = (torch.rand(n, 1, 1, 1, generator=generator) * 0.4 + 0.8).to(x.device)
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    return ((x - mean) * contrast + mean + brightness).clamp(0, 255)


def batches(
    images: torch.Tensor, labels: torch.Tensor, size: int, generator: torch.Generator | None
) -> list[tuple[torch.Tensor, torch.Tensor]]:
    order = (
        torch.randperm(len(labels), generator=generator)
        if generator is not None
        else torch.arange(len(labels))
    )
    return [
        (images[order[i : i + size]], labels[order[i : i + size]])
        for i in range(0, len(labels), size)
    ]


def evaluate(
    model: nn.Module, images: torch.Tensor, labels: torch.Tensor, size: int, where: torch.device
) -> tuple[float, float]:
    """Mean loss and error rate."""
    model.eval()
    total_loss, wrong = 0.0, 0
    with torch.no_grad():
        for x, y in batches(images, labels, size, None):
            logits = model(x.to(where).float())
            total_loss += float(nn.functional.cross_entropy(logits, y.to(where), reduction="sum"))
            wrong += int((logits.argmax(1) != y.to(where)).sum())
    return total_loss / len(labels), wrong / len(labels)


def save_checkpoint(path: Path, state: dict[str, Any]) -> None:
    """Write, then rename: an interruption never leaves a half-written checkpoint."""
    temporary = path.with_suffix(path.suffix + ".tmp")
    torch.save(state, temporary)
    os.replace(temporary, path)


def plot_history(history: dict[str, list[float]], path: Path) -> None:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(10, 4), layout="constrained")
    epochs = np.arange(1, len(history["train_loss"]) + 1)
    for ax, key, label in zip(
        fig.subplots(1, 2), ("loss", "error"), ("loss", "error"), strict=True
    ):
        ax.plot(epochs, history[f"train_{key}"], label="training")
        ax.plot(epochs, history[f"val_{key}"], label="validation")
        if key == "error":
            ax.axhline(0.12, color="grey", linestyle=":", label="target: 12% validation error")
        ax.set_xlabel("epoch")
        ax.set_ylabel(label)
        ax.legend()
    fig.savefig(path, dpi=120)


def train(
    data_dir: Path,
    out: Path,
    *,
    epochs: int = 100,
    batch_size: int = 128,
    channels: tuple[int, ...] = COURSE_CHANNELS,
    lr: float = 0.1,
    weight_decay: float = 1e-3,
    augment_images: bool = True,
    checkpoint: Path | None = None,
    resume: bool = False,
    seed: int = 0,
) -> dict[str, Any]:
    """Train the All-CNN on the CIFAR-10 batches in ``data_dir`` with the problem set's
    recipe; write ``training_curves.png``, ``results.json`` and the checkpoint into ``out``
    (the checkpoint after every epoch); return the results."""
    torch.manual_seed(seed)
    out.mkdir(parents=True, exist_ok=True)
    checkpoint = checkpoint or out / "checkpoint.pt"
    where = device()
    train_x, train_y = (torch.from_numpy(a) for a in read_cifar10(data_dir, "train"))
    val_x, val_y = (torch.from_numpy(a) for a in read_cifar10(data_dir, "test"))
    print(f"{len(train_y)} training and {len(val_y)} validation images on {where}")

    model = AllCNN(channels=channels).to(where)
    groups = param_groups(model)
    optimizer = torch.optim.SGD(
        groups.with_weight_decay(weight_decay), lr=lr, momentum=0.9, nesterov=True
    )
    history: dict[str, list[float]] = {
        "train_loss": [],
        "train_error": [],
        "val_loss": [],
        "val_error": [],
        "lr": [],
    }
    start_epoch = 0
    if resume and checkpoint.exists():
        state = torch.load(checkpoint, map_location=where, weights_only=True)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        history, start_epoch = state["history"], state["epoch"] + 1
        print(f"resumed from {checkpoint} after epoch {start_epoch}")

    generator = torch.Generator()  # seeded per epoch: the same data order if resumed
    started = time.perf_counter()
    bar = tqdm(
        range(start_epoch, epochs),
        desc="epochs",
        disable=not show_progress(),
        initial=start_epoch,
        total=epochs,
    )
    for epoch in bar:
        generator.manual_seed(seed + epoch)
        lr = learning_rate(epoch, epochs, lr)
        for group in optimizer.param_groups:
            group["lr"] = lr
        model.train()
        total_loss, wrong = 0.0, 0
        for x, y in batches(train_x, train_y, batch_size, generator):
            x, y = x.to(where).float(), y.to(where)
            if augment_images:
                x = augment(x, generator)
            logits = model(x)
            loss = nn.functional.cross_entropy(logits, y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            total_loss += float(loss.detach()) * len(y)
            wrong += int((logits.argmax(1) != y).sum())
        val_loss, val_error = evaluate(model, val_x, val_y, 500, where)
        for key, value in (
            ("train_loss", total_loss / len(train_y)),
            ("train_error", wrong / len(train_y)),
            ("val_loss", val_loss),
            ("val_error", val_error),
            ("lr", lr),
        ):
            history[key].append(value)
        bar.set_postfix(val_error=f"{val_error:.1%}")
        save_checkpoint(
            checkpoint,
            {
                "model": model.state_dict(),
                "optimizer": optimizer.state_dict(),
                "epoch": epoch,
                "history": history,
                "channels": list(channels),
            },
        )
    plot_history(history, out / "training_curves.png")
    results = {
        "epochs": epochs,
        "parameters": sum(p.numel() for p in model.parameters()),
        "parameter_groups": groups.counts(),
        "final_val_error": history["val_error"][-1],
        "best_val_error": min(history["val_error"]),
        "history": history,
        "seconds_this_run": time.perf_counter() - started,
        "device": str(where),
        "checkpoint": str(checkpoint),
    }
    print(f"validation error after {epochs} epochs: {results['final_val_error']:.1%}")
    write_results(out, results)
    return results


def main() -> None:
    cli = parser(__doc__.split("\n\n")[0], default_out="out/cifar10_train")
    cli.add_argument(
        "--data-dir",
        type=Path,
        default=None,
        help="CIFAR-10 folder (default data/, or data/synthetic-cifar10 with --synthetic)",
    )
    cli.add_argument(
        "--synthetic",
        action="store_true",
        help="write synthetic stand-in data first, into a folder of its own",
    )
    cli.add_argument("--epochs", type=int, default=None, help="100 (2 with --smoke)")
    cli.add_argument("--batch-size", type=int, default=None, help="128 (32 with --smoke)")
    cli.add_argument(
        "--channels",
        type=lambda text: tuple(int(c) for c in text.split(",")),
        default=None,
        help="stage widths, 96,192 as in the problem set (16,32 with --smoke)",
    )
    cli.add_argument("--lr", type=float, default=0.1)
    cli.add_argument("--weight-decay", type=float, default=1e-3)
    cli.add_argument("--no-augment", dest="augment", action="store_false")
    cli.add_argument("--checkpoint", type=Path, default=None, help="default: OUT/checkpoint.pt")
    cli.add_argument("--resume", action="store_true", help="continue from the checkpoint")
    cli.add_argument(
        "--download",
        action="store_true",
        help="download CIFAR-10 (163 MB, checked against its published MD5) into --data-dir",
    )
    args = cli.parse_args()
    out = prepare(args)
    defaults = (2, 32, SMOKE_CHANNELS) if args.smoke else (100, 128, COURSE_CHANNELS)
    args.epochs = args.epochs or defaults[0]
    args.batch_size = args.batch_size or defaults[1]
    channels = args.channels or defaults[2]
    if args.data_dir is None:
        args.data_dir = Path("data/synthetic-cifar10" if args.synthetic else "data")
    if args.synthetic:
        sizes = (96, 48) if args.smoke else (2000, 500)
        try:  # replaces an earlier stand-in, never a real download
            write_synthetic_cifar10(args.data_dir, train_size=sizes[0], test_size=sizes[1])
        except FileExistsError as error:
            raise SystemExit(f"cifar10_train.py: --synthetic: {error}") from None
    elif args.download:
        try:
            fetch_cifar10(args.data_dir)
        except (OSError, ValueError) as error:
            raise SystemExit(f"cifar10_train.py: --download: {error}") from None
    train(
        args.data_dir,
        out,
        epochs=args.epochs,
        batch_size=args.batch_size,
        channels=channels,
        lr=args.lr,
        weight_decay=args.weight_decay,
        augment_images=args.augment,
        checkpoint=args.checkpoint,
        resume=args.resume,
        seed=args.seed,
    )


if __name__ == "__main__":
    main()
