"""Account metadata handlers of the HubSpot emulator: properties and property groups, the deal pipeline, owners,
and custom object schemas (the account has none)."""

from __future__ import annotations

from collections.abc import Mapping

import httpx

from .emulator_crm import iso, pipelines, property_definition
from .emulator_http import JSON, Answer, EmulatorState, Reject, as_int, flag, json_body, next_page, options, requested
from .settings import OWNERS_PAGE_SIZE


class MetaApi(EmulatorState):
    """The ``/crm/v3/properties``, ``/crm/v3/pipelines``, ``/crm/v3/owners`` and schemas handlers."""

    # ------------------------------------------------------------------ properties

    def _properties(self, request: httpx.Request, groups: Mapping[str, str]) -> Answer:
        table = self._table(groups["objectType"])
        params = request.url.params
        if flag(params, "archived"):
            return 200, {"results": []}  # no property of the account has been archived
        wanted = requested(params.get_list("properties"))
        found = [d for d in table.definitions.values() if not wanted or d["name"] in wanted]
        return 200, {"results": found}

    def _get_property(self, request: httpx.Request, groups: Mapping[str, str]) -> Answer:
        table = self._table(groups["objectType"])
        found = table.definitions.get(groups["propertyName"])
        if found is None:
            raise Reject(404, "OBJECT_NOT_FOUND", f"Unable to find property {groups['propertyName']!r}")
        return 200, found

    def _create_property(self, request: httpx.Request, groups: Mapping[str, str]) -> Answer:
        table = self._table(groups["objectType"])
        body = json_body(request)
        missing = [k for k in ("name", "label", "type", "fieldType", "groupName") if not body.get(k)]
        if missing:
            raise Reject(400, "VALIDATION_ERROR", f"missing required field(s): {', '.join(missing)}")
        name = str(body["name"])
        if name in table.definitions:
            raise Reject(409, "OBJECT_ALREADY_EXISTS", f"A property named {name!r} already exists.")
        group = str(body["groupName"])
        if group not in table.groups:
            raise Reject(400, "VALIDATION_ERROR", f"property group {group!r} does not exist")
        created = property_definition(name, str(body["label"]), str(body["type"]), str(body["fieldType"]), False)
        created.update(groupName=group, description=str(body.get("description") or ""))
        created["options"] = options(body.get("options"))
        table.definitions[name] = created
        return 201, created

    def _update_property(self, request: httpx.Request, groups: Mapping[str, str]) -> Answer:
        table = self._table(groups["objectType"])
        found = table.definitions.get(groups["propertyName"])
        if found is None:
            raise Reject(404, "OBJECT_NOT_FOUND", f"Unable to find property {groups['propertyName']!r}")
        body = json_body(request)
        if "options" in body:
            found["options"] = options(body["options"])  # the list is replaced, not merged
        for key in ("label", "description", "groupName", "hidden", "displayOrder"):
            if key in body:
                found[key] = body[key]
        found["updatedAt"] = iso(self._now())
        return 200, found

    def _property_groups(self, request: httpx.Request, groups: Mapping[str, str]) -> Answer:
        table = self._table(groups["objectType"])
        return 200, {"results": list(table.groups.values())}

    def _property_group(self, request: httpx.Request, groups: Mapping[str, str]) -> Answer:
        table = self._table(groups["objectType"])
        found = table.groups.get(groups["groupName"])
        if found is None:
            raise Reject(404, "OBJECT_NOT_FOUND", f"Unable to find property group {groups['groupName']!r}")
        return 200, found

    # ------------------------------------------------------------------ pipelines

    def _pipelines(self, request: httpx.Request, groups: Mapping[str, str]) -> Answer:
        table = self._table(groups["objectType"])
        return 200, {"results": pipelines() if table.object_type == "deals" else []}

    # ------------------------------------------------------------------ owners

    def _owners(self, request: httpx.Request, groups: Mapping[str, str]) -> Answer:
        params = request.url.params
        limit = max(1, min(as_int(params.get("limit"), 100), OWNERS_PAGE_SIZE))
        after = max(0, as_int(params.get("after"), 0))
        email = (params.get("email") or "").strip().lower()
        found = [
            o
            for o in self.account.owners
            if o["archived"] == flag(params, "archived") and (not email or o["email"].lower() == email)
        ]
        body: JSON = {"results": found[after : after + limit]}
        if after + limit < len(found):
            body["paging"] = next_page(request, str(after + limit))
        return 200, body

    def _owner(self, request: httpx.Request, groups: Mapping[str, str]) -> Answer:
        params = request.url.params
        key = "userId" if params.get("idProperty") == "userId" else "id"
        wanted = groups["ownerId"]
        archived = flag(params, "archived")
        found = next(
            (o for o in self.account.owners if str(o[key]) == wanted and o["archived"] == archived),
            None,
        )
        if found is None:
            raise Reject(404, "OBJECT_NOT_FOUND", f"Owner {wanted} not found")
        return 200, found

    # ------------------------------------------------------------------ custom object schemas

    def _schemas(self, request: httpx.Request, groups: Mapping[str, str]) -> Answer:
        return 200, {"results": []}  # an account without custom objects

    def _schema(self, request: httpx.Request, groups: Mapping[str, str]) -> Answer:
        raise Reject(404, "OBJECT_NOT_FOUND", f"Unable to find a custom object schema for {groups['objectType']!r}")
