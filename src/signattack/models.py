"""Reference networks of the problem set (PyTorch). Each takes pixels in ``[0, 255]``.

Normalisation lives inside the model, as the first thing ``forward`` does, so attacks,
bounds and eps are all in pixel units and there is no second place where inputs must be
scaled. The normalisation constants are buffers, not parameters.
"""

from __future__ import annotations

import math

import numpy as np

from signattack._lazy import missing_torch

try:
    import torch
    from torch import nn
except ModuleNotFoundError as error:  # pragma: no cover - depends on the environment
    raise missing_torch("signattack.models", error) from error

__all__ = ["CIFAR10_MEAN", "CIFAR10_STD", "AllCNN", "DigitsCNN", "Normalize", "Rescaled"]

CIFAR10_MEAN = (125.307, 122.950, 113.865)
"""Per-channel mean of CIFAR-10's training pixels, in ``[0, 255]`` units."""

CIFAR10_STD = (62.993, 62.089, 66.705)
"""Per-channel standard deviation of CIFAR-10's training pixels, in ``[0, 255]`` units."""


class Normalize(nn.Module):
    """A model behind per-channel normalisation: ``model((x - mean) / std)``.

    For a network trained on normalised inputs, so that attacks, bounds and eps stay in the
    data's units (``Normalize(net, CIFAR10_MEAN, CIFAR10_STD)`` on pixels in ``[0, 255]``, or
    ImageNet's ``(0.485, 0.456, 0.406)`` and ``(0.229, 0.224, 0.225)`` on ``[0, 1]``): the
    attack never sees the normalised space, so a radius cannot be given in the wrong one.
    torchattacks and foolbox take the same two sequences.

    The constants are kept in float64 and cast to the input's dtype, so a float64 model is
    normalised exactly. Inputs are channels first, ``(batch, channels, ...)``.

    Args:
        model: The network; ``None`` for the normalisation alone.
        mean: Per-channel means, in the data's units: a number for every channel, or a
            sequence, NumPy array or tensor of one per channel.
        std: Per-channel standard deviations, likewise, each at least float32's smallest
            normal number (a smaller one divides to inf in float32).

    Raises:
        TypeError: ``mean`` or ``std`` is not made of real numbers.
        ValueError: They differ in length, are empty, hold a value that is not finite, or a
            ``std`` below float32's smallest normal number.
    """

    mean: torch.Tensor
    std: torch.Tensor

    def __init__(self, model: nn.Module | None, mean: object, std: object) -> None:
        super().__init__()
        means, stds = _channels("mean", mean), _channels("std", std)
        if len(means) != len(stds):
            raise ValueError(
                f"mean and std must have one value per channel each, got {len(means)} "
                f"and {len(stds)}"
            )
        smallest = float(torch.finfo(torch.float32).tiny)
        if not all(value >= smallest for value in stds):
            raise ValueError(
                f"std must be positive (at least {smallest:g}) in every channel, got {stds}"
            )
        self.model = model
        shape = (1, -1, 1, 1)  # channels first
        self.register_buffer("mean", torch.tensor(means, dtype=torch.float64).view(shape))
        self.register_buffer("std", torch.tensor(stds, dtype=torch.float64).view(shape))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        channels = self.mean.shape[1]
        if x.ndim < 2 or (channels != 1 and x.shape[1] != channels):
            raise ValueError(
                f"Normalize has {channels} channels, got an input of shape {tuple(x.shape)}: "
                "inputs are channels first, (batch, channels, ...)"
            )
        shape = (1, -1) + (1,) * (x.ndim - 2)
        mean, std = self.mean.view(shape), self.std.view(shape)
        wide = x.dtype if x.dtype == torch.float64 else torch.float32
        normalised = ((x.to(wide) - mean.to(wide)) / std.to(wide)).to(
            x.dtype if x.is_floating_point() else torch.float32
        )
        if self.model is None:
            return normalised
        result: torch.Tensor = self.model(normalised)
        return result

    def extra_repr(self) -> str:
        return f"mean={self.mean.flatten().tolist()}, std={self.std.flatten().tolist()}"


def _channels(name: str, value: object) -> tuple[float, ...]:
    """``value`` as a tuple of finite floats, one per channel: a real number, a sequence of
    them, a NumPy array or a tensor."""
    if isinstance(value, torch.Tensor):
        value = value.detach().cpu().double().numpy() if value.dtype != torch.bool else value
    if isinstance(value, (tuple, list)):
        items: list[object] = list(value)
    elif isinstance(value, np.ndarray):
        items = list(value.reshape(-1)) if value.dtype.kind in "iuf" else [value]
    else:
        items = [value]
    numbers = []
    for item in items:
        if isinstance(item, (bool, np.bool_)) or not isinstance(item, (int, float, np.number)):
            raise TypeError(f"{name} must be real numbers, one per channel, got {value!r}")
        number = float(item)
        if not math.isfinite(number):
            raise ValueError(f"{name} must be finite, got {value!r}")
        numbers.append(number)
    if not numbers:
        raise ValueError(f"{name} must hold at least one value, got {value!r}")
    return tuple(numbers)


class _Normalize(nn.Module):
    """The reference networks' first layer: per-channel normalisation of 4-D pixels."""

    mean: torch.Tensor
    std: torch.Tensor

    def __init__(self, mean: tuple[float, ...], std: tuple[float, ...]) -> None:
        super().__init__()
        self.register_buffer("mean", torch.tensor(mean).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(std).view(1, -1, 1, 1))

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        return (pixels - self.mean) / self.std


class Rescaled(nn.Module):
    """A model behind a linear map from the box the data lives in to the box it takes.

    ``Rescaled(net, (0, 255), (0, 1))`` attacks a network trained on ``[0, 1]`` with 8-bit
    pixels and radii in pixel levels (``eps=8``): the attack sees the data's box, the
    network its own.

    Args:
        model: The network.
        data: The data's box ``(lower, upper)``.
        taken: The box the network takes.
    """

    def __init__(
        self, model: nn.Module, data: tuple[float, float], taken: tuple[float, float]
    ) -> None:
        super().__init__()
        if not data[0] < data[1] or not taken[0] < taken[1]:
            raise ValueError(f"boxes must have lower < upper, got data={data} and taken={taken}")
        self.model = model
        self.scale = (taken[1] - taken[0]) / (data[1] - data[0])
        self.data_lower, self.taken_lower = float(data[0]), float(taken[0])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mapped = (x - self.data_lower) * self.scale + self.taken_lower
        result: torch.Tensor = self.model(mapped)
        return result


def _block(channels_in: int, channels_out: int, kernel: int, stride: int = 1) -> nn.Sequential:
    """conv (with bias) -> ReLU -> BatchNorm, the problem set's block order."""
    return nn.Sequential(
        nn.Conv2d(channels_in, channels_out, kernel, stride=stride, padding=kernel // 2),
        nn.ReLU(inplace=True),
        nn.BatchNorm2d(channels_out),
    )


class AllCNN(nn.Module):
    """The All-CNN with batch-norm of the problem set for CIFAR-10: 1,667,166 parameters.

    Dropout 0.2 on the input; three 3x3 blocks of 96 channels (the third with stride 2);
    dropout 0.5; three 3x3 blocks of 192 (the third with stride 2); dropout 0.5; two 3x3
    blocks of 192; a 1x1 block down to 10 channels; 8x8 average pooling. Each block is
    conv -> ReLU -> BatchNorm (Springenberg et al., 2015, with batch-norm added).

    Args:
        classes: Output classes.
        channels: Widths of the two stages, ``(96, 192)`` in the problem set; narrower networks
            make quick checks cheap.
        mean: Per-channel input mean, pixel units.
        std: Per-channel input standard deviation, pixel units.
    """

    def __init__(
        self,
        classes: int = 10,
        *,
        channels: tuple[int, int] = (96, 192),
        mean: tuple[float, ...] = CIFAR10_MEAN,
        std: tuple[float, ...] = CIFAR10_STD,
    ) -> None:
        super().__init__()
        narrow, wide = channels
        self.normalize = _Normalize(mean, std)
        self.features = nn.Sequential(
            nn.Dropout(0.2),
            _block(3, narrow, 3),
            _block(narrow, narrow, 3),
            _block(narrow, narrow, 3, stride=2),
            nn.Dropout(0.5),
            _block(narrow, wide, 3),
            _block(wide, wide, 3),
            _block(wide, wide, 3, stride=2),
            nn.Dropout(0.5),
            _block(wide, wide, 3),
            _block(wide, wide, 3),
            _block(wide, classes, 1),
            nn.AvgPool2d(8),
            nn.Flatten(),
        )

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        """Logits ``(batch, classes)`` for pixels ``(batch, 3, 32, 32)`` in ``[0, 255]``."""
        logits: torch.Tensor = self.features(self.normalize(pixels))
        return logits


class DigitsCNN(nn.Module):
    """A small CNN for scikit-learn's 8x8 digits, pixels in ``[0, 255]``."""

    def __init__(self, width: int = 32) -> None:
        super().__init__()
        self.normalize = _Normalize((127.5,), (127.5,))
        self.features = nn.Sequential(
            nn.Conv2d(1, width, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(width, 2 * width, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
        )
        self.classifier = nn.Sequential(
            nn.Flatten(),
            nn.Linear(2 * width * 4 * 4, 128),
            nn.ReLU(),
            nn.Linear(128, 10),
        )

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        """Logits ``(batch, 10)`` for pixels ``(batch, 1, 8, 8)`` in ``[0, 255]``."""
        logits: torch.Tensor = self.classifier(self.features(self.normalize(pixels)))
        return logits
