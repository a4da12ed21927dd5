"""Split a network's parameters into normalization affine, biases and the rest.

Weight decay is meant to shrink the weights that set a network's capacity. On the affine parameters
of a normalization layer and on biases it does something else: it pulls batch-norm's scale towards
zero, which changes nothing a scale-invariant layer computes but raises its effective learning rate,
and it pulls biases towards zero for no gain. Hence the usual recipe: decay ``weights`` only.
[`param_groups`][signattack.params.param_groups] finds the three groups by layer type, and
[`ParamGroups.with_weight_decay`][signattack.params.ParamGroups.with_weight_decay] turns them into
optimizer groups.

Needs PyTorch.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from typing import Any, Literal, NamedTuple

from signattack._lazy import missing_torch

try:
    from torch import nn
except ModuleNotFoundError as error:  # pragma: no cover - depends on the environment
    raise missing_torch("signattack.params", error) from error

from signattack._io import html_table, text_table
from signattack.core.validation import check_real

__all__ = [
    "BIAS_LAYERS",
    "NORM_LAYERS",
    "LayerRow",
    "ParamGroups",
    "ParameterRow",
    "ParameterTable",
    "param_groups",
    "parameter_table",
]

Group = Literal["bn_affine", "biases", "weights"]

NORM_LAYERS: tuple[type[nn.Module], ...] = (
    nn.BatchNorm1d,
    nn.BatchNorm2d,
    nn.BatchNorm3d,
    nn.SyncBatchNorm,
    nn.LazyBatchNorm1d,
    nn.LazyBatchNorm2d,
    nn.LazyBatchNorm3d,
    nn.InstanceNorm1d,
    nn.InstanceNorm2d,
    nn.InstanceNorm3d,
    nn.LazyInstanceNorm1d,
    nn.LazyInstanceNorm2d,
    nn.LazyInstanceNorm3d,
    nn.GroupNorm,
    nn.LayerNorm,
    nn.RMSNorm,
)
"""Layers whose every parameter (affine weight and bias) goes to ``bn_affine``."""

BIAS_LAYERS: tuple[type[nn.Module], ...] = (
    nn.Conv1d,
    nn.Conv2d,
    nn.Conv3d,
    nn.ConvTranspose1d,
    nn.ConvTranspose2d,
    nn.ConvTranspose3d,
    nn.LazyConv1d,
    nn.LazyConv2d,
    nn.LazyConv3d,
    nn.LazyConvTranspose1d,
    nn.LazyConvTranspose2d,
    nn.LazyConvTranspose3d,
    nn.Linear,
    nn.LazyLinear,
    nn.Bilinear,
    nn.RNNBase,
    nn.RNNCellBase,
)
"""Layers whose parameters named ``bias`` or ``bias_*`` go to ``biases``."""


class ParamGroups(NamedTuple):
    """A model's parameters in three disjoint lists, each in module order.

    Attributes:
        bn_affine: Affine weight and bias of every normalization layer
            ([`NORM_LAYERS`][signattack.params.NORM_LAYERS]).
        biases: The biases of convolution, linear, bilinear and recurrent layers
            ([`BIAS_LAYERS`][signattack.params.BIAS_LAYERS]), ``bias_ih``/``bias_hh`` included.
        weights: Every other parameter.
    """

    bn_affine: list[nn.Parameter]
    biases: list[nn.Parameter]
    weights: list[nn.Parameter]

    def with_weight_decay(self, weight_decay: float) -> list[dict[str, Any]]:
        """Optimizer parameter groups that decay ``weights`` only.

        ``torch.optim.SGD(param_groups(model).with_weight_decay(1e-3), lr=0.1)`` decays the
        weights by ``1e-3`` and the BN-affine parameters and biases by nothing. Each group
        carries a ``"name"`` key; empty groups are left out.

        Raises:
            TypeError: ``weight_decay`` is not a number.
            ValueError: ``weight_decay`` is negative or not finite.
        """
        decay = check_real("weight_decay", weight_decay)
        groups = [
            {"name": "weights", "params": self.weights, "weight_decay": decay},
            {"name": "bn_affine", "params": self.bn_affine, "weight_decay": 0.0},
            {"name": "biases", "params": self.biases, "weight_decay": 0.0},
        ]
        return [group for group in groups if group["params"]]

    def counts(self) -> dict[str, int]:
        """Number of scalar parameters in each group."""
        return {name: sum(p.numel() for p in group) for name, group in self._asdict().items()}

    def _summary(self) -> list[tuple[str, str, str, str]]:
        decayed = {"weights": "yes", "bn_affine": "no", "biases": "no"}
        return [
            (name, f"{len(group)}", f"{sum(p.numel() for p in group):,}", decayed[name])
            for name, group in self._asdict().items()
        ]

    def __repr__(self) -> str:
        parts = [
            f"{name}: {tensors} tensors, {count}" for name, tensors, count, _ in self._summary()
        ]
        return f"ParamGroups({'; '.join(parts)})"

    def _repr_html_(self) -> str:
        header = ("group", "tensors", "parameters", "weight decay")
        return html_table(header, self._summary(), left={0, 3})


def _group_of(module: nn.Module, name: str) -> Group:
    if isinstance(module, NORM_LAYERS):
        return "bn_affine"
    if isinstance(module, BIAS_LAYERS) and (name == "bias" or name.startswith("bias_")):
        return "biases"
    return "weights"


def _named_parameters(
    model: nn.Module, trainable_only: bool
) -> Iterator[tuple[str, nn.Module, str, nn.Parameter, Group]]:
    """Each parameter once (tied ones at their first place), with its module and group."""
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    seen: set[int] = set()
    for module_name, module in model.named_modules():
        for name, parameter in module.named_parameters(recurse=False):
            if id(parameter) in seen or (trainable_only and not parameter.requires_grad):
                continue
            if isinstance(parameter, nn.parameter.UninitializedParameter):
                raise ValueError(
                    f"parameter {module_name}.{name} of a lazy module is not materialised yet: "
                    "run one forward pass before grouping the parameters"
                )
            seen.add(id(parameter))
            yield module_name, module, name, parameter, _group_of(module, name)


def param_groups(model: nn.Module, *, trainable_only: bool = False) -> ParamGroups:
    """Split ``model``'s parameters into BN-affine, biases and weights.

    Every parameter appears exactly once, in module order; a parameter shared by several
    modules is classified where it first appears. Frozen parameters (``requires_grad=False``)
    are kept in their group by default, so the split describes the architecture and counts
    match the model's; pass ``trainable_only=True`` to leave them out (an optimizer ignores
    them either way).

    Args:
        model: Any ``torch.nn.Module``; lazy modules must be materialised.
        trainable_only: Leave out parameters with ``requires_grad=False``.

    Returns:
        The three groups.

    Raises:
        TypeError: ``model`` is not an ``nn.Module``.
        ValueError: A lazy module has not been materialised.
    """
    groups: dict[Group, list[nn.Parameter]] = {"bn_affine": [], "biases": [], "weights": []}
    for *_, parameter, group in _named_parameters(model, trainable_only):
        groups[group].append(parameter)
    return ParamGroups(groups["bn_affine"], groups["biases"], groups["weights"])


@dataclass(frozen=True)
class ParameterRow:
    """One parameter tensor of a model."""

    name: str
    layer_type: str
    shape: tuple[int, ...]
    count: int
    group: Group
    trainable: bool


@dataclass(frozen=True)
class LayerRow:
    """One layer (module) of a model with parameters of its own."""

    name: str
    layer_type: str
    count: int
    tensors: tuple[str, ...]


@dataclass(frozen=True)
class ParameterTable:
    """A model's parameters tensor by tensor, with totals per group.

    ``str(table)`` is an aligned text table; `to_json` and `to_csv` are the
    machine-readable forms.
    """

    rows: tuple[ParameterRow, ...]

    @property
    def total(self) -> int:
        """All parameters."""
        return sum(row.count for row in self.rows)

    def layers(self) -> tuple[LayerRow, ...]:
        """The rows summed per layer (the module that owns the tensors), in model order."""
        owners: dict[str, list[ParameterRow]] = {}
        for row in self.rows:
            owner, _, _ = row.name.rpartition(".")
            owners.setdefault(owner, []).append(row)
        return tuple(
            LayerRow(
                name=owner,
                layer_type=rows[0].layer_type,
                count=sum(row.count for row in rows),
                tensors=tuple(row.name.rpartition(".")[2] for row in rows),
            )
            for owner, rows in owners.items()
        )

    def layer_text(self) -> str:
        """The per-layer table as aligned text, with the total."""
        header = ("layer", "type", "tensors", "count")
        lines = [
            (row.name or "(model)", row.layer_type, "+".join(row.tensors), f"{row.count:,}")
            for row in self.layers()
        ]
        head, *body = text_table(header, lines, left={0, 1, 2})
        rule = "-" * len(head)
        return "\n".join([head, rule, *body, rule, f"{len(lines)} layers, {self.total:,} total"])

    def totals(self) -> dict[str, int]:
        """Parameters per group, and ``"trainable"`` and ``"total"``."""
        totals = {"bn_affine": 0, "biases": 0, "weights": 0}
        for row in self.rows:
            totals[row.group] += row.count
        totals["trainable"] = sum(row.count for row in self.rows if row.trainable)
        totals["total"] = self.total
        return totals

    def __str__(self) -> str:
        header = ("parameter", "layer", "shape", "count", "group")
        lines = [
            (row.name, row.layer_type, "x".join(map(str, row.shape)), f"{row.count:,}", row.group)
            for row in self.rows
        ]
        head, *body = text_table(header, lines, left={0, 1, 2, 4})
        rule = "-" * len(head)
        totals = "  ".join(f"{name} {count:,}" for name, count in self.totals().items())
        return "\n".join([head, rule, *body, rule, totals])

    def __repr__(self) -> str:
        totals = ", ".join(f"{name} {count:,}" for name, count in self.totals().items())
        return f"ParameterTable({len(self.rows)} tensors in {len(self.layers())} layers: {totals})"

    def _repr_html_(self) -> str:
        """The per-layer table and the totals: what a notebook shows."""
        rows = [
            (row.name or "(model)", row.layer_type, "+".join(row.tensors), f"{row.count:,}")
            for row in self.layers()
        ]
        table = html_table(("layer", "type", "tensors", "count"), rows, left={0, 1, 2})
        totals = ", ".join(f"{name} {count:,}" for name, count in self.totals().items())
        return f"{table}<p>{len(self.rows)} tensors; {totals}</p>"

    def to_json(self) -> str:
        """Rows and totals as a JSON document."""
        rows = [asdict(row) for row in self.rows]
        return json.dumps({"rows": rows, "totals": self.totals()}, indent=2)

    def to_csv(self) -> str:
        """Rows as CSV text with a header line; shapes written like ``64x3x7x7``."""
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(["name", "layer_type", "shape", "count", "group", "trainable"])
        for row in self.rows:
            shape = "x".join(map(str, row.shape))
            writer.writerow([row.name, row.layer_type, shape, row.count, row.group, row.trainable])
        return buffer.getvalue()


def parameter_table(model: nn.Module) -> ParameterTable:
    """The per-tensor parameter table of ``model``, grouped as
    [`param_groups`][signattack.params.param_groups] does.

    Raises:
        TypeError: ``model`` is not an ``nn.Module``.
        ValueError: A lazy module has not been materialised.
    """
    rows = tuple(
        ParameterRow(
            name=f"{module_name}.{name}" if module_name else name,
            layer_type=type(module).__name__,
            shape=tuple(parameter.shape),
            count=parameter.numel(),
            group=group,
            trainable=parameter.requires_grad,
        )
        for module_name, module, name, parameter, group in _named_parameters(model, False)
    )
    return ParameterTable(rows)
