"""The smallest breaking eps of every sample, by bisection: a robustness curve in one run."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from signattack._host import to_numpy
from signattack._typing import Array, device_of, moved, namespace
from signattack.attacks import FGSM, IteratedSign
from signattack.backends.batch import widest_float
from signattack.core.validation import Bounds, check_real, check_steps
from signattack.evaluation.sweep import clean_predictions

__all__ = ["smallest_breaking_eps"]


def smallest_breaking_eps(
    model: object,
    x: Array,
    y: Array,
    attack: IteratedSign | FGSM,
    *,
    eps_max: float,
    iterations: int = 10,
) -> np.ndarray[Any, Any]:
    """Per sample, the smallest eps at which ``attack`` succeeds, by bisection.

    Each iteration attacks the whole batch once, every sample at the middle of its own
    interval (per-sample eps), and halves the interval: after ``iterations`` steps the
    answer is within ``eps_max / 2**iterations``. Samples misclassified without attack get
    0; samples the attack cannot break at ``eps_max`` get ``inf``. The accuracy at eps is
    then the share of samples whose smallest breaking eps exceeds it.

    Args:
        model: As for the attacks.
        x: Inputs ``(batch, ...)``.
        y: Labels ``(batch,)``.
        attack: The attack; its ``eps`` is replaced per sample (an :class:`FGSM` runs as
            its one-step :class:`IteratedSign`).
        eps_max: The largest radius considered.
        iterations: Bisection steps.

    Returns:
        A float64 NumPy array ``(batch,)`` of upper bounds on the smallest breaking eps.
    """
    eps_max = check_real("eps_max", eps_max)
    iterations = check_steps(iterations, "iterations")
    if isinstance(attack, FGSM):
        attack = attack.as_iterated()
    if not isinstance(attack, IteratedSign):
        raise TypeError(
            f"attack must be an IteratedSign or an FGSM (its eps is replaced per sample), "
            f"got {type(attack).__name__}"
        )
    xp = namespace(x)
    y = moved(y, device_of(x))
    clean = to_numpy(clean_predictions(model, x, y, Bounds(*attack.bounds)) == y)
    low = np.zeros(len(clean))
    high = np.full(len(clean), eps_max)

    def breaks(radii: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
        per_sample = xp.asarray(radii, dtype=widest_float(x), device=device_of(x))
        outcome = attack.run(model, x, y, eps=per_sample)  # type: ignore[arg-type]
        return to_numpy(outcome.predictions != y)

    breakable = breaks(high) | ~clean
    for _ in range(iterations):
        middle = (low + high) / 2
        broken = breaks(middle)
        high = np.where(broken, middle, high)
        low = np.where(broken, low, middle)
    result = np.where(breakable, high, math.inf)
    return np.where(clean, result, 0.0)
