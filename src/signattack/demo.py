"""The demo: attack a small CNN trained on scikit-learn's handwritten digits.

The digits (`signattack.digits`) are real 8x8 grey-level scans that ship with
scikit-learn, so nothing is downloaded. The demo trains the CNN for a few seconds, prints
clean / FGSM / IteratedSign accuracy at several eps, and writes a figure of clean and
adversarial digits beside the loss-vs-step curve. ``DigitsData``, ``load_digits``,
``train_digits_cnn`` and ``accuracy`` are also importable from here, as before.

Needs the ``demo`` extra: ``pip install "signattack[demo]"``.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from signattack._io import text_table
from signattack.attacks import FGSM, AttackResult, IteratedSign
from signattack.digits import DigitsData, accuracy, load_digits, train_digits_cnn

__all__ = [
    "DigitsData",
    "DigitsReport",
    "accuracy",
    "load_digits",
    "run_demo",
    "train_digits_cnn",
]


@dataclass(frozen=True)
class DigitsReport:
    """The demo's measurements, written as ``results.json``."""

    test_images: int
    clean_accuracy: float
    eps: list[float]
    fgsm_accuracy: list[float]
    iterated_accuracy: list[float]
    steps: int
    mean_loss_by_step: list[float]
    seconds: float

    def table(self) -> str:
        """The accuracy table as aligned text."""
        header = ("eps", "clean", "FGSM", f"IteratedSign({self.steps})")
        rows = [
            (f"{eps:g}", f"{self.clean_accuracy:.1%}", f"{fgsm:.1%}", f"{iterated:.1%}")
            for eps, fgsm, iterated in zip(
                self.eps, self.fgsm_accuracy, self.iterated_accuracy, strict=True
            )
        ]
        return "\n".join(text_table(header, rows))


def _figure(
    x: torch.Tensor,
    y: torch.Tensor,
    result: AttackResult[torch.Tensor],
    clean_pred: torch.Tensor,
    eps: float,
    path: Path,
) -> None:
    """Clean digits over their adversarial versions, each titled with its true label and
    the prediction; a prediction the attack flipped is red, in a red frame."""
    from matplotlib.figure import Figure

    from signattack.plots import step_axis

    count = 8
    fig = Figure(figsize=(13, 4.6), layout="constrained")
    grid = fig.add_gridspec(2, count + 4)
    for i in range(count):
        for row, (images, preds, title) in enumerate(
            [(x, clean_pred, "clean"), (result.x_adv, result.predictions, f"eps = {eps:g}")]
        ):
            ax = fig.add_subplot(grid[row, i])
            ax.imshow(images[i, 0].numpy(), cmap="gray_r", vmin=0, vmax=255)
            wrong = int(preds[i]) != int(y[i])
            ax.set_title(
                f"{title}\ntrue {int(y[i])}, pred {int(preds[i])}",
                fontsize=9,
                color="tab:red" if wrong else "black",
            )
            for spine in ax.spines.values():
                spine.set_color("tab:red" if wrong else "black")
                spine.set_linewidth(2.5 if wrong else 1.0)
            ax.set_xticks([])
            ax.set_yticks([])
    ax = fig.add_subplot(grid[:, count:])
    losses = result.losses.numpy()
    ax.plot(losses, color="tab:blue", alpha=0.08, linewidth=0.8)
    ax.plot(losses.mean(axis=1), color="black", linewidth=2.5, label="mean over the test set")
    step_axis(ax)
    ax.set_ylabel("cross-entropy loss")
    ax.set_title(f"IteratedSign, eps = {eps:g} (pixels in [0, 255])")
    ax.legend(loc="upper left")
    fig.savefig(path, dpi=120)


def run_demo(
    out: Path,
    *,
    eps: Sequence[float] = (4, 8, 16, 32, 64),
    steps: int = 10,
    epochs: int = 12,
    figure_eps: float = 32,
    seed: int = 0,
    progress: bool = True,
) -> DigitsReport:
    """Train, attack at every eps, print the table, write ``digits_attack.png`` and JSON.

    Args:
        out: Folder for the figure and ``results.json``; created if missing.
        eps: Radii to attack at, in pixel units.
        steps: Steps of the iterated attack.
        epochs: Training epochs.
        figure_eps: Radius of the attack shown in the figure.
        seed: Seed of the split and the training.
        progress: Show progress bars.

    Returns:
        The measurements.
    """
    from tqdm.auto import tqdm

    start = time.perf_counter()
    out.mkdir(parents=True, exist_ok=True)
    data = load_digits(seed=seed)
    model = train_digits_cnn(data, epochs=epochs, seed=seed, progress=progress)
    x, y = data.x_test, data.y_test
    fgsm_acc, iterated_acc = [], []
    for radius in tqdm(eps, desc="attacking", unit="eps", disable=not progress):
        fgsm_acc.append(accuracy(model, FGSM(radius)(model, x, y), y))
        iterated_acc.append(accuracy(model, IteratedSign(radius, steps)(model, x, y), y))
    shown = IteratedSign(figure_eps, steps).run(model, x, y)
    with torch.no_grad():
        clean_pred = model(x).argmax(dim=1)
    _figure(x, y, shown, clean_pred, figure_eps, out / "digits_attack.png")
    report = DigitsReport(
        test_images=len(y),
        clean_accuracy=accuracy(model, x, y),
        eps=[float(radius) for radius in eps],
        fgsm_accuracy=fgsm_acc,
        iterated_accuracy=iterated_acc,
        steps=steps,
        mean_loss_by_step=[float(v) for v in shown.losses.mean(dim=1)],
        seconds=time.perf_counter() - start,
    )
    (out / "results.json").write_text(json.dumps(asdict(report), indent=2) + "\n")
    return report


def main(out: Path, *, smoke: bool = False, seed: int = 0) -> int:
    """Run the demo and print its table; ``smoke`` trains briefly for a quick check."""
    report = run_demo(
        out,
        epochs=2 if smoke else 12,
        steps=3 if smoke else 10,
        seed=seed,
        progress=sys.stderr.isatty(),
    )
    print(f"Digits test set ({report.test_images} images), pixels in [0, 255]")
    print(report.table())
    print(f"wrote {out / 'digits_attack.png'} and {out / 'results.json'} ({report.seconds:.1f} s)")
    return 0
