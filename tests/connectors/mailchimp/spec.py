"""Mailchimp's official spec, loaded once per process, and the contract check of recorded exchanges.

The shared helper's loader validates the spec document itself, and the Mailchimp file does not pass: its
README lists 20 upstream ``type: string`` fields with ``default: false``. Validating a 5 MB vendor file is
also slow (about 11 s), and it is not ours to fix, so it is loaded here without that step. openapi-core has
no deserializer for ``application/problem+json``, the media type of every Mailchimp error, so one is added.
The checks themselves are the shared helper's (:func:`check_request`, :func:`check_response`).

Where the spec disagrees with Mailchimp's documented live behaviour, it is patched in memory here, each patch
with its reason (the connector's README lists them under "Spec and live API").
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from functools import cache
from typing import Any

import httpx

from tests.contract.openapi import check_request, check_response, spec_path, specs_dir

SPEC = "mailchimp/mailchimp-marketing-3.0.55.openapi.json"

# Member timestamps the live API sends as "" when it has none (an imported member has no signup time).
_EMPTY_TIMESTAMPS = frozenset({"timestamp_signup", "timestamp_opt"})


def _empty_member_timestamps(node: Any) -> None:
    # The spec types them `format: date-time`; the live API answers "" for an unknown time, which the
    # developer docs' own member examples show.
    if isinstance(node, dict):
        properties = node.get("properties")
        if isinstance(properties, dict):
            for name in _EMPTY_TIMESTAMPS & properties.keys():
                schema = properties[name]
                if isinstance(schema, dict) and schema.get("format") == "date-time":
                    properties[name] = {"anyOf": [dict(schema), {"type": "string", "maxLength": 0}]}
        for value in node.values():
            _empty_member_timestamps(value)
    elif isinstance(node, list):
        for value in node:
            _empty_member_timestamps(value)


def _oauth_bearer(spec: Any) -> None:
    # The spec declares HTTP Basic only; Mailchimp's OAuth guide sends the access token as a Bearer token to
    # the same endpoints.
    spec["components"]["securitySchemes"]["oauthBearer"] = {"type": "http", "scheme": "bearer"}
    spec["security"] = [*spec.get("security", []), {"oauthBearer": []}]


def _unresolvable_discriminators(node: Any) -> None:
    # The activity feed's items are a oneOf with a discriminator on activity_type but no mapping. In the
    # expanded file every schema is inlined (there is no components.schemas), so a validator resolving the
    # discriminator looks for "#/components/schemas/open" and fails on every item. Each variant pins
    # activity_type with an enum, so the oneOf alone tells them apart: the discriminator is dropped.
    if isinstance(node, dict):
        discriminator = node.get("discriminator")
        if isinstance(discriminator, dict) and "oneOf" in node and not discriminator.get("mapping"):
            del node["discriminator"]
        for value in node.values():
            _unresolvable_discriminators(value)
    elif isinstance(node, list):
        for value in node:
            _unresolvable_discriminators(value)


DEVIATIONS: tuple[Callable[[Any], None], ...] = (_empty_member_timestamps, _oauth_bearer, _unresolvable_discriminators)


@cache
def _load(path: str) -> Any:
    from openapi_core import Config, OpenAPI

    with open(path, encoding="utf-8") as fh:
        spec = json.load(fh)
    # Emulators serve the vendor's paths at the root of any host and under /3.0 (the API's own prefix).
    spec["servers"] = [{"url": "/3.0"}, {"url": "/"}]
    for patch in DEVIATIONS:
        patch(spec)
    config = Config(spec_validator_cls=None, extra_media_type_deserializers={"application/problem+json": json.loads})
    return OpenAPI.from_dict(spec, config=config)


def mailchimp_api() -> Any:
    """The parsed spec; skips the calling test when the file is absent."""
    return _load(str(spec_path(SPEC)))


def spec_present() -> bool:
    """Whether the spec file is available (contract checks at fixture teardown run only then)."""
    return (specs_dir() / SPEC).is_file()


def _is_json(response: httpx.Response) -> bool:
    try:
        json.loads(response.content)
    except ValueError:
        return False
    return True


def _in_spec(request: httpx.Request) -> bool:
    # The sandbox's control endpoints and the OAuth metadata endpoint (on login.mailchimp.com) are not part
    # of the Marketing API.
    path = request.url.path
    return not (path.startswith("/_sandbox") or path.endswith("/oauth2/metadata"))


def violations(
    exchanges: Iterable[tuple[httpx.Request, httpx.Response]], *, requests: bool = True
) -> tuple[int, list[str]]:
    """How many exchanges were checked, and every contract violation found (deduplicated)."""
    api = mailchimp_api()
    found: list[str] = []
    checked = 0
    for request, response in exchanges:
        if not _in_spec(request) or not _is_json(response):
            continue  # a control call, or a body the sandbox corrupted on purpose (a fault)
        checked += 1
        try:
            check_response(api, request, response)
        except AssertionError as exc:
            found.append(str(exc)[:600])
        if requests:
            try:
                check_request(api, request)
            except AssertionError as exc:
                found.append(str(exc)[:600])
    return checked, list(dict.fromkeys(found))


def sample(
    exchanges: Iterable[tuple[httpx.Request, httpx.Response]], per_kind: int = 3
) -> list[tuple[httpx.Request, httpx.Response]]:
    """A few exchanges of every (method, path shape, status): what a fixture checks after each test (the full
    check of a whole sync and push is ``test_contract``'s)."""
    seen: dict[tuple[str, str, int], int] = {}
    out: list[tuple[httpx.Request, httpx.Response]] = []
    for request, response in exchanges:
        shape = "/".join("{}" if any(c.isdigit() for c in part) else part for part in request.url.path.split("/"))
        key = (request.method, shape, response.status_code)
        seen[key] = seen.get(key, 0) + 1
        if seen[key] <= per_kind:
            out.append((request, response))
    return out


def check_exchanges(exchanges: Iterable[tuple[httpx.Request, httpx.Response]], *, requests: bool = True) -> int:
    """Raise AssertionError listing the violations of the recorded exchanges; return how many were checked."""
    checked, problems = violations(exchanges, requests=requests)
    if problems:
        raise AssertionError(f"{len(problems)} contract violation(s):\n" + "\n".join(problems[:20]))
    return checked
