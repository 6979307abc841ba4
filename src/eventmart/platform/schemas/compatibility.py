"""Avro schema normalization and compatibility checking, in the registry's terms.

The Avro resolution rules themselves come from Apache Avro's
`ReaderWriterCompatibilityChecker`; this module only decides which pairs to check for a
compatibility mode and turns the checker's findings into sentences that name the field,
the version and the location, e.g. "reader field 'sku' has no default and is missing in
writer version 2 (at /fields/1)".
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

import avro.errors
import avro.schema
import fastavro
import orjson
from avro.compatibility import (
    ReaderWriterCompatibilityChecker,
    SchemaCompatibilityResult,
    SchemaCompatibilityType,
)

from eventmart.platform.errors import InvalidSchemaError
from eventmart.platform.schemas.registry import CompatibilityMode

NEW_SCHEMA = "the new schema"

_T = TypeVar("_T")

_BACKWARD = {
    CompatibilityMode.BACKWARD,
    CompatibilityMode.BACKWARD_TRANSITIVE,
    CompatibilityMode.FULL,
    CompatibilityMode.FULL_TRANSITIVE,
}
_FORWARD = {
    CompatibilityMode.FORWARD,
    CompatibilityMode.FORWARD_TRANSITIVE,
    CompatibilityMode.FULL,
    CompatibilityMode.FULL_TRANSITIVE,
}
_TRANSITIVE = {
    CompatibilityMode.BACKWARD_TRANSITIVE,
    CompatibilityMode.FORWARD_TRANSITIVE,
    CompatibilityMode.FULL_TRANSITIVE,
}


@dataclass(frozen=True, slots=True)
class ParsedSchema:
    """An Avro schema that parsed, with its canonical text and the fingerprint of that text.

    The canonical text is Avro's own JSON rendering of the parsed schema with sorted keys
    and no whitespace, so two texts that differ only in layout, key order or spelled-out
    primitives (`{"type": "string"}` vs `"string"`) have one canonical text. Unlike Avro's
    "parsing canonical form" it keeps defaults, docs, aliases and logical types, which
    matter to readers.
    """

    text: str
    fingerprint: str
    schema: avro.schema.Schema = field(compare=False, repr=False)

    @classmethod
    def parse(cls, text: str) -> ParsedSchema:
        """Parse and normalize; InvalidSchemaError names what Avro refused."""
        try:
            schema = avro.schema.parse(text)
        except (avro.errors.AvroException, ValueError, TypeError) as e:
            raise InvalidSchemaError(str(e)) from e
        canonical = orjson.dumps(schema.to_json(), option=orjson.OPT_SORT_KEYS).decode()
        try:
            # The Avro library accepts defaults that do not match their field's type; the
            # codec's fastavro does not, so a schema must satisfy both to be registered.
            fastavro.parse_schema(orjson.loads(canonical))
        except Exception as e:
            raise InvalidSchemaError(str(e)) from e
        fingerprint = hashlib.sha256(canonical.encode()).hexdigest()
        return cls(text=canonical, fingerprint=fingerprint, schema=schema)


def normalize(text: str) -> str:
    """The canonical text of a schema (raises InvalidSchemaError)."""
    return ParsedSchema.parse(text).text


@dataclass(frozen=True, slots=True)
class LabeledSchema:
    """An earlier version to check against; `label` says which one in reasons ("version 2")."""

    label: str
    schema: avro.schema.Schema


def schemas_to_check(mode: CompatibilityMode, earlier: Sequence[_T]) -> list[_T]:
    """The earlier versions (oldest first) that `mode` compares a new version with."""
    if mode == CompatibilityMode.NONE or not earlier:
        return []
    if mode in _TRANSITIVE:
        return list(earlier)
    return [earlier[-1]]


def check_compatibility(
    new: avro.schema.Schema,
    earlier: Sequence[LabeledSchema],
    mode: CompatibilityMode,
    *,
    new_label: str = NEW_SCHEMA,
) -> list[str]:
    """Reasons why `new` breaks `mode` against `earlier` (oldest first); empty if it does not.

    BACKWARD: the new schema must read data written with the latest earlier version;
    FORWARD: the latest earlier version must read data written with the new one; FULL: both.
    The *_TRANSITIVE modes apply the same rule to every earlier version.
    """
    reasons: list[str] = []
    for old in schemas_to_check(mode, earlier):
        reasons.extend(check_against(new, old, mode, new_label=new_label))
    return reasons


def check_against(
    new: avro.schema.Schema,
    old: LabeledSchema,
    mode: CompatibilityMode,
    *,
    new_label: str = NEW_SCHEMA,
) -> list[str]:
    """Reasons why `new` breaks the direction(s) of `mode` against one earlier version."""
    reasons: list[str] = []
    if mode in _BACKWARD:
        reasons += reader_writer_reasons(
            new, old.schema, reader_role="reader", writer_role=f"writer {old.label}"
        )
    if mode in _FORWARD:
        reasons += reader_writer_reasons(
            old.schema, new, reader_role=f"reader {old.label}", writer_role=new_label
        )
    return reasons


def reader_writer_reasons(
    reader: avro.schema.Schema,
    writer: avro.schema.Schema,
    *,
    reader_role: str = "reader",
    writer_role: str = "writer",
) -> list[str]:
    """Why data written with `writer` cannot be read with `reader` (empty when it can).

    The roles name the two schemas in the sentences ("reader", "writer version 2").
    """
    # A fresh checker per pair: its memo is keyed by object identity.
    checker = ReaderWriterCompatibilityChecker()  # type: ignore[no-untyped-call]
    result: SchemaCompatibilityResult = checker.get_compatibility(reader, writer)
    if result.compatibility is not SchemaCompatibilityType.incompatible:
        return []
    return _describe(result, reader, reader_role=reader_role, writer_role=writer_role)


# The checker merges its findings into a set of messages and a set of locations, which
# loses which message belongs to which location. Messages have fixed shapes per kind of
# incompatibility and locations end in a token per kind, so the two are re-paired by kind.
_AVRO_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_TYPE_MISMATCH = re.compile(r"^reader type: (\S+) not compatible with writer type: (\S+)$")
_UNION = re.compile(r"^reader union lacking writer type:? (\S+)$")
_FIXED_SIZE = re.compile(r"^expected: (\d+), found: (\d+)$")
_NAME = re.compile(r"^expected: (\S+)$")


def _describe(
    result: SchemaCompatibilityResult,
    reader: avro.schema.Schema,
    *,
    reader_role: str,
    writer_role: str,
) -> list[str]:
    by_kind: dict[str, list[str]] = {}
    for location in sorted(result.locations):
        by_kind.setdefault(_location_kind(location), []).append(location)
    # An incompatible result merged with a compatible one carries the root "/" along; it
    # is a real location only when nothing more specific was found.
    if len(by_kind.get("type", [])) > 1:
        by_kind["type"] = [loc for loc in by_kind["type"] if loc != "/"]

    reasons: list[str] = []
    for message in sorted(result.messages):
        if _AVRO_NAME.match(message):
            where = [
                loc for loc in by_kind.get("field", []) if _field_name_at(reader, loc) == message
            ]
            path = _field_path(reader, where[0]) if where else message
            reasons.append(
                f"{reader_role} field '{path}' has no default and is missing in {writer_role}"
                f"{_at(reader, where, with_path=False)}"
            )
            continue
        kind, detail = _classify(message, reader_role, writer_role)
        reasons.append(detail + _at(reader, by_kind.get(kind, []), with_path=True))
    return reasons


def _classify(message: str, reader_role: str, writer_role: str) -> tuple[str, str]:
    """(kind of location, sentence) for one of the checker's messages."""
    if m := _TYPE_MISMATCH.match(message):
        return "type", f"{reader_role} type {m[1]} cannot read {writer_role} type {m[2]}"
    if m := _UNION.match(message):
        branch = m[1].lower()
        return "type", f"{reader_role} union has no branch for type {branch} of {writer_role}"
    if m := _FIXED_SIZE.match(message):
        return "size", f"{reader_role} fixed size {m[2]} differs from size {m[1]} in {writer_role}"
    if m := _NAME.match(message):
        return "name", f"{reader_role} type name does not match {m[1]} of {writer_role}"
    if message.startswith("{"):  # the set of writer symbols the reader enum lacks
        return "symbols", (
            f"{reader_role} enum lacks symbols {message} of {writer_role} and has no default"
        )
    return "other", f"{reader_role} cannot read {writer_role}: {message}"


def _location_kind(location: str) -> str:
    tokens = location.strip("/").split("/")
    last = tokens[-1]
    if last in ("name", "size", "symbols"):
        return last
    if len(tokens) >= 2 and tokens[-2] == "fields" and last.isdigit():
        return "field"
    return "type"


def _at(reader: avro.schema.Schema, locations: list[str], *, with_path: bool) -> str:
    if not locations or locations == ["/"]:
        return ""  # the checker loses the location inside unions; "/" would mislead
    if len(locations) == 1:
        loc = locations[0]
        path = _field_path(reader, loc) if with_path else ""
        return f" in field '{path}' (at {loc})" if path else f" (at {loc})"
    return f" (at one of {', '.join(locations)})"


def _walk(reader: avro.schema.Schema, location: str) -> list[str]:
    """Field names along a checker location (e.g. /fields/1/type/items/fields/0)."""
    names: list[str] = []
    node: Any = reader
    tokens = [t for t in location.split("/") if t]
    i = 0
    while i < len(tokens):
        token = tokens[i]
        if token == "fields" and i + 1 < len(tokens) and isinstance(node, avro.schema.RecordSchema):
            index = int(tokens[i + 1])
            if index >= len(node.fields):
                break
            node = node.fields[index]
            names.append(node.name)
            i += 2
            continue
        if token == "type" and isinstance(node, avro.schema.Field):
            node = node.type
        elif token == "items" and isinstance(node, avro.schema.ArraySchema):
            node = node.items
            names.append("[]")
        elif token == "values" and isinstance(node, avro.schema.MapSchema):
            node = node.values
            names.append("{}")
        else:
            break  # a union branch, a name, a size: the field path ends here
        i += 1
    return names


def _field_path(reader: avro.schema.Schema, location: str) -> str:
    return ".".join(_walk(reader, location)).replace(".[]", "[]").replace(".{}", "{}")


def _field_name_at(reader: avro.schema.Schema, location: str) -> str | None:
    names = [n for n in _walk(reader, location) if n not in ("[]", "{}")]
    return names[-1] if names else None
