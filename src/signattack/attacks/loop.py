"""The one attack loop that every iterative attack shares.

An attack is an [`UpdateRule`][signattack.core.rules.UpdateRule]: where it starts, where the model
is evaluated next, how it moves, and which point it returns.
[`iterate`][signattack.attacks.loop.iterate] runs any rule for a number of steps: one forward pass a
step at the rule's point (and one backward pass, where the rule needs the gradient), the loss trace,
the success of every sample at every point it visited, and early stopping, which is a mask on the
batch: a sample that succeeds leaves the batch the model sees, and its state stays as it was. A rule
that keeps every per-sample array in its state (``per_sample``) has that state taken down to the
samples still attacked as well, so that `update` works on those alone, and may say that a sample is
decided (``decided``): it then leaves the batch too, with its state. A rule
that says it is ``traceable`` (pure array code: see
[`TraceableRule`][signattack.core.rules.TraceableRule]) runs as one compiled computation on a
backend that can compile loops (JAX); early stopping there is a mask over the whole batch.

Everything is an array of the caller's library with the batch first; per-sample radii and steps are
arrays shaped to broadcast over a sample. Without early stopping the loop never synchronises with
the device.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Generic, TypeGuard, TypeVar, cast

from signattack._fields import init_values, replaced
from signattack._lazy import moved_attributes
from signattack._progress import steps as progress_steps
from signattack._typing import Array, is_array, namespace
from signattack.backends.batch import Batch
from signattack.core.kernels import take_samples
from signattack.core.norms import Feasible
from signattack.core.rules import Evaluated, Start, State, TraceableRule, UpdateRule
from signattack.core.streams import Purpose, SampleStreams

__all__ = ["Evaluated", "LoopResult", "Start", "UpdateRule", "iterate"]

T = TypeVar("T")


# Old names, importable with a deprecation warning (``Final`` shadowed ``typing.Final``).
__getattr__ = moved_attributes(__name__, {"Final": ("signattack.attacks", "Evaluated")})


@dataclass(frozen=True)
class LoopResult(Generic[State]):
    """What [`iterate`][signattack.attacks.loop.iterate] found.

    Attributes:
        rows: Per-sample losses at every evaluated iterate: ``steps`` rows, and one more at
            the final iterate when it was evaluated.
        x_adv: The point the rule returns, floating, inside the feasible set.
        final: The model at the final iterate, when it was evaluated.
        state: The rule's final state.
    """

    rows: list[Array]
    x_adv: Array
    final: Evaluated | None
    state: State


def random_start(feasible: Feasible, x: Array, streams: SampleStreams, purpose: Purpose) -> Array:
    """A random point of the feasible set around each sample of ``x`` (uniform in the cube
    under L-inf; see [`random_point`][signattack.core.norms.Feasible.random_point]), made from draws
    in ``[-1, 1)`` from the sample's own stream for ``purpose`` (on the host, moved to
    ``x``'s device once)."""
    return feasible.random_point(streams.uniform(purpose, tuple(x.shape[1:])))


def merge_where(mask: Array, new: T, old: T) -> T:
    """``new`` where ``mask`` (``(batch,)`` booleans) holds, ``old`` elsewhere.

    Works on arrays with the batch first, and on dataclasses of them (fields that are not
    arrays with the batch first are taken from ``new``; fields the constructor does not take
    are derived, and made again).
    """
    fields, previous = init_values(new), init_values(old)
    if fields is not None and previous is not None:
        merged = {name: merge_where(mask, value, previous[name]) for name, value in fields.items()}
        return replaced(new, merged)
    array, other = new, old  # narrowed to arrays below; new keeps the caller's type
    if not (is_array(array) and is_array(other)) or array.ndim == 0:
        return new
    if array.shape[0] != mask.shape[0]:
        return new
    xp = namespace(array)
    # xp.where keeps the library of its inputs: the merged field has the type of ``new``.
    return cast(T, xp.where(xp.reshape(mask, (-1,) + (1,) * (array.ndim - 1)), array, other))


def iterate(
    batch: Batch,
    rule: UpdateRule[State],
    start: Start,
    steps: int,
    *,
    targeted: bool = False,
    loss_labels: Array | None = None,
    early_stop: bool = False,
    final: Callable[[Array], Array] | None = None,
) -> LoopResult[State]:
    """Run ``rule`` for ``steps`` steps on ``batch``.

    Args:
        batch: The open, validated batch.
        rule: The attack's update rule.
        start: Where it starts.
        steps: Steps: one forward pass each, and a backward pass where the rule needs the
            gradient.
        targeted: Success means predicting ``batch.labels`` (targets) rather than anything
            else.
        loss_labels: What the loss takes as labels, when not ``batch.labels`` (targeted DLR
            takes classes and targets).
        early_stop: Freeze each sample once it succeeds and drop it from the batch the
            model sees (and, under a ``per_sample`` rule, from the state `update` sees);
            costs one host synchronisation a step. A rule that ``decides`` drops each sample
            it says is decided, with or without early stopping, at the same cost. Under a
            rule that says it is
            ``memoryless`` (the next state depends on the state and its gradient alone), a sample
            whose iterate returns exactly to one of the last two (a fixed point or a 2-cycle) leaves
            too, with the losses and the last iterate its cycle leads to: the same result, fewer
            model passes.
        final: Evaluate the final iterate, mapped through ``final`` (the rounding of
            integer images, or the identity), with one more forward pass; ``None`` skips it.

    Returns:
        The [`LoopResult`][signattack.attacks.loop.LoopResult].
    """
    labels = batch.labels if loss_labels is None else loss_labels

    xp = namespace(batch.x)
    compare = xp.equal if targeted else xp.not_equal

    def succeeded(predictions: Array, index: Array | None) -> Array:
        wanted = batch.labels if index is None else take_samples(batch.labels, index)
        return compare(predictions, wanted)

    state = rule.start(start)
    compiled = (
        batch.run_steps(rule, state, labels, steps, targeted=targeted, early_stop=early_stop)
        if _traceable(rule)
        else None
    )
    compact = _per_sample(rule) and (early_stop or _decider(rule) is not None)
    if compiled is None and compact and not _cycling(batch, rule, early_stop):
        rows, state = _compact_steps(batch, rule, state, labels, steps, succeeded, early_stop)
    elif compiled is None:
        rows, state = _eager_steps(batch, rule, state, labels, steps, succeeded, early_stop)
    else:
        rows, state = [compiled.rows[index, ...] for index in range(steps)], compiled.state
    if final is None:
        return LoopResult(rows, rule.finish(state, None), None, state)
    evaluated = final(rule.point(state))
    final_losses, final_predictions = batch.evaluate(evaluated, labels)
    rows.append(final_losses)
    at_end = Evaluated(
        evaluated, final_losses, final_predictions, succeeded(final_predictions, None)
    )
    return LoopResult(rows, rule.finish(state, at_end), at_end, state)


def _traceable(rule: UpdateRule[State]) -> TypeGuard[TraceableRule[State]]:
    """Whether ``rule`` says it is pure array code that a backend may compile (a compiled
    loop differentiates, so the rule must need the gradient)."""
    traceable = bool(getattr(rule, "traceable", False)) and dataclasses.is_dataclass(rule)
    return traceable and _needs_gradient(rule)


def _per_sample(rule: UpdateRule[State]) -> bool:
    """Whether ``rule`` keeps every per-sample array in its state (its fields are shared by
    every sample), so that the loop may take its state down to the samples still attacked."""
    return bool(getattr(rule, "per_sample", False))


def _decider(rule: UpdateRule[State]) -> Callable[[State], Array] | None:
    """``rule.decided`` where ``rule`` may say that a sample is decided (see
    [`UpdateRule`][signattack.core.rules.UpdateRule]); only a ``per_sample`` rule is asked."""
    if not getattr(rule, "decides", False):
        return None
    decided: object = getattr(rule, "decided", None)
    if not callable(decided):
        raise TypeError(f"{type(rule).__name__} decides, so it must have a method decided(state)")
    return cast(Callable[[State], Array], decided)


def take_state(state: T, index: Array, size: int) -> T:
    """The samples ``index`` of a rule's state of ``size`` samples: every array with the batch
    first (in a dataclass of them, field by field) taken at ``index``; anything else (a shared
    value, an array broadcast along the batch) is kept."""
    fields = init_values(state)
    if fields is not None:
        taken = {name: take_state(value, index, size) for name, value in fields.items()}
        return replaced(state, taken)
    if not is_array(state) or state.ndim == 0 or state.shape[0] != size:
        return state
    return cast(T, take_samples(state, index))


def put_state(mask: Array, part: T, full: T) -> T:
    """``full`` with the samples where ``mask`` (``(batch,)`` booleans) holds replaced, in
    order, by those of ``part`` (one per ``True``), array by array; shared values from
    ``full``. An array is written back in the wider of the two dtypes: a state's field may
    widen after ``start`` (a bfloat16 input's best loss becomes the model's float32), and
    rounding it back would change the samples still attacked."""
    fields, parts = init_values(full), init_values(part)
    if fields is not None and parts is not None:
        merged = {name: put_state(mask, parts[name], value) for name, value in fields.items()}
        return replaced(full, merged)
    if not (is_array(full) and is_array(part)) or full.ndim == 0 or full.shape[0] != mask.shape[0]:
        return full
    xp = namespace(full)
    wide = xp.result_type(part.dtype, full.dtype)
    whole = full if full.dtype == wide else xp.astype(full, wide)
    return cast(T, spread(mask, part, whole))


def _needs_gradient(rule: UpdateRule[State]) -> bool:
    """Whether ``rule`` reads the input gradient; a rule that does not say so does."""
    return bool(getattr(rule, "needs_gradient", True))


@dataclass(frozen=True)
class _Left:
    """With early stopping, the samples still attacked (a mask and its indices) and the
    losses and success of every sample so far."""

    mask: Array
    index: Array
    losses: Array
    fooled: Array


CYCLE_PERIODS = 2
"""The longest cycle early stopping recognises: a fixed point (period 1) or two points in
turn (period 2), the paths signed steps of a fixed size settle into at the ball's corners."""


def _memoryless(rule: UpdateRule[State]) -> bool:
    """Whether ``rule`` says it is memoryless: its state is the point the model sees and
    data that never changes, and [`update`][signattack.core.rules.UpdateRule.update] and
    ``finish`` read the state and the gradient alone, so that on a deterministic model the
    same point always leads on to the same states (a rule that does not say so is not)."""
    return bool(getattr(rule, "memoryless", False))


def _cycling(batch: Batch, rule: UpdateRule[State], early_stop: bool) -> bool:
    """Whether the loop looks for samples whose path has become periodic (`_Cycles`): with
    early stopping, one draw per step (a deterministic answer can be confirmed) and a
    memoryless rule that decides nothing. The eager loop does it, on the whole batch's state
    (an update of a memoryless rule treats every sample apart, so the state `update` sees
    does not change what a sample's is)."""
    return early_stop and batch.draws == 1 and _memoryless(rule) and _decider(rule) is None


class _Cycles(Generic[State]):
    """With early stopping and a memoryless rule: the samples whose path has become periodic.

    A deterministic model at a point a sample already visited answers as it did there, so a
    memoryless rule then retraces its steps: after ``s_{k+1} = s_{k+1-p}`` (the points equal;
    the rest of a memoryless rule's state never changes) every later state, loss and verdict
    repeats with period ``p``. Such a sample leaves the batch the
    model sees, as a fooled one does, and its remaining losses and its last state are read
    off the cycle: the result is the one the full loop computes. A repeat is taken as a
    cycle only where the model confirmed it, giving the same loss, bit for bit, at the same
    point one period apart (a randomized model does not), and only on states compared
    exactly (equal values: no tolerance).
    """

    def __init__(self, steps: int, state: State, point: Callable[[State], Array]) -> None:
        first = point(state)
        xp = namespace(first)
        self.steps = steps
        self.point = point
        self.states = [state]  # the last CYCLE_PERIODS + 2 states, the newest last
        self.points = [first]  # their points
        self.period = xp.zeros((first.shape[0],), dtype=xp.int32)
        self.ending = state  # where the periodic samples end, after the last step

    @property
    def periodic(self) -> Array:
        """``(batch,)`` booleans: the samples on a cycle."""
        return self.period > 0

    def filled(self, rows: list[Array], losses: Array) -> Array:
        """The row of the step ``len(rows)``: ``losses``, and for the periodic samples their
        loss one period earlier."""
        xp = namespace(losses)
        for period in range(1, min(CYCLE_PERIODS, len(rows)) + 1):
            losses = xp.where(xp.equal(self.period, period), rows[len(rows) - period], losses)
        return losses

    def see(self, rows: list[Array], state: State, attacked: Array) -> None:
        """Take the state after the step ``len(rows) - 1``, and mark the samples among
        ``attacked`` (evaluated at that step, not fooled there) whose path closed a cycle."""
        xp = namespace(attacked)
        self.states = [*self.states[-CYCLE_PERIODS - 1 :], state]
        self.points = [*self.points[-CYCLE_PERIODS - 1 :], self.point(state)]
        points = self.points
        step = len(rows) - 1  # the step just taken: s_{step+1} is the newest state
        for period in range(1, CYCLE_PERIODS + 1):
            if step - period < 0:
                break
            closed = xp.logical_and(attacked, xp.logical_not(self.periodic))
            closed = xp.logical_and(closed, _equal(points[-1], points[-1 - period]))
            closed = xp.logical_and(closed, _equal(points[-2], points[-2 - period]))
            closed = xp.logical_and(closed, xp.equal(rows[step], rows[step - period]))
            # s_K = s_{K - p * j} for the smallest j that lands in s_{step+2-p} .. s_{step+1}.
            back = (period - (self.steps - step - 1) % period) % period
            self.ending = merge_where(closed, self.states[-1 - back], self.ending)
            self.period = xp.where(closed, xp.asarray(period, dtype=self.period.dtype), self.period)

    def rest(self, rows: list[Array]) -> None:
        """Fill ``rows`` up to the last step: the periodic samples go round their cycle, the
        others keep their last loss."""
        while len(rows) < self.steps:
            rows.append(self.filled(rows, rows[-1]))

    def last(self, state: State) -> State:
        """The state after the last step: on a cycle, where the cycle is then."""
        return merge_where(self.periodic, self.ending, state)


def _equal(a: Array, b: Array) -> Array:
    """``(batch,)`` booleans: whether the two states are equal at every element."""
    xp = namespace(a)
    size = math.prod(int(side) for side in a.shape[1:])
    flat = (a.shape[0], size)
    return xp.all(xp.equal(xp.reshape(a, flat), xp.reshape(b, flat)), axis=1)


def _eager_steps(
    batch: Batch,
    rule: UpdateRule[State],
    state: State,
    labels: Array,
    steps: int,
    succeeded: Callable[[Array, Array | None], Array],
    early_stop: bool,
) -> tuple[list[Array], State]:
    """The loop one step at a time: the rows of losses (``steps`` of them) and the last
    state. With ``early_stop``, the samples that succeeded leave the batch the model sees,
    and so do those whose path has become periodic under a memoryless rule (see
    `_Cycles`), with the result the full loop computes."""
    xp = namespace(batch.x)
    gradient = _needs_gradient(rule)

    def evaluate(x: Array, y: Array) -> tuple[Array, Array | None, Array]:
        if gradient:
            return batch.value_and_grad(x, y)
        losses, predictions = batch.evaluate(x, y)  # forward passes only
        return losses, None, predictions

    cycles = _Cycles(steps, state, rule.point) if _cycling(batch, rule, early_stop) else None
    rows: list[Array] = []
    left: _Left | None = None  # with early stopping: the samples still attacked
    for step in progress_steps(steps):
        point = rule.point(state)
        grad: Array | None
        if left is None:
            losses, grad, predictions = evaluate(point, labels)
            fooled = succeeded(predictions, None)
        else:
            part_losses, part_grad, part_predictions = evaluate(
                take_samples(point, left.index), take_samples(labels, left.index)
            )
            losses = spread(left.mask, part_losses, left.losses)
            fooled = spread(left.mask, succeeded(part_predictions, left.index), left.fooled)
            grad = None if part_grad is None else spread(left.mask, part_grad, xp.zeros_like(point))
        if cycles is not None:
            losses = cycles.filled(rows, losses)
        rows.append(losses)
        if not early_stop:
            state = rule.update(state, step, losses, grad, fooled)
            continue
        still = xp.logical_not(fooled)
        if cycles is not None:  # the step first: a cycle closes at the state it leads to
            still = xp.logical_and(still, xp.logical_not(cycles.periodic))
            state = merge_where(still, rule.update(state, step, losses, grad, fooled), state)
            cycles.see(rows, state, still)
            still = xp.logical_and(still, xp.logical_not(cycles.periodic))
        left = _Left(still, xp.nonzero(still)[0], losses, fooled)  # one sync a step
        if left.index.shape[0] == 0:
            break
        if cycles is None:
            state = merge_where(still, rule.update(state, step, losses, grad, fooled), state)
    if cycles is None:
        rows.extend([rows[-1]] * (steps - len(rows)))
        return rows, state
    cycles.rest(rows)
    return rows, cycles.last(state)


def _compact_steps(
    batch: Batch,
    rule: UpdateRule[State],
    state: State,
    labels: Array,
    steps: int,
    succeeded: Callable[[Array, Array | None], Array],
    early_stop: bool,
) -> tuple[list[Array], State]:
    """The loop of a ``per_sample`` rule with early stopping or decisions: the model and
    `update` see the samples still attacked alone (their state taken down with
    `take_state`), and a sample that leaves (fooled under ``early_stop``, with the state it
    was fooled in; decided, with the state that decided it) has its state written back into
    the whole batch's (`put_state`). One host synchronisation a step; the rows of losses are
    over the whole batch, a sample's last loss repeated after it left."""
    xp = namespace(batch.x)
    gradient = _needs_gradient(rule)
    decided = _decider(rule)
    whole = state  # the state of every sample; a sample's part is current once it left
    live: Array | None = None  # the mask of the samples still attacked (None: all)
    index: Array | None = None  # their positions
    rows: list[Array] = []
    for step in progress_steps(steps):
        wanted = labels if index is None else take_samples(labels, index)
        point = rule.point(state)
        if gradient:
            losses, grad, predictions = batch.value_and_grad(point, wanted)
        else:
            (losses, predictions), grad = batch.evaluate(point, wanted), None
        fooled = succeeded(predictions, index)
        rows.append(losses if live is None else spread(live, losses, rows[-1]))
        moved = rule.update(state, step, losses, grad, fooled)
        unfooled = xp.logical_not(fooled) if early_stop else xp.ones_like(fooled)
        stay = unfooled
        if decided is not None:  # a fooled sample leaves whatever its decision
            stay = xp.logical_and(stay, xp.logical_not(decided(moved)))
        kept = xp.nonzero(stay)[0]  # one sync a step
        if int(kept.shape[0]) == int(stay.shape[0]):
            state = moved
            continue
        if early_stop:  # a fooled sample keeps the state it was fooled in
            moved = merge_where(unfooled, moved, state)
        full = xp.ones_like(batch.labels, dtype=xp.bool) if live is None else live
        leaving = spread(full, xp.logical_not(stay), xp.zeros_like(full))
        size = int(stay.shape[0])
        gone = take_state(moved, xp.nonzero(xp.logical_not(stay))[0], size)
        whole = put_state(leaving, gone, whole)
        live = spread(full, stay, xp.zeros_like(full))
        index = xp.nonzero(live)[0]
        state = take_state(moved, kept, size)
        if int(kept.shape[0]) == 0:
            break
    rows.extend([rows[-1]] * (steps - len(rows)))
    if live is None:
        return rows, state
    return rows, put_state(live, state, whole)


def spread(mask: Array, part: Array, full: Array, axis: int = 0) -> Array:
    """``full`` with its entries along ``axis`` where ``mask`` holds replaced, in order, by
    those of ``part``; a new array (JAX arrays cannot be written into).

    ``part`` holds one entry for every ``True`` of ``mask`` (``part = full[mask]`` in shape), as
    [`iterate`][signattack.attacks.loop.iterate] and the restarts of APGD make it.
    """
    xp = namespace(full)
    count = part.shape[axis]
    if count == 0:
        return full
    position = xp.cumulative_sum(xp.astype(mask, xp.int32)) - 1
    gathered = xp.take(part, xp.clip(position, 0, count - 1), axis=axis)
    shape = [1] * full.ndim
    shape[axis] = mask.shape[0]
    values = xp.astype(gathered, full.dtype)
    return xp.where(xp.reshape(mask, tuple(shape)), values, full)
