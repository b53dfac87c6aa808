"""Redaction of secrets: resolved secret values, auth headers and API-key query parameters.

Every secret the hub resolves is registered here before it is used, and the logging filter
(:mod:`hub.logsetup`), exception formatting and ``--json`` output pass text through :func:`redact`.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

MASK = "***"

# Query parameters and headers that carry credentials at one vendor or another.
SENSITIVE_PARAMS = frozenset(
    {"apikey", "api_key", "key", "token", "access_token", "refresh_token", "client_secret", "password",
     "secret", "code", "hapikey", "auth", "signature"}
)
SENSITIVE_HEADERS = frozenset(
    {"authorization", "proxy-authorization", "x-api-key", "x-shopify-access-token", "cookie", "set-cookie",
     "x-hubspot-signature", "x-hubspot-signature-v3"}
)
# Values shorter than this are not registered: masking "a" or "1" everywhere would shred logs for no gain.
_MIN_SECRET_LEN = 4

_lock = threading.Lock()
_secrets: set[str] = set()
_pattern: re.Pattern[str] | None = None
# A value ends before punctuation that closes the sentence around it ("...?api_key=abc: HTTP 404", "(see URL)"),
# and an already masked value is taken as just the mask, so redacting twice gives what redacting once does.
_TRAILING = r"[:;,.)\]}]*"
_HEADER_RE = re.compile(
    r"(?i)\b(authorization|proxy-authorization|x-api-key|x-shopify-access-token)(['\"]?\s*[:=]\s*['\"]?)"
    r"(bearer\s+|basic\s+|zoho-oauthtoken\s+)?(\*\*\*|[^\s'\",}]+?)(?=" + _TRAILING + r"(?:[\s'\",}]|$))"
)
_PARAM_RE = re.compile(
    r"(?i)([?&](?:" + "|".join(sorted(SENSITIVE_PARAMS)) + r")=)(\*\*\*|[^&\s'\"#]+?)(?="
    + _TRAILING + r"(?:[&\s'\"#]|$))"
)


def register_secret(value: str | None) -> None:
    """Mask ``value`` wherever it appears in logs, errors and JSON output from now on."""
    global _pattern
    if not value or len(value) < _MIN_SECRET_LEN:
        return
    with _lock:
        if value in _secrets:
            return
        _secrets.add(value)
        # Longest first, so a secret that contains another is masked whole.
        ordered = sorted(_secrets, key=len, reverse=True)
        _pattern = re.compile("|".join(re.escape(s) for s in ordered))


def clear_secrets() -> None:
    """Forget every registered secret (tests only)."""
    global _pattern
    with _lock:
        _secrets.clear()
        _pattern = None


def redact(text: str) -> str:
    """``text`` with registered secrets, auth header values and sensitive query parameters masked."""
    pattern = _pattern
    if pattern is not None:
        text = pattern.sub(MASK, text)
    text = _HEADER_RE.sub(lambda m: f"{m.group(1)}{m.group(2)}{m.group(3) or ''}{MASK}", text)
    return _PARAM_RE.sub(lambda m: f"{m.group(1)}{MASK}", text)


def redact_data(value: Any) -> Any:
    """A copy of JSON-like ``value`` with every string in it (mapping keys too) passed through :func:`redact`.

    Redact data *before* serialising it: masking serialised JSON text can eat the backslash of an escaped quote
    (``?api_key=abc\\"``) and break the document, and a secret holding a quote or a non-ASCII character is
    spelled differently once escaped. Numbers, booleans and None stay as they are; any other object becomes
    its redacted ``str()``.
    """
    if isinstance(value, str):
        return redact(value)
    if value is None or isinstance(value, bool | int | float):
        return value
    if isinstance(value, Mapping):
        return {(redact(k) if isinstance(k, str) else k): redact_data(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [redact_data(v) for v in value]
    return redact(str(value))


def sanitize_url(url: str) -> str:
    """The URL with userinfo and sensitive query parameter values masked."""
    parts = urlsplit(url)
    netloc = parts.netloc
    if "@" in netloc:
        netloc = f"{MASK}@{netloc.rsplit('@', 1)[1]}"
    query = parts.query
    if query:
        pairs = [(k, MASK if k.lower() in SENSITIVE_PARAMS else v) for k, v in parse_qsl(query, keep_blank_values=True)]
        query = urlencode(pairs, safe="*")
    return redact(urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment)))


def sanitize_headers(headers: Mapping[str, str] | Iterable[tuple[str, str]]) -> dict[str, str]:
    """Headers with credential-carrying values masked."""
    items = headers.items() if isinstance(headers, Mapping) else headers
    return {k: (MASK if k.lower() in SENSITIVE_HEADERS else redact(v)) for k, v in items}
