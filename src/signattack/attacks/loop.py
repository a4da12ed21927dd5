"""The one attack loop that every iterative attack shares.

An attack is an :class:`~signattack.core.rules.UpdateRule`: where it starts, where the model
is evaluated next, how it moves, and which point it returns. :func:`iterate` runs any rule
for a number of steps: one forward pass a step at the rule's point (and one backward pass,
where the rule needs the gradient), the loss trace, the success of every sample at every
point it visited, and early stopping, which is a mask on the batch: a sample that succeeds
leaves the batch the model sees, and its state stays as it was.
A rule that says it is ``traceable`` (pure array code: see
:class:`~signattack.core.rules.TraceableRule`) runs as one compiled computation on a backend
that can compile loops (JAX); early stopping there is a mask over the whole batch.

Everything is an array of the caller's library with the batch first; per-sample radii and
steps are arrays shaped to broadcast over a sample. Without early stopping the loop never
synchronises with the device.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import Generic, TypeGuard, TypeVar, cast

from signattack._fields import field_values, replaced
from signattack._lazy import moved_attributes
from signattack._typing import (
    Amount,
    Array,
    device_of,
    is_array,
    moved,
    namespace,
)
from signattack.backends.batch import Batch
from signattack.core.kernels import clip, take_samples
from signattack.core.rules import Evaluated, Start, State, TraceableRule, UpdateRule
from signattack.core.streams import Purpose, SampleStreams

__all__ = ["Evaluated", "LoopResult", "Start", "UpdateRule", "iterate"]

T = TypeVar("T")


# Old names, importable with a deprecation warning (``Final`` shadowed ``typing.Final``).
__getattr__ = moved_attributes(__name__, {"Final": ("signattack.attacks", "Evaluated")})


@dataclass(frozen=True)
class LoopResult(Generic[State]):
    """What :func:`iterate` found.

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


def random_start(
    x: Array, eps: Amount, low: Array, high: Array, streams: SampleStreams, purpose: Purpose
) -> Array:
    """A uniform random point of the ball around each sample of ``x``, drawn from the
    sample's own stream for ``purpose`` (on the host, moved to ``x``'s device once) and
    clipped to the feasible set."""
    xp = namespace(x)
    unit = xp.asarray(streams.uniform(purpose, tuple(x.shape[1:])), dtype=x.dtype)
    return clip(x + moved(unit, device_of(x)) * eps, low, high)


def merge_where(mask: Array, new: T, old: T) -> T:
    """``new`` where ``mask`` (``(batch,)`` booleans) holds, ``old`` elsewhere.

    Works on arrays with the batch first, and on dataclasses of them (fields that are not
    arrays with the batch first are taken from ``new``).
    """
    fields, previous = field_values(new), field_values(old)
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
            model sees; costs one host synchronisation a step.
        final: Evaluate the final iterate, mapped through ``final`` (the rounding of
            integer images, or the identity), with one more forward pass; ``None`` skips it.

    Returns:
        The :class:`LoopResult`.
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
    if compiled is None:
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
    state. With ``early_stop``, the samples that succeeded leave the batch the model sees."""
    xp = namespace(batch.x)
    gradient = _needs_gradient(rule)

    def evaluate(x: Array, y: Array) -> tuple[Array, Array | None, Array]:
        if gradient:
            return batch.value_and_grad(x, y)
        losses, predictions = batch.evaluate(x, y)  # forward passes only
        return losses, None, predictions

    rows: list[Array] = []
    left: _Left | None = None  # with early stopping: the samples still attacked
    for step in range(steps):
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
        rows.append(losses)
        if early_stop:
            still = xp.logical_not(fooled)
            left = _Left(still, xp.nonzero(still)[0], losses, fooled)  # one sync a step
            if left.index.shape[0] == 0:
                break
            state = merge_where(still, rule.update(state, step, losses, grad, fooled), state)
        else:
            state = rule.update(state, step, losses, grad, fooled)
    rows.extend([rows[-1]] * (steps - len(rows)))
    return rows, state


def spread(mask: Array, part: Array, full: Array, axis: int = 0) -> Array:
    """``full`` with its entries along ``axis`` where ``mask`` holds replaced, in order, by
    those of ``part``; a new array (JAX arrays cannot be written into).

    ``part`` holds one entry for every ``True`` of ``mask`` (``part = full[mask]`` in
    shape), as :func:`iterate` and the restarts of APGD make it.
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
