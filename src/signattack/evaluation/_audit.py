"""The audit and the escalation of the fast preset, decided over the whole dataset.

An audited suite ([`fast_attacks`][signattack.evaluation.fast_attacks] with ``audit=SHARE``)
runs, beside its own members, a reference suite (the standard one) on a seeded share of the
samples at every radius. A sample is audited where a 128-bit digest of the audit's seed, its
values and its label (the digest the random streams use, `signattack.core.streams`) falls
below ``share * 2**128``: the choice travels with the sample, whatever batch, order or process
it lands in. Per batch the evaluation keeps, per radius, how many audited samples the fast
suite left robust that the reference broke (missed) and the reverse (extra), with the
reference's passes, booked apart from the evaluation's cost.

After the sweep, at each radius where the audit found a miss or the suite's probe broke a
sample anywhere in the data, the reference suite runs on every sample the fast suite left
robust there (a second pass over the data, radii in increasing order; a sample broken at a
radius is broken at every larger one). The fast preset's verdicts are then a function of the
dataset, the seed and the settings, never of the batching.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TypeAlias

from signattack._host import HostArray, to_numpy
from signattack._io import Json
from signattack.core.streams import SampleStreams
from signattack.evaluation._cost import BatchCost, PassCount, total
from signattack.evaluation._tables import wilson_interval
from signattack.evaluation.standard import AttackSuite

ESCALATION = "escalated to reference"
"""The name under which the escalation's breaks and passes are reported, beside the attacks."""

_KEYS = 2**128


@dataclass(frozen=True)
class AuditPlan:
    """What an audited suite adds to its evaluation.

    Attributes:
        reference: The suite the audit and the escalation run (the standard one).
        share: The share of the samples audited, in ``(0, 1]``; ``None``: no audit.
        seed: The seed of the choice of the audited samples.
        escalate: Whether the escalation runs where it is called for.
        probe: The index, in the suite, of the probe whose breaks call for the escalation
            (``None``: none).
    """

    reference: AttackSuite
    share: float | None
    seed: int
    escalate: bool = True
    probe: int | None = None

    def settings(self) -> dict[str, Json]:
        """The settings beside the reference, as JSON."""
        return {"share": self.share, "seed": self.seed, "escalate": self.escalate}


class AuditedSuite(AttackSuite):
    """An [`AttackSuite`][signattack.evaluation.AttackSuite] with an audit and an escalation:
    what [`fast_attacks`][signattack.evaluation.fast_attacks] returns.

    Attributes:
        audit: The [`AuditPlan`][signattack.evaluation._audit.AuditPlan].
    """

    audit: AuditPlan

    def __new__(
        cls,
        name: str,
        attacks: Iterable[object],
        randomized: AttackSuite | None,
        audit: AuditPlan,
    ) -> AuditedSuite:
        suite = super().__new__(cls, name, attacks, randomized)  # type: ignore[arg-type]
        assert isinstance(suite, AuditedSuite)  # internal: the class made above
        suite.audit = audit
        return suite

    def __repr__(self) -> str:
        return f"AuditedSuite({self.name!r}, {list(self)!r}, {self.audit.settings()!r})"


def dropped_audit(plan: AuditPlan | None) -> tuple[str, ...]:
    """The warning that the audit ``plan`` asked for does not run: the model is randomized,
    so the evaluation runs the preset's randomized suite, which has no audit."""
    if plan is None or plan.share is None:
        return ()
    return (
        f"the audit (audit={plan.share!r}) was dropped: the model is randomized (two identical "
        "forward passes differ), so the evaluation ran the preset's randomized suite "
        "(rand_attacks), which runs no audit and no escalation",
    )


def chosen(x: object, y: object, share: float, seed: int) -> list[int]:
    """The samples of the batch ``(x, y)`` that the audit of ``share`` and ``seed`` picks:
    each by a digest of the seed, its values (as ``float32``) and its label alone."""
    root = hashlib.blake2b(f"signattack audit {seed}".encode(), digest_size=16).digest()
    keys = SampleStreams.of(root, to_numpy(x), to_numpy(y)).keys
    return [index for index, key in enumerate(keys) if key < share * _KEYS]


def _count(name: str, value: object, most: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= most:
        raise ValueError(f"{name} must be an integer in [0, {most}], got {str(value)[:40]}")
    return value


def _counts(name: str, value: object, length: int, most: int) -> tuple[int, ...]:
    if not isinstance(value, list) or len(value) != length:
        raise ValueError(f"{name} must be a list of {length} counts")
    return tuple(_count(name, item, most) for item in value)


def passes_json(count: PassCount | None) -> Json:
    return None if count is None else count.to_dict()


@dataclass(frozen=True)
class AuditBatch:
    """The audit of one batch.

    Attributes:
        audited: The samples of the batch audited.
        missed: Per radius, audited samples the fast suite left robust and the reference broke.
        extra: Per radius, audited samples the fast suite broke and the reference left robust.
        passes: Per radius, the reference's passes (``None``: not known).
        own: The audit's clean pass (``None``: not known).
        breakers: Per sample, the index of the fast suite's attack that broke it (at the first
            radius where it fell), ``-1`` where none did: what the escalation takes back from
            that attack's count where it broke the sample at a smaller radius.
    """

    audited: int
    missed: tuple[int, ...]
    extra: tuple[int, ...]
    passes: tuple[PassCount | None, ...]
    own: PassCount | None
    breakers: tuple[int, ...] = ()

    @classmethod
    def empty(cls, radii: int, breakers: Sequence[int] = ()) -> AuditBatch:
        """The audit of a batch with no sample chosen."""
        nothing = PassCount(0, 0)
        return cls(0, (0,) * radii, (0,) * radii, (nothing,) * radii, nothing, tuple(breakers))

    @classmethod
    def tally(
        cls,
        fast: Sequence[Sequence[bool]],
        picked: Sequence[int],
        reference: Sequence[Sequence[bool]],
        cost: BatchCost | None,
        breakers: Sequence[int] = (),
    ) -> AuditBatch:
        """The audit of the samples ``picked`` from the fast suite's robust rows ``fast``
        (the whole batch's) and the reference's ``reference`` (the picked samples')."""
        missed, extra = [], []
        for quick, full in zip(fast, reference, strict=True):
            pairs = [(quick[i], held) for i, held in zip(picked, full, strict=True)]
            missed.append(sum(1 for a, b in pairs if a and not b))
            extra.append(sum(1 for a, b in pairs if b and not a))
        passes: tuple[PassCount | None, ...] = (None,) * len(fast)
        if cost is not None:
            passes = tuple(total(row) for row in cost.attacks)
        own = None if cost is None else cost.evaluation
        return cls(len(picked), tuple(missed), tuple(extra), passes, own, tuple(breakers))

    def to_dict(self) -> dict[str, Json]:
        """JSON-ready."""
        return {
            "audited": self.audited,
            "missed": list(self.missed),
            "extra": list(self.extra),
            "passes": [passes_json(count) for count in self.passes],
            "own": passes_json(self.own),
            "breakers": list(self.breakers),
        }

    @classmethod
    def from_dict(cls, data: object, radii: int, size: int) -> AuditBatch:
        """What `to_dict` wrote for a batch of ``size`` samples at ``radii`` radii.

        Raises:
            ValueError: Anything else; the message names the entry (``audit.missed``).
        """
        keys = {"audited", "missed", "extra", "passes", "own", "breakers"}
        if not isinstance(data, dict) or set(data) != keys:
            raise ValueError(f"audit must be an object with the keys {sorted(keys)}")
        audited = _count("audit.audited", data["audited"], size)
        rows = data["passes"]
        if not isinstance(rows, list) or len(rows) != radii:
            raise ValueError(f"audit.passes must be a list of {radii} entries")
        try:
            passes = tuple(PassCount.of_json("audit.passes", row) for row in rows)
            own = PassCount.of_json("audit.own", data["own"])
        except TypeError as error:
            raise ValueError(str(error)) from None
        fell = data["breakers"]
        if not isinstance(fell, list) or len(fell) != size or not all(map(_index, fell)):
            raise ValueError(f"audit.breakers must be a list of {size} attack indices or -1")
        return cls(
            audited,
            _counts("audit.missed", data["missed"], radii, audited),
            _counts("audit.extra", data["extra"], radii, audited),
            passes,
            own,
            tuple(fell),
        )


def _index(value: object) -> bool:
    """Whether ``value`` is an attack's index or ``-1``."""
    return isinstance(value, int) and not isinstance(value, bool) and -1 <= value < 2**31


@dataclass(frozen=True)
class Escalation:
    """The escalation of one batch.

    Attributes:
        robust: Per radius, per sample, robust after the escalation.
        attacked: Per radius, the samples robust when that radius's attacks began: those
            the escalation broke at a smaller radius are not attacked there.
        broken: Per radius, per attack of the suite and then the escalation, the samples it
            broke there (a sample the escalation broke at a smaller radius counts nowhere).
        largest: Per radius, the largest move of its attacks.
        passes: Per radius, its attacks' passes.
        own: Its clean re-checks' passes.
        points: Per radius index where it broke samples, those samples and (where kept)
            their points, in that order.
    """

    robust: tuple[tuple[bool, ...], ...]
    attacked: tuple[int, ...]
    broken: tuple[tuple[int, ...], ...]
    largest: tuple[float, ...]
    passes: tuple[PassCount | None, ...]
    own: PassCount | None
    points: tuple[tuple[int, list[int], HostArray | None], ...]


Ran: TypeAlias = "tuple[tuple[bool, ...], float, BatchCost | None, HostArray | None]"
"""What the reference suite gives on some samples at one radius: their robust flags, its
largest move, its cost, and (where kept) the points that decided them."""


def escalation_record(
    record: dict[str, Json],
    eps: Sequence[float],
    handed: Sequence[int],
    outcome: str,
    radius_text: Callable[[float], str],
) -> tuple[str, ...]:
    """Fill in, per radius where the escalation was needed, ``outcome`` (``"ran"``, ``"off"``,
    ``"not possible"``) and the samples it was or would have been handed; the warnings."""
    radii = record["radii"]
    assert isinstance(radii, dict)  # internal: `summary` made it
    where = []
    for e, count in zip(eps, handed, strict=True):
        entry = radii[str(e)]
        assert isinstance(entry, dict)  # internal: `summary` made it
        if entry["escalation"] == "needed":
            entry["escalation"], entry["handed"] = outcome, count
            where.append(f"{radius_text(e)} ({count} samples)")
    if not where or outcome == "ran":
        return ()
    why = (
        "escalate=False turned it off: evaluate with escalate=True (the default)"
        if outcome == "off"
        else "the data is a one-shot iterator, which cannot be read twice: pass a list or a "
        "DataLoader"
    )
    return (
        f"the fast preset called for the reference suite at eps {', '.join(where)} (the audit "
        f"found a miss or the Square probe broke a sample), but it did not run: {why}; its "
        "robust accuracy there may be an overestimate",
    )


_OUTCOMES = ("ran", "off", "not possible")
"""The escalation's words where it was called for (`escalation_record`)."""


def check_record(
    metadata: Mapping[str, Json],
    eps: Sequence[float],
    samples: int,
    broken_by: Mapping[float, Mapping[str, int]],
) -> None:
    """Refuse a report's ``metadata["audit"]`` that is not what `summary` and
    `escalation_record` write for a report of ``samples`` samples at ``eps`` whose breaks
    are ``broken_by``: every field's type and range, and the rules between them.

    Raises:
        ValueError: It is damaged, or missing where ``broken_by`` names the escalation; the
            message names ``metadata.audit``.
    """
    name = "metadata.audit"
    if "audit" not in metadata:
        if any(ESCALATION in counts for counts in broken_by.values()):
            raise ValueError(
                f"{name} is missing, but broken_by names {ESCALATION!r}: the record of the "
                "audit and the escalation was removed"
            )
        return
    record = metadata["audit"]
    share = record.get("share") if isinstance(record, dict) else None
    keys = {"share", "seed", "escalate", "reference", "radii"} | (
        set() if share is None else {"passes"}
    )
    if not isinstance(record, dict) or set(record) != keys:
        raise ValueError(f"{name} must be an object with the keys {sorted(keys)}")
    if share is not None and (
        isinstance(share, bool) or not isinstance(share, (int, float)) or not 0 < share <= 1
    ):
        raise ValueError(f"{name}.share must be null or a number in (0, 1], got {share!r}")
    _count(f"{name}.seed", record["seed"], 2**63)
    if not isinstance(record["escalate"], bool):
        raise ValueError(f"{name}.escalate must be a bool, got {str(record['escalate'])[:40]}")
    if not isinstance(record["reference"], str) or not record["reference"].isprintable():
        raise ValueError(
            f"{name}.reference must be a one-line str, got {record['reference']!r:.40}"
        )
    if share is not None:
        _pass_count(f"{name}.passes", record["passes"])
    radii = record["radii"]
    if not isinstance(radii, dict) or set(radii) != {str(e) for e in eps}:
        raise ValueError(f"{name}.radii must be an object with the keys {[str(e) for e in eps]}")
    ran = False
    audited_once: set[int] = set()
    for e in eps:
        where = f"{name}.radii[{e}]"
        entry = radii[str(e)]
        if not isinstance(entry, dict):
            raise ValueError(f"{where} must be an object")
        word = entry.get("escalation")
        if word not in ("not needed", *_OUTCOMES):
            raise ValueError(
                f"{where}.escalation must be one of {['not needed', *_OUTCOMES]}, "
                f"got {str(word)[:40]!r}"
            )
        called = word in _OUTCOMES
        keys = {"probe_broke", "escalation"} | ({"handed"} if called else set())
        if share is not None:
            keys |= {"audited", "missed", "extra", "upper", "passes"}
        if set(entry) != keys:
            raise ValueError(f"{where} must be an object with the keys {sorted(keys)}")
        probe = _count(f"{where}.probe_broke", entry["probe_broke"], samples)
        missed = 0
        if share is not None:
            audited = _count(f"{where}.audited", entry["audited"], samples)
            audited_once.add(audited)
            missed = _count(f"{where}.missed", entry["missed"], audited)
            extra = _count(f"{where}.extra", entry["extra"], audited)
            if missed + extra > audited:
                raise ValueError(
                    f"{where}: missed ({missed}) and extra ({extra}) must add up to at most "
                    f"the samples audited ({audited})"
                )
            _check_upper(where, entry["upper"], missed, audited)
            _pass_count(f"{where}.passes", entry["passes"])
        if called != bool(missed or probe):
            due = f"one of {list(_OUTCOMES)}" if missed or probe else "'not needed'"
            raise ValueError(
                f"{where}.escalation must be {due} where the audit missed {missed} and the "
                f"probe broke {probe}, got {word!r}"
            )
        handed = _count(f"{where}.handed", entry["handed"], samples) if called else 0
        escalated = broken_by.get(e, {}).get(ESCALATION, 0)
        if escalated and (word != "ran" or escalated > handed):
            raise ValueError(
                f"{where}: broken_by names {escalated} samples {ESCALATION} at eps {e}, but "
                f"the escalation was {word!r} on {handed} samples"
            )
        ran = ran or word == "ran"
    if len(audited_once) > 1:
        raise ValueError(
            f"{name}: the samples audited must be the same at every radius, got "
            f"{sorted(audited_once)}"
        )
    if ran != any(ESCALATION in broken_by.get(e, {}) for e in eps):
        raise ValueError(
            f"{name}: the escalation ran where broken_by names {ESCALATION!r} and only there"
        )


def _check_upper(where: str, upper: object, missed: int, audited: int) -> None:
    expected = wilson_interval(missed, audited)[1] if audited else 1.0
    if (
        isinstance(upper, bool)
        or not isinstance(upper, (int, float))
        or not math.isclose(upper, expected, rel_tol=1e-9, abs_tol=1e-12)
    ):
        raise ValueError(f"{where}.upper must be {expected!r}, got {str(upper)[:40]}")


def _pass_count(where: str, value: object) -> None:
    try:
        PassCount.of_json(where, value)
    except TypeError as error:
        raise ValueError(str(error)) from None
