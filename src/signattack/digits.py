"""scikit-learn's handwritten digits as pixel tensors, and a small CNN trained on them.

The digits are real 8x8 grey-level scans that ship with scikit-learn, so nothing is
downloaded. Their 17 grey levels are mapped to pixel values in ``[0, 255]``, the units the
attacks work in. The demo, the tests, the examples, the benchmarks and the command line's
``--data digits`` all read them from here.

Needs scikit-learn and PyTorch (the ``demo`` extra).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from signattack._lazy import missing_torch
from signattack.data import DIGIT_LEVELS, digit_arrays

try:
    import torch
    from torch import nn
except ModuleNotFoundError as error:  # pragma: no cover - depends on the environment
    raise missing_torch("signattack.digits", error) from error

from signattack.models import DigitsCNN

__all__ = [
    "DIGIT_LEVELS",
    "DigitsData",
    "accuracy",
    "digits_cnn_in_jax",
    "load_digits",
    "train_digits_cnn",
]


@dataclass(frozen=True)
class DigitsData:
    """The digits as pixel tensors in ``[0, 255]`` of shape ``(n, 1, 8, 8)``, split in two."""

    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor

    def __repr__(self) -> str:
        """Counts and shapes, not the pixels: a notebook cell's last line stays one line."""
        image = tuple(self.x_train.shape[1:])
        classes = len(torch.unique(torch.cat([self.y_train, self.y_test])))
        return (
            f"DigitsData(train={len(self.x_train)}, test={len(self.x_test)}, image={image}, "
            f"classes={classes}, pixels in [0, 255])"
        )


def load_digits(test_fraction: float = 0.25, seed: int = 0) -> DigitsData:
    """scikit-learn's 1,797 handwritten digits, shuffled with ``seed`` and split.

    Args:
        test_fraction: Share of the images held out for testing.
        seed: Seed of the shuffle.

    Returns:
        Float32 pixels ``round(level * 255 / 16)`` in ``[0, 255]`` and int64 labels.
    """
    x_train, y_train, x_test, y_test = digit_arrays(test_fraction, seed)
    return DigitsData(
        torch.from_numpy(x_train),
        torch.from_numpy(y_train),
        torch.from_numpy(x_test),
        torch.from_numpy(y_test),
    )


def train_digits_cnn(
    data: DigitsData, *, epochs: int = 12, seed: int = 0, progress: bool = False
) -> DigitsCNN:
    """Train a [`DigitsCNN`][signattack.digits.DigitsCNN] with Adam; a few seconds on two CPU cores.

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


def digits_cnn_in_jax(model: DigitsCNN) -> Any:
    """A trained [`DigitsCNN`][signattack.models.DigitsCNN] as a JAX function of pixels, with
    the same weights: for comparing the backends on one network. Needs jax.

    Returns:
        ``jax.tree_util.Partial(forward, params)``: a pytree whose parameters a compiled
        attack takes as arguments.
    """
    import jax
    import jax.numpy as jnp

    params = {k: jnp.asarray(v.detach().cpu().numpy()) for k, v in model.state_dict().items()}

    def conv(x: Any, weight: Any, bias: Any) -> Any:
        out = jax.lax.conv_general_dilated(
            x, weight, (1, 1), "SAME", dimension_numbers=("NCHW", "OIHW", "NCHW")
        )
        return out + bias[None, :, None, None]

    def forward(p: dict[str, Any], pixels: Any) -> Any:
        x = (pixels - p["normalize.mean"]) / p["normalize.std"]
        x = jax.nn.relu(conv(x, p["features.0.weight"], p["features.0.bias"]))
        x = jax.nn.relu(conv(x, p["features.2.weight"], p["features.2.bias"]))
        x = jax.lax.reduce_window(x, -jnp.inf, jax.lax.max, (1, 1, 2, 2), (1, 1, 2, 2), "VALID")
        x = jnp.reshape(x, (x.shape[0], -1))
        x = jax.nn.relu(x @ p["classifier.1.weight"].T + p["classifier.1.bias"])
        return x @ p["classifier.3.weight"].T + p["classifier.3.bias"]

    partial: Callable[..., Any] = jax.tree_util.Partial
    return partial(forward, params)
