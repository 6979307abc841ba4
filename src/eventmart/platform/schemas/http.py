"""The schema registry port against any Confluent-compatible registry, over HTTP."""

from __future__ import annotations

import re
from types import TracebackType
from typing import Any
from urllib.parse import quote

import httpx
from tenacity import (
    Retrying,
    retry_if_exception,
    stop_after_attempt,
    wait_exponential_jitter,
)

from eventmart.platform.errors import (
    IncompatibleSchemaError,
    InvalidSchemaError,
    RetryLaterError,
    SchemaNotFoundError,
    SchemaRegistryError,
    SubjectNotFoundError,
    VersionNotFoundError,
)
from eventmart.platform.schemas.registry import CompatibilityMode, RegisteredSchema, SchemaRegistry

MEDIA_TYPE = "application/vnd.schemaregistry.v1+json"
_ACCEPT = f"{MEDIA_TYPE}, application/vnd.schemaregistry+json, application/json"
_RETRIABLE_STATUS = frozenset({408, 429, 500, 502, 503, 504})
_SUBJECT_LEVEL_CONFIG_NOT_FOUND = 40408

# How eventmart's own registry and Confluent's name the mode in a 409 message.
_MODE_IN_MESSAGE = re.compile(r"\(compatibility (\w+)\): (.*)$", re.DOTALL)
_CONFLUENT_MODE = re.compile(r"\{compatibility: '(\w+)'\}")


class _TransientResponseError(Exception):
    """A response worth retrying (overload, timeout, server error)."""

    def __init__(self, response: httpx.Response) -> None:
        super().__init__(f"HTTP {response.status_code}")
        self.response = response


class HttpSchemaRegistry(SchemaRegistry):
    """The registry port over the Confluent REST API (eventmart's own service or Confluent's).

    Guarantees: registry errors come back as the typed errors of `eventmart.platform.errors`
    (unknown subject, version or id; invalid schema; a 409 as IncompatibleSchemaError with
    its reasons); calls that are idempotent (reads, registration, lookups, compatibility
    checks, config writes) are retried with jittered backoff on transport errors and
    408/429/5xx answers; deletes are sent once. A registry that stays unreachable raises
    RetryLaterError, so a consumer pauses instead of dead-lettering. Schema texts by id are
    cached, since an id names one schema forever.
    """

    def __init__(
        self,
        url: str,
        *,
        timeout_s: float = 5.0,
        attempts: int = 4,
        auth: tuple[str, str] | None = None,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.url = url.rstrip("/")
        self._client = httpx.Client(
            base_url=self.url,
            timeout=httpx.Timeout(timeout_s, connect=min(timeout_s, 2.0)),
            headers={"Accept": _ACCEPT},
            auth=auth,
            transport=transport,
        )
        self._attempts = attempts
        self._schemas: dict[int, str] = {}

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> HttpSchemaRegistry:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # --- the port -----------------------------------------------------------------------

    def register(self, subject: str, schema: str) -> int:
        body = self._call(
            "POST", f"/subjects/{_q(subject)}/versions", json={"schema": schema}, subject=subject
        )
        return int(body["id"])

    def lookup(self, subject: str, schema: str) -> RegisteredSchema | None:
        try:
            body = self._call("POST", f"/subjects/{_q(subject)}", json={"schema": schema})
        except SchemaRegistryError as e:
            if e.error_code in (40401, 40403):
                return None
            raise
        return _registered(body, subject)

    def get_schema(self, schema_id: int) -> str:
        text = self._schemas.get(schema_id)
        if text is None:
            body = self._call("GET", f"/schemas/ids/{int(schema_id)}", schema=str(schema_id))
            text = str(body["schema"])
            self._schemas[schema_id] = text
        return text

    def get_version(self, subject: str, version: int | str = "latest") -> RegisteredSchema:
        body = self._call(
            "GET",
            f"/subjects/{_q(subject)}/versions/{_q(str(version))}",
            subject=subject,
            version=version,
        )
        return _registered(body, subject)

    def versions(self, subject: str) -> list[int]:
        body = self._call("GET", f"/subjects/{_q(subject)}/versions", subject=subject)
        return [int(v) for v in body]

    def subjects(self) -> list[str]:
        return [str(s) for s in self._call("GET", "/subjects")]

    def compatibility(self, subject: str | None = None) -> CompatibilityMode:
        if subject is not None:
            try:
                body = self._call(
                    "GET", f"/config/{_q(subject)}", params={"defaultToGlobal": "true"}
                )
                return _mode_of(body)
            except SchemaRegistryError as e:
                # Registries that predate defaultToGlobal answer 40408 for "not set here".
                if e.error_code != _SUBJECT_LEVEL_CONFIG_NOT_FOUND:
                    raise
        return _mode_of(self._call("GET", "/config"))

    def subject_compatibility(self, subject: str) -> CompatibilityMode | None:
        """The subject's own mode, or None when it follows the global mode."""
        try:
            return _mode_of(self._call("GET", f"/config/{_q(subject)}"))
        except SchemaRegistryError as e:
            if e.error_code in (_SUBJECT_LEVEL_CONFIG_NOT_FOUND, 40401):
                return None
            raise

    def set_compatibility(self, mode: CompatibilityMode, subject: str | None = None) -> None:
        path = "/config" if subject is None else f"/config/{_q(subject)}"
        self._call("PUT", path, json={"compatibility": CompatibilityMode(mode).value})

    def check_compatibility(
        self, subject: str, schema: str, version: int | str | None = None
    ) -> list[str]:
        path = f"/compatibility/subjects/{_q(subject)}/versions"
        if version is not None:
            path += f"/{_q(str(version))}"
        body = self._call(
            "POST",
            path,
            json={"schema": schema},
            params={"verbose": "true"},
            subject=subject,
            version=version,
        )
        if body.get("is_compatible"):
            return []
        return [str(m) for m in body.get("messages") or ["incompatible (no reasons given)"]]

    def delete_subject(self, subject: str) -> list[int]:
        body = self._call("DELETE", f"/subjects/{_q(subject)}", subject=subject, retry=False)
        return [int(v) for v in body]

    def delete_version(self, subject: str, version: int | str) -> int:
        body = self._call(
            "DELETE",
            f"/subjects/{_q(subject)}/versions/{_q(str(version))}",
            subject=subject,
            version=version,
            retry=False,
        )
        return int(body)

    def schema_usages(self, schema_id: int) -> list[tuple[str, int]]:
        """The (subject, version) pairs holding a schema id; SchemaNotFoundError if unknown."""
        body = self._call("GET", f"/schemas/ids/{int(schema_id)}/versions", schema=str(schema_id))
        return [(str(item["subject"]), int(item["version"])) for item in body]

    # --- transport ----------------------------------------------------------------------

    def _call(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        params: dict[str, str] | None = None,
        subject: str | None = None,
        version: object = None,
        schema: str | None = None,
        retry: bool = True,
    ) -> Any:
        headers = {"Content-Type": MEDIA_TYPE} if json is not None else None

        def send() -> httpx.Response:
            response = self._client.request(method, path, json=json, params=params, headers=headers)
            if response.status_code in _RETRIABLE_STATUS:
                raise _TransientResponseError(response)
            return response

        retrying = Retrying(
            stop=stop_after_attempt(self._attempts if retry else 1),
            wait=wait_exponential_jitter(multiplier=0.05, max=2.0, jitter=0.05),
            retry=retry_if_exception(
                lambda e: isinstance(e, _TransientResponseError | httpx.TransportError)
            ),
            reraise=True,
        )
        try:
            response = retrying(send)
        except _TransientResponseError as e:
            response = e.response  # the registry answered; report what it said
        except httpx.TransportError as e:
            raise RetryLaterError(f"schema registry at {self.url} is unreachable: {e}") from e

        if response.is_success:
            return response.json() if response.content else None
        error = _error_from(response, subject=subject, version=version, schema=schema)
        if response.status_code in _RETRIABLE_STATUS:
            raise RetryLaterError(f"schema registry at {self.url} failed: {error}") from error
        raise error


def _q(segment: str) -> str:
    return quote(segment, safe="")


def _registered(body: dict[str, Any], subject: str) -> RegisteredSchema:
    return RegisteredSchema(
        subject=str(body.get("subject") or subject),
        version=int(body["version"]),
        schema_id=int(body["id"]),
        schema=str(body["schema"]),
    )


def _mode_of(body: dict[str, Any]) -> CompatibilityMode:
    value = body.get("compatibilityLevel") or body.get("compatibility")
    return CompatibilityMode(str(value).upper())


def _error_from(
    response: httpx.Response, *, subject: str | None, version: object, schema: str | None
) -> SchemaRegistryError:
    try:
        body = response.json()
        code = int(body.get("error_code") or response.status_code)
        message = str(body.get("message") or response.reason_phrase)
    except (ValueError, AttributeError, TypeError):
        code, message = response.status_code, response.text or response.reason_phrase
    if code == 40401 and subject is not None:
        return SubjectNotFoundError(subject)
    if code == 40402 and subject is not None:
        return VersionNotFoundError(subject, version)
    if code == 40403:
        return SchemaNotFoundError(schema if schema is not None else "")
    if code == 42201:
        return InvalidSchemaError(message.removeprefix("Invalid schema: "))
    if code == 409:
        mode, reasons = _incompatibility(message)
        return IncompatibleSchemaError(subject or "", mode, reasons)
    return SchemaRegistryError(message, code)


def _incompatibility(message: str) -> tuple[str, list[str]]:
    ours = _MODE_IN_MESSAGE.search(message)
    if ours:
        return ours[1], ours[2].split("; ")
    confluent = _CONFLUENT_MODE.search(message)
    return (confluent[1] if confluent else "UNKNOWN"), [message]
