"""signattack: typed, framework-agnostic signed-gradient adversarial attacks.

>>> from signattack import IteratedSign
>>> attack = IteratedSign(eps=8, steps=5)   # pixels in [0, 255]
>>> attack.resolved_step_size
4.0

``import signattack`` imports no deep-learning framework; the PyTorch backend loads the first
time an attack is handed a ``torch.Tensor``.
"""

from typing import TYPE_CHECKING

from signattack._lazy import lazy_attributes
from signattack._typing import Model
from signattack._version import __version__
from signattack.attacks import (
    APGD,
    APGDT,
    FABT,
    FGSM,
    L2PGD,
    Attack,
    AttackResult,
    EpsAttack,
    IteratedSign,
    PerSampleAttack,
    Square,
)
from signattack.backends import Backend, LinearClassifier, NumpyModel, register_backend
from signattack.core import Bounds, LogitLoss
from signattack.core.validation import UnitsWarning
from signattack.masking import straight_through

if TYPE_CHECKING:
    from signattack.fast import accelerate
    from signattack.params import ParamGroups, param_groups, parameter_table

_NEEDS_TORCH = {
    "ParamGroups": "signattack.params",
    "accelerate": "signattack.fast",
    "param_groups": "signattack.params",
    "parameter_table": "signattack.params",
}


__all__ = [
    "APGD",
    "APGDT",
    "FABT",
    "FGSM",
    "L2PGD",
    "Attack",
    "AttackResult",
    "Backend",
    "Bounds",
    "EpsAttack",
    "IteratedSign",
    "LinearClassifier",
    "LogitLoss",
    "Model",
    "NumpyModel",
    "ParamGroups",
    "PerSampleAttack",
    "Square",
    "UnitsWarning",
    "__version__",
    "accelerate",
    "param_groups",
    "parameter_table",
    "register_backend",
    "straight_through",
]

# The PyTorch-only names load their module, and PyTorch, on first use.
__getattr__ = lazy_attributes(__name__, _NEEDS_TORCH)
