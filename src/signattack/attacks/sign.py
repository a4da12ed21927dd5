"""Signed-gradient attacks under the L-inf threat model: FGSM and IteratedSign (BIM / PGD)."""

from __future__ import annotations

import dataclasses
import warnings
from dataclasses import KW_ONLY, dataclass
from typing import ClassVar, TypeGuard

import numpy as np

from signattack._typing import (
    Amount,
    Array,
    ArrayT,
    Model,
    device_of,
    is_array,
    namespace,
    returned,
)
from signattack.attacks.base import AttackResult, LinfAttack, store_checked
from signattack.attacks.loop import LoopResult, iterate, random_start
from signattack.backends.batch import Batch, open_threat
from signattack.core.kernels import ball_box_limits, sign_step
from signattack.core.losses import LossFunction, LossName
from signattack.core.rules import Evaluated, Start, required
from signattack.core.threat import PIXEL_BOUNDS, ModelMode, ThreatModel
from signattack.core.validation import (
    Bounds,
    check_real,
    check_rng,
    generator,
    warn_wide_eps,
)

__all__ = ["FGSM", "IteratedSign", "SignSteps"]


def _same_library(value: object, xp: object) -> TypeGuard[Array]:
    """Whether ``value`` is an array of the array library ``xp``."""
    return is_array(value) and namespace(value) is xp


@dataclass(frozen=True)
class SignSteps:
    """IteratedSign's update rule: ``x_{k+1} = clip_[low, high](x_k + a * sign(g_k))``.

    The state is the iterate itself; the attack returns the last one. The rule is pure array
    code, so a backend that compiles loops (JAX) runs all its steps as one computation.

    Attributes:
        low: Lower limits of the feasible set.
        high: Upper limits.
        step: The signed step ``a``, a float or per-sample array.
    """

    low: Array
    high: Array
    step: Amount
    traceable: ClassVar[bool] = True
    needs_gradient: ClassVar[bool] = True

    def start(self, start: Start) -> Array:
        """The first iterate."""
        return start.begin

    def point(self, state: Array) -> Array:
        """The iterate."""
        return state

    def update(
        self, state: Array, step: int, losses: Array, grad: Array | None, fooled: Array
    ) -> Array:
        """One projected signed-gradient step."""
        return sign_step(state, required(grad), self.step, self.low, self.high)

    def finish(self, state: Array, final: Evaluated | None) -> Array:
        """The last iterate."""
        return state


@dataclass(frozen=True)
class IteratedSign(LinfAttack):
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
        flags = ("random_start", "targeted", "early_stop")
        self._check(self.loss, *flags, counts=("steps", "eot"))
        if self.step_size is not None:
            store_checked(self, "step_size", check_real("step_size", self.step_size))
        if self.relative_step is not None:
            store_checked(self, "relative_step", check_real("relative_step", self.relative_step))
            if self.step_size is not None:
                raise ValueError(
                    "give step_size or relative_step, not both: got step_size="
                    f"{self.step_size!r} and relative_step={self.relative_step!r}"
                )
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

    @property
    def resolved_step_size(self) -> float:
        """The step size in use: ``step_size``, ``relative_step * eps``, or
        ``2.5 * eps / steps`` when neither is given."""
        if self.step_size is not None:
            return float(self.step_size)
        return self._step_ratio * self.eps

    @property
    def _step_ratio(self) -> float:
        """The step as a multiple of the radius, when no fixed ``step_size`` is given."""
        if self.relative_step is not None:
            return float(self.relative_step)
        return 2.5 / self.steps

    def __call__(
        self,
        model: Model[ArrayT],
        x: ArrayT,
        y: ArrayT,
        *,
        rng: np.random.Generator | None = None,
        eps: ArrayT | None = None,
    ) -> ArrayT:
        """The adversarial batch: ``steps`` forward and input-gradient passes, nothing more.

        Args:
            model: ``torch.nn.Module`` or callable on tensors returning logits
                ``(batch, classes)``; or a :class:`~signattack.backends.NumpyModel`.
            x: Inputs ``(batch, ...)`` inside ``bounds``; float or integer dtype.
            y: Integer labels ``(batch,)``; target labels when ``targeted``.
            rng: Generator for the random start, overriding ``seed``.
            eps: Per-sample radii ``(batch,)`` overriding ``self.eps`` (a step that is not a
                fixed ``step_size`` then scales per sample too); used by the evaluation's
                bisection.

        Returns:
            The adversarial batch, with ``x``'s type, shape, dtype and device. Integer inputs
            come back as integers, still inside the ball and the box.

        Raises:
            TypeError: ``x``, ``y`` or the model's output has the wrong type or dtype.
            ValueError: ``x`` is not finite or outside ``bounds``, labels do not match the
                batch or the model's classes, per-sample ``eps`` is malformed, or model and
                ``x`` are on different devices.
        """
        outcome = self._attack(model, x, y, rng=rng, radius=eps, record=False)
        return returned(outcome.x_adv, x)

    def run(
        self,
        model: Model[ArrayT],
        x: ArrayT,
        y: ArrayT,
        *,
        rng: np.random.Generator | None = None,
        eps: ArrayT | None = None,
    ) -> AttackResult[ArrayT]:
        """Attack and report: the batch, its loss trace, predictions and success mask.

        Costs one forward pass more than :meth:`__call__`, at the final iterate. Arguments
        and errors are those of :meth:`__call__`.

        Returns:
            An :class:`~signattack.AttackResult` whose ``losses`` have shape
            ``(steps + 1, batch)``. With ``early_stop``, a sample's loss stays, after it is
            first misclassified, at its value there.
        """
        outcome = self._attack(model, x, y, rng=rng, radius=eps, record=True)
        if outcome.final is None:  # pragma: no cover - record=True evaluates the final point
            raise RuntimeError("the attack loop did not evaluate the final iterate")
        losses = namespace(outcome.x_adv).stack(outcome.rows)
        final = outcome.final
        return AttackResult(
            returned(outcome.x_adv, x),
            returned(losses, x),
            returned(final.predictions, x),
            returned(final.success, x),
        )

    def run_per_sample(
        self, model: Model[ArrayT], x: ArrayT, y: ArrayT, eps: ArrayT
    ) -> AttackResult[ArrayT]:
        """:meth:`run` with radius ``eps[i]`` for sample ``i`` (``eps`` of shape
        ``(batch,)``); a step that is not a fixed ``step_size`` scales per sample too."""
        return self.run(model, x, y, eps=eps)

    def _attack(
        self,
        model: object,
        x: object,
        y: object,
        *,
        rng: np.random.Generator | None,
        radius: object | None,
        record: bool,
    ) -> LoopResult[Array]:
        """The attack, with the caller's dtype restored in ``x_adv``; with ``record``, the
        final iterate is evaluated too (one forward pass more)."""
        check_rng(rng)
        draws = generator(rng, self.seed) if self.random_start else None
        with open_threat(
            model, x, y, self.threat, eps=self.eps if radius is None else None, draws=self.eot
        ) as batch:
            eps, step = self._radius_and_step(batch, radius)
            low, high = ball_box_limits(batch.x, eps, *batch.bounds)
            begin = batch.x
            if draws is not None:
                streams = batch.streams(draws)
                begin = random_start(batch.x, eps, low, high, streams, ("random start",))
            outcome = iterate(
                batch,
                SignSteps(low, high, step),
                Start(batch.x, low, high, eps, step, begin),
                self.steps,
                targeted=self.targeted,
                early_stop=self.early_stop,
                final=batch.rounded(eps) if record else None,
            )
        return dataclasses.replace(outcome, x_adv=batch.to_input(outcome.x_adv, eps))

    def _radius_and_step(self, batch: Batch, radius: object | None) -> tuple[Amount, Amount]:
        """The radius and signed step: floats, or per-sample arrays shaped to broadcast.

        For integer inputs the radius is ``floor(eps)`` (see :meth:`Batch.radius`); the
        default step size still scales with ``eps`` itself.
        """
        direction = -1.0 if self.targeted else 1.0
        x0 = batch.x
        if radius is None:
            return batch.radius(self.eps), direction * self.resolved_step_size
        xp = namespace(x0)
        if not _same_library(radius, xp):
            raise TypeError(
                f"eps (per sample) must be an array of the same library as x, of shape "
                f"({x0.shape[0]},), got {type(radius).__name__} {radius!r}"
            )
        if tuple(radius.shape) != (x0.shape[0],):
            raise ValueError(
                f"eps (per sample) must have shape ({x0.shape[0]},) to match x, "
                f"got {tuple(radius.shape)}"
            )
        if not bool(xp.all(xp.isfinite(radius) & (radius >= 0))):
            raise ValueError("eps (per sample) must hold finite radii >= 0")
        warn_wide_eps(float(xp.max(radius)), batch.bounds)
        shape = (x0.shape[0],) + (1,) * (x0.ndim - 1)

        def per_sample(values: Array) -> Array:
            return xp.reshape(xp.asarray(values, dtype=x0.dtype, device=device_of(x0)), shape)

        # floor() before the cast: 7.999999999999999 must not round to 8 in float32.
        eps = per_sample(batch.radius(radius))
        step = self._step_ratio * per_sample(radius) if self.step_size is None else self.step_size
        return eps, direction * step


@dataclass(frozen=True)
class FGSM:
    r"""Fast gradient sign method (Goodfellow et al., 2015): one signed step of size eps.

    ``x_adv = clip_[lo, hi](x + eps * sign(grad_x L(x, y)))``, exactly
    ``IteratedSign(eps, steps=1, relative_step=1)`` with the same options (the step is the
    radius, also when every sample has a radius of its own).

    Args:
        eps: Radius of the L-inf ball and size of the step, ``>= 0``.
        bounds: The pixel box ``(lower, upper)`` of valid inputs.
        targeted: Treat ``y`` as target labels and step towards them.
        loss: ``"ce"``, ``"margin"`` or a per-sample loss callable.
        model_mode: ``"eval"`` (default), ``"train"`` or ``"unchanged"``.
        eot: Passes averaged for the gradient of a randomized model (see
            :class:`IteratedSign`).

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
        """The equivalent one-step :class:`IteratedSign`."""
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
        """The adversarial batch; see :meth:`IteratedSign.__call__`."""
        return self.as_iterated()(model, x, y)

    def run(
        self,
        model: Model[ArrayT],
        x: ArrayT,
        y: ArrayT,
        *,
        rng: np.random.Generator | None = None,
    ) -> AttackResult[ArrayT]:
        """The adversarial batch with a 2-row loss trace; see :meth:`IteratedSign.run`.
        ``rng`` is accepted like every attack's and unused: FGSM draws nothing."""
        return self.as_iterated().run(model, x, y, rng=rng)

    def run_per_sample(
        self, model: Model[ArrayT], x: ArrayT, y: ArrayT, eps: ArrayT
    ) -> AttackResult[ArrayT]:
        """:meth:`run` with radius (and step) ``eps[i]`` for sample ``i``."""
        return self.as_iterated().run_per_sample(model, x, y, eps)
