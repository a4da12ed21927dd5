r"""FAB-T (Croce & Hein, ICML 2020, "Minimally distorted adversarial examples with a fast
adaptive boundary attack") under L-inf: the targeted version that AutoAttack runs.

FAB looks for the adversarial point closest to the clean input ``x0``. For a target class
``t`` (of rank 2, 3, ... of the clean logits) it follows the boundary ``z_t = z_y`` of the
two classes: at the current point ``x`` it linearizes ``g = z_t - z_y``,

    g(p) ~ g(x) + grad g(x) . (p - x),

and projects both ``x`` and ``x0`` onto the hyperplane ``g = 0`` intersected with the box,
each by the smallest L-inf move (``d1`` and ``d2``). The step mixes the two, biased towards
the original point and extrapolated by ``eta``:

    alpha = min(|d1| / (|d1| + |d2|), alpha_max)
    x <- clip((x + eta d1) (1 - alpha) + (x0 + eta d2) alpha)

Where ``x`` is adversarial it is recorded if it is the closest so far, and the search steps
back towards the original point, ``x <- x0 + beta (x - x0)``, to cross the boundary closer.
Restarts after the first start at a random point of half the ball.

One gradient a step per target class (the gradient of ``z_t - z_y``): no Jacobian over all
classes, which is what makes untargeted FAB slow on many classes. A step makes one forward
and one backward pass, where the authors' code makes one more forward pass to check the new
point; here the check is the next step's forward pass, and after a success the next step
projects the stepped-back point onto the hyperplane of the point just checked (the authors'
code linearizes again at the stepped-back point).

The projection onto ``{p : w . p = b}`` within the box under L-inf has a closed form in the
smallest radius ``delta`` at which moving every coordinate by ``min(delta, room_i)`` (its
room to the box, in the direction that changes ``w . p`` the right way) closes the gap; the
reach is increasing and piecewise linear in ``delta``, and ``delta`` is found by bisection
on it and then solved for exactly on its linear piece.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import KW_ONLY, dataclass
from typing import ClassVar

import numpy as np

from signattack._host import to_numpy
from signattack._typing import Array, ArrayT, Model, device_of, moved, namespace, returned
from signattack.attacks.base import AttackResult, LinfAttack
from signattack.attacks.loop import iterate
from signattack.attacks.restarts import Runs, still_robust, sub_batch, target_labels
from signattack.backends.batch import Batch, open_threat
from signattack.core.kernels import ball_box_limits, clip, take_samples
from signattack.core.losses import TARGETED_MARGIN
from signattack.core.rules import Evaluated, Start, required
from signattack.core.streams import Purpose, SampleStreams
from signattack.core.threat import PIXEL_BOUNDS, ModelMode
from signattack.core.validation import Bounds, check_real, generator

__all__ = ["FABT", "FabSteps", "project_linf"]

_HALVINGS = 40
"""Bisection steps for the projection's radius: 2**-40 of the largest room, below float64's
resolution of any radius that matters and far below float32's."""


def project_linf(p: Array, w: Array, gap: Array, lower: float, upper: float) -> Array:
    """The smallest L-inf move ``d`` with ``w . d = -gap`` and ``p + d`` in the box, per row.

    Args:
        p: Points, ``(batch, n)``, inside ``[lower, upper]``.
        w: The hyperplanes' normals, ``(batch, n)``.
        gap: ``w . p - b`` per row, ``(batch,)``: how far each point is from its hyperplane
            ``w . x = b``, in units of ``w``.
        lower: The box's lower limit.
        upper: The box's upper limit.

    Returns:
        ``d`` of ``p``'s shape. Where the hyperplane does not meet the box, the move to the
        corner of the box closest to it (every coordinate as far as it can go).
    """
    xp = namespace(p)
    direction = -xp.sign(gap)[:, None] * xp.sign(w)  # the way each coordinate should go
    room = xp.where(direction > 0, upper - p, xp.where(direction < 0, p - lower, 0.0))
    room = xp.maximum(room, 0.0)
    weight = xp.abs(w) * xp.abs(direction)
    needed = xp.abs(gap)

    def reach(radius: Array) -> Array:
        return xp.sum(weight * xp.minimum(radius[:, None], room), axis=1)

    low = xp.zeros_like(needed)
    high = xp.max(room, axis=1)
    feasible = reach(high) >= needed
    for _ in range(_HALVINGS):
        middle = (low + high) / 2
        enough = reach(middle) >= needed
        high = xp.where(enough, middle, high)
        low = xp.where(enough, low, middle)
    # On [low, high] the coordinates with room <= low are saturated and the rest move by
    # radius: reach is linear there, and radius solves it exactly.
    saturated = room <= low[:, None]
    fixed = xp.sum(xp.where(saturated, weight * room, 0.0), axis=1)
    slope = xp.sum(xp.where(saturated, 0.0, weight), axis=1)
    exact = (needed - fixed) / xp.where(slope > 0, slope, 1.0)
    radius = xp.where(slope > 0, xp.clip(exact, low, high), high)
    radius = xp.where(feasible, radius, xp.max(room, axis=1))
    return direction * xp.minimum(radius[:, None], room)


@dataclass(frozen=True)
class _FabState:
    """Where FAB is, the closest adversarial point so far and its distance.

    Attributes:
        x: The point evaluated next.
        best: The closest adversarial point found (the clean point while none is).
        distance: Its L-inf distance to the clean point, ``inf`` while none is found.
        original: The clean point.
    """

    x: Array
    best: Array
    distance: Array
    original: Array


@dataclass(frozen=True)
class FabSteps:
    """FAB's update rule: a projection step towards the boundary of the target class.

    The loss is ``z_t - z_y`` (labels and targets as two columns); the loop's success is
    "not the label", so a point classified as any other class counts as adversarial.

    Attributes:
        lower: The box's lower limit.
        upper: The box's upper limit.
        alpha_max: The largest weight of the step from the original point.
        eta: The extrapolation of both projections (overshooting the boundary).
        beta: How far back towards the original point to step after a success.
    """

    needs_gradient: ClassVar[bool] = True

    lower: float
    upper: float
    alpha_max: float = 0.1
    eta: float = 1.05
    beta: float = 0.9

    def start(self, start: Start) -> _FabState:
        xp = namespace(start.x)
        shape = (start.x.shape[0],)
        distance = xp.full(shape, math.inf, dtype=start.x.dtype, device=device_of(start.x))
        return _FabState(start.begin, start.x, distance, start.x)

    def point(self, state: _FabState) -> Array:
        return state.x

    def update(
        self, state: _FabState, step: int, losses: Array, grad: Array | None, fooled: Array
    ) -> _FabState:
        xp = namespace(state.x)
        gradient = required(grad)
        batch, shape = state.x.shape[0], state.x.shape
        per_sample = (-1,) + (1,) * (len(shape) - 1)
        best, distance = _closer(state, state.x, fooled)
        # After a success, step back towards the original point before projecting.
        back = state.original + self.beta * (state.x - state.original)
        here = xp.where(xp.reshape(fooled, per_sample), back, state.x)
        w = xp.reshape(gradient, (batch, -1))
        flat, origin = xp.reshape(here, (batch, -1)), xp.reshape(state.original, (batch, -1))
        # The linearization at the evaluated point, g(p) = g(x) + w . (p - x), at both points.
        at_x = xp.reshape(state.x, (batch, -1))
        gap_here = losses + xp.sum(w * (flat - at_x), axis=1)
        gap_origin = losses + xp.sum(w * (origin - at_x), axis=1)
        d1 = project_linf(flat, w, gap_here, self.lower, self.upper)
        d2 = project_linf(origin, w, gap_origin, self.lower, self.upper)
        smallest = 1e-8 * (self.upper - self.lower)
        a1 = xp.maximum(xp.max(xp.abs(d1), axis=1), smallest)
        a2 = xp.maximum(xp.max(xp.abs(d2), axis=1), smallest)
        alpha = xp.clip(a1 / (a1 + a2), 0.0, self.alpha_max)[:, None]
        stepped = (flat + self.eta * d1) * (1 - alpha) + (origin + self.eta * d2) * alpha
        following = xp.reshape(xp.clip(stepped, self.lower, self.upper), shape)
        return _FabState(following, best, distance, state.original)

    def finish(self, state: _FabState, final: Evaluated | None) -> Array:
        if final is None:
            return state.best
        best, _ = _closer(state, final.x, final.success)
        return best

    def closest(self, state: _FabState, final: Evaluated | None) -> tuple[Array, Array]:
        """The closest adversarial point and its distance, the final iterate included."""
        if final is None:
            return state.best, state.distance
        return _closer(state, final.x, final.success)


def _closer(state: _FabState, x: Array, fooled: Array) -> tuple[Array, Array]:
    """The closest adversarial point and its distance, ``x`` counted where ``fooled``."""
    xp = namespace(x)
    batch = x.shape[0]
    distance = xp.max(xp.abs(xp.reshape(x - state.original, (batch, -1))), axis=1)
    closer = xp.logical_and(fooled, distance < state.distance)
    per_sample = (-1,) + (1,) * (x.ndim - 1)
    return (
        xp.where(xp.reshape(closer, per_sample), x, state.best),
        xp.where(closer, distance, state.distance),
    )


def _half_ball(
    x: Array, radius: float, bounds: Bounds, streams: SampleStreams, purpose: Purpose
) -> Array:
    """A random point at L-inf distance ``radius / 2`` from each sample, drawn from the
    sample's own stream for ``purpose`` and clipped to the box: where a restart starts."""
    xp = namespace(x)
    unit = xp.asarray(streams.uniform(purpose, tuple(x.shape[1:])), dtype=x.dtype)
    unit = moved(unit, device_of(x))
    axes = tuple(range(1, x.ndim))
    largest = xp.max(xp.abs(unit), axis=axes, keepdims=True)
    return xp.clip(x + unit / xp.maximum(largest, 1e-12) * (radius / 2), *bounds)


@dataclass(frozen=True)
class FABT(LinfAttack):
    r"""FAB-T (Croce & Hein, 2020) under L-inf: the closest adversarial point found by
    following the boundary to each of the top ``target_classes`` other classes in turn.

    See :mod:`signattack.attacks.fab` for the algorithm. As an attack with a radius it
    returns, per sample, the closest adversarial point it found if that lies within ``eps``
    of the input, and the input otherwise, so that it can stand in a suite beside APGD; the
    distances of the closest points, within ``eps`` or not, come back in
    :attr:`~signattack.AttackResult.distances`: a per-sample minimal radius (an upper bound
    of it) from one run. ``eps`` also sets the random starts of the restarts (within half
    the ball). Untargeted in effect: ``y`` are the true labels, and success is any other
    class. Success, the point and the distance describe the same point: the closest point
    found is rounded for integer images (and projected onto the ball where it lies within
    the radius), the model is evaluated there, success is judged and the distance measured
    there, and a sample not fooled comes back exactly unchanged.

    Args:
        eps: Radius of the L-inf ball, ``>= 0``.
        steps: Iterations per target class and restart (100 in AutoAttack).
        target_classes: How many target classes to try (at most the number of classes less
            one).
        restarts: Runs per target class; every run after the first starts at a random point.
        alpha_max: The largest weight of the step from the original point.
        eta: Overshooting of the projections, ``>= 1``.
        beta: Step back towards the original point after a success, in ``(0, 1]``.
        bounds: The pixel box.
        seed: Seed of the random starts of the restarts, drawn per sample from a stream
            keyed by the seed (or the ``rng`` of the call), by the sample's values and
            label, the target class and the restart: a sample's draws do not depend on
            the batch it comes in (its point only up to the model's own rounding, see
            :mod:`signattack.core.streams`).
        model_mode: How to run an ``nn.Module``.

    Raises:
        TypeError: A parameter has the wrong type.
        ValueError: A parameter is out of range; at run time, a model of fewer than two
            classes.
    """

    gradient_free: ClassVar[bool] = False

    eps: float
    steps: int = 100
    _: KW_ONLY
    target_classes: int = 9
    restarts: int = 1
    alpha_max: float = 0.1
    eta: float = 1.05
    beta: float = 0.9
    bounds: Bounds | tuple[float, float] = PIXEL_BOUNDS
    seed: int | None = None
    model_mode: ModelMode = "eval"

    @property
    def name(self) -> str:
        """``FAB-T``, the paper's name."""
        return "FAB-T"

    def __post_init__(self) -> None:
        self._check(TARGETED_MARGIN, counts=("steps", "restarts", "target_classes"))
        check_real("alpha_max", self.alpha_max, minimum=0.0)
        if self.alpha_max > 1:
            raise ValueError(f"alpha_max must be in [0, 1], got {self.alpha_max!r}")
        check_real("eta", self.eta, minimum=1.0)
        check_real("beta", self.beta, minimum=0.0)
        if not 0 < self.beta <= 1:
            raise ValueError(f"beta must be in (0, 1], got {self.beta!r}")

    def run(
        self,
        model: Model[ArrayT],
        x: ArrayT,
        y: ArrayT,
        *,
        rng: np.random.Generator | None = None,
    ) -> AttackResult[ArrayT]:
        """The adversarial batch, with the ``z_t - z_y`` trace ``(steps + 1, batch)`` of the
        run each point came from and the distance of the closest adversarial point found."""
        draws = generator(rng, self.seed)
        with open_threat(model, x, y, self.threat, eps=self.eps) as batch:
            xp = namespace(batch.x)
            predictions, targets = target_labels(
                batch, batch.logits(batch.x), self.target_classes, 2, "FABT"
            )
            fooled = xp.not_equal(predictions, batch.labels)
            # Only restarts draw: a single run needs no streams (and no copy to the host).
            streams = batch.streams(draws) if self.restarts > 1 else SampleStreams(())
            runs: Runs | None = None
            for rank, labels in enumerate(targets, start=2):
                if runs is None:
                    losses, _ = batch.evaluate(batch.x, labels)
                    runs = Runs.clean(batch, losses, fooled, self.steps)
                    zero = xp.zeros_like(runs.best)
                    runs = dataclasses.replace(runs, best=xp.where(fooled, zero, runs.best))
                runs = self._targets(batch, runs, labels, streams, rank)
            if runs is None:  # pragma: no cover - target_classes >= 1 and classes >= 2
                raise RuntimeError("FABT ran no target class")
            return _closest_result(batch, runs, self.eps, x)

    def _targets(
        self, batch: Batch, runs: Runs, labels: Array, streams: SampleStreams, rank: int
    ) -> Runs:
        """The restarts against the target class of rank ``rank``, each on the samples still
        robust; restart ``r >= 1`` starts every sample at a random point of its own stream
        for ``("fab-t", rank, r)``."""
        xp = namespace(batch.x)
        radius = batch.radius(self.eps)
        low, high = ball_box_limits(batch.x, radius, *batch.bounds)
        rule = FabSteps(*batch.bounds, alpha_max=self.alpha_max, eta=self.eta, beta=self.beta)
        for restart in range(self.restarts):
            todo, index, count = still_robust(batch, runs)
            if count == 0:
                break
            part = sub_batch(batch, index)
            begin = part.x
            if restart > 0:
                part_streams = streams.take(to_numpy(index))
                purpose = ("fab-t", rank, restart)
                begin = _half_ball(part.x, radius, batch.bounds, part_streams, purpose)
            part_low, part_high = take_samples(low, index), take_samples(high, index)
            outcome = iterate(
                part,
                rule,
                Start(part.x, part_low, part_high, radius, 0.0, begin),
                self.steps,
                loss_labels=take_samples(labels, index),
                final=part.rounded(radius),
            )
            best, distance = rule.closest(outcome.state, outcome.final)
            point, fooled, reached = _confirmed(part, best, distance, radius, part_low, part_high)
            within = xp.logical_and(fooled, reached <= radius)
            chosen = xp.where(xp.reshape(within, _per_sample(point)), point, part.x)
            trace = xp.stack(outcome.rows)[:, :count]
            runs = runs.fold(todo, chosen[:count, ...], trace, within[:count], -reached[:count])
        return runs


def _per_sample(x: Array) -> tuple[int, ...]:
    return (-1,) + (1,) * (x.ndim - 1)


def _linf(x: Array, x0: Array) -> Array:
    """Per sample, ``max |x - x0|``, in their dtype."""
    xp = namespace(x)
    return xp.max(xp.abs(xp.reshape(x - x0, (x.shape[0], -1))), axis=1)


def _confirmed(
    part: Batch, best: Array, distance: Array, radius: float, low: Array, high: Array
) -> tuple[Array, Array, Array]:
    """The closest point a run found, as the caller would get it, judged there.

    For integer images the point is rounded (a point within the radius stays within it);
    for floating ones a point within the radius is projected onto the ball exactly. The
    model is evaluated at that point: the point, whether it fools the model, and its
    distance (``inf`` where it does not fool it), so that success, distance and point
    describe the same point.
    """
    xp = namespace(best)
    if part.integer:
        point = part.rounded(math.inf)(best)
    else:
        near = xp.reshape(distance <= radius, _per_sample(best))
        point = xp.where(near, clip(best, low, high), best)
    predictions = xp.argmax(part.logits(point), axis=1)
    fooled = xp.logical_and(xp.isfinite(distance), xp.not_equal(predictions, part.labels))
    return point, fooled, xp.where(fooled, _linf(point, part.x), math.inf)


def _closest_result(batch: Batch, runs: Runs, eps: float, caller: ArrayT) -> AttackResult[ArrayT]:
    """The chosen points evaluated once more as the caller gets them. Where the model is
    fooled there: the point and its distance. Elsewhere: the input itself, unchanged, and
    the distance of the closest point found beyond the radius (``inf`` where none was), so
    that ``success`` holds exactly where ``distances <= eps``."""
    xp = namespace(batch.x)
    radius = batch.radius(eps)
    point = batch.rounded(radius)(runs.x)
    predictions = xp.argmax(batch.logits(point), axis=1)
    success = xp.not_equal(predictions, batch.labels)
    point = xp.where(xp.reshape(success, _per_sample(point)), point, batch.x)
    found = -runs.best
    beyond = xp.where(found > radius, found, math.inf)
    distances = xp.where(success, _linf(point, batch.x), beyond)
    return AttackResult(
        returned(batch.to_input(point, radius), caller),
        returned(runs.trace, caller),
        returned(predictions, caller),
        returned(success, caller),
        distances=returned(distances, caller),
    )
