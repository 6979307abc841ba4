"""One contract for the SchemaRegistry port, proven by every backend.

Backends come from `registry_fixtures.BACKENDS`: `sql-sqlite`, `http` (our REST service
backed by SQLite, reached through HttpSchemaRegistry) and `sql-postgres`.
"""

from __future__ import annotations

import json
import multiprocessing
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from eventmart.platform.errors import (
    IncompatibleSchemaError,
    InvalidSchemaError,
    RetryLaterError,
    SchemaNotFoundError,
    SchemaRegistryError,
    SubjectNotFoundError,
    VersionNotFoundError,
)
from eventmart.platform.schemas.compatibility import normalize
from eventmart.platform.schemas.http import HttpSchemaRegistry
from eventmart.platform.schemas.registry import (
    CompatibilityMode,
    RegisteredSchema,
    SchemaRegistry,
)
from tests.contract.registry_fixtures import BACKENDS, RegistryTarget, field, record, register_many

V1 = record(field("id", "string"))
V2_SKU_DEFAULT = record(field("id", "string"), field("sku", "string", default="none"))
V3_SKU_REQUIRED = record(field("id", "string"), field("sku", "string"))
V_SKU_ONLY = record(field("sku", "string"))


@pytest.fixture(
    params=[
        pytest.param(name, marks=pytest.mark.distributed) if "postgres" in name else name
        for name in BACKENDS
    ]
)
def target(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[RegistryTarget]:
    with BACKENDS[request.param](tmp_path) as found:
        yield found


@pytest.fixture
def registry(target: RegistryTarget) -> Iterator[SchemaRegistry]:
    opened = target.open()
    yield opened
    target.close(opened)


def test_register_returns_a_global_id_and_is_idempotent(registry: SchemaRegistry) -> None:
    first = registry.register("orders", V1)
    assert first >= 1
    assert registry.register("orders", V1) == first
    # Layout and key order do not make a new version: schemas are normalized.
    reordered = json.dumps(json.loads(V1), indent=4, sort_keys=True)
    assert registry.register("orders", reordered) == first
    assert registry.versions("orders") == [1]
    assert json.loads(registry.get_schema(first)) == json.loads(normalize(V1))


def test_identical_schema_under_another_subject_shares_the_id(registry: SchemaRegistry) -> None:
    first = registry.register("orders", V1)
    assert registry.register("orders-copy", V1) == first
    other = registry.register("other", V_SKU_ONLY)
    assert other != first
    assert registry.versions("orders-copy") == [1]
    assert registry.subjects() == ["orders", "orders-copy", "other"]


def test_versions_and_latest(registry: SchemaRegistry) -> None:
    id1 = registry.register("orders", V1)
    id2 = registry.register("orders", V2_SKU_DEFAULT)
    assert id2 != id1
    assert registry.versions("orders") == [1, 2]
    latest = registry.get_version("orders")
    assert (latest.subject, latest.version, latest.schema_id) == ("orders", 2, id2)
    assert registry.get_version("orders", "latest") == latest
    first = registry.get_version("orders", 1)
    assert (first.version, first.schema_id) == (1, id1)
    assert json.loads(first.schema) == json.loads(normalize(V1))


def test_lookup_finds_the_version_holding_a_schema(registry: SchemaRegistry) -> None:
    id1 = registry.register("orders", V1)
    registry.register("orders", V2_SKU_DEFAULT)
    found = registry.lookup("orders", json.dumps(json.loads(V1), indent=2))
    assert found == RegisteredSchema("orders", 1, id1, normalize(V1))
    assert registry.lookup("orders", V_SKU_ONLY) is None
    assert registry.lookup("no-such-subject", V1) is None


def test_backward_is_the_default_and_refuses_a_new_field_without_default(
    registry: SchemaRegistry,
) -> None:
    assert registry.compatibility() == CompatibilityMode.BACKWARD
    assert registry.compatibility("orders") == CompatibilityMode.BACKWARD
    registry.register("orders", V1)
    with pytest.raises(IncompatibleSchemaError) as refused:
        registry.register("orders", V3_SKU_REQUIRED)
    assert refused.value.error_code == 409
    assert refused.value.mode == "BACKWARD"
    assert any("'sku'" in r and "version 1" in r for r in refused.value.reasons), refused.value
    assert registry.versions("orders") == [1]
    # A default makes the same addition safe, and dropping a field is fine for new readers.
    registry.register("orders", V2_SKU_DEFAULT)
    registry.register("orders", record(field("sku", "string", default="none")))
    assert registry.versions("orders") == [1, 2, 3]


def test_forward_refuses_removing_a_field_without_default(registry: SchemaRegistry) -> None:
    registry.set_compatibility(CompatibilityMode.FORWARD, "orders")
    registry.register("orders", V3_SKU_REQUIRED)
    with pytest.raises(IncompatibleSchemaError) as refused:
        registry.register("orders", V1)
    assert any("'sku'" in r for r in refused.value.reasons), refused.value
    # Adding a field without a default is fine under FORWARD: old readers ignore it.
    registry.register(
        "orders", record(field("id", "string"), field("sku", "string"), field("qty", "long"))
    )
    assert registry.versions("orders") == [1, 2]


def test_full_needs_both_directions(registry: SchemaRegistry) -> None:
    registry.set_compatibility(CompatibilityMode.FULL, "orders")
    registry.register("orders", V1)
    with pytest.raises(IncompatibleSchemaError):
        registry.register("orders", V3_SKU_REQUIRED)  # breaks BACKWARD
    registry.register("orders", V2_SKU_DEFAULT)  # a field with a default: both ways fine
    with pytest.raises(IncompatibleSchemaError) as refused:
        registry.register("orders", V_SKU_ONLY)  # drops "id", which v2 readers need
    assert any("'id'" in r for r in refused.value.reasons), refused.value
    assert registry.versions("orders") == [1, 2]


def test_transitive_modes_check_every_earlier_version(registry: SchemaRegistry) -> None:
    # v3 reads v2 data (v2 always writes sku) but not v1 data (which has no sku).
    registry.set_compatibility(CompatibilityMode.BACKWARD, "plain")
    registry.set_compatibility(CompatibilityMode.BACKWARD_TRANSITIVE, "transitive")
    for subject in ("plain", "transitive"):
        registry.register(subject, V1)
        registry.register(subject, V2_SKU_DEFAULT)

    registry.register("plain", V3_SKU_REQUIRED)
    assert registry.versions("plain") == [1, 2, 3]

    with pytest.raises(IncompatibleSchemaError) as refused:
        registry.register("transitive", V3_SKU_REQUIRED)
    assert refused.value.mode == "BACKWARD_TRANSITIVE"
    assert any("version 1" in r and "'sku'" in r for r in refused.value.reasons)
    assert not any("version 2" in r for r in refused.value.reasons)
    assert registry.versions("transitive") == [1, 2]

    # Checking against one named version ignores the transitive history.
    assert registry.check_compatibility("transitive", V3_SKU_REQUIRED, 2) == []
    assert registry.check_compatibility("transitive", V3_SKU_REQUIRED, 1) != []
    assert registry.check_compatibility("transitive", V3_SKU_REQUIRED) != []


def test_none_allows_anything(registry: SchemaRegistry) -> None:
    registry.set_compatibility(CompatibilityMode.NONE, "orders")
    registry.register("orders", V1)
    registry.register("orders", V3_SKU_REQUIRED)
    registry.register("orders", record(field("id", "long")))
    registry.register("orders", record(field("x", "int"), name="Renamed"))
    assert registry.versions("orders") == [1, 2, 3, 4]


def test_subject_config_overrides_the_global_mode(registry: SchemaRegistry) -> None:
    registry.set_compatibility(CompatibilityMode.FULL)
    registry.set_compatibility(CompatibilityMode.NONE, "relaxed")
    assert registry.compatibility() == CompatibilityMode.FULL
    assert registry.compatibility("strict") == CompatibilityMode.FULL
    assert registry.compatibility("relaxed") == CompatibilityMode.NONE

    for subject in ("strict", "relaxed"):
        registry.register(subject, V1)
    registry.register("relaxed", V3_SKU_REQUIRED)
    with pytest.raises(IncompatibleSchemaError) as refused:
        registry.register("strict", V3_SKU_REQUIRED)
    assert refused.value.mode == "FULL"


def test_check_compatibility_reports_without_registering(registry: SchemaRegistry) -> None:
    registry.register("orders", V1)
    reasons = registry.check_compatibility("orders", V3_SKU_REQUIRED)
    assert reasons and "'sku'" in reasons[0]
    assert registry.check_compatibility("orders", V2_SKU_DEFAULT) == []
    assert registry.check_compatibility("orders", V2_SKU_DEFAULT, "latest") == []
    assert registry.check_compatibility("new-subject", V3_SKU_REQUIRED) == []
    assert registry.versions("orders") == [1]


def test_soft_delete_hides_versions_but_keeps_ids(registry: SchemaRegistry) -> None:
    id1 = registry.register("orders", V1)
    id2 = registry.register("orders", V2_SKU_DEFAULT)

    assert registry.delete_version("orders", 2) == 2
    assert registry.versions("orders") == [1]
    assert registry.get_version("orders").version == 1
    with pytest.raises(VersionNotFoundError):
        registry.get_version("orders", 2)
    assert registry.get_schema(id2)  # data written with it must stay readable

    # Version numbers are never reused: re-registering makes a new version, same id.
    assert registry.register("orders", V2_SKU_DEFAULT) == id2
    assert registry.versions("orders") == [1, 3]

    assert registry.delete_subject("orders") == [1, 3]
    assert "orders" not in registry.subjects()
    with pytest.raises(SubjectNotFoundError):
        registry.versions("orders")
    assert registry.lookup("orders", V1) is None
    assert registry.get_schema(id1)
    # A deleted subject constrains nothing: an incompatible schema starts it afresh.
    registry.register("orders", V_SKU_ONLY)
    assert registry.versions("orders") == [4]


def test_unknown_subjects_versions_and_ids_raise_typed_errors(registry: SchemaRegistry) -> None:
    registry.register("orders", V1)
    with pytest.raises(SubjectNotFoundError) as subject:
        registry.get_version("nope")
    assert subject.value.error_code == 40401
    with pytest.raises(SubjectNotFoundError):
        registry.versions("nope")
    with pytest.raises(SubjectNotFoundError):
        registry.delete_subject("nope")
    with pytest.raises(VersionNotFoundError) as version:
        registry.get_version("orders", 7)
    assert version.value.error_code == 40402
    with pytest.raises(VersionNotFoundError):
        registry.delete_version("orders", 7)
    with pytest.raises(SchemaNotFoundError) as schema:
        registry.get_schema(987654)
    assert schema.value.error_code == 40403
    with pytest.raises(SchemaRegistryError) as bad_version:
        registry.get_version("orders", "first")
    assert bad_version.value.error_code == 42202


@pytest.mark.parametrize(
    "text",
    [
        "not json",
        '{"type": "record", "name": "A", "fields": [{"name": "x", "type": "nope"}]}',
        '{"type": "record", "name": "A", "fields": [{"name": "x", "type": "int", "default": "a"}]}',
        '{"type": "record", "name": "A"}',
    ],
    ids=["not-json", "unknown-type", "bad-default", "no-fields"],
)
def test_invalid_schemas_are_refused(registry: SchemaRegistry, text: str) -> None:
    with pytest.raises(InvalidSchemaError) as refused:
        registry.register("orders", text)
    assert refused.value.error_code == 42201
    assert registry.subjects() == []
    with pytest.raises(InvalidSchemaError):
        registry.check_compatibility("orders", text)


@pytest.mark.multiprocess
def test_concurrent_registration_from_two_processes_gives_one_id(
    target: RegistryTarget, registry: SchemaRegistry
) -> None:
    schemas = [record(field("id", "string"), field(f"f{i}", "long")) for i in range(15)]
    # The store exists before the race: what is under test is registration, not creation.
    assert registry.subjects() == []
    ctx = multiprocessing.get_context("spawn")  # no fork: the http backend runs threads
    barrier = ctx.Barrier(2)
    out = ctx.Queue()
    workers = [
        ctx.Process(target=register_many, args=(target, schemas, barrier, out, n)) for n in range(2)
    ]
    for w in workers:
        w.start()
    results = dict(out.get(timeout=120) for _ in workers)
    for w in workers:
        w.join(timeout=60)
        assert w.exitcode == 0, results

    assert results[0] == results[1], results
    ids = results[0]
    assert ids[0::2] == ids[1::2]  # the copy subject shares the id
    assert len(set(ids)) == len(schemas)
    for i, text in enumerate(schemas):
        assert registry.versions(f"race.{i}") == [1]
        assert registry.lookup(f"race.{i}", text) == RegisteredSchema(
            f"race.{i}", 1, ids[2 * i], normalize(text)
        )


# --- HttpSchemaRegistry specifics: retries and error mapping, against canned answers -------


def _canned(*answers: httpx.Response | Exception) -> tuple[HttpSchemaRegistry, list[str]]:
    seen: list[str] = []
    pending = list(answers)

    def handle(request: httpx.Request) -> httpx.Response:
        seen.append(f"{request.method} {request.url.path}")
        answer = pending.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer

    return HttpSchemaRegistry("http://registry.test", transport=httpx.MockTransport(handle)), seen


def test_http_retries_idempotent_calls_on_overload() -> None:
    registry, seen = _canned(
        httpx.Response(503, json={"error_code": 50003, "message": "busy"}),
        httpx.Response(429, json={"error_code": 429, "message": "slow down"}),
        httpx.Response(200, json=["a"]),
    )
    assert registry.subjects() == ["a"]
    assert seen == ["GET /subjects"] * 3


def test_http_sends_deletes_once_and_reports_unavailability_as_retry_later() -> None:
    registry, seen = _canned(httpx.Response(503, json={"error_code": 50003, "message": "x"}))
    with pytest.raises(RetryLaterError):
        registry.delete_subject("orders")
    assert seen == ["DELETE /subjects/orders"]

    down, attempts = _canned(*[httpx.ConnectError("refused") for _ in range(4)])
    with pytest.raises(RetryLaterError) as unreachable:
        down.get_schema(1)
    assert isinstance(unreachable.value.__cause__, httpx.ConnectError)
    assert len(attempts) == 4


def test_http_maps_confluent_errors_to_typed_errors() -> None:
    confluent_409 = (
        "Schema being registered is incompatible with an earlier schema for subject "
        "\"orders\", details: [{errorType:'READER_FIELD_MISSING_DEFAULT_VALUE', "
        "description:'The field 'sku' at path '/fields/1' in the new schema has no default "
        "value and is missing in the old schema'}, {compatibility: 'FULL'}]"
    )
    registry, _ = _canned(
        httpx.Response(409, json={"error_code": 409, "message": confluent_409}),
        httpx.Response(422, json={"error_code": 42201, "message": "Invalid schema: bad"}),
        httpx.Response(404, json={"error_code": 40401, "message": "Subject not found."}),
        httpx.Response(404, json={"error_code": 40403, "message": "Schema not found"}),
    )
    with pytest.raises(IncompatibleSchemaError) as incompatible:
        registry.register("orders", V1)
    assert incompatible.value.mode == "FULL"
    assert "'sku'" in incompatible.value.reasons[0]
    with pytest.raises(InvalidSchemaError, match=r"^Invalid schema: bad$"):
        registry.register("orders", V1)
    with pytest.raises(SubjectNotFoundError, match="orders"):
        registry.versions("orders")
    assert registry.lookup("orders", V1) is None
