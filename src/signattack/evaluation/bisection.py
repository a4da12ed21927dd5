"""The smallest breaking eps of every sample, by bisection: a robustness curve in one run."""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt

from signattack._host import to_flags
from signattack._typing import ArrayT, Model, as_model, device_of, is_array, namespace
from signattack.attacks import PerSampleAttack
from signattack.backends.batch import widest_float
from signattack.core.validation import box_diameter, check_real, check_steps
from signattack.evaluation._judging import clean_predictions, moves_of
from signattack.evaluation._specs import shared_norm
from signattack.evaluation.standard import threat_of, traits_of

__all__ = ["smallest_breaking_eps"]


def smallest_breaking_eps(
    model: Model[ArrayT],
    x: ArrayT,
    y: ArrayT,
    attack: PerSampleAttack,
    *,
    eps_max: float,
    iterations: int = 10,
) -> npt.NDArray[np.float64]:
    """Per sample, the smallest eps at which ``attack`` succeeds, by bisection.

    Each iteration attacks the whole batch once, every sample at the middle of its own interval
    (per-sample eps), and halves the interval: after ``iterations`` steps the answer is within
    ``eps_max / 2**iterations``. The radii are those of the attack's norm (L-inf for the sign
    attacks, L2 for an L2 attack). The search starts from ``eps_max`` or, where it is smaller,
    the box's diameter in that norm: a larger ball holds no other point of the box. Samples
    misclassified without attack get 0; samples the attack cannot break there get ``inf``.
    The accuracy at eps is then the share of samples whose smallest breaking eps exceeds it.

    Args:
        model: As for the attacks.
        x: Inputs ``(batch, ...)``.
        y: Labels ``(batch,)``.
        attack: The attack; its ``eps`` is replaced per sample (an [`FGSM`][signattack.FGSM] runs as
            its one-step [`IteratedSign`][signattack.IteratedSign]).
        eps_max: The largest radius considered.
        iterations: Bisection steps.

    Returns:
        A float64 NumPy array ``(batch,)`` of upper bounds on the smallest breaking eps.
    """
    eps_max = check_real("eps_max", eps_max)
    iterations = check_steps(iterations, "iterations")
    if not is_array(x) or not is_array(y):
        raise TypeError(f"x and y must be arrays, got {type(x).__name__} and {type(y).__name__}")
    if not isinstance(attack, PerSampleAttack):
        raise TypeError(
            "attack must be an IteratedSign or an FGSM, or another attack that gives every "
            f"sample its own radius (run_per_sample), got {type(attack).__name__}"
        )
    xp, where = namespace(x), device_of(x)
    wide = widest_float(x)
    largest = float(xp.finfo(wide).max)
    if eps_max > largest:
        raise ValueError(
            f"eps_max must be a radius that x's library can hold in {wide} (at most "
            f"{largest:g}), got {eps_max!r}"
        )
    # One decision rule, the attack's: the mean logits of its passes, clean and attacked;
    # a point that is the clean input is the clean pass's to judge.
    draws, norm, threat = traits_of(attack).eot, shared_norm([attack]), threat_of([attack])
    predictions, labels = clean_predictions(model, x, y, threat, draws=draws)
    clean = to_flags(predictions == labels)
    runnable = as_model(model)  # a backend has accepted it
    if threat is not None:
        eps_max = min(eps_max, box_diameter(threat.box, norm, math.prod(x.shape[1:])))
    low, high = [0.0] * len(clean), [eps_max] * len(clean)

    def breaks(radii: list[float]) -> list[bool]:
        per_sample = xp.asarray(radii, dtype=wide, device=where)
        outcome = attack.run_per_sample(runnable, x, labels, per_sample)
        moves = moves_of(outcome.x_adv, x, norm)
        wrong = to_flags(outcome.predictions != labels)
        return [bad and move > 0 for bad, move in zip(wrong, moves, strict=True)]

    breakable = [broken or not correct for broken, correct in zip(breaks(high), clean, strict=True)]
    for _ in range(iterations):
        middle = [(a + b) / 2 for a, b in zip(low, high, strict=True)]
        for index, broken in enumerate(breaks(middle)):
            if broken:
                high[index] = middle[index]
            else:
                low[index] = middle[index]
    smallest = [
        (upper if can_break else math.inf) if correct else 0.0
        for upper, can_break, correct in zip(high, breakable, clean, strict=True)
    ]
    return np.asarray(smallest, dtype=np.float64)
