"""The threat model: the box inputs live in, the loss an attack climbs, the model's mode.

One validated value, [`ThreatModel`][signattack.core.threat.ThreatModel], that attacks, probes and
the evaluation share: it is checked once, where it is made, and passed around whole.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, TypeAlias

from signattack.core.losses import LossFunction, LossName, resolve_loss
from signattack.core.norms import Norm, NormName, norm_of
from signattack.core.validation import Bounds, check_bounds, check_choice

__all__ = ["PIXEL_BOUNDS", "ModelMode", "ThreatModel"]

ModelMode: TypeAlias = Literal["eval", "train", "unchanged"]
"""How the model runs during an attack: switched to eval or train mode (and switched back
afterwards), or left in whatever mode it is in."""

MODEL_MODES: tuple[ModelMode, ...] = ("eval", "train", "unchanged")

PIXEL_BOUNDS = Bounds(0.0, 255.0)
"""The default box: 8-bit pixel values."""


@dataclass(frozen=True)
class ThreatModel:
    """Where inputs live and how an attack scores them, validated once.

    Attributes:
        bounds: The box ``(lower, upper)`` of valid inputs, in the model's input units.
        loss: ``"ce"``, ``"margin"``, ``"dlr"`` or a per-sample loss callable
            ``loss(logits, labels) -> (batch,)``.
        model_mode: ``"eval"`` or ``"train"`` switch an ``nn.Module`` for the call and back;
            ``"unchanged"`` leaves it as it is.
        norm: The norm of the ball, ``"linf"`` (default) or ``"l2"`` (or a
            [`Norm`][signattack.core.norms.Norm]); stored as the norm itself.

    Raises:
        TypeError: A field has the wrong type.
        ValueError: ``lower >= upper``, an unknown loss name or mode.
    """

    bounds: Bounds | tuple[float, float] = PIXEL_BOUNDS
    loss: LossName | LossFunction = "ce"
    model_mode: ModelMode = "eval"
    norm: Norm | NormName = "linf"

    def __post_init__(self) -> None:
        object.__setattr__(self, "norm", norm_of(self.norm))
        object.__setattr__(self, "bounds", check_bounds(self.bounds))
        resolve_loss(self.loss)
        check_choice("model_mode", self.model_mode, MODEL_MODES)

    @property
    def box(self) -> Bounds:
        """The bounds as [`Bounds`][signattack.Bounds]."""
        return Bounds(*self.bounds)

    @property
    def geometry(self) -> Norm:
        """The norm, typed as a [`Norm`][signattack.core.norms.Norm]."""
        return norm_of(self.norm)

    @property
    def loss_function(self) -> LossFunction:
        """The loss as a callable."""
        return resolve_loss(self.loss)
