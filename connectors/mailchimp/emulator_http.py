"""The emulator's HTTP vocabulary: problem answers, query and body parsing, ``fields`` projection.

Kept apart from :mod:`.emulator` (the routes) and :mod:`.emulator_members` (member writes), which both use it.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import httpx

from . import settings
from .paging import parse_time

NOT_FOUND = "The requested resource could not be found."
NOT_VALID = "The resource submitted could not be validated. For field-specific details, see the 'errors' array."

TITLES = {
    400: "Invalid Resource",
    401: "API Key Invalid",
    403: "Forbidden",
    404: "Resource Not Found",
    405: "Method Not Allowed",
    429: "Too Many Requests",
    500: "Internal Server Error",
    502: "Bad Gateway",
    503: "Service Unavailable",
}


class Problem(Exception):
    """An error answer (problem+json) raised by a handler.

    Args:
        status: the HTTP status.
        detail: Mailchimp's ``detail`` sentence.
        title: the ``title``; default the status's usual one ("Invalid Resource" for 400, ...).
        errors: field errors (``[{field, message}]``), as validation errors carry them.
    """

    def __init__(
        self, status: int, detail: str, *, title: str | None = None, errors: Sequence[Mapping[str, str]] = ()
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.title = title or TITLES.get(status, "Error")
        self.errors = list(errors)


def invalid(field: str, message: str) -> Problem:
    """A 400 validation problem about one field."""
    return Problem(400, NOT_VALID, errors=[{"field": field, "message": message}])


def not_found() -> Problem:
    """Mailchimp's 404 for an unknown list, member, segment or campaign."""
    return Problem(404, NOT_FOUND)


@dataclass
class Answer:
    """What a handler answers: the status, the JSON body, and how many items it carries (for the latency).

    A 204 answer has no body at all (``body`` is ignored).
    """

    status: int
    body: Mapping[str, Any]
    items: int = 0
    problem: bool = False
    project: bool = True  # apply fields / exclude_fields


NO_CONTENT = Answer(204, {}, project=False)


# ----------------------------------------------------------------------------------------------- requests


def api_path(request: httpx.Request) -> str:
    """The path without the API's ``/3.0`` prefix and without a trailing slash."""
    path = request.url.path
    if path == "/3.0" or path.startswith("/3.0/"):
        path = path[4:] or "/"
    return path.rstrip("/") or "/"


def basic_password(value: str) -> str:
    """The password of an HTTP Basic credential ('' when it does not decode)."""
    try:
        decoded = base64.b64decode(value.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return ""
    return decoded.partition(":")[2]


def same_dc(request: httpx.Request, dc: str) -> bool:
    """A key only works on its own data center's host (any other host: a sandbox or a proxy)."""
    host = request.url.host
    return not host.endswith(".api.mailchimp.com") or host.split(".", 1)[0] == dc


def paging(request: httpx.Request) -> tuple[int, int]:
    """``count`` (default 10, at most 1000) and ``offset`` of a list call."""
    q = request.url.params
    try:
        count = int(q.get("count", "10"))
        offset = int(q.get("offset", "0"))
    except ValueError:
        raise invalid("count", "count and offset must be integers") from None
    if not 0 <= count <= settings.PAGE_SIZE or offset < 0:
        raise invalid("count", f"count must be at most {settings.PAGE_SIZE}")
    return count, offset


def choice(q: httpx.QueryParams, name: str, allowed: Sequence[str]) -> str | None:
    """A query parameter that must be one of ``allowed`` (None when absent or empty)."""
    value = q.get(name)
    if value is None or value == "":
        return None
    if value not in allowed:
        raise Problem(
            400, f"{name} must be one of {', '.join(allowed)}.", errors=[{"field": name, "message": "invalid value"}]
        )
    return str(value)


def choices(q: httpx.QueryParams, name: str, allowed: Sequence[str]) -> set[str] | None:
    """A comma-separated list parameter (``activity_filters=open,click``); None when absent."""
    value = q.get(name)
    if not value:
        return None
    picked = {v.strip() for v in value.split(",") if v.strip()}
    unknown = picked - set(allowed)
    if unknown:
        raise Problem(
            400,
            f"{name} must be among {', '.join(allowed)}.",
            errors=[{"field": name, "message": f"unknown value(s): {', '.join(sorted(unknown))}"}],
        )
    return picked


def flag(q: httpx.QueryParams, name: str) -> bool:
    """A boolean query parameter (``true``/``True``/``1``, as clients write them)."""
    return q.get(name, "false").strip().lower() in ("true", "1")


def query_time(q: httpx.QueryParams, name: str) -> int | None:
    """An ISO 8601 query parameter as epoch seconds (None when absent)."""
    value = q.get(name)
    if not value:
        return None
    parsed = parse_time(value.replace(" ", "+"))  # a '+' sent unencoded arrives as a space
    if parsed is None:
        raise Problem(
            400,
            f"{name} must be an ISO 8601 time, like 2015-10-21T15:41:36+00:00.",
            errors=[{"field": name, "message": "invalid date"}],
        )
    return int(parsed.timestamp())


def json_body(request: httpx.Request) -> dict[str, Any]:
    """The request's JSON object (400 when it is not one)."""
    try:
        body = json.loads(request.content or b"{}")
    except ValueError:
        raise Problem(400, "We encountered an unspecified JSON parsing error.") from None
    if not isinstance(body, dict):
        raise Problem(400, "The request body must be a JSON object.")
    return body


def email_list(body: Mapping[str, Any], key: str) -> list[str]:
    """A body field holding an array of email addresses (absent: empty)."""
    value = body.get(key, [])
    if not isinstance(value, list) or not all(isinstance(e, str) for e in value):
        raise invalid(key, "Expected an array of email addresses.")
    return value


# ----------------------------------------------------------------------------------------------- projection


def _tree(paths: str | None) -> dict[str, Any]:
    tree: dict[str, Any] = {}
    for path in (paths or "").split(","):
        node = tree
        for part in (p for p in path.strip().split(".") if p):
            node = node.setdefault(part, {})
    return tree


def project(body: Mapping[str, Any], fields: str | None, exclude: str | None) -> Mapping[str, Any]:
    """``fields`` keeps only the named dot paths, ``exclude_fields`` drops them (lists apply to each item)."""
    out: Any = body
    keep = _tree(fields)
    if keep:
        out = _keep(out, keep)
    drop = _tree(exclude)
    if drop:
        out = _drop(out, drop)
    return out  # type: ignore[no-any-return]


def _keep(value: Any, tree: Mapping[str, Any]) -> Any:
    if not tree:
        return value
    if isinstance(value, list):
        return [_keep(v, tree) for v in value]
    if isinstance(value, dict):
        return {k: _keep(value[k], sub) for k, sub in tree.items() if k in value}
    return value


def _drop(value: Any, tree: Mapping[str, Any]) -> Any:
    if isinstance(value, list):
        return [_drop(v, tree) for v in value]
    if isinstance(value, dict):
        out = dict(value)
        for key, sub in tree.items():
            if key in out:
                if sub:
                    out[key] = _drop(out[key], sub)
                else:
                    del out[key]
        return out
    return value
