"""One root exception for the platform, and the errors callers are expected to handle."""


class EventmartError(Exception):
    """Root of every error eventmart raises on purpose."""


class ConfigurationError(EventmartError):
    """Settings are missing or unsafe; the message says which setting to change."""


class ConcurrencyError(EventmartError):
    """An append expected a stream version that is no longer current."""

    def __init__(self, stream_id: str, expected: int, actual: int) -> None:
        super().__init__(
            f"stream {stream_id!r} is at version {actual}, the append expected {expected}"
        )
        self.stream_id = stream_id
        self.expected = expected
        self.actual = actual


class PoisonMessageError(EventmartError):
    """A message that can never be handled, however often it is retried.

    The consumer runtime sends it to the dead-letter topic at once, with this error's
    text as the reason, and goes on with the next message.
    """


class UnknownMessageTypeError(PoisonMessageError):
    """The message's type is not one this consumer knows."""


class DeserializationError(PoisonMessageError):
    """The message body does not match its schema, or is not in the wire format."""


class UnknownSchemaError(PoisonMessageError):
    """The body names a schema id that the registry does not know."""


class SchemaRegistryError(EventmartError):
    """A registry request failed; `error_code` follows the Confluent REST codes."""

    def __init__(self, message: str, error_code: int) -> None:
        super().__init__(message)
        self.error_code = error_code


class SubjectNotFoundError(SchemaRegistryError):
    def __init__(self, subject: str) -> None:
        super().__init__(f"Subject '{subject}' not found.", 40401)


class VersionNotFoundError(SchemaRegistryError):
    def __init__(self, subject: str, version: object) -> None:
        super().__init__(f"Version {version} not found for subject '{subject}'.", 40402)


class SchemaNotFoundError(SchemaRegistryError):
    def __init__(self, what: str) -> None:
        super().__init__(f"Schema {what} not found.", 40403)


class InvalidSchemaError(SchemaRegistryError):
    def __init__(self, reason: str) -> None:
        super().__init__(f"Invalid schema: {reason}", 42201)


class IncompatibleSchemaError(SchemaRegistryError):
    """A new schema version would break readers; `reasons` name each incompatibility."""

    def __init__(self, subject: str, mode: str, reasons: list[str]) -> None:
        joined = "; ".join(reasons)
        super().__init__(
            f"Schema being registered is incompatible with an earlier schema for subject "
            f"'{subject}' (compatibility {mode}): {joined}",
            409,
        )
        self.subject = subject
        self.mode = mode
        self.reasons = reasons


class LeaseLostError(EventmartError):
    """This consumer no longer owns the partition it tried to commit or read."""


class RetryLaterError(EventmartError):
    """A downstream dependency is unavailable; pause and try the same message again later.

    Unlike other errors it does not count towards the dead-letter threshold.
    """

    def __init__(self, reason: str, delay_s: float = 1.0) -> None:
        super().__init__(reason)
        self.delay_s = delay_s
