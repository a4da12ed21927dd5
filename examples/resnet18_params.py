"""Count torchvision's ResNet-18 layer by layer, draw it, and split its parameters in three.

ResNet-18 has 11,689,512 parameters: 9,600 are batch-norm affine parameters, 1,000 are
biases (only the final linear layer has one: a convolution followed by batch-norm needs
none, batch-norm's shift does its job) and 11,678,912 are the other weights.

Why weight decay should skip the first two groups: a convolution followed by batch-norm is
invariant to the scale of its weight, so decaying that weight only shrinks its norm and so
raises its effective learning rate ``lr / |w|^2``; decaying batch-norm's scale and shift,
or a bias, pulls them towards zero, constraining what the layer can represent without
reducing capacity in any useful sense.

    python examples/resnet18_params.py --out out/resnet18
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import torchvision
from _common import parser, prepare, write_results
from matplotlib.figure import Figure
from matplotlib.patches import FancyBboxPatch

from signattack import param_groups, parameter_table
from signattack.params import ParameterTable

STAGES = ("conv1", "bn1", "layer1", "layer2", "layer3", "layer4", "fc")


def stage_counts(table: ParameterTable) -> dict[str, int]:
    """Parameters per top-level stage (conv1, bn1, layer1..4, fc)."""
    counts: dict[str, int] = defaultdict(int)
    for row in table.rows:
        counts[row.name.split(".")[0]] += row.count
    return {stage: counts[stage] for stage in STAGES}


def draw(table: ParameterTable, path: Path) -> None:
    """The architecture as a column of blocks, each with its output shape and parameters."""
    counts = stage_counts(table)
    boxes = [
        ("input", "3 x 224 x 224", 0),
        ("conv1 7x7/2, 64", "64 x 112 x 112", counts["conv1"]),
        ("bn1 + ReLU", "64 x 112 x 112", counts["bn1"]),
        ("maxpool 3x3/2", "64 x 56 x 56", 0),
        ("layer1: 2 basic blocks, 64", "64 x 56 x 56", counts["layer1"]),
        ("layer2: 2 basic blocks, 128, /2", "128 x 28 x 28", counts["layer2"]),
        ("layer3: 2 basic blocks, 256, /2", "256 x 14 x 14", counts["layer3"]),
        ("layer4: 2 basic blocks, 512, /2", "512 x 7 x 7", counts["layer4"]),
        ("global average pool", "512", 0),
        ("fc 512 -> 1000", "1000", counts["fc"]),
    ]
    fig = Figure(figsize=(7, 9), layout="constrained")
    ax = fig.add_subplot()
    largest = max(count for *_, count in boxes)
    for i, (name, shape, count) in enumerate(boxes):
        top = len(boxes) - i
        shade = 0.15 + 0.75 * count / largest
        ax.add_patch(
            FancyBboxPatch(
                (0.05, top - 0.8),
                0.6,
                0.6,
                boxstyle="round,pad=0.02",
                facecolor=(0.2, 0.4, 0.8, shade),
                edgecolor="black",
            )
        )
        ax.text(0.35, top - 0.5, name, ha="center", va="center", fontsize=9)
        ax.text(0.7, top - 0.4, shape, va="center", fontsize=8, color="dimgray")
        ax.text(0.7, top - 0.62, f"{count:,} params" if count else "", va="center", fontsize=8)
        if i:
            ax.annotate(
                "", (0.35, top - 0.2), (0.35, top + 0.2 - 0.0), arrowprops={"arrowstyle": "->"}
            )
    ax.set_xlim(0, 1)
    ax.set_ylim(0, len(boxes) + 0.2)
    ax.axis("off")
    ax.set_title(f"torchvision ResNet-18: {table.total:,} parameters")
    fig.savefig(path, dpi=120)


def main() -> None:
    cli = parser(__doc__.split("\n\n")[0], default_out="out/resnet18")
    args = cli.parse_args()
    out = prepare(args)
    model = torchvision.models.resnet18(weights=None)
    table = parameter_table(model)
    print(table)
    (out / "resnet18_parameters.csv").write_text(table.to_csv())
    (out / "resnet18_parameters.json").write_text(table.to_json() + "\n")
    draw(table, out / "resnet18_architecture.png")

    groups = param_groups(model).counts()
    print()
    print("param_groups(resnet18):")
    for name, count in groups.items():
        print(f"  {name:>9}: {count:>10,}")
    print(f"  {'total':>9}: {table.total:>10,}")
    print(
        "\nWeight decay should skip bn_affine and biases: a weight before batch-norm is"
        "\nscale-invariant, so decay only raises its effective learning rate lr/|w|^2; the"
        "\nnorm layers' scale and shift and the biases set offsets and gains that decay"
        "\nwould pull towards zero without limiting capacity. See the docs page."
    )
    write_results(
        out,
        {"total": table.total, "groups": groups, "stages": stage_counts(table)},
    )


if __name__ == "__main__":
    main()
