"""Type aliases shared across the package.

The array API has no static type that covers NumPy arrays and PyTorch tensors at once, so
framework-agnostic code annotates arrays as :data:`Array`. Public entry points use a type
variable instead, so that callers get back the array type they passed in.
"""

from __future__ import annotations

from typing import Any, TypeAlias, TypeVar

Array: TypeAlias = Any
"""An array of any array-API-compatible library (NumPy ``ndarray``, ``torch.Tensor``, ...)."""

ArrayT = TypeVar("ArrayT")
"""The caller's array type, returned unchanged."""
