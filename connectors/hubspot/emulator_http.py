"""What the HubSpot emulator's handlers share: the state they work on, request parsing, and HubSpot's answer
shapes (the ``Error`` object, batch answers, 207 partial results).

The handlers live in mixins (:mod:`.emulator_objects`, :mod:`.emulator_associations`, :mod:`.emulator_meta`)
combined by :class:`connectors.hubspot.emulator.HubSpotEmulator`. A handler takes the request and the path's
groups and returns ``(status, body)``; an error answer is raised as :class:`Reject`.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from datetime import datetime, timedelta
from typing import Any

import httpx

from hub.sandbox.emulator import EmulatorContext

from .emulator_crm import Account, CrmObject, ObjectTable, iso

JSON = dict[str, Any]
Answer = tuple[int, Any]


class Reject(Exception):
    """An error answer raised from inside a handler (HubSpot's ``Error`` object with ``category``)."""

    def __init__(self, http_status: int, category: str, message: str, **extra: Any) -> None:
        super().__init__(message)
        self.http_status = http_status
        self.category = category
        self.message = message
        self.extra = extra


class EmulatorState:
    """The state every handler mixin works on (set up by the emulator)."""

    ctx: EmulatorContext
    account: Account
    search_lag: timedelta

    def _table(self, object_type: str) -> ObjectTable:
        table = self.account.table(object_type)
        if table is None:
            raise Reject(400, "VALIDATION_ERROR", f"Unable to infer object type from: {object_type}")
        return table

    def _now(self) -> datetime:
        return self.ctx.clock.now()


# ---------------------------------------------------------------------- request parsing


def as_int(value: Any, default: int) -> int:
    """An integer from a query value or JSON field, else ``default``."""
    try:
        return int(str(value))
    except (TypeError, ValueError):
        return default


def flag(params: httpx.QueryParams, name: str) -> bool:
    """A boolean query parameter (``archived=true``)."""
    return str(params.get(name, "false")).lower() == "true"


def json_body(request: httpx.Request) -> JSON:
    """The request's JSON object body.

    Raises:
        Reject: 400 for a body that is not a JSON object.
    """
    data = json_value(request)
    if not isinstance(data, dict):
        raise Reject(400, "VALIDATION_ERROR", "The request body must be a JSON object")
    return data


def json_value(request: httpx.Request) -> Any:
    """The request's JSON body, whatever its type (some v4 endpoints take an array).

    Raises:
        Reject: 400 for a body that is not JSON.
    """
    try:
        return json.loads(request.content or b"null")
    except ValueError:
        raise Reject(400, "VALIDATION_ERROR", "Invalid input JSON on line 1") from None


def inputs(body: Mapping[str, Any], limit: int) -> list[JSON]:
    """The ``inputs`` of a batch body.

    Raises:
        Reject: 400 without inputs or with more than ``limit``.
    """
    items = body.get("inputs")
    if not isinstance(items, list):
        raise Reject(400, "VALIDATION_ERROR", "inputs is required")
    if len(items) > limit:
        raise Reject(400, "VALIDATION_ERROR", f"Batch input limit is {limit}, got {len(items)}")
    return [i for i in items if isinstance(i, dict)]


def requested(values: Iterable[str]) -> list[str]:
    """Names from repeated and comma-separated values, in order (``properties=a,b&properties=c``)."""
    names = (n.strip() for v in values for n in str(v).split(","))
    return list(dict.fromkeys(n for n in names if n))


def sort_of(sorts: Any) -> tuple[str, bool] | None:
    """The first search sort as (property, descending); both the string and the object form."""
    if not isinstance(sorts, list) or not sorts:
        return None
    first = sorts[0]
    if isinstance(first, str):  # the string form the spec declares: "name" or "-name"
        return first.lstrip("-"), first.startswith("-")
    if isinstance(first, Mapping) and first.get("propertyName"):
        return str(first["propertyName"]), str(first.get("direction", "ASCENDING")).upper() == "DESCENDING"
    return None


def string_properties(raw: Any) -> dict[str, str | None]:
    """Property values as HubSpot stores them: strings, an empty string clearing the value."""
    if raw is None:
        return {}
    if not isinstance(raw, Mapping):
        raise Reject(400, "VALIDATION_ERROR", "properties must be an object")
    return {str(k): (None if v is None or v == "" else _text(v)) for k, v in raw.items()}


def _text(value: Any) -> str:
    # JSON true/false arrive as booleans from loose clients; HubSpot stores "true"/"false".
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


# ---------------------------------------------------------------------- lookups and validation


def unique_index(table: ObjectTable, id_property: str) -> dict[str, CrmObject]:
    """Records by the (lower-cased) value of a unique property; live records win over archived ones.

    Raises:
        Reject: 400 when the property is not a unique identifier.
    """
    if id_property == "hs_object_id":
        return {str(i): o for i, o in table.rows.items()}
    if not table.definitions.get(id_property, {}).get("hasUniqueValue"):
        raise Reject(400, "VALIDATION_ERROR", f"{id_property} is not a unique identifier property")
    index: dict[str, CrmObject] = {}
    for obj in sorted(table.rows.values(), key=lambda o: o.archived):
        value = (obj.properties.get(id_property) or "").strip().lower()
        if value:
            index.setdefault(value, obj)
    return index


def find(table: ObjectTable, key: str, id_property: str | None, *, archived: bool = False) -> CrmObject | None:
    """The record ``key`` names (its id, or the value of ``id_property``), live or archived as asked."""
    if not id_property or id_property == "hs_object_id":
        obj = table.rows.get(as_int(key, -1))
    else:
        obj = unique_index(table, id_property).get(key.strip().lower())
    if obj is None or obj.archived != archived:
        return None
    return obj


def invalid_values(table: ObjectTable, properties: Mapping[str, Any] | None) -> list[JSON]:
    """HubSpot's per-property problems: unknown properties, values outside an enumeration's options."""
    problems: list[JSON] = []
    for name, value in (properties or {}).items():
        definition = table.definitions.get(name)
        if definition is None:
            problems.append(
                {
                    "isValid": False,
                    "message": f'Property "{name}" does not exist',
                    "error": "PROPERTY_DOESNT_EXIST",
                    "name": name,
                }
            )
            continue
        if definition.get("type") != "enumeration" or value in (None, ""):
            continue
        allowed = {str(o.get("value")) for o in definition.get("options") or ()}
        values = str(value).split(";") if definition.get("fieldType") == "checkbox" else [str(value)]
        for bad in (v for v in values if v not in allowed):
            problems.append(
                {
                    "isValid": False,
                    "message": f"{bad} was not one of the allowed options",
                    "error": "INVALID_OPTION",
                    "name": name,
                }
            )
    return problems


def check_values(table: ObjectTable, properties: Mapping[str, Any] | None) -> None:
    """Refuse the whole request when a value is invalid, as HubSpot does.

    Raises:
        Reject: 400 ``VALIDATION_ERROR`` listing the problems.
    """
    problems = invalid_values(table, properties)
    if problems:
        raise Reject(400, "VALIDATION_ERROR", "Property values were not valid: " + json.dumps(problems))


def options(raw: Any) -> list[JSON]:
    """Enumeration options of a property request, normalised.

    Raises:
        Reject: 400 for an option without label or value.
    """
    out: list[JSON] = []
    for i, option in enumerate(raw or []):
        if not isinstance(option, Mapping) or not option.get("value") or not option.get("label"):
            raise Reject(400, "VALIDATION_ERROR", "every option needs a label and a value")
        out.append(
            {
                "label": str(option["label"]),
                "value": str(option["value"]),
                "hidden": bool(option.get("hidden", False)),
                "displayOrder": int(option.get("displayOrder", i)),
                **({"description": str(option["description"])} if option.get("description") else {}),
            }
        )
    return out


# ---------------------------------------------------------------------- answers


def standard_error(category: str, message: str, context: Mapping[str, list[str]]) -> JSON:
    """One entry of a batch answer's ``errors`` (HubSpot's ``StandardError``)."""
    return {
        "status": "error",
        "category": category,
        "message": message,
        "context": dict(context),
        "errors": [],
        "links": {},
    }


def not_found(object_type: str, ids: list[str], traces: list[str] | None = None) -> JSON:
    """The batch error naming the ids HubSpot could not find."""
    kind = object_type.upper().rstrip("S")
    context: dict[str, list[str]] = {"ids": ids}
    if traces:
        context["objectWriteTraceId"] = traces
    message = f"Could not get some {kind} objects, they may be deleted or not exist. Check that ids are valid."
    return standard_error("OBJECT_NOT_FOUND", message, context)


def batch(results: list[JSON], errors: list[JSON], started: datetime, done: datetime, *, ok: int = 200) -> Answer:
    """A batch answer: ``ok`` when everything worked, 207 with ``errors`` and ``numErrors`` otherwise."""
    body: JSON = {"status": "COMPLETE", "results": results, "startedAt": iso(started), "completedAt": iso(done)}
    if errors:
        body["errors"] = errors
        body["numErrors"] = len(errors)
        return 207, body
    return ok, body


def next_page(request: httpx.Request, after: str) -> JSON:
    """``paging`` with the cursor of the next page and its link (built from the request's own URL)."""
    return {"next": {"after": after, "link": str(request.url.copy_set_param("after", after))}}
