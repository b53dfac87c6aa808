"""Associations handlers of the HubSpot emulator. v4: the records linked to one record (paged), batch read,
create (labeled and default), archive, their batch forms, and the association labels between two object types;
and the older v3 batch read, which integrations written before v4 still call.

Links carry HubSpot's type ids (``1`` contact to primary company, ``279`` unlabeled, ``3`` deal to contact, ...)
and are kept in both directions; archived records are hidden from every answer.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import httpx

from .emulator_crm import ASSOCIATION_TYPES, DEFAULT_ASSOCIATION, ObjectTable
from .emulator_http import (
    JSON,
    Answer,
    EmulatorState,
    Reject,
    as_int,
    batch,
    inputs,
    json_body,
    json_value,
    next_page,
    standard_error,
)
from .settings import ASSOCIATIONS_BATCH_LIMIT, ASSOCIATIONS_PAGE_SIZE, OBJECT_TYPE_IDS

_SINGULAR = {"contacts": "contact", "companies": "company", "deals": "deal"}


class AssociationsApi(EmulatorState):
    """The ``/crm/v4/objects/.../associations/...`` and ``/crm/v4/associations/...`` handlers."""

    # ------------------------------------------------------------------ reading

    def _targets(self, source: ObjectTable, object_id: int, target: ObjectTable) -> list[JSON]:
        """What one record is linked to in ``target``, by target id: ``{toObjectId, associationTypes}``."""
        if source.visible(object_id) is None:
            return []
        return [
            {"toObjectId": str(to_id), "associationTypes": [_spec(t) for t in type_ids]}
            for to_id, type_ids in self.account.associations.targets(source.object_type, object_id, target.object_type)
            if target.visible(to_id) is not None
        ]

    def _object_associations(self, request: httpx.Request, groups: Mapping[str, str]) -> Answer:
        source, target = self._table(groups["objectType"]), self._table(groups["toObjectType"])
        params = request.url.params
        limit = max(1, min(as_int(params.get("limit"), ASSOCIATIONS_PAGE_SIZE), ASSOCIATIONS_PAGE_SIZE))
        after = as_int(params.get("after"), 0)
        # A record that does not exist has no associations: an empty page, not a 404.
        linked = [t for t in self._targets(source, as_int(groups["id"], -1), target) if int(t["toObjectId"]) > after]
        body: JSON = {"results": linked[:limit]}
        if len(linked) > limit:
            body["paging"] = next_page(request, str(linked[limit - 1]["toObjectId"]))
        return 200, body

    def _associations(self, request: httpx.Request, groups: Mapping[str, str]) -> Answer:
        return self._read_associations(request, groups, lambda linked: linked)

    def _v3_batch_associations(self, request: httpx.Request, groups: Mapping[str, str]) -> Answer:
        """The older v3 batch read: ``to`` holds ``{id, type}`` with the v3 type names, one entry per type."""
        return self._read_associations(request, groups, lambda linked: [
            {"id": t["toObjectId"], "type": ASSOCIATION_TYPES[spec["typeId"]].name}
            for t in linked for spec in t["associationTypes"]
        ])

    def _read_associations(
        self, request: httpx.Request, groups: Mapping[str, str], shape: Callable[[list[JSON]], list[JSON]]
    ) -> Answer:
        """A batch read of associations, each id's targets in ``shape`` (v4 or v3)."""
        source, target = self._table(groups["fromObjectType"]), self._table(groups["toObjectType"])
        items = inputs(json_body(request), ASSOCIATIONS_BATCH_LIMIT)
        started = self._now()
        results, missing = [], []
        for item in items:
            key = str(item.get("id", ""))
            linked = shape(self._targets(source, as_int(key, -1), target))
            if linked:
                results.append({"from": {"id": key}, "to": linked})
            else:
                missing.append(key)
        # An id without associations is reported as an error of a 207, not left out silently.
        return batch(results, _not_associated(source, target, missing), started, self._now())

    def _association_labels(self, request: httpx.Request, groups: Mapping[str, str]) -> Answer:
        source, target = self._table(groups["fromObjectType"]), self._table(groups["toObjectType"])
        kinds = [
            t
            for t in sorted(ASSOCIATION_TYPES)
            if (ASSOCIATION_TYPES[t].from_type, ASSOCIATION_TYPES[t].to_type)
            == (source.object_type, target.object_type)
        ]
        return 200, {"results": [_spec(t) for t in kinds]}

    # ------------------------------------------------------------------ writing

    def _records(self, source: ObjectTable, from_id: Any, target: ObjectTable, to_id: Any) -> tuple[int, int] | None:
        a, b = as_int(from_id, -1), as_int(to_id, -1)
        if source.visible(a) is None or target.visible(b) is None:
            return None
        return a, b

    def _type_ids(self, source: ObjectTable, target: ObjectTable, specs: Any) -> list[int]:
        """The association type ids of a request, checked against the pair of object types."""
        if not isinstance(specs, list) or not specs:
            raise Reject(400, "VALIDATION_ERROR", "at least one association type is required")
        out = []
        for spec in specs:
            type_id = as_int(spec.get("associationTypeId") if isinstance(spec, Mapping) else None, -1)
            kind = ASSOCIATION_TYPES.get(type_id)
            if kind is None or (kind.from_type, kind.to_type) != (source.object_type, target.object_type):
                raise Reject(
                    400,
                    "VALIDATION_ERROR",
                    f"{type_id} is not a valid association type from {source.object_type} to {target.object_type}",
                )
            if spec.get("associationCategory") != "HUBSPOT_DEFINED":
                raise Reject(400, "VALIDATION_ERROR", f"association type {type_id} is HUBSPOT_DEFINED")
            out.append(type_id)
        return out

    def _labels_between(self, source: ObjectTable, from_id: int, target: ObjectTable, to_id: int) -> JSON:
        types = self.account.associations.types(source.object_type, from_id, target.object_type, to_id)
        labels = [label for t in sorted(types) if (label := ASSOCIATION_TYPES[t].label)]
        return {
            "fromObjectTypeId": OBJECT_TYPE_IDS[source.object_type],
            "fromObjectId": str(from_id),
            "toObjectTypeId": OBJECT_TYPE_IDS[target.object_type],
            "toObjectId": str(to_id),
            "labels": labels,
        }

    def _create_association(self, request: httpx.Request, groups: Mapping[str, str]) -> Answer:
        source, target = self._table(groups["objectType"]), self._table(groups["toObjectType"])
        type_ids = self._type_ids(source, target, json_value(request))
        pair = self._records(source, groups["id"], target, groups["toObjectId"])
        if pair is None:
            raise Reject(400, "VALIDATION_ERROR", "One or more associations are invalid: a record does not exist")
        for type_id in type_ids:
            self.account.associations.add(type_id, *pair)
        return 201, self._labels_between(source, pair[0], target, pair[1])

    def _archive_association(self, request: httpx.Request, groups: Mapping[str, str]) -> Answer:
        source, target = self._table(groups["objectType"]), self._table(groups["toObjectType"])
        a, b = as_int(groups["id"], -1), as_int(groups["toObjectId"], -1)
        self.account.associations.remove(source.object_type, a, target.object_type, b)
        return 204, None

    def _default_pair(self, source: ObjectTable, from_id: int, target: ObjectTable, to_id: int) -> JSON:
        type_id = DEFAULT_ASSOCIATION[(source.object_type, target.object_type)]
        self.account.associations.add(type_id, from_id, to_id)
        return {
            "from": {"id": str(from_id)},
            "to": {"id": str(to_id)},
            "associationSpec": {"associationCategory": "HUBSPOT_DEFINED", "associationTypeId": type_id},
        }

    def _create_default_association(self, request: httpx.Request, groups: Mapping[str, str]) -> Answer:
        source, target = self._table(groups["objectType"]), self._table(groups["toObjectType"])
        started = self._now()
        pair = self._records(source, groups["id"], target, groups["toObjectId"])
        if pair is None:
            raise Reject(400, "VALIDATION_ERROR", "One or more associations are invalid: a record does not exist")
        return batch([self._default_pair(source, pair[0], target, pair[1])], [], started, self._now())

    def _batch_create_associations(self, request: httpx.Request, groups: Mapping[str, str]) -> Answer:
        source, target = self._table(groups["fromObjectType"]), self._table(groups["toObjectType"])
        items = inputs(json_body(request), ASSOCIATIONS_BATCH_LIMIT)
        wanted = [self._type_ids(source, target, item.get("types")) for item in items]  # all checked first
        started = self._now()
        results: list[JSON] = []
        errors: list[JSON] = []
        for item, type_ids in zip(items, wanted, strict=True):
            pair = self._pair_of(source, target, item, errors)
            if pair is None:
                continue
            for type_id in type_ids:
                self.account.associations.add(type_id, *pair)
            results.append(self._labels_between(source, pair[0], target, pair[1]))
        return batch(results, errors, started, self._now(), ok=201)

    def _batch_default_associations(self, request: httpx.Request, groups: Mapping[str, str]) -> Answer:
        source, target = self._table(groups["fromObjectType"]), self._table(groups["toObjectType"])
        items = inputs(json_body(request), ASSOCIATIONS_BATCH_LIMIT)
        started = self._now()
        results: list[JSON] = []
        errors: list[JSON] = []
        for item in items:
            pair = self._pair_of(source, target, item, errors)
            if pair is not None:
                results.append(self._default_pair(source, pair[0], target, pair[1]))
        _, body = batch(results, errors, started, self._now())
        return 200, body  # the spec knows no 207 here: errors ride in a 200 answer

    def _batch_archive_associations(self, request: httpx.Request, groups: Mapping[str, str]) -> Answer:
        source, target = self._table(groups["fromObjectType"]), self._table(groups["toObjectType"])
        for item in inputs(json_body(request), ASSOCIATIONS_BATCH_LIMIT):
            from_id = as_int(_id_of(item.get("from")), -1)
            for to in item.get("to") or []:
                to_id = as_int(_id_of(to), -1)
                self.account.associations.remove(source.object_type, from_id, target.object_type, to_id)
        return 204, None

    def _pair_of(
        self, source: ObjectTable, target: ObjectTable, item: Mapping[str, Any], errors: list[JSON]
    ) -> tuple[int, int] | None:
        from_key, to_key = _id_of(item.get("from")), _id_of(item.get("to"))
        pair = self._records(source, from_key, target, to_key)
        if pair is None:
            message = f"No {_SINGULAR[source.object_type]} {from_key} or {_SINGULAR[target.object_type]} {to_key}."
            errors.append(standard_error("OBJECT_NOT_FOUND", message, {"ids": [str(from_key), str(to_key)]}))
        return pair


def _spec(type_id: int) -> JSON:
    # The unlabeled type has "label": null, as HubSpot's answers show it.
    return {"category": "HUBSPOT_DEFINED", "typeId": type_id, "label": ASSOCIATION_TYPES[type_id].label}


def _id_of(ref: Any) -> str:
    return str(ref.get("id", "")) if isinstance(ref, Mapping) else ""


def _not_associated(source: ObjectTable, target: ObjectTable, missing: list[str]) -> list[JSON]:
    """The errors of a batch read for the ids that have no association to ``target``."""
    noun = _SINGULAR[source.object_type]
    return [
        standard_error("OBJECT_NOT_FOUND", f"No {target.object_type} is associated with {noun} {key}.", {"ids": [key]})
        for key in missing
    ]
