"""scikit-learn's handwritten digits as pixel tensors, and a small CNN trained on them.

The digits are real 8x8 grey-level scans that ship with scikit-learn, so nothing is
downloaded. Their 17 grey levels are mapped to pixel values in ``[0, 255]``, the units the
attacks work in. The demo, the tests, the examples, the benchmarks and the command line's
``--data digits`` all read them from here.

Needs scikit-learn and PyTorch (the ``demo`` extra).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from signattack._lazy import missing_torch

try:
    import torch
    from torch import nn
except ModuleNotFoundError as error:  # pragma: no cover - depends on the environment
    raise missing_torch("signattack.digits", error) from error

from signattack.models import DigitsCNN

__all__ = ["DIGIT_LEVELS", "DigitsData", "accuracy", "load_digits", "train_digits_cnn"]

DIGIT_LEVELS = 16
"""The digits' grey levels run from 0 to 16."""


@dataclass(frozen=True)
class DigitsData:
    """The digits as pixel tensors in ``[0, 255]`` of shape ``(n, 1, 8, 8)``, split in two."""

    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor


def load_digits(test_fraction: float = 0.25, seed: int = 0) -> DigitsData:
    """scikit-learn's 1,797 handwritten digits, shuffled with ``seed`` and split.

    Args:
        test_fraction: Share of the images held out for testing.
        seed: Seed of the shuffle.

    Returns:
        Float32 pixels ``round(level * 255 / 16)`` in ``[0, 255]`` and int64 labels.
    """
    from sklearn.datasets import load_digits as sklearn_digits

    digits = sklearn_digits()
    pixels = np.round(digits.images * (255.0 / DIGIT_LEVELS)).astype(np.float32)[:, None]
    labels = digits.target.astype(np.int64)
    order = np.random.default_rng(seed).permutation(len(labels))
    n_test = round(len(labels) * test_fraction)
    test, train = order[:n_test], order[n_test:]
    return DigitsData(
        torch.from_numpy(pixels[train]),
        torch.from_numpy(labels[train]),
        torch.from_numpy(pixels[test]),
        torch.from_numpy(labels[test]),
    )


def train_digits_cnn(
    data: DigitsData, *, epochs: int = 12, seed: int = 0, progress: bool = False
) -> DigitsCNN:
    """Train a :class:`DigitsCNN` with Adam; a few seconds on two CPU cores.

    The global torch RNG is left as it was: initialisation and shuffling run in a forked RNG.
    """
    from tqdm.auto import tqdm

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = DigitsCNN()
        optimizer = torch.optim.Adam(model.parameters(), lr=2e-3)
        loader = torch.utils.data.DataLoader(
            torch.utils.data.TensorDataset(data.x_train, data.y_train),
            batch_size=64,
            shuffle=True,
        )
        model.train()
        for _ in tqdm(range(epochs), desc="training", unit="epoch", disable=not progress):
            for x, y in loader:
                optimizer.zero_grad()
                loss = nn.functional.cross_entropy(model(x), y)
                loss.backward()  # type: ignore[no-untyped-call]
                optimizer.step()
    return model.eval()


def accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    """Share of ``x`` that ``model`` classifies as ``y``."""
    with torch.no_grad():
        return float((model(x).argmax(dim=1) == y).float().mean())
