"""One table from HTTP status to the hub's error families, with a per-connector override hook.

- 401 / 403: :class:`~hub.errors.ConfigError` (bad or revoked credentials, missing scope).
- 404: :class:`NotFoundError`, which a caller catches (or allows) when "not there" is a normal answer.
- 408, 425, 429 and 5xx (except 501 and 505): :class:`~hub.errors.TransientError`, carrying ``Retry-After``.
- any other 4xx: :class:`HttpError` with the status and a short, redacted body.

A connector passes a :data:`StatusOverride` to map vendor quirks first: a 403 body naming a missing scope, a
200 whose body says ``{"error": "invalid_token"}``, a GraphQL ``THROTTLED`` error that is really a wait.
Every message goes through :func:`hub.redact.redact`, so no secret reaches exception text.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Collection
from datetime import UTC
from email.utils import parsedate_to_datetime

import httpx

from hub.errors import ConfigError, HubError, TransientError
from hub.redact import redact, sanitize_url

# 501 Not Implemented and 505 Version Not Supported will answer the same on every retry.
_PERMANENT_5XX = frozenset({501, 505})
_TRANSIENT_4XX = frozenset({408, 425, 429})
_BODY_LIMIT = 300

StatusOverride = Callable[[httpx.Response], HubError | None]
"""Maps a response to an error before the table is consulted; None falls through to the table."""


class HttpError(HubError):
    """A 4xx answer that is neither a credentials problem nor a rate limit.

    Args:
        message: what failed, already redacted.
        status: the HTTP status, or None when no response was received.
        body: a short, redacted excerpt of the response body.
    """

    def __init__(self, message: str, *, status: int | None = None, body: str = "") -> None:
        super().__init__(message)
        self.status = status
        self.body = body


class NotFoundError(HttpError):
    """HTTP 404: the caller decides whether "not there" is an error."""


def retry_after_seconds(value: str | None, *, now: Callable[[], float] = time.time) -> float | None:
    """Seconds to wait from a ``Retry-After`` header value (delta seconds or an HTTP date).

    Args:
        value: the header value, or None when absent.
        now: the current POSIX time (injectable for tests).

    Returns:
        The wait in seconds (never negative), or None when absent or unparseable.
    """
    if value is None or not value.strip():
        return None
    text = value.strip()
    try:
        return max(0.0, float(text))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:  # an HTTP date is always GMT; be lenient with servers that omit it
        when = when.replace(tzinfo=UTC)
    return max(0.0, when.timestamp() - now())


def short_body(response: httpx.Response, limit: int = _BODY_LIMIT) -> str:
    """The first ``limit`` characters of the body, whitespace collapsed and secrets masked."""
    try:
        text = response.text
    except (httpx.ResponseNotRead, UnicodeDecodeError):
        return ""
    text = " ".join(text.split())
    if len(text) > limit:
        text = text[:limit] + "..."
    return redact(text)


def describe_request(response: httpx.Response) -> str:
    """``METHOD sanitized-url`` of the request behind ``response`` (empty when unknown)."""
    try:
        request = response.request
    except RuntimeError:  # a Response built by hand has no request
        return ""
    return f"{request.method} {sanitize_url(str(request.url))}"


def error_for_response(
    response: httpx.Response,
    *,
    override: StatusOverride | None = None,
    allow: Collection[int] = (),
) -> HubError | None:
    """The error a response stands for, or None when it is a success (or an allowed status).

    Args:
        response: the response, with its body read.
        override: a connector's hook, consulted first.
        allow: statuses the caller handles itself (e.g. ``{404}``); they map to None.

    Returns:
        A ConfigError, TransientError, NotFoundError or HttpError, or None.
    """
    if override is not None:
        mapped = override(response)
        if mapped is not None:
            return mapped
    status = response.status_code
    if status < 400 or status in allow:
        return None
    where = describe_request(response)
    body = short_body(response)
    prefix = f"{where}: " if where else ""
    if status in (401, 403):
        return ConfigError(f"{prefix}{_credentials_problem(status)}{_tail(body)}")
    if status in _TRANSIENT_4XX or (status >= 500 and status not in _PERMANENT_5XX):
        wait = retry_after_seconds(response.headers.get("Retry-After"))
        return TransientError(
            f"{prefix}HTTP {status} {response.reason_phrase}{_tail(body)}", retry_after=wait,
            rate_limited=status == 429,
        )
    cls = NotFoundError if status == 404 else HttpError
    return cls(f"{prefix}HTTP {status} {response.reason_phrase}{_tail(body)}", status=status, body=body)


def raise_for_response(
    response: httpx.Response,
    *,
    override: StatusOverride | None = None,
    allow: Collection[int] = (),
) -> None:
    """Raise :func:`error_for_response`'s error, if any.

    Raises:
        ConfigError, TransientError, NotFoundError, HttpError: as mapped.
    """
    error = error_for_response(response, override=override, allow=allow)
    if error is not None:
        raise error


def _credentials_problem(status: int) -> str:
    if status == 401:
        return "HTTP 401 Unauthorized: the credentials were rejected (wrong, expired or revoked token or key)"
    return "HTTP 403 Forbidden: the credentials lack a permission or scope this request needs"


def _tail(body: str) -> str:
    return f": {body}" if body else ""
