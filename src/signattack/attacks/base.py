"""What every attack is and returns: the [`Attack`][signattack.attacks.base.Attack] protocol,
[`AttackResult`][signattack.attacks.base.AttackResult], and
[`BallAttack`][signattack.attacks.base.BallAttack], the base of signattack's own attacks in the
ball of a norm."""

from __future__ import annotations

import statistics
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import ClassVar, Generic, Protocol, TypeVar, runtime_checkable

import numpy as np

from signattack._fields import field_values, replaced
from signattack._host import to_values
from signattack._io import html_table
from signattack._typing import ArrayT, Model
from signattack.backends.batch import Passes
from signattack.core.linf import LINF
from signattack.core.losses import LossFunction, LossName
from signattack.core.norms import Norm, norm_of
from signattack.core.threat import ModelMode, ThreatModel
from signattack.core.validation import Bounds, check_real, check_seed, check_steps

__all__ = ["Attack", "AttackResult", "BallAttack", "EpsAttack", "LinfAttack", "PerSampleAttack"]

Self = TypeVar("Self", bound="BallAttack")


def store_checked(attack: object, name: str, checked: float) -> None:
    """Store a NumPy scalar setting of a frozen attack as the Python number it was checked
    as; a Python int or float stays as given (``eps=8`` keeps showing as 8)."""
    if type(getattr(attack, name)) not in (int, float):
        object.__setattr__(attack, name, checked)


def check_flag(name: str, value: object) -> None:
    """Check that a setting is a ``bool``."""
    if not isinstance(value, bool):
        raise TypeError(f"{name} must be a bool, got {type(value).__name__} {value!r}")


@dataclass(frozen=True)
class AttackResult(Generic[ArrayT]):
    """Everything one attack call produced, in the caller's array type and device.

    Attributes:
        x_adv: The adversarial batch, same shape, dtype and device as the input.
        losses: Per-sample loss trace of shape ``(steps + 1, batch)``: row 0 at the clean
            input, row ``k`` after step ``k``. The data of a "loss vs attack step" plot.
        predictions: The model's predicted class for each adversarial sample, ``(batch,)``.
        success: ``(batch,)`` booleans: misclassified (untargeted) or classified as the
            target (targeted).
        queries: For a gradient-free attack, how many times the model was evaluated on each
            sample, ``(batch,)`` integers; ``None`` for gradient attacks.
        distances: For a minimum-norm attack ([`FABT`][signattack.FABT]), the distance in
            the attack's norm (``attack.threat.geometry``) of the closest adversarial point found
            per sample, ``(batch,)`` in the widest float of the input's library (measured, not
            rounded to a half-precision input's dtype), within the radius or not (``0`` where the
            clean input is misclassified, ``inf`` where none was found); ``None`` for the others.
            Where ``success`` holds it is the distance of the point returned (rounded, for integer
            images); elsewhere the input comes back unchanged and the distance exceeds ``eps``, so
            that ``success == (distances <= eps)``.
        forward_passes: The cost of the call at the model: how many samples went through
            its forward pass, over the whole batch, every step, restart, EOT draw and the final
            evaluation (an evaluation of ``n`` samples counts ``n``). Early stopping lowers it: a
            sample that succeeded is no longer evaluated. ``None`` where the attack that built the
            result did not count.
        backward_passes: Likewise, the samples through the model's backward pass (input
            gradients): ``0`` for a gradient-free attack.
    """

    x_adv: ArrayT
    losses: ArrayT
    predictions: ArrayT
    success: ArrayT
    queries: ArrayT | None = None
    distances: ArrayT | None = None
    forward_passes: int | None = None
    backward_passes: int | None = None

    def _summary(self) -> list[tuple[str, str]]:
        x: object = self.x_adv
        shape, success = tuple(getattr(x, "shape", ())), to_values(self.success)
        rows = [
            ("adversarial batch", f"{type(x).__name__} {_dtype_name(x)} {shape}"),
            ("device", str(getattr(x, "device", "cpu"))),
            ("steps", f"{_rows(self.losses) - 1}"),
            ("success", f"{_mean(success):.1%} of {len(success)}"),
        ]
        if self.queries is not None:
            rows.append(("queries (mean)", f"{_mean(to_values(self.queries)):,.0f}"))
        if self.distances is not None:
            distances = to_values(self.distances)
            median = statistics.median(distances) if distances else float("nan")
            rows.append(("median distance found", f"{median:.4g}"))
        if self.forward_passes is not None:
            backward = self.backward_passes or 0
            passes = f"{self.forward_passes:,} forward, {backward:,} backward"
            rows.append(("model passes (samples)", passes))
        return rows

    def __repr__(self) -> str:
        shown = ", ".join(f"{name} {value}" for name, value in self._summary())
        return f"AttackResult({shown})"

    def _repr_html_(self) -> str:
        return html_table(("", "AttackResult"), self._summary(), left={0, 1})


def attack_result(
    passes: Passes,
    x_adv: ArrayT,
    losses: ArrayT,
    predictions: ArrayT,
    success: ArrayT,
    *,
    queries: ArrayT | None = None,
    distances: ArrayT | None = None,
) -> AttackResult[ArrayT]:
    """The [`AttackResult`][signattack.attacks.base.AttackResult] of an attack whose model was
    evaluated through one batch, with the sample-passes that batch counted (``batch.passes``, read
    now: call it after
    the attack's last evaluation of the model)."""
    return AttackResult(
        x_adv,
        losses,
        predictions,
        success,
        queries=queries,
        distances=distances,
        forward_passes=passes.forward,
        backward_passes=passes.backward,
    )


def _dtype_name(x: object) -> str:
    return str(getattr(x, "dtype", "")).replace("torch.", "")


def _rows(array: object) -> int:
    shape: tuple[int, ...] = tuple(getattr(array, "shape", (1,)))
    return shape[0]


def _mean(values: list[bool | int | float]) -> float:
    return sum(values) / len(values) if values else 0.0


@runtime_checkable
class Attack(Protocol):
    """An adversarial attack: a callable that turns a batch into an adversarial batch.

    Any object with these two methods is an attack; [`FGSM`][signattack.FGSM],
    [`IteratedSign`][signattack.IteratedSign], [`APGD`][signattack.APGD] and
    [`APGDT`][signattack.APGDT] are four.
    """

    def __call__(self, model: Model[ArrayT], x: ArrayT, y: ArrayT) -> ArrayT:
        """The adversarial batch for inputs ``x`` with labels (or targets) ``y``."""
        ...

    def run(self, model: Model[ArrayT], x: ArrayT, y: ArrayT) -> AttackResult[ArrayT]:
        """The adversarial batch with its loss trace, predictions and success mask."""
        ...


@runtime_checkable
class EpsAttack(Attack, Protocol):
    """An attack in the ball of a norm that an evaluation can sweep over radii.

    What [`evaluate`][signattack.evaluation.evaluate] needs beyond
    [`Attack`][signattack.attacks.base.Attack]: the radius and a copy at another radius, the box
    every input must lie in, the seed, and ``run`` with an explicit generator, so that a resumed or
    sharded evaluation draws what an uninterrupted one draws. Every attack of signattack is one.
    """

    @property
    def eps(self) -> float:
        """The radius of the L-inf ball."""
        ...

    @property
    def bounds(self) -> Bounds | tuple[float, float]:
        """The box ``(lower, upper)`` every input lies in."""
        ...

    @property
    def seed(self) -> int | None:
        """The seed of the attack's random draws (``None``: fresh entropy)."""
        ...

    def with_eps(self, eps: float) -> EpsAttack:
        """The same attack with radius ``eps``."""
        ...

    def run(
        self,
        model: Model[ArrayT],
        x: ArrayT,
        y: ArrayT,
        *,
        rng: np.random.Generator | None = None,
    ) -> AttackResult[ArrayT]:
        """The adversarial batch with its loss trace, predictions and success mask; random
        draws come from ``rng`` when given."""
        ...


@runtime_checkable
class PerSampleAttack(EpsAttack, Protocol):
    """An [`EpsAttack`][signattack.attacks.base.EpsAttack] that can also give every sample a radius
    of its own.

    What [`smallest_breaking_eps`][signattack.evaluation.smallest_breaking_eps] needs to bisect
    every sample's radius in one batch. [`IteratedSign`][signattack.IteratedSign] and
    [`FGSM`][signattack.FGSM] are two.
    """

    def run_per_sample(
        self, model: Model[ArrayT], x: ArrayT, y: ArrayT, eps: ArrayT
    ) -> AttackResult[ArrayT]:
        """`run` with radius ``eps[i]`` for sample ``i`` (``eps`` of shape
        ``(batch,)``, in ``x``'s library and on its device)."""
        ...


class BallAttack(ABC):
    """The part that signattack's attacks share; an attack adds its rule and its run.

    A subclass is a frozen dataclass with the fields ``eps``, ``bounds``, ``model_mode`` and
    ``seed`` (and ``early_stop``, ``targeted`` where it has them, checked as flags); its
    ``__post_init__`` calls `_check` with the loss it climbs. The base checks the shared settings
    once, keeps the validated `threat`, and provides ``with_eps`` and ``__call__``
    (``run(...).x_adv``). Each attack keeps its own fields, in its own order, so that its signature
    and description read as its paper writes it.

    The norm of the ball: an attack that works in more than one declares a dataclass field ``norm:
    NormName = "linf"``, which `_check` validates (a ``ValueError`` naming ``norm``) and the
    `threat` carries; an attack without that field works in [`LINF`][signattack.core.linf.LINF]
    (`fixed_norm`, which a subclass may set to another norm it alone works in).
    """

    eps: float
    bounds: Bounds | tuple[float, float]
    model_mode: ModelMode
    seed: int | None
    gradient_free: ClassVar[bool] = False
    """Whether the attack never asks for a gradient, so that gradient masking cannot fool
    it: an evaluation flags samples it breaks that the gradient attacks left robust."""
    fixed_norm: ClassVar[Norm] = LINF
    """The norm of an attack that has no ``norm`` field."""

    def _check(
        self, loss: LossName | LossFunction, *flags: str, counts: tuple[str, ...] = ()
    ) -> None:
        """Check the shared settings, the named ``bool`` flags and the named counts
        (integers ``>= 1``: steps, restarts, EOT passes), and keep the threat model (checked
        once here, not rebuilt on every access)."""
        store_checked(self, "eps", check_real("eps", self.eps))
        for count in counts:
            store_checked(self, count, check_steps(getattr(self, count), count))
        threat = ThreatModel(self.bounds, loss, self.model_mode, self._norm())
        object.__setattr__(self, "bounds", threat.box)
        object.__setattr__(self, "_threat", threat)
        check_seed(self.seed)
        for flag in flags:
            check_flag(flag, getattr(self, flag))

    def _norm(self) -> Norm:
        """The attack's norm: its ``norm`` field, checked (a name given in another spelling,
        ``"L2"``, is stored as the norm's own name), or `fixed_norm`."""
        fields = field_values(self) or {}
        if "norm" not in fields:
            return self.fixed_norm
        given = fields["norm"]
        norm = norm_of(given)  # type: ignore[arg-type]
        if isinstance(given, str) and given != norm.name:
            object.__setattr__(self, "norm", norm.name)
        return norm

    @property
    def threat(self) -> ThreatModel:
        """The box, the loss, the model's mode and the norm, as one validated value
        (``threat.geometry`` is the attack's [`Norm`][signattack.core.norms.Norm])."""
        threat: ThreatModel = self.__dict__["_threat"]
        return threat

    @property
    def name(self) -> str:
        """The name papers give the attack (``APGD-CE``, ``FAB-T``, ``Square``): what
        reports and the command line show."""
        return type(self).__name__

    def with_eps(self: Self, eps: float) -> Self:
        """The same attack with radius ``eps``."""
        return replaced(self, {"eps": eps})

    def __call__(
        self,
        model: Model[ArrayT],
        x: ArrayT,
        y: ArrayT,
        *,
        rng: np.random.Generator | None = None,
    ) -> ArrayT:
        """The adversarial batch, with ``x``'s type, shape, dtype and device.

        Args:
            model: ``torch.nn.Module`` or callable on tensors returning logits, a JAX
                function, or a NumPy model.
            x: Inputs ``(batch, ...)`` inside ``bounds``.
            y: Labels ``(batch,)``; targets when the attack is targeted.
            rng: Generator of the random draws, overriding ``seed``.
        """
        return self.run(model, x, y, rng=rng).x_adv

    @abstractmethod
    def run(
        self,
        model: Model[ArrayT],
        x: ArrayT,
        y: ArrayT,
        *,
        rng: np.random.Generator | None = None,
    ) -> AttackResult[ArrayT]:
        """The adversarial batch with its loss trace, predictions and success."""


LinfAttack = BallAttack
"""The former name of [`BallAttack`][signattack.attacks.base.BallAttack] (deprecated): the base of
the attacks, whatever
their norm."""
