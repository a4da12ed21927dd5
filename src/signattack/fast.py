"""Opt-in fast path for attacks on PyTorch models: compile, channels-last, low precision.

``accelerate(model)`` returns a module that computes the same logits faster, and every
attack accepts it like any other model::

    fast = accelerate(model, precision="bf16")
    x_adv = IteratedSign(eps=8, steps=5)(fast, x, y)

What it does, each switchable:

- ``precision="bf16"`` (or ``"fp16"``): the forward pass runs under autocast, so matrix
  work uses the tensor cores; logits come back as float32 and the attack's arithmetic on
  the input (projection, clipping) stays in the input's dtype. Only the direction of the
  gradient matters to a sign attack, which makes it robust to the lower precision.
- ``channels_last=True``: 4-D inputs and the model's parameters use the NHWC layout that
  cuDNN and oneDNN convolutions prefer.
- ``compile=True``: ``torch.compile`` fuses the forward and backward graphs; ``mode=
  "reduce-overhead"`` adds CUDA graphs where shapes are static. The first call compiles
  (seconds to a minute); later calls with the same shapes reuse it.
"""

from __future__ import annotations

from typing import Literal

from signattack._lazy import missing_torch

try:
    import torch
    from torch import nn
except ModuleNotFoundError as error:  # pragma: no cover - depends on the environment
    raise missing_torch("signattack.fast", error) from error

__all__ = ["Accelerated", "Precision", "accelerate"]

Precision = Literal["fp32", "bf16", "fp16"]
_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


class Accelerated(nn.Module):
    """``model`` with channels-last inputs and autocast around its forward pass.

    Attributes:
        model: The wrapped network.
        precision: ``"fp32"``, ``"bf16"`` or ``"fp16"``.
        channels_last: Whether 4-D inputs are converted to channels-last.
    """

    def __init__(self, model: nn.Module, precision: Precision, channels_last: bool) -> None:
        super().__init__()
        self.model = model
        self.precision = precision
        self.channels_last = channels_last

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Float32 logits of ``model(x)``."""
        if self.channels_last and x.dim() == 4:
            x = x.contiguous(memory_format=torch.channels_last)
        if self.precision == "fp32":
            logits: torch.Tensor = self.model(x)
            return logits
        with torch.autocast(device_type=x.device.type, dtype=_DTYPES[self.precision]):
            logits = self.model(x)
        return logits.float()


def accelerate(
    model: nn.Module,
    *,
    precision: Precision = "bf16",
    channels_last: bool = True,
    compile: bool = True,
    mode: str | None = None,
) -> nn.Module:
    """A faster stand-in for ``model`` to attack; see the module docs.

    ``channels_last`` converts ``model``'s parameters to the channels-last layout in place
    (their values do not change); everything else lives in the returned wrapper.

    Args:
        model: The network.
        precision: Autocast precision of the forward pass.
        channels_last: Use the channels-last memory layout.
        compile: Wrap in ``torch.compile``.
        mode: ``torch.compile`` mode, e.g. ``"reduce-overhead"`` for CUDA graphs.

    Returns:
        A module that takes the same inputs and returns float32 logits.

    Raises:
        TypeError: ``model`` is not an ``nn.Module``.
        ValueError: ``precision`` is unknown.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    if precision not in ("fp32", "bf16", "fp16"):
        raise ValueError(f"precision must be one of 'bf16', 'fp16', 'fp32', got {precision!r}")
    if channels_last:
        model.to(memory_format=torch.channels_last)
    wrapped: nn.Module = Accelerated(model, precision, channels_last)
    if compile:
        wrapped = torch.compile(wrapped, mode=mode)  # type: ignore[assignment]
    return wrapped
