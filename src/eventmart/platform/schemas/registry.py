"""The schema registry port: subjects, versions, global ids, compatibility per subject.

Adapters: `SqlSchemaRegistry` (SQLite on the embedded profile, PostgreSQL on the
distributed one) and `HttpSchemaRegistry` (any Confluent-compatible registry by URL,
including eventmart's own REST service).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from enum import StrEnum


class CompatibilityMode(StrEnum):
    NONE = "NONE"
    BACKWARD = "BACKWARD"
    BACKWARD_TRANSITIVE = "BACKWARD_TRANSITIVE"
    FORWARD = "FORWARD"
    FORWARD_TRANSITIVE = "FORWARD_TRANSITIVE"
    FULL = "FULL"
    FULL_TRANSITIVE = "FULL_TRANSITIVE"


DEFAULT_COMPATIBILITY = CompatibilityMode.BACKWARD


@dataclass(frozen=True, slots=True)
class RegisteredSchema:
    subject: str
    version: int
    schema_id: int
    schema: str  # canonical JSON text of the Avro schema


class SchemaRegistry(ABC):
    """Stores Avro schemas under subjects and refuses versions that break compatibility.

    Guarantees: a schema id names one schema text forever; registering a schema that a
    subject already holds returns the existing id (idempotent); a new version is accepted
    only if it is compatible, under the subject's mode, with the version(s) the mode names.
    """

    @abstractmethod
    def register(self, subject: str, schema: str) -> int:
        """Register `schema` under `subject`; return its global id.

        Raises InvalidSchemaError for a schema Avro cannot parse and IncompatibleSchemaError
        (a 409) naming each incompatibility.
        """

    @abstractmethod
    def lookup(self, subject: str, schema: str) -> RegisteredSchema | None:
        """The version of `subject` holding `schema`, if any."""

    @abstractmethod
    def get_schema(self, schema_id: int) -> str:
        """The schema text of a global id; SchemaNotFoundError if unknown."""

    @abstractmethod
    def get_version(self, subject: str, version: int | str = "latest") -> RegisteredSchema:
        """One version of a subject (`latest` or a number)."""

    @abstractmethod
    def versions(self, subject: str) -> list[int]:
        """The live versions of a subject, oldest first."""

    @abstractmethod
    def subjects(self) -> list[str]:
        """All subjects with at least one live version."""

    @abstractmethod
    def compatibility(self, subject: str | None = None) -> CompatibilityMode:
        """The mode of a subject (falling back to the global mode), or the global mode."""

    @abstractmethod
    def set_compatibility(self, mode: CompatibilityMode, subject: str | None = None) -> None:
        """Set a subject's mode, or the global mode when `subject` is None."""

    @abstractmethod
    def check_compatibility(
        self, subject: str, schema: str, version: int | str | None = None
    ) -> list[str]:
        """The reasons `schema` would be refused (empty when compatible).

        With `version` the check is against that one version only, as the Confluent
        `/compatibility/subjects/{s}/versions/{v}` endpoint does; without it, against the
        versions the subject's mode names.
        """

    @abstractmethod
    def delete_subject(self, subject: str) -> list[int]:
        """Soft-delete a subject; return the versions deleted."""

    @abstractmethod
    def delete_version(self, subject: str, version: int | str) -> int:
        """Soft-delete one version; return its number."""
