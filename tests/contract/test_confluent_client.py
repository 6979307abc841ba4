"""confluent-kafka's own registry client and Avro serdes, unchanged, against our REST service.

The bytes they produce must be what eventmart's AvroCodec produces and reads: the
Confluent wire format (magic byte 0, 4-byte big-endian schema id, Avro body).
"""

from __future__ import annotations

import json
import struct
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from confluent_kafka.schema_registry import (
    Schema,
    SchemaRegistryClient,
    record_subject_name_strategy,
)
from confluent_kafka.schema_registry.avro import AvroDeserializer, AvroSerializer
from confluent_kafka.schema_registry.error import SchemaRegistryError as ClientError
from confluent_kafka.serialization import MessageField, SerializationContext

from eventmart.platform.avro import AvroCodec, avro_schema, schema_text
from eventmart.platform.db import Database
from eventmart.platform.messages import Event
from eventmart.platform.schemas.rest import MEDIA_TYPE, create_app
from eventmart.platform.schemas.sql import SqlSchemaRegistry
from tests.contract.registry_fixtures import field, record, serve_in_thread, sqlite_url


class OrderPlaced(Event, frozen=True, kw_only=True):
    """An order was placed (a contract defined here for the test only)."""

    topic = "orders"
    key_field = "order_id"

    order_id: str
    total_cents: int
    note: str | None = None


SUBJECT = OrderPlaced.type_name()  # "eventmart.OrderPlaced", as the record-name strategy says
CTX = SerializationContext("orders", MessageField.VALUE)


@pytest.fixture
def backing(tmp_path: Path) -> SqlSchemaRegistry:
    return SqlSchemaRegistry(Database(sqlite_url(tmp_path)))


@pytest.fixture
def url(backing: SqlSchemaRegistry) -> Iterator[str]:
    with serve_in_thread(create_app(backing)) as served:
        yield served


@pytest.fixture
def client(url: str) -> Iterator[SchemaRegistryClient]:
    with SchemaRegistryClient({"url": url, "max.retries": 0}) as registry_client:
        yield registry_client


def serializer(client: SchemaRegistryClient, schema: str) -> AvroSerializer:
    return AvroSerializer(
        client, schema, conf={"subject.name.strategy": record_subject_name_strategy}
    )


def header(data: bytes) -> tuple[int, int]:
    magic, schema_id = struct.unpack(">bI", data[:5])
    return magic, schema_id


def test_client_serializes_and_deserializes_through_our_registry(
    client: SchemaRegistryClient,
) -> None:
    value = {"order_id": "o-1", "total_cents": 1250, "note": None}
    data = serializer(client, schema_text(OrderPlaced))(value, CTX)
    assert data is not None

    magic, schema_id = header(data)
    assert magic == 0
    assert client.get_subjects() == [SUBJECT]
    assert client.get_latest_version(SUBJECT).schema_id == schema_id
    assert AvroDeserializer(client)(data, CTX) == value


def test_wire_format_is_identical_to_eventmart_codec(
    client: SchemaRegistryClient, backing: SqlSchemaRegistry
) -> None:
    codec = AvroCodec(backing, [OrderPlaced])
    message = OrderPlaced(order_id="o-2", total_cents=99, note="gift")

    # Client -> codec.
    from_client = serializer(client, schema_text(OrderPlaced))(
        {"order_id": "o-2", "total_cents": 99, "note": "gift"}, CTX
    )
    assert from_client is not None
    assert codec.decode(SUBJECT, from_client) == message

    # Codec -> client: same schema, so the same id, and byte-identical bodies.
    from_codec = codec.encode(message)
    assert header(from_codec) == header(from_client)
    assert from_codec == from_client
    assert AvroDeserializer(client)(from_codec, CTX) == {
        "order_id": "o-2",
        "total_cents": 99,
        "note": "gift",
    }


def test_codec_reads_what_a_client_wrote_with_a_newer_schema(
    client: SchemaRegistryClient, backing: SqlSchemaRegistry
) -> None:
    codec = AvroCodec(backing, [OrderPlaced])
    codec.register()
    newer = avro_schema(OrderPlaced)
    newer["fields"].append({"name": "currency", "type": "string", "default": "EUR"})
    data = serializer(client, json.dumps(newer))(
        {"order_id": "o-3", "total_cents": 5, "note": None, "currency": "USD"}, CTX
    )
    assert data is not None
    assert header(data)[1] != header(codec.encode(OrderPlaced(order_id="x", total_cents=1)))[1]
    assert codec.decode(SUBJECT, data) == OrderPlaced(order_id="o-3", total_cents=5)
    assert client.get_versions(SUBJECT) == [1, 2]


def test_incompatible_registration_through_the_client_is_a_409(
    client: SchemaRegistryClient,
) -> None:
    serializer(client, schema_text(OrderPlaced))(
        {"order_id": "o-4", "total_cents": 1, "note": None}, CTX
    )
    breaking = avro_schema(OrderPlaced)
    breaking["fields"].append({"name": "currency", "type": "string"})  # no default

    with pytest.raises(ClientError) as refused:
        serializer(client, json.dumps(breaking))(
            {"order_id": "o-5", "total_cents": 1, "note": None, "currency": "EUR"}, CTX
        )
    assert refused.value.http_status_code == 409
    assert refused.value.error_code == 409
    assert "currency" in refused.value.error_message

    assert client.test_compatibility(SUBJECT, Schema(json.dumps(breaking), "AVRO")) is False


def test_admin_calls_of_the_client(client: SchemaRegistryClient) -> None:
    v1 = Schema(record(field("id", "string")), "AVRO")
    v2 = Schema(record(field("id", "string"), field("qty", "long", default=0)), "AVRO")
    id1 = client.register_schema("orders-value", v1)
    id2 = client.register_schema("orders-value", v2)
    assert client.register_schema("other-value", v1) == id1

    assert client.get_schema_types() == ["AVRO"]
    assert client.get_subjects() == ["orders-value", "other-value"]
    assert client.get_versions("orders-value") == [1, 2]
    assert client.get_version("orders-value", 1).schema_id == id1
    assert client.lookup_schema("orders-value", v2).version == 2
    assert json.loads(client.get_schema(id2).schema_str or "") == json.loads(v2.schema_str or "")
    assert sorted(client.get_subjects_by_schema_id(id1)) == ["orders-value", "other-value"]
    assert {(v.subject, v.version) for v in client.get_schema_versions(id1)} == {
        ("orders-value", 1),
        ("other-value", 1),
    }

    assert client.get_compatibility() == "BACKWARD"
    client.set_compatibility(level="FULL")
    client.set_compatibility("orders-value", "NONE")
    assert client.get_compatibility() == "FULL"
    assert client.get_compatibility("orders-value") == "NONE"
    assert client.test_compatibility("orders-value", v1, version=1) is True

    assert client.delete_version("orders-value", 2) == 2
    assert client.get_versions("orders-value") == [1]
    assert client.delete_subject("other-value") == [1]
    assert client.get_subjects() == ["orders-value"]

    with pytest.raises(ClientError) as missing:
        client.get_version("orders-value", 9)
    assert (missing.value.http_status_code, missing.value.error_code) == (404, 40402)
    with pytest.raises(ClientError) as unknown_id:
        client.get_schema(424242)
    assert (unknown_id.value.http_status_code, unknown_id.value.error_code) == (404, 40403)
    with pytest.raises(ClientError) as protobuf:
        client.register_schema("p", Schema('syntax = "proto3";', "PROTOBUF"))
    assert (protobuf.value.http_status_code, protobuf.value.error_code) == (422, 42201)
    assert "AVRO" in protobuf.value.error_message


def test_content_types(url: str) -> None:
    body: dict[str, Any] = {"schema": record(field("id", "string"))}
    with httpx.Client(base_url=url) as http:
        created = http.post("/subjects/s/versions", json=body, headers={"Content-Type": MEDIA_TYPE})
        assert created.status_code == 200
        assert created.headers["content-type"] == MEDIA_TYPE
        plain = http.post("/subjects/s", json=body)  # application/json is accepted too
        assert plain.status_code == 200
        assert plain.json()["version"] == 1
        missing = http.get("/subjects/nope/versions")
        assert missing.status_code == 404
        assert missing.json() == {"error_code": 40401, "message": "Subject 'nope' not found."}
        assert http.get("/no/such/path").json()["error_code"] == 404
