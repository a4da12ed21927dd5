"""Adversarial training, and why the standard evaluation exists.

Trains three digits CNNs on scikit-learn's digits (real images, nothing downloaded): a
normal one; one with Madry et al.'s PGD training (each batch replaced by its PGD attack:
IteratedSign with a random start, 7 steps); and one with "fast" FGSM training from a random
start (Wong et al., 2020: one step of 1.25 eps, a seventh of the cost). Then it draws each
network's robustness curve under FGSM, PGD (IteratedSign, 10 steps) and signattack's standard
evaluation (APGD-CE, then APGD-T on the survivors).

What to look for: the weaker the attack, the more robust a network looks. FGSM flatters
every network; on a network trained against a fixed-step attack, PGD with the same kind of
step can overestimate robustness, and the standard evaluation gives the figure to report.

    python examples/adversarial_training.py --out out/adversarial_training
    python examples/adversarial_training.py --data cifar10:DIR      # with CIFAR-10 on disk
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import torch
from _common import device, parser, prepare, write_results
from torch import nn

from signattack import FGSM, IteratedSign
from signattack.evaluation import RobustnessReport, evaluate, gradient_attacks
from signattack.plots import plot_robustness_curves


def training_attacks(eps: float, seed: int) -> dict[str, IteratedSign | None]:
    """What each network trains on: clean batches, PGD, or FGSM from a random start."""
    return {
        "normal": None,
        "PGD training": IteratedSign(eps, 7, step_size=eps / 4, random_start=True, seed=seed),
        "fast FGSM training": IteratedSign(
            eps, 1, step_size=1.25 * eps, random_start=True, seed=seed
        ),
    }


def train(
    make: type[nn.Module],
    x: torch.Tensor,
    y: torch.Tensor,
    attack: IteratedSign | None,
    *,
    epochs: int,
    seed: int,
) -> nn.Module:
    """Adam on clean or adversarial batches; each batch draws its own random start."""
    torch.manual_seed(seed)
    model = make().to(x.device)
    optimizer = torch.optim.Adam(model.parameters(), lr=2e-3)
    generator = torch.Generator().manual_seed(seed)
    for epoch in range(epochs):
        order = torch.randperm(len(y), generator=generator).to(x.device)
        for start in range(0, len(order), 64):
            batch_x, batch_y = x[order[start : start + 64]], y[order[start : start + 64]]
            if attack is not None:  # the attack puts the model in eval mode and back
                batch_x = attack(model, batch_x, batch_y, rng=np.random.default_rng([epoch, start]))
            model.train()
            loss = nn.functional.cross_entropy(model(batch_x), batch_y)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    return model.eval()


def load(spec: str, smoke: bool, seed: int) -> tuple[type[nn.Module], tuple[torch.Tensor, ...]]:
    """The network class and ``(x_train, y_train, x_test, y_test)`` as pixel tensors."""
    if spec == "digits":
        from signattack.digits import load_digits
        from signattack.models import DigitsCNN

        data = load_digits(seed=seed)
        return DigitsCNN, (data.x_train, data.y_train, data.x_test, data.y_test)
    from signattack.data import read_cifar10
    from signattack.models import AllCNN

    folder = spec.partition(":")[2]
    x_train, y_train = read_cifar10(folder, "train")
    x_test, y_test = read_cifar10(folder, "test")
    if smoke:
        x_train, y_train, x_test, y_test = x_train[:512], y_train[:512], x_test[:128], y_test[:128]
    tensors = [torch.from_numpy(a) for a in (x_train, y_train, x_test, y_test)]
    return AllCNN, (tensors[0].float(), tensors[1], tensors[2].float(), tensors[3])


def evaluations(steps: int, pgd_steps: int) -> dict[str, Any]:
    """The three evaluations, weakest first: FGSM, PGD, and the standard gradient attacks."""
    return {
        "FGSM": FGSM(0),
        f"PGD (IteratedSign, {pgd_steps} steps)": IteratedSign(0, pgd_steps),
        f"APGD-CE + APGD-T ({steps} steps)": gradient_attacks(steps),
    }


def robustness(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, specs: dict[str, Any], radii: list[float]
) -> dict[str, RobustnessReport]:
    """Each evaluation's report on ``model`` at ``radii``."""
    batches = [(x[i : i + 256], y[i : i + 256]) for i in range(0, len(y), 256)]
    return {label: evaluate(model, batches, spec, radii) for label, spec in specs.items()}


def main() -> None:
    cli = parser(__doc__.split("\n\n")[0], default_out="out/adversarial_training")
    cli.add_argument("--data", default="digits", help="digits, or cifar10:DIR")
    cli.add_argument("--eps", type=float, default=32.0, help="training radius in pixels")
    args = cli.parse_args()
    out = prepare(args)
    where = device()
    network, (x_train, y_train, x_test, y_test) = load(args.data, args.smoke, args.seed)
    x_train, y_train = x_train.to(where), y_train.to(where)
    x_test, y_test = x_test.to(where), y_test.to(where)
    if args.smoke:
        x_test, y_test = x_test[:96], y_test[:96]
    epochs = 2 if args.smoke else 12
    radii = [8.0, 16.0, 32.0] if args.smoke else [4.0, 8.0, 16.0, 24.0, 32.0, 48.0]
    specs = evaluations(3, 3) if args.smoke else evaluations(20, 10)
    panels, results, timing = {}, {}, {}
    for name, attack in training_attacks(args.eps, args.seed).items():
        start = time.perf_counter()
        model = train(network, x_train, y_train, attack, epochs=epochs, seed=args.seed)
        timing[name] = time.perf_counter() - start
        panels[name] = robustness(model, x_test, y_test, specs, radii)
        results[name] = {
            label: {str(e): a for e, a in report.robust_accuracy.items()}
            | {"clean": report.clean_accuracy}
            for label, report in panels[name].items()
        }
        print(f"\n{name} (trained in {timing[name]:.1f} s)")
        for label, report in panels[name].items():
            curve = ", ".join(f"{e:g}: {a:.1%}" for e, a in report.robust_accuracy.items())
            print(f"  {label:40s} clean {report.clean_accuracy:.1%}; {curve}")
    plot_robustness_curves(panels, path=out / "robustness_by_training.png")
    write_results(
        out,
        {
            "data": args.data,
            "training_eps": args.eps,
            "epochs": epochs,
            "test_images": len(y_test),
            "training_seconds": timing,
            "accuracy": results,
        },
    )


if __name__ == "__main__":
    main()
