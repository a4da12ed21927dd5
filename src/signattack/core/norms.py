"""Norms: the geometry an attack works in, named once.

An attack asks its norm for everything that depends on how a perturbation is measured: the distance
of a perturbation, whether a point lies in the ball (judged in the inputs' own dtype), the
steepest-ascent direction of a gradient, the feasible set of one call (the ball around each sample
intersected with the box) with its projection and its random points, the rounding of integer images
that stays inside the ball, and FAB's projection onto a hyperplane within the box. Every check of a
perturbation in the library (the attacks' results, `evaluate`, its checkpoints and exports,
[`verify`][signattack.evaluation.verify], the report's largest perturbation, the units warning) asks
the norm, so that a new norm is one file (its [`Norm`][signattack.core.norms.Norm]) and one line in
[`norm_of`][signattack.core.norms.norm_of].

Two norms ship: [`LINF`][signattack.core.linf.LINF] (``"linf"``) and [`L2`][signattack.core.l2.L2]
(``"l2"``).
"""

from __future__ import annotations

from typing import Literal, Protocol, TypeAlias, runtime_checkable

from signattack._typing import Amount, Array, device_of, namespace

__all__ = ["Feasible", "Norm", "NormName", "norm_of", "widest_float"]

NormName: TypeAlias = Literal["linf", "l2"]
"""The names the library's norms answer to: ``"linf"`` and ``"l2"``."""


class Feasible(Protocol):
    """The feasible set of one call: the ball of radius ``eps`` around each sample of
    ``x``, intersected with the box. Made once per call by
    [`Norm.feasible`][signattack.core.norms.Norm.feasible]."""

    def project(self, v: Array) -> Array:
        """The point of the set closest to ``v`` in the norm's own geometry (for L-inf the
        element-wise clip, for L2 the Euclidean projection onto ball and box), in ``v``'s dtype,
        inside the set exactly as [`Norm.within`][signattack.core.norms.Norm.within] judges
        it."""
        ...

    def random_point(self, draws: Array) -> Array:
        """A random point of the set per sample, from ``draws``: independent draws in
        ``[-1, 1)`` of ``x``'s shape, one row per sample (from the sample's own stream)."""
        ...


@runtime_checkable
class Norm(Protocol):
    """What an attack asks of its geometry. Implementations are immutable singletons."""

    @property
    def name(self) -> NormName:
        """The norm's name in settings, flags and files: ``"linf"`` or ``"l2"``."""
        ...

    @property
    def title(self) -> str:
        """The name people write: ``"L-inf"``, ``"L2"``."""
        ...

    @property
    def robustbench(self) -> str:
        """The threat model as RobustBench writes it: ``"Linf"``, ``"L2"``."""
        ...

    def distance(self, delta: Array) -> Array:
        """Per sample, the norm of the perturbations ``delta`` (batch first), ``(batch,)``,
        in the library's widest float, so that no dtype overflows or rounds it away."""
        ...

    def within(
        self, x_adv: Array, x: Array, eps: float, bounds: tuple[float, float] | None = None
    ) -> Array:
        """Per sample, whether ``x_adv`` lies in the eps-ball around ``x`` (and in the box
        ``bounds``), judged as the norm's projection guarantees it: every point an attack
        returns passes in every dtype. ``(batch,)`` booleans on ``x``'s device."""
        ...

    def feasible(self, x: Array, eps: Amount, lower: float, upper: float) -> Feasible:
        """The feasible set of one call around ``x`` (inside the box), radius ``eps``
        (a number, or an array that broadcasts over a sample: per-sample radii)."""
        ...

    def direction(self, grad: Array, dtype: object) -> Array:
        """The steepest-ascent direction of unit norm for the gradient ``grad``, as
        ``dtype``: ``sign(grad)`` for L-inf, ``grad / ||grad||_2`` for L2; zero where the
        gradient is zero or NaN (a NaN never spreads into the iterate)."""
        ...

    def integer_radius(self, eps: Amount) -> Amount:
        """The radius an integer perturbation is held to: ``floor(eps)`` for L-inf (exact
        in any float dtype), ``eps`` for L2."""
        ...

    def round_step(self, step: Array, radius: Amount) -> Array:
        """An integer-valued perturbation from the real one ``step`` (inside the ball of
        ``radius``), itself inside the ball: nearest integers where that stays inside,
        moved towards zero where it would not. Same dtype as ``step``."""
        ...


def norm_of(norm: Norm | str) -> Norm:
    """The [`Norm`][signattack.core.norms.Norm] for a name (``"linf"``, ``"l2"``; ``"Linf"``,
    ``"L2"``, ``"inf"`` are accepted) or a norm itself.

    Raises:
        TypeError: ``norm`` is neither a string nor a [`Norm`][signattack.core.norms.Norm].
        ValueError: An unknown name.
    """
    from signattack.core.l2 import L2  # the norms import this protocol
    from signattack.core.linf import LINF

    norms: dict[str, Norm] = {"linf": LINF, "l2": L2}
    if isinstance(norm, str):
        key = norm.strip().lower().replace("-", "").replace("_", "")
        key = {"inf": "linf", "linfinity": "linf", "2": "l2"}.get(key, key)
        if key in norms:
            return norms[key]
        raise ValueError(f"norm must be one of 'linf', 'l2', got {norm!r}")
    if isinstance(norm, Norm):
        return norm
    raise TypeError(f"norm must be 'linf', 'l2' or a Norm, got {type(norm).__name__} {norm!r}")


def widest_float(like: Array) -> object:
    """The widest real floating dtype of ``like``'s library on its device: ``float64``, or
    ``float32`` where that is the widest (JAX without 64-bit mode). Not the library's default
    (torch's is ``float32``, which would round float64 inputs' distances)."""
    xp = namespace(like)
    info = xp.__array_namespace_info__()
    found = info.dtypes(device=device_of(like), kind="real floating")
    return found.get("float64", found["float32"])
