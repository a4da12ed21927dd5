"""Dataclasses read and rebuilt field by field, with their values typed as ``object``.

The attacks' update rules and states, and the attacks themselves, are dataclasses; the
loop merges states field by field, the JAX backend rebuilds rules inside compiled code, and
the evaluation describes attacks by their settings. They all go through here.
"""

from __future__ import annotations

import dataclasses
from typing import TypeVar

T = TypeVar("T")


def field_values(value: object) -> dict[str, object] | None:
    """The fields of a dataclass instance by name, in order; ``None`` for anything else."""
    if not dataclasses.is_dataclass(value) or isinstance(value, type):
        return None
    return {field.name: getattr(value, field.name) for field in dataclasses.fields(value)}


def init_values(value: object) -> dict[str, object] | None:
    """The fields of a dataclass instance that its constructor takes, by name, in order;
    ``None`` for anything else. What [`replaced`][signattack._fields.replaced] may change: a
    field the constructor does not take is derived from the others and made again."""
    if not dataclasses.is_dataclass(value) or isinstance(value, type):
        return None
    return {
        field.name: getattr(value, field.name) for field in dataclasses.fields(value) if field.init
    }


def field_defaults(value: object) -> dict[str, object]:
    """The default of every field of a dataclass (or its instance) that has one, by name;
    a default factory is called."""
    if not dataclasses.is_dataclass(value):
        return {}
    defaults: dict[str, object] = {}
    for field in dataclasses.fields(value):
        if field.default is not dataclasses.MISSING:
            defaults[field.name] = field.default
        elif field.default_factory is not dataclasses.MISSING:
            defaults[field.name] = field.default_factory()
    return defaults


def replaced(value: T, changes: dict[str, object]) -> T:
    """``dataclasses.replace(value, **changes)``, typed as ``value``.

    Raises:
        TypeError: ``value`` is not a dataclass instance.
    """
    if not dataclasses.is_dataclass(value) or isinstance(value, type):
        raise TypeError(f"value must be a dataclass instance, got {type(value).__name__}")
    return dataclasses.replace(value, **changes)


def set_field(instance: object, name: str, value: object) -> None:
    """Set the field ``name`` of a frozen dataclass ``instance`` (in its ``__post_init__``, to a
    checked or derived value): ``object.__setattr__``, whose value typeshed types as ``Any``."""
    object.__setattr__(instance, name, value)
