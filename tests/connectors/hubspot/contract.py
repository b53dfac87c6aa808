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

# API family (path prefix) -> spec file, first match wins. Deals by name use the generic objects spec: the deals
# file is written for the object type id path (/crm/v3/objects/0-3), while the connector uses the documented
# /crm/v3/objects/deals. Custom object schemas (/crm/v3/schemas, /crm-object-schemas/v3/schemas) have no file in
# HubSpot's spec collection: those answers are checked by the official SDK's models only.
SPEC_FILES: tuple[tuple[str, str], ...] = (
    ("/oauth/v1/", "hubspot/oauth-v1.json"),
    ("/crm/v3/objects/contacts", "hubspot/crm-contacts-v3.json"),
    ("/crm/v3/objects/companies", "hubspot/crm-companies-v3.json"),
    ("/crm/v3/objects/0-3", "hubspot/crm-deals-v3.json"),
    ("/crm/v3/objects/", "hubspot/crm-objects-v3.json"),
    ("/crm/v3/properties/", "hubspot/crm-properties-v3.json"),
    ("/crm/v3/pipelines/", "hubspot/crm-pipelines-v3.json"),
    ("/crm/v3/owners", "hubspot/crm-owners-v3.json"),
    ("/crm/associations/v4/", "hubspot/crm-associations-schema-v4.json"),
    ("/crm/v4/", "hubspot/crm-associations-v4.json"),
    ("/crm/v3/lists", "hubspot/crm-lists-v3.json"),
)
# The association labels: HubSpot's guide and the official SDK call /crm/v4/associations/{from}/{to}/labels; the
# spec collection lists the same operation under /crm/associations/v4/{from}/{to}/labels (associations schema).
_LABELS_SPEC = "hubspot/crm-associations-schema-v4.json"
_LABELS_SPEC_PATH = "/crm/associations/v4/{fromObjectType}/{toObjectType}/labels"
_LABELS_PATH = "/crm/v4/associations/{fromObjectType}/{toObjectType}/labels"


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
    for name in ("SimplePublicObject", "SimplePublicObjectWithAssociations", "SimplePublicUpsertObject"):
        schema = spec["components"]["schemas"].get(name)
        if schema is not None:
            schema["properties"]["properties"]["additionalProperties"]["nullable"] = True


def _json_errors(spec: dict[str, Any]) -> None:
    # Error bodies are declared as `*/*`, which the validator cannot parse; HubSpot sends them as JSON.
    error = spec["components"].get("responses", {}).get("Error")
    if error is not None and "*/*" in error.get("content", {}):
        error["content"] = {"application/json": error["content"]["*/*"]}


def _optional_request_fields(spec: dict[str, Any]) -> None:
    # The spec marks every search field required, and `associations` required when creating a record; the live
    # API (and every example in HubSpot's guides) accepts a search with only some of them and a create with
    # properties only. The official SDK sends what its caller set, so these requests leave them out.
    schemas = spec["components"]["schemas"]
    if "PublicObjectSearchRequest" in schemas:
        schemas["PublicObjectSearchRequest"].pop("required", None)
    for name in ("SimplePublicObjectInputForCreate", "SimplePublicObjectBatchInputForCreate"):
        if name in schemas:
            schemas[name]["required"] = [f for f in schemas[name].get("required", []) if f != "associations"]


def _unlabeled_association_types(spec: dict[str, Any]) -> None:
    # The unlabeled association type (e.g. 279, contact to company) comes with "label": null in HubSpot's answers
    # and guides; the spec types `label` as a plain string.
    schema = spec["components"]["schemas"].get("AssociationSpecWithLabel")
    if schema is not None:
        schema["properties"]["label"]["nullable"] = True


def _labels_path_alias(spec: dict[str, Any]) -> None:
    # See _LABELS_PATH: the labels operation (and the one schema it answers with) joins the associations spec.
    if "/crm/v4/associations/{fromObjectType}/{toObjectType}/batch/read" not in spec["paths"]:
        return
    with open(spec_path(_LABELS_SPEC), encoding="utf-8") as handle:
        labels = json.load(handle)
    spec["paths"][_LABELS_PATH] = {"get": labels["paths"][_LABELS_SPEC_PATH]["get"]}
    name = "CollectionResponseAssociationSpecWithLabelNoPaging"
    spec["components"]["schemas"][name] = labels["components"]["schemas"][name]


def _no_content_without_media_types(spec: dict[str, Any]) -> None:
    # A 204 is declared with an empty content map ("content": {}), which the validator reads as a body it must
    # find; a 204 has none. Declared without content, the answer is checked for its status only.
    for item in spec["paths"].values():
        for operation in item.values():
            if not isinstance(operation, dict):
                continue
            for answer in operation.get("responses", {}).values():
                if isinstance(answer, dict) and answer.get("content") == {}:
                    del answer["content"]


DEVIATIONS: tuple[Callable[[dict[str, Any]], None], ...] = (
    _no_content_without_media_types,
    _sorts_as_objects,
    _nullable_property_values,
    _json_errors,
    _optional_request_fields,
    _unlabeled_association_types,
    _labels_path_alias,
)


def spec_for(path: str) -> str | None:
    """The spec file of a request path (None for the sandbox's own control endpoints and for paths no spec has)."""
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
        request = _without_trailing_slash(request)
        relative = spec_for(request.url.path)
        if relative is None or (response.content and not _is_json(response)):
            continue  # a control endpoint, a path no spec has, or a body the sandbox corrupted on purpose (a fault)
        spec = api(relative)
        problems.extend(_violations(spec, request, response, requests))
        checked += 1
    if problems:
        unique = list(dict.fromkeys(problems))
        raise AssertionError(f"{len(unique)} contract violation(s):\n" + "\n".join(unique[:20]))
    return checked


def _without_trailing_slash(request: httpx.Request) -> httpx.Request:
    # The official SDK calls GET /crm/v3/owners/ (with a slash); HubSpot serves it as the spec's /crm/v3/owners.
    path = request.url.path
    if len(path) <= 1 or not path.endswith("/"):
        return request
    url = request.url.copy_with(path=path.rstrip("/"))
    return httpx.Request(request.method, url, headers=request.headers, content=request.content)
