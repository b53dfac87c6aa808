"""The error families the runner and scheduler key their behaviour on.

- ``ConfigError``: bad credentials, missing scope, invalid config. Stop that connector and tell the admin.
- ``TransientError``: rate limits, server errors, timeouts. Retry or back off; the run may be retried later.
- ``SkippableRecordError``: one bad record (payload or CSV row). Count it, log it, go on with the rest.
"""

from __future__ import annotations


class HubError(Exception):
    """Base class of every error Audience Hub raises on purpose."""


class ConfigError(HubError):
    """The configuration, credentials or granted scopes are wrong; retrying will not help.

    Args:
        message: what is wrong, in words an admin can act on.
        location: ``file:line:col`` when the error points into a config or rule file.
        field: the dotted field path the error is about, if any.
    """

    def __init__(self, message: str, *, location: str | None = None, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.location = location
        self.field = field

    def __str__(self) -> str:
        parts = [p for p in (self.location, self.field) if p]
        return ": ".join([*parts, self.message])


class ConfigErrors(ConfigError):
    """Several config errors found at once; each is reported on its own line."""

    def __init__(self, errors: list[ConfigError]) -> None:
        super().__init__("\n".join(str(e) for e in errors))
        self.errors = errors


class TransientError(HubError):
    """A temporary failure (429, 5xx, timeout): worth retrying after a wait.

    Args:
        message: what failed.
        retry_after: seconds the server asked us to wait, when it said.
        rate_limited: the server refused for a rate limit (429, a GraphQL THROTTLED): with ``retry_after``
            it is pacing rather than a failure, and retries do not count it against their attempts.
    """

    def __init__(self, message: str, *, retry_after: float | None = None, rate_limited: bool = False) -> None:
        super().__init__(message)
        self.retry_after = retry_after
        self.rate_limited = rate_limited


class SkippableRecordError(HubError):
    """One record cannot be used (bad payload, bad CSV row); skip and count it."""

    def __init__(self, message: str, *, location: str | None = None) -> None:
        super().__init__(message)
        self.location = location

    def __str__(self) -> str:
        base = super().__str__()
        return f"{self.location}: {base}" if self.location else base


class PaginationLoopError(HubError):
    """A paginator saw the same page token twice; following it would loop forever."""


class Stopped(HubError):
    """A stop was asked for (SIGTERM, SIGINT, a daemon shutdown) while the run waited: it ends after its last
    committed page, which the next run resumes from."""
