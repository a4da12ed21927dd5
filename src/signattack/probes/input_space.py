"""Input-space probes: how the loss of a classifier behaves around its inputs.

Every probe runs through the backend protocol, so it works on PyTorch models and NumPy
models alike, and leaves the model as it found it. Inputs and radii are in the model's input
units (pixels in ``[0, 255]`` by default), like the attacks.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Generic, Literal

import numpy as np

from signattack._typing import Array, ArrayT, Model, device_of, is_array, namespace, returned
from signattack.backends.batch import Batch, open_threat, widest_float
from signattack.core.linf import LINF
from signattack.core.losses import LossFunction, LossName
from signattack.core.threat import PIXEL_BOUNDS, ModelMode, ThreatModel
from signattack.core.validation import check_choice, check_choice_message, check_real

__all__ = [
    "DirectionName",
    "GradientMaskingWarning",
    "GradientReport",
    "LinearizationGap",
    "LossSurface",
    "check_gradients",
    "direction",
    "input_gradient",
    "linearization_gap",
    "loss_along",
    "loss_surface",
]

DirectionName = Literal["signed_gradient", "rademacher", "gaussian"]
_DIRECTIONS: tuple[DirectionName, ...] = ("signed_gradient", "rademacher", "gaussian")
_PIXELS = PIXEL_BOUNDS


def _open(
    model: object,
    x: object,
    y: object,
    loss: LossName | LossFunction,
    bounds: tuple[float, float],
    model_mode: ModelMode,
    threat: ThreatModel | None,
) -> AbstractContextManager[Batch]:
    """The batch under ``threat``, or under the threat model of the three keywords."""
    if threat is None:
        return open_threat(model, x, y, ThreatModel(bounds, loss, model_mode))
    if not isinstance(threat, ThreatModel):
        raise TypeError(f"threat must be a ThreatModel or None, got {type(threat).__name__}")
    if (loss, tuple(bounds), model_mode) != ("ce", tuple(_PIXELS), "eval"):
        raise ValueError(
            "give the threat model either as threat= or as loss=, bounds= and model_mode=, "
            f"not both (got threat={threat!r} and loss={loss!r}, bounds={bounds!r}, "
            f"model_mode={model_mode!r})"
        )
    return open_threat(model, x, y, threat)


def _direction_name(along: str) -> DirectionName:
    """``along`` as one of the direction names."""
    for name in _DIRECTIONS:
        if along == name:
            return name
    raise ValueError(check_choice_message("along", along, _DIRECTIONS))


def _sample_axes(a: Array) -> tuple[int, ...]:
    return tuple(range(1, a.ndim))


def _unit_linf(d: Array) -> Array:
    """Scale each sample of ``d`` to L-inf norm 1 (all-zero samples stay zero)."""
    xp = namespace(d)
    norm = xp.max(xp.abs(d), axis=_sample_axes(d), keepdims=True)
    return d / xp.where(norm > 0, norm, xp.ones_like(norm))


def _random(kind: DirectionName, like: Array, seed: int | None) -> Array:
    xp = namespace(like)
    rng = np.random.default_rng(seed)
    shape = tuple(like.shape)
    noise = rng.choice([-1.0, 1.0], size=shape) if kind == "rademacher" else rng.normal(size=shape)
    return _unit_linf(xp.asarray(noise, dtype=like.dtype, device=device_of(like)))


def _direction(batch: Batch, kind: DirectionName, seed: int | None) -> Array:
    if kind == "signed_gradient":
        _, grad, _ = batch.value_and_grad(batch.x, batch.labels)
        return LINF.direction(grad, batch.x.dtype)
    return _random(kind, batch.x, seed)


def input_gradient(
    model: Model[ArrayT],
    x: ArrayT,
    y: ArrayT,
    *,
    loss: LossName | LossFunction = "ce",
    bounds: tuple[float, float] = _PIXELS,
    model_mode: ModelMode = "eval",
    threat: ThreatModel | None = None,
) -> ArrayT:
    """Gradient of the per-sample loss with respect to the input: ``grad_x L(x, y)``.

    The map to draw for "where does the loss look": large entries are the pixels a signed-gradient
    attack moves first.

    Args:
        model: As for the attacks.
        x: Inputs ``(batch, ...)`` inside ``bounds``.
        y: Integer labels ``(batch,)``.
        loss: ``"ce"``, ``"margin"`` or a per-sample loss callable.
        bounds: The pixel box, for validating ``x``.
        model_mode: How to run an ``nn.Module``.
        threat: The three above as one [`ThreatModel`][signattack.core.ThreatModel] (an attack's
            ``threat``), instead of the keywords.

    Returns:
        An array of ``x``'s shape (floating; ``float32`` for integer inputs).
    """
    with _open(model, x, y, loss, bounds, model_mode, threat) as batch:
        _, grad, _ = batch.value_and_grad(batch.x, batch.labels)
    return returned(grad, x)


def direction(
    model: Model[ArrayT],
    x: ArrayT,
    y: ArrayT,
    kind: DirectionName,
    *,
    seed: int | None = None,
    loss: LossName | LossFunction = "ce",
    bounds: tuple[float, float] = _PIXELS,
    model_mode: ModelMode = "eval",
    threat: ThreatModel | None = None,
) -> ArrayT:
    """A direction in input space with L-inf norm 1 per sample.

    ``"signed_gradient"`` is ``sign(grad_x L)``, the FGSM direction; ``"rademacher"`` has
    independent random signs; ``"gaussian"`` is standard normal noise scaled to the same
    L-inf size. The random kinds are reproducible through ``seed`` and touch no global RNG.
    """
    check_choice("kind", kind, _DIRECTIONS)
    with _open(model, x, y, loss, bounds, model_mode, threat) as batch:
        return returned(_direction(batch, kind, seed), x)


def _losses_at(batch: Batch, points: Array) -> Array:
    losses, _ = batch.evaluate(points, batch.labels)
    return losses


def loss_along(
    model: Model[ArrayT],
    x: ArrayT,
    y: ArrayT,
    along: ArrayT | DirectionName,
    radii: Sequence[float],
    *,
    seed: int | None = None,
    loss: LossName | LossFunction = "ce",
    bounds: tuple[float, float] = _PIXELS,
    model_mode: ModelMode = "eval",
    threat: ThreatModel | None = None,
) -> ArrayT:
    """Per-sample losses at ``clip_[lo, hi](x + r * d)`` for each radius ``r``.

    Args:
        model: As for the attacks.
        x: Inputs ``(batch, ...)`` inside ``bounds``.
        y: Integer labels ``(batch,)``.
        along: The direction ``d``: an array of ``x``'s shape, or a
            [`DirectionName`][signattack.probes.input_space.DirectionName] (see
            [`direction`][signattack.probes.input_space.direction]).
        radii: Radii in input units; ``0`` gives the clean loss.
        seed: Seed of a random direction.
        loss: ``"ce"``, ``"margin"`` or a per-sample loss callable.
        bounds: The pixel box; points are clipped into it.
        model_mode: How to run an ``nn.Module``.
        threat: The three above as one [`ThreatModel`][signattack.core.ThreatModel] (an attack's
            ``threat``), instead of the keywords.

    Returns:
        Losses of shape ``(len(radii), batch)``.

    Raises:
        ValueError: ``along`` has the wrong shape, or ``radii`` is empty or not finite.
    """
    radii = [check_real("radii", r, minimum=-np.inf) for r in radii]
    if not radii:
        raise ValueError("radii must hold at least one radius, got an empty sequence")
    with _open(model, x, y, loss, bounds, model_mode, threat) as batch:
        xp = namespace(batch.x)
        if isinstance(along, str):
            d = _direction(batch, _direction_name(along), seed)
        else:
            if not is_array(along):
                raise TypeError(
                    f"along must be a direction name or an array like x, got {type(along).__name__}"
                )
            if tuple(along.shape) != tuple(batch.x.shape):
                raise ValueError(
                    f"along must have x's shape {tuple(batch.x.shape)}, got {tuple(along.shape)}"
                )
            d = xp.astype(along, batch.x.dtype)
        lower, upper = batch.bounds
        losses = xp.stack(
            [_losses_at(batch, xp.clip(batch.x + r * d, lower, upper)) for r in radii]
        )
        return returned(losses, x)


@dataclass(frozen=True)
class LossSurface(Generic[ArrayT]):
    """Losses on a 2-D grid of input perturbations ``x + a * d_grad + b * d_orth``.

    Attributes:
        gradient_radii: The ``a`` values, along the signed gradient.
        orthogonal_radii: The ``b`` values, along a random direction orthogonal to it.
        losses: Per-sample losses ``(len(gradient_radii), len(orthogonal_radii), batch)``.
    """

    gradient_radii: tuple[float, ...]
    orthogonal_radii: tuple[float, ...]
    losses: ArrayT


def loss_surface(
    model: Model[ArrayT],
    x: ArrayT,
    y: ArrayT,
    gradient_radii: Sequence[float],
    orthogonal_radii: Sequence[float],
    *,
    seed: int | None = None,
    loss: LossName | LossFunction = "ce",
    bounds: tuple[float, float] = _PIXELS,
    model_mode: ModelMode = "eval",
    threat: ThreatModel | None = None,
) -> LossSurface[ArrayT]:
    """The loss on the plane of the signed gradient and an orthogonal random direction.

    ``d_grad = sign(grad_x L)`` and ``d_orth`` is a Rademacher direction with its component along
    ``d_grad`` removed (per sample), both scaled to L-inf norm 1; every point is clipped into the
    box. This is the picture of Tramer et al. (2018, Fig. 1): a sharp curvature near ``x`` that
    sends a single gradient step the wrong way shows as a loss rising faster along ``d_orth`` than
    along ``d_grad`` close to the origin.

    Returns:
        The [`LossSurface`][signattack.probes.input_space.LossSurface].
    """
    gradient_radii = tuple(check_real("gradient_radii", r, minimum=-np.inf) for r in gradient_radii)
    orthogonal_radii = tuple(
        check_real("orthogonal_radii", r, minimum=-np.inf) for r in orthogonal_radii
    )
    if not gradient_radii or not orthogonal_radii:
        raise ValueError("gradient_radii and orthogonal_radii must each hold at least one radius")
    with _open(model, x, y, loss, bounds, model_mode, threat) as batch:
        xp = namespace(batch.x)
        along_grad = _direction(batch, "signed_gradient", seed)
        noise = _random("rademacher", batch.x, seed)
        axes = _sample_axes(batch.x)
        overlap = xp.sum(noise * along_grad, axis=axes, keepdims=True)
        norm2 = xp.sum(along_grad * along_grad, axis=axes, keepdims=True)
        orthogonal = _unit_linf(noise - overlap / xp.where(norm2 > 0, norm2, 1.0) * along_grad)
        lower, upper = batch.bounds
        rows = [
            xp.stack(
                [
                    _losses_at(
                        batch, xp.clip(batch.x + a * along_grad + b * orthogonal, lower, upper)
                    )
                    for b in orthogonal_radii
                ]
            )
            for a in gradient_radii
        ]
        losses = returned(xp.stack(rows), x)
    return LossSurface(gradient_radii, orthogonal_radii, losses)


@dataclass(frozen=True)
class LinearizationGap(Generic[ArrayT]):
    """The FGSM step's actual loss increase against the first-order prediction, per sample.

    Attributes:
        actual: ``L(x_fgsm) - L(x)``.
        predicted: ``grad . (x_fgsm - x)``, which is ``eps * |grad|_1`` where the box does
            not clip the step.
        gap: ``actual - predicted``: zero for a loss that is linear in the input; negative
            where curvature makes the linear model over-promise.
    """

    actual: ArrayT
    predicted: ArrayT
    gap: ArrayT


def linearization_gap(
    model: Model[ArrayT],
    x: ArrayT,
    y: ArrayT,
    eps: float,
    *,
    loss: LossName | LossFunction = "ce",
    bounds: tuple[float, float] = _PIXELS,
    model_mode: ModelMode = "eval",
    threat: ThreatModel | None = None,
) -> LinearizationGap[ArrayT]:
    """How well the first-order Taylor model predicts the FGSM step of size ``eps``.

    The signed gradient maximises the linearised loss ``L(x) + grad . delta`` over the eps-ball, at
    ``delta = eps * sign(grad)`` with value ``eps * |grad|_1``. The gap between that prediction and
    the real increase measures how linear the loss is at this scale.

    Returns:
        The [`LinearizationGap`][signattack.probes.input_space.LinearizationGap], arrays of shape
            ``(batch,)``.
    """
    eps = check_real("eps", eps)
    with _open(model, x, y, loss, bounds, model_mode, threat) as batch:
        xp = namespace(batch.x)
        clean, grad, _ = batch.value_and_grad(batch.x, batch.labels)
        feasible = LINF.feasible(batch.x, eps, *batch.bounds)
        stepped = feasible.project(batch.x + eps * LINF.direction(grad, batch.x.dtype))
        actual = _losses_at(batch, stepped) - clean
        predicted = xp.sum(grad * (stepped - batch.x), axis=_sample_axes(batch.x))
        return LinearizationGap(
            returned(actual, x), returned(predicted, x), returned(actual - predicted, x)
        )


class GradientMaskingWarning(UserWarning):
    """The model's gradients look unreliable for gradient-based attacks."""


@dataclass(frozen=True)
class GradientReport:
    """Signs of gradient masking on one batch (AutoAttack-style checks).

    Attributes:
        zero_fraction: Share of input-gradient entries that are exactly zero.
        zero_gradient_samples: Share of samples whose whole input gradient is zero.
        nonfinite_fraction: Share of NaN or Inf entries in the outputs and the gradient.
        stochastic: Two identical forward passes gave different outputs.
        probabilities: The outputs look like probabilities (rows in ``[0, 1]`` summing
            to 1) rather than logits.
    """

    zero_fraction: float
    zero_gradient_samples: float
    nonfinite_fraction: float
    stochastic: bool
    probabilities: bool

    def problems(self) -> list[str]:
        """One sentence per problem found, each saying what to do; empty if none."""
        found = []
        if self.zero_gradient_samples > 0 or self.zero_fraction > 0.5:
            found.append(
                f"{self.zero_fraction:.0%} of the input-gradient entries are exactly zero and "
                f"{self.zero_gradient_samples:.0%} of the samples have no gradient at all: the "
                "model may mask gradients (hard thresholds, rounding, argmax). Sign attacks "
                "cannot move those pixels: attack through signattack.straight_through(step) "
                "for a non-differentiable step, and check with a gradient-free attack "
                "(signattack.Square, in standard_attacks())."
            )
        if self.nonfinite_fraction > 0:
            found.append(
                f"{self.nonfinite_fraction:.2%} of the outputs and gradient entries are NaN or "
                "Inf: check the model's numerics (log of zero, division) before attacking it."
            )
        if self.stochastic:
            found.append(
                "the model's outputs differ between two identical calls: dropout or other "
                "randomness is active (is it in train mode?). Evaluate in eval mode, or "
                "average gradients over the randomness with eot=N (EOT; rand_attacks() is "
                "AutoAttack's version for randomized defenses)."
            )
        if self.probabilities:
            found.append(
                "the model returns probabilities, not logits: a final softmax saturates the "
                "cross-entropy gradient. Remove the softmax or use loss='margin'."
            )
        return found


def check_gradients(
    model: Model[ArrayT],
    x: ArrayT,
    y: ArrayT,
    *,
    loss: LossName | LossFunction = "ce",
    bounds: tuple[float, float] = _PIXELS,
    model_mode: ModelMode = "eval",
    threat: ThreatModel | None = None,
    warn: bool = True,
) -> GradientReport:
    """Look for gradient masking before trusting a gradient-based robustness number.

    Checks exactly-zero input gradients, NaN/Inf, randomness between two identical calls, and
    outputs that are probabilities rather than logits. With ``warn``, each problem is also raised as
    a [`GradientMaskingWarning`][signattack.probes.input_space.GradientMaskingWarning] that says
    what to do.

    Returns:
        The [`GradientReport`][signattack.probes.input_space.GradientReport].
    """
    with _open(model, x, y, loss, bounds, model_mode, threat) as batch:
        xp = namespace(batch.x)
        first = batch.logits(batch.x)
        second = batch.logits(batch.x)
        _, grad, _ = batch.value_and_grad(batch.x, batch.labels)
    axes = _sample_axes(grad)
    finite_outputs = xp.isfinite(first)
    wide = widest_float(grad)
    nonfinite = float(xp.sum(xp.astype(~finite_outputs, wide))) + float(
        xp.sum(xp.astype(~xp.isfinite(grad), wide))
    )
    entries = math.prod(first.shape) + math.prod(grad.shape)
    in_unit = bool(xp.all((first >= 0) & (first <= 1)))
    sums_to_one = bool(xp.all(xp.abs(xp.sum(first, axis=1) - 1) < 1e-3))
    report = GradientReport(
        zero_fraction=float(xp.mean(xp.astype(xp.equal(grad, 0), wide))),
        zero_gradient_samples=float(xp.mean(xp.astype(xp.all(xp.equal(grad, 0), axis=axes), wide))),
        nonfinite_fraction=nonfinite / entries,
        stochastic=not bool(xp.all(xp.equal(first, second) | ~finite_outputs)),
        probabilities=in_unit and sums_to_one,
    )
    if warn:
        from signattack.masking import diagnosed  # masking builds on the probes

        given = threat if threat is not None else ThreatModel(bounds, loss, model_mode)
        for problem in diagnosed(report, model, x, y, given):
            warnings.warn(problem, GradientMaskingWarning, stacklevel=2)
    return report
