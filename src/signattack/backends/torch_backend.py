"""The PyTorch backend: any ``nn.Module`` or callable on tensors.

Input gradients come from ``torch.autograd.grad`` with respect to the input alone, so no
parameter gradient is computed and no ``.grad`` field is written. The backend's context puts
the model in the requested mode and restores, on exit, every module's train/eval flag and,
where any module ran in training mode, every buffer (batch-norm running statistics). Attack
calls on one ``nn.Module`` from several threads run one after another, so that no call sees
another's mode switch.

This module imports torch; `signattack` loads it only when it is handed a tensor.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from itertools import chain
from typing import Protocol

import torch
from torch.autograd.function import FunctionCtx

from signattack._typing import Array
from signattack.backends._protocol import Checks, ModelMode
from signattack.backends._torch_state import kept_modes, kept_values
from signattack.core.losses import CROSS_ENTROPY, LossFunction

__all__: list[str] = []  # internal: nothing here is public API


class _Saved(Protocol):
    """The context ``backward`` receives: what ``forward`` saved."""

    @property
    def saved_tensors(self) -> tuple[torch.Tensor, ...]: ...


class _CrossEntropy(torch.autograd.Function):
    """Per-sample cross-entropy whose backward keeps confident samples' gradients.

    Forward: ``-log_softmax(z)_y``. Backward: ``p_j`` for ``j != y`` and ``-sum_{j != y} p_j``
    at the label, the same closed form as the NumPy backend. The usual ``p_y - 1`` rounds to
    zero once ``p_y`` rounds to 1 (a margin of about 17 in float32), silently dropping the
    true-class term from the input gradient exactly where attacks start.
    """

    @staticmethod
    def forward(ctx: FunctionCtx, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        log_probs = torch.log_softmax(logits, dim=1)
        ctx.save_for_backward(log_probs, labels)
        return -log_probs.gather(1, labels[:, None])[:, 0]

    @staticmethod
    def backward(ctx: _Saved, grad_losses: torch.Tensor) -> tuple[torch.Tensor, None]:
        log_probs, labels = ctx.saved_tensors
        is_label = torch.zeros_like(log_probs, dtype=torch.bool).scatter_(1, labels[:, None], True)
        others = log_probs.exp().masked_fill(is_label, 0.0)
        grad = others - is_label * others.sum(dim=1, keepdim=True)
        return grad * grad_losses[:, None], None


_WIDER = {torch.uint16: torch.int32, torch.uint32: torch.int64, torch.uint64: torch.int64}
"""The unsigned dtypes torch barely supports, and the signed ones that hold their values."""


class _StraightThrough(torch.autograd.Function):
    """``fn(x)`` forward; backward, the identity or the vector-Jacobian product of a
    differentiable stand-in at ``x``. What both return is checked by
    `signattack.masking.output_of`."""

    @staticmethod
    def forward(
        ctx: FunctionCtx,
        x: torch.Tensor,
        fn: Callable[[torch.Tensor], object],
        backward: Callable[[torch.Tensor], object] | None,
    ) -> torch.Tensor:
        from signattack.masking import output_of

        ctx.save_for_backward(x)
        setattr(ctx, "backward_fn", backward)  # noqa: B010 - FunctionCtx declares no slots
        return output_of("fn", fn, x.clone())  # a copy: fn may write into its input

    @staticmethod
    def backward(ctx: _Saved, grad: torch.Tensor) -> tuple[torch.Tensor, None, None]:
        from signattack.masking import output_of

        stand_in = getattr(ctx, "backward_fn", None)
        if stand_in is None:
            return grad, None, None
        (x,) = ctx.saved_tensors
        with torch.enable_grad():
            leaf = x.detach().clone().requires_grad_(True)
            out = output_of("backward", stand_in, leaf.clone())  # it may write into its input
            if not out.requires_grad:
                raise TypeError(
                    "straight_through's backward must be differentiable in its input: its "
                    "result does not depend on the input through autograd (computed from a "
                    "detached copy, by integer operations, or under torch.no_grad)"
                )
            (vjp,) = torch.autograd.grad(out, leaf, grad, allow_unused=True)
        return (torch.zeros_like(x) if vjp is None else vjp), None, None


def straight_through_torch(
    fn: Callable[[torch.Tensor], object],
    backward: Callable[[torch.Tensor], object] | None,
    x: object,
) -> torch.Tensor:
    """[`signattack.straight_through`][signattack.straight_through] on a tensor."""
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"straight_through_torch takes a torch.Tensor, got {type(x).__name__}")
    applied: torch.Tensor = _StraightThrough.apply(x, fn, backward)
    return applied


def _cross_entropy(logits: Array, labels: Array) -> Array:
    losses: torch.Tensor = _CrossEntropy.apply(_tensor(logits), _tensor(labels))
    return losses


def native_loss(loss: LossFunction) -> LossFunction:
    """The loss to differentiate with autograd: the built-in cross-entropy runs natively.

    Autograd through the array-API expression would route round-off through the max-shift
    of log-sum-exp, which for confidently classified samples outweighs the true gradient.
    """
    return _cross_entropy if loss is CROSS_ENTROPY else loss


@dataclass
class TorchBackend:
    """[`Backend`][signattack.backends.Backend] for a model on ``torch.Tensor`` inputs."""

    model: Callable[[torch.Tensor], object]
    loss: LossFunction

    def prepare(self, x: Array) -> Array:
        """``x`` detached from its graph; a normal tensor even if made in inference mode.

        torch's ``uint16``, ``uint32`` and ``uint64`` tensors lack most operations (``min``,
        ``clamp``), so they are widened to the signed type that holds every value exactly
        (the attacks give results back in the caller's dtype).

        Raises:
            ValueError: A ``uint64`` value does not fit ``int64`` (``>= 2**63``).
        """
        tensor = _tensor(x)
        prepared = tensor.clone() if tensor.is_inference() else tensor.detach()
        wider = _WIDER.get(prepared.dtype)
        if wider is None:
            return prepared
        widened = prepared.to(wider)
        if prepared.dtype == torch.uint64 and bool((widened < 0).any()):
            raise ValueError(
                "a torch.uint64 tensor holds values >= 2**63, which are neither pixels nor "
                "class labels an attack can use"
            )
        return widened

    def value_and_grad(
        self, x: Array, y: Array, checks: Checks | None = None
    ) -> tuple[Array, Array, Array]:
        """Losses, ``torch.autograd.grad(losses.sum(), x)`` and the logits."""
        leaf = _tensor(x).detach().requires_grad_(True)
        try:
            logits = _tensor(self.model(leaf))
        except RuntimeError as error:
            if "leaf Variable that requires grad" not in str(error):
                raise
            raise ValueError(
                "the model writes into its input (an in-place operation such as x -= mean or "
                "x.div_(255) while autograd records): the attack needs input gradients, so "
                "write it out of place (x = x - mean)"
            ) from error
        if checks is not None:
            checks.logits(logits, y)
        losses = _tensor(self.loss(logits, y))
        if checks is not None:
            checks.losses(losses, y)
        if not losses.requires_grad:
            raise ValueError(
                "model output does not depend on x through autograd: the model detaches its "
                "input or runs under torch.no_grad; the attack needs input gradients"
            )
        (grad,) = torch.autograd.grad(losses.sum(), leaf, allow_unused=True)
        if grad is None:
            raise ValueError(
                "model output does not depend on x through autograd: the model detaches its "
                "input; the attack needs input gradients"
            )
        return losses.detach(), grad, logits.detach()

    def logits(self, x: Array) -> Array:
        """The model's output, without building a graph."""
        with torch.no_grad():
            return _tensor(self.model(_tensor(x)))


def _tensor(value: object) -> torch.Tensor:
    """``value``, which must be a tensor: the model's output, or an input of this backend."""
    if not isinstance(value, torch.Tensor):
        raise TypeError(f"model must return an array of logits, got {type(value).__name__}")
    return value


def _check_device(model: torch.nn.Module, x: torch.Tensor) -> None:
    tensor = next(chain(model.parameters(), model.buffers()), None)
    if tensor is not None and tensor.device != x.device:
        raise ValueError(
            f"model and x must be on the same device: model is on {tensor.device}, "
            f"x is on {x.device}; move one with .to(device)"
        )


_LOCKS: weakref.WeakKeyDictionary[torch.nn.Module, threading.RLock] = weakref.WeakKeyDictionary()
_LOCKS_GUARD = threading.Lock()


@contextmanager
def _exclusive(model: torch.nn.Module) -> Iterator[None]:
    """Hold ``model`` for one attack call at a time.

    An attack switches the model's mode and restores it, with its buffers, on exit: state of
    the module that two threads must not interleave. Calls on one module from several
    threads therefore run one after another (calls on different modules run in parallel);
    a call made from inside another on the same thread goes ahead.
    """
    with _LOCKS_GUARD:
        lock = _LOCKS.get(model)
        if lock is None:
            lock = _LOCKS[model] = threading.RLock()
    with lock:
        yield


@contextmanager
def open_torch_backend(
    model: object, x: object, loss: LossFunction, model_mode: ModelMode
) -> Iterator[TorchBackend]:
    """Open a `TorchBackend` for one attack call.

    Args:
        model: ``nn.Module`` or any callable mapping a tensor to logits.
        x: The input batch (for the device check).
        loss: Per-sample loss on logits.
        model_mode: ``"eval"`` or ``"train"`` switch an ``nn.Module`` for the call;
            ``"unchanged"`` leaves it as it is.

    Raises:
        TypeError: ``model`` is not callable.
        ValueError: ``model`` and ``x`` are on different devices.
    """
    if not callable(model):
        raise TypeError(f"model must be an nn.Module or a callable on tensors, got {model!r}")
    x = _tensor(x)
    if x.device.type == "meta":
        raise ValueError(
            "x is on the meta device, which holds shapes but no values: "
            "move it to a real device (cpu, cuda) with .to(device)"
        )
    if not isinstance(model, torch.nn.Module):
        with torch.inference_mode(False), torch.enable_grad():
            yield TorchBackend(model, native_loss(loss))
        return

    _check_device(model, x)
    with _exclusive(model), kept_modes(model):
        if model_mode != "unchanged":
            model.train(model_mode == "train")
        training = any(module.training for module in model.modules())
        with (
            kept_values(model.buffers() if training else ()),
            torch.inference_mode(False),
            torch.enable_grad(),
        ):
            yield TorchBackend(model, native_loss(loss))
