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

import math
from typing import Literal, Protocol, TypeAlias, runtime_checkable

from signattack._typing import Amount, Array, device_of, is_array, namespace

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
        self, x_adv: Array, x: Array, eps: Amount, bounds: tuple[float, float] | None = None
    ) -> Array:
        """Per sample, whether ``x_adv`` lies in the eps-ball around ``x`` (and in the box
        ``bounds``), judged as the norm's projection guarantees it: every point an attack
        returns passes in every dtype. ``eps`` is a number ``>= 0`` or one per sample, shape
        ``(batch,)`` (`check_radii`). ``(batch,)``
        booleans on ``x``'s device."""
        ...

    def feasible(self, x: Array, eps: Amount, lower: float, upper: float) -> Feasible:
        """The feasible set of one call around ``x`` (inside the box), radius ``eps``
        (a number, or an array of one per sample, shape ``(batch,)`` or ``(batch, 1, ...)``:
        `shaped_radius`)."""
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


def check_batched(array: Array, name: str) -> None:
    """Refuse an array with no batch axis (every norm measures ``(batch, ...)`` arrays).

    Raises:
        ValueError: ``array`` is 0-dimensional; the message names ``name``.
    """
    if array.ndim == 0:
        raise ValueError(f"{name} must have a batch axis, shape (batch, ...), got a 0-d array")


def check_pair(x_adv: Array, x: Array) -> None:
    """Refuse points that are not one per input: ``x`` needs a batch axis, ``x_adv`` its shape.

    Raises:
        ValueError: The message names the argument, the shape expected and the one given.
    """
    check_batched(x, "x")
    if tuple(x_adv.shape) != tuple(x.shape):
        raise ValueError(
            f"x_adv must have x's shape {tuple(x.shape)}, got shape {tuple(x_adv.shape)}"
        )


def _checked_number(eps: object) -> float:
    """``eps`` as a radius: a real number ``>= 0`` (``inf`` allowed), never NaN."""
    if isinstance(eps, bool) or not isinstance(eps, (int, float)):
        raise TypeError(
            f"eps must be a number or an array of one per sample, got {type(eps).__name__} "
            f"{str(eps)[:40]!r}"
        )
    value = float(eps)
    if not value >= 0.0:
        raise ValueError(f"eps must be >= 0 (inf allowed), got {value!r}")
    return value


def _wrong_shape(eps: Array, shapes: str) -> ValueError:
    return ValueError(
        f"eps must be a number or one per sample, {shapes}, got shape {tuple(eps.shape)}"
    )


def check_radii(eps: Amount, batch: int) -> list[float]:
    """Per sample of a batch of ``batch``, the radius ``eps`` gives a check
    ([`Norm.within`][signattack.core.norms.Norm.within]): ``eps`` is a number ``>= 0`` for every
    sample (``inf`` admits any point) or an array of one per sample, shape ``(batch,)``. The
    one check of every norm's radius.

    Raises:
        TypeError: ``eps`` is neither a real number nor an array.
        ValueError: ``eps`` is negative or NaN, or an array of another shape.
    """
    if not is_array(eps):
        return [_checked_number(eps)] * batch
    if eps.ndim != 0 and tuple(eps.shape) != (batch,):
        raise _wrong_shape(eps, f"shape ({batch},)")
    from signattack._host import to_values

    values = [_checked_number(value) for value in to_values(eps)]
    return values * batch if eps.ndim == 0 else values


def check_ends(lower: float, upper: float) -> None:
    """The ends of a feasible set's box: ``lower <= upper``, neither NaN (checked where they
    are numbers; a compiled attack's traced ends were checked where the attack began).

    Raises:
        ValueError: They are not.
    """
    numbers = all(isinstance(end, (int, float)) for end in (lower, upper))
    if numbers and not lower <= upper:
        raise ValueError(f"the box must have lower <= upper, got lower={lower!r}, upper={upper!r}")


def shaped_radius(eps: Amount, x: Array) -> Amount:
    """``eps`` as a feasible set takes it: a number ``>= 0`` (checked), or an array of one
    radius per sample of ``x``, shape ``(batch,)`` or ``(batch, 1, ...)``, returned shaped to
    broadcast over a sample, ``(batch, 1, ..., 1)``. An array's values are not read (that
    would wait for the device): the attacks check them at their boundary.

    Raises:
        TypeError: ``eps`` is neither a real number nor an array.
        ValueError: A negative or NaN number, or an array of another shape.
    """
    if not is_array(eps):
        return _checked_number(eps)
    if eps.ndim == 0:
        return eps
    batch = x.shape[0] if x.ndim else 0
    shape = tuple(eps.shape)
    if shape[:1] != (batch,) or any(side != 1 for side in shape[1:]) or eps.ndim > max(x.ndim, 1):
        raise _wrong_shape(eps, f"shape ({batch},) or ({batch}, 1, ...)")
    per_sample = (batch,) + (1,) * (x.ndim - 1)
    return eps if shape == per_sample else namespace(eps).reshape(eps, per_sample)


def integer_pairs(x_adv: Array, x: Array) -> tuple[Array, Array, int]:
    """Per element of integer images, the larger and the smaller of ``x_adv`` and ``x``,
    ``(batch, elements)`` in the widest integer dtype, and that dtype's largest value."""
    xp = namespace(x_adv, x)
    wide = xp.__array_namespace_info__().default_dtypes(device=device_of(x))["indexing"]
    rows = (x.shape[0], math.prod(x.shape[1:]))
    values = xp.reshape(xp.astype(x_adv, wide), rows)
    clean = xp.reshape(xp.astype(x, wide), rows)
    return xp.maximum(values, clean), xp.minimum(values, clean), int(xp.iinfo(wide).max)


def beyond(larger: Array, smaller: Array, radius: Array, top: int) -> Array:
    """``larger - smaller > radius`` element-wise, decided without computing a difference
    that could wrap: ``smaller + min(radius, top - max(smaller, 0))`` never leaves the dtype,
    and where ``radius`` is cut there ``larger <= top`` is inside. ``radius`` in ``[0, top]``,
    shaped to broadcast."""
    xp = namespace(larger, smaller)
    room = top - xp.maximum(smaller, xp.zeros_like(smaller))
    return larger > smaller + xp.minimum(radius, room)
