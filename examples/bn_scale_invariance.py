"""Batch-norm makes the weights before it scale-invariant; weight decay then sets the step.

Part 1: a convolution followed by batch-norm in train mode computes the same function for
``w`` and ``lambda * w``. The loss is flat in ``lambda`` and the gradient falls as
``1 / lambda`` (``signattack.probes.scale_invariance``), in train mode; in eval mode, with
running statistics, the invariance is gone.

Part 2: since only the direction of such a weight matters, an SGD step of size ``lr``
turns it by an angle of about ``lr |grad| / |w| ~ lr / |w|^2``: the effective learning rate.
Training a small conv + batch-norm network on scikit-learn's digits with and without weight
decay (on the weights only, through ``param_groups``) shows the mechanism: without decay
``|w|`` grows and the effective learning rate decays; with decay ``|w|`` settles and the
effective rate stays up.

Part 3 checks the problem's equation (2) numerically: one SGD step of size ``lr`` moves the
direction ``w / |w|`` by ``(lr / |w|^2) |grad L(w / |w|)| = lr |grad L(w)| / |w|``, up to
``O(lr^2)``. The example measures the step of the direction for several ``lr`` and reports
the error of the prediction, which falls as ``lr^2`` (the fitted exponent is printed).

    python examples/bn_scale_invariance.py --out out/bn_scale_invariance
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from _common import parser, prepare, show_progress, write_results
from matplotlib.figure import Figure
from torch import nn
from tqdm.auto import tqdm

from signattack import param_groups
from signattack.digits import load_digits
from signattack.probes import effective_learning_rates, scale_invariance

SCALES = (0.1, 0.3, 1.0, 3.0, 10.0)
RATES = (1.0, 0.3, 0.1, 0.03, 0.01, 0.003)


def direction_steps(
    model: nn.Module, batch: tuple[torch.Tensor, torch.Tensor], weight: nn.Parameter
) -> dict[str, list[float]]:
    """For each lr of ``RATES``: how far one SGD step moves ``weight / |weight|``, measured
    and predicted (``lr |grad| / |w|``), and the error of the predicted step as a vector,
    ``|(w'/|w'| - w/|w|) - (-lr grad / |w|)|``."""
    x, y = batch
    model.train()
    loss = nn.functional.cross_entropy(model(x), y)
    (grad,) = torch.autograd.grad(loss, [weight])
    w = weight.detach().double()
    g = grad.double()
    unit = w / w.norm()
    result: dict[str, list[float]] = {"lr": [], "measured": [], "predicted": [], "error": []}
    for lr in RATES:
        moved = w - lr * g
        step = moved / moved.norm() - unit
        prediction = -lr * g / w.norm()
        result["lr"].append(lr)
        result["measured"].append(float(step.norm()))
        result["predicted"].append(float(prediction.norm()))
        result["error"].append(float((step - prediction).norm()))
    result["cosine_grad_weight"] = [
        float(torch.dot(g.flatten(), w.flatten()) / (g.norm() * w.norm()))
    ]
    return result


def network() -> nn.Sequential:
    """Pixels in [0, 255] -> conv -> BN -> ReLU -> conv -> BN -> ReLU -> linear."""
    return nn.Sequential(
        nn.Conv2d(1, 16, 3, padding=1),
        nn.BatchNorm2d(16),
        nn.ReLU(),
        nn.Conv2d(16, 32, 3, padding=1),
        nn.BatchNorm2d(32),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(32 * 8 * 8, 10),
    )


def train(
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    weight_decay: float,
    epochs: int,
    lr: float,
    seed: int,
) -> dict[str, list[float]]:
    """SGD; records |w| and lr / |w|^2 of the second convolution's weight every epoch."""
    torch.manual_seed(seed)
    model = network()
    conv = model[3]
    optimizer = torch.optim.SGD(
        param_groups(model).with_weight_decay(weight_decay), lr=lr, momentum=0.9
    )
    generator = torch.Generator().manual_seed(seed)
    record: dict[str, list[float]] = {"norm": [], "effective_lr": [], "loss": []}
    for _ in tqdm(range(epochs), desc=f"wd={weight_decay:g}", disable=not show_progress()):
        model.train()
        order = torch.randperm(len(y), generator=generator)
        total = 0.0
        for start in range(0, len(y), 64):
            index = order[start : start + 64]
            loss = nn.functional.cross_entropy(model(x[index] / 255), y[index])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            total += float(loss.detach()) * len(index)
        record["norm"].append(float(conv.weight.detach().norm()))
        record["effective_lr"].append(effective_learning_rates([conv.weight], lr)[0])
        record["loss"].append(total / len(y))
    return record


def plot(
    probe_train: tuple[list[float], list[float]],
    probe_eval: list[float],
    runs: dict[str, dict[str, list[float]]],
    steps: dict[str, list[float]],
    path: Path,
) -> Path:
    fig = Figure(figsize=(16, 3.8), layout="constrained")
    axes = fig.subplots(1, 5)
    losses, norms = probe_train
    axes[0].semilogx(SCALES, losses, marker="o", label="train mode (batch statistics)")
    axes[0].semilogx(SCALES, probe_eval, marker="s", label="eval mode (running statistics)")
    axes[0].set_xlabel("lambda (w -> lambda w)")
    axes[0].set_ylabel("loss")
    axes[0].legend(fontsize=8)
    axes[0].set_title("loss under scaling")
    axes[1].loglog(SCALES, norms, marker="o", label="|grad_w L|")
    axes[1].loglog(SCALES, norms[2] / np.array(SCALES), "k:", label="1 / lambda")
    axes[1].set_xlabel("lambda")
    axes[1].legend(fontsize=8)
    axes[1].set_title("gradient norm under scaling")
    for name, run in runs.items():
        epochs = range(1, len(run["norm"]) + 1)
        axes[2].plot(epochs, run["norm"], label=name)
        axes[3].semilogy(epochs, run["effective_lr"], label=name)
    axes[2].set_title("|w| of conv2 during training")
    axes[3].set_title("effective learning rate lr / |w|^2")
    for ax in axes[2:4]:
        ax.set_xlabel("epoch")
        ax.legend(fontsize=8)
    rates, errors = np.array(steps["lr"]), np.array(steps["error"])
    axes[4].loglog(rates, steps["measured"], marker="o", label="step of w/|w|, measured")
    axes[4].loglog(rates, errors, marker="s", label="error of the predicted step")
    axes[4].loglog(rates, errors[0] * (rates / rates[0]) ** 2, "k:", label="slope 2 (lr^2)")
    axes[4].set_xlabel("learning rate")
    axes[4].set_title("equation (2): one SGD step")
    axes[4].legend(fontsize=8)
    fig.savefig(path, dpi=120)
    return path


def under_scaling(model: nn.Module, batch: tuple[torch.Tensor, torch.Tensor]) -> tuple[Any, Any]:
    """``scale_invariance`` of the first convolution in train mode and in eval mode."""
    conv = model[0]
    in_train = scale_invariance(model, batch, [conv.weight, conv.bias], SCALES)
    in_eval = scale_invariance(model, batch, [conv.weight, conv.bias], SCALES, model_mode="eval")
    return in_train, in_eval


def exponent(xs: Sequence[float], ys: Sequence[float]) -> float:
    """The slope of ``log ys`` against ``log xs``: ``ys ~ xs ** exponent``."""
    return float(np.polyfit(np.log(xs), np.log(ys), 1)[0])


def training_runs(
    x: torch.Tensor, y: torch.Tensor, *, epochs: int, seed: int, decays: Sequence[float] = (0, 5e-3)
) -> dict[str, dict[str, list[float]]]:
    """``train`` once per weight decay, at lr 0.05."""
    return {
        f"weight decay {wd:g}": train(x, y, weight_decay=wd, epochs=epochs, lr=0.05, seed=seed)
        for wd in decays
    }


def main() -> None:
    cli = parser(__doc__.split("\n\n")[0], default_out="out/bn_scale_invariance")
    cli.add_argument("--epochs", type=int, default=None, help="30 (2 with --smoke)")
    args = cli.parse_args()
    out = prepare(args)
    epochs = args.epochs or (2 if args.smoke else 30)
    data = load_digits(seed=args.seed)
    x, y = data.x_train, data.y_train

    model = network()
    batch = (x[:256] / 255, y[:256])
    in_train, in_eval = under_scaling(model, batch)
    spread = max(in_train.losses) - min(in_train.losses)
    print(f"train mode: loss over lambda in {SCALES} varies by {spread:.2e}")
    print(f"eval mode: loss varies by {max(in_eval.losses) - min(in_eval.losses):.3f}")
    slope = exponent(SCALES, in_train.grad_norms)
    print(f"gradient norm ~ lambda^{slope:.3f} (expected -1)")
    steps = direction_steps(model, batch, model[0].weight)
    order = exponent(steps["lr"], steps["error"])
    print(f"cosine between the gradient and w: {steps['cosine_grad_weight'][0]:.1e} (expected 0)")
    rows = zip(steps["lr"], steps["measured"], steps["predicted"], steps["error"], strict=True)
    for lr, measured, predicted, error in rows:
        print(
            f"lr {lr:<6g} step of w/|w|: measured {measured:.6f}, predicted lr |grad| / |w| "
            f"{predicted:.6f}; error of the step (a vector) {error:.1e}"
        )
    print(f"the error falls as lr^{order:.2f} (expected 2: the prediction is first order)")

    runs = training_runs(x, y, epochs=epochs, seed=args.seed)
    for name, run in runs.items():
        print(
            f"{name}: |w| {run['norm'][0]:.2f} -> {run['norm'][-1]:.2f}, effective lr "
            f"{run['effective_lr'][0]:.2e} -> {run['effective_lr'][-1]:.2e}"
        )
    plot(
        (list(in_train.losses), list(in_train.grad_norms)),
        list(in_eval.losses),
        runs,
        steps,
        out / "scale_invariance.png",
    )
    write_results(
        out,
        {
            "scales": SCALES,
            "train_mode_losses": in_train.losses,
            "eval_mode_losses": in_eval.losses,
            "grad_norms": in_train.grad_norms,
            "grad_norm_exponent": slope,
            "training": runs,
            "direction_steps": steps,
            "direction_step_error_exponent": order,
        },
    )


if __name__ == "__main__":
    main()
