"""Per-sample classification losses on logits, written once against the array API.

Each built-in loss is a :class:`LogitLoss`: its value together with its closed-form gradient
with respect to the logits. The NumPy backend, which has no autograd, uses both. The
PyTorch backend differentiates the margin's value with autograd and runs cross-entropy as a
native autograd function with the same closed-form gradient, so both backends optimise the
same function.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal, TypeAlias

from array_api_compat import array_namespace, device

from signattack._typing import Array
from signattack.core.validation import check_choice

__all__ = [
    "CROSS_ENTROPY",
    "MARGIN",
    "LogitLoss",
    "LossFunction",
    "LossName",
    "cross_entropy",
    "margin",
    "resolve_loss",
]

LossFunction: TypeAlias = Callable[[Array, Array], Array]
"""``loss(logits, labels) -> per-sample losses``: ``(batch, classes)`` to ``(batch,)``."""

LossName: TypeAlias = Literal["ce", "margin"]


@dataclass(frozen=True)
class LogitLoss:
    """A per-sample loss on logits, optionally with its closed-form logit gradient.

    Attributes:
        name: Short name, shown in reprs and reports.
        value: ``value(logits, labels)``, per-sample losses of shape ``(batch,)``.
        logit_gradient: ``logit_gradient(logits, labels)``, the gradient of
            ``sum(value(logits, labels))`` with respect to ``logits``, shape
            ``(batch, classes)``; ``None`` where only autograd can differentiate it.
    """

    name: str
    value: LossFunction
    logit_gradient: LossFunction | None = None

    def __call__(self, logits: Array, labels: Array) -> Array:
        """Per-sample losses, shape ``(batch,)``."""
        return self.value(logits, labels)


def _one_hot(labels: Array, num_classes: int, dtype: object) -> Array:
    xp = array_namespace(labels)
    classes = xp.arange(num_classes, device=device(labels))
    return xp.astype(labels[:, None] == classes[None, :], dtype)


def _true_logit(logits: Array, labels: Array) -> Array:
    xp = array_namespace(logits, labels)
    return xp.take_along_axis(logits, labels[:, None], axis=1)[:, 0]


def cross_entropy(logits: Array, labels: Array) -> Array:
    """Cross-entropy ``-log softmax(z)_y`` per sample, computed stably via log-sum-exp.

    ``CE(z, y) = log(sum_j exp(z_j - m)) + m - z_y`` with ``m = max_j z_j``.
    """
    xp = array_namespace(logits, labels)
    top = xp.max(logits, axis=1, keepdims=True)
    shifted = logits - top
    return xp.log(xp.sum(xp.exp(shifted), axis=1)) - _true_logit(shifted, labels)


def _cross_entropy_gradient(logits: Array, labels: Array) -> Array:
    """``softmax(z) - onehot(y)``, with the label's entry computed as ``-sum_{j != y} p_j``.

    The textbook ``p_y - 1`` rounds to exactly zero once a sample is classified confidently
    (``p_y`` rounds to 1), which drops the true-class term from the gradient; the sum of the
    other probabilities keeps it to full relative precision.
    """
    xp = array_namespace(logits, labels)
    exp = xp.exp(logits - xp.max(logits, axis=1, keepdims=True))
    softmax = exp / xp.sum(exp, axis=1, keepdims=True)
    is_label = _one_hot(labels, logits.shape[1], xp.bool)
    others = xp.where(is_label, xp.zeros_like(softmax), softmax)
    return others - xp.astype(is_label, logits.dtype) * xp.sum(others, axis=1, keepdims=True)


def _best_other_class(logits: Array, labels: Array) -> Array:
    xp = array_namespace(logits, labels)
    is_label = _one_hot(labels, logits.shape[1], xp.bool)
    return xp.argmax(xp.where(is_label, -xp.inf, logits), axis=1)


def margin(logits: Array, labels: Array) -> Array:
    """Carlini-Wagner margin ``max_{j != y} z_j - z_y`` per sample.

    Positive exactly when the sample is misclassified; unbounded, so it keeps a useful
    gradient where cross-entropy saturates.
    """
    xp = array_namespace(logits, labels)
    other = _best_other_class(logits, labels)
    best_other = xp.take_along_axis(logits, other[:, None], axis=1)[:, 0]
    return best_other - _true_logit(logits, labels)


def _margin_gradient(logits: Array, labels: Array) -> Array:
    """``+1`` at the best other class, ``-1`` at the label (ties go to the first index)."""
    num_classes = logits.shape[1]
    other = _best_other_class(logits, labels)
    return _one_hot(other, num_classes, logits.dtype) - _one_hot(labels, num_classes, logits.dtype)


CROSS_ENTROPY = LogitLoss("ce", cross_entropy, _cross_entropy_gradient)
"""Cross-entropy, the default loss."""

MARGIN = LogitLoss("margin", margin, _margin_gradient)
"""Carlini-Wagner margin loss."""

BUILTIN_LOSSES: dict[str, LogitLoss] = {"ce": CROSS_ENTROPY, "margin": MARGIN}


def resolve_loss(loss: object) -> LossFunction:
    """The loss function for ``"ce"``, ``"margin"``, a :class:`LogitLoss` or a callable.

    Raises:
        ValueError: ``loss`` is an unknown name.
        TypeError: ``loss`` is neither a name nor callable.
    """
    if isinstance(loss, str):
        return BUILTIN_LOSSES[check_choice("loss", loss, BUILTIN_LOSSES)]
    if callable(loss):
        return loss
    raise TypeError(
        f"loss must be 'ce', 'margin' or a callable (logits, labels) -> per-sample losses, "
        f"got {loss!r}"
    )
