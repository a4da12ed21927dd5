"""Attack a trained network: gradient maps, loss against attack step, robust accuracy.

From a checkpoint of ``cifar10_train.py`` (the All-CNN on CIFAR-10), or with
``--data digits`` on the digits CNN trained here on scikit-learn's real handwritten digits:

1. input-gradient maps of four correctly and (where the network makes mistakes) four
   wrongly classified validation images, each map on its own scale;
2. the 5-step signed-gradient attack with eps = 8 on a 100-image minibatch, mean loss
   against attack step, both the problem set's unprojected version (each step adds
   ``8 * sign(grad)``: ``IteratedSign(eps=40, steps=5, step_size=8)``; unlike the problem's
   pseudo-code it also clips to the pixel box [0, 255]) and the projected
   ``IteratedSign(eps=8, steps=5)`` with Madry's step 2.5 * eps / steps = 4;
3. accuracy on the whole validation set, clean and after the 1-step attack (FGSM, eps = 8)
   and the projected 5-step attack.

    python examples/cifar10_attack.py --checkpoint out/cifar10_train/checkpoint.pt --data-dir data/
    python examples/cifar10_attack.py --checkpoint CHECKPOINT --data-dir data/ --download
    python examples/cifar10_attack.py --data digits --out out/digits_attack
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, TypeAlias

import torch
from _common import device, parser, prepare, show_progress, write_results
from matplotlib.figure import Figure
from tqdm.auto import tqdm

from signattack import FGSM, Attack, IteratedSign
from signattack.data import CIFAR10_CLASSES, fetch_cifar10, find_cifar10, read_cifar10
from signattack.models import AllCNN
from signattack.plots import plot_gradient_maps, step_axis
from signattack.probes import input_gradient

Tensors: TypeAlias = tuple[torch.Tensor, torch.Tensor]


def accuracy_under(
    model: torch.nn.Module,
    attack: Attack | None,
    images: torch.Tensor,
    labels: torch.Tensor,
    where: torch.device,
    batch_size: int,
    name: str,
) -> float:
    correct = 0
    starts = range(0, len(labels), batch_size)
    for start in tqdm(starts, desc=name, disable=not show_progress()):
        x = images[start : start + batch_size].to(where).float()
        y = labels[start : start + batch_size].to(where)
        if attack is not None:
            x = attack(model, x, y)
        with torch.no_grad():
            correct += int((model(x).argmax(1) == y).sum())
    return correct / len(labels)


def plot_loss_curves(
    curves: dict[str, list[float]], path: Path, *, images: int, steps: int, eps: float
) -> Figure:
    fig = Figure(figsize=(6.5, 4), layout="constrained")
    ax = fig.add_subplot()
    for name, values in curves.items():
        ax.plot(range(len(values)), values, marker="o", lw=2, label=name)
    step_axis(ax)
    ax.set_ylabel(f"mean cross-entropy on {images} images")
    ax.set_title(f"{steps}-step signed-gradient attack, eps = {eps:g} (pixels in [0, 255])")
    ax.legend(fontsize=8)
    fig.savefig(path, dpi=120)
    return fig


Problem = tuple[torch.nn.Module, Tensors, tuple[str, ...]]


def digits_problem(*, seed: int = 0, smoke: bool = False) -> Problem:
    """The digits CNN trained here (briefly with ``smoke``), the held-out digits, the names."""
    from signattack.digits import load_digits, train_digits_cnn

    data = load_digits(seed=seed)
    model = train_digits_cnn(data, epochs=2 if smoke else 12, seed=seed, progress=show_progress())
    return model, (data.x_test, data.y_test), tuple(str(d) for d in range(10))


def cifar10_problem(checkpoint: Path, data_dir: Path) -> Problem:
    """The All-CNN of ``cifar10_train.py``'s checkpoint, CIFAR-10's test split, the names."""
    state = torch.load(checkpoint, map_location="cpu", weights_only=True)
    model = AllCNN(channels=tuple(state["channels"]))
    model.load_state_dict(state["model"])
    images, labels = (torch.from_numpy(a) for a in read_cifar10(data_dir, "test"))
    return model, (images, labels), CIFAR10_CLASSES


def cifar10_folder(data_dir: Path, download: bool) -> Path:
    """The folder of CIFAR-10's batch files under ``data_dir``, downloaded there first with
    ``download``; a missing folder or a failed download ends the program with its one-line
    message (and, where the data is missing, the flag that fetches it)."""
    try:
        return fetch_cifar10(data_dir) if download else find_cifar10(data_dir)
    except FileNotFoundError as error:
        raise SystemExit(f"cifar10_attack.py: {error}; or pass --download") from None
    except (OSError, ValueError) as error:
        raise SystemExit(f"cifar10_attack.py: {error}") from None


def study(
    model: torch.nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor,
    classes: Sequence[str],
    out: Path,
    *,
    eps: float = 8.0,
    steps: int = 5,
    batch_size: int = 500,
) -> dict[str, Any]:
    """The three parts of the study on ``model``; figures into ``out``; the results."""
    out.mkdir(parents=True, exist_ok=True)
    where = device()
    model = model.to(where).eval()
    # 1. Gradient maps of correctly and wrongly classified images.
    with torch.no_grad():
        predictions = torch.cat(
            [
                model(images[i : i + 500].to(where).float()).argmax(1).cpu()
                for i in range(0, len(labels), 500)
            ]
        )
    right = torch.nonzero(predictions == labels).flatten()[:4]
    wrong = torch.nonzero(predictions != labels).flatten()[:4]
    chosen = torch.cat([right, wrong])
    x = images[chosen].to(where).float()
    gradients = input_gradient(model, x, labels[chosen].to(where))
    titles = [
        f"{'ok' if int(predictions[i]) == int(labels[i]) else 'WRONG'}: "
        f"{classes[int(predictions[i])]}"
        + ("" if int(predictions[i]) == int(labels[i]) else f" (is {classes[int(labels[i])]})")
        for i in chosen
    ]
    plot_gradient_maps(x, gradients, titles=titles, path=out / "gradient_maps.png")
    print(
        f"gradient maps: {len(right)} correctly and {len(wrong)} wrongly classified images "
        f"({int((predictions != labels).sum())} of {len(labels)} are misclassified)"
    )

    # 2. Loss against attack step on a minibatch of (up to) 100 images.
    x = images[:100].to(where).float()
    y = labels[:100].to(where)
    unprojected = IteratedSign(steps * eps, steps, step_size=eps)
    projected = IteratedSign(eps, steps)
    curves = {
        f"unprojected: {steps} x {eps:g} * sign(grad), clipped to [0, 255]": (
            unprojected.run(model, x, y)
        ),
        f"projected IteratedSign(eps={eps:g}, steps={steps}), "
        f"step size {projected.resolved_step_size:g}": projected.run(model, x, y),
    }
    mean_curves = {name: result.losses.mean(dim=1).tolist() for name, result in curves.items()}
    plot_loss_curves(mean_curves, out / "loss_vs_step.png", images=len(y), steps=steps, eps=eps)

    # 3. Accuracy on the whole validation set.
    accuracy: dict[str, Any] = {
        "clean": accuracy_under(model, None, images, labels, where, batch_size, "clean"),
        f"fgsm_eps{eps:g}": accuracy_under(
            model, FGSM(eps), images, labels, where, batch_size, "FGSM"
        ),
        f"iterated_eps{eps:g}_steps{steps}": accuracy_under(
            model, projected, images, labels, where, batch_size, "IteratedSign"
        ),
    }
    for name, value in accuracy.items():
        print(f"{name:>24}: {value:.1%}")
    return {
        "validation_images": len(labels),
        "gradient_maps": {"correct": len(right), "wrong": len(wrong)},
        "minibatch_images": len(y),
        "accuracy": accuracy,
        "mean_loss_by_step": mean_curves,
        "success_rate_minibatch": {
            name: float(result.success.float().mean()) for name, result in curves.items()
        },
        "device": str(where),
    }


def main() -> None:
    cli = parser(__doc__.split("\n\n")[0], default_out="out/cifar10_attack")
    cli.add_argument("--data", choices=["cifar10", "digits"], default="cifar10")
    cli.add_argument("--checkpoint", type=Path, help="from cifar10_train.py (CIFAR-10)")
    cli.add_argument("--data-dir", type=Path, default=Path("data"), help="CIFAR-10 folder")
    cli.add_argument("--eps", type=float, default=8.0, help="pixel units")
    cli.add_argument("--steps", type=int, default=5)
    cli.add_argument("--batch-size", type=int, default=500)
    cli.add_argument(
        "--download",
        action="store_true",
        help="download CIFAR-10 (163 MB, checked against its published MD5) into --data-dir",
    )
    args = cli.parse_args()
    if args.data == "cifar10" and args.checkpoint is None:
        cli.error("--checkpoint is required with --data cifar10 (or use --data digits)")
    out = prepare(args)
    if args.data == "digits":
        problem = digits_problem(seed=args.seed, smoke=args.smoke)
    else:
        problem = cifar10_problem(args.checkpoint, cifar10_folder(args.data_dir, args.download))
    model, (images, labels), classes = problem
    if args.smoke and args.data == "cifar10":
        images, labels = images[:48], labels[:48]
    results = study(
        model,
        images,
        labels,
        classes,
        out,
        eps=args.eps,
        steps=args.steps,
        batch_size=args.batch_size,
    )
    write_results(out, {"data": args.data, **results})


if __name__ == "__main__":
    main()
