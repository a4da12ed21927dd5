"""Validation at the boundary: parameters at construction, batches at call time.

Every check raises a ``ValueError`` or ``TypeError`` that names the argument, what was
expected and what came. Nothing here mutates its input. After these checks the kernels
trust their input.
"""

from __future__ import annotations

import math
import numbers
import sys
import warnings
from collections.abc import Collection
from types import FrameType
from typing import NamedTuple, TypeGuard, TypeVar

import numpy as np

from signattack._host import to_values
from signattack._typing import Array, Namespace, is_array, namespace
from signattack.core.linf import LINF
from signattack.core.norms import Norm

__all__ = ["Bounds", "UnitsWarning"]

_Choice = TypeVar("_Choice", bound=str)


class UnitsWarning(UserWarning):
    """Inputs, bounds and eps that look like they are in different units.

    The usual case: images scaled to ``[0, 1]`` attacked with the pixel-unit defaults
    ``bounds=(0, 255)`` and ``eps=8``. Silence it, once you are sure, with
    ``warnings.filterwarnings("ignore", category=signattack.UnitsWarning)``.
    """


class Bounds(NamedTuple):
    """The pixel box ``[lower, upper]`` that inputs live in, in the model's input units."""

    lower: float
    upper: float


_BOOLS: tuple[type, ...] = (bool, np.bool_)


def _is_real_number(value: object) -> TypeGuard[numbers.Real]:
    """Python and NumPy real scalars (``numbers.Real``), but not ``bool``."""
    return isinstance(value, numbers.Real) and not isinstance(value, _BOOLS)


def check_real(name: str, value: object, *, minimum: float = 0.0) -> float:
    """Return ``value`` as a ``float`` if it is a finite real number ``>= minimum``."""
    if not _is_real_number(value):
        raise TypeError(f"{name} must be a real number, got {type(value).__name__} {value!r}")
    number = float(value)
    if math.isnan(number) or math.isinf(number):
        raise ValueError(f"{name} must be a finite number >= {minimum:g}, got {value!r}")
    if number < minimum:
        raise ValueError(f"{name} must be >= {minimum:g}, got {value!r}")
    return number


def check_steps(steps: object, name: str = "steps") -> int:
    """Return ``steps`` as an ``int`` if it is an integer (Python or NumPy) ``>= 1``."""
    if not isinstance(steps, numbers.Integral) or isinstance(steps, _BOOLS):
        raise TypeError(f"{name} must be an int, got {type(steps).__name__} {steps!r}")
    if steps < 1:
        raise ValueError(f"{name} must be >= 1, got {steps!r}")
    return int(steps)


def check_seed(seed: object) -> int | None:
    """Return ``seed`` if it is ``None`` or an integer ``>= 0`` (what NumPy accepts)."""
    if seed is None:
        return None
    if not isinstance(seed, int) or isinstance(seed, bool):
        raise TypeError(f"seed must be an int >= 0 or None, got {type(seed).__name__} {seed!r}")
    if seed < 0:
        raise ValueError(f"seed must be an int >= 0 or None, got {seed!r}")
    return seed


def check_rng(rng: object) -> None:
    """Check that ``rng`` is ``None``, a ``numpy.random.Generator`` or a ``jax.random`` key."""
    if rng is None or isinstance(rng, np.random.Generator) or _is_jax_key(rng):
        return
    raise TypeError(
        f"rng must be a numpy.random.Generator, a jax.random key or None, got {type(rng).__name__}"
    )


def generator(rng: object, seed: int | None) -> np.random.Generator:
    """The generator of an attack's random draws: ``rng`` itself, one seeded by the bits of
    a ``jax.random`` key (the same key, the same draws), or one seeded with ``seed`` (fresh
    entropy when ``None``). No global random state is read or changed.

    Raises:
        TypeError: As `check_rng`.
    """
    check_rng(rng)
    if isinstance(rng, np.random.Generator):
        return rng
    if rng is not None:
        return np.random.default_rng(_key_bits(rng))
    return np.random.default_rng(seed)


def _is_jax_key(value: object) -> bool:
    """A typed ``jax.random.key`` or a raw ``jax.random.PRNGKey`` (``uint32`` words)."""
    if not type(value).__module__.startswith("jax"):
        return False
    import jax  # loaded: value is one of its objects

    if not isinstance(value, jax.Array):
        return False
    dtype = str(value.dtype)
    return "key" in dtype or (dtype == "uint32" and value.ndim == 1)


def _key_bits(key: object) -> list[int]:
    """The words of a JAX key (``key`` passed `_is_jax_key`)."""
    import jax

    if isinstance(key, jax.Array) and "key" in str(key.dtype):
        key = jax.random.key_data(key)
    return [int(word) for word in to_values(key)]


def check_bounds(bounds: object) -> Bounds:
    """Return ``bounds`` as [`Bounds`][signattack.core.validation.Bounds] if it is a pair of finite
    numbers ``lo < hi``."""
    if is_array(bounds) and bounds.shape == (2,):
        bounds = tuple(to_values(bounds))
    if not isinstance(bounds, (tuple, list)) or len(bounds) != 2:
        raise TypeError(f"bounds must be a pair (lower, upper), got {bounds!r}")
    lower = check_real("bounds[0]", bounds[0], minimum=-math.inf)
    upper = check_real("bounds[1]", bounds[1], minimum=-math.inf)
    if not lower < upper:
        raise ValueError(f"bounds must satisfy lower < upper, got {bounds!r}")
    return Bounds(lower, upper)


def check_choice(name: str, value: _Choice, choices: Collection[str]) -> _Choice:
    """Return ``value`` if it is one of ``choices``."""
    if value not in choices:
        raise ValueError(check_choice_message(name, value, choices))
    return value


def check_choice_message(name: str, value: object, choices: Collection[str]) -> str:
    """The message of `check_choice`'s error."""
    expected = ", ".join(repr(choice) for choice in sorted(choices))
    return f"{name} must be one of {expected}, got {value!r}"


def _round_off(dtype: object, bounds: Bounds, xp: Namespace) -> float:
    """How far outside the box a floating input may lie and still count as inside."""
    scale = max(abs(bounds.lower), abs(bounds.upper), 1.0)
    return 16 * float(xp.finfo(dtype).eps) * scale


def check_batch(x: Array, y: Array, bounds: Bounds) -> tuple[float, float]:
    """Check a batch of inputs and labels before an attack touches them.

    Args:
        x: Inputs of shape ``(batch, ...)``, real floating or integer dtype, every element
            finite and inside ``bounds`` (floating inputs up to round-off).
        y: Integer labels of shape ``(batch,)``, ``>= 0``, of the same array library as ``x``.
        bounds: The pixel box.

    Returns:
        The smallest and the largest value of ``x``.

    Raises:
        TypeError: ``x`` or ``y`` is not an array, or of the wrong dtype or library.
        ValueError: Shapes do not match, or values are non-finite, negative labels, or
            outside the box.
    """
    if not is_array(x):
        raise TypeError(
            f"x must be an array (numpy.ndarray or torch.Tensor), got {type(x).__name__}"
        )
    if not is_array(y):
        raise TypeError(f"y must be an array of labels like x, got {type(y).__name__}")
    xp = namespace(x)
    if namespace(y) is not xp:
        raise TypeError(
            f"y must come from the same array library as x ({type(x).__name__}), "
            f"got {type(y).__name__}"
        )
    floating = xp.isdtype(x.dtype, "real floating")
    if not (floating or xp.isdtype(x.dtype, "integral")):
        raise TypeError(f"x must have a real floating or integer dtype, got {x.dtype}")
    if x.ndim < 2 or x.shape[0] < 1:
        raise ValueError(
            f"x must be a non-empty batch of shape (batch, ...) with ndim >= 2, "
            f"got shape {tuple(x.shape)}"
        )
    if not xp.isdtype(y.dtype, "integral"):
        raise TypeError(f"y must hold integer class labels, got dtype {y.dtype}")
    if tuple(y.shape) != (x.shape[0],):
        raise ValueError(
            f"y must have shape (batch,) = ({x.shape[0]},) to match x, got {tuple(y.shape)}"
        )
    if floating and not bool(xp.all(xp.isfinite(x))):
        raise ValueError("x must be finite, got NaN or Inf entries")
    tolerance = _round_off(x.dtype, bounds, xp) if floating else 0.0
    smallest, largest = float(xp.min(x)), float(xp.max(x))
    if smallest < bounds.lower - tolerance or largest > bounds.upper + tolerance:
        raise ValueError(
            f"x must lie inside bounds [{bounds.lower:g}, {bounds.upper:g}], got values in "
            f"[{smallest:g}, {largest:g}]; pass bounds=(lower, upper) in the model's input units"
        )
    if int(xp.min(y)) < 0:
        raise ValueError(f"y must hold class labels >= 0, got {int(xp.min(y))}")
    return smallest, largest


def _caller_level() -> int:
    """The ``stacklevel`` that points a warning at the first frame outside signattack."""
    frame: FrameType | None = sys._getframe(1)
    level = 1
    while frame is not None and frame.f_globals.get("__name__", "").startswith(
        ("signattack.", "contextlib")
    ):
        frame, level = frame.f_back, level + 1
    return level


def warn_units(
    x_range: tuple[float, float],
    floating: bool,
    bounds: Bounds,
    eps: float | None = None,
    *,
    norm: Norm = LINF,
    size: int = 1,
) -> None:
    """Warn with a [`UnitsWarning`][signattack.core.validation.UnitsWarning] when inputs, box and
    eps seem to disagree on units.

    Two signs of a units mistake: floating inputs that all lie in ``[0, 1]`` while the box is at
    least ten times wider (images scaled to ``[0, 1]``, pixel-unit bounds), and an eps larger than
    the whole box measured in ``norm`` (nothing is left to constrain the attack: see
    `warn_wide_eps`).

    Args:
        x_range: The smallest and the largest input value.
        floating: Whether the inputs have a floating dtype.
        bounds: The pixel box.
        eps: The largest radius of the call, if there is one.
        norm: The norm the radius is measured in.
        size: The number of values in one sample (its pixels times its channels).
    """
    smallest, largest = x_range
    scaled = floating and smallest >= 0.0 and 0.0 < largest <= 1.0 and is_pixel_box(bounds)
    if scaled:
        warnings.warn(
            f"x lies in [0, 1] but bounds are [{bounds.lower:g}, {bounds.upper:g}]: images "
            f"scaled to [0, 1] need bounds=(0, 1) and eps in the same units ({_example(norm)}); "
            "if the box is meant, silence this with warnings.filterwarnings("
            '"ignore", category=signattack.UnitsWarning)',
            UnitsWarning,
            stacklevel=_caller_level(),
        )
    if eps is not None:
        warn_wide_eps(eps, bounds, norm=norm, size=size)


PIXEL_BOX_WIDTH = 10.0
"""The width from which a box is taken for pixel units (``[0, 255]``), not ``[0, 1]`` ones."""


def is_pixel_box(bounds: Bounds) -> bool:
    """Whether ``bounds`` looks like a box in pixel units: at least `PIXEL_BOX_WIDTH` wide."""
    return bounds.upper - bounds.lower >= PIXEL_BOX_WIDTH


def _example(norm: Norm) -> str:
    """A radius in ``[0, 1]`` units, as people write it for ``norm``."""
    if norm.name == "linf":
        return "eps=8/255 for 8 pixel levels"
    return f"eps=0.5 for RobustBench's {norm.title} 0.5, which is 127.5 on (0, 255)"


def box_diameter(bounds: Bounds, norm: Norm = LINF, size: int = 1) -> float:
    """The distance, measured in ``norm``, between the opposite corners of the box of
    samples of ``size`` values: ``upper - lower`` under L-inf, ``(upper - lower) *
    sqrt(size)`` under L2. No radius larger than it constrains anything."""
    width = np.full((1, max(size, 1)), bounds.upper - bounds.lower, dtype=np.float64)
    return float(to_values(norm.distance(width))[0])


def warn_wide_eps(eps: float, bounds: Bounds, *, norm: Norm = LINF, size: int = 1) -> None:
    """Warn with a [`UnitsWarning`][signattack.core.validation.UnitsWarning] when the radius ``eps``
    (the largest of a call's radii) is larger than the whole box measured in ``norm`` (its
    `box_diameter` for samples of ``size`` values): nothing is left for the ball to constrain.
    (A radius too small for a pixel box is the evaluation's finding, `narrow_eps_problem`: an
    attack called alone takes any radius it is given.)

    Under L-inf that is ``eps > upper - lower``. An L2 radius is naturally larger than an L-inf one
    (RobustBench's L2 radius 0.5 on ``[0, 1]`` is 127.5 on ``[0, 255]``; its ImageNet radius 3 is
    765 there, three times the box's width), so it is judged per value: ``eps / sqrt(size) > upper -
    lower``.
    """
    diameter = box_diameter(bounds, norm, size)
    if not eps > diameter:
        return
    width = bounds.upper - bounds.lower
    measured = f"measured in {norm.title}"
    if diameter != width:  # a norm that sums over the values: say what it is per value
        per_value = eps * width / diameter
        measured += (
            f" (the box's diagonal over the {size} values of a sample is {diameter:.4g}: "
            f"eps is {per_value:.4g} per value, more than the box's width {width:g})"
        )
    warnings.warn(
        f"eps = {eps:g} is larger than the whole box [{bounds.lower:g}, {bounds.upper:g}] "
        f"{measured}, so the ball constrains nothing: give eps in the box's units "
        f"({_example(norm)} with bounds=(0, 1)); silence this with "
        'warnings.filterwarnings("ignore", category=signattack.UnitsWarning)',
        UnitsWarning,
        stacklevel=_caller_level(),
    )


def narrow_eps_problem(eps: float, bounds: Bounds, norm: Norm = LINF) -> str | None:
    """What to say of an evaluation whose largest radius ``eps`` is above 0 but below a
    quarter of one 8-bit level (``(upper - lower) / 255``) of a pixel box (`is_pixel_box`)
    under L-inf, below one level under L2 (a whole perturbation shorter than one level), and
    below 1 (a box far wider than 8-bit pixels, as of ``int32`` data, takes small radii on
    purpose): a radius in ``[0, 1]`` units given for a box in pixel units, as ``eps=8/255`` on
    ``[0, 255]``, where the attacks move each value by a fraction of a level (integer inputs
    not at all) and the report's robust accuracy answers another question than the one
    asked. ``None`` otherwise: radii from a quarter level up are taken as meant.

    The suggestion is ``eps`` in the box's units, ``eps * (upper - lower)``: RobustBench's
    ``8/255`` is ``eps=8`` on ``[0, 255]``, its L2 ``0.5`` is ``eps=127.5`` there.
    """
    if not is_pixel_box(bounds):
        return None
    width = bounds.upper - bounds.lower
    level = width / 255
    smallest_meant = level if norm.name != "linf" else level / 4
    if not 0.0 < eps < min(smallest_meant, 1.0):
        return None
    box = f"[{bounds.lower:g}, {bounds.upper:g}]"
    said = "8/255 is eps=8" if norm.name == "linf" else f"{norm.title} 0.5 is eps=127.5"
    return (
        f"eps = {eps:g} is smaller than one 8-bit level of the box {box} ({level:g}), so the "
        f"attacks barely move the input: a radius in [0, 1] units needs the box's units, here "
        f"eps={eps * width:g} on {box} (RobustBench's {said} on [0, 255])"
    )


def check_logits_form(logits: Array, y: Array) -> None:
    """The part of `check_logits` that reads no value: type, shape and dtype. It holds
    for traced arrays inside a compiled function.

    Raises:
        TypeError: ``logits`` is not a floating array.
        ValueError: ``logits`` is not ``(batch, classes)`` for the batch of ``y``.
    """
    if not is_array(logits):
        raise TypeError(f"model must return an array of logits, got {type(logits).__name__}")
    xp = namespace(logits)
    if logits.ndim != 2 or logits.shape[0] != y.shape[0]:
        raise ValueError(
            f"model must return logits of shape (batch, classes) = ({y.shape[0]}, classes), "
            f"got {tuple(logits.shape)}"
        )
    if not xp.isdtype(logits.dtype, "real floating"):
        raise TypeError(f"model must return floating-point logits, got dtype {logits.dtype}")


def check_logits(logits: Array, y: Array) -> None:
    """Check a model's output against the labels, once, before a loss is computed.

    Raises:
        TypeError: ``logits`` is not a floating array.
        ValueError: ``logits`` is not ``(batch, classes)`` for the batch of ``y``, holds NaN
            or Inf, or a label is not a valid class index.
    """
    check_logits_form(logits, y)
    xp = namespace(logits)
    if not bool(xp.all(xp.isfinite(logits))):
        raise ValueError(
            "model must return finite logits, got NaN or Inf: check the model and its input "
            "scaling (an attack cannot follow a gradient through them)"
        )
    largest = int(xp.max(y))
    if largest >= logits.shape[1]:
        raise ValueError(
            f"y must hold labels < {logits.shape[1]} (the model's number of classes), got {largest}"
        )
