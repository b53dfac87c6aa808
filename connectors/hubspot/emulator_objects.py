"""CRM v3 object handlers of the HubSpot emulator: list, read, create, update, archive, search and the batch
operations, for every emulated object type (contacts, companies, deals), by name or type id (``0-1``).

Records are rendered as HubSpot serialises them: only requested known properties (null when empty), the v3
``associations`` map when asked for, ``propertiesWithHistory`` holding the current value only.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

import httpx

from .emulator_crm import (
    ASSOCIATION_TYPES,
    CURSOR_PROPERTY,
    DEFAULT_PROPERTIES,
    CrmObject,
    FilterError,
    ObjectTable,
    compile_filter,
    iso,
    later,
    object_type_name,
)
from .emulator_crm import search as run_search
from .emulator_http import (
    JSON,
    Answer,
    EmulatorState,
    Reject,
    as_int,
    batch,
    check_values,
    find,
    flag,
    inputs,
    invalid_values,
    json_body,
    next_page,
    not_found,
    requested,
    sort_of,
    string_properties,
    unique_index,
)
from .settings import (
    BATCH_LIMIT,
    HISTORY_PAGE_SIZE,
    LIST_PAGE_SIZE,
    SEARCH_MAX_FILTER_GROUPS,
    SEARCH_MAX_FILTERS,
    SEARCH_PAGE_SIZE,
    SEARCH_RESULT_CAP,
)

# An association to create with a record: (association type id, target record id).
Link = tuple[int, int]


class ObjectsApi(EmulatorState):
    """The ``/crm/v3/objects/{objectType}`` handlers and the record changes behind them."""

    # ------------------------------------------------------------------ record changes (also used by tests)

    def create(self, object_type: str, properties: Mapping[str, str | None], now: datetime | None = None) -> CrmObject:
        """Create a record the way the API does: a new id, creation and modification times set."""
        table = self._table(object_type)
        at = now or self._now()
        object_id = table.next_id()
        props: dict[str, str | None] = {k: v for k, v in properties.items() if v is not None}
        props.update(
            {"createdate": iso(at), "hs_object_id": str(object_id), CURSOR_PROPERTY[table.object_type]: iso(at)}
        )
        obj = CrmObject(object_id, props, at, at, at + self.search_lag)
        table.add(obj)
        return obj

    def update(
        self, object_type: str, object_id: int, properties: Mapping[str, str | None], now: datetime | None = None
    ) -> CrmObject:
        """Set properties the way a HubSpot user or workflow would (the last-modified time moves on)."""
        table = self._table(object_type)
        obj = table.rows[object_id]
        at = later(obj.updated_at, now or self._now())
        obj.properties.update({k: (v if v != "" else None) for k, v in properties.items()})
        obj.updated_at = at
        obj.properties[CURSOR_PROPERTY[table.object_type]] = iso(at)
        obj.indexed_at = at + self.search_lag
        return obj

    def archive(self, object_type: str, object_id: int, now: datetime | None = None) -> None:
        """Delete (archive) a record, as the UI's delete does."""
        obj = self._table(object_type).rows[object_id]
        at = later(obj.updated_at, now or self._now())
        obj.archived_at = obj.updated_at = at

    # ------------------------------------------------------------------ rendering

    def _render(
        self,
        table: ObjectTable,
        obj: CrmObject,
        names: Sequence[str],
        history: Sequence[str] = (),
        associations: Sequence[str] = (),
    ) -> JSON:
        out = obj.payload(names, table.definitions)
        if history:
            # Only the current value is kept, stamped with the record's last change (no full history).
            out["propertiesWithHistory"] = {
                n: [] if obj.properties.get(n) is None else [_value(obj, n)] for n in history if n in table.definitions
            }
        linked = self._v3_associations(table, obj, associations)
        if linked:
            out["associations"] = linked
        return out

    def _v3_associations(self, table: ObjectTable, obj: CrmObject, wanted: Sequence[str]) -> JSON:
        """``{companies: {results: [{id, type}]}}``: one entry per association type, live targets only."""
        out: JSON = {}
        tables = self.account.tables()
        for to_type in wanted:
            target = tables[to_type]
            results = [
                {"id": str(to_id), "type": ASSOCIATION_TYPES[type_id].name}
                for to_id, type_ids in self.account.associations.targets(table.object_type, obj.id, to_type)
                if target.visible(to_id) is not None
                for type_id in type_ids
            ]
            if results:
                out[to_type] = {"results": results}
        return out

    @staticmethod
    def _names(table: ObjectTable, values: Sequence[Any]) -> list[str]:
        return requested(values) or list(DEFAULT_PROPERTIES[table.object_type])

    @staticmethod
    def _wanted_associations(values: Sequence[Any]) -> list[str]:
        # Unknown object types are ignored, as HubSpot leaves them out of the answer.
        names = (object_type_name(v) for v in requested(values))
        return list(dict.fromkeys(n for n in names if n))

    @staticmethod
    def _written(table: ObjectTable, properties: Mapping[str, Any]) -> list[str]:
        return list(dict.fromkeys([*DEFAULT_PROPERTIES[table.object_type], *properties]))

    # ------------------------------------------------------------------ list, read

    def _list_objects(self, request: httpx.Request, groups: Mapping[str, str]) -> Answer:
        table = self._table(groups["objectType"])
        params = request.url.params
        history = requested(params.get_list("propertiesWithHistory"))
        limit = max(1, min(as_int(params.get("limit"), 10), HISTORY_PAGE_SIZE if history else LIST_PAGE_SIZE))
        after = as_int(params.get("after"), 0)
        archived = flag(params, "archived")
        names = self._names(table, params.get_list("properties"))
        wanted = self._wanted_associations(params.get_list("associations"))
        page: list[CrmObject] = []
        more = False
        for object_id in table.ids_from(after):
            obj = table.rows[object_id]
            if obj.archived != archived:
                continue
            if len(page) == limit:
                more = True
                break
            page.append(obj)
        body: JSON = {"results": [self._render(table, o, names, history, wanted) for o in page]}
        if more:
            body["paging"] = next_page(request, str(page[-1].id + 1))
        return 200, body

    def _get_object(self, request: httpx.Request, groups: Mapping[str, str]) -> Answer:
        table = self._table(groups["objectType"])
        params = request.url.params
        obj = find(table, groups["id"], params.get("idProperty"), archived=flag(params, "archived"))
        if obj is None:
            raise Reject(404, "OBJECT_NOT_FOUND", "resource not found")
        names = self._names(table, params.get_list("properties"))
        history = requested(params.get_list("propertiesWithHistory"))
        return 200, self._render(table, obj, names, history, self._wanted_associations(params.get_list("associations")))

    # ------------------------------------------------------------------ create, update, archive

    def _create_object(self, request: httpx.Request, groups: Mapping[str, str]) -> Answer:
        table = self._table(groups["objectType"])
        body = json_body(request)
        properties = string_properties(body.get("properties"))
        links = self._links(table, body.get("associations"))
        self._check_new(table, [properties])
        obj = self.create(table.object_type, properties)
        self._associate(table, obj.id, links)
        return 201, obj.payload(self._written(table, properties), table.definitions)

    def _update_object(self, request: httpx.Request, groups: Mapping[str, str]) -> Answer:
        table = self._table(groups["objectType"])
        obj = find(table, groups["id"], request.url.params.get("idProperty"))
        if obj is None:
            raise Reject(404, "OBJECT_NOT_FOUND", "resource not found")
        properties = string_properties(json_body(request).get("properties"))
        check_values(table, properties)
        self._check_unique(table, [properties], allowed=obj.id)
        updated = self.update(table.object_type, obj.id, properties)
        return 200, updated.payload(self._written(table, properties), table.definitions)

    def _archive_object(self, request: httpx.Request, groups: Mapping[str, str]) -> Answer:
        table = self._table(groups["objectType"])
        obj = find(table, groups["id"], None)
        if obj is not None:  # archiving what is gone already is no error: 204 either way
            self.archive(table.object_type, obj.id)
        return 204, None

    def _links(self, table: ObjectTable, raw: Any) -> list[Link]:
        """The associations a create asks for, checked: a known type from this object type, a live target."""
        out: list[Link] = []
        tables = self.account.tables()
        for item in raw or []:
            target = as_int((item.get("to") or {}).get("id") if isinstance(item, Mapping) else None, -1)
            for spec in (item.get("types") or []) if isinstance(item, Mapping) else []:
                type_id = as_int(spec.get("associationTypeId"), -1) if isinstance(spec, Mapping) else -1
                kind = ASSOCIATION_TYPES.get(type_id)
                if kind is None or kind.from_type != table.object_type:
                    raise Reject(
                        400, "VALIDATION_ERROR", f"{type_id} is not a valid association type from {table.object_type}"
                    )
                if spec.get("associationCategory") != "HUBSPOT_DEFINED":
                    raise Reject(400, "VALIDATION_ERROR", f"association type {type_id} is HUBSPOT_DEFINED")
                if tables[kind.to_type].visible(target) is None:
                    raise Reject(
                        400, "VALIDATION_ERROR", f"One or more associations are invalid: no {kind.to_type} {target}"
                    )
                out.append((type_id, target))
        return out

    def _associate(self, table: ObjectTable, object_id: int, links: Sequence[Link]) -> None:
        for type_id, target in links:
            self.account.associations.add(type_id, object_id, target)

    def _check_new(self, table: ObjectTable, batch_properties: Sequence[Mapping[str, str | None]]) -> None:
        for properties in batch_properties:
            check_values(table, properties)
        self._check_unique(table, batch_properties)

    def _check_unique(
        self, table: ObjectTable, batch_properties: Sequence[Mapping[str, str | None]], allowed: int | None = None
    ) -> None:
        # A contact's email is unique: HubSpot refuses a second one with 409 CONFLICT naming the existing id.
        if table.object_type != "contacts" or not any(p.get("email") for p in batch_properties):
            return
        index = {k: o for k, o in unique_index(table, "email").items() if not o.archived}
        for properties in batch_properties:
            email = (properties.get("email") or "").strip().lower()
            existing = index.get(email)
            if email and existing is not None and existing.id != allowed:
                raise Reject(409, "CONFLICT", f"Contact already exists. Existing ID: {existing.id}")

    # ------------------------------------------------------------------ search

    def _search(self, request: httpx.Request, groups: Mapping[str, str]) -> Answer:
        table = self._table(groups["objectType"])
        body = json_body(request)
        limit = as_int(body.get("limit"), 10)
        after = as_int(body.get("after"), 0)
        if not 0 < limit <= SEARCH_PAGE_SIZE:
            raise Reject(400, "VALIDATION_ERROR", f"limit must be between 1 and {SEARCH_PAGE_SIZE}")
        if after >= SEARCH_RESULT_CAP:
            raise Reject(
                400, "VALIDATION_ERROR", f"Search results are limited to {SEARCH_RESULT_CAP} records; narrow the query"
            )
        filter_groups = body.get("filterGroups") or []
        if len(filter_groups) > SEARCH_MAX_FILTER_GROUPS:
            raise Reject(400, "VALIDATION_ERROR", f"at most {SEARCH_MAX_FILTER_GROUPS} filterGroups are allowed")
        if sum(len(g.get("filters") or []) for g in filter_groups) > SEARCH_MAX_FILTERS:
            raise Reject(400, "VALIDATION_ERROR", f"at most {SEARCH_MAX_FILTERS} filters are allowed")
        try:
            matchers = [[compile_filter(table, f) for f in g.get("filters") or []] for g in filter_groups]
        except FilterError as exc:
            raise Reject(400, "VALIDATION_ERROR", str(exc)) from None
        query = body.get("query")
        found = run_search(table, matchers, sort_of(body.get("sorts")), self._now(), str(query) if query else None)
        names = self._names(table, body.get("properties") or [])
        page = found[after : min(after + limit, SEARCH_RESULT_CAP)]
        out: JSON = {"total": len(found), "results": [o.payload(names, table.definitions) for o in page]}
        if after + limit < len(found):
            cursor = str(after + limit)
            out["paging"] = {"next": {"after": cursor, "link": f"?after={cursor}"}}
        return 200, out

    # ------------------------------------------------------------------ batch

    def _batch_read(self, request: httpx.Request, groups: Mapping[str, str]) -> Answer:
        table = self._table(groups["objectType"])
        body = json_body(request)
        items = inputs(body, BATCH_LIMIT)
        archived = flag(request.url.params, "archived")
        id_property = body.get("idProperty")
        names = self._names(table, body.get("properties") or [])
        history = requested(body.get("propertiesWithHistory") or [])
        index = unique_index(table, id_property) if id_property else None
        started = self._now()
        results, missing = [], []
        for item in items:
            key = str(item.get("id", ""))
            obj = index.get(key.strip().lower()) if index is not None else table.rows.get(as_int(key, -1))
            if obj is None or obj.archived != archived:
                missing.append(key)
                continue
            results.append(self._render(table, obj, names, history))
        errors = [not_found(table.object_type, missing)] if missing else []
        return batch(results, errors, started, self._now())

    def _batch_create(self, request: httpx.Request, groups: Mapping[str, str]) -> Answer:
        table = self._table(groups["objectType"])
        items = inputs(json_body(request), BATCH_LIMIT)
        started = self._now()
        batch_properties = [string_properties(i.get("properties")) for i in items]
        links = [self._links(table, i.get("associations")) for i in items]
        self._check_new(table, batch_properties)  # one bad input refuses the whole batch
        results = []
        for item, properties, link in zip(items, batch_properties, links, strict=True):
            obj = self.create(table.object_type, properties)
            self._associate(table, obj.id, link)
            results.append(_traced(obj.payload(self._written(table, properties), table.definitions), item))
        return batch(results, [], started, self._now(), ok=201)

    def _batch_update(self, request: httpx.Request, groups: Mapping[str, str]) -> Answer:
        table = self._table(groups["objectType"])
        items = inputs(json_body(request), BATCH_LIMIT)
        started = now = self._now()
        _check_batch_values(table, items)
        lookup = _Lookup(table)
        results, missing, traces = [], [], []
        for item in items:
            obj = lookup.find(str(item.get("id", "")), item.get("idProperty"))
            if obj is None:
                missing.append(str(item.get("id")))
                if item.get("objectWriteTraceId"):
                    traces.append(str(item["objectWriteTraceId"]))
                continue
            props = string_properties(item.get("properties"))
            updated = self.update(table.object_type, obj.id, props, now)
            names = [*props, CURSOR_PROPERTY[table.object_type]]
            results.append(_traced(updated.payload(names, table.definitions), item))
        errors = [not_found(table.object_type, missing, traces)] if missing else []
        return batch(results, errors, started, self._now())

    def _batch_upsert(self, request: httpx.Request, groups: Mapping[str, str]) -> Answer:
        table = self._table(groups["objectType"])
        items = inputs(json_body(request), BATCH_LIMIT)
        _check_batch_values(table, items)
        started = now = self._now()
        lookup = _Lookup(table)
        results, missing, traces = [], [], []
        for item in items:
            key = str(item.get("id", ""))
            id_property = str(item.get("idProperty") or "hs_object_id")
            props = string_properties(item.get("properties"))
            obj = lookup.find(key, id_property)
            if obj is not None:
                record, new = self.update(table.object_type, obj.id, props, now), False
            elif id_property == "hs_object_id":  # an id that does not exist cannot be created under that id
                missing.append(key)
                if item.get("objectWriteTraceId"):
                    traces.append(str(item["objectWriteTraceId"]))
                continue
            else:
                record, new = self.create(table.object_type, {**props, id_property: key}, now), True
                lookup.added(record)
            payload = record.payload(self._written(table, props), table.definitions)
            results.append(_traced({**payload, "new": new}, item))
        errors = [not_found(table.object_type, missing, traces)] if missing else []
        return batch(results, errors, started, self._now())

    def _batch_archive(self, request: httpx.Request, groups: Mapping[str, str]) -> Answer:
        table = self._table(groups["objectType"])
        now = self._now()
        for item in inputs(json_body(request), BATCH_LIMIT):
            obj = table.visible(as_int(item.get("id"), -1))
            if obj is not None:
                self.archive(table.object_type, obj.id, now)
        return 204, None


class _Lookup:
    """Live records of one batch by id or unique property; each property's index is built once per batch."""

    def __init__(self, table: ObjectTable) -> None:
        self._table = table
        self._indexes: dict[str, dict[str, CrmObject]] = {}

    def find(self, key: str, id_property: Any) -> CrmObject | None:
        if not id_property or id_property == "hs_object_id":
            return self._table.visible(as_int(key, -1))
        name = str(id_property)
        if name not in self._indexes:
            self._indexes[name] = {k: o for k, o in unique_index(self._table, name).items() if not o.archived}
        return self._indexes[name].get(key.strip().lower())

    def added(self, obj: CrmObject) -> None:
        for name, index in self._indexes.items():
            value = (obj.properties.get(name) or "").strip().lower()
            if value:
                index[value] = obj


def _check_batch_values(table: ObjectTable, items: Sequence[Mapping[str, Any]]) -> None:
    # One invalid value refuses the whole batch (400), listing every problem of every input.
    invalid = [problem for item in items for problem in invalid_values(table, item.get("properties"))]
    if invalid:
        raise Reject(400, "VALIDATION_ERROR", "Property values were not valid: " + json.dumps(invalid))


def _value(obj: CrmObject, name: str) -> JSON:
    return {"value": obj.properties.get(name), "timestamp": iso(obj.updated_at), "sourceType": "API"}


def _traced(payload: JSON, item: Mapping[str, Any]) -> JSON:
    # HubSpot echoes the objectWriteTraceId a batch input carried.
    if item.get("objectWriteTraceId"):
        payload["objectWriteTraceId"] = str(item["objectWriteTraceId"])
    return payload
