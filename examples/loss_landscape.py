"""Look at the loss around inputs and around weights with ``signattack.probes``.

On the digits CNN (scikit-learn's digits, nothing downloaded):

1. the loss along the signed gradient against a random-sign and a Gaussian direction of the
   same L-inf size: why a signed-gradient step of a few pixel levels hurts when random
   noise of the same size does not;
2. the loss surface spanned by the signed gradient and an orthogonal random direction
   (Tramer et al., 2018);
3. the linearization gap of the FGSM step: how well ``eps * |grad|_1`` predicts the real
   loss increase as eps grows;
4. a gradient-masking check, on the real model and on one that rounds its input;
5. 1-D and 2-D slices of the loss in weight space along filter-normalized directions
   (Li et al., 2018), batch-norm and bias parameters left out.

    python examples/loss_landscape.py --out out/loss_landscape
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from _common import parser, prepare, trained_digits, write_results
from matplotlib.figure import Figure
from torch import nn

from signattack import plots, probes


class Rounding(nn.Module):
    """The same model behind a quantiser: gradients vanish, robustness looks perfect."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(torch.round(x / 32) * 32)


def linearization_gaps(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, radii: Sequence[float] = (1, 4, 16, 48)
) -> dict[str, dict[str, float]]:
    """Mean actual loss increase of the FGSM step and its prediction ``eps |grad|_1``."""
    gaps = {}
    for eps in radii:
        gap = probes.linearization_gap(model, x, y, float(eps))
        gaps[str(float(eps))] = {
            "actual": float(gap.actual.mean()),
            "predicted": float(gap.predicted.mean()),
        }
    return gaps


def plot_gaps(gaps: dict[str, dict[str, float]], path: Path) -> Path:
    fig = Figure(figsize=(5, 3.5), layout="constrained")
    ax = fig.add_subplot()
    ax.plot(list(gaps), [v["actual"] for v in gaps.values()], "o-", label="actual increase")
    ax.plot(list(gaps), [v["predicted"] for v in gaps.values()], "s--", label="eps |grad|_1")
    ax.set_yscale("log")
    ax.set_xlabel("eps")
    ax.legend()
    ax.set_title("FGSM step: loss increase against first-order prediction")
    fig.savefig(path, dpi=120)
    return path


def masking_check(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> tuple[Any, Any, list]:
    """``check_gradients`` on the model and behind ``Rounding``, with the warnings raised."""
    report = probes.check_gradients(model, x, y, warn=False)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        masked = probes.check_gradients(Rounding(model), x, y)
    return report, masked, [str(w.message) for w in caught]


def main() -> None:
    cli = parser(__doc__.split("\n\n")[0], default_out="out/loss_landscape")
    args = cli.parse_args()
    out = prepare(args)
    data, model = trained_digits(args)
    x, y = data.x_test[:200], data.y_test[:200]

    radii = list(np.linspace(0, 48, 7 if args.smoke else 25))
    along = {
        kind: probes.loss_along(model, x, y, kind, radii, seed=args.seed)
        for kind in ("signed_gradient", "rademacher", "gaussian")
    }
    plots.plot_loss_along(radii, along, path=out / "loss_along.png")

    grid = list(np.linspace(-32, 32, 5 if args.smoke else 17))
    surface = probes.loss_surface(model, x, y, grid, grid, seed=args.seed)
    plots.plot_loss_surface(surface, path=out / "loss_surface.png")

    gaps = linearization_gaps(model, x, y)
    print("linearization gap (mean over 200 images):")
    for eps, values in gaps.items():
        actual, predicted = values["actual"], values["predicted"]
        print(f"  eps {float(eps):>4g}: actual {actual:.4f}, predicted {predicted:.4f}")

    report, masked, caught = masking_check(model, x, y)
    print(f"healthy model: {report.problems() or 'no problems'}")
    print(f"rounding model: {len(caught)} warning(s): {caught[0] if caught else ''}")

    batch = (x, y)
    alphas = list(np.linspace(-1, 1, 5 if args.smoke else 21))
    slice_1d = probes.loss_slice_1d(model, batch, alphas, seed=args.seed)
    plots.plot_loss_slice(slice_1d, title="1-D weight slice", path=out / "weight_slice_1d.png")
    coarse = list(np.linspace(-1, 1, 5 if args.smoke else 11))
    slice_2d = probes.loss_slice_2d(model, batch, coarse, coarse, seed=args.seed)
    plots.plot_loss_slice(slice_2d, title="2-D weight slice", path=out / "weight_slice_2d.png")

    gradients = probes.input_gradient(model, x[:8], y[:8])
    plots.plot_gradient_maps(
        x[:8], gradients, titles=[f"label {int(t)}" for t in y[:8]], path=out / "gradient_maps.png"
    )
    plot_gaps(gaps, out / "linearization_gap.png")
    write_results(
        out,
        {
            "radii": radii,
            "mean_loss_along": {k: v.mean(dim=1).tolist() for k, v in along.items()},
            "linearization_gap": gaps,
            "healthy_report": report.__dict__,
            "rounding_report": masked.__dict__,
            "weight_slice_1d": {"alphas": slice_1d.alphas, "losses": slice_1d.losses},
        },
    )


if __name__ == "__main__":
    main()
