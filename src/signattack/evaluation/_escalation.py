"""The audit and the escalation of an audited suite, run by the sweep (see
`signattack.evaluation._audit`)."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Sequence

from signattack._host import HostArray, copy_of, put_rows
from signattack._io import Json
from signattack._typing import Array, device_of, namespace
from signattack.attacks import EpsAttack
from signattack.core.kernels import take_samples
from signattack.evaluation._audit import (
    AuditBatch,
    AuditedSuite,
    AuditPlan,
    Escalation,
    Ran,
    chosen,
    passes_json,
)
from signattack.evaluation._batch import batches, evaluate_batch
from signattack.evaluation._cost import BatchCost, PassCount, total
from signattack.evaluation._judging import Plan
from signattack.evaluation._tables import wilson_interval
from signattack.evaluation.adversarial import Collected
from signattack.evaluation.checkpoint import BatchResult
from signattack.evaluation.distributed import PeerFailure, Ranks
from signattack.evaluation.identity import batch_digest
from signattack.evaluation.standard import AttackSuite, threat_of, traits_of


def audited_batch(
    model: object,
    x: Array,
    y: Array,
    result: BatchResult,
    checks: Plan,
    audited: AuditPlan,
    breakers: list[int],
) -> BatchResult:
    """``result`` with the audit of the batch: the reference suite on the samples the audit
    picks (none without a share); ``breakers`` says which attack broke each sample."""
    picked = [] if audited.share is None else chosen(x, y, audited.share, audited.seed)
    if not picked:
        empty = AuditBatch.empty(len(checks.radii), breakers)
        return dataclasses.replace(result, audit=empty)
    index = namespace(x).asarray(picked, device=device_of(x))
    part = take_samples(x, index), take_samples(y, index)
    found, _ = evaluate_batch(model, part[0], part[1], checks, -1, "")
    return dataclasses.replace(
        result, audit=AuditBatch.tally(result.robust, picked, found.robust, found.cost, breakers)
    )


def second_pass(
    model: object,
    data: Iterable[object],
    checks: Plan,
    flags: tuple[bool, ...],
    ordered: list[BatchResult],
    digests: list[str],
    ranks: Ranks,
    collected: Collected | None,
) -> list[BatchResult]:
    """Every batch escalated at the radii ``flags`` marks: the reference suite on the
    samples the fast suite left robust there (a second pass over ``data``)."""
    found: dict[int, BatchResult] = {}
    seen = 0
    try:
        for index, x, y in batches(data):
            seen += 1
            if index >= len(digests) or batch_digest(x, y) != digests[index]:
                raise ValueError(
                    "data must yield the same batches on every pass (no shuffling): the "
                    f"escalation's second pass found batch {index} changed"
                )
            if ranks.owns(index):

                def run(still: list[int], at: int, x: Array = x, y: Array = y) -> Ran:
                    index = namespace(x).asarray(still, device=device_of(x))
                    part = take_samples(x, index), take_samples(y, index)
                    one = Plan.of(checks.specs, (checks.radii[at],))
                    keep = collected is not None
                    done, kept = evaluate_batch(model, part[0], part[1], one, -1, "", keep)
                    decided = None if kept is None else kept[0]
                    return done.robust[0], done.largest[0], done.cost, decided

                outcome = escalate(ordered[index], flags, run)
                found[index] = escalated(ordered[index], outcome)
                if collected is not None:
                    _replace_points(collected, index, ordered[index].robust, outcome.points)
            ranks.round_done(index)
        if seen != len(digests):
            raise ValueError(
                f"data must yield the same batches on every pass: the escalation's second "
                f"pass found {seen} batches, the first {len(digests)}"
            )
    except PeerFailure:
        raise
    except BaseException:
        ranks.fail()
        raise
    merged = {k: v for part in ranks.gather(found) for k, v in part.items()}
    return [merged[i] for i in range(seen)]


def _replace_points(
    collected: Collected,
    index: int,
    robust: tuple[tuple[bool, ...], ...],
    points: tuple[tuple[int, list[int], HostArray | None], ...],
) -> None:
    """Put the escalation's points of batch ``index`` where it decided the samples: at the
    radius it broke them and at the larger ones where the fast suite had left them robust."""
    for at, samples, rows in points:
        if rows is None:
            continue
        for later in range(at, len(collected.points)):
            kept = copy_of(collected.points[later][index])
            moved = [(row, sample) for row, sample in enumerate(samples) if robust[later][sample]]
            put_rows(kept, [sample for _, sample in moved], rows, [row for row, _ in moved])
            collected.points[later][index] = kept


def handed(fast: list[BatchResult], final: list[BatchResult], radius: int) -> int:
    """The samples the escalation is handed at ``radius``: those the fast suite left robust
    there and the escalation at smaller radii did not break."""
    return sum(
        sum(
            now and (radius == 0 or kept)
            for now, kept in zip(a.robust[radius], b.robust[radius - 1], strict=True)
        )
        for a, b in zip(fast, final, strict=True)
    )


def escalate(
    result: BatchResult,
    radii: Sequence[bool],
    run: Callable[[list[int], int], Ran],
) -> Escalation:
    """The escalation of a batch whose fast suite gave ``result``, at the radii flagged in
    ``radii`` (increasing): ``run(samples, radius_index)`` runs the reference there.

    The record keeps the sweep's bookkeeping at every radius: ``attacked`` minus the
    breaks is the samples robust after it. A sample the escalation broke at a smaller
    radius is not robust when a larger radius's attacks begin, so it is taken out of that
    radius's attacked samples and, where a fast attack broke it there, out of that
    attack's count (`AuditBatch.breakers` says which one).
    """
    fell = result.audit.breakers if result.audit is not None else ()
    if len(fell) != result.size:
        raise ValueError(
            f"the batch's audit must name, per sample, the attack that broke it "
            f"({result.size} entries), got {len(fell)}"
        )
    rows: list[tuple[bool, ...]] = []
    attacked, broken, largest, passes, points = [], [], [], [], []
    own: PassCount | None = PassCount(0, 0)
    before: tuple[bool, ...] = result.clean  # robust when the radius's attacks began
    fast_before: tuple[bool, ...] = result.clean  # the same, by the fast suite alone
    for index, (row, flagged) in enumerate(zip(result.robust, radii, strict=True)):
        counts = list(result.broken[index])
        gone = [i for i, (a, b) in enumerate(zip(fast_before, before, strict=True)) if a and not b]
        for i in gone:  # broken by the escalation at a smaller radius: not attacked here
            if not row[i]:
                counts[fell[i]] -= 1
        now = [a and b for a, b in zip(row, before, strict=True)]
        distance, spent = 0.0, PassCount(0, 0)
        spent_here: PassCount | None = spent
        hit: list[int] = []
        if flagged and any(now):
            still = [i for i, flag in enumerate(now) if flag]
            held, distance, cost, decided = run(still, index)
            spent_here = None if cost is None else total(cost.attacks[0])
            own = total([own, None if cost is None else cost.evaluation])
            hit = [i for i, kept in enumerate(held) if not kept]
            for i in hit:
                now[still[i]] = False
            if hit:
                points.append(
                    (index, [still[i] for i in hit], None if decided is None else decided[hit])
                )
        rows.append(tuple(now))
        attacked.append(result.attacked[index] - len(gone))
        broken.append((*counts, len(hit)))
        largest.append(distance)
        passes.append(spent_here)
        before, fast_before = rows[-1], row
    return Escalation(
        tuple(rows),
        tuple(attacked),
        tuple(broken),
        tuple(largest),
        tuple(passes),
        own,
        tuple(points),
    )


def escalated(result: BatchResult, escalation: Escalation) -> BatchResult:
    """``result`` with the escalation's verdicts and counts, and its breaks and passes as
    one more attack (`ESCALATION`)."""
    cost = result.cost
    if cost is not None:
        rows = tuple((*row, p) for row, p in zip(cost.attacks, escalation.passes, strict=True))
        cost = BatchCost(rows, total([cost.evaluation, escalation.own]))
    return dataclasses.replace(
        result,
        robust=escalation.robust,
        largest=tuple(map(max, result.largest, escalation.largest)),
        attacked=escalation.attacked,
        broken=escalation.broken,
        cost=cost,
    )


def summary(
    plan: AuditPlan,
    eps: Sequence[float],
    results: Sequence[BatchResult],
    reference: str,
    radius_text: Callable[[float], str],
) -> tuple[tuple[bool, ...], dict[str, Json], tuple[str, ...]]:
    """The radii to escalate at, the audit's record for the report's metadata, and its
    warnings (the escalation's, once it ran, are added by `escalation_record`)."""
    radii: dict[str, Json] = {}
    flags, warnings = [], []
    spent: list[PassCount | None] = []
    audits = [r.audit for r in results]
    for i, e in enumerate(eps):
        probe = plan.probe
        broke = 0 if probe is None else sum(r.broken[i][probe] for r in results)
        entry: dict[str, Json] = {"probe_broke": broke}
        missed = 0
        if plan.share is not None:
            audited = sum(a.audited for a in audits if a is not None)
            missed = sum(a.missed[i] for a in audits if a is not None)
            extra = sum(a.extra[i] for a in audits if a is not None)
            upper = wilson_interval(missed, audited)[1] if audited else 1.0
            counted = [None if a is None else a.passes[i] for a in audits]
            entry.update(audited=audited, missed=missed, extra=extra, upper=upper)
            spent.append(total(counted))
            entry["passes"] = passes_json(spent[-1])
            if missed:
                warnings.append(
                    f"the audit at eps {radius_text(e)}: the fast preset left robust {missed} of "
                    f"{audited} audited samples that the reference suite ({reference}) broke "
                    f"(a miss rate of at most {upper:.1%} at 95% confidence)"
                    + (
                        "; the reference suite ran on every sample the fast preset left robust"
                        if plan.escalate
                        else "; evaluate with escalate=True (the default), or report the "
                        "number with standard_attacks()"
                    )
                )
        flags.append(bool(missed or broke))
        entry["escalation"] = "needed" if flags[-1] else "not needed"
        radii[str(e)] = entry
    record: dict[str, Json] = {**plan.settings(), "reference": reference, "radii": radii}
    if plan.share is not None:
        own = [None if a is None else a.own for a in audits]
        record["passes"] = passes_json(total([*own, *spent]))
    return tuple(flags), record, tuple(warnings)


def check_reference(members: Sequence[EpsAttack], reference: AttackSuite) -> None:
    """Refuse a reference that does not attack in the preset's threat model: it is checked
    as one more member of the evaluation (`threat_of`: one norm, one box, one model mode),
    and it decides as the preset does, by one pass (its breaks become the evaluation's).

    Raises:
        ValueError: It does not; the message names ``reference``.
    """
    if not reference:
        raise ValueError("reference must hold at least one attack, got an empty suite")
    threat = threat_of(members)
    assert threat is not None  # internal: the preset's members have a box
    expected = (
        f"norm {threat.geometry.title}, bounds {(threat.box.lower, threat.box.upper)}, "
        f"model_mode {threat.model_mode!r}"
    )
    try:
        threat_of([*members, *reference])
    except ValueError as error:
        raise ValueError(
            f"reference must attack in the preset's threat model ({expected}): {error}"
        ) from None
    for index, attack in enumerate(reference):
        eot = traits_of(attack).eot
        if eot != 1:
            raise ValueError(
                f"reference[{index}] must decide by one pass (eot=1) as the preset does, got "
                f"eot={eot} ({type(attack).__name__}); a randomized model gets rand_attacks"
            )


def suite_of(name: str, attacks: object) -> AttackSuite:
    """``attacks`` as the suite ``name`` (the reference given to the fast preset).

    Raises:
        TypeError: It is not a sequence of attacks.
    """
    if isinstance(attacks, AuditedSuite):
        raise TypeError(
            f"{name} must be a suite without an audit of its own (standard_attacks(), a list "
            f"of attacks), got the audited suite {attacks.name!r}"
        )
    if isinstance(attacks, EpsAttack):
        return AttackSuite(name, [attacks])
    if not isinstance(attacks, (list, tuple)):
        raise TypeError(
            f"{name} must be an AttackSuite or a sequence of attacks, got {type(attacks).__name__}"
        )
    given: Sequence[object] = attacks
    if not given:
        empty = type(given).__name__
        raise ValueError(f"{name} must hold at least one attack, got an empty {empty}")
    checked: list[EpsAttack] = []
    for index, attack in enumerate(given):
        if not isinstance(attack, EpsAttack):
            raise TypeError(
                f"{name}[{index}] must be an attack of signattack (APGD, Square, ...; a "
                f"factory eps -> attack cannot be checked against the preset), got "
                f"{type(attack).__name__}"
            )
        checked.append(attack)
    return AttackSuite(name, checked)
