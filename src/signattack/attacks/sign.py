"""Signed-gradient attacks under the L-inf threat model: FGSM and IteratedSign (BIM / PGD)."""

from __future__ import annotations

import dataclasses
import warnings
from dataclasses import KW_ONLY, dataclass
from typing import ClassVar

import numpy as np

from signattack._typing import Amount, Array, ArrayT, Model
from signattack.attacks.base import AttackResult
from signattack.attacks.projected import Iterate, PointIsState, ProjectedGradient
from signattack.backends.batch import Batch
from signattack.core.kernels import clip
from signattack.core.linf import LINF, LinfFeasible
from signattack.core.losses import LossFunction, LossName
from signattack.core.norms import Feasible
from signattack.core.rules import required
from signattack.core.threat import PIXEL_BOUNDS, ModelMode, ThreatModel
from signattack.core.validation import Bounds

__all__ = ["FGSM", "IteratedSign", "SignSteps"]


@dataclass(frozen=True)
class SignSteps(PointIsState):
    """IteratedSign's update rule: ``x_{k+1} = clip_[low, high](x_k + a * sign(g_k))``.

    The state is an [`Iterate`][signattack.attacks.projected.Iterate]: the iterate with the
    sample's limits ``[low, high]`` (the L-inf feasible set) and signed step ``a`` (a float or
    a per-sample array), so the rule itself holds nothing (``per_sample``). The attack
    returns the last iterate. The rule is pure array code, so a backend that compiles loops
    (JAX) runs all its steps as one computation.
    """

    def update(
        self, state: Iterate, step: int, losses: Array, grad: Array | None, fooled: Array
    ) -> Iterate:
        """One projected signed-gradient step."""
        direction = LINF.direction(required(grad), state.point.dtype)
        moved = state.point + state.step * direction
        return state.moved(clip(moved, state.low, state.high))  # LinfFeasible.project


@dataclass(frozen=True)
class IteratedSign(ProjectedGradient):
    r"""Iterated signed-gradient attack under L-inf: BIM, or PGD with ``random_start=True``.

    Starting from ``x_0 = x`` (or a uniform point of the ball with ``random_start``), each of
    ``steps`` steps moves every pixel by ``step_size`` in the direction of the gradient's
    sign and projects back onto the eps-ball around ``x`` intersected with the pixel box:

    ``x_{k+1} = clip_[max(lo, x - eps), min(hi, x + eps)](x_k + a * sign(grad_x L(x_k, y)))``

    where ``a = step_size``. Hence ``|x_adv - x|_inf <= eps`` and ``lo <= x_adv <= hi``
    hold exactly, in ``x``'s dtype.
    Targeted attacks step against the gradient of the loss to the target labels.

    Units are the model's input units: with the default ``bounds=(0, 255)``, ``eps=8`` is
    8 pixel levels. The problem set's unprojected 5-step attack that adds ``8 * sign(grad)`` per
    step is ``IteratedSign(eps=40, steps=5, step_size=8)``: with ``eps = steps * step_size``
    the projection onto the ball never binds.

    Args:
        eps: Radius of the L-inf ball, ``>= 0``.
        steps: Number of gradient steps, ``>= 1``.
        step_size: Step per iteration; ``None`` means ``2.5 * eps / steps`` (Madry et al.,
            2018), which lets an attack cross the ball and come back.
        relative_step: The step as a multiple of the radius instead (``step = relative_step
            * eps``, per sample where every sample has its own radius), exclusive with
            ``step_size``; FGSM is ``relative_step=1`` with one step.
        bounds: The pixel box ``(lower, upper)`` of valid inputs.
        random_start: Start from a uniform random point of the ball (PGD).
        targeted: Treat ``y`` as target labels and descend the loss towards them.
        loss: ``"ce"`` (cross-entropy), ``"margin"`` (Carlini-Wagner) or a callable
            ``loss(logits, labels)`` returning per-sample losses of shape ``(batch,)``.
        model_mode: Run an ``nn.Module`` in ``"eval"`` mode (default), ``"train"`` mode, or
            ``"unchanged"``; the model's modes and buffers are restored after the call.
        seed: Seed of the random start, for reproducible calls; ``None`` draws fresh entropy.
            No global random state is read or changed. Every sample draws its start from
            a stream of its own, keyed by the seed (or the ``rng`` of the call) and by the
            sample's values and label, so that a sample's result does not depend on the
            batch it comes in, on its position there, or on the other samples.
        early_stop: Freeze each sample as soon as the attack succeeds on it and drop it
            from the batch the model sees: fewer forward and backward passes when only
            success matters (robustness evaluation). Costs one host synchronisation a step.
            A sample whose iterate comes back exactly to where it was one or two steps
            before (a fixed point or two points in turn: common at the corners of the ball
            with a fixed step on integer images) leaves the batch too, with the losses and
            the point its cycle leads to: the result does not change, the passes drop.
        eot: Expectation over transformation (Athalye et al., 2018) for a randomized
            model: each step's input gradient and loss are the means over ``eot``
            independent forward and backward passes, and success is decided on the mean
            logits of ``eot`` passes. ``1`` (default) for a deterministic model.

    Raises:
        TypeError: A parameter has the wrong type.
        ValueError: A parameter is out of range (``eps < 0``, ``steps < 1``,
            ``step_size < 0``, ``lower >= upper``, an unknown loss or mode).

    Example:
        ```python
        attack = IteratedSign(eps=8, steps=5)  # pixels in [0, 255], steps of 4
        x_adv = attack(model, images, labels)  # images' shape, dtype and device
        result = attack.run(model, images, labels)  # with the loss trace and success
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

    def __post_init__(self) -> None:
        self._check_steps()
        if self.steps > 1 and self.step_size is not None and self.step_size >= self.eps > 0:
            warnings.warn(
                f"IteratedSign(eps={self.eps:g}, steps={self.steps}, step_size="
                f"{self.step_size:g}): a step of at least the radius reaches the corners of "
                "the ball at once, and the later steps can only flip signs there. The "
                "problem set's pseudo-code (x + 8 sign(grad), 5 times, projected at the end) "
                f"is IteratedSign(eps={self.steps * self.step_size:g}, steps={self.steps}, "
                f"step_size={self.step_size:g}); projected PGD takes step_size=eps/4 or the "
                "default, 2.5 eps / steps",
                UserWarning,
                stacklevel=3,
            )

    def _rule(self, batch: Batch, feasible: Feasible, eps: Amount, step: Amount) -> SignSteps:
        """Signed steps, clipped to the L-inf feasible set's limits."""
        if not isinstance(feasible, LinfFeasible):  # pragma: no cover - the threat is L-inf
            raise TypeError(f"IteratedSign works in L-inf, got {type(feasible).__name__}")
        return SignSteps()


@dataclass(frozen=True)
class FGSM:
    r"""Fast gradient sign method (Goodfellow et al., 2015): one signed step of size eps.

    ``x_adv = clip_[lo, hi](x + eps * sign(grad_x L(x, y)))``, exactly ``IteratedSign(eps, steps=1,
    relative_step=1)`` with the same options (the step is the radius, also when every sample has a
    radius of its own).

    Args:
        eps: Radius of the L-inf ball and size of the step, ``>= 0``.
        bounds: The pixel box ``(lower, upper)`` of valid inputs.
        targeted: Treat ``y`` as target labels and step towards them.
        loss: ``"ce"``, ``"margin"`` or a per-sample loss callable.
        model_mode: ``"eval"`` (default), ``"train"`` or ``"unchanged"``.
        eot: Passes averaged for the gradient of a randomized model (see
            [`IteratedSign`][signattack.attacks.sign.IteratedSign]).

    Raises:
        TypeError: A parameter has the wrong type.
        ValueError: A parameter is out of range.
    """

    eps: float
    _: KW_ONLY
    bounds: Bounds | tuple[float, float] = PIXEL_BOUNDS
    targeted: bool = False
    loss: LossName | LossFunction = "ce"
    model_mode: ModelMode = "eval"
    eot: int = 1

    def __post_init__(self) -> None:
        checked = self.as_iterated()
        object.__setattr__(self, "eps", checked.eps)
        object.__setattr__(self, "bounds", checked.bounds)
        object.__setattr__(self, "eot", checked.eot)

    gradient_free: ClassVar[bool] = False
    """FGSM asks for a gradient."""

    @property
    def seed(self) -> None:
        """FGSM draws nothing: always ``None``."""
        return None

    @property
    def name(self) -> str:
        """``FGSM``, the paper's name."""
        return "FGSM"

    @property
    def threat(self) -> ThreatModel:
        """The box, the loss and the model's mode, as one validated value."""
        return self.as_iterated().threat

    def with_eps(self, eps: float) -> FGSM:
        """The same attack with radius (and step) ``eps``."""
        return dataclasses.replace(self, eps=eps)

    def as_iterated(self) -> IteratedSign:
        """The equivalent one-step [`IteratedSign`][signattack.attacks.sign.IteratedSign]."""
        return IteratedSign(
            self.eps,
            steps=1,
            relative_step=1.0,
            bounds=Bounds(*self.bounds),
            targeted=self.targeted,
            loss=self.loss,
            model_mode=self.model_mode,
            eot=self.eot,
        )

    def __call__(self, model: Model[ArrayT], x: ArrayT, y: ArrayT) -> ArrayT:
        """The adversarial batch; see
        [`IteratedSign.__call__`][signattack.attacks.sign.IteratedSign.__call__]."""
        return self.as_iterated()(model, x, y)

    def run(
        self,
        model: Model[ArrayT],
        x: ArrayT,
        y: ArrayT,
        *,
        rng: np.random.Generator | None = None,
    ) -> AttackResult[ArrayT]:
        """The adversarial batch with a 2-row loss trace; see
        [`IteratedSign.run`][signattack.attacks.sign.IteratedSign.run].
        ``rng`` is accepted like every attack's and unused: FGSM draws nothing."""
        return self.as_iterated().run(model, x, y, rng=rng)

    def run_per_sample(
        self, model: Model[ArrayT], x: ArrayT, y: ArrayT, eps: ArrayT
    ) -> AttackResult[ArrayT]:
        """`run` with radius (and step) ``eps[i]`` for sample ``i``."""
        return self.as_iterated().run_per_sample(model, x, y, eps)
