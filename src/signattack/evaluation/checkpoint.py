"""Resumable evaluations: per-batch results on disk, bound to the evaluation that made them.

A checkpoint is a JSON file holding the evaluation's identity (library version, norm, model,
attack, radii) and, per finished batch, a digest of that batch's inputs and labels with its
per-sample results. A run resumes only from its own checkpoint: every part of the identity
must match (a checkpoint that records no norm is an L-inf one), every reused batch must have
the digest of the batch now passed, and the data must not have fewer batches (or, once a
pass finished, another number of them). Anything else raises a ``ValueError`` that names
the file and what differs. Every entry is checked on load, so a damaged or edited file is
refused instead of reported.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from signattack._io import Json, finite_nonnegative, parse, write_atomically
from signattack.core.norms import norm_of
from signattack.evaluation._audit import AuditBatch
from signattack.evaluation._cost import NOTHING, BatchCost
from signattack.evaluation._units import outside_ball
from signattack.evaluation.identity import Identity

__all__: list[str] = []  # internal: nothing here is public API

CHECKPOINT_FORMAT = 2
"""The version of the checkpoint file's layout."""

_START_AFRESH = "delete it, or pass another checkpoint path, to start afresh"

_UNRECORDED: dict[str, Json] = {"norm": "linf"}
"""What a checkpoint that lacks a part of the identity was written with: every checkpoint
before the L2 threat model is an L-inf one."""


Broken = tuple[tuple[int, ...], ...]
"""Per eps, per attack, the samples it broke."""


class _Damaged(Exception):
    """An entry of a checkpoint that is not what this module writes."""


@dataclass(frozen=True)
class BatchResult:
    """The per-sample results of one batch at every eps.

    Attributes:
        digest: The batch's digest (`batch_digest`),
            or ``""`` when no checkpoint is kept.
        clean: Per sample, classified correctly without attack.
        robust: Per eps, per sample, still classified correctly under the attack.
        largest: Per eps, the largest perturbation the attack produced in this batch.
        attacked: Per eps, how many samples of this batch were attacked.
        broken: Per eps, per attack in order, how many samples it broke.
        problems: What [`check_gradients`][signattack.probes.check_gradients] found on this batch
            (checked on the first batch only).
        cost: The model's passes on this batch: per eps, per attack, and the evaluation's
            own; ``None`` where not known (a checkpoint written before they were counted).
        audit: The audit of the batch, where the suite audits (`AuditBatch`).
    """

    digest: str
    clean: tuple[bool, ...]
    robust: tuple[tuple[bool, ...], ...]
    largest: tuple[float, ...]
    attacked: tuple[int, ...]
    broken: tuple[tuple[int, ...], ...]
    problems: tuple[str, ...] = ()
    cost: BatchCost | None = None
    audit: AuditBatch | None = None

    @property
    def size(self) -> int:
        """The number of samples in the batch."""
        return len(self.clean)

    def to_dict(self) -> dict[str, Json]:
        """JSON-ready."""
        return {
            "digest": self.digest,
            "size": self.size,
            "clean": list(self.clean),
            "robust": [list(row) for row in self.robust],
            "largest": list(self.largest),
            "attacked": list(self.attacked),
            "broken": [list(row) for row in self.broken],
            "problems": list(self.problems),
            "cost": None if self.cost is None else self.cost.to_dict(),
            **({} if self.audit is None else {"audit": self.audit.to_dict()}),
        }

    @classmethod
    def from_dict(cls, data: Json, radii: tuple[float, ...], attacks: int) -> BatchResult:
        """The result [`to_dict`][signattack.evaluation.RobustnessReport.to_dict] wrote, checked
        entry by entry.

        Beyond types and lengths, the results must be consistent: a sample broken at one eps is
        broken at every larger eps, and the samples attacked at an eps are exactly those that
        survived the previous one.

        Raises:
            _Damaged: Anything is missing, of the wrong type or inconsistent.
        """
        if not isinstance(data, dict):
            raise _Damaged(f"a batch entry must be an object, got {type(data).__name__}")
        expected = {
            "digest",
            "size",
            "clean",
            "robust",
            "largest",
            "attacked",
            "broken",
            "problems",
        }
        if set(data) - {"cost", "audit"} != expected:  # no cost: before passes were counted
            raise _Damaged(f"a batch entry must have the keys {sorted(expected)} and cost")
        digest, size = data["digest"], data["size"]
        if not isinstance(digest, str):
            raise _Damaged("digest must be a string")
        if not isinstance(size, int) or isinstance(size, bool) or size < 1:
            raise _Damaged(f"size must be an integer >= 1, got {_shown(size)}")
        clean = _flags(data["clean"], size, "clean")
        count = len(radii)
        robust_rows = _list(data["robust"], count, "robust")
        robust = tuple(_flags(row, size, "robust") for row in robust_rows)
        largest = tuple(
            _number(value, eps)
            for value, eps in zip(_list(data["largest"], count, "largest"), radii, strict=True)
        )
        attacked = tuple(
            _count(value, size) for value in _list(data["attacked"], count, "attacked")
        )
        broken = tuple(
            tuple(_count(value, size) for value in _list(row, attacks, "broken"))
            for row in _list(data["broken"], count, "broken")
        )
        survivors = clean
        for row, count, fooled in zip(robust, attacked, broken, strict=True):
            if any(now and not before for now, before in zip(row, survivors, strict=True)):
                raise _Damaged("a sample is robust at an eps after it was broken")
            if count != sum(survivors):
                raise _Damaged("attacked counts do not match the samples that survived")
            if sum(fooled) != count - sum(row):
                raise _Damaged("broken counts do not match the samples that were broken")
            survivors = row
        problems = _sentences(data["problems"])
        cost = None
        if data.get("cost") is not None:
            try:
                cost = BatchCost.from_dict(data["cost"], len(radii), attacks)
            except (TypeError, ValueError) as error:
                raise _Damaged(str(error)) from None
            _check_idle(cost, attacked, broken)
        audit = None
        if "audit" in data:
            try:
                audit = AuditBatch.from_dict(data["audit"], len(radii), size)
            except ValueError as error:
                raise _Damaged(str(error)) from None
        return cls(digest, clean, robust, largest, attacked, broken, problems, cost, audit)


def _check_idle(cost: BatchCost, attacked: tuple[int, ...], broken: Broken) -> None:
    """Refuse passes stated for an attack that had no sample left to attack."""
    for row, handed, fooled in zip(cost.attacks, attacked, broken, strict=True):
        for count, some in zip(row, fooled, strict=True):
            if handed == 0 and count is not None and count != NOTHING:
                raise _Damaged("cost states passes of an attack that had no sample to attack")
            handed -= some


def _shown(value: Json) -> str:
    """``repr(value)`` cut short: a damaged file may hold integers too long to print."""
    try:
        text = repr(value)
    except ValueError:  # an int beyond Python's limit on digits to convert
        return "an integer too long to print"
    return text if len(text) <= 60 else text[:57] + "..."


def _list(value: Json, length: int, name: str) -> list[Json]:
    if not isinstance(value, list) or len(value) != length:
        raise _Damaged(f"{name} must be a list of {length} entries")
    return value


def _flags(value: Json, length: int, name: str) -> tuple[bool, ...]:
    items = _list(value, length, name)
    flags = tuple(item for item in items if isinstance(item, bool))
    if len(flags) != len(items):
        raise _Damaged(f"{name} must hold true/false values")
    return flags


def _sentences(value: Json) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise _Damaged("problems must be a list of sentences")
    return tuple(str(item) for item in value)


def _number(value: Json, eps: float) -> float:
    """A largest perturbation at radius ``eps``: a finite number in ``[0, eps]``, up to the
    rounding of the coarsest floating dtype an attack may run in (``bfloat16``)."""
    number = finite_nonnegative(value)
    if number is None:
        raise _Damaged(f"largest must hold finite numbers >= 0, got {_shown(value)}")
    if outside_ball(number, eps):
        raise _Damaged(f"largest holds {number!r} at eps {eps!r}: outside the ball")
    return number


def _count(value: Json, size: int) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= size:
        raise _Damaged(f"attacked must hold counts in [0, {size}], got {_shown(value)}")
    return value


@dataclass
class Checkpoint:
    """The finished batches of one evaluation, kept in a file (or only in memory).

    Attributes:
        path: The file, or ``None`` to keep nothing on disk.
        identity: What the evaluation is; ``None`` where nothing is kept on disk.
        batches: Per batch index, its result.
        total: The number of batches of a finished pass, once one has finished.
    """

    path: Path | None
    identity: Identity | None
    batches: dict[int, BatchResult] = field(default_factory=dict)
    total: int | None = None

    @classmethod
    def open(cls, path: Path | None, identity: Identity | None) -> Checkpoint:
        """The checkpoint at ``path`` if there is one, checked against ``identity``.

        Raises:
            ValueError: The file is not a checkpoint, is damaged, or belongs to another
                evaluation; the message names the file, what is wrong and what to do.
        """
        if path is None or identity is None or not path.exists():
            return cls(path, identity)
        document = _read(path)
        for part, value in identity.to_dict().items():
            there = _spelled(part, document.identity.get(part, _UNRECORDED.get(part)))
            if there != value:
                raise ValueError(
                    f"checkpoint {path} belongs to another evaluation: "
                    f"{_difference(part, there, value)}; {_START_AFRESH}"
                )
        batches: dict[int, BatchResult] = {}
        for key, entry in document.batches.items():
            try:
                if not (key.isascii() and key.isdigit() and len(key) <= 18):
                    raise _Damaged(f"batch keys must be indices, got {key[:40]!r}")
                batches[int(key)] = BatchResult.from_dict(entry, identity.eps, identity.attacks)
            except _Damaged as error:
                raise ValueError(
                    f"checkpoint {path} is damaged (batch {key}: {error}); {_START_AFRESH}"
                ) from None
        return cls(path, identity, batches, document.total)

    def result(self, index: int, digest: str, size: int) -> BatchResult | None:
        """The stored result of batch ``index``, if its data has ``digest`` and ``size``.

        Raises:
            ValueError: The checkpoint holds a result for another batch at this index, or
                one whose size is not the batch's, or it recorded a finished pass over
                fewer batches than the data has (refused before anything is written).
        """
        stored = self.batches.get(index)
        if stored is None and self.total is not None and index >= self.total:
            raise ValueError(
                f"checkpoint {self.path} belongs to another evaluation: the data has at least "
                f"{index + 1} batches, the checkpoint was written for {self.total}; "
                f"{_START_AFRESH}"
            )
        if stored is not None and stored.digest != digest:
            raise ValueError(
                f"checkpoint {self.path} belongs to another evaluation: the data differs at "
                f"batch {index} (its inputs, labels or size changed); {_START_AFRESH}"
            )
        if stored is not None and stored.size != size:
            raise ValueError(
                f"checkpoint {self.path} is damaged (batch {index}: {stored.size} results for "
                f"{size} samples); {_START_AFRESH}"
            )
        return stored

    def record(self, index: int, result: BatchResult) -> None:
        """Keep ``result`` and write the file."""
        self.batches[index] = result
        self._save()

    def finish(self, seen: int) -> None:
        """Close a pass over ``seen`` batches: check the count and record it.

        Raises:
            ValueError: The checkpoint holds results for batches the data does not have,
                or recorded a pass over another number of batches.
        """
        beyond = sorted(index for index in self.batches if index >= seen)
        if beyond or (self.total is not None and self.total != seen):
            recorded = self.total if self.total is not None else f"at least {beyond[-1] + 1}"
            raise ValueError(
                f"checkpoint {self.path} belongs to another evaluation: the data has {seen} "
                f"batches, the checkpoint was written for {recorded}; {_START_AFRESH}"
            )
        if self.total != seen:
            self.total = seen
            self._save()

    def _save(self) -> None:
        if self.path is None or self.identity is None:
            return
        document = {
            "format": CHECKPOINT_FORMAT,
            "identity": self.identity.to_dict(),
            "total": self.total,
            "batches": {str(k): v.to_dict() for k, v in sorted(self.batches.items())},
        }
        write_atomically(self.path, json.dumps(document).encode())


@dataclass(frozen=True)
class _Document:
    """A checkpoint file's top level, checked for shape (the batches are checked later)."""

    identity: dict[str, Json]
    total: int | None
    batches: dict[str, Json]


def _read(path: Path) -> _Document:
    """The checkpoint's top level, checked for shape (entries are checked by the caller)."""
    if not path.is_file():
        raise ValueError(f"checkpoint {path} must be a file, got a folder or a special file")
    try:
        data = parse(path.read_bytes())
    except RecursionError:
        raise ValueError(
            f"checkpoint {path} is not a signattack checkpoint (nested too deeply); {_START_AFRESH}"
        ) from None
    except ValueError as error:  # not JSON, not UTF-8, or a number too long to convert
        raise ValueError(
            f"checkpoint {path} is not a signattack checkpoint (not JSON, empty or truncated: "
            f"{str(error)[:200]}); {_START_AFRESH}"
        ) from None
    if isinstance(data, dict) and "fingerprint" in data and "format" not in data:
        raise ValueError(
            f"checkpoint {path} was written by signattack 0.1.0 (format 1), which did not bind "
            f"checkpoints to their model and data; {_START_AFRESH}"
        )
    if not isinstance(data, dict) or "format" not in data:
        raise ValueError(f"checkpoint {path} is not a signattack checkpoint; {_START_AFRESH}")
    if data["format"] != CHECKPOINT_FORMAT:
        raise ValueError(
            f"checkpoint {path} has format {_shown(data['format'])}, this version reads "
            f"{CHECKPOINT_FORMAT}; {_START_AFRESH}"
        )
    identity, total, batches = data.get("identity"), data.get("total"), data.get("batches")
    if (
        not isinstance(identity, dict)
        or not isinstance(batches, dict)
        or not (total is None or (type(total) is int and total >= 1))
    ):
        raise ValueError(
            f"checkpoint {path} is damaged (identity, batches or total missing or of the "
            f"wrong type); {_START_AFRESH}"
        )
    return _Document(identity, total, batches)


def _spelled(part: str, recorded: Json | None) -> Json | None:
    """A recorded part as the identity spells it: a norm by its name (``"L2"`` and
    ``"Linf"`` are ``"l2"`` and ``"linf"``: a spelling is not another norm)."""
    if part == "norm" and isinstance(recorded, str):
        try:
            return norm_of(recorded).name
        except ValueError:
            return recorded
    return recorded


def _title(name: object) -> str:
    """A recorded norm's name as people write it (``L-inf``, ``L2``), or as recorded."""
    if isinstance(name, str):
        try:
            return norm_of(name).title
        except ValueError:
            return repr(name[:40])
    return f"unknown ({type(name).__name__})"


def _difference(part: str, there: object, here: object) -> str:
    if part == "version":
        return f"it was written by signattack {there}, this is {here}"
    if part == "eps":
        return f"the eps differ ({there} there, {here} here)"
    if part == "norm":
        return (
            f"it was written for an evaluation in the {_title(there)} norm, this one is in "
            f"the {_title(here)} norm"
        )
    if part == "model":
        return "the model differs (its class, parameters or buffers)"
    if part in ("attack", "attacks"):
        return "the attack differs (its class or settings)"
    return f"the {part} differs"
