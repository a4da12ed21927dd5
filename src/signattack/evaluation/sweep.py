"""The sweep over a dataset: [`evaluate`][signattack.evaluation.sweep.evaluate].

Radii are visited in increasing order, and a sample that is already misclassified (clean, or at a
smaller eps) counts as broken at every larger eps without being attacked again, since the smaller
ball lies inside the larger one.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterable, Iterator, Sequence, Sized
from pathlib import Path
from typing import TYPE_CHECKING

from signattack._host import dtype_name
from signattack._lazy import moved_attributes
from signattack._progress import progress as progress_of
from signattack._progress import step_bars
from signattack._typing import ArrayT, Model, device_of
from signattack.core.validation import check_real
from signattack.evaluation._audit import (
    ESCALATION,
    AuditedSuite,
    dropped_audit,
    escalation_record,
)
from signattack.evaluation._batch import Lines, evaluate_batch
from signattack.evaluation._batch import attack_rng as _attack_rng  # noqa: F401  (tests use it)
from signattack.evaluation._batch import batches as checked_batches
from signattack.evaluation._cost import Meter, summed
from signattack.evaluation._cost import total as total_of
from signattack.evaluation._cost import totals_json as cost_totals
from signattack.evaluation._escalation import audited_batch, second_pass, summary
from signattack.evaluation._escalation import handed as handed_to
from signattack.evaluation._judging import Plan, is_randomized
from signattack.evaluation._specs import attack_at, specs_of
from signattack.evaluation._units import coarser, radius_text
from signattack.evaluation.adversarial import Collected, check_path, store_points, stored_points
from signattack.evaluation.checkpoint import BatchResult, Checkpoint
from signattack.evaluation.distributed import PeerFailure, Ranks
from signattack.evaluation.identity import Identity, batch_digest, run_metadata
from signattack.evaluation.report import RobustnessReport
from signattack.evaluation.standard import (
    AttackSuite,
    attack_names,
    attack_record,
    masking_warnings,
)

if TYPE_CHECKING:  # not imported at run time, so that the old names below warn
    from signattack.evaluation._specs import Attacks

__all__ = ["evaluate"]

# Where the attack-spec types lived until 0.2, importable with a deprecation warning.
__getattr__ = moved_attributes(
    __name__,
    {name: ("signattack.evaluation", name) for name in ("AttackFactory", "AttackSpec", "Attacks")},
)


def _check_eps_list(eps: Sequence[float]) -> tuple[float, ...]:
    if isinstance(eps, (int, float)):
        raise TypeError(f"eps must be a sequence of radii, got the single number {eps!r}")
    values = tuple(check_real("eps", value) for value in eps)
    if not values:
        raise ValueError("eps must hold at least one radius, got an empty sequence")
    if len(set(values)) != len(values):
        raise ValueError(f"eps must not repeat a radius, got {list(eps)!r}")
    return tuple(sorted(values))


def _same_file(first: Path, second: Path) -> bool:
    """Whether two paths name one file (also through links, or before either exists)."""
    return first.resolve() == second.resolve() or (
        first.exists() and second.exists() and first.samefile(second)
    )


def evaluate(
    model: Model[ArrayT],
    data: Iterable[tuple[ArrayT, ArrayT]],
    attack: Attacks,
    eps: Sequence[float],
    *,
    checkpoint: str | Path | None = None,
    progress: bool | None = None,
    name: str | None = None,
    model_name: str | None = None,
    adversarial: str | Path | None = None,
) -> RobustnessReport:
    """Clean and robust accuracy of ``model`` on ``data`` at every eps.

    Every sample is checked before any is attacked: inputs finite and inside the attack's bounds,
    labels classes of the model. With several attacks, each runs in order on the samples the
    previous ones left robust: a sample is robust at an eps only if every attack fails on it, and
    the report says which attack broke how many (``broken_by``).

    One decision rule makes every prediction, clean or attacked: the class of the mean logits of as
    many passes as the suite's attack that averages most (its largest ``eot``; one pass for a
    deterministic suite), as an attack with that ``eot`` decides. The breaks an attack with fewer
    passes claims are decided again by that rule, and a point equal to the clean input is never a
    break. Everything the evaluation needs of an attack (name, box, mode, seed, passes, whether it
    asks for gradients) is read from the attack made at each radius, so a factory counts as the
    attack it makes; the gradient checks run only when an attack asks for a gradient.

    Args:
        model: As for the attacks (``nn.Module``, callable on tensors, or NumPy model).
        data: A ``DataLoader`` or any iterable of ``(x, y)`` batches, in the same order on
            every pass (no shuffling).
        attack: An attack whose ``eps`` is replaced by each radius (``IteratedSign``,
            ``FGSM``, ``APGD``, ``APGDT``: any [`EpsAttack`][signattack.attacks.EpsAttack]), a
            factory ``eps -> attack``, or a sequence of them run in order
            ([`standard_attacks`][signattack.evaluation.standard_attacks] is the worst-case preset).
            ``IteratedSign(..., early_stop=True)`` saves further work.
        eps: The radii, any order, no repeats.
        checkpoint: A JSON file for progress: written atomically after every batch, read on
            start to skip finished batches. It is bound to this evaluation: the model (its class and
            a digest of its parameters and buffers), the attack's settings, the radii, every batch's
            inputs and labels, and the library's version. Under ``torchrun`` each process uses its
            own file (``.rank<r>`` is appended).
        progress: ``True`` or ``False`` to show progress or not; by default a bar when
            stderr is a terminal or in a notebook, and elsewhere (a log file, a pipe) a line every
            30 s once the evaluation has run that long. Shown as well: after each attack at each
            radius, a line with the attack, the samples it broke ("nothing left to attack" where
            none was left), the robust accuracy so far, the batch, the time spent and an estimate
            of the time left; elsewhere the same lines without bars, each flushed as it comes
            once the evaluation has run 30 s (those of the first 30 s then at once; a shorter run
            stays silent). An attack that runs long shows a bar of its steps, named after it
            ("FAB-T target 2 of 9", "Square queries"). Under ``torchrun`` only the first process
            shows progress, of its own batches and samples, and its lines say so ("on this
            process (1 of 2)").
        name: Names the attack in the report and the checkpoint, instead of its
            description. Needed to checkpoint a factory that has no stable description (a lambda or
            a closure); give each different attack its own name.
        model_name: Identifies the model in the checkpoint instead of a digest of its
            state. Needed to checkpoint a model that is a lambda or a closure.
        adversarial: A ``.npz`` or ``.pt`` file to write, at the end, the point that decided
            each sample at each radius, with the clean inputs, the labels and the report:
            RobustBench's ``x_adv``, and what [`verify`][signattack.evaluation.verify] re-evaluates.
            With a checkpoint, each batch's points are kept beside the file (``FILE.parts/``) so
            that a resumed run writes them all. One process only.

    Returns:
        The [`RobustnessReport`][signattack.evaluation.sweep.RobustnessReport] of exactly the
            samples of ``data``, in order.

    Raises:
        ValueError: ``eps`` is empty, negative or repeats; the data is empty, a batch is
            empty, an input lies outside the bounds or a label is not a class of the model; the
            checkpoint is damaged or belongs to another evaluation.
        TypeError: ``data`` does not yield ``(x, y)`` pairs of arrays.
        PeerFailure: Under ``torchrun``, another process failed.
    """
    radii = _check_eps_list(eps)
    specs = specs_of(attack)
    alternative = attack.randomized if isinstance(attack, AttackSuite) else None
    randomized = None if alternative is None else specs_of(alternative)
    audited = attack.audit if isinstance(attack, AuditedSuite) else None
    reference = None if audited is None else specs_of(audited.reference)
    for label, value in (("name", name), ("model_name", model_name)):
        if value is not None and (not isinstance(value, str) or not value):
            raise TypeError(f"{label} must be a non-empty str or None, got {value!r}")
    ranks = Ranks.current()
    path = None if checkpoint is None else Path(checkpoint)
    output = None if adversarial is None else check_path(adversarial)
    if output is not None and path is not None and _same_file(output, path):
        raise ValueError(
            f"checkpoint and adversarial must be different files, got {str(path)!r} for both"
        )
    if output is not None and ranks.world > 1:
        raise ValueError(
            "adversarial= is written by a single process: under torchrun, evaluate without "
            "it, or run the export in one process"
        )
    collected = Collected(len(radii)) if output is not None else None
    parts = None if output is None or path is None else Path(f"{output}.parts")
    try:
        if path is not None and ranks.world > 1:
            path = path.with_name(f"{path.name}.rank{ranks.rank}")
        identity = None
        bound = None if audited is None or reference is None else (audited.settings(), reference)
        if path is not None:
            identity = Identity.of(
                model,
                specs,
                radii,
                name=name,
                model_name=model_name,
                randomized=randomized,
                audit=bound,
            )
        done = Checkpoint.open(path, identity)
        started = time.perf_counter()
        seen = resumed = 0
        digests: list[str] = []
        device, dtype = "unknown", None
        switched = False
        dropped: tuple[str, ...] = ()
        results: dict[int, BatchResult] = {}
        outside = Meter()  # the passes outside every batch: the randomness check
        plan = Plan.of(specs, radii)  # once
        checks = None if reference is None else Plan.of(reference, radii)
        total = len(data) if isinstance(data, Sized) else None  # a DataLoader, a list
        shown = progress if ranks.rank == 0 else False  # the first process speaks for all
        what = "evaluating" if ranks.world == 1 else f"evaluating on {ranks.world} processes"
        batches = progress_of(checked_batches(data), what, "batches", shown, total=total)
        lines = Lines(progress, total, ranks)
        for index, x, y in batches:
            seen += 1
            dtype = coarser(dtype, dtype_name(x))  # the coarsest rounding of any batch
            if index == 0:
                device = str(device_of(x))
                checked = outside.around(model)
                if randomized is not None and is_randomized(checked, x, y, plan.threat):
                    plan, switched = Plan.of(randomized, radii), True  # the preset's version
                    dropped = dropped_audit(audited)
                    checks = audited = None  # the randomized suite is the reference's own
            digests.append(batch_digest(x, y))
            if ranks.owns(index):
                digest = "" if path is None else digests[-1]
                result = done.result(index, digest, int(x.shape[0]))
                if result is not None and audited is not None and audited.share is not None:
                    result = None if result.audit is None else result  # audit it as well
                points = None
                if result is not None and parts is not None:
                    points = stored_points(parts, index, digest, identity)
                    if points is None:  # finished without its points kept: attack it again
                        result = None
                taken = result is not None
                resumed += taken
                if result is None:
                    with step_bars(shown is not False):  # within attacks that run long
                        fell: list[int] = []
                        result, points = evaluate_batch(
                            model, x, y, plan, index, digest, collected is not None, lines, fell
                        )
                        if checks is not None and audited is not None:
                            result = audited_batch(model, x, y, result, checks, audited, fell)
                    if parts is not None and points is not None:
                        store_points(parts, index, digest, points, identity)
                    done.record(index, result)
                lines.finished(plan, result, attacked=not taken)
                if collected is not None and points is not None:
                    collected.add(x, y, points)
                results[index] = result
            ranks.round_done(index)
        if seen:
            done.finish(seen)
    except PeerFailure:
        raise
    except BaseException:
        ranks.fail()
        raise
    gathered = ranks.gather((results, outside.spent(), resumed))  # every process's, summed below
    merged = {k: v for part, _, _ in gathered for k, v in part.items()}
    resumed = sum(taken for _, _, taken in gathered)
    if seen == 0:
        raise ValueError("data must hold at least one batch, got none")
    ordered = [merged[i] for i in range(seen)]
    names = attack_names(plan.traits)
    threat = plan.threat
    box = None if threat is None else (threat.box.lower, threat.box.upper)
    noted: tuple[str, ...] = ()
    record = None
    if audited is not None and checks is not None:
        described = " + ".join(t.description for t in checks.traits)
        say = lambda e: radius_text(e, box, plan.norm)  # noqa: E731
        flags, record, noted = summary(audited, radii, ordered, described, say)
        outcome = "ran" if audited.escalate else "off"
        if any(flags) and audited.escalate and isinstance(data, Iterator):
            outcome = "not possible"  # a generator: read once
        fast = ordered
        if any(flags) and outcome == "ran":
            ordered = second_pass(model, data, checks, flags, ordered, digests, ranks, collected)
            names = [*names, ESCALATION]
        handed = [handed_to(fast, ordered, i) for i in range(len(radii))]
        noted += escalation_record(record, radii, handed, outcome, say)
    broken_by = {
        e: {label: sum(batch.broken[i][j] for batch in ordered) for j, label in enumerate(names)}
        for i, e in enumerate(radii)
    }
    samples = sum(batch.size for batch in ordered)
    cost = summed([b.cost for b in ordered], radii, names, total_of(p for _, p, _ in gathered))
    metadata = run_metadata(
        model,
        [attack_record(attack_at(spec, radii[0])) for spec in plan.specs],
        model_name=model_name,
        bounds=box,
        model_mode="eval" if threat is None else threat.model_mode,
        decision_draws=plan.draws,
        samples=samples,
        batches=seen,
        data_digest=hashlib.sha256("".join(digests).encode()).hexdigest(),
        dtype=dtype,
        device=device,
        seconds=time.perf_counter() - started,
        resumed=resumed,
        randomized=switched,
    )
    metadata["passes"] = cost_totals(cost, samples)
    if record is not None:
        metadata["audit"] = record
    report = RobustnessReport(
        eps=radii,
        attack=name if name is not None else " + ".join(t.description for t in plan.traits),
        clean_correct=tuple(c for batch in ordered for c in batch.clean),
        robust_correct={
            e: tuple(c for batch in ordered for c in batch.robust[i]) for i, e in enumerate(radii)
        },
        max_perturbation={
            e: max(batch.largest[i] for batch in ordered) for i, e in enumerate(radii)
        },
        attacked={e: sum(batch.attacked[i] for batch in ordered) for i, e in enumerate(radii)},
        warnings=merged[0].problems
        + masking_warnings(plan.traits, names, broken_by, samples, box)
        + noted
        + dropped,
        broken_by=broken_by,
        metadata=metadata,
        cost=cost,
    )
    if collected is not None and output is not None:
        collected.save(output, report)
    return report
