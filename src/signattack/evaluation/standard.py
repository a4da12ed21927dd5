"""The worst-case preset: the attacks of a trustworthy L-inf evaluation."""

from __future__ import annotations

from signattack.attacks import APGD, APGDT
from signattack.core.validation import Bounds, check_bounds, check_seed, check_steps

__all__ = ["standard_attacks"]


def standard_attacks(
    steps: int = 100,
    *,
    bounds: Bounds | tuple[float, float] = (0.0, 255.0),
    seed: int = 0,
) -> list[APGD | APGDT]:
    """APGD-CE, then APGD-T with 9 target classes: pass the list to ``evaluate``.

    This is AutoAttack's L-inf "standard" version (Croce & Hein, 2020) without its two
    gradient-free members, FAB-T and Square: the two gradient-based attacks that decide
    almost every sample in the published evaluations. A sample counts as robust only if both
    fail on it. Their radius is set by the evaluation.

    Args:
        steps: Iterations of each run (100 in the paper).
        bounds: The pixel box of the model's inputs.
        seed: Seed of the random starts, for reproducible evaluations.

    Returns:
        ``[APGD(0, steps, loss="ce"), APGDT(0, steps, target_classes=9)]``.
    """
    steps = check_steps(steps)
    box = check_bounds(bounds)
    check_seed(seed)
    return [
        APGD(0.0, steps, loss="ce", bounds=box, seed=seed),
        APGDT(0.0, steps, target_classes=9, bounds=box, seed=seed),
    ]
