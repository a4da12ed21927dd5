"""Shared fixtures and the hypothesis profiles ("ci" is the default; "dev" runs more examples)."""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, settings

from signattack import LinearClassifier

# torch.compile's on-disk cache does not tell CPU kernel sets apart: kernels cached under one
# ATEN_CPU_CAPABILITY and loaded under another compute garbage or corrupt memory. Each test
# session compiles into a cache of its own.
HANG_LIMIT = 3600
"""Seconds after which a test's subprocess counts as hung. It guards against a hang only: on
a machine under load (other processes on the same cores) a run takes many times longer than
here, and no test may fail because a busy machine is slow."""

_INDUCTOR_CACHE = tempfile.mkdtemp(prefix="signattack-inductor-")
os.environ["TORCHINDUCTOR_CACHE_DIR"] = _INDUCTOR_CACHE
atexit.register(shutil.rmtree, _INDUCTOR_CACHE, ignore_errors=True)

settings.register_profile(
    "ci",
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
    derandomize=True,
)
settings.register_profile("dev", max_examples=400, deadline=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

torch.set_num_threads(min(2, torch.get_num_threads()))


def linear_pair(
    classes: int, features: int, *, scale: float = 0.01, seed: int = 0
) -> tuple[LinearClassifier, torch.nn.Module]:
    """The same float64 linear classifier as a NumPy model and as a torch module."""
    rng = np.random.default_rng(seed)
    weight = rng.normal(scale=scale, size=(classes, features))
    bias = rng.normal(scale=scale * 10, size=classes)
    module = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(features, classes)).double()
    with torch.no_grad():
        module[1].weight.copy_(torch.from_numpy(weight))
        module[1].bias.copy_(torch.from_numpy(bias))
    return LinearClassifier(weight, bias), module


def correct(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> int:
    """How many of ``x`` the model classifies as ``y``: a count, exact on every CPU, where a
    float32 mean and a float64 fraction of it can differ in the last bit."""
    with torch.no_grad():
        return int((model(x).argmax(dim=1) == y).sum())


@pytest.fixture(scope="session")
def digits():
    """scikit-learn's digits, split, as pixel tensors in [0, 255]."""
    from signattack.digits import load_digits

    return load_digits(seed=0)


@pytest.fixture(scope="session")
def digits_model(digits):
    """A DigitsCNN trained for a few seconds on the real digits."""
    from signattack.digits import train_digits_cnn

    return train_digits_cnn(digits, epochs=8, seed=0)
