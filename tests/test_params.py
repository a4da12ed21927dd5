"""param_groups and parameter_table: counts, every norm kind, tied and lazy parameters."""

from __future__ import annotations

import csv
import io
import json

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from torch import nn

from signattack import param_groups, parameter_table
from signattack.params import NORM_LAYERS


def test_resnet18_split_and_table():
    torchvision = pytest.importorskip("torchvision")
    model = torchvision.models.resnet18()
    groups = param_groups(model)
    assert groups.counts() == {"bn_affine": 9_600, "biases": 1_000, "weights": 11_678_912}
    table = parameter_table(model)
    assert table.total == 11_689_512 == sum(p.numel() for p in model.parameters())
    assert table.totals()["bn_affine"] == 9_600
    text = str(table)
    assert "conv1.weight" in text
    assert "11,689,512" in text
    rows = list(csv.DictReader(io.StringIO(table.to_csv())))
    assert len(rows) == len(list(model.parameters()))
    assert rows[0] == {
        "name": "conv1.weight",
        "layer_type": "Conv2d",
        "shape": "64x3x7x7",
        "count": "9408",
        "group": "weights",
        "trainable": "True",
    }
    assert json.loads(table.to_json())["totals"]["total"] == 11_689_512
    layers = table.layers()
    with_parameters = [m for m in model.modules() if list(m.parameters(recurse=False))]
    assert len(layers) == len(with_parameters) == 41
    for layer, module in zip(layers, with_parameters, strict=True):
        assert layer.count == sum(p.numel() for p in module.parameters(recurse=False))
        assert layer.layer_type == type(module).__name__
    assert (layers[-1].name, layers[-1].tensors, layers[-1].count) == (
        "fc",
        ("weight", "bias"),
        513_000,
    )
    assert "41 layers, 11,689,512 total" in table.layer_text()


def test_layer_table_of_a_bare_parameter():
    model = nn.Linear(3, 2)
    (layer,) = parameter_table(model).layers()
    assert (layer.name, layer.layer_type, layer.count) == ("", "Linear", 8)
    assert "(model)" in parameter_table(model).layer_text()


def _norm_layer(kind: type[nn.Module]) -> nn.Module:
    if kind is nn.GroupNorm:
        return nn.GroupNorm(2, 4)
    if kind in (nn.LayerNorm, nn.RMSNorm):
        return kind(4)
    if kind.__name__.startswith("Lazy"):
        return kind(affine=True) if "Instance" in kind.__name__ else kind()
    if "Instance" in kind.__name__:
        return kind(4, affine=True)
    return kind(4)


@pytest.mark.parametrize("kind", NORM_LAYERS, ids=lambda k: k.__name__)
def test_every_norm_kind_goes_to_bn_affine(kind):
    layer = _norm_layer(kind)
    if kind.__name__.startswith("Lazy"):
        with pytest.raises(ValueError, match="not materialised yet"):
            param_groups(layer)
        dims = {"1d": (2, 4, 3), "2d": (2, 4, 3, 3), "3d": (2, 4, 3, 3, 3)}
        layer(torch.randn(dims[kind.__name__[-2:]]))
    groups = param_groups(nn.Sequential(nn.Linear(3, 4), layer))
    assert [id(p) for p in groups.bn_affine] == [id(p) for p in layer.parameters()]
    assert len(groups.bn_affine) >= 1
    assert len(groups.biases) == 1
    assert len(groups.weights) == 1


def test_recurrent_bilinear_and_transposed_biases():
    model = nn.ModuleDict(
        {
            "lstm": nn.LSTM(3, 4, num_layers=2),
            "cell": nn.GRUCell(3, 4),
            "bilinear": nn.Bilinear(2, 3, 4),
            "deconv": nn.ConvTranspose2d(2, 3, 3),
        }
    )
    groups = param_groups(model)
    named = {id(p): n for n, p in model.named_parameters()}
    assert sorted(named[id(p)] for p in groups.biases) == sorted(
        n for n in named.values() if n.rsplit(".", 1)[-1].startswith("bias")
    )
    assert all("weight" in named[id(p)] for p in groups.weights)


class _Scaled(nn.Module):
    """A custom module with its own parameters: by layer type, they are weights."""

    def __init__(self) -> None:
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(3))
        self.temperature = nn.Parameter(torch.ones(()))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x / self.temperature + self.bias


def test_custom_module_parameters_are_weights():
    groups = param_groups(nn.Sequential(nn.Linear(3, 3), _Scaled()))
    assert len(groups.weights) == 3
    assert len(groups.biases) == 1


def test_tied_parameters_appear_once_and_frozen_ones_are_a_choice():
    encoder, decoder = nn.Linear(4, 3), nn.Linear(3, 4, bias=False)
    decoder.weight = nn.Parameter(encoder.weight.t().contiguous())
    model = nn.Sequential(encoder, nn.ReLU(), nn.Linear(3, 3), decoder)
    model[2].weight = encoder.weight  # tied across layers
    groups = param_groups(model)
    flat = [*groups.bn_affine, *groups.biases, *groups.weights]
    assert len({id(p) for p in flat}) == len(flat) == len(list(model.parameters()))
    encoder.bias.requires_grad_(False)
    assert encoder.bias in param_groups(model).biases
    assert not any(p is encoder.bias for p in param_groups(model, trainable_only=True).biases)


LAYERS = [
    lambda: nn.Linear(4, 4),
    lambda: nn.Linear(4, 4, bias=False),
    lambda: nn.BatchNorm1d(4),
    lambda: nn.LayerNorm(4),
    lambda: nn.ReLU(),
    lambda: nn.Dropout(0.1),
    lambda: nn.BatchNorm1d(4, affine=False),
]


@given(st.lists(st.integers(0, len(LAYERS) - 1), min_size=1, max_size=8))
def test_every_parameter_appears_exactly_once_in_module_order(choices):
    model = nn.Sequential(*[LAYERS[i]() for i in choices])
    groups = param_groups(model)
    in_order = list(model.parameters())
    grouped = [*groups.bn_affine, *groups.biases, *groups.weights]
    assert sorted(map(id, grouped)) == sorted(map(id, in_order))
    for group in groups:
        positions = [next(i for i, q in enumerate(in_order) if q is p) for p in group]
        assert positions == sorted(positions)


def test_weight_decay_groups_drive_a_real_optimizer():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2), nn.Flatten(), nn.Linear(2, 3))
    groups = param_groups(model)
    before = {id(p): p.detach().clone() for p in model.parameters()}
    optimizer = torch.optim.SGD(groups.with_weight_decay(0.1), lr=0.5, momentum=0.9, nesterov=True)
    for p in model.parameters():
        p.grad = torch.zeros_like(p)
    optimizer.step()
    # First Nesterov step on the decay gradient g = 0.1 w: w - lr (1 + momentum) g.
    for p in groups.weights:
        torch.testing.assert_close(p.detach(), before[id(p)] * (1 - 0.5 * 1.9 * 0.1))
    for p in [*groups.bn_affine, *groups.biases]:
        assert torch.equal(p.detach(), before[id(p)])
    names = [g["name"] for g in groups.with_weight_decay(0.1)]
    assert names == ["weights", "bn_affine", "biases"]


def test_bad_arguments():
    with pytest.raises(TypeError, match=r"model must be a torch\.nn\.Module"):
        param_groups(lambda x: x)
    with pytest.raises(ValueError, match="weight_decay must be >= 0, got -1"):
        param_groups(nn.Linear(2, 2)).with_weight_decay(-1)
