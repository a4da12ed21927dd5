"""Projected gradient descent under L2 (Madry et al., 2018):
[`L2PGD`][signattack.attacks.pgd_l2.L2PGD]."""

from __future__ import annotations

from dataclasses import KW_ONLY, dataclass
from typing import ClassVar

from signattack._typing import Amount, Array, namespace
from signattack.attacks.projected import Iterate, PointIsState, ProjectedGradient
from signattack.backends.batch import Batch
from signattack.core.l2 import L2
from signattack.core.losses import LossFunction, LossName
from signattack.core.norms import Feasible, Norm
from signattack.core.rules import required
from signattack.core.threat import PIXEL_BOUNDS, ModelMode
from signattack.core.validation import Bounds

__all__ = ["L2PGD", "L2Steps"]


@dataclass(frozen=True)
class L2Steps(PointIsState):
    """L2PGD's update rule: ``x_{k+1} = P(x_k + a * g_k / ||g_k||_2)``, with ``P`` the
    Euclidean projection onto the L2 ball of radius ``eps`` around ``x`` intersected with
    the box ``[lower, upper]`` ([`project`][signattack.core.norms.Feasible.project] of
    [`L2`][signattack.core.l2.L2]'s feasible set).

    The state is an [`Iterate`][signattack.attacks.projected.Iterate]: the iterate with the
    sample's centre ``x``, radius ``eps`` and signed step ``a`` (floats or per-sample arrays),
    so the rule holds the box alone, which every sample shares (``per_sample``). The attack
    returns the last iterate. The fields are numbers only and the state arrays (pure array
    code), so a backend that compiles loops (JAX) runs all the steps as one computation.

    Attributes:
        lower: Lower end of the box.
        upper: Upper end of the box.
    """

    lower: float
    upper: float

    def update(
        self, state: Iterate, step: int, losses: Array, grad: Array | None, fooled: Array
    ) -> Iterate:
        """One step of size ``a`` along the normalised gradient, projected."""
        point = state.point
        direction = L2.direction(required(grad), point.dtype)
        feasible = L2.feasible(state.centre, state.eps, self.lower, self.upper)
        # The step in the iterate's dtype, as a per-sample step is: a Python float would be
        # multiplied at higher precision, and one radius given both ways would part.
        size = namespace(point).asarray(state.step, dtype=point.dtype)
        return state.moved(feasible.project(point + size * direction))


@dataclass(frozen=True)
class L2PGD(ProjectedGradient):
    r"""Projected gradient descent under L2 (Madry et al., 2018; torchattacks' ``PGDL2``).

    Starting from ``x_0 = x`` (or a random point of the ball with ``random_start``), each of
    ``steps`` steps moves the input by ``step_size`` along the gradient normalised to unit
    L2 norm, and projects back onto the L2 ball of radius ``eps`` around ``x`` intersected
    with the pixel box:

    ``x_{k+1} = P(x_k + a * g_k / ||g_k||_2)``, ``g_k = grad_x L(x_k, y)``,

    where ``a = step_size`` and ``P`` is the exact Euclidean projection onto ``{p :
    ||p - x||_2 <= eps, lo <= p <= hi}`` (peers rescale and then clip, which is not the
    projection where the box cuts the ball). Hence ``||x_adv - x||_2 <= eps`` and ``lo <=
    x_adv <= hi`` hold exactly, in ``x``'s dtype (`
    within`). A sample whose gradient is zero (or NaN) stays where it is. Targeted attacks
    step against the gradient of the loss to the target labels.

    Units are the model's input units: RobustBench's L2 radius 0.5 on images in ``[0, 1]``
    is ``L2PGD(eps=0.5, bounds=(0, 1))``, or ``eps=127.5`` on the default box ``(0, 255)``.
    Integer images (``uint8``) come back as integers still inside the L2 ball and the box.

    Args:
        eps: Radius of the L2 ball, ``>= 0``.
        steps: Number of gradient steps, ``>= 1``.
        step_size: Step per iteration (an L2 length); ``None`` means ``2.5 * eps / steps``
            (Madry et al., 2018), which lets an attack cross the ball and come back.
        relative_step: The step as a multiple of the radius instead (``step = relative_step
            * eps``, per sample where every sample has its own radius), exclusive with
            ``step_size``.
        bounds: The pixel box ``(lower, upper)`` of valid inputs.
        random_start: Start from a random point of the ball (AutoAttack's L2 start: a point
            on the sphere of radius ``eps`` in a Gaussian direction, projected onto the box).
        targeted: Treat ``y`` as target labels and descend the loss towards them.
        loss: ``"ce"`` (cross-entropy), ``"margin"`` (Carlini-Wagner), ``"dlr"`` or a
            callable ``loss(logits, labels)`` returning per-sample losses ``(batch,)``.
        model_mode: Run an ``nn.Module`` in ``"eval"`` mode (default), ``"train"`` mode, or
            ``"unchanged"``; the model's modes and buffers are restored after the call.
        seed: Seed of the random start (see [`IteratedSign`][signattack.IteratedSign]: every sample
            draws from a stream of its own); ``None`` draws fresh entropy.
        early_stop: Freeze each sample as soon as the attack succeeds on it (see
            [`IteratedSign`][signattack.IteratedSign]).
        eot: Passes averaged per step for a randomized model (see
            [`IteratedSign`][signattack.IteratedSign]); ``1`` for a deterministic model.

    Raises:
        TypeError: A parameter has the wrong type.
        ValueError: A parameter is out of range (``eps < 0``, ``steps < 1``,
            ``step_size < 0``, ``lower >= upper``, an unknown loss or mode).

    Example:
        ```python
        attack = L2PGD(eps=0.5, steps=10, bounds=(0, 1))  # steps of 0.125
        x_adv = attack(model, images, labels)  # images' shape, dtype and device
        ```
    """

    eps: float
    steps: int = 10
    _: KW_ONLY
    step_size: float | None = None
    relative_step: float | None = None
    bounds: Bounds | tuple[float, float] = PIXEL_BOUNDS
    random_start: bool = False
    targeted: bool = False
    loss: LossName | LossFunction = "ce"
    model_mode: ModelMode = "eval"
    seed: int | None = None
    early_stop: bool = False
    eot: int = 1

    fixed_norm: ClassVar[Norm] = L2
    """L2PGD works in L2."""

    def __post_init__(self) -> None:
        self._check_steps()

    @property
    def name(self) -> str:
        """``PGD-L2``."""
        return "PGD-L2"

    def _rule(self, batch: Batch, feasible: Feasible, eps: Amount, step: Amount) -> L2Steps:
        """Normalised-gradient steps, projected onto the L2 ball and the box; the rule
        holds the box (numbers: it may be compiled) and makes the set again from the
        state's centre and radius at every step."""
        return L2Steps(batch.bounds.lower, batch.bounds.upper)
