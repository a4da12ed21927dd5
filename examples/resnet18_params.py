"""Count torchvision's ResNet-18 layer by layer, draw it, and split its parameters in three.

ResNet-18 has 11,689,512 parameters: 9,600 are batch-norm affine parameters, 1,000 are
biases (only the final linear layer has one: a convolution followed by batch-norm needs
none, batch-norm's shift does its job) and 11,678,912 are the other weights.

The picture shows every basic block with its skip connection, and the three 1x1
convolutions (with batch-norm) that downsample the skip where a stage halves the
resolution and doubles the channels; the per-layer table gives each layer's count.

Why weight decay should skip the first two groups:

- A convolution followed by batch-norm computes the same function for ``w`` and ``c w``
  (``c > 0``): batch-norm divides the scale out. Decay on such a weight cannot restrain
  the function; it only shrinks ``|w|`` and so raises the effective learning rate
  ``lr / |w|^2`` of the weight's direction. That is a useful effect on training, and it is
  why these weights are decayed.
- Batch-norm's scale and shift, and the biases, are not scale-invariant: they set the
  scale and the offset of each channel's output. Decaying them pulls the function itself
  towards zero gains and offsets, which is not the regularisation weight decay is meant
  to apply.
- And they are few: 10,600 of 11,689,512 parameters (0.09%), so leaving them out costs
  nothing in regularisation.

    python examples/resnet18_params.py --out out/resnet18
"""

from __future__ import annotations

import csv
from collections import defaultdict
from pathlib import Path
from typing import Any

import torchvision
from _common import parser, prepare, write_results
from matplotlib.figure import Figure
from matplotlib.patches import FancyBboxPatch
from torch import nn

from signattack import param_groups, parameter_table
from signattack._io import text_table
from signattack.params import ParameterTable

STAGES = ("conv1", "bn1", "layer1", "layer2", "layer3", "layer4", "fc")


def stage_counts(table: ParameterTable) -> dict[str, int]:
    """Parameters per top-level stage (conv1, bn1, layer1..4, fc)."""
    counts: dict[str, int] = defaultdict(int)
    for row in table.rows:
        counts[row.name.split(".")[0]] += row.count
    return {stage: counts[stage] for stage in STAGES}


def describe(module: nn.Module) -> str:
    """A layer's settings in a few words."""
    if isinstance(module, nn.Conv2d):
        kernel, stride = module.kernel_size[0], module.stride[0]
        return f"{module.in_channels} -> {module.out_channels}, {kernel}x{kernel}/{stride}"
    if isinstance(module, nn.BatchNorm2d):
        return f"{module.num_features} channels"
    if isinstance(module, nn.Linear):
        return f"{module.in_features} -> {module.out_features}"
    return ""


def layer_rows(model: nn.Module, table: ParameterTable) -> list[dict[str, object]]:
    """The per-layer table with each layer's settings."""
    modules = dict(model.named_modules())
    return [
        {
            "layer": row.name,
            "type": row.layer_type,
            "settings": describe(modules[row.name]),
            "tensors": "+".join(row.tensors),
            "count": row.count,
        }
        for row in table.layers()
    ]


def _box(
    ax: Any, y: float, text: str, count: int, largest: int, *, x: float = 0.3, width: float = 0.44
) -> None:
    shade = 0.12 + 0.78 * count / largest
    ink = "white" if shade > 0.55 else "black"
    ax.add_patch(
        FancyBboxPatch(
            (x - width / 2, y - 0.3),
            width,
            0.6,
            boxstyle="round,pad=0.02",
            facecolor=(0.2, 0.4, 0.8, shade),
            edgecolor="black",
        )
    )
    ax.text(x, y + 0.08, text, ha="center", va="center", fontsize=7.5, color=ink)
    if count:
        ax.text(x, y - 0.16, f"{count:,}", ha="center", va="center", fontsize=7, color=ink)


def draw(model: nn.Module, table: ParameterTable, path: Path) -> Path:
    """Every layer in a column, with each block's skip connection on its right and the
    downsampling convolutions on the skips that need them."""
    counts = {row.name: row.count for row in table.layers()}
    largest = max(counts.values())
    fig = Figure(figsize=(7.5, 22), layout="constrained")
    ax = fig.add_subplot()
    y = 0.0

    def arrow(y_from: float, y_to: float, x: float = 0.3) -> None:
        ax.annotate("", (x, y_to + 0.32), (x, y_from - 0.32), arrowprops={"arrowstyle": "->"})

    def stem(name: str, text: str) -> None:
        nonlocal y
        if y:
            arrow(y + 1, y)
        _box(ax, y, text, counts.get(name, 0), largest)
        y -= 1

    stem("", "input 3 x 224 x 224")
    stem("conv1", "conv1 7x7/2, 3 -> 64")
    stem("bn1", "bn1 + ReLU  (64 x 112 x 112)")
    stem("", "maxpool 3x3/2  (64 x 56 x 56)")
    begin = y + 1  # a block's input: the maxpool, then the sum of the block before
    for stage in ("layer1", "layer2", "layer3", "layer4"):
        for index, block in enumerate(getattr(model, stage)):
            name = f"{stage}.{index}"
            conv1, conv2 = block.conv1, block.conv2
            stride = conv1.stride[0]
            stem(
                f"{name}.conv1",
                f"{name}.conv1 3x3/{stride}, {conv1.in_channels} -> {conv1.out_channels}",
            )
            stem(f"{name}.bn1", f"{name}.bn1 + ReLU")
            stem(f"{name}.conv2", f"{name}.conv2 3x3, {conv2.in_channels} -> {conv2.out_channels}")
            stem(f"{name}.bn2", f"{name}.bn2")
            join = y + 0.35
            ax.text(0.3, join, "+ , ReLU", ha="center", va="center", fontsize=8, weight="bold")
            skip_x = 0.8
            ax.plot([0.44, skip_x, skip_x], [begin, begin, join], color="darkorange", lw=1.5)
            ax.annotate(
                "",
                (0.42, join),
                (skip_x, join),
                arrowprops={"arrowstyle": "->", "color": "darkorange", "lw": 1.5},
            )
            if block.downsample is not None:
                down = f"{name}.downsample"
                params = counts.get(f"{down}.0", 0) + counts.get(f"{down}.1", 0)
                middle = (begin + join) / 2
                _box(ax, middle, "1x1/2 conv + BN", params, largest, x=skip_x, width=0.3)
            else:
                ax.text(
                    skip_x + 0.02, (begin + join) / 2, "identity", fontsize=7, color="darkorange"
                )
            begin = join
            y -= 0.3
    stem("", "global average pool  (512)")
    stem("fc", "fc 512 -> 1000")
    ax.set_xlim(0, 1)
    ax.set_ylim(y + 0.4, 0.6)
    ax.axis("off")
    ax.set_title(
        f"torchvision ResNet-18: {table.total:,} parameters\n"
        "orange: skip connections (identity, or a 1x1 stride-2 convolution + BN)"
    )
    fig.savefig(path, dpi=110)
    return path


def main() -> None:
    cli = parser(__doc__.split("\n\n")[0], default_out="out/resnet18")
    args = cli.parse_args()
    out = prepare(args)
    model = torchvision.models.resnet18(weights=None)
    table = parameter_table(model)
    print(table)
    print()
    layers = layer_rows(model, table)
    print(
        "\n".join(
            text_table(
                ("layer", "type", "settings", "tensors", "count"),
                [
                    (
                        str(r["layer"]),
                        str(r["type"]),
                        str(r["settings"]),
                        str(r["tensors"]),
                        f"{r['count']:,}",
                    )
                    for r in layers
                ],
                left={0, 1, 2, 3},
            )
        )
    )
    print(f"{len(layers)} layers with parameters, {table.total:,} in all")
    (out / "resnet18_parameters.csv").write_text(table.to_csv())
    (out / "resnet18_parameters.json").write_text(table.to_json() + "\n")
    with (out / "resnet18_layers.csv").open("w", newline="") as file:
        writer = csv.DictWriter(file, fieldnames=list(layers[0]))
        writer.writeheader()
        writer.writerows(layers)
    draw(model, table, out / "resnet18_architecture.png")

    groups = param_groups(model).counts()
    print()
    print("param_groups(resnet18):")
    for name, count in groups.items():
        print(f"  {name:>9}: {count:>10,}")
    print(f"  {'total':>9}: {table.total:>10,}")
    few = groups["bn_affine"] + groups["biases"]
    print(
        "\nWhy weight decay skips bn_affine and biases:"
        "\n- a convolution followed by batch-norm computes the same function for w and c*w:"
        "\n  decay cannot restrain the function, it only shrinks |w| and so raises the"
        "\n  effective learning rate lr/|w|^2 of w's direction, which is what decaying them does;"
        "\n- batch-norm's scale and shift and the biases are not scale-invariant: they set each"
        "\n  channel's scale and offset, and decaying them changes the function itself;"
        f"\n- and they are few: {few:,} of {table.total:,} ({few / table.total:.2%})."
    )
    write_results(
        out,
        {
            "total": table.total,
            "groups": groups,
            "stages": stage_counts(table),
            "layers": {str(r["layer"]): r["count"] for r in layers},
        },
    )


if __name__ == "__main__":
    main()
