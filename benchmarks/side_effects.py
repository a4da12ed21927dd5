"""What each library leaves behind in the model it attacks.

Attacks a small All-CNN in train mode with 2 steps of each installed library and reports
how many parameters then hold a ``.grad``, whether the train/eval mode changed, whether
any parameter or batch-norm statistic changed, and whether the input was modified.

    python benchmarks/side_effects.py
"""

from __future__ import annotations

import warnings
from collections.abc import Callable

import numpy as np
import torch
from attack_speed import UnitInterval
from torch import nn

from signattack import IteratedSign
from signattack.models import AllCNN

Runner = Callable[[nn.Module, torch.Tensor, torch.Tensor], object]


def runners() -> dict[str, Runner]:
    """signattack and every installed peer, each for eps = 8 pixel levels, 2 steps."""
    found: dict[str, Runner] = {
        "signattack": lambda model, x, y: IteratedSign(8, 2)(model, x * 255, y),
    }
    try:
        import torchattacks

        found["torchattacks 3"] = lambda model, x, y: torchattacks.BIM(
            model, eps=8 / 255, alpha=4 / 255, steps=2
        )(x, y)
    except ImportError:
        pass
    try:
        import foolbox

        def run_foolbox(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> object:
            attack = foolbox.attacks.LinfBasicIterativeAttack(steps=2)
            return attack(foolbox.PyTorchModel(model, bounds=(0, 1)), x, y, epsilons=8 / 255)

        found["foolbox 3"] = run_foolbox
    except ImportError:
        pass
    try:
        from art.attacks.evasion import ProjectedGradientDescent
        from art.estimators.classification import PyTorchClassifier

        def run_art(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> object:
            classifier = PyTorchClassifier(
                model, nn.CrossEntropyLoss(), (3, 32, 32), 10, clip_values=(0.0, 1.0)
            )
            attack = ProjectedGradientDescent(
                classifier, eps=8 / 255, eps_step=4 / 255, max_iter=2, verbose=False
            )
            return attack.generate(x.numpy(), y.numpy())

        found["ART 1"] = run_art
    except ImportError:
        pass
    return found


def main() -> None:
    warnings.filterwarnings("ignore")
    torch.manual_seed(0)
    x = torch.rand(8, 3, 32, 32)
    y = torch.randint(0, 10, (8,))
    header = ("library", ".grad written", "mode changed", "state changed", "x changed")
    print(f"{header[0]:<16} {header[1]:>14} {header[2]:>13} {header[3]:>14} {header[4]:>10}")
    for name, run in runners().items():
        torch.manual_seed(0)
        network = AllCNN(channels=(16, 32)).train()
        # signattack takes pixels; the peers get inputs in [0, 1] through a wrapper.
        model = network if name == "signattack" else UnitInterval(network)
        state = {k: v.clone() for k, v in network.state_dict().items()}
        before = x.clone()
        run(model, x, y)
        grads = sum(p.grad is not None for p in network.parameters())
        mode = any(not m.training for m in network.modules())
        changed = any(not torch.equal(v, network.state_dict()[k]) for k, v in state.items())
        print(
            f"{name:<16} {f'{grads} of {len(list(network.parameters()))}':>14} "
            f"{'yes' if mode else 'no':>13} {'yes' if changed else 'no':>14} "
            f"{'no' if np.array_equal(before.numpy(), x.numpy()) else 'yes':>10}"
        )


if __name__ == "__main__":
    main()
