"""Probes: look at the loss around inputs (any backend) and around weights (PyTorch).

Input space: [`input_gradient`][signattack.probes.input_gradient],
[`direction`][signattack.probes.direction], [`loss_along`][signattack.probes.loss_along],
[`loss_surface`][signattack.probes.loss_surface],
[`linearization_gap`][signattack.probes.linearization_gap] and
[`check_gradients`][signattack.probes.check_gradients].

Weight space, loaded with PyTorch on first use:
[`scale_invariance`][signattack.probes.scale_invariance],
[`effective_learning_rates`][signattack.probes.effective_learning_rates],
[`filter_normalized_direction`][signattack.probes.filter_normalized_direction],
[`loss_slice_1d`][signattack.probes.loss_slice_1d],
[`loss_slice_2d`][signattack.probes.loss_slice_2d] and [`restored`][signattack.probes.restored].
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from signattack._lazy import lazy_attributes
from signattack.probes.input_space import (
    DirectionName,
    GradientMaskingWarning,
    GradientReport,
    LinearizationGap,
    LossSurface,
    check_gradients,
    direction,
    input_gradient,
    linearization_gap,
    loss_along,
    loss_surface,
)

if TYPE_CHECKING:
    from signattack.probes.weights import (
        LossSlice,
        ScaleProbe,
        effective_learning_rates,
        filter_normalized_direction,
        loss_slice_1d,
        loss_slice_2d,
        restored,
        scale_invariance,
    )

_WEIGHT_SPACE = {
    "LossSlice",
    "ScaleProbe",
    "effective_learning_rates",
    "filter_normalized_direction",
    "loss_slice_1d",
    "loss_slice_2d",
    "restored",
    "scale_invariance",
}

__all__ = [
    "DirectionName",
    "GradientMaskingWarning",
    "GradientReport",
    "LinearizationGap",
    "LossSlice",
    "LossSurface",
    "ScaleProbe",
    "check_gradients",
    "direction",
    "effective_learning_rates",
    "filter_normalized_direction",
    "input_gradient",
    "linearization_gap",
    "loss_along",
    "loss_slice_1d",
    "loss_slice_2d",
    "loss_surface",
    "restored",
    "scale_invariance",
]

# The weight-space probes load, and with them PyTorch, on first use.
__getattr__ = lazy_attributes(__name__, dict.fromkeys(_WEIGHT_SPACE, "signattack.probes.weights"))
