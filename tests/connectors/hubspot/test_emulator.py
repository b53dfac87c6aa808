"""The emulator on its own: HubSpot's shapes, paging, search cap and lag, limits and headers, auth, errors.

Every exchange here is contract-checked against the official specs too (the ``rig`` fixture)."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from connectors.hubspot.emulator import SANDBOX_TOKEN
from hub.errors import TransientError
from hub.sandbox.ratelimit import FixedWindowLimiter
from hub.store import Store
from hub.sync import sync_source

from .conftest import BASE_URL, HubSpotRig

UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")


@pytest.fixture
def rig(rig_factory: Callable[..., HubSpotRig]) -> HubSpotRig:
    """A rig whose hand-written probe requests are not contract-checked (the emulator's answers are)."""
    return rig_factory(direct=True)


def api(rig: HubSpotRig, token: str = SANDBOX_TOKEN) -> httpx.Client:
    return httpx.Client(
        transport=rig.ctx.transports["hubspot"], base_url=BASE_URL, headers={"Authorization": f"Bearer {token}"}
    )


def search(client: httpx.Client, body: dict[str, Any], object_type: str = "contacts") -> httpx.Response:
    return client.post(f"/crm/v3/objects/{object_type}/search", json=body)


def test_list_pages_hold_string_values_and_a_next_cursor(rig: HubSpotRig) -> None:
    with api(rig) as client:
        first = client.get("/crm/v3/objects/contacts", params={"limit": 500, "properties": "email,hs_email_open,nope"})
        body = first.json()
        assert len(body["results"]) == 100  # capped at the documented maximum
        values = [v for r in body["results"] for v in r["properties"].values()]
        assert all(v is None or isinstance(v, str) for v in values)
        assert set(body["results"][0]["properties"]) == {"email", "hs_email_open"}  # unknown ones are ignored
        after = body["paging"]["next"]["after"]
        assert f"after={after}" in body["paging"]["next"]["link"]
        second = client.get("/crm/v3/objects/contacts", params={"limit": 100, "after": after}).json()
        assert int(second["results"][0]["id"]) > int(body["results"][-1]["id"])


def test_archived_records_are_listed_apart_and_hidden_from_search(rig: HubSpotRig) -> None:
    target = min(o.id for o in rig.emulator.account.contacts.live())
    rig.emulator.archive("contacts", target)
    with api(rig) as client:
        archived = client.get("/crm/v3/objects/contacts", params={"archived": "true"}).json()["results"]
        assert [r["id"] for r in archived] == [str(target)]
        assert archived[0]["archived"] is True and archived[0]["archivedAt"]
        live = client.get("/crm/v3/objects/contacts", params={"limit": 1}).json()["results"]
        assert live[0]["id"] != str(target)
        found = search(
            client,
            {"filterGroups": [{"filters": [{"propertyName": "hs_object_id", "operator": "EQ", "value": str(target)}]}]},
        ).json()
        assert found["total"] == 0


def test_search_filters_sorts_totals_and_pages(rig: HubSpotRig) -> None:
    with api(rig) as client:
        body = {
            "filterGroups": [{"filters": [{"propertyName": "hs_email_open", "operator": "GTE", "value": "1"}]}],
            "sorts": [{"propertyName": "hs_email_open", "direction": "DESCENDING"}],
            "properties": ["hs_email_open"],
            "limit": 50,
        }
        page = search(client, body).json()
        opens = [int(r["properties"]["hs_email_open"]) for r in page["results"]]
        assert opens == sorted(opens, reverse=True) and min(opens) >= 1
        expected = sum(1 for o in rig.emulator.account.contacts.live() if int(o.properties["hs_email_open"] or 0) >= 1)
        assert page["total"] == expected
        assert page["paging"]["next"]["after"] == "50"
        assert search(client, {**body, "limit": 201}).status_code == 400
        two_groups = {
            "filterGroups": [
                {"filters": [{"propertyName": "country", "operator": "EQ", "value": "de"}]},
                {"filters": [{"propertyName": "country", "operator": "EQ", "value": "AT"}]},
            ]
        }
        countries = {o.properties["country"] for o in rig.emulator.account.contacts.live()}
        assert search(client, two_groups).json()["total"] == sum(
            1 for o in rig.emulator.account.contacts.live() if o.properties["country"] in ("DE", "AT")
        )
        assert {"DE", "AT"} <= countries


def test_search_refuses_to_page_past_10000_results(rig: HubSpotRig) -> None:
    with api(rig) as client:
        response = search(client, {"limit": 100, "after": "10000"})
        assert response.status_code == 400
        error = response.json()
        assert error["category"] == "VALIDATION_ERROR" and UUID.match(error["correlationId"])


def test_search_lags_behind_writes(rig_factory: Callable[..., HubSpotRig]) -> None:
    rig = rig_factory(direct=True, search_lag_s=5.0)
    target = min(o.id for o in rig.emulator.account.contacts.live())
    rig.emulator.update("contacts", target, {"city": "Lagos"})
    query = {"filterGroups": [{"filters": [{"propertyName": "city", "operator": "EQ", "value": "Lagos"}]}]}
    with api(rig) as client:
        assert search(client, query).json()["total"] == 0
        assert client.post(
            "/crm/v3/objects/contacts/batch/read",
            json={"inputs": [{"id": str(target)}], "properties": ["city"], "propertiesWithHistory": []},
        ).json()["results"][0]["properties"] == {"city": "Lagos"}  # reads are consistent at once
        rig.time.advance(6)
        assert search(client, query).json()["total"] == 1


def test_the_burst_window_answers_429_with_headers_and_retry_after(rig_factory: Callable[..., HubSpotRig]) -> None:
    rig = rig_factory(direct=True, speed=1.0)
    with api(rig) as client:
        answers = [client.get("/crm/v3/objects/contacts", params={"limit": 1}) for _ in range(101)]
    assert [a.status_code for a in answers[:100]] == [200] * 100
    first, last = answers[0].headers, answers[99].headers
    assert first["X-HubSpot-RateLimit-Max"] == "100" and first["X-HubSpot-RateLimit-Interval-Milliseconds"] == "10000"
    assert (first["X-HubSpot-RateLimit-Remaining"], last["X-HubSpot-RateLimit-Remaining"]) == ("99", "0")
    assert int(first["X-HubSpot-RateLimit-Daily"]) == 250_000
    limited = answers[100]
    assert limited.status_code == 429 and float(limited.headers["Retry-After"]) > 0
    assert limited.json()["policyName"] == "TEN_SECONDLY_ROLLING" and limited.json()["category"] == "RATE_LIMITS"


def test_search_has_its_own_limit_and_no_burst_headers(rig_factory: Callable[..., HubSpotRig]) -> None:
    rig = rig_factory(direct=True, speed=1.0)
    with api(rig) as client:
        answers = [search(client, {"limit": 1}) for _ in range(6)]
    assert [a.status_code for a in answers] == [200] * 5 + [429]
    assert "X-HubSpot-RateLimit-Remaining" not in answers[0].headers
    assert answers[5].json()["policyName"] == "SECONDLY"


def test_the_daily_cap_stops_a_run_before_hubspot_has_to_refuse_it(
    store: Store, rig_factory: Callable[..., HubSpotRig]
) -> None:
    rig = rig_factory()
    rig.emulator.daily = FixedWindowLimiter(rig.emulator.ctx.clock, limit=3, window_s=86_400)
    with pytest.raises(TransientError, match="daily API cap"):
        sync_source(store, rig.source(), "hubspot")
    assert rig.stats()["rate_limited"] == 0  # stopped by the client, not refused by HubSpot
    assert store.get_state("crm", "contacts")["phase"] == "list"  # resumable where the cap hit
    assert store.summary().raw_records["crm/contact"] == 300


def test_auth_errors_are_hubspot_error_objects(rig_factory: Callable[..., HubSpotRig]) -> None:
    rig = rig_factory(direct=True, tokens={"pat-na1-small": {"crm.objects.contacts.read"}})
    with api(rig, "pat-na1-small") as client:
        forbidden = client.get("/crm/v3/objects/deals")
        assert forbidden.status_code == 403 and forbidden.json()["category"] == "MISSING_SCOPES"
        assert forbidden.json()["errors"][0]["context"]["requiredGranularScopes"] == ["crm.objects.deals.read"]
    with api(rig, "pat-na1-unknown") as client:
        rejected = client.get("/crm/v3/objects/contacts")
        assert rejected.status_code == 401 and rejected.json()["category"] == "INVALID_AUTHENTICATION"
    with httpx.Client(transport=rig.ctx.transports["hubspot"], base_url=BASE_URL) as anonymous:
        assert anonymous.get("/crm/v3/objects/contacts").status_code == 401


def test_batch_read_answers_207_for_missing_ids_and_400_past_100(rig: HubSpotRig) -> None:
    ids = sorted(o.id for o in rig.emulator.account.contacts.live())[:2]
    with api(rig) as client:
        body = {"inputs": [{"id": str(ids[0])}, {"id": "1"}], "properties": ["email"], "propertiesWithHistory": []}
        partial = client.post("/crm/v3/objects/contacts/batch/read", json=body)
        assert partial.status_code == 207
        assert partial.json()["errors"][0]["context"]["ids"] == ["1"]
        too_many = {**body, "inputs": [{"id": str(i)} for i in range(101)]}
        assert client.post("/crm/v3/objects/contacts/batch/read", json=too_many).status_code == 400


def test_a_too_long_url_is_refused_with_414(rig: HubSpotRig) -> None:
    with api(rig) as client:
        long = ",".join(f"custom_property_{i}" for i in range(1200))
        assert client.get("/crm/v3/objects/contacts", params={"properties": long}).status_code == 414


def test_properties_are_created_once_and_options_replaced_on_patch(rig: HubSpotRig) -> None:
    definition = {
        "name": "hub_segments",
        "label": "Segments",
        "type": "enumeration",
        "fieldType": "checkbox",
        "groupName": "contactinformation",
        "options": [{"label": "a", "value": "a", "hidden": False}],
    }
    with api(rig) as client:
        created = client.post("/crm/v3/properties/contacts", json=definition)
        assert created.status_code == 201 and created.json()["options"][0]["value"] == "a"
        assert client.post("/crm/v3/properties/contacts", json=definition).status_code == 409
        patched = client.patch(
            "/crm/v3/properties/contacts/hub_segments",
            json={"options": [{"label": "b", "value": "b", "hidden": False}]},
        )
        assert [o["value"] for o in patched.json()["options"]] == ["b"]
        assert client.get("/crm/v3/properties/contacts/nope").status_code == 404


def test_lists_are_found_by_name_case_insensitively_and_active_lists_refuse_writes(rig: HubSpotRig) -> None:
    rig.emulator.add_list("Hub:Active", "DYNAMIC")
    with api(rig) as client:
        manual = {"name": "hub:vip", "objectTypeId": "0-1", "processingType": "MANUAL"}
        list_id = client.post("/crm/v3/lists", json=manual).json()["list"]["listId"]
        found = client.get("/crm/v3/lists/object-type-id/0-1/name/HUB%3AVIP")
        assert found.json()["list"]["listId"] == list_id
        dupe = client.post("/crm/v3/lists", json={**manual, "name": "HUB:VIP"})
        assert dupe.status_code == 400 and dupe.json()["subCategory"] == "ILS.DUPLICATE_LIST_NAMES"
        active = client.get("/crm/v3/lists/object-type-id/0-1/name/hub:active").json()["list"]["listId"]
        empty = {"recordIdsToAdd": [], "recordIdsToRemove": []}
        refused = client.put(f"/crm/v3/lists/{active}/memberships/add-and-remove", json=empty)
        assert refused.status_code == 400


def test_the_spec_over_requirements_are_not_enforced(rig: HubSpotRig) -> None:
    # The search spec marks after, filterGroups, limit, properties and sorts required; the live API accepts
    # requests without them (defaults: no filter, 10 results, default properties).
    with api(rig) as client:
        response = search(client, {})
        assert response.status_code == 200 and len(response.json()["results"]) == 10
        path = f"/crm/v3/lists/{rig.emulator.add_list('x').id}/memberships/add-and-remove"
        assert client.put(path, json={"recordIdsToAdd": []}).status_code == 200


def test_sandbox_faults_wear_hubspot_error_bodies(rig: HubSpotRig) -> None:
    rig.sandbox.inject({"kind": "429", "retry_after": 2})
    rig.sandbox.inject({"kind": "5xx", "status": 502})
    with api(rig) as client:
        limited = client.get("/crm/v3/objects/contacts")
        failed = client.get("/crm/v3/objects/contacts")
    assert limited.status_code == 429 and limited.headers["Retry-After"] == "2"
    assert limited.json()["errorType"] == "RATE_LIMIT" and UUID.match(limited.json()["correlationId"])
    assert failed.status_code == 502 and failed.json()["category"] == "INTERNAL_ERROR"


def test_mutate_and_reset(rig: HubSpotRig) -> None:
    live = len(rig.emulator.account.contacts.live())
    counts = rig.sandbox.mutate(0.1, 0.02, seed=5)
    assert counts["contacts_changed"] == round(live * 0.1) and counts["contacts_deleted"] == round(live * 0.02)
    assert len(rig.emulator.account.contacts.live()) == live - counts["contacts_deleted"]
    rig.sandbox.reset()
    assert len(rig.emulator.account.contacts.live()) == live
    assert json.dumps(rig.stats()["endpoints"]) == "{}"


def test_unknown_paths_are_404_error_objects(rig: HubSpotRig) -> None:
    # Straight to the sandbox, not recorded: the path is in no spec.
    headers = {"Authorization": f"Bearer {SANDBOX_TOKEN}"}
    with httpx.Client(transport=httpx.MockTransport(rig.sandbox), base_url=BASE_URL, headers=headers) as client:
        missing = client.get("/crm/v3/objects/contacts/123/nothing-here")
    assert missing.status_code == 404 and set(missing.json()) >= {"category", "correlationId", "message"}
