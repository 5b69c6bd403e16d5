"""Dataclasses to and from flat string fields, as stream entries hold them.

One codec serves every command and event type: a field's type annotation says how its
string is read (``uuid.UUID``, ``int``, ``datetime``, ``str``), so adding a type to a
stream is adding it to that stream's registry, not writing a codec.
"""

from __future__ import annotations

import dataclasses
import typing
import uuid
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any


class MalformedEntry(ValueError):
    """A stream entry that is not a command (or event) this version understands."""


def _to_text(value: object) -> str:
    if isinstance(value, datetime):
        return value.isoformat()
    return str(value)


# A field's type to what its string is called in an error, and how it is read.
_READERS: dict[object, tuple[str, Callable[[str], Any]]] = {
    str: ("string", str),
    int: ("integer", int),
    uuid.UUID: ("UUID", uuid.UUID),
    datetime: ("ISO 8601 time", datetime.fromisoformat),
}


_Schema = tuple[tuple[str, str, Callable[[str], Any]], ...]
_SCHEMAS: dict[type, _Schema] = {}


def _schema(kind: type) -> _Schema:
    """Each field's name and reader, worked out once per type."""
    schema = _SCHEMAS.get(kind)
    if schema is None:
        hints = typing.get_type_hints(kind)
        schema = tuple((f.name, *_READERS[hints[f.name]]) for f in dataclasses.fields(kind))
        _SCHEMAS[kind] = schema
    return schema


def to_fields(value: Any) -> dict[str, str]:
    return {f.name: _to_text(getattr(value, f.name)) for f in dataclasses.fields(value)}


def from_fields(kind: type[Any], fields: Mapping[str, str]) -> Any:
    values: dict[str, Any] = {}
    for name, label, reader in _schema(kind):
        text = fields.get(name)
        if text is None:
            raise MalformedEntry(f"missing field {name!r}")
        try:
            values[name] = reader(text)
        except ValueError:
            raise MalformedEntry(f"field {name!r} is not a {label}") from None
    return kind(**values)
