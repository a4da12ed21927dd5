"""One validated batch with its open backend: the common start of every attack and probe."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field
from typing import overload

import array_api_compat
import numpy as np

from signattack._host import to_numpy
from signattack._typing import Amount, Array, Namespace, device_of, is_array, moved, namespace
from signattack.backends._protocol import Backend, CompiledLoop, State, Steps, TraceableRule
from signattack.backends.registry import open_backend
from signattack.core.linf import LINF
from signattack.core.losses import LossFunction
from signattack.core.norms import Norm, norm_of
from signattack.core.norms import widest_float as widest_float  # its former home
from signattack.core.streams import SampleStreams, root_key
from signattack.core.threat import ModelMode, ThreatModel
from signattack.core.validation import (
    Bounds,
    box_diameter,
    check_batch,
    check_logits,
    warn_units,
)

__all__ = ["Batch", "Passes", "open_threat"]


class _FirstCall:
    """The checks of what a model and a loss return, each made on its first occasion in a
    call (the backend calls them between the forward pass, the loss and the gradient)."""

    def __init__(self) -> None:
        self.logits_pending = True
        self.losses_pending = True
        self.gradient_pending = True

    def logits(self, logits: Array, y: Array) -> None:
        if self.logits_pending:
            check_logits(logits, y)
            self.logits_pending = False

    def losses(self, losses: Array, y: Array) -> None:
        if not self.losses_pending:
            return
        if not is_array(losses) or tuple(losses.shape) != (y.shape[0],):
            shape = tuple(losses.shape) if hasattr(losses, "shape") else type(losses).__name__
            raise ValueError(
                f"loss must return per-sample losses of shape ({y.shape[0]},), got {shape}"
            )
        self.losses_pending = False

    def gradient(self, grad: Array, x: Array) -> None:
        if not self.gradient_pending:
            return
        if not is_array(grad) or tuple(grad.shape) != tuple(x.shape):
            shape = tuple(grad.shape) if hasattr(grad, "shape") else type(grad).__name__
            raise ValueError(
                f"the input gradient (a NumPy model's vjp) must have x's shape "
                f"{tuple(x.shape)}, got {shape}"
            )
        self.gradient_pending = False

    def take(self) -> _FirstCall | None:
        """Itself while a check is still to be made, then ``None`` (no check, no sync)."""
        pending = self.logits_pending or self.losses_pending or self.gradient_pending
        return self if pending else None


NON_FINITE = (
    "the model returned NaN or inf logits at a point the attack visited (inside the "
    "eps-ball around x and the box): no prediction, loss or success can be judged there; "
    "make the model finite on the whole box (compute its logits in float32, guard its "
    "divisions and logarithms)"
)
"""The error of a model that is not finite at a point an attack visited."""


class _Finite:
    """Whether every output of the model in one call was finite.

    Host arrays (NumPy) are checked at once, before a loss is computed from them; on a
    device the check is a flag, updated at every evaluation and read once, when the call
    ends (no synchronisation per step).
    """

    def __init__(self) -> None:
        self.flag: Array | None = None

    def see(self, logits: Array) -> None:
        xp = namespace(logits)
        finite = xp.all(xp.isfinite(logits))
        if array_api_compat.is_numpy_array(logits):
            if not bool(finite):
                raise ValueError(NON_FINITE)
            return
        bad = xp.logical_not(finite)
        self.flag = bad if self.flag is None else xp.logical_or(self.flag, bad)

    def see_flag(self, finite: Array) -> None:
        """Take a flag computed on the device: whether the outputs it covers were finite."""
        xp = namespace(finite)
        bad = xp.logical_not(finite)
        self.flag = bad if self.flag is None else xp.logical_or(self.flag, bad)

    def check(self) -> None:
        """Raise where any output seen was NaN or inf.

        Raises:
            ValueError: The model returned NaN or inf at a point the attack visited.
        """
        flag, self.flag = self.flag, None
        if flag is not None and bool(flag):
            raise ValueError(NON_FINITE)


class _Watch:
    """The checks a backend is handed at every evaluation: the first-call checks while
    they are pending, and the watch for NaN and inf, which sees the logits before any loss
    is computed from them."""

    def __init__(self, first: _FirstCall | None, finite: _Finite) -> None:
        self.first, self.finite, self.seen = first, finite, False

    def logits(self, logits: Array, y: Array) -> None:
        if self.first is not None:
            self.first.logits(logits, y)
        self.finite.see(logits)
        self.seen = True

    def losses(self, losses: Array, y: Array) -> None:
        if self.first is not None:
            self.first.losses(losses, y)

    def returned(self, logits: Array, y: Array) -> None:
        """After the backend returned: the logits, where it did not hand them over."""
        if not self.seen:
            self.logits(logits, y)


@dataclass
class Passes:
    """The sample-passes through the model in one call (one sample through its forward or
    backward pass counts one; every EOT draw counts). A compiled loop evaluates its whole
    batch at every step (early stopping is a mask there): ``steps x batch`` of each.

    Attributes:
        forward: Samples through the model's forward pass.
        backward: Samples through its backward pass (input gradients).
        also: A count that every pass counted here is added to as well (a
            `CountedModel`'s).
    """

    forward: int = 0
    backward: int = 0
    also: Passes | None = field(default=None, repr=False, compare=False)

    def count(self, samples: int, *, backward: bool) -> None:
        """Add ``samples`` forward passes, and as many backward ones with ``backward``."""
        self.forward += samples
        if backward:
            self.backward += samples
        if self.also is not None:
            self.also.count(samples, backward=backward)


@dataclass(frozen=True)
class CountedModel:
    """A model handed to `open_batch` together with a count of its passes: every batch
    opened on it runs ``model`` itself and adds each of its passes to ``passes`` as well,
    counted where an attack's are (at every call of the model, with the samples of the
    call; a compiled loop at the call of the compiled computation), so the count is exact
    on every backend, JAX and registered ones included.

    Only `open_batch` runs it: its own call raises (a pass made outside a batch could not
    be counted).
    """

    model: object
    passes: Passes

    def __call__(self, x: object) -> object:
        raise TypeError(
            "a CountedModel runs only inside open_batch, which counts its passes; "
            f"call its model ({type(self.model).__name__}) instead"
        )


def _unshared(x: Array) -> Array:
    """A copy of ``x`` that the model may write into: the attack's iterate and the centre
    of its ball are never handed to the model (JAX arrays, which nothing can write into,
    go as they are)."""
    if array_api_compat.is_jax_array(x):
        return x
    return namespace(x).asarray(x, copy=True)


@dataclass(frozen=True)
class Batch:
    """A checked batch, ready for the kernels.

    Attributes:
        backend: The open backend of the model.
        x: The inputs as a detached floating array (``float32`` for integer inputs), moved
            onto the box where they were outside it by round-off only.
        labels: The labels as the library's indexing dtype (``int64``; ``int32`` in JAX's
            default 32-bit mode) on ``x``'s device.
        bounds: The box; for integer inputs, narrowed to the integers inside it that the
            dtype can hold.
        input_dtype: The caller's dtype, to convert results back to.
        integer: Whether the caller's inputs are integers.
        original: The caller's inputs, detached (integer inputs are restored from them
            exactly, whatever their magnitude).
        draws: Evaluations of the model per call (EOT, for a randomized model): losses and
            input gradients are their means, predictions those of the mean logits.
        norm: The norm of the attack's ball: it decides the radius and the rounding of
            integer images (`radius`, [`to_input`][signattack.attacks.Batch.to_input]).
        values: The values of one sample (its pixels times its channels): what the box's
            diameter in ``norm`` is measured over.
        passes: The sample-passes the model has seen through the batch so far (and through
            any ``dataclasses.replace`` of it: a part of the batch adds to the same count).
    """

    backend: Backend
    x: Array
    labels: Array
    bounds: Bounds
    input_dtype: object
    integer: bool
    original: Array
    draws: int = 1
    norm: Norm = LINF
    values: int = 1
    first_call: _FirstCall = field(default_factory=_FirstCall, repr=False, compare=False)
    finite: _Finite = field(default_factory=_Finite, repr=False, compare=False)
    passes: Passes = field(default_factory=Passes, repr=False, compare=False)

    def value_and_grad(self, x: Array, y: Array) -> tuple[Array, Array, Array]:
        """Per-sample losses, the input gradient of their sum and the predicted classes; with
        several `draws`, the means over independent forward and backward passes (EOT) and the
        classes of the mean logits.

        The first evaluations check the logits, the losses and the gradient's shape. The model is
        handed a copy of ``x`` (it may write into it); logits that are not finite make the call
        raise (see [`check_finite`][signattack.attacks.Batch.check_finite]).
        """

        def once() -> list[Array]:
            first = self.first_call.take()
            watch = _Watch(first, self.finite)
            self.passes.count(int(x.shape[0]), backward=True)
            losses, grad, logits = self.backend.value_and_grad(_unshared(x), y, watch)
            watch.returned(logits, y)
            if first is not None:
                first.gradient(grad, x)
            return [losses, grad, logits]

        losses, grad, logits = self._mean_of_draws(once)
        return losses, grad, namespace(logits).argmax(logits, axis=1)

    def logits(self, x: Array, y: Array | None = None) -> Array:
        """The model's output at ``x`` (the mean over `draws`), without a graph;
        checked against ``y`` (the batch's labels by default) on the first call.

        Every evaluation hands the model a copy of ``x``: a model that writes into its input
        (``x.mul_(0)``, ``x -= 100``) changes neither the attack's iterate nor the centre of its
        ball. Its output is watched for NaN and inf
        ([`check_finite`][signattack.attacks.Batch.check_finite]).
        """

        def once() -> list[Array]:
            self.passes.count(int(x.shape[0]), backward=False)
            logits = self.backend.logits(_unshared(x))
            _Watch(self.first_call.take(), self.finite).logits(
                logits, self.labels if y is None else y
            )
            return [logits]

        (logits,) = self._mean_of_draws(once)
        return logits

    def evaluate(self, x: Array, y: Array) -> tuple[Array, Array]:
        """Per-sample losses and predicted classes at ``x``, without a gradient (with
        several `draws`: the mean loss, and the classes of the mean logits)."""

        def once() -> list[Array]:
            watch = _Watch(self.first_call.take(), self.finite)
            self.passes.count(int(x.shape[0]), backward=False)
            logits = self.backend.logits(_unshared(x))
            watch.logits(logits, y)
            losses = self.backend.loss(logits, y)
            watch.losses(losses, y)
            return [losses, logits]

        losses, logits = self._mean_of_draws(once)
        return losses, namespace(logits).argmax(logits, axis=1)

    def _mean_of_draws(self, once: Callable[[], list[Array]]) -> list[Array]:
        """``once()``'s arrays, or, with several `draws`, their means over that many
        independent calls (one call adds no arithmetic)."""
        totals = once()
        for _ in range(self.draws - 1):
            totals = [total + value for total, value in zip(totals, once(), strict=True)]
        return totals if self.draws == 1 else [total / self.draws for total in totals]

    def run_steps(
        self,
        rule: TraceableRule[State],
        state: State,
        labels: Array,
        steps: int,
        *,
        targeted: bool,
        early_stop: bool,
    ) -> Steps[State] | None:
        """The whole loop as one compiled computation, where the backend can compile one
        (``None`` otherwise, and with several `draws`); the first-call checks see the
        first step's logits and losses."""
        if not isinstance(self.backend, CompiledLoop) or self.draws > 1:
            return None
        checks = self.first_call.take()
        # Every step evaluates the whole batch (early stopping is a mask there).
        self.passes.count(steps * int(self.labels.shape[0]), backward=True)
        ran = self.backend.run_steps(
            rule, state, labels, self.labels, steps, targeted=targeted, early_stop=early_stop
        )
        if checks is not None:
            checks.logits(ran.first_logits, labels)
            checks.losses(ran.rows[0], labels)
            checks.gradient_pending = False  # the framework differentiated x itself
        self.finite.see(ran.first_logits)
        if ran.finite is not None:  # every later step's logits, as one flag
            self.finite.see_flag(ran.finite)
        return ran

    def check_finite(self) -> None:
        """Raise where the model returned NaN or inf at any point evaluated so far on a
        device (one host synchronisation; host arrays are checked at every evaluation);
        `open_batch` calls it when the attack ends.

        Raises:
            ValueError: The model returned NaN or inf at a point the attack visited.
        """
        self.finite.check()

    def streams(self, draws: np.random.Generator) -> SampleStreams:
        """The random streams of the batch's samples: keyed by one root key from ``draws``
        and by each sample's values and label (see `signattack.core.streams`). One
        copy of the batch to the host, once per call."""
        xp = namespace(self.x)
        # float32: NumPy has no bfloat16, and keys compare values at float32 precision.
        values = self.original if self.integer else xp.astype(self.x, xp.float32)
        return SampleStreams.of(root_key(draws), to_numpy(values), to_numpy(self.labels))

    @overload
    def radius(self, eps: float) -> float: ...

    @overload
    def radius(self, eps: Array) -> Array: ...

    def radius(self, eps: Amount) -> Amount:
        """The radius the kernels use: ``eps``, at most the box's diameter in the batch's
        norm, and for integer inputs the radius an integer perturbation is held to in that
        norm ([`integer_radius`][signattack.core.norms.Norm.integer_radius]).

        A ball wider than the box's diameter (`clamped`) meets the box in the box itself, as
        the ball of that diameter does: the feasible set is the same, and no radius, step or
        random start computed from it overflows a narrow dtype (``eps = 1e6`` is ``inf`` in
        ``float16``). Radii up to the diameter are kept as given.

        Under L-inf the integer radius is ``floor(eps)``: an integer perturbation ``d`` satisfies
        ``|d| <= eps`` exactly when ``|d| <= floor(eps)``, and ``floor(eps)`` is exact in any
        float dtype, where ``eps = 7.999999999999999`` would round to 8 in ``float32``.
        """
        held = self.clamped(eps)
        return self.norm.integer_radius(held) if self.integer else held

    def clamped(self, eps: Amount) -> Amount:
        """``eps``, or the box's diameter in the batch's norm where ``eps`` is wider (per
        sample for an array of radii; the distance between the box's opposite corners,
        `box_diameter`): the same ball-and-box, in numbers every dtype holds. What a step
        that scales with the radius scales with."""
        diameter = box_diameter(self.bounds, self.norm, self.values)
        if isinstance(eps, (int, float)):
            return eps if not eps > diameter else diameter
        if not math.isfinite(diameter):
            return eps
        xp = namespace(eps)
        return xp.minimum(eps, diameter)

    def rounded(self, radius: Amount) -> Callable[[Array], Array]:
        """What the model sees of an iterate: for integer inputs, the iterate rounded as
        [`to_input`][signattack.attacks.Batch.to_input] rounds it, back in the working dtype;
        otherwise the iterate."""
        if not self.integer:
            return _same
        xp = namespace(self.x)
        return lambda x_adv: xp.astype(self.to_input(x_adv, radius), self.x.dtype)

    def to_input(self, x_adv: Array, radius: Amount) -> Array:
        """The iterate in the caller's dtype; for integer inputs, rounded exactly.

        Integer inputs come back as ``original + d`` with ``d`` an integer perturbation inside the
        ball of ``radius`` (rounded by the batch's norm,
        [`round_step`][signattack.core.norms.Norm.round_step]: under L-inf an integer in
        ``[-radius, radius]``), added and clipped to the box in integer arithmetic, so that neither
        the ball nor the box depends on float rounding, even for values beyond ``2**24`` that
        ``float32`` cannot hold. The box clip moves values towards the original, so it never leaves
        the ball.
        """
        xp = namespace(x_adv)
        if not self.integer:
            return xp.astype(x_adv, self.input_dtype, copy=False)
        wide = _widest_integer(xp, self.original)
        step = xp.astype(self.norm.round_step(x_adv - self.x, radius), wide)
        moved = xp.astype(self.original, wide) + step
        lower, upper = int(self.bounds.lower), int(self.bounds.upper)
        return xp.astype(xp.clip(moved, lower, upper), self.input_dtype)


def _widest_integer(xp: Namespace, like: Array) -> object:
    """The library's default indexing dtype: ``int64``, or ``int32`` where that is the widest
    (JAX without 64-bit mode)."""
    return xp.__array_namespace_info__().default_dtypes(device=device_of(like))["indexing"]


def _same(x: Array) -> Array:
    return x


def open_threat(
    model: object,
    x: object,
    y: object,
    threat: ThreatModel,
    *,
    eps: float | None = None,
    draws: int = 1,
) -> AbstractContextManager[Batch]:
    """`open_batch` under a validated [`ThreatModel`][signattack.core.threat.ThreatModel],
    in its norm."""
    return open_batch(
        model,
        x,
        y,
        loss=threat.loss_function,
        model_mode=threat.model_mode,
        bounds=threat.box,
        eps=eps,
        draws=draws,
        norm=threat.geometry,
    )


@contextmanager
def open_batch(
    model: object,
    x: object,
    y: object,
    *,
    loss: LossFunction,
    model_mode: ModelMode,
    bounds: Bounds,
    eps: float | None = None,
    draws: int = 1,
    norm: Norm | str = LINF,
) -> Iterator[Batch]:
    """Open the backend for ``x``, validate ``x`` and ``y``, and convert them for the kernels.

    Warns with a [`UnitsWarning`][signattack.UnitsWarning] where ``x``, ``bounds`` and the largest
    radius ``eps`` (measured in ``norm``: ``"linf"``, ``"l2"`` or a
    [`Norm`][signattack.core.norms.Norm]) look like different units. A `CountedModel` runs
    its model, and the batch's passes are added to its count as well. The model is restored
    on exit, also when validation fails. The model never sees the batch's own arrays (see
    [`Batch.logits`][signattack.backends.batch.Batch.logits]).

    Raises:
        TypeError, ValueError: As `signattack.core.validation.check_batch`, or an
            unknown ``norm``; and, on leaving the block, a ``ValueError`` where the model returned
            NaN or inf at any point it was evaluated at.
    """
    geometry = norm_of(norm)
    counted = model.passes if isinstance(model, CountedModel) else None
    if isinstance(model, CountedModel):
        model = model.model
    with open_backend(model, x, loss, model_mode) as backend:
        if not is_array(x):  # a registered backend took something that is not an array
            raise TypeError(f"x must be an array, got {type(x).__name__}")
        if not is_array(y):
            raise TypeError(f"y must be an array of labels like x, got {type(y).__name__}")
        input_dtype = x.dtype
        x = backend.prepare(x)
        if namespace(y) is not namespace(x):
            check_batch(x, y, bounds)  # names the mismatch
        labels = backend.prepare(moved(y, device_of(x)))
        x_range = check_batch(x, labels, bounds)
        xp = namespace(x)
        integer = xp.isdtype(x.dtype, "integral")
        size = math.prod(int(side) for side in x.shape[1:])
        warn_units(x_range, not integer, bounds, eps, norm=geometry, size=size)
        lower, upper = bounds
        if integer:
            lower = max(math.ceil(lower), int(xp.iinfo(input_dtype).min))
            upper = min(math.floor(upper), int(xp.iinfo(input_dtype).max))
        index_dtype = _widest_integer(xp, labels)
        largest = int(xp.max(labels))
        if largest > int(xp.iinfo(index_dtype).max):
            raise ValueError(
                f"y must hold class labels of the model (0 <= y < classes), got {largest}"
            )
        x_float = xp.astype(x, xp.float32) if integer else x
        batch = Batch(
            backend=backend,
            x=xp.clip(x_float, float(lower), float(upper)),
            labels=xp.astype(labels, index_dtype, copy=False),
            bounds=Bounds(float(lower), float(upper)),
            input_dtype=input_dtype,
            integer=integer,
            original=x,
            draws=draws,
            norm=geometry,
            values=size,
            passes=Passes(also=counted),
        )
        yield batch
        batch.check_finite()
