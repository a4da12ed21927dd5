"""What an evaluation cost: the sample-passes its model saw, per radius and attack, and the
evaluation's own (the clean pass with its draws, the decision re-checks of the claimed
breaks, the first batch's units and gradient probes, the randomness check of a preset).

One sample through the model's forward pass is one forward pass, through its backward pass
(an input gradient) one backward pass; every EOT draw counts. A backward pass costs about
two forward ones, so totals are stated in forward-equivalents, ``forward + 2 * backward``,
as AutoAttack's cost usually is. The counts are exact and the same on every machine.
``None`` is a count that is not known, never a made-up ``0``: an attack whose result does
not count its passes, or a checkpoint written before counts were kept. The evaluation's own
passes are counted where the attacks count theirs (`Meter`), so they are known on every
backend.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass

from signattack._fields import set_field
from signattack._io import Json, ReadOnly, as_text
from signattack.attacks import AttackResult
from signattack.backends.batch import CountedModel, Passes


def library_made(attack: object) -> bool:
    """Whether ``attack`` is an instance of a class the library defines (in a ``signattack``
    module): the only attacks taken at their word, for the passes their results count
    (`of_result`) and for the paper name they give (`said_name`). A user's subclass of a
    library attack is the user's: its ``run`` may do anything."""
    return _library_class(type(attack))


def _library_class(cls: type) -> bool:
    module: object = getattr(cls, "__module__", None)
    return isinstance(module, str) and module.split(".")[0] == "signattack"


def _name_said(attack: object) -> object:
    """``attack.name``; ``None`` where reading it fails (a user's property that raises
    names nothing)."""
    try:
        return getattr(attack, "name", None)
    except Exception:  # any failure of a user's property: no name, never a crash
        return None


def says_name(attack: object) -> bool:
    """Whether ``attack`` has a name to say: a ``name`` that reads as a string."""
    return isinstance(_name_said(attack), str)


def said_name(attack: object) -> str:
    """The name a report gives ``attack``: the ``name`` it says where the library's own class
    says it (``APGD-CE``, ``FAB-T``) or where a user's class defines it itself (not inherited
    from a library class, whose name would credit the library's attack with what the user's
    does); the class's name otherwise (``NoOpAPGD`` for ``class NoOpAPGD(APGD)``), and where
    the name said is not a string with something other than whitespace in it."""
    cls = type(attack)
    held: object = getattr(attack, "__dict__", None)
    owner = next((base for base in cls.__mro__ if "name" in vars(base)), None)
    own = (isinstance(held, dict) and "name" in held) or (
        owner is not None and owner is not object and not _library_class(owner)
    )
    if library_made(attack) or own:
        named = _name_said(attack)
        if isinstance(named, str) and named.strip():
            return named
    return cls.__name__


def _count(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name}: expected an int count of passes, got {type(value).__name__}")
    if value < 0:
        raise ValueError(f"{name}: expected a count of passes >= 0, got {value}")
    return value


@dataclass(frozen=True)
class PassCount:
    """Sample-passes through a model.

    Attributes:
        forward: Samples through its forward pass.
        backward: Samples through its backward pass (input gradients).

    Raises:
        TypeError, ValueError: A count is not an ``int >= 0`` (``bool`` is refused).
    """

    forward: int
    backward: int

    def __post_init__(self) -> None:
        _count("forward", self.forward)
        _count("backward", self.backward)

    @property
    def forward_equivalents(self) -> int:
        """``forward + 2 * backward``: a backward pass counts as two forward ones."""
        return self.forward + 2 * self.backward

    def __add__(self, other: object) -> PassCount:
        if not isinstance(other, PassCount):
            raise TypeError(f"a PassCount adds to a PassCount, got {type(other).__name__}")
        return PassCount(self.forward + other.forward, self.backward + other.backward)

    def to_dict(self) -> dict[str, Json]:
        """JSON-ready."""
        return {"forward": self.forward, "backward": self.backward}

    @classmethod
    def of_json(cls, name: str, value: object) -> PassCount | None:
        """What [`to_dict`][signattack.evaluation.PassCount.to_dict] wrote, or ``None``
        for JSON ``null`` (not known).

        Raises:
            TypeError, ValueError: Anything else; the message names ``name``.
        """
        if value is None:
            return None
        if not isinstance(value, Mapping):
            raise ValueError(f"{name} must be null or an object with forward and backward")
        fields: Mapping[object, object] = value
        if set(fields) != {"forward", "backward"}:
            raise ValueError(f"{name} must be null or an object with forward and backward")
        return cls(
            _count(f"{name}.forward", fields["forward"]),
            _count(f"{name}.backward", fields["backward"]),
        )


NOTHING = PassCount(0, 0)
"""The cost of an attack that had no sample left to attack."""


def total(counts: Iterable[PassCount | None]) -> PassCount | None:
    """The sum of ``counts``; ``None`` where any is not known."""
    summed = NOTHING
    for count in counts:
        if count is None:
            return None
        summed = summed + count
    return summed


def of_result(result: object, attack: str, made_by: object) -> PassCount | None:
    """The passes an attack's result states (``forward_passes``, ``backward_passes`` of an
    [`AttackResult`][signattack.attacks.AttackResult]), where ``made_by``, the attack that
    returned it, is one of the library's, whose counts are made at the model; ``None`` where
    it does not count them, or is another kind of result, or the attack is a user's (one that
    may call the model more often than the result it returns says: "best of two attacks").

    Raises:
        TypeError, ValueError: The result states counts that are not ``int >= 0``.
    """
    if not isinstance(result, AttackResult) or not library_made(made_by):
        return None
    forward, backward = result.forward_passes, result.backward_passes
    if forward is None or backward is None:
        return None
    try:
        return PassCount(_count("forward_passes", forward), _count("backward_passes", backward))
    except (TypeError, ValueError) as error:
        raise type(error)(f"the attack {attack} returned a result with {error}") from None


@dataclass(frozen=True)
class BatchCost:
    """The passes of one batch: per radius, per attack of the suite in order, and the
    evaluation's own on that batch (``None``: not known)."""

    attacks: tuple[tuple[PassCount | None, ...], ...]
    evaluation: PassCount | None

    def to_dict(self) -> dict[str, Json]:
        """JSON-ready."""
        return {
            "attacks": [[_json(count) for count in row] for row in self.attacks],
            "evaluation": _json(self.evaluation),
        }

    @classmethod
    def from_dict(cls, data: Json, radii: int, attacks: int) -> BatchCost:
        """What `to_dict` wrote for
        ``radii`` radii and ``attacks`` attacks.

        Raises:
            TypeError, ValueError: Anything else.
        """
        fields = _fields_of(data, "cost must be an object with attacks and evaluation")
        rows: object = fields["attacks"]
        if not isinstance(rows, list) or len(rows) != radii:
            raise ValueError(f"cost.attacks must be a list of {radii} entries")
        table = []
        entries: list[object] = rows
        for row in entries:
            if not isinstance(row, list) or len(row) != attacks:
                raise ValueError(f"cost.attacks must hold lists of {attacks} entries")
            counts: list[object] = row
            table.append(tuple(PassCount.of_json("cost.attacks", count) for count in counts))
        evaluation = PassCount.of_json("cost.evaluation", fields["evaluation"])
        return cls(tuple(table), evaluation)


def _fields_of(data: object, wrong: str) -> Mapping[object, object]:
    """``data`` as an object with exactly ``attacks`` and ``evaluation``; ``wrong`` otherwise."""
    if not isinstance(data, dict):
        raise ValueError(wrong)
    fields: Mapping[object, object] = data
    if set(fields) != {"attacks", "evaluation"}:
        raise ValueError(wrong)
    return fields


def _json(count: PassCount | None) -> Json:
    return None if count is None else count.to_dict()


@dataclass(frozen=True)
class Cost:
    """The passes an evaluation's model saw.

    Attributes:
        attacks: Per radius, per attack name (the names of ``broken_by``, in the order the
            attacks ran), the passes that attack made there (``0`` where no sample was
            left to attack; ``None`` where its result does not count them).
        evaluation: The evaluation's own passes, outside the attacks (``None``: not known).

    Raises:
        TypeError, ValueError: A field is not what it says above (the message names it).
    """

    attacks: Mapping[float, Mapping[str, PassCount | None]]
    evaluation: PassCount | None

    def __post_init__(self) -> None:
        if not isinstance(self.attacks, Mapping):
            raise TypeError(f"cost.attacks must be a mapping, got {type(self.attacks).__name__}")
        checked: dict[float, ReadOnly[str, PassCount | None]] = {}
        for eps, row in self.attacks.items():
            name = f"cost.attacks[{eps!r}]"
            if isinstance(eps, bool) or not isinstance(eps, (int, float)):
                raise TypeError(f"cost.attacks must be keyed by radii, got {eps!r}")
            if not isinstance(row, Mapping):
                raise TypeError(f"{name} must be a mapping, got {type(row).__name__}")
            checked[float(eps)] = ReadOnly(
                {as_text(name, attack): _counted(name, n) for attack, n in row.items()}
            )
        set_field(self, "attacks", ReadOnly(checked))
        set_field(self, "evaluation", _counted("cost.evaluation", self.evaluation))

    def at(self, eps: float) -> PassCount | None:
        """The passes of every attack at ``eps`` (``None``: some count is not known).

        Raises:
            ValueError: ``eps`` is not one of the cost's radii.
        """
        if eps not in self.attacks:
            radii = list(self.attacks)
            raise ValueError(f"eps must be one of the cost's radii {radii}, got {eps!r}")
        return total(self.attacks[eps].values())

    @property
    def total(self) -> PassCount | None:
        """Every pass: the attacks' at every radius and the evaluation's own."""
        return total([*(self.at(eps) for eps in self.attacks), self.evaluation])

    def to_dict(self) -> dict[str, Json]:
        """JSON-ready (radii as strings)."""
        return {
            "attacks": {
                str(eps): {name: _json(n) for name, n in row.items()}
                for eps, row in self.attacks.items()
            },
            "evaluation": _json(self.evaluation),
        }

    @classmethod
    def from_dict(cls, data: Json, eps: Sequence[float]) -> Cost:
        """What [`to_dict`][signattack.evaluation.Cost.to_dict] wrote for the radii
        ``eps``.

        Raises:
            TypeError, ValueError: Anything else (the message names the entry).
        """
        fields = _fields_of(data, "cost must be null or an object with attacks and evaluation")
        found: object = fields["attacks"]
        keys = [str(e) for e in eps]
        if not isinstance(found, dict):
            raise ValueError(f"cost.attacks must have the keys {keys}")
        rows: dict[object, object] = found
        if set(rows) != set(keys):
            raise ValueError(f"cost.attacks must have the keys {keys}")
        attacks: dict[float, Mapping[str, PassCount | None]] = {}
        for e in eps:
            row = rows[str(e)]
            if not isinstance(row, dict):
                raise TypeError(f"cost.attacks[{e!r}] must be an object")
            counts: dict[object, object] = row
            attacks[e] = {
                str(k): PassCount.of_json(f"cost.attacks[{e!r}]", v) for k, v in counts.items()
            }
        return cls(attacks, PassCount.of_json("cost.evaluation", fields["evaluation"]))


def _counted(name: str, value: object) -> PassCount | None:
    if value is None or isinstance(value, PassCount):
        return value
    raise TypeError(f"{name}: expected a PassCount or None, got {type(value).__name__}")


def checked_cost(
    cost: object, eps: tuple[float, ...], broken_by: Mapping[float, Mapping[str, int]]
) -> Cost | None:
    """``cost`` as a report holds it: ``None`` (not recorded), or a `Cost` with every
    radius of ``eps`` and, where ``broken_by`` names the attacks at a radius, exactly
    those names in that order.

    Raises:
        TypeError, ValueError: It is neither, or its radii or names differ.
    """
    if cost is None:
        return None
    if not isinstance(cost, Cost):
        raise TypeError(f"cost must be a Cost or None, got {type(cost).__name__}")
    if set(cost.attacks) != set(eps):
        raise ValueError(f"cost.attacks must have the keys {list(eps)}, got {list(cost.attacks)}")
    for e, counts in broken_by.items():
        if list(cost.attacks[e]) != list(counts):
            raise ValueError(
                f"cost.attacks[{e!r}] must name the attacks of broken_by[{e!r}] "
                f"{list(counts)}, got {list(cost.attacks[e])}"
            )
    return Cost({e: cost.attacks[e] for e in eps}, cost.evaluation)


def summed(
    batches: Sequence[BatchCost | None],
    eps: tuple[float, ...],
    names: Sequence[str],
    outside: PassCount | None,
) -> Cost:
    """The cost of an evaluation from its batches' (``None``: a batch whose counts are
    not known) and the passes it made outside every batch."""
    attacks = {
        e: {
            name: total(None if b is None else b.attacks[i][j] for b in batches)
            for j, name in enumerate(names)
        }
        for i, e in enumerate(eps)
    }
    own = total([*(None if b is None else b.evaluation for b in batches), outside])
    return Cost(attacks, own)


def totals_json(cost: Cost, samples: int) -> Json:
    """The totals a report's metadata records (``null`` where not known)."""
    spent = cost.total
    if spent is None:
        return None
    return {
        **spent.to_dict(),
        "forward_equivalents": spent.forward_equivalents,
        "per_sample": spent.forward_equivalents / samples,
    }


def per_sample(count: PassCount | None, samples: int) -> str:
    """Forward-equivalent passes per sample, as a table shows them."""
    if count is None:
        return "unknown"
    return "-" if samples == 0 else f"{count.forward_equivalents / samples:,.1f}"


def cost_note(cost: Cost, samples: int) -> str:
    """The line a table ends with: the total and what it means."""
    spent = cost.total
    if spent is None:
        return (
            "cost: unknown (an attack did not count its model passes, or the batches were "
            "resumed from a checkpoint written before passes were counted)"
        )
    return (
        f"cost: {spent.forward_equivalents:,} forward-equivalent model passes "
        f"({spent.forward:,} forward, {spent.backward:,} backward, a backward counting "
        f"as two), {spent.forward_equivalents / samples:,.1f} per sample"
    )


def cost_rows(
    cost: Cost,
    attacked: Mapping[float, int],
    broken_by: Mapping[float, Mapping[str, int]],
    samples: int,
    shown: Callable[[float], str],
) -> list[list[str]]:
    """Per radius and attack: forward, backward, forward-equivalents, and those per sample
    the attack was handed (the samples attacked at the radius less those the attacks before
    it broke); then the evaluation's own and the total, per sample evaluated."""

    def row(eps: str, name: str, count: PassCount | None, handed: int) -> list[str]:
        if count is None:
            return [eps, name, "unknown", "unknown", "unknown", "unknown"]
        return [
            eps,
            name,
            f"{count.forward:,}",
            f"{count.backward:,}",
            f"{count.forward_equivalents:,}",
            per_sample(count, handed),
        ]

    rows = []
    for e, counts in cost.attacks.items():
        handed = attacked[e]
        for name, count in counts.items():
            rows.append(row(shown(e), name, count, handed))
            handed -= broken_by.get(e, {}).get(name, 0)
    rows.append(row("", "evaluation", cost.evaluation, samples))
    rows.append(row("", "total", cost.total, samples))
    return rows


COST_HEADER = ["eps", "attack", "forward", "backward", "forward-equivalents", "per sample"]
"""The header of `cost_rows`."""


class Meter:
    """The passes of the evaluation's own calls of a model: the evaluation hands those calls
    `around` ``model`` instead of the model (the attacks get the model itself and count their
    own passes). Every batch opened on it counts its passes where an attack counts its own,
    so the count is exact on every backend."""

    def __init__(self) -> None:
        self.passes = Passes()

    def around(self, model: object) -> CountedModel:
        """``model`` with this meter's count, for any backend (the batch opened on it picks
        the backend). Only a batch runs it (`signattack.backends.batch.CountedModel`)."""
        return CountedModel(model, self.passes)

    def spent(self) -> PassCount:
        """The passes counted so far."""
        return PassCount(self.passes.forward, self.passes.backward)
