"""The one seam between the attacks and a framework: the
[`Backend`][signattack.backends._protocol.Backend] protocol."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Generic, Protocol, TypeAlias, runtime_checkable

from signattack._typing import Array
from signattack.core.losses import LossFunction
from signattack.core.rules import State as State  # the backends import these three here
from signattack.core.rules import TraceableRule as TraceableRule
from signattack.core.threat import ModelMode as ModelMode


class Checks(Protocol):
    """What a backend calls on the first evaluation of a model, if it is handed one."""

    def logits(self, logits: Array, y: Array) -> None:
        """Check the model's output against the labels, before any loss is computed."""
        ...

    def losses(self, losses: Array, y: Array) -> None:
        """Check the loss's output, before it is differentiated."""
        ...


class Backend(Protocol):
    """What a framework must provide for attacks and probes, and nothing that can be derived.

    A backend is opened for one call (see
    [`BackendFactory`][signattack.backends._protocol.BackendFactory]) and holds the model and the
    loss. All arrays it takes and returns belong to the caller's array library. Checks of what the
    model returns (logits of the right shape, finite, labels in range; losses and gradients of the
    right shape) and predictions and losses without a gradient are derived from these three methods
    in one place, [`Batch`][signattack.backends.batch.Batch].

    """

    @property
    def loss(self) -> LossFunction:
        """The per-sample loss on logits that [`value_and_grad`][signattack.Backend.value_and_grad]
        differentiates."""
        ...

    def prepare(self, x: Array) -> Array:
        """Return ``x`` as a constant the attack may read but never writes.

        For PyTorch: detached from any autograd graph and usable outside inference mode.
        """
        ...

    def logits(self, x: Array) -> Array:
        """The model's output at ``x``, ``(batch, classes)``, without any graph."""
        ...

    def value_and_grad(
        self, x: Array, y: Array, checks: Checks | None = None
    ) -> tuple[Array, Array, Array]:
        """Per-sample losses ``(batch,)``, the input gradient of their sum (``x``'s shape and
        dtype) and the logits, all from one forward pass. Parameter gradients are never
        computed. ``checks``, when given, sees the logits before the loss and the losses
        before the gradient."""
        ...


BackendFactory: TypeAlias = Callable[
    [object, object, LossFunction, ModelMode], AbstractContextManager[Backend]
]
"""``factory(model, x, loss, model_mode)`` opens a
[`Backend`][signattack.backends._protocol.Backend] for one attack call.

The context manager puts the model in the requested mode on entry and restores everything it
changed on exit, also when the attack raises.
"""


@dataclass(frozen=True)
class Steps(Generic[State]):
    """What a compiled loop returns.

    Attributes:
        rows: The per-sample losses at every step, ``(steps, batch)``.
        state: The rule's state after the last step.
        first_logits: The logits of the first step, for the first-call checks.
        finite: Whether the logits of every step were finite (a boolean array), ``None``
            where the loop does not say.
    """

    rows: Array
    state: State
    first_logits: Array
    finite: Array | None = None


@runtime_checkable
class CompiledLoop(Protocol):
    """What a backend that can compile a whole attack loop adds to
    [`Backend`][signattack.backends._protocol.Backend]."""

    def run_steps(
        self,
        rule: TraceableRule[State],
        state: State,
        labels: Array,
        wanted: Array,
        steps: int,
        *,
        targeted: bool,
        early_stop: bool,
    ) -> Steps[State]:
        """``steps`` steps of ``rule`` from ``state``: the loss of ``labels`` is climbed
        (descended by a rule with a negative step), and success means predicting other
        than ``wanted`` (``wanted`` itself when ``targeted``). With ``early_stop``, each
        sample keeps its state, losses and success from the step it first succeeds."""
        ...
