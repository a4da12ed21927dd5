"""The data a run evaluates (``--data``): scikit-learn's digits, CIFAR-10's python batches or
an ``.npz`` file, in batches on the device; and what the command line checks of the data
against the model (the channels of ``--mean``/``--std``, the classes the labels use)."""

from __future__ import annotations

import argparse
import sys
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from signattack._cli_args import UsageError, numbers
from signattack._io import Json

if TYPE_CHECKING:
    import torch
    from torch import nn

    from signattack._host import HostArray


def warn_unused_outputs(model: nn.Module, x: HostArray, y: HostArray, device: torch.device) -> None:
    """Say so where the labels use few of the model's outputs: a torchvision network built
    with its 1000 ImageNet classes runs on 10-class data without an error, and every
    prediction among the other 990 counts as a mistake. A model that fails here is left to
    the evaluation, which reports the failure (on every process under torchrun)."""
    import torch

    try:
        with torch.no_grad():
            probe = torch.as_tensor(x[:1]).float().to(device).clone()  # never the data itself
            outputs = model(probe).shape[-1]
    except Exception:
        return
    used = int(y.max()) + 1
    if outputs >= 2 * used and outputs > 10:
        print(
            f"signattack evaluate: warning: the model has {outputs} outputs but the labels use "
            f"{used} classes: was it built for this data? (--model-arg num_classes={used})",
            file=sys.stderr,
        )


def check_channels(args: argparse.Namespace, x: HostArray) -> None:
    """Refuse ``--mean``/``--std`` whose number of values is not the data's channels (the
    second axis of ``x``, channels first); one value is shared by every channel."""
    if args.mean is None:
        return
    count = len(numbers(args.mean, "--mean"))
    channels = x.shape[1] if x.ndim >= 2 else None
    if count != 1 and count != channels:
        raise UsageError(
            f"--mean and --std must have one value per channel of the data (channels first: "
            f"{channels} in shape {tuple(x.shape)}) or one for all, got {count}"
        )


def load_data(spec: str, split: str, limit: int | None) -> tuple[HostArray, HostArray]:

    x: HostArray
    y: HostArray
    if spec == "digits":
        from signattack.digits import load_digits

        data = load_digits()
        pair = (data.x_test, data.y_test) if split == "test" else (data.x_train, data.y_train)
        x, y = pair[0].numpy(), pair[1].numpy()
    elif spec.startswith("cifar10:"):
        from signattack.data import read_cifar10

        try:
            x, y = read_cifar10(spec.partition(":")[2], "test" if split == "test" else "train")
        except (FileNotFoundError, ValueError) as error:
            raise UsageError(f"--data {spec}: {error}") from None
    elif spec.startswith("npz:"):
        x, y = _read_npz(spec)
    else:
        raise UsageError(f"--data must be cifar10:DIR, digits or npz:FILE, got {spec!r}")
    if limit is not None:
        x, y = x[:limit], y[:limit]
    if len(x) == 0:
        raise UsageError(f"--data {spec} must hold samples, got none")
    return x, y


def _read_npz(spec: str) -> tuple[HostArray, HostArray]:
    import numpy as np

    path = Path(spec.partition(":")[2])
    if not path.is_file():
        raise UsageError(f"--data {spec}: no such file {str(path)!r}")
    try:
        with np.load(path, allow_pickle=False) as arrays:
            if "x" not in arrays or "y" not in arrays:
                raise UsageError(f"--data {spec}: the file must hold arrays named x and y")
            x, y = arrays["x"], arrays["y"]
    except (ValueError, OSError, zipfile.BadZipFile, EOFError) as error:
        raise UsageError(f"--data {spec} is not a readable .npz file: {error}") from None
    if x.ndim < 2 or y.shape != (len(x),):
        raise UsageError(
            f"--data {spec}: x must be (n, ...) and y (n,), got {x.shape} and {y.shape}"
        )
    if not np.issubdtype(y.dtype, np.integer):
        raise UsageError(f"--data {spec}: y must hold integer labels, got dtype {y.dtype}")
    return x, y


class Batches:
    """The data in batches on the device, with a length, so that progress has a total."""

    def __init__(self, x: HostArray, y: HostArray, size: int, device: torch.device) -> None:
        self.x, self.y, self.size, self.device = x, y, size, device

    def __len__(self) -> int:
        return -(-len(self.y) // self.size)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        import torch

        for start in range(0, len(self.y), self.size):
            images = torch.as_tensor(self.x[start : start + self.size]).to(self.device)
            labels = torch.as_tensor(self.y[start : start + self.size]).long().to(self.device)
            yield images.float(), labels


def data_record(spec: str, split: str, limit: int | None) -> dict[str, Json]:
    """What a report's metadata and an export record of ``--data``: the source with its path
    made absolute, the split, the limit, and whether it is the synthetic stand-in for
    CIFAR-10 (a folder [`write_synthetic_cifar10`][signattack.data.write_synthetic_cifar10]
    marked)."""
    kind, colon, where = spec.partition(":")
    source = f"{kind}:{Path(where).absolute()}" if colon else spec
    synthetic = False
    if kind == "cifar10" and colon:
        from signattack.data import SYNTHETIC_MARK, find_cifar10

        try:
            synthetic = (find_cifar10(where) / SYNTHETIC_MARK).is_file()
        except FileNotFoundError:
            synthetic = False
    return {"source": source, "split": split, "limit": limit, "synthetic": synthetic}
