"""Gradients through what masks them: straight-through estimators (BPDA), and the
diagnoses that tell masking from what looks like it (a saturated softmax, wrong units).

A defense that puts a non-differentiable step before the network (a quantizer, JPEG-like
compression, a purifier) hands every gradient attack a zero or useless gradient, and the
attack reports a robustness that is not there. Backward Pass Differentiable Approximation
(Athalye, Carlini & Wagner, ICML 2018) keeps the step in the forward pass and replaces it in
the backward pass by the identity, or by a differentiable stand-in that approximates it:

    model = torch.nn.Sequential(Lambda(straight_through(quantize)), network)

The forward pass is exactly ``fn(x)``: the attack still attacks the defended model, and
only its gradient changes. Works on PyTorch tensors and JAX arrays; on other arrays (NumPy,
whose models give their own ``vjp``) it applies ``fn``.

What ``fn`` and ``backward`` return is checked at every call, by `output_of` for
every library alike: an array of the input's library, shape, device and dtype.

A zero input gradient has two causes that need opposite remedies. Masking (a quantizer, a
threshold) zeroes every loss's gradient, and only a straight-through estimator or a
gradient-free attack gets past it. Saturation zeroes the cross-entropy's alone: logits so
far apart that ``softmax`` rounds to exactly one-hot, where a loss of the logits themselves
(the margin, DLR) still has a gradient. `gradient_diagnoses` tells them apart before
it advises; `units_problem` spots inputs in the other common range.
"""

from __future__ import annotations

import dataclasses
import math
import sys
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, Literal, cast

import array_api_compat

from signattack._typing import Array, ArrayT, Model, device_of, is_array, namespace, returned

if TYPE_CHECKING:
    from signattack.core.threat import ThreatModel
    from signattack.probes.input_space import GradientReport

__all__ = ["straight_through"]

Role = Literal["fn", "backward"]
"""Which of ``straight_through``'s functions produced a value."""


def straight_through(
    fn: Callable[[ArrayT], ArrayT], backward: Callable[[ArrayT], ArrayT] | None = None
) -> Callable[[ArrayT], ArrayT]:
    """``fn`` in the forward pass, the identity (or ``backward``) in the backward pass.

    Both must return an array of the input's library (a tensor for a tensor, a JAX array
    for a JAX array), shape, device and dtype. One conversion is made, because it is exact:
    integer or boolean results of ``fn`` (a quantizer's levels, ``uint8``) are cast to a
    floating input's dtype where that dtype holds every value of theirs exactly (``uint8``
    and ``int8`` into ``float16``, ``bfloat16`` and wider; ``int16`` and ``uint16`` into
    ``float32`` and wider). ``fn`` gets a copy of a tensor, so one that writes into its
    input leaves the caller's tensor as it was.

    Args:
        fn: The step that masks gradients, ``x -> fn(x)`` of the same shape.
        backward: A differentiable stand-in whose vector-Jacobian product replaces
            ``fn``'s (``None``: the identity, ``d fn / dx = I``).

    Returns:
        A function of tensors or JAX arrays whose value is exactly ``fn(x)`` and whose
        gradient is ``backward``'s.

    Raises:
        TypeError: ``fn`` or ``backward`` is not callable. At a call: ``fn`` or ``backward``
            returns something other than an array of the input's library and dtype (a
            NumPy array for a tensor, a Python number, a ``float64`` result for a
            ``float32`` input), or ``backward``'s result does not depend on its input
            differentiably.
        ValueError: At a call: ``fn`` or ``backward`` returns an array of another shape or
            on another device.
    """
    for name, value in (("fn", fn), ("backward", backward)):
        if (value is not None or name == "fn") and not callable(value):
            raise TypeError(f"{name} must be callable, got {type(value).__name__} {value!r}")

    forward: Callable[[Any], object] = fn
    stand_in: Callable[[Any], object] | None = backward

    def applied(x: ArrayT) -> ArrayT:
        if array_api_compat.is_torch_array(x):
            from signattack.backends.torch_backend import straight_through_torch

            return returned(straight_through_torch(forward, stand_in, x), x)
        if array_api_compat.is_jax_array(x):
            from signattack.backends.jax_backend import straight_through_jax

            return returned(straight_through_jax(forward, stand_in, x), x)
        value: object = x
        if is_array(value):  # NumPy and other libraries: checked alike
            return output_of("fn", forward, x)
        return fn(x)

    applied.__name__ = f"straight_through({getattr(fn, '__name__', type(fn).__name__)})"
    applied.__qualname__ = applied.__name__
    return applied


def output_of(role: Role, function: Callable[[Any], object], x: ArrayT) -> ArrayT:
    """``function(x)``, checked by `checked_output`; an error ``function`` raises
    goes on unchanged (from Python 3.11 with a note saying which function raised it)."""
    try:
        out = function(x)
    except Exception as error:
        if sys.version_info >= (3, 11):
            error.add_note(f"raised by straight_through's {role} ({_name(function)})")
        raise
    return checked_output(role, out, x)


def checked_output(role: Role, out: object, x: ArrayT) -> ArrayT:
    """``out``, what ``straight_through``'s ``fn`` or ``backward`` returned at ``x``, as an
    array like ``x``: of its library, shape, device and dtype. An integer or boolean result
    of ``fn`` is cast to a floating ``x``'s dtype where that holds all its values exactly.

    Raises:
        TypeError: ``out`` is not an array of ``x``'s library, or has another dtype.
        ValueError: ``out`` has another shape or lies on another device.
    """
    array: Any = x
    wanted = f"{_library(x)} of the input's shape {_shape(x)} and dtype {_dtype(x)}"
    if not is_array(out) or not _same_library(out, x):
        raise TypeError(f"straight_through's {role} must return {wanted}, got {_what(out)}")
    if _shape(out) != _shape(x):
        raise ValueError(
            f"straight_through's {role} must keep the input's shape {_shape(x)}, got "
            f"{_library(out)} of shape {_shape(out)}"
        )
    there, here = device_of(out), device_of(array)
    if there is not None and here is not None and there != here:
        raise ValueError(
            f"straight_through's {role} must return an array on the input's device {here}, "
            f"got one on {there}: keep the result on the input's device"
        )
    if out.dtype == array.dtype:
        return returned(out, x)
    xp: Any = array_api_compat.array_namespace(x)
    if role == "fn" and _holds_exactly(xp, array.dtype, out.dtype):
        cast: ArrayT = xp.astype(out, array.dtype)
        return cast
    inexact = (
        f" (whose values {_dtype(x)} does not all hold exactly)"
        if role == "fn"
        and xp.isdtype(array.dtype, "real floating")
        and xp.isdtype(out.dtype, "integral")
        else ""
    )
    raise TypeError(
        f"straight_through's {role} must return {wanted}, got the dtype {_dtype(out)}"
        f"{inexact}: cast its result to the input's dtype"
    )


def _holds_exactly(xp: Any, floating: object, integral: object) -> bool:
    """Whether the floating dtype ``floating`` holds every value of ``integral`` (an integer
    or boolean dtype) exactly: their magnitudes are at most ``2 ** significant bits``."""
    if not xp.isdtype(floating, "real floating") or not xp.isdtype(integral, ("bool", "integral")):
        return False
    if xp.isdtype(integral, "bool"):
        return True
    limits, precision = xp.iinfo(integral), xp.finfo(floating)
    magnitude = max(abs(int(limits.min)), int(limits.max))
    significant = round(-math.log2(float(precision.eps))) + 1
    return bool(magnitude <= 2**significant)


def _same_library(value: object, x: object) -> bool:
    namespace: object = array_api_compat.array_namespace(value)
    return namespace is array_api_compat.array_namespace(x)


def _library(x: object) -> str:
    if array_api_compat.is_torch_array(x):
        return "a torch.Tensor"
    if array_api_compat.is_jax_array(x):
        return "a jax.Array"
    if array_api_compat.is_numpy_array(x):
        return "a NumPy array"
    return f"an array of type {type(x).__name__}"


def _what(value: object) -> str:
    """A value named for a message: its kind, with its shape where it has one."""
    if is_array(value):
        return f"{_library(value)} of shape {_shape(value)}"
    if isinstance(value, (bool, int, float, complex)):
        return f"a Python {type(value).__name__} ({value!r})"
    return f"a {type(value).__name__}"


def _shape(x: Any) -> tuple[int, ...]:
    return tuple(int(size) for size in x.shape)


def _dtype(x: Any) -> str:
    return str(x.dtype).removeprefix("torch.")


def _name(function: object) -> str:
    return str(getattr(function, "__qualname__", type(function).__name__))


COMMON_RANGES: tuple[tuple[float, float], ...] = ((0.0, 1.0), (0.0, 255.0))
"""The two input ranges images come in: ``[0, 1]`` and 8-bit pixels ``[0, 255]``."""


def range_advice(box: tuple[float, float]) -> str:
    """The advice to evaluate on ``box`` instead, as a Python user reads it."""
    return f"did you mean bounds=({box[0]:g}, {box[1]:g}), with x and eps in those units?"


def units_problem(model: object, x: Array, y: Array, threat: ThreatModel) -> str | None:
    """What to say where the clean accuracy on ``x`` is low (under 50%) and the model does
    much better (at least twice as well, and 25 points more) on the same batch read in the
    other common range: ``[0, 255]`` inputs divided by 255 on the box ``[0, 1]``, or
    ``[0, 1]`` inputs times 255 on ``[0, 255]``; and better beyond chance: of the samples
    that only one reading gets right, the other range's share is significant at 5% (a sign
    test), so that a small batch of an untrained model does not raise it. ``None`` where
    nothing looks wrong, the box is neither range or the inputs are not floating."""
    box = (threat.box.lower, threat.box.upper)
    xp = namespace(x)
    if box not in COMMON_RANGES or not xp.isdtype(x.dtype, "real floating"):
        return None
    given = _right(model, x, y, threat)
    accuracy = sum(given) / len(given)
    if accuracy >= 0.5:
        return None
    other = COMMON_RANGES[1 - COMMON_RANGES.index(box)]
    scaled = x / 255 if other[1] < box[1] else x * 255
    moved = xp.clip(scaled, other[0], other[1])
    read = _right(model, moved, y, dataclasses.replace(threat, bounds=other))
    better = sum(read) / len(read)
    gained = sum(now and not before for now, before in zip(read, given, strict=True))
    lost = sum(before and not now for now, before in zip(read, given, strict=True))
    if better < 2 * accuracy or better < accuracy + 0.25 or _sign_test(gained, lost) > 0.05:
        return None
    return (
        f"the clean accuracy on the first batch is {accuracy:.0%} on the box "
        f"[{box[0]:g}, {box[1]:g}], but {better:.0%} with the same inputs read in "
        f"[{other[0]:g}, {other[1]:g}]: the model seems to take inputs in that range; "
        + range_advice(other)
    )


def _sign_test(gained: int, lost: int) -> float:
    """One-sided p-value of ``gained`` or more of ``gained + lost`` coin flips."""
    flips = gained + lost
    return float(sum(math.comb(flips, k) for k in range(gained, flips + 1))) / 2.0**flips


def _right(model: object, x: Array, y: Array, threat: ThreatModel) -> list[bool]:
    """Per sample, whether the model classifies it right."""
    from signattack._host import to_flags
    from signattack.backends.batch import open_threat

    with open_threat(model, x, y, threat) as batch:
        logits = batch.logits(batch.x)
        xp = namespace(logits)
        return list(to_flags(xp.equal(xp.argmax(logits, axis=1), batch.labels)))


@dataclasses.dataclass(frozen=True)
class ZeroGradients:
    """Which samples of a batch have no input gradient, and why.

    Attributes:
        samples: The batch's samples.
        zero: Those whose whole input gradient (of the threat model's loss) is zero.
        saturated: Of those, the ones whose margin gradient is not zero: the softmax
            saturates there, the model does not mask its gradient.
    """

    samples: int
    zero: int
    saturated: int


def zero_gradients(model: Model[Array], x: Array, y: Array, threat: ThreatModel) -> ZeroGradients:
    """Count the samples of ``x`` whose input gradient is zero, and among them those where
    the margin loss, which does not saturate, still has a non-zero, finite gradient."""
    from signattack._host import to_flags
    from signattack.core.kernels import take_samples
    from signattack.probes import input_gradient

    grad = input_gradient(model, x, y, threat=threat)
    xp = namespace(grad)
    axes = tuple(range(1, grad.ndim))
    rows = [i for i, flat in enumerate(to_flags(xp.all(xp.equal(grad, 0), axis=axes))) if flat]
    if not rows:
        return ZeroGradients(int(x.shape[0]), 0, 0)
    index = xp.asarray(rows, device=device_of(x))
    margin = dataclasses.replace(threat, loss="margin")
    other = input_gradient(model, take_samples(x, index), take_samples(y, index), threat=margin)
    moves = xp.any(xp.not_equal(other, 0) & xp.isfinite(other), axis=axes)
    return ZeroGradients(int(x.shape[0]), len(rows), sum(to_flags(moves)))


def gradient_diagnoses(
    model: Model[Array],
    x: Array,
    y: Array,
    threat: ThreatModel,
    *,
    unsaturated: Sequence[str] = (),
) -> tuple[str, ...]:
    """What [`check_gradients`][signattack.probes.check_gradients] finds on a batch, the
    zero-gradient finding naming its cause (`zero_gradient_problem`); ``unsaturated`` names
    the attacks of the evaluation that climb a loss that does not saturate
    (`climbs_unsaturated`)."""
    from signattack.probes import check_gradients

    report = check_gradients(model, x, y, threat=threat, warn=False)
    return diagnosed(report, model, x, y, threat, unsaturated=unsaturated)


def diagnosed(
    report: GradientReport,
    model: Model[ArrayT],
    x: ArrayT,
    y: ArrayT,
    threat: ThreatModel,
    *,
    unsaturated: Sequence[str] = (),
) -> tuple[str, ...]:
    """The problems of ``report`` (made on ``x``, ``y`` under ``threat``), the zero-gradient
    one naming its cause: softmax saturation or masking (`zero_gradient_problem`)."""
    if not (report.zero_gradient_samples > 0 or report.zero_fraction > 0.5):
        return tuple(report.problems())
    rest = dataclasses.replace(report, zero_fraction=0.0, zero_gradient_samples=0.0).problems()
    # The probe that made the report took these as arrays of one library: narrowed, not cast.
    found = zero_gradients(cast("Model[Array]", model), cast(Array, x), cast(Array, y), threat)
    return (zero_gradient_problem(report.zero_fraction, found, unsaturated=unsaturated), *rest)


SATURATING_LOSSES = frozenset({"ce"})
"""The losses whose gradient a saturated softmax rounds to zero: the cross-entropy. The
margin, DLR and their targeted forms are differences of logits and keep their gradient."""

NON_SATURATING = "loss='margin' or loss='dlr' (APGD-T and FAB-T in standard_attacks() use them)"
"""The advice, in Python words, for an attack whose loss does not saturate."""


def climbs_unsaturated(attack: object) -> bool:
    """Whether ``attack`` follows a gradient of a loss that does not saturate: its threat
    model's loss is named and is not the cross-entropy (APGD-DLR, APGD-T, FAB-T, an
    iterated attack with ``loss="margin"``). A gradient-free attack (Square) follows none."""
    from signattack.core.threat import ThreatModel

    threat = getattr(attack, "threat", None)
    if getattr(attack, "gradient_free", False) is True or not isinstance(threat, ThreatModel):
        return False
    loss: object = threat.loss
    name = loss if isinstance(loss, str) else getattr(loss, "name", None)
    return isinstance(name, str) and name not in SATURATING_LOSSES


def saturation_remedy(unsaturated: Sequence[str] = ()) -> str:
    """What to do about a saturated softmax: attack with a loss that does not saturate, or,
    where some attacks (``unsaturated``, by name) already do, say so instead of advising it."""
    if not unsaturated:
        return (
            f"Attack with a loss that does not saturate, {NON_SATURATING}, or run the model "
            "in float64"
        )
    names = ", ".join(dict.fromkeys(unsaturated))
    verb = "climbs" if len(set(unsaturated)) == 1 else "climb"
    return (
        f"{names} already {verb} a loss that does not saturate, whose gradient is not zero "
        "there; for an attack on the cross-entropy, run the model in float64"
    )


def zero_gradient_problem(
    zero_fraction: float, found: ZeroGradients, *, unsaturated: Sequence[str] = ()
) -> str:
    """The zero-gradient finding in one paragraph: how many samples, the cause (saturation
    where the margin gradient is not zero, masking where it is) and its remedy
    (`saturation_remedy`: none to switch to where the attacks ``unsaturated`` names
    already climb a loss that does not saturate)."""
    text = (
        f"{zero_fraction:.0%} of the input-gradient entries are exactly zero and "
        f"{found.zero} of the {found.samples} samples have no gradient at all"
    )
    masked = found.zero - found.saturated
    if found.saturated:
        text += (
            f"; {found.saturated} of them have a non-zero margin gradient: the softmax "
            "saturates (logits so far apart that the cross-entropy's gradient rounds to "
            f"zero), which is not gradient masking. {saturation_remedy(unsaturated)}; "
            "straight_through does not help here"
        )
    if masked or not found.zero:
        who = f"the other {masked}" if found.saturated else "they"
        text += (
            f"; {who} have no margin gradient either: the gradient vanishes inside the "
            "model, masked "
            if found.zero
            else ": the model may mask gradients "
        ) + (
            "(hard thresholds, rounding, argmax) or saturated (tanh or sigmoid units driven "
            "far out of their range, as inputs in the wrong units drive them: check the "
            "box first). Sign attacks cannot move those pixels: for a non-differentiable "
            "step attack through signattack.straight_through(step), and check with a "
            "gradient-free attack (signattack.Square, in standard_attacks())"
        )
    return text + "."
