"""Leaving a torch model as it was found: its train/eval flags and chosen tensors' values.

Shared by the PyTorch backend (modes, and buffers where a module runs in training mode) and
the weight-space probes (modes, parameters and buffers). Imports torch.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager

import torch
from torch import nn


@contextmanager
def kept_modes(model: nn.Module) -> Iterator[None]:
    """Give every module of ``model`` its train/eval flag back on exit."""
    training = [(module, module.training) for module in model.modules()]
    try:
        yield
    finally:
        for module, was_training in training:
            module.training = was_training


@contextmanager
def kept_values(tensors: Iterable[torch.Tensor]) -> Iterator[None]:
    """Give ``tensors`` their values back, bit for bit, on exit (also after an exception)."""
    saved = [(tensor, tensor.detach().clone()) for tensor in tensors]
    try:
        yield
    finally:
        with torch.no_grad():
            for tensor, value in saved:
                tensor.copy_(value)
