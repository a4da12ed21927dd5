"""Module attributes that load their module, and so PyTorch, on first use (PEP 562)."""

from __future__ import annotations

import importlib
import warnings
from collections.abc import Callable, Mapping
from typing import Any

TORCH_MISSING = 'needs PyTorch, which is not installed: pip install "signattack[torch]"'
"""The end of the message of every import that fails for want of torch."""


def lazy_attributes(package: str, sources: Mapping[str, str]) -> Callable[[str], Any]:
    """A module ``__getattr__`` that imports ``sources[name]`` when ``name`` is asked for.

    Where the module needs PyTorch and it is not installed, the error says which
    ``pip install`` line to run.
    """

    def __getattr__(name: str) -> Any:
        if name not in sources:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        try:
            module = importlib.import_module(sources[name])
        except ModuleNotFoundError as error:
            if error.name != "torch":
                raise
            raise ModuleNotFoundError(f"{package}.{name} {TORCH_MISSING}", name="torch") from error
        return getattr(module, name)

    return __getattr__


def missing_torch(module: str, error: ModuleNotFoundError) -> ModuleNotFoundError:
    """The error to raise when ``module`` cannot import torch: the original one where it was
    something else that is missing, else one that says how to install torch."""
    if error.name != "torch":
        return ModuleNotFoundError(str(error), name=error.name)
    return ModuleNotFoundError(f"{module} {TORCH_MISSING}", name="torch")


def moved_attributes(module: str, moved: Mapping[str, tuple[str, str]]) -> Callable[[str], Any]:
    """A module ``__getattr__`` for names that moved: ``moved[name]`` is ``(module, new
    name)``; asking for the old one returns the new one with a ``DeprecationWarning`` that
    says where it is now."""

    def __getattr__(name: str) -> Any:
        if name not in moved:
            raise AttributeError(f"module {module!r} has no attribute {name!r}")
        home, new = moved[name]
        warnings.warn(
            f"{module}.{name} is deprecated: use {home}.{new}", DeprecationWarning, stacklevel=2
        )
        return getattr(importlib.import_module(home), new)

    return __getattr__
