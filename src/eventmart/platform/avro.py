"""Avro for messages: schemas derived from contract classes, and the Confluent wire format.

Why derive rather than hand-write .avsc files: a contract class is then the one place a
field is declared. `eventmart schemas export` writes the derived schemas into the repo
so a schema change shows up in review, and `eventmart schemas check` refuses a change
that breaks readers of an earlier committed version.
"""

from __future__ import annotations

import datetime as dt
import io
import struct
import threading
import types
import typing
from collections.abc import Iterable
from typing import Any, Union, get_args, get_origin

import fastavro
import msgspec
import orjson

from eventmart.platform.errors import (
    DeserializationError,
    SchemaNotFoundError,
    UnknownMessageTypeError,
    UnknownSchemaError,
)
from eventmart.platform.messages import Message
from eventmart.platform.schemas.registry import SchemaRegistry

MAGIC_BYTE = 0
_HEADER = struct.Struct(">bI")

_PRIMITIVES: dict[Any, Any] = {
    str: "string",
    int: "long",
    float: "double",
    bool: "boolean",
    bytes: "bytes",
    dt.datetime: {"type": "long", "logicalType": "timestamp-millis"},
}


def avro_schema(cls: type[msgspec.Struct]) -> dict[str, Any]:
    """The Avro record schema of a Struct class (nested Structs become named records)."""
    return _record(cls, _namespace_of(cls), set())


def schema_text(cls: type[msgspec.Struct]) -> str:
    """Canonical JSON text of `avro_schema(cls)`: stable across runs, so ids are stable."""
    return orjson.dumps(avro_schema(cls), option=orjson.OPT_SORT_KEYS).decode()


def _namespace_of(cls: type) -> str:
    ns = getattr(cls, "namespace", None)
    return ns if isinstance(ns, str) else "eventmart"


def _record(cls: type[msgspec.Struct], namespace: str, seen: set[str]) -> dict[str, Any]:
    full = f"{namespace}.{cls.__name__}"
    seen.add(full)
    hints = typing.get_type_hints(cls)
    fields: list[dict[str, Any]] = []
    for f in msgspec.structs.fields(cls):
        avro_type = _type(hints[f.name], namespace, seen)
        entry: dict[str, Any] = {"name": f.name, "type": avro_type}
        if f.default is not msgspec.NODEFAULT:
            entry["default"] = _default(f.default)
        elif f.default_factory is not msgspec.NODEFAULT:
            entry["default"] = _default(f.default_factory())
        fields.append(entry)
    schema: dict[str, Any] = {
        "type": "record",
        "name": cls.__name__,
        "namespace": namespace,
        "fields": fields,
    }
    if cls.__doc__ and not cls.__doc__.startswith(f"{cls.__name__}("):
        schema["doc"] = " ".join(cls.__doc__.split())
    return schema


def _type(hint: Any, namespace: str, seen: set[str]) -> Any:
    if hint in _PRIMITIVES:
        return _PRIMITIVES[hint]
    origin = get_origin(hint)
    if origin in (Union, types.UnionType):
        args = [a for a in get_args(hint) if a is not type(None)]
        if len(args) != 1:
            raise TypeError(f"only Optional unions are supported, not {hint}")
        return ["null", _type(args[0], namespace, seen)]
    if origin is list:
        (item,) = get_args(hint)
        return {"type": "array", "items": _type(item, namespace, seen)}
    if origin is dict:
        key, value = get_args(hint)
        if key is not str:
            raise TypeError(f"map keys must be str, not {key}")
        return {"type": "map", "values": _type(value, namespace, seen)}
    if origin is typing.Literal:
        if all(isinstance(a, str) for a in get_args(hint)):
            return "string"  # not an Avro enum: adding a symbol later stays compatible
        raise TypeError(f"only string literals are supported, not {hint}")
    if isinstance(hint, type) and issubclass(hint, msgspec.Struct):
        full = f"{namespace}.{hint.__name__}"
        if full in seen:
            return full
        return _record(hint, namespace, seen)
    raise TypeError(f"no Avro mapping for {hint!r}")


def _default(value: Any) -> Any:
    if isinstance(value, msgspec.Struct):
        return msgspec.to_builtins(value)
    if isinstance(value, dt.datetime):
        return int(value.timestamp() * 1000)
    return value


class AvroCodec:
    """Serializes messages to the Confluent wire format and back, resolving schema versions.

    Encoding registers the class's schema under its subject on first use (which is when an
    incompatible change is refused). Decoding reads the writer schema by the id in the
    body and resolves it against this process's version of the class, so a consumer reads
    older and newer writers alike, as Avro's resolution rules allow.
    """

    def __init__(self, registry: SchemaRegistry, message_types: Iterable[type[Message]] = ()):
        self._registry = registry
        self._types: dict[str, type[Message]] = {}
        self._reader: dict[type[Message], Any] = {}
        self._writer_id: dict[type[Message], int] = {}
        self._by_id: dict[int, Any] = {}
        self._lock = threading.Lock()
        self.add_types(message_types)

    @property
    def registry(self) -> SchemaRegistry:
        return self._registry

    def add_types(self, message_types: Iterable[type[Message]]) -> None:
        for cls in message_types:
            self._types[cls.type_name()] = cls

    def known_type(self, type_name: str) -> type[Message] | None:
        return self._types.get(type_name)

    def register(self, *message_types: type[Message]) -> None:
        """Register schemas now (at start-up), so an incompatible change stops the process."""
        for cls in message_types or tuple(self._types.values()):
            self._schema_id(cls)

    def _schema_id(self, cls: type[Message]) -> int:
        schema_id = self._writer_id.get(cls)
        if schema_id is None:
            with self._lock:
                schema_id = self._registry.register(cls.type_name(), schema_text(cls))
                self._writer_id[cls] = schema_id
                self._by_id.setdefault(schema_id, self._parsed(cls))
                self._types.setdefault(cls.type_name(), cls)
        return schema_id

    def _parsed(self, cls: type[Message]) -> Any:
        parsed = self._reader.get(cls)
        if parsed is None:
            parsed = fastavro.parse_schema(avro_schema(cls))
            self._reader[cls] = parsed
        return parsed

    def encode(self, message: Message) -> bytes:
        cls = type(message)
        schema_id = self._schema_id(cls)
        buf = io.BytesIO()
        buf.write(_HEADER.pack(MAGIC_BYTE, schema_id))
        data = msgspec.to_builtins(message, builtin_types=(bytes, dt.datetime))
        fastavro.schemaless_writer(buf, self._parsed(cls), data)
        return buf.getvalue()

    def schema_id_of(self, data: bytes) -> int:
        if len(data) < 5:
            raise DeserializationError(f"body of {len(data)} bytes is shorter than the header")
        magic, schema_id = _HEADER.unpack_from(data)
        if magic != MAGIC_BYTE:
            raise DeserializationError(f"unknown magic byte {magic}; expected {MAGIC_BYTE}")
        return int(schema_id)

    def _writer_schema(self, schema_id: int) -> Any:
        parsed = self._by_id.get(schema_id)
        if parsed is None:
            try:
                text = self._registry.get_schema(schema_id)
            except SchemaNotFoundError as e:
                raise UnknownSchemaError(f"schema id {schema_id} is not in the registry") from e
            parsed = fastavro.parse_schema(orjson.loads(text))
            self._by_id[schema_id] = parsed
        return parsed

    def decode_dict(self, data: bytes) -> dict[str, Any]:
        """The body as a dict in the writer's own schema (for tools that lack the class)."""
        writer = self._writer_schema(self.schema_id_of(data))
        try:
            return typing.cast(
                dict[str, Any], fastavro.schemaless_reader(io.BytesIO(data[5:]), writer, None)
            )
        except Exception as e:
            raise DeserializationError(f"body does not match its schema: {e}") from e

    def decode(self, type_name: str, data: bytes) -> Message:
        cls = self._types.get(type_name)
        if cls is None:
            raise UnknownMessageTypeError(f"unknown message type {type_name!r}")
        schema_id = self.schema_id_of(data)
        writer = self._writer_schema(schema_id)
        reader = self._parsed(cls)
        try:
            same = self._writer_id.get(cls) == schema_id
            record = fastavro.schemaless_reader(
                io.BytesIO(data[5:]), writer, None if same else reader
            )
            return msgspec.convert(record, cls)
        except Exception as e:
            raise DeserializationError(
                f"body of {type_name} (schema id {schema_id}) does not decode: {e}"
            ) from e
