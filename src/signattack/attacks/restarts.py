"""Runs on the samples still robust, and the best result of each sample over the runs.

APGD's restarts, APGD-T's target classes and Square's restarts each attack only the samples that no
earlier run has fooled; `Runs` keeps, per sample, the point of the run that fooled the model or,
failing that, reached the highest objective, and `chosen_result` hands the chosen points back as the
caller's [`AttackResult`][signattack.AttackResult].
"""

from __future__ import annotations

import dataclasses
import math
from contextlib import AbstractContextManager
from dataclasses import dataclass

from signattack._progress import step_label
from signattack._typing import Array, ArrayT, device_of, namespace, returned
from signattack.attacks.base import AttackResult, attack_result
from signattack.attacks.loop import spread
from signattack.backends.batch import Batch
from signattack.backends.registry import padded_count
from signattack.core.kernels import take_samples

__all__: list[str] = []  # internal: nothing here is public API


def _batch_shape(like: Array) -> tuple[int, ...]:
    return (-1,) + (1,) * (len(like.shape) - 1)


@dataclass(frozen=True)
class Runs:
    """Per sample, the best result of the runs so far over the whole batch.

    Attributes:
        x: The chosen point (floating).
        trace: The loss trace of the run the point came from, ``(steps + 1, batch)``.
        fooled: Whether the model was fooled.
        best: The highest objective the chosen run reached.
    """

    x: Array
    trace: Array
    fooled: Array
    best: Array

    @classmethod
    def clean(cls, batch: Batch, losses: Array, fooled: Array, steps: int) -> Runs:
        """Before any run: the clean point, fooled where the model already errs."""
        xp = namespace(batch.x)
        trace = xp.broadcast_to(losses[None, :], (steps + 1, losses.shape[0]))
        lowest = xp.full(losses.shape, -math.inf, dtype=losses.dtype, device=device_of(losses))
        return cls(batch.x, xp.asarray(trace, copy=True), fooled, lowest)

    def fold(self, mask: Array, x: Array, trace: Array, fooled: Array, best: Array) -> Runs:
        """Take one run on the samples where ``mask`` holds: a sample takes its result where
        the run fooled the model, or, neither fooling it, reached a higher objective."""
        xp = namespace(x)
        index = xp.nonzero(mask)[0]
        was_fooled, was_best = take_samples(self.fooled, index), take_samples(self.best, index)
        take = xp.logical_and(xp.logical_not(was_fooled), xp.logical_or(fooled, best > was_best))
        chosen_x = xp.where(xp.reshape(take, _batch_shape(x)), x, take_samples(self.x, index))
        chosen_trace = xp.where(take[None, :], trace, xp.take(self.trace, index, axis=1))
        return Runs(
            spread(mask, chosen_x, self.x),
            spread(mask, chosen_trace, self.trace, axis=1),
            spread(mask, xp.logical_or(was_fooled, fooled), self.fooled),
            spread(mask, xp.where(take, best, was_best), self.best),
        )


def sub_batch(batch: Batch, index: Array) -> Batch:
    return dataclasses.replace(
        batch,
        x=take_samples(batch.x, index),
        labels=take_samples(batch.labels, index),
        original=take_samples(batch.original, index),
    )


def still_robust(batch: Batch, runs: Runs) -> tuple[Array, Array, int]:
    """The samples no run has fooled: their mask over the batch, their indices (padded with
    copies of the first for a backend that compiles per shape: see
    [`padded_count`][signattack.backends.padded_count]) and how many there are; the caller keeps the
    results of the first ``count`` only."""
    xp = namespace(batch.x)
    todo = xp.logical_not(runs.fooled)
    index = xp.nonzero(todo)[0]
    count = int(index.shape[0])
    padding = padded_count(batch.x, count) - count
    if padding:
        index = xp.concat([index, xp.broadcast_to(index[:1], (padding,))])
    return todo, index, count


def target_labels(
    batch: Batch, logits: Array, count: int, least: int, attack: str
) -> tuple[Array, list[Array]]:
    """The clean predictions, and per target class of rank 2, 3, ... of the clean logits
    (``count`` of them, at most the classes less one) the labels ``(batch, 2)`` of a
    targeted loss: the class and the target. APGD-T's and FAB-T's bookkeeping.

    Raises:
        ValueError: The model has fewer than ``least`` classes.
    """
    classes = logits.shape[1]
    if classes < least:
        raise ValueError(f"{attack} needs a model of at least {least} classes, got {classes}")
    xp = namespace(logits)
    ranking = xp.argsort(logits, axis=1, descending=True, stable=True)
    ranks = range(1, min(count, classes - 1) + 1)
    return ranking[:, 0], [xp.stack([batch.labels, ranking[:, rank]], axis=1) for rank in ranks]


def run_bar(
    attack: str,
    *,
    target: tuple[int, int] | None = None,
    restart: tuple[int, int] = (1, 1),
    unit: str = "steps",
) -> AbstractContextManager[None]:
    """Names the bar of one run's steps, where a bar is shown (`signattack._progress.steps`):
    the attack, the target ``(k, n)`` as "target k of n" where it attacks one class after
    another, the restart ``(k, n)`` where there are several, and what it counts:
    ``FAB-T target 2 of 9``, ``APGD-T target 1 of 9, restart 2 of 3``, ``Square queries``."""
    label = attack if unit == "steps" else f"{attack} {unit}"
    if target is not None:
        label += f" target {target[0]} of {target[1]}"
    if restart[1] > 1:
        label += f", restart {restart[0]} of {restart[1]}"
    return step_label(label, unit)


def chosen_result(
    batch: Batch, runs: Runs, eps: float, targeted: bool, caller: ArrayT
) -> AttackResult[ArrayT]:
    """The chosen points in the caller's dtype, evaluated once more as the caller gets them,
    with the sample-passes ``batch`` counted (this evaluation included)."""
    radius = batch.radius(eps)
    xp = namespace(batch.x)
    predictions = xp.argmax(batch.logits(batch.rounded(radius)(runs.x)), axis=1)
    success = (xp.equal if targeted else xp.not_equal)(predictions, batch.labels)
    return attack_result(
        batch.passes,
        returned(batch.to_input(runs.x, radius), caller),
        returned(runs.trace, caller),
        returned(predictions, caller),
        returned(success, caller),
    )
