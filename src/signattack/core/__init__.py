"""Framework-agnostic core: the norms ([`Norm`][signattack.core.Norm]:
[`LINF`][signattack.core.LINF], [`L2`][signattack.core.L2]), the attack maths, the losses and the
boundary checks.

Nothing under `signattack.core` imports a deep-learning framework; every function works on any
array-API array.
"""

from signattack.core.kernels import (
    ball_box_limits,
    clip,
    round_into_limits,
    sign_step,
    signed_unit,
    within_linf_ball,
)
from signattack.core.l2 import L2
from signattack.core.linf import LINF
from signattack.core.losses import (
    CROSS_ENTROPY,
    DLR,
    MARGIN,
    TARGETED_DLR,
    TARGETED_MARGIN,
    LogitLoss,
    LossFunction,
    LossName,
    cross_entropy,
    dlr,
    margin,
    targeted_dlr,
    targeted_margin,
)
from signattack.core.norms import Feasible, Norm, NormName, norm_of
from signattack.core.rules import (
    Evaluated,
    Start,
    State,
    TraceableRule,
    UpdateRule,
    required,
)
from signattack.core.threat import PIXEL_BOUNDS, ModelMode, ThreatModel
from signattack.core.validation import Bounds

__all__ = [
    "CROSS_ENTROPY",
    "DLR",
    "L2",
    "LINF",
    "MARGIN",
    "PIXEL_BOUNDS",
    "TARGETED_DLR",
    "TARGETED_MARGIN",
    "Bounds",
    "Evaluated",
    "Feasible",
    "LogitLoss",
    "LossFunction",
    "LossName",
    "ModelMode",
    "Norm",
    "NormName",
    "Start",
    "State",
    "ThreatModel",
    "TraceableRule",
    "UpdateRule",
    "ball_box_limits",
    "clip",
    "cross_entropy",
    "dlr",
    "margin",
    "norm_of",
    "required",
    "round_into_limits",
    "sign_step",
    "signed_unit",
    "targeted_dlr",
    "targeted_margin",
    "within_linf_ball",
]
