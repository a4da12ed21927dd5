r"""FAB-T (Croce & Hein, ICML 2020, "Minimally distorted adversarial examples with a fast
adaptive boundary attack"): the targeted version that AutoAttack runs, under L-inf or L2.

FAB looks for the adversarial point closest to the clean input ``x0``. For a target class ``t`` (of
rank 2, 3, ... of the clean logits) it follows the boundary ``z_t = z_y`` of the two classes: at the
current point ``x`` it linearizes ``g = z_t - z_y``,

    g(p) ~ g(x) + grad g(x) . (p - x),

and projects both ``x`` and ``x0`` onto the hyperplane ``g = 0`` intersected with the box, each by
the smallest move in the attack's norm (``d1`` and ``d2``, `signattack.core.hyperplane`). The step
mixes the two, biased towards the original point and extrapolated by ``eta``:

    alpha = min(||d1|| / (||d1|| + ||d2||), alpha_max) x <- clip((x + eta d1) (1 - alpha) + (x0 +
    eta d2) alpha)

Where ``x`` is adversarial it is recorded if it is the closest so far (distances in the norm), and
the search steps back towards the original point, ``x <- x0 + beta (x - x0)``, to cross the boundary
closer. Restarts after the first start at a random point at half the radius, in the norm's geometry:
a direction uniform in the cube under L-inf, an isotropic Gaussian one under L2 (the authors'
starts).

One gradient a step per target class (the gradient of ``z_t - z_y``): no Jacobian over all classes,
which is what makes untargeted FAB slow on many classes. A step makes one forward and one backward
pass, where the authors' code makes one more forward pass to check the new point; here the check is
the next step's forward pass, and after a success the next step projects the stepped-back point onto
the hyperplane of the point just checked (the authors' code linearizes again at the stepped-back
point).

Everything geometric is asked of the norm (`signattack.core.norms`): the distances, the projection
onto the ball of the point returned, the check that it lies in the ball, and the rounding of integer
images; the hyperplane projections live in `signattack.core.hyperplane`
([`project_linf`][signattack.attacks.fab.project_linf] is importable from here too).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import KW_ONLY, dataclass
from typing import ClassVar

import numpy as np

from signattack._host import to_numpy
from signattack._typing import Array, ArrayT, Model, device_of, namespace, returned
from signattack.attacks.base import AttackResult, BallAttack, attack_result
from signattack.attacks.loop import iterate
from signattack.attacks.restarts import Runs, run_bar, still_robust, sub_batch, target_labels
from signattack.backends.batch import Batch, open_threat
from signattack.core.hyperplane import hyperplane_move, project_linf
from signattack.core.kernels import take_samples
from signattack.core.linf import LINF
from signattack.core.losses import TARGETED_MARGIN
from signattack.core.norms import Feasible, Norm, NormName, widest_float
from signattack.core.rules import Evaluated, Start, required
from signattack.core.streams import Purpose, SampleStreams
from signattack.core.threat import PIXEL_BOUNDS, ModelMode
from signattack.core.validation import Bounds, check_real, generator

__all__ = ["FABT", "FabSteps", "project_linf"]


@dataclass(frozen=True)
class _FabState:
    """Where FAB is, the closest adversarial point so far and its distance.

    Attributes:
        x: The point evaluated next.
        best: The closest adversarial point found (the clean point while none is).
        distance: Its distance to the clean point in the norm, in the library's widest
            float, ``inf`` while none is found.
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
        norm: The norm of the projections and the distances: L-inf (default) or L2.
        within: A radius: a sample is decided (``decided``) once the closest adversarial
            point it holds lies within it, and the loop stops attacking it there; ``None``
            (default) never decides, and the search keeps looking for closer points.

    Every per-sample array lives in the state (``per_sample``): the loop may take it down to
    the samples still attacked.
    """

    needs_gradient: ClassVar[bool] = True
    per_sample: ClassVar[bool] = True

    lower: float
    upper: float
    alpha_max: float = 0.1
    eta: float = 1.05
    beta: float = 0.9
    norm: Norm = LINF
    within: float | None = None

    @property
    def decides(self) -> bool:
        """Whether the rule says when a sample is decided: where it is given a radius."""
        return self.within is not None

    def decided(self, state: _FabState) -> Array:
        """``(batch,)`` booleans: the samples that hold an adversarial point within the
        radius ``within`` (none where it is ``None``)."""
        if self.within is None:
            xp = namespace(state.distance)
            return xp.zeros_like(state.distance, dtype=xp.bool)
        return state.distance <= self.within

    def start(self, start: Start) -> _FabState:
        xp = namespace(start.x)
        shape = (start.x.shape[0],)
        wide = widest_float(start.x)
        distance = xp.full(shape, math.inf, dtype=wide, device=device_of(start.x))
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
        best, distance = self._closer(state, state.x, fooled)
        # After a success, step back towards the original point before projecting.
        back = state.original + self.beta * (state.x - state.original)
        here = xp.where(xp.reshape(fooled, per_sample), back, state.x)
        w = xp.reshape(gradient, (batch, -1))
        w = xp.where(xp.isnan(w), 0.0, w)  # a NaN partial moves nothing, and never spreads
        flat, origin = xp.reshape(here, (batch, -1)), xp.reshape(state.original, (batch, -1))
        # The linearization at the evaluated point, g(p) = g(x) + w . (p - x), at both points.
        at_x = xp.reshape(state.x, (batch, -1))
        gap_here = losses + xp.sum(w * (flat - at_x), axis=1)
        gap_origin = losses + xp.sum(w * (origin - at_x), axis=1)
        d1 = hyperplane_move(self.norm, flat, w, gap_here, self.lower, self.upper)
        d2 = hyperplane_move(self.norm, origin, w, gap_origin, self.lower, self.upper)
        smallest = 1e-8 * (self.upper - self.lower)
        # The sizes in the widest float (an L2 norm overflows float16), alpha in x's dtype.
        a1 = xp.maximum(self.norm.distance(d1), smallest)
        a2 = xp.maximum(self.norm.distance(d2), smallest)
        alpha = xp.astype(xp.clip(a1 / (a1 + a2), 0.0, self.alpha_max), flat.dtype)[:, None]
        stepped = (flat + self.eta * d1) * (1 - alpha) + (origin + self.eta * d2) * alpha
        following = xp.reshape(xp.clip(stepped, self.lower, self.upper), shape)
        return _FabState(following, best, distance, state.original)

    def finish(self, state: _FabState, final: Evaluated | None) -> Array:
        return self.closest(state, final)[0]

    def closest(self, state: _FabState, final: Evaluated | None) -> tuple[Array, Array]:
        """The closest adversarial point and its distance, the final iterate included."""
        if final is None:
            return state.best, state.distance
        return self._closer(state, final.x, final.success)

    def _closer(self, state: _FabState, x: Array, fooled: Array) -> tuple[Array, Array]:
        """The closest adversarial point and its distance, ``x`` counted where ``fooled``."""
        xp = namespace(x)
        distance = self.norm.distance(x - state.original)
        closer = xp.logical_and(fooled, distance < state.distance)
        return (
            xp.where(xp.reshape(closer, _per_sample(x)), x, state.best),
            xp.where(closer, distance, state.distance),
        )


def _restart_point(
    x: Array, radius: float, norm: Norm, bounds: Bounds, streams: SampleStreams, purpose: Purpose
) -> Array:
    """A random point at distance ``radius / 2`` from each sample in ``norm``, clipped to
    the box: where a restart starts (the authors' start).

    The direction is the norm's random point of its unit ball around zero
    ([`random_point`][signattack.core.norms.Feasible.random_point], from the sample's own draws for
    ``purpose``: uniform in the cube under L-inf, an isotropic Gaussian direction under L2) scaled
    to unit norm. A radius beyond the box's diameter in the norm is taken as that diameter (an
    infinite radius starts half the box away, not at a corner).
    """
    xp = namespace(x)
    draws = streams.uniform(purpose, tuple(x.shape[1:]))
    unit = norm.feasible(xp.zeros_like(x), 1.0, -1.0, 1.0).random_point(draws)
    size = xp.astype(norm.distance(unit), x.dtype)
    direction = unit / xp.reshape(xp.maximum(size, 1e-12), _per_sample(x))
    lower, upper = bounds
    side = xp.full((1, *x.shape[1:]), upper - lower, dtype=x.dtype, device=device_of(x))
    reach = min(radius, float(norm.distance(side)[0]))
    if not math.isfinite(reach):  # no box and no radius: nothing to scale a start by
        return x
    return xp.clip(x + direction * (reach / 2), lower, upper)


@dataclass(frozen=True)
class FABT(BallAttack):
    r"""FAB-T (Croce & Hein, 2020) under L-inf or L2: the closest adversarial point found
    by following the boundary to each of the top ``target_classes`` other classes in turn.

    See `signattack.attacks.fab` for the algorithm. As an attack with a radius it
    returns, per sample, the closest adversarial point it found if that lies within ``eps``
    of the input, and the input otherwise, so that it can stand in a suite beside APGD; the
    distances of the closest points in the norm, within ``eps`` or not, come back in
    `distances`: a per-sample minimal radius (an upper bound
    of it) from one run. ``eps`` also sets the random starts of the restarts (at half the
    radius). Untargeted in effect: ``y`` are the true labels, and success is any other
    class. Success, the point and the distance describe the same point: the closest point
    found is rounded for integer images (inside the ball, where it lies within the radius)
    or projected onto the ball (where it lies within the radius), the model is evaluated
    there, success is judged and the distance measured there, and a sample not fooled
    comes back exactly unchanged; ``success == (distances <= eps)`` in the dtype of the
    distances.

    Args:
        eps: Radius of the ball, ``>= 0``.
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
            `signattack.core.streams`).
        model_mode: How to run an ``nn.Module``.
        norm: The norm of the ball and the distances: ``"linf"`` (default) or ``"l2"``
            (the paper's L2 version: projections, distances and restarts in L2).
        minimal: Whether the distances are asked for (default): each run keeps moving every
            sample's adversarial point towards the clean input for all its ``steps``, and the
            result carries the ``distances``. ``False`` asks for the verdict within ``eps``
            alone (what a robustness evaluation reads): a run stops attacking a sample as soon
            as it holds an adversarial point within ``eps`` (fewer model passes) and
            ``distances`` come back ``None``. What changes then is the point returned for a
            sample broken within ``eps``: it is the first point within ``eps`` the run found,
            not the closest one it would reach, so it may be another point of the ball, and its
            loss trace stays at its value from that step on. Every sample's verdict
            (``success``) is the same: a sample holds a point within ``eps`` that fools the
            model, judged at the point returned (rounded inside the ball for integer images),
            exactly where it does without the saving; a point that fools the model within
            ``eps`` is an equally valid verdict whichever it is. (On integer images the rounded
            point is judged in both cases; the two runs judge different points there, which
            agree on every sample unless rounding a point inside the ball undoes its success.)

    Raises:
        TypeError: A parameter has the wrong type.
        ValueError: A parameter is out of range (an unknown ``norm`` among them); at run
            time, a model of fewer than two classes.
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
    norm: NormName = "linf"
    minimal: bool = True

    @property
    def name(self) -> str:
        """``FAB-T``, the paper's name, with the norm where it is not L-inf (``FAB-T (L2)``)."""
        norm = self.threat.geometry
        return "FAB-T" if norm.name == "linf" else f"FAB-T ({norm.title})"

    def __post_init__(self) -> None:
        self._check(TARGETED_MARGIN, "minimal", counts=("steps", "restarts", "target_classes"))
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
                    # Minus the distance found, in the widest float: 0 where the clean
                    # input is misclassified, -inf where nothing was found yet.
                    wide = widest_float(batch.x)
                    nothing = xp.full(fooled.shape, -math.inf, dtype=wide, device=device_of(fooled))
                    found = xp.where(fooled, xp.zeros_like(nothing), nothing)
                    runs = dataclasses.replace(runs, best=found)
                runs = self._targets(batch, runs, labels, streams, (rank, len(targets)))
            if runs is None:  # pragma: no cover - target_classes >= 1 and classes >= 2
                raise RuntimeError("FABT ran no target class")
            return _closest_result(batch, runs, self.eps, x, minimal=self.minimal)

    def _targets(
        self,
        batch: Batch,
        runs: Runs,
        labels: Array,
        streams: SampleStreams,
        ranked: tuple[int, int],
    ) -> Runs:
        """The restarts against the target class of rank ``rank`` (``ranked`` holds it and
        the number of targets), each on the samples still robust; restart ``r >= 1`` starts
        every sample at a random point of its own stream for ``("fab-t", rank, r)``."""
        rank, targets = ranked
        xp = namespace(batch.x)
        norm = batch.norm
        radius = batch.radius(self.eps)
        rule = FabSteps(
            *batch.bounds,
            alpha_max=self.alpha_max,
            eta=self.eta,
            beta=self.beta,
            norm=norm,
            within=None if self.minimal else radius,
        )
        for restart in range(self.restarts):
            todo, index, count = still_robust(batch, runs)
            if count == 0:
                break
            part = sub_batch(batch, index)
            begin = part.x
            if restart > 0:
                part_streams = streams.take(to_numpy(index))
                purpose = ("fab-t", rank, restart)
                begin = _restart_point(part.x, radius, norm, batch.bounds, part_streams, purpose)
            feasible = norm.feasible(part.x, radius, *batch.bounds)
            # The rule reads no limits; the L-inf set of the same radius holds the ball of
            # either norm, so its limits are limits of the feasible set.
            cube = LINF.feasible(part.x, radius, *batch.bounds)
            shown = run_bar(
                self.name, target=(rank - 1, targets), restart=(restart + 1, self.restarts)
            )
            with shown:  # the bar of the steps reads "FAB-T target 1 of 9"
                outcome = iterate(
                    part,
                    rule,
                    Start(part.x, cube.low, cube.high, radius, 0.0, begin),
                    self.steps,
                    loss_labels=take_samples(labels, index),
                    final=part.rounded(radius),
                )
            best, distance = rule.closest(outcome.state, outcome.final)
            point, fooled, reached = _confirmed(part, best, distance, radius, feasible)
            inside = xp.logical_and(reached <= radius, _within(part, point, radius))
            within = xp.logical_and(fooled, inside)
            chosen = xp.where(xp.reshape(within, _per_sample(point)), point, part.x)
            trace = xp.stack(outcome.rows)[:, :count]
            runs = runs.fold(todo, chosen[:count, ...], trace, within[:count], -reached[:count])
        return runs


def _per_sample(x: Array) -> tuple[int, ...]:
    return (-1,) + (1,) * (x.ndim - 1)


def _confirmed(
    part: Batch, best: Array, distance: Array, radius: float, feasible: Feasible
) -> tuple[Array, Array, Array]:
    """The closest point a run found, as the caller would get it, judged there.

    Where the point lies within the radius it is brought into the ball exactly: rounded
    inside it for integer images (the norm's rounding), projected onto it otherwise;
    elsewhere integer images are rounded to the nearest integers. The model is evaluated
    at that point: the point, whether it fools the model, and its distance in the widest
    float (``inf`` where it does not fool the model), so that success, distance and point
    describe the same point.
    """
    xp = namespace(best)
    near = distance <= radius
    if part.integer:
        inside, nearest = part.rounded(radius)(best), part.rounded(math.inf)(best)
        point = xp.where(xp.reshape(near, _per_sample(best)), inside, nearest)
    else:
        point = xp.where(xp.reshape(near, _per_sample(best)), feasible.project(best), best)
    predictions = xp.argmax(part.logits(point), axis=1)
    fooled = xp.logical_and(xp.isfinite(distance), xp.not_equal(predictions, part.labels))
    reached = part.norm.distance(point - part.x)
    return point, fooled, xp.where(fooled, reached, math.inf)


def _within(batch: Batch, point: Array, radius: float) -> Array:
    """Whether each point lies in the ball of ``radius`` and the box, as the norm judges."""
    return batch.norm.within(point, batch.x, radius, (batch.bounds.lower, batch.bounds.upper))


def _closest_result(
    batch: Batch, runs: Runs, eps: float, caller: ArrayT, *, minimal: bool
) -> AttackResult[ArrayT]:
    """The chosen points evaluated once more as the caller gets them. Where the model is
    fooled there (and the point lies within the radius): the point and its distance.
    Elsewhere: the input itself, unchanged, and the distance of the closest point found
    beyond the radius (``inf`` where none was), so that ``success`` holds exactly where
    ``distances <= eps``, in the dtype of the distances (``x``'s working dtype); no
    distances where they were not asked for (not ``minimal``)."""
    xp = namespace(batch.x)
    radius = batch.radius(eps)
    point = batch.rounded(radius)(runs.x)
    predictions = xp.argmax(batch.logits(point), axis=1)
    wide = widest_float(point)  # the difference itself, unrounded in half precision
    reached = batch.norm.distance(xp.astype(point, wide) - xp.astype(batch.x, wide))
    success = xp.logical_and(
        xp.not_equal(predictions, batch.labels),
        xp.logical_and(reached <= radius, _within(batch, point, radius)),
    )
    point = xp.where(xp.reshape(success, _per_sample(point)), point, batch.x)
    found = -runs.best
    beyond = xp.where(found > radius, found, math.inf)
    distances = _reported(xp.where(success, reached, beyond), success, eps)
    return attack_result(
        batch.passes,
        returned(batch.to_input(point, radius), caller),
        returned(runs.trace, caller),
        returned(predictions, caller),
        returned(success, caller),
        distances=returned(distances, caller) if minimal else None,
    )


def _reported(distances: Array, success: Array, eps: float) -> Array:
    """The distances as measured, in the widest float (a half-precision dtype would round a
    distance of 68.10 to 68.0, or one of 14.97 above a radius of 14.99): the distance of the
    point returned where ``success`` holds, and where it does not, the closest distance found
    but never below ``eps``, so that ``success == (distances <= eps)`` holds exactly."""
    xp = namespace(distances)
    where = device_of(distances)
    beyond = xp.nextafter(
        xp.asarray(eps, dtype=distances.dtype, device=where),
        xp.asarray(math.inf, dtype=distances.dtype, device=where),
    )
    return xp.where(success, distances, xp.maximum(distances, beyond))
