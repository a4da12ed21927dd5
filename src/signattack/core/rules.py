"""What an iterative attack writes: its update rule, and what a rule starts from and ends at.

An attack is an [`UpdateRule`][signattack.core.rules.UpdateRule]: where it starts, where the model
is evaluated next, how it moves given what the model said there, and which point it returns. The one
loop that runs every rule ([`signattack.attacks.loop.iterate`][signattack.attacks.loop.iterate]) and
the backends that may compile a rule ([`TraceableRule`][signattack.core.rules.TraceableRule]) both
read these protocols, so they live here, below both, with no framework in them.

A rule says whether it needs the input gradient (``needs_gradient``): a gradient-free rule (a random
search) sees the losses alone, and the loop then runs forward passes only, so the model need not be
differentiable at all.
"""

from __future__ import annotations

from dataclasses import Field, dataclass
from typing import ClassVar, Protocol, TypeVar

from signattack._typing import Amount, Array

__all__ = ["Evaluated", "Start", "State", "TraceableRule", "UpdateRule", "required"]

State = TypeVar("State")
"""A rule's state: an array, or a dataclass of arrays with the batch first."""


@dataclass(frozen=True)
class Start:
    """What a rule starts from, for one batch.

    Attributes:
        x: The clean inputs, floating (``float32`` for integer images).
        low: Lower limits of the feasible set (the eps-ball intersected with the box).
        high: Upper limits.
        eps: The radius, a float or an array ``(batch, 1, ...)``.
        step: The signed step size, a float or an array ``(batch, 1, ...)``; negative for
            targeted attacks that descend the loss.
        begin: The first point, inside ``[low, high]``: ``x``, or a random point of the ball.
    """

    x: Array
    low: Array
    high: Array
    eps: Amount
    step: Amount
    begin: Array


@dataclass(frozen=True)
class Evaluated:
    """The model at the final iterate: losses, predictions and success there.

    Attributes:
        x: The point evaluated (the final iterate, rounded for integer images).
        losses: Per-sample losses ``(batch,)``.
        predictions: The predicted classes ``(batch,)``.
        success: ``(batch,)`` booleans.
    """

    x: Array
    losses: Array
    predictions: Array
    success: Array


class UpdateRule(Protocol[State]):
    """How an attack moves: the only thing an iterative attack has to write.

    Attributes:
        needs_gradient: Whether `update` reads the input gradient. ``False`` makes the
            loop evaluate the model without a backward pass and hand ``grad=None``.

    Per-sample data lives in the state. A rule that declares ``per_sample: ClassVar[bool] =
    True`` promises that its state holds every array it reads that differs from sample to
    sample, each with the batch first (in a dataclass of them, field by field), and no other
    array with the batch first, while its own fields (and anything in the state that is not
    such an array) are shared by every sample; `start`, which sees the whole batch once, may
    read per-sample fields to make the state, and nothing else may. With early stopping, or
    with decisions, the loop then hands `start`'s state taken down to the samples still
    attacked to `point` and `update` (every such array taken at their positions), and writes a
    sample's state back into the whole batch's when it leaves, so that a sample's state does
    not depend on which of its batch-mates are still attacked. A rule that does not declare
    it gets the whole batch's state every step (the model still sees the samples attacked
    only).

    A ``per_sample`` rule may say that a sample is decided: with ``decides`` true (a class
    variable or a property) the loop calls ``decided(state) -> Array`` (``(batch,)``
    booleans) on the state after every update, and a sample decided there leaves the batch
    with that state, whether or not the loop stops early (FAB-T, when it holds a point within
    the radius and no distance is asked for).

    A rule may also declare ``memoryless: ClassVar[bool] = True`` when its state is the point
    the model sees and data that `update` never changes, and `update` and `finish` read only
    the state and the gradient (so that equal points are equal states): with early
    stopping the loop then lets a sample whose iterate returns to where it was one or two
    steps before leave the batch, with the result of the full loop (a fixed point or a
    2-cycle repeats for ever). A rule that does not declare it never leaves early that way.
    """

    needs_gradient: ClassVar[bool]

    def start(self, start: Start) -> State:
        """The state before the first step."""
        ...

    def point(self, state: State) -> Array:
        """Where the model is evaluated next (and, after the last step, the final iterate)."""
        ...

    def update(
        self, state: State, step: int, losses: Array, grad: Array | None, fooled: Array
    ) -> State:
        """The state after step ``step``, given the losses, the input gradient (``None`` for a
        rule that does not need it) and success (``(batch,)`` booleans) at `point`."""
        ...

    def finish(self, state: State, final: Evaluated | None) -> Array:
        """The point to return, given the evaluation of the final iterate (``None`` when
        it was not evaluated)."""
        ...


class TraceableRule(Protocol[State]):
    """An update rule that a backend may compile: a dataclass of arrays and numbers whose
    `point` and `update` are pure array code (no host synchronisation, no
    Python branch on a value or on the step, which may be a traced integer), and which
    needs the gradient."""

    __dataclass_fields__: ClassVar[dict[str, Field[object]]]

    def point(self, state: State) -> Array:
        """Where the next gradient is taken."""
        ...

    def update(
        self, state: State, step: Array | int, losses: Array, grad: Array, fooled: Array
    ) -> State:
        """The state after a step."""
        ...


def required(grad: Array | None) -> Array:
    """The gradient handed to a rule that needs one (which the loop always computes)."""
    if grad is None:
        raise RuntimeError("the attack loop handed no gradient to a rule that needs one")
    return grad
