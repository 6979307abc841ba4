"""The Confluent Schema Registry REST API (the subset clients use), over any registry adapter.

Enough of the API for confluent-kafka's `SchemaRegistryClient`, `AvroSerializer` and
`AvroDeserializer` to work unchanged, plus the common admin calls. Requests and responses
use `application/vnd.schemaregistry.v1+json` (plain JSON is accepted too); errors are
`{"error_code": 40401, "message": ...}` with the HTTP status the code starts with, as
Confluent's registry answers. Only AVRO schemas are held.

Deliberate differences: soft deletes only (`permanent=true` is refused with 42205),
`deleted=true` listings are not offered, and schema references are refused.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any, Protocol, runtime_checkable

from fastapi import APIRouter, FastAPI, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from pydantic import BaseModel, ConfigDict, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from eventmart.platform.errors import (
    InvalidSchemaError,
    SchemaRegistryError,
)
from eventmart.platform.schemas.registry import CompatibilityMode, RegisteredSchema, SchemaRegistry

MEDIA_TYPE = "application/vnd.schemaregistry.v1+json"

# Confluent error codes without a typed error in eventmart.platform.errors.
UNPROCESSABLE = 422
INVALID_COMPATIBILITY_LEVEL = 42203
OPERATION_NOT_PERMITTED = 42205
SUBJECT_LEVEL_CONFIG_NOT_FOUND = 40408
SCHEMA_NOT_FOUND = 40403  # SchemaNotFoundError's code, with a lookup's own message


class SchemaRegistryResponse(JSONResponse):
    """JSON in the registry's own media type, as Confluent's clients ask for it."""

    media_type = MEDIA_TYPE


class SchemaRequest(BaseModel):
    """The body of register, lookup and compatibility calls (unknown keys are ignored)."""

    model_config = ConfigDict(extra="ignore", populate_by_name=True)

    schema_text: str = Field(alias="schema")
    schema_type: str = Field("AVRO", alias="schemaType")
    references: list[dict[str, Any]] = Field(default_factory=list)


class ConfigRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")

    compatibility: str


@runtime_checkable
class KnowsSchemaUsages(Protocol):
    """A registry that can list where a schema id is used without scanning every subject."""

    def schema_usages(self, schema_id: int) -> list[tuple[str, int]]: ...


@runtime_checkable
class KnowsSubjectConfig(Protocol):
    """A registry that can tell a subject's own mode apart from the global one."""

    def subject_compatibility(self, subject: str) -> CompatibilityMode | None: ...


def error_response(error_code: int, message: str) -> SchemaRegistryResponse:
    """A Confluent-style error body; the HTTP status is the code's first three digits."""
    status = error_code if error_code < 1000 else int(str(error_code)[:3])
    return SchemaRegistryResponse({"error_code": error_code, "message": message}, status)


class _ConfluentErrorsRoute(APIRoute):
    """Answers registry errors in Confluent's shape wherever the router is mounted."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def handle(request: Request) -> Response:
            try:
                return await handler(request)
            except SchemaRegistryError as e:
                return error_response(e.error_code, str(e))
            except RequestValidationError as e:
                details = "; ".join(
                    f"{'.'.join(str(p) for p in err.get('loc', ()))}: {err.get('msg')}"
                    for err in e.errors()
                )
                return error_response(UNPROCESSABLE, f"Unprocessable request: {details}")

        return handle


def schema_registry_router(registry: SchemaRegistry) -> APIRouter:
    """The Confluent REST endpoints over `registry`, to include in any FastAPI app."""
    router = APIRouter(
        route_class=_ConfluentErrorsRoute,
        default_response_class=SchemaRegistryResponse,
        # A request without a Content-Type is still read as JSON, as Confluent's server does.
        strict_content_type=False,
        tags=["schema registry"],
    )

    @router.get("/")
    def root() -> dict[str, Any]:
        return {}

    @router.get("/schemas/types")
    def schema_types() -> list[str]:
        return ["AVRO"]

    @router.get("/schemas/ids/{schema_id}")
    def schema_by_id(schema_id: int) -> dict[str, Any]:
        return {"schema": registry.get_schema(schema_id)}

    @router.get("/schemas/ids/{schema_id}/schema")
    def raw_schema_by_id(schema_id: int) -> Response:
        return Response(registry.get_schema(schema_id), media_type=MEDIA_TYPE)

    @router.get("/schemas/ids/{schema_id}/versions")
    def schema_versions(schema_id: int) -> list[dict[str, Any]]:
        return [{"subject": s, "version": v} for s, v in _usages(registry, schema_id)]

    @router.get("/schemas/ids/{schema_id}/subjects")
    def schema_subjects(schema_id: int) -> list[str]:
        return sorted({s for s, _ in _usages(registry, schema_id)})

    @router.get("/subjects")
    def subjects(subjectPrefix: str = "") -> list[str]:  # noqa: N803 - Confluent's name
        return [s for s in registry.subjects() if s.startswith(subjectPrefix)]

    @router.get("/subjects/{subject}/versions")
    def versions(subject: str) -> list[int]:
        return registry.versions(subject)

    @router.get("/subjects/{subject}/versions/{version}")
    def version(subject: str, version: str) -> dict[str, Any]:
        return _registered(registry.get_version(subject, _version(version)))

    @router.get("/subjects/{subject}/versions/{version}/schema")
    def version_schema(subject: str, version: str) -> Response:
        found = registry.get_version(subject, _version(version))
        return Response(found.schema, media_type=MEDIA_TYPE)

    @router.post("/subjects/{subject}/versions")
    def register(subject: str, body: SchemaRequest) -> dict[str, Any]:
        return {"id": registry.register(subject, _avro_text(body))}

    @router.post("/subjects/{subject}")
    def lookup(subject: str, body: SchemaRequest) -> dict[str, Any]:
        text = _avro_text(body)
        found = registry.lookup(subject, text)
        if found is None:
            registry.versions(subject)  # raises 40401 when the subject itself is unknown
            raise SchemaRegistryError(
                f"Schema not found under subject '{subject}'", SCHEMA_NOT_FOUND
            )
        return _registered(found)

    @router.delete("/subjects/{subject}")
    def delete_subject(subject: str, permanent: bool = False) -> list[int]:
        _refuse_permanent(permanent)
        return registry.delete_subject(subject)

    @router.delete("/subjects/{subject}/versions/{version}")
    def delete_version(subject: str, version: str, permanent: bool = False) -> int:
        _refuse_permanent(permanent)
        return registry.delete_version(subject, _version(version))

    @router.get("/config")
    def global_config() -> dict[str, Any]:
        return {"compatibilityLevel": registry.compatibility().value}

    @router.put("/config")
    def set_global_config(body: ConfigRequest) -> dict[str, Any]:
        mode = _mode(body.compatibility)
        registry.set_compatibility(mode)
        return {"compatibility": mode.value}

    @router.get("/config/{subject}")
    def subject_config(subject: str, defaultToGlobal: bool = False) -> dict[str, Any]:  # noqa: N803
        if defaultToGlobal or not isinstance(registry, KnowsSubjectConfig):
            return {"compatibilityLevel": registry.compatibility(subject).value}
        own = registry.subject_compatibility(subject)
        if own is None:
            raise SchemaRegistryError(
                f"Subject '{subject}' does not have subject-level compatibility configured",
                SUBJECT_LEVEL_CONFIG_NOT_FOUND,
            )
        return {"compatibilityLevel": own.value}

    @router.put("/config/{subject}")
    def set_subject_config(subject: str, body: ConfigRequest) -> dict[str, Any]:
        mode = _mode(body.compatibility)
        registry.set_compatibility(mode, subject)
        return {"compatibility": mode.value}

    @router.post("/compatibility/subjects/{subject}/versions/{version}")
    def test_against_version(
        subject: str, version: str, body: SchemaRequest, verbose: bool = False
    ) -> dict[str, Any]:
        reasons = registry.check_compatibility(subject, _avro_text(body), _version(version))
        return _compatibility(reasons, verbose)

    @router.post("/compatibility/subjects/{subject}/versions")
    def test_against_mode(
        subject: str, body: SchemaRequest, verbose: bool = False
    ) -> dict[str, Any]:
        reasons = registry.check_compatibility(subject, _avro_text(body))
        return _compatibility(reasons, verbose)

    return router


def create_app(registry: SchemaRegistry) -> FastAPI:
    """A stand-alone registry service: the router plus Confluent-shaped 404s for unknown paths."""
    app = FastAPI(
        title="eventmart schema registry",
        description="Confluent-compatible schema registry (AVRO).",
        default_response_class=SchemaRegistryResponse,
    )
    app.include_router(schema_registry_router(registry))

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_request: Request, exc: StarletteHTTPException) -> Response:
        # Confluent's server answers unknown paths and methods with its error shape.
        return error_response(exc.status_code, f"HTTP {exc.status_code} {exc.detail}")

    return app


def _avro_text(body: SchemaRequest) -> str:
    if body.schema_type.upper() != "AVRO":
        raise InvalidSchemaError(
            f"schemaType {body.schema_type!r} is not supported; this registry holds AVRO "
            "schemas only"
        )
    if body.references:
        raise InvalidSchemaError("schema references are not supported; inline named types")
    return body.schema_text


def _version(version: str) -> int | str:
    # Numbers go to the port as ints; anything else as given, for it to accept or refuse.
    try:
        return int(version)
    except ValueError:
        return version


def _mode(value: str) -> CompatibilityMode:
    try:
        return CompatibilityMode(value.upper())
    except ValueError as e:
        valid = ", ".join(m.value for m in CompatibilityMode)
        raise SchemaRegistryError(
            f"Invalid compatibility level {value!r}. Valid values are: {valid}",
            INVALID_COMPATIBILITY_LEVEL,
        ) from e


def _refuse_permanent(permanent: bool) -> None:
    if permanent:
        raise SchemaRegistryError(
            "permanent deletes are not supported by this registry; versions are soft-deleted "
            "so that data written with them stays readable",
            OPERATION_NOT_PERMITTED,
        )


def _registered(found: RegisteredSchema) -> dict[str, Any]:
    return {
        "subject": found.subject,
        "version": found.version,
        "id": found.schema_id,
        "schema": found.schema,
    }


def _compatibility(reasons: list[str], verbose: bool) -> dict[str, Any]:
    result: dict[str, Any] = {"is_compatible": not reasons}
    if verbose:
        result["messages"] = reasons
    return result


def _usages(registry: SchemaRegistry, schema_id: int) -> list[tuple[str, int]]:
    if isinstance(registry, KnowsSchemaUsages):
        return registry.schema_usages(schema_id)
    registry.get_schema(schema_id)  # 40403 for an unknown id
    found: list[tuple[str, int]] = []
    for subject in registry.subjects():
        for version in registry.versions(subject):
            if registry.get_version(subject, version).schema_id == schema_id:
                found.append((subject, version))
    return found


__all__ = [
    "MEDIA_TYPE",
    "KnowsSchemaUsages",
    "KnowsSubjectConfig",
    "SchemaRegistryResponse",
    "create_app",
    "error_response",
    "schema_registry_router",
]
