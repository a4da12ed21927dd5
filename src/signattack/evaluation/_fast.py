"""A fast preset beside the standard suite: the same members, spent where they decide.

[`fast_attacks`][signattack.evaluation._fast.fast_attacks] runs APGD-CE; then APGD-T on a few
target classes by each of two rankings, with fewer steps; then
[`EscalatingSquare`][signattack.evaluation._fast.EscalatingSquare], a short Square probe whose
breaks, the sign of a model that masks its gradients, call for the reference suite.
[`audit`][signattack.evaluation._fast.audit] runs it and the standard suite on a seeded share of
the samples and bounds how often the fast verdict is wrong.
"""

from __future__ import annotations

import dataclasses
import numbers
from collections.abc import Iterable, Sequence
from dataclasses import KW_ONLY, dataclass
from typing import ClassVar, cast

import numpy as np

from signattack._typing import Array, ArrayT, Model, device_of, namespace, returned
from signattack.attacks import APGD, APGDT, AttackResult, EpsAttack, Square
from signattack.attacks.apgd import Ranking
from signattack.attacks.base import BallAttack
from signattack.attacks.loop import spread
from signattack.core.kernels import take_samples
from signattack.core.norms import Norm, NormName
from signattack.core.threat import PIXEL_BOUNDS, ModelMode
from signattack.core.validation import Bounds, check_real, check_steps, generator
from signattack.evaluation._audit import AuditedSuite, AuditPlan
from signattack.evaluation._audit import chosen as chosen_samples
from signattack.evaluation._batch import batches as checked_batches
from signattack.evaluation._cost import PassCount, total
from signattack.evaluation._escalation import check_reference, suite_of
from signattack.evaluation.report import RobustnessReport, wilson_interval
from signattack.evaluation.standard import (
    Attacks,
    AttackSuite,
    _checked,
    rand_attacks,
    standard_attacks,
)
from signattack.evaluation.sweep import evaluate


@dataclass(frozen=True)
class EscalatingSquare(BallAttack):
    """Square (Andriushchenko et al., 2020) in two stages: a probe of ``probe`` queries per
    sample, then the full search of ``queries`` on the samples the probe left robust, only
    where the probe broke at least one sample.

    Run after gradient attacks (as [`fast_attacks`][signattack.evaluation._fast.fast_attacks] runs
    it, on the samples they left
    robust), a probe that breaks anything has found what the gradients missed: the sign of
    a model that masks its gradients, where the full search is worth its queries. Where the
    probe breaks nothing, the call costs ``probe`` queries per sample instead of ``queries``.
    A sample the model misclassifies before any query counts as broken by the probe.

    Standalone, the escalation is decided per call, so under
    [`evaluate`][signattack.evaluation.evaluate] per batch: a sample the probe leaves robust
    gets the full search only where a batch-mate was broken by the probe, and its verdict can
    change with the batch it lands in. [`fast_attacks`][signattack.evaluation.fast_attacks]
    therefore runs it with ``escalate=False``, a probe only, and decides the escalation over
    the whole dataset instead.

    Args:
        eps: Radius of the ball.
        probe: The probe's queries per sample, ``>= 1``.
        queries: The full search's queries per sample, ``>= probe``.
        bounds: The pixel box.
        seed: Seed of both searches (each draws per sample from streams of its own).
        model_mode: How to run an ``nn.Module``.
        norm: The norm of the ball: ``"linf"`` (default) or ``"l2"``.
        escalate: ``False``: the probe alone (its result, ``probe + 1`` trace rows).

    Raises:
        TypeError: A parameter has the wrong type.
        ValueError: A parameter is out of range, or ``probe > queries``.
    """

    eps: float
    probe: int = 300
    queries: int = 5000
    _: KW_ONLY
    bounds: Bounds | tuple[float, float] = PIXEL_BOUNDS
    seed: int | None = None
    model_mode: ModelMode = "eval"
    norm: NormName = "linf"
    escalate: bool = True
    gradient_free: ClassVar[bool] = True

    def __post_init__(self) -> None:
        self._check("margin", counts=("probe", "queries"))
        if not isinstance(self.escalate, bool):
            raise TypeError(f"escalate must be a bool, got {type(self.escalate).__name__}")
        if self.probe > self.queries:
            raise ValueError(
                f"probe must be at most queries ({self.queries}), got probe={self.probe!r}"
            )

    @property
    def name(self) -> str:
        """``Square probe`` (``Square probe (L2)`` under L2)."""
        norm = self.threat.geometry
        return "Square probe" if norm.name == "linf" else f"Square probe ({norm.title})"

    def _square(self, queries: int) -> Square:
        return Square(
            self.eps,
            queries,
            bounds=self.bounds,
            seed=self.seed,
            model_mode=self.model_mode,
            norm=self.norm,
        )

    def run(
        self,
        model: Model[ArrayT],
        x: ArrayT,
        y: ArrayT,
        *,
        rng: np.random.Generator | None = None,
    ) -> AttackResult[ArrayT]:
        """The probe's result, or, where it broke a sample, the full search's on the samples
        it left robust; the loss trace has ``queries + 1`` rows (the probe's last row
        repeated after its end), ``queries`` the two searches' sum per sample."""
        draws = generator(rng, self.seed)
        first = self._square(self.probe).run(model, x, y, rng=draws)
        if not self.escalate:
            return first
        success = _array(first.success)
        xp = namespace(success)
        left = xp.logical_not(success)
        index = xp.nonzero(left)[0]
        count = int(index.shape[0])
        trace = returned(_extended(_array(first.losses), self.queries + 1), x)
        if count in (0, int(left.shape[0])):  # the probe broke everything, or nothing
            return dataclasses.replace(first, losses=trace)
        part_x = returned(take_samples(_array(x), index), x)
        part_y = returned(take_samples(_array(y), index), y)
        full = self._square(self.queries).run(model, part_x, part_y, rng=draws)

        def merged(new: ArrayT, old: ArrayT, axis: int = 0) -> ArrayT:
            return returned(spread(left, _array(new), _array(old), axis=axis), x)

        queries = first.queries
        if queries is not None and full.queries is not None:
            more = merged(full.queries, returned(xp.zeros_like(_array(queries)), x))
            queries = returned(_array(queries) + _array(more), x)
        return AttackResult(
            merged(full.x_adv, first.x_adv),
            merged(full.losses, trace, axis=1),
            merged(full.predictions, first.predictions),
            merged(full.success, first.success),
            queries=queries,
            forward_passes=_total(first.forward_passes, full.forward_passes),
            backward_passes=_total(first.backward_passes, full.backward_passes),
        )


def _array(value: object) -> Array:
    """An array of a result, typed as the library's arrays."""
    return cast(Array, value)


def _extended(trace: Array, rows: int) -> Array:
    """``trace`` with its last row repeated to ``rows`` rows."""
    xp = namespace(trace)
    missing = rows - int(trace.shape[0])
    if missing <= 0:
        return trace
    tail = xp.broadcast_to(trace[-1:, ...], (missing, *trace.shape[1:]))
    return xp.concat([trace, tail], axis=0)


def _total(a: int | None, b: int | None) -> int | None:
    return None if a is None or b is None else a + b


@dataclass(frozen=True)
class RankedAPGDT(APGDT):
    """[`APGDT`][signattack.APGDT] named by its ranking, ``APGD-T (boundary)`` (``APGD-T
    (logits, L2)`` under L2): the fast preset's second APGD-T member, whose breaks a report
    then tells from the first's."""

    @property
    def name(self) -> str:
        """``APGD-T (RANKING)``, with the norm where it is not L-inf."""
        norm = self.threat.geometry
        said = self.ranking if norm.name == "linf" else f"{self.ranking}, {norm.title}"
        return f"APGD-T ({said})"


def _other_classes(value: object) -> int:
    """``other_classes`` as an ``int >= 0``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        shown = f"{type(value).__name__} {value!r}"
        raise TypeError(f"other_classes must be an int >= 0, got {shown}")
    if value < 0:
        raise ValueError(f"other_classes must be an int >= 0, got {value!r}")
    return int(value)


def _other(ranking: Ranking) -> Ranking:
    return "boundary" if ranking == "logits" else "logits"


def fast_attacks(
    steps: int = 100,
    *,
    target_classes: int = 3,
    target_steps: int = 50,
    ranking: Ranking = "logits",
    other_classes: int = 3,
    probe: int = 300,
    queries: int = 5000,
    bounds: Bounds | tuple[float, float] = (0.0, 255.0),
    seed: int = 0,
    norm: NormName | Norm = "linf",
    audit: float | None = None,
    escalate: bool = True,
    reference: AttackSuite | Sequence[EpsAttack] | None = None,
) -> AuditedSuite:
    """A fast preset beside [`standard_attacks`][signattack.evaluation.standard_attacks]: about
    an eighth of its model passes, the same robust accuracy on a model whose gradients inform.

    APGD-CE; then APGD-T against ``target_classes`` target classes ranked by ``ranking`` (the
    paper's ranking by the clean logits, or with ``"boundary"`` the nearest by the linearised
    distance to their decision boundary, ``|z_y - z_t| / ||grad(z_y - z_t)||_*``: see
    [`APGDT`][signattack.APGDT]); then, on the samples it left robust, APGD-T against
    ``other_classes`` target classes ranked the other way
    ([`RankedAPGDT`][signattack.evaluation._fast.RankedAPGDT]), both with ``target_steps``
    steps; then [`EscalatingSquare`][signattack.evaluation._fast.EscalatingSquare]: a Square
    probe of ``probe`` queries, whose breaks of samples the gradient attacks left robust (a sign
    of gradient masking, which the report flags) call for the escalation below. Every APGD
    member stops on a sample the moment it breaks it.

    The two rankings fail apart: the logits rank by the value of a class, the boundary by how
    near its decision boundary is, and where the cross-entropy saturates (logits scaled up)
    APGD-CE breaks nothing and the target classes carry the whole evaluation. On the digits
    logits x1000 at radius 32, the logits' three leave robust a sample that their fourth and
    fifth classes break, the two nearest by the linearised distance. A class both rankings
    pick is attacked twice on the samples the first run left robust. On the digits networks
    (normal and PGD-trained, radii 16 and 32) it gave the standard suite's and the authors'
    robust accuracy at 0.13-0.14 times the authors' passes (docs: "A fast screening"). What it
    can still miss: a sample broken only through a class outside both rankings' picks, or only
    by FAB-T or more steps, where the Square probe breaks nothing; ``audit`` measures that.

    Under [`evaluate`][signattack.evaluation.evaluate] the suite audits and escalates over the
    whole dataset, never per batch: with ``audit=SHARE``, a seeded share of the samples (each
    chosen by a digest of the seed, its values and its label, whatever its batch) also runs the
    reference suite at every radius, and the report states per radius the samples audited,
    missed (fast robust, reference broken) and extra, the 95% Wilson upper bound of the miss
    rate and the audit's passes, booked apart from the cost (``metadata["audit"]``, and a
    warning where it missed any). After the sweep, at each radius where the audit found a miss
    or the Square probe broke a sample anywhere, the reference suite runs on every sample the
    fast suite left robust there (a second pass over the data, so not a one-shot iterator;
    reported as the attack ``"escalated to reference"``). A sample's verdict is then a function
    of the model, the data, the seed and the settings, never of the batching.

    Args:
        steps: Iterations of the APGD-CE run.
        target_classes: The target classes of the first APGD-T run.
        target_steps: Iterations of each APGD-T run.
        ranking: How the first APGD-T run ranks its target classes: ``"logits"`` or
            ``"boundary"``; the second ranks by the other.
        other_classes: The target classes of the second APGD-T run; ``0``: none (about 0.09
            times the authors' passes on the digits networks, and the miss described above).
        probe: Queries of the Square probe.
        queries: Queries of the full Square search where the probe escalates.
        bounds: The pixel box of the model's inputs.
        seed: Seed of the random starts and of Square's search.
        norm: The norm of the ball: ``"linf"`` (default) or ``"l2"``.
        audit: The share of the samples audited, in ``(0, 1]``; ``None``: no audit.
        escalate: ``False`` turns the escalation off: the report then says where it would
            have run, on how many samples, and warns.
        reference: The suite the audit and the escalation run; by default
            ``standard_attacks(bounds=bounds, seed=seed, norm=norm)``.

    Returns:
        The [`AttackSuite`][signattack.evaluation.AttackSuite] ``"fast"``:
            ``APGD(0, steps, loss="ce")``,
            ``APGDT(0, target_steps, target_classes=target_classes, ranking=ranking)``,
            ``RankedAPGDT(0, target_steps, target_classes=other_classes, ranking=OTHER)``
            (where ``other_classes > 0``; the APGD members with ``early_stop=True``),
            ``EscalatingSquare(0, probe, queries, escalate=False)``, each with ``norm=norm``,
            with its audit; for a randomized model,
            [`rand_attacks`][signattack.evaluation.rand_attacks] (no audit, no escalation).

    Its APGD-T runs, as the standard suite's, need a model of at least four classes (the
    targeted DLR loss): on a model of fewer, the evaluation stops with a ``ValueError`` that
    says so.

    Raises:
        TypeError, ValueError: A setting is not what it says above (the message names it).
    """
    box, name = _checked(steps, bounds, seed, norm)
    check_steps(target_steps, "target_steps")
    other = _other_classes(other_classes)
    if audit is not None:
        audit = check_real("audit", audit)
        if not 0 < audit <= 1:
            raise ValueError(f"audit must be None or a share in (0, 1], got {audit!r}")
    if not isinstance(escalate, bool):
        raise TypeError(f"escalate must be a bool, got {type(escalate).__name__}")
    if reference is None:
        reference = standard_attacks(bounds=box, seed=seed, norm=name)
    elif not isinstance(reference, AttackSuite) or isinstance(reference, AuditedSuite):
        reference = suite_of("reference", reference)

    def targeted(kind: type[APGDT], classes: int, order: Ranking) -> APGDT:
        return kind(
            0.0,
            target_steps,
            target_classes=classes,
            ranking=order,
            early_stop=True,
            bounds=box,
            seed=seed,
            norm=name,
        )

    first = targeted(APGDT, target_classes, ranking)
    members: list[EpsAttack] = [
        APGD(0.0, steps, loss="ce", early_stop=True, bounds=box, seed=seed, norm=name),
        first,
    ]
    if other:
        members.append(targeted(RankedAPGDT, other, _other(first.ranking)))
    members.append(
        EscalatingSquare(0.0, probe, queries, bounds=box, seed=seed, norm=name, escalate=False)
    )
    check_reference(members, reference)
    return AuditedSuite(
        "fast",
        members,
        rand_attacks(steps, bounds=box, seed=seed, norm=name),
        AuditPlan(reference, audit, seed, escalate, probe=len(members) - 1),
    )


@dataclass(frozen=True)
class Audit:
    """How far a fast evaluation can be trusted:
    [`fast_attacks`][signattack.evaluation._fast.fast_attacks] against
    [`standard_attacks`][signattack.evaluation.standard_attacks] on the same seeded share of the
    samples.

    Attributes:
        audited: Samples in the share.
        missed: Samples the fast suite left robust that the standard suite broke: the
            robustness the fast suite overstates.
        extra: Samples the fast suite broke that the standard suite left robust.
        rate: ``missed / audited`` (``0.0`` where no sample was audited).
        upper: The upper end of the 95% Wilson interval of ``rate``: with that confidence,
            the fast suite overstates robust accuracy by at most this share of the samples.
        fast: The fast suite's report on the share (with its cost).
        standard: The standard suite's report on the share (with its cost).
    """

    audited: int
    missed: int
    extra: int
    rate: float
    upper: float
    fast: RobustnessReport
    standard: RobustnessReport

    @property
    def passes(self) -> PassCount | None:
        """The model's passes the audit made, both suites' on the share, booked apart from
        any evaluation's (``None`` where some count is not known)."""
        costs = (self.fast.cost, self.standard.cost)
        return total(None if cost is None else cost.total for cost in costs)


def _audit_seed(seed: object) -> None:
    """Check the audit's seed: an int ``>= 0``, never ``None``, since the audited samples
    are chosen by a digest keyed by it."""
    if isinstance(seed, bool) or not isinstance(seed, int):
        shown = "None" if seed is None else f"{type(seed).__name__} {seed!r}"
        raise TypeError(
            f"seed must be an int >= 0 (the audited samples are chosen by it), got {shown}"
        )
    if seed < 0:
        raise ValueError(
            f"seed must be an int >= 0 (the audited samples are chosen by it), got {seed!r}"
        )


def audit(
    model: Model[ArrayT],
    data: Iterable[tuple[ArrayT, ArrayT]],
    eps: float,
    share: float = 0.1,
    seed: int = 0,
    *,
    bounds: Bounds | tuple[float, float] = (0.0, 255.0),
    norm: NormName | Norm = "linf",
    fast: Attacks | None = None,
    standard: Attacks | None = None,
) -> Audit:
    """Run [`fast_attacks`][signattack.evaluation._fast.fast_attacks] and
    [`standard_attacks`][signattack.evaluation.standard_attacks] (seed
    ``seed``) at radius ``eps`` on a seeded share of the samples, and state how often the
    fast verdict differs, with a confidence bound.

    A sample is audited where a digest of the seed, its values and its label falls below
    ``share``, as `fast_attacks(audit=share)` chooses: the same samples whatever the batch
    size, the order of the data or the process that holds them. ``fast`` and ``standard``
    replace the two suites (the presets made with ``bounds``, ``seed`` and ``norm`` by
    default).

    Raises:
        TypeError, ValueError: ``share`` outside ``(0, 1]``, ``seed`` not an int ``>= 0``,
            data that [`evaluate`][signattack.evaluation.evaluate] refuses (a batch that
            holds no samples, labels that do not match), or a setting the presets refuse.
    """
    _audit_seed(seed)
    share = check_real("share", share)
    if not 0 < share <= 1:
        raise ValueError(f"share must lie in (0, 1], got {share!r}")
    if fast is None:
        fast = fast_attacks(bounds=bounds, seed=seed, norm=norm)
    if standard is None:
        standard = standard_attacks(bounds=bounds, seed=seed, norm=norm)
    chosen: list[tuple[ArrayT, ArrayT]] = []
    first = 0
    for _, x, y in checked_batches(data):  # evaluate's checks, and its words
        picked = chosen_samples(x, y, share, seed)
        first += int(y.shape[0])
        if picked:
            where = namespace(x).asarray(picked, device=device_of(x))
            part = take_samples(x, where), take_samples(y, where)
            chosen.append((returned(part[0], cast(ArrayT, x)), returned(part[1], cast(ArrayT, y))))
    if not first:
        raise ValueError("data must hold at least one batch, got none")
    if not chosen:
        raise ValueError(f"share {share!r} of {first} samples chose none to audit")
    on_fast = evaluate(model, chosen, fast, [eps], progress=False)
    on_standard = evaluate(model, chosen, standard, [eps], progress=False)
    pairs = list(zip(on_fast.robust_correct[eps], on_standard.robust_correct[eps], strict=True))
    missed = sum(1 for quick, full in pairs if quick and not full)
    extra = sum(1 for quick, full in pairs if full and not quick)
    audited = len(pairs)
    return Audit(
        audited,
        missed,
        extra,
        missed / audited,
        wilson_interval(missed, audited)[1],
        on_fast,
        on_standard,
    )
