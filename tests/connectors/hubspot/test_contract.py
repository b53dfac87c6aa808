"""Contract tests: the connector's requests and the emulator's responses against HubSpot's official OpenAPI files.

The end-to-end tests check every exchange they record when they end (see ``conftest.rig_factory``); this module
makes sure those checks cover every endpoint the connector uses, and that they can fail.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from connectors.hubspot.emulator import _ROUTES, SANDBOX_TOKEN
from hub.contracts import TagChange, TagOp
from hub.store import Store
from hub.sync import sync_source

from .conftest import BASE_URL, OAUTH_ENTRY, HubSpotRig
from .contract import SPEC_FILES, api, check_exchanges


@pytest.fixture(autouse=True)
def _specs() -> None:
    api("hubspot/crm-contacts-v3.json")  # skips the module's tests, with the reason, when the specs are absent


def _everything(store: Store, rig: HubSpotRig) -> None:
    """A first sync, an incremental one, and pushes in both modes: every endpoint the connector uses."""
    sync_source(store, rig.source(properties=["customer_tier"]), "hubspot")
    rig.time.advance(60)
    rig.sandbox.mutate(0.05, 0.02, seed=1)
    rig.time.advance(60)
    sync_source(store, rig.source(**OAUTH_ENTRY), "hubspot")
    ids = sorted(o.id for o in rig.emulator.account.contacts.live())[:5]
    for mode in ("property", "lists"):
        sink = rig.sink(mode=mode)
        sink.ensure_tags(["hub:vip"])
        sink.apply([TagChange(TagOp.ADD, "hub:vip", 1, None, str(i)) for i in ids])
        sink.lookup([p.email for p in rig.emulator.ctx.business.people_in("hubspot")[:3]])
        list(sink.read_tags("hub:"))
        rig.sink(mode=mode).ensure_tags(["hub:new"])  # a later run adds an option / a list


# The routes the connector calls (the emulator serves more: the official SDK's tests cover those).
CONNECTOR_ROUTES = {
    "POST /oauth/v1/token",
    "GET /crm/v3/objects/{objectType}",
    "POST /crm/v3/objects/{objectType}/search",
    "POST /crm/v3/objects/{objectType}/batch/read",
    "POST /crm/v3/objects/{objectType}/batch/update",
    "GET /crm/v3/properties/{objectType}",
    "POST /crm/v3/properties/{objectType}",
    "GET /crm/v3/properties/{objectType}/{propertyName}",
    "PATCH /crm/v3/properties/{objectType}/{propertyName}",
    "GET /crm/v3/pipelines/{objectType}",
    "POST /crm/v4/associations/{fromObjectType}/{toObjectType}/batch/read",
    "POST /crm/v3/lists",
    "POST /crm/v3/lists/search",
    "POST /crm/v3/lists/records/memberships/batch/read",
    "GET /crm/v3/lists/object-type-id/{objectTypeId}/name/{listName}",
    "PUT /crm/v3/lists/{listId}/memberships/add-and-remove",
    "GET /crm/v3/lists/{listId}/memberships",
}


def test_every_endpoint_the_connector_uses_is_contract_checked(store: Store, rig: HubSpotRig) -> None:
    _everything(store, rig)
    used = {rig.emulator.route_name(r) for r, _ in rig.exchanges}
    assert used >= CONNECTOR_ROUTES
    assert {route.name for route in _ROUTES} >= CONNECTOR_ROUTES
    checked = check_exchanges(rig.exchanges)
    assert checked == sum(1 for r, _ in rig.exchanges if not r.url.path.startswith("/_sandbox"))
    assert all(any(r.url.path.startswith(p) for p, _ in SPEC_FILES) for r, _ in rig.exchanges)


def _recorded(rig: HubSpotRig, method: str, path: str, **kwargs: Any) -> tuple[httpx.Request, httpx.Response]:
    with httpx.Client(transport=rig.ctx.transports["hubspot"], base_url=BASE_URL) as client:
        client.headers["Authorization"] = f"Bearer {SANDBOX_TOKEN}"
        client.request(method, path, **kwargs)
    return rig.exchanges[-1]


def _tampered(response: httpx.Response, change: Callable[[Any], None]) -> httpx.Response:
    body = json.loads(response.content)
    change(body)
    return httpx.Response(response.status_code, json=body, headers={"Content-Type": "application/json"})


@pytest.mark.parametrize(
    ("what", "change"),
    [
        ("a number where HubSpot sends strings", lambda b: b["results"][0]["properties"].update(email=5)),
        ("no results", lambda b: b.pop("results")),
        ("a record without an id", lambda b: b["results"][0].pop("id")),
        ("a cursor that is not a string", lambda b: b["paging"]["next"].update(after=100)),
    ],
)
def test_a_response_off_the_spec_fails_the_check(rig_factory: Any, what: str, change: Callable[[Any], None]) -> None:
    rig = rig_factory(direct=True)
    request, response = _recorded(rig, "GET", "/crm/v3/objects/contacts", params={"limit": 2, "properties": "email"})
    check_exchanges([(request, response)])
    with pytest.raises(AssertionError, match="contract violation"):
        check_exchanges([(request, _tampered(response, change))])


def test_a_request_off_the_spec_fails_the_check(rig_factory: Any) -> None:
    rig = rig_factory(direct=True)
    bad_search = {
        "filterGroups": [{"filters": [{"operator": "EQ"}]}],
        "sorts": [],
        "properties": [],
        "limit": 1,
        "after": "0",
    }
    exchange = _recorded(rig, "POST", "/crm/v3/objects/contacts/search", json=bad_search)
    with pytest.raises(AssertionError, match="propertyName"):
        check_exchanges([exchange])
    not_a_number = _recorded(rig, "GET", "/crm/v3/objects/contacts", params={"limit": "many"})
    with pytest.raises(AssertionError, match="contract violation"):
        check_exchanges([not_a_number])


def test_an_error_body_without_a_correlation_id_fails_the_check(rig_factory: Any) -> None:
    rig = rig_factory(direct=True)
    request, response = _recorded(rig, "GET", "/crm/v3/properties/contacts/nope")
    assert response.status_code == 404
    check_exchanges([(request, response)])
    with pytest.raises(AssertionError, match="correlationId"):
        check_exchanges([(request, _tampered(response, lambda b: b.pop("correlationId")))])
