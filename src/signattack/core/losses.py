"""Per-sample classification losses on logits, written once against the array API.

Each built-in loss is a [`LogitLoss`][signattack.core.losses.LogitLoss]: its value together with its
closed-form gradient with respect to the logits. The NumPy backend, which has no autograd, uses
both. The PyTorch backend differentiates the margin's value with autograd and runs cross-entropy as
a native autograd function with the same closed-form gradient, so both backends optimise the same
function.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal, TypeAlias

from signattack._typing import Array, device_of, namespace
from signattack.core.validation import check_choice

__all__ = [
    "CROSS_ENTROPY",
    "DLR",
    "MARGIN",
    "TARGETED_DLR",
    "TARGETED_MARGIN",
    "LogitLoss",
    "LossFunction",
    "LossName",
    "cross_entropy",
    "dlr",
    "margin",
    "targeted_dlr",
    "targeted_margin",
]

LossFunction: TypeAlias = Callable[[Array, Array], Array]
"""``loss(logits, labels) -> per-sample losses``: ``(batch, classes)`` to ``(batch,)``."""

LossName: TypeAlias = Literal["ce", "margin", "dlr"]


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
    xp = namespace(labels)
    classes = xp.arange(num_classes, device=device_of(labels))
    return xp.astype(xp.equal(labels[:, None], classes[None, :]), dtype)


def _true_logit(logits: Array, labels: Array) -> Array:
    xp = namespace(logits, labels)
    return xp.take_along_axis(logits, labels[:, None], axis=1)[:, 0]


def cross_entropy(logits: Array, labels: Array) -> Array:
    """Cross-entropy ``-log softmax(z)_y`` per sample, computed stably via log-sum-exp.

    ``CE(z, y) = log(sum_j exp(z_j - m)) + m - z_y`` with ``m = max_j z_j``.
    """
    xp = namespace(logits, labels)
    top = xp.max(logits, axis=1, keepdims=True)
    shifted = logits - top
    return xp.log(xp.sum(xp.exp(shifted), axis=1)) - _true_logit(shifted, labels)


def _cross_entropy_gradient(logits: Array, labels: Array) -> Array:
    """``softmax(z) - onehot(y)``, with the label's entry computed as ``-sum_{j != y} p_j``.

    The textbook ``p_y - 1`` rounds to exactly zero once a sample is classified confidently
    (``p_y`` rounds to 1), which drops the true-class term from the gradient; the sum of the
    other probabilities keeps it to full relative precision.
    """
    xp = namespace(logits, labels)
    exp = xp.exp(logits - xp.max(logits, axis=1, keepdims=True))
    softmax = exp / xp.sum(exp, axis=1, keepdims=True)
    is_label = _one_hot(labels, logits.shape[1], xp.bool)
    others = xp.where(is_label, xp.zeros_like(softmax), softmax)
    return others - xp.astype(is_label, logits.dtype) * xp.sum(others, axis=1, keepdims=True)


def _best_other_class(logits: Array, labels: Array) -> Array:
    xp = namespace(logits, labels)
    is_label = _one_hot(labels, logits.shape[1], xp.bool)
    return xp.argmax(xp.where(is_label, -xp.inf, logits), axis=1)


def margin(logits: Array, labels: Array) -> Array:
    """Carlini-Wagner margin ``max_{j != y} z_j - z_y`` per sample.

    Positive exactly when the sample is misclassified; unbounded, so it keeps a useful
    gradient where cross-entropy saturates.
    """
    xp = namespace(logits, labels)
    other = _best_other_class(logits, labels)
    best_other = xp.take_along_axis(logits, other[:, None], axis=1)[:, 0]
    return best_other - _true_logit(logits, labels)


def _margin_gradient(logits: Array, labels: Array) -> Array:
    """``+1`` at the best other class, ``-1`` at the label (ties go to the first index)."""
    num_classes = logits.shape[1]
    other = _best_other_class(logits, labels)
    return _one_hot(other, num_classes, logits.dtype) - _one_hot(labels, num_classes, logits.dtype)


_DLR_FLOOR = 1e-12
"""Added to the DLR denominator, as in the reference implementation, so that logits with
tied top classes do not divide by zero."""


def _floor(logits: Array) -> float:
    """The DLR floor in ``logits``' dtype: ``1e-12``, or the smallest normal number where
    ``1e-12`` rounds to zero (``float16``), so that tied top classes never give ``0 / 0``."""
    return max(_DLR_FLOOR, float(namespace(logits).finfo(logits.dtype).smallest_normal))


def _ranked(logits: Array, *ranks: int) -> tuple[Array, ...]:
    """Per sample, the index of the ``rank``-th largest logit (``rank = 1`` the largest) for
    each of ``ranks``, from one sort."""
    xp = namespace(logits)
    order = xp.argsort(logits, axis=1, descending=True, stable=True)
    return tuple(order[:, rank - 1] for rank in ranks)


def _at(logits: Array, index: Array) -> Array:
    xp = namespace(logits, index)
    return xp.take_along_axis(logits, index[:, None], axis=1)[:, 0]


def _check_classes(logits: Array, needed: int, name: str) -> None:
    if logits.shape[1] < needed:
        raise ValueError(
            f"the {name} loss needs logits of at least {needed} classes, got {logits.shape[1]}"
        )


def dlr(logits: Array, labels: Array) -> Array:
    """Difference of logits ratio (Croce & Hein, 2020, eq. 6), per sample.

    ``DLR(z, y) = -(z_y - max_{i != y} z_i) / (z_pi1 - z_pi3)`` where ``z_pi1 >= z_pi2 >=
    ...`` are the sorted logits. Positive exactly when the sample is misclassified, like the
    margin, but invariant to shifting and rescaling the logits: it keeps a useful gradient
    where cross-entropy saturates (large logits, "defensive distillation"). Needs at least 3
    classes.
    """
    _check_classes(logits, 3, "dlr")
    first, third = _ranked(logits, 1, 3)
    gap = _at(logits, first) - _at(logits, third) + _floor(logits)
    return margin(logits, labels) / gap


def _dlr_gradient(logits: Array, labels: Array) -> Array:
    """``d DLR / dz = dmargin/dz / gap - margin * dgap/dz / gap**2``, with the one-hot
    derivatives of the margin (``+1`` best other, ``-1`` label) and of the gap (``+1`` at
    ``pi1``, ``-1`` at ``pi3``)."""
    _check_classes(logits, 3, "dlr")
    classes = logits.shape[1]
    first, third = _ranked(logits, 1, 3)
    gap = _at(logits, first) - _at(logits, third) + _floor(logits)
    d_gap = _one_hot(first, classes, logits.dtype) - _one_hot(third, classes, logits.dtype)
    value = margin(logits, labels)
    return (_margin_gradient(logits, labels) - value[:, None] * d_gap / gap[:, None]) / gap[:, None]


def targeted_dlr(logits: Array, labels: Array) -> Array:
    """Targeted DLR (Croce & Hein, 2020, eq. 7): ``-(z_y - z_t) / (z_pi1 - (z_pi3 + z_pi4) / 2)``.

    ``labels`` holds two columns, ``(batch, 2)``: the true class ``y`` and the target ``t``.
    Maximizing it moves the logit of ``t`` above that of ``y``. Needs at least 4 classes.
    """
    _check_classes(logits, 4, "targeted dlr")
    y, t = labels[:, 0], labels[:, 1]
    first, third, fourth = _ranked(logits, 1, 3, 4)
    gap = _at(logits, first) - (_at(logits, third) + _at(logits, fourth)) / 2 + _floor(logits)
    return (_at(logits, t) - _at(logits, y)) / gap


def _targeted_dlr_gradient(logits: Array, labels: Array) -> Array:
    _check_classes(logits, 4, "targeted dlr")
    classes, dtype = logits.shape[1], logits.dtype
    y, t = labels[:, 0], labels[:, 1]
    first, third, fourth = _ranked(logits, 1, 3, 4)
    gap = _at(logits, first) - (_at(logits, third) + _at(logits, fourth)) / 2 + _floor(logits)
    d_gap = (
        _one_hot(first, classes, dtype)
        - (_one_hot(third, classes, dtype) + _one_hot(fourth, classes, dtype)) / 2
    )
    difference = _at(logits, t) - _at(logits, y)
    d_difference = _one_hot(t, classes, dtype) - _one_hot(y, classes, dtype)
    return (d_difference - difference[:, None] * d_gap / gap[:, None]) / gap[:, None]


def targeted_margin(logits: Array, labels: Array) -> Array:
    """``z_t - z_y`` per sample, for ``labels`` of two columns ``(batch, 2)``: the true class
    ``y`` and the target ``t``. Zero on the decision boundary between the two classes,
    positive where ``t`` wins over ``y``: the function whose boundary FAB-T linearizes."""
    y, t = labels[:, 0], labels[:, 1]
    return _at(logits, t) - _at(logits, y)


def _targeted_margin_gradient(logits: Array, labels: Array) -> Array:
    classes, dtype = logits.shape[1], logits.dtype
    return _one_hot(labels[:, 1], classes, dtype) - _one_hot(labels[:, 0], classes, dtype)


CROSS_ENTROPY = LogitLoss("ce", cross_entropy, _cross_entropy_gradient)
"""Cross-entropy, the default loss."""

MARGIN = LogitLoss("margin", margin, _margin_gradient)
"""Carlini-Wagner margin loss."""

DLR = LogitLoss("dlr", dlr, _dlr_gradient)
"""Difference of logits ratio, the loss of APGD-DLR."""

TARGETED_DLR = LogitLoss("targeted-dlr", targeted_dlr, _targeted_dlr_gradient)
"""Targeted DLR, the loss of APGD-T; its labels are ``(batch, 2)``: class and target."""

TARGETED_MARGIN = LogitLoss("targeted-margin", targeted_margin, _targeted_margin_gradient)
"""``z_t - z_y``, the boundary FAB-T follows; its labels are ``(batch, 2)``: class and target."""

BUILTIN_LOSSES: dict[str, LogitLoss] = {"ce": CROSS_ENTROPY, "margin": MARGIN, "dlr": DLR}


def resolve_loss(loss: object) -> LossFunction:
    """The loss function for ``"ce"``, ``"margin"``, a
    [`LogitLoss`][signattack.core.losses.LogitLoss] or a callable.

    Raises:
        ValueError: ``loss`` is an unknown name.
        TypeError: ``loss`` is neither a name nor callable.
    """
    if isinstance(loss, str):
        return BUILTIN_LOSSES[check_choice("loss", loss, BUILTIN_LOSSES)]
    if callable(loss):
        return loss
    raise TypeError(
        f"loss must be 'ce', 'margin', 'dlr' or a callable (logits, labels) -> per-sample "
        "losses, "
        f"got {loss!r}"
    )
