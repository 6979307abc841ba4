"""What the gateways' OpenAPI schemas say about errors and path parameters, in one place.

Every error answer of the edge is `{"detail": ...}`: a sentence naming the field or the
thing, or (422 from validation) the list of invalid fields. `errors(...)` documents the
statuses a route can give with those models, so a client (or schemathesis) reading the
schema finds every answer it can get described there.
"""

from __future__ import annotations

import re
from typing import Annotated, Any
from urllib.parse import quote

from fastapi import Path
from pydantic import BaseModel, ConfigDict, Field

# Ids of products, orders, dead letters, traces and event streams: UUIDs, SKU-like strings
# and `<group>-<partition>-<offset>`. Printable, no separators, starting with a letter or
# digit (so never `.` or `..`), at most 64 characters: what the services accept (inventory
# and basket refuse longer product ids). Anything else is refused at the edge with a 422
# naming the parameter, before it is put into a downstream URL.
ID_REGEX = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"
ID_PATTERN = re.compile(ID_REGEX)
ResourceId = Annotated[
    str,
    Path(
        pattern=ID_REGEX,
        description="an id: letters, digits, `.`, `_` and `-`, at most 64 characters",
        examples=["0197a3c2-5d1e-7c4b-9f00-2a6b8c1d9e10"],
    ),
]


def segment(value: str) -> str:
    """One path segment for a downstream URL: percent-encoded, whatever the value holds
    (defence in depth: the ids are validated already)."""
    return quote(value, safe="")


class ErrorOut(BaseModel):
    """Every refusal: what went wrong, naming the field or the thing."""

    model_config = ConfigDict(extra="allow")

    detail: str = Field(examples=["order 0197a3c2-5d1e-7c4b-9f00-2a6b8c1d9e10 not found"])


class FieldError(BaseModel):
    model_config = ConfigDict(extra="allow")

    loc: list[str | int]
    msg: str
    type: str


class ValidationErrorOut(BaseModel):
    """Invalid input: the list of invalid fields (validation at the edge), or a sentence
    naming the field (a service's own check)."""

    model_config = ConfigDict(extra="allow")

    detail: list[FieldError] | str


_RETRY_AFTER = {
    "Retry-After": {
        "description": "seconds to wait before trying again",
        "schema": {"type": "string"},
    }
}
_DESCRIPTIONS = {
    400: "Bad request",
    401: "Not signed in, or the token is invalid or expired",
    403: "Administrators only",
    404: "Not found (another customer's order is not found either)",
    409: "Conflict with the current state",
    413: "Request body too large",
    422: "Invalid input: the detail names the field",
    429: "Rate limit exceeded",
    502: "A downstream service answered in a way the gateway cannot pass on",
    503: "Busy or a downstream service is unavailable: retry after Retry-After seconds",
}


def errors(*codes: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses=` entries for these error statuses."""
    out: dict[int | str, dict[str, Any]] = {}
    for code in codes:
        entry: dict[str, Any] = {
            "model": ValidationErrorOut if code == 422 else ErrorOut,
            "description": _DESCRIPTIONS.get(code, "Error"),
        }
        if code in (429, 503):
            entry["headers"] = _RETRY_AFTER
        out[code] = entry
    return out


def json_errors(*codes: int) -> dict[int | str, dict[str, Any]]:
    """`errors(...)` for a route whose success is not JSON (an event stream): FastAPI
    would document a `model` in the route's own media type, so the JSON is spelled out.
    (The models are in the schema's components: the other routes use them.)"""
    out: dict[int | str, dict[str, Any]] = {}
    for code, entry in errors(*codes).items():
        model = entry.pop("model")
        ref = {"$ref": f"#/components/schemas/{model.__name__}"}
        out[code] = {**entry, "content": {"application/json": {"schema": ref}}}
    return out


# What any route of a gateway can answer, whatever it does: the edge's size limit, rate
# limit and load shedding (middleware), and a downstream's failure.
COMMON_ERRORS = errors(413, 429, 502, 503)
