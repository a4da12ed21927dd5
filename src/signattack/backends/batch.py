"""One validated batch with its open backend: the common start of every attack and probe."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from array_api_compat import array_namespace, device, to_device

from signattack._typing import Array
from signattack.backends import open_backend
from signattack.backends._protocol import Backend, ModelMode
from signattack.core.losses import LossFunction
from signattack.core.validation import Bounds, check_batch

__all__ = ["Batch", "open_batch"]


@dataclass(frozen=True)
class Batch:
    """A checked batch, ready for the kernels.

    Attributes:
        backend: The open backend of the model.
        x: The inputs as a detached floating array (``float32`` for integer inputs), moved
            onto the box where they were outside it by round-off only.
        labels: The labels as ``int64`` on ``x``'s device.
        bounds: The box, narrowed to the dtype's range for integer inputs.
        input_dtype: The caller's dtype, to convert results back to.
        integer: Whether the caller's inputs are integers.
    """

    backend: Backend
    x: Array
    labels: Array
    bounds: Bounds
    input_dtype: object
    integer: bool


@contextmanager
def open_batch(
    model: object, x: Array, y: Array, *, loss: LossFunction, model_mode: ModelMode, bounds: Bounds
) -> Iterator[Batch]:
    """Open the backend for ``x``, validate ``x`` and ``y``, and convert them for the kernels.

    The model is restored on exit, also when validation fails.

    Raises:
        TypeError, ValueError: As :func:`signattack.core.validation.check_batch`.
    """
    with open_backend(model, x, loss, model_mode) as backend:
        x = backend.prepare(x)
        check_batch(x, y, bounds)
        xp = array_namespace(x)
        integer = xp.isdtype(x.dtype, "integral")
        lower, upper = bounds
        if integer:
            lower = max(lower, float(xp.iinfo(x.dtype).min))
            upper = min(upper, float(xp.iinfo(x.dtype).max))
        x_float = xp.astype(x, xp.float32) if integer else x
        yield Batch(
            backend=backend,
            x=xp.clip(x_float, lower, upper),
            labels=xp.astype(to_device(y, device(x)), xp.int64, copy=False),
            bounds=Bounds(lower, upper),
            input_dtype=x.dtype,
            integer=integer,
        )
