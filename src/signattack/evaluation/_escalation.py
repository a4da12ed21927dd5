"""The audit and the escalation of an audited suite, run by the sweep (see
`signattack.evaluation._audit`)."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable

from signattack._host import HostArray, copy_of, put_rows
from signattack._typing import Array, device_of, namespace
from signattack.core.kernels import take_samples
from signattack.evaluation._audit import AuditBatch, AuditPlan, Ran, chosen, escalate, escalated
from signattack.evaluation._batch import batches, evaluate_batch
from signattack.evaluation._judging import Plan
from signattack.evaluation.adversarial import Collected
from signattack.evaluation.checkpoint import BatchResult
from signattack.evaluation.distributed import PeerFailure, Ranks
from signattack.evaluation.identity import batch_digest

__all__: list[str] = []  # internal: the sweep's parts


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
