"""Contract checks of HubSpot exchanges against HubSpot's official OpenAPI files.

Every request the connector sends and every response the emulator gives is validated against the spec file of
its API family. The spec is followed to the letter except where it disagrees with HubSpot's documented live
behaviour; those places are patched in memory here, each with its reason, and listed in the connector's
README ("Spec and live API"). The files themselves are read from ``HUB_SPECS_DIR`` and never copied.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Callable, Iterable
from functools import cache
from typing import Any

import httpx

from tests.contract.openapi import check_request, check_response, spec_path, specs_dir

# API family (path prefix) -> spec file. Deals use the generic objects spec: the deals file is written for the
# object type id path (/crm/v3/objects/0-3), while the connector uses the documented /crm/v3/objects/deals.
SPEC_FILES: tuple[tuple[str, str], ...] = (
    ("/oauth/v1/", "hubspot/oauth-v1.json"),
    ("/crm/v3/objects/contacts", "hubspot/crm-contacts-v3.json"),
    ("/crm/v3/objects/", "hubspot/crm-objects-v3.json"),
    ("/crm/v3/properties/", "hubspot/crm-properties-v3.json"),
    ("/crm/v3/pipelines/", "hubspot/crm-pipelines-v3.json"),
    ("/crm/v4/associations/", "hubspot/crm-associations-v4.json"),
    ("/crm/v3/lists", "hubspot/crm-lists-v3.json"),
)


def _sorts_as_objects(spec: dict[str, Any]) -> None:
    # The spec types search `sorts` as an array of strings; HubSpot's search guide and the live API take
    # objects {"propertyName", "direction"}, as every example in the guide does. Both forms
    # are allowed here.
    schema = spec["components"]["schemas"].get("PublicObjectSearchRequest")
    if schema is not None:
        schema["properties"]["sorts"]["items"] = {
            "anyOf": [
                {"type": "string"},
                {
                    "type": "object",
                    "required": ["propertyName"],
                    "properties": {
                        "propertyName": {"type": "string"},
                        "direction": {"type": "string", "enum": ["ASCENDING", "DESCENDING"]},
                    },
                },
            ]
        }


def _nullable_property_values(spec: dict[str, Any]) -> None:
    # The live API returns null for a requested property that has no value; the spec types every value as a
    # plain string (the spec collection's README notes `properties{name: string|null}`).
    for name in ("SimplePublicObject", "SimplePublicObjectWithAssociations"):
        schema = spec["components"]["schemas"].get(name)
        if schema is not None:
            schema["properties"]["properties"]["additionalProperties"]["nullable"] = True


def _json_errors(spec: dict[str, Any]) -> None:
    # Error bodies are declared as `*/*`, which the validator cannot parse; HubSpot sends them as JSON.
    error = spec["components"].get("responses", {}).get("Error")
    if error is not None and "*/*" in error.get("content", {}):
        error["content"] = {"application/json": error["content"]["*/*"]}


DEVIATIONS: tuple[Callable[[dict[str, Any]], None], ...] = (_sorts_as_objects, _nullable_property_values, _json_errors)


def spec_for(path: str) -> str | None:
    """The spec file of a request path (None for the sandbox's own control endpoints)."""
    return next((spec for prefix, spec in SPEC_FILES if path.startswith(prefix)), None)


def _violations(spec: Any, request: httpx.Request, response: httpx.Response, requests: bool) -> list[str]:
    found: list[str] = []
    with warnings.catch_warnings():
        # openapi-core cannot model the private-app header scheme; auth is checked by the tests themselves.
        warnings.filterwarnings("ignore", "Unsupported scheme type", UserWarning)
        try:
            check_response(spec, request, response)
        except AssertionError as exc:
            found.append(str(exc))
        if requests:
            try:
                check_request(spec, request)
            except AssertionError as exc:
                found.append(str(exc))
    return found


def _is_json(response: httpx.Response) -> bool:
    try:
        json.loads(response.content)
    except ValueError:
        return False
    return True


@cache
def _api(path: str) -> Any:
    from openapi_core import OpenAPI

    with open(path, encoding="utf-8") as handle:
        spec = json.load(handle)
    spec["servers"] = [{"url": "/"}]  # emulators serve the vendor's paths at the root of any host
    for patch in DEVIATIONS:
        patch(spec)
    return OpenAPI.from_dict(spec)


def api(relative: str) -> Any:
    """The patched spec (skips the calling test when the file is absent)."""
    return _api(str(spec_path(relative)))


def specs_present() -> bool:
    """Whether the HubSpot specs are available (contract checks run only then)."""
    return (specs_dir() / "hubspot" / "crm-contacts-v3.json").is_file()


def check_exchanges(exchanges: Iterable[tuple[httpx.Request, httpx.Response]], *, requests: bool = True) -> int:
    """Validate every recorded exchange; raise AssertionError listing the violations; return the count checked.

    Args:
        exchanges: the recorded (request, response) pairs.
        requests: check the requests too (off for requests a test wrote by hand to probe the emulator).
    """
    problems: list[str] = []
    checked = 0
    for request, response in exchanges:
        relative = spec_for(request.url.path)
        if relative is None or not _is_json(response):
            continue  # a control endpoint, or a body the sandbox corrupted on purpose (a fault)
        spec = api(relative)
        problems.extend(_violations(spec, request, response, requests))
        checked += 1
    if problems:
        unique = list(dict.fromkeys(problems))
        raise AssertionError(f"{len(unique)} contract violation(s):\n" + "\n".join(unique[:20]))
    return checked
