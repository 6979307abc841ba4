"""Avro schemas derived from contract classes, and the Confluent wire format."""

from __future__ import annotations

import datetime as dt
import struct

import msgspec
import pytest

from eventmart.platform.avro import AvroCodec, avro_schema, schema_text
from eventmart.platform.errors import (
    DeserializationError,
    IncompatibleSchemaError,
    UnknownMessageTypeError,
    UnknownSchemaError,
)
from eventmart.platform.infra import Platform
from eventmart.platform.messages import Event
from tests.unit.sample_messages import Line, ThingHappened


def test_schema_maps_python_types_to_avro() -> None:
    schema = avro_schema(ThingHappened)
    fields = {f["name"]: f for f in schema["fields"]}
    assert schema["name"] == "ThingHappened"
    assert schema["namespace"] == "eventmart.test"
    assert fields["thing_id"]["type"] == "string"
    assert fields["seq"]["type"] == "long"
    assert fields["lines"]["type"]["type"] == "array"
    assert fields["lines"]["type"]["items"]["name"] == "Line"
    assert fields["lines"]["default"] == []
    assert fields["note"] == {"name": "note", "type": ["null", "string"], "default": None}
    assert fields["at"]["type"][1] == {"type": "long", "logicalType": "timestamp-millis"}


def test_schema_text_is_stable() -> None:
    assert schema_text(ThingHappened) == schema_text(ThingHappened)


def test_roundtrip_in_confluent_wire_format(platform: Platform) -> None:
    at = dt.datetime(2026, 11, 21, 12, 0, tzinfo=dt.UTC)
    message = ThingHappened(thing_id="t1", seq=7, lines=[Line("sku-1", 2, 1999)], note="hi", at=at)
    data = platform.codec.encode(message)
    magic, schema_id = struct.unpack(">bI", data[:5])
    assert magic == 0
    assert platform.registry.get_schema(schema_id) == schema_text(ThingHappened)
    assert platform.codec.decode(ThingHappened.type_name(), data) == message
    assert platform.codec.decode_dict(data)["seq"] == 7


def _versions() -> tuple[type[Event], type[Event], type[Event]]:
    def v1() -> type[Event]:
        class Evolving(Event, frozen=True, kw_only=True):
            namespace = "eventmart.test"
            topic = "test.evolving"
            key_field = "id"
            id: str

        return Evolving

    def v2() -> type[Event]:
        class Evolving(Event, frozen=True, kw_only=True):
            namespace = "eventmart.test"
            topic = "test.evolving"
            key_field = "id"
            id: str
            colour: str = "red"

        return Evolving

    def v3() -> type[Event]:
        class Evolving(Event, frozen=True, kw_only=True):
            namespace = "eventmart.test"
            topic = "test.evolving"
            key_field = "id"
            id: str
            size: int

        return Evolving

    return v1(), v2(), v3()


def test_readers_resolve_older_and_newer_writers(platform: Platform) -> None:
    old_cls, new_cls, _ = _versions()
    old_codec = AvroCodec(platform.registry, [old_cls])
    new_codec = AvroCodec(platform.registry, [new_cls])
    old_bytes = old_codec.encode(old_cls(id="a"))  # type: ignore[call-arg]
    new_bytes = new_codec.encode(new_cls(id="b", colour="blue"))  # type: ignore[call-arg]
    assert old_codec.schema_id_of(old_bytes) != new_codec.schema_id_of(new_bytes)
    # A new reader fills the default for data an old writer wrote ...
    assert msgspec.structs.asdict(new_codec.decode(new_cls.type_name(), old_bytes)) == {
        "id": "a",
        "colour": "red",
    }
    # ... and an old reader ignores the field it does not know.
    assert msgspec.structs.asdict(old_codec.decode(old_cls.type_name(), new_bytes)) == {"id": "b"}


def test_incompatible_change_is_refused_at_registration(platform: Platform) -> None:
    old_cls, _, breaking = _versions()
    AvroCodec(platform.registry, [old_cls]).register(old_cls)
    with pytest.raises(IncompatibleSchemaError) as err:
        AvroCodec(platform.registry, [breaking]).register(breaking)
    assert "size" in str(err.value)


def test_bad_bodies_are_poison(platform: Platform) -> None:
    codec = platform.codec
    good = codec.encode(ThingHappened(thing_id="t", seq=1))
    name = ThingHappened.type_name()
    with pytest.raises(DeserializationError, match="magic"):
        codec.decode(name, b"\x01" + good[1:])
    with pytest.raises(DeserializationError, match="shorter"):
        codec.decode(name, b"\x00\x00")
    with pytest.raises(DeserializationError, match="does not decode"):
        codec.decode(name, good[:6])
    with pytest.raises(UnknownSchemaError, match="999999"):
        codec.decode(name, struct.pack(">bI", 0, 999999) + good[5:])
    with pytest.raises(UnknownMessageTypeError):
        codec.decode("eventmart.test.Nope", good)
