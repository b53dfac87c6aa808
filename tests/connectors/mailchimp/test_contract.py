"""Every request the connector sends and every answer the emulator gives, validated against Mailchimp's official
OpenAPI file (read from ``HUB_SPECS_DIR``; skipped with the reason when it is absent)."""

from __future__ import annotations

import json

import httpx
import pytest

from connectors.mailchimp.emulator import SANDBOX_API_KEY
from hub.contracts import TagChange, TagOp
from hub.store import Store
from hub.sync import sync_source
from tests.contract.openapi import recorded

from .spec import check_exchanges, mailchimp_api, violations
from .support import Rig

BASE = "https://us21.api.mailchimp.com/3.0"


@pytest.fixture
def api() -> object:
    return mailchimp_api()  # skips when the spec is absent


def test_a_whole_sync_and_push_follow_the_spec(api: object, store: Store, rig: Rig) -> None:
    source = rig.source(page_size=40, connections=3)
    source.check()
    sync_source(store, source, "mailchimp")
    rig.sandbox.mutate(0.05, 0.02, seed=1)
    sync_source(store, rig.source(page_size=40, connections=3), "mailchimp")
    sink = rig.sink()
    members = sorted(rig.emulator.data.members.values(), key=lambda x: x.order)
    sink.ensure_tags(["hub:vip"])
    sink.apply([TagChange(TagOp.ADD, "hub:vip", i, x.email) for i, x in enumerate(members[:60])])
    sink.apply([TagChange(TagOp.REMOVE, "hub:vip", 1, None, f"{rig.list_id}:{members[0].id}")])
    list(rig.sink().read_tags("hub:"))
    rig.sink().lookup([x.email for x in members[:30]])
    endpoints = {rig.emulator.endpoint_name(r) for r, _ in rig.exchanges}
    assert len(endpoints) >= 10
    assert check_exchanges(rig.exchanges) == len(rig.exchanges) > 100


def test_error_answers_follow_the_spec(api: object, rig: Rig) -> None:
    # Requests written by hand, some invalid on purpose: only the emulator's answers are checked.
    handler, exchanges = recorded(rig.sandbox)
    transport = httpx.MockTransport(handler)
    with httpx.Client(base_url=BASE, transport=transport, auth=("x", SANDBOX_API_KEY)) as client:
        client.get("/lists/nosuchlist1/members")
        client.get(f"/lists/{rig.list_id}/members", params={"count": 5000})
        client.post(f"/lists/{rig.list_id}/segments/999999", json={"members_to_add": []})
    with httpx.Client(base_url=BASE, transport=transport, auth=("x", "wrong-us21")) as client:
        client.get("/ping")
    assert sorted(resp.status_code for _, resp in exchanges) == [400, 401, 404, 404]
    assert check_exchanges(exchanges, requests=False) == 4


def test_the_check_catches_a_wrong_answer(api: object, rig: Rig) -> None:
    rig.source().check()
    request, response = rig.exchanges[0]
    body = json.loads(response.content)
    wrong = httpx.Response(200, json={**body, "health_status": 7}, request=request)
    checked, problems = violations([(request, wrong)])
    assert checked == 1 and problems and "health_status" in problems[0]


def test_the_check_catches_a_wrong_request(api: object, rig: Rig) -> None:
    request = httpx.Request(
        "GET",
        f"{BASE}/lists/{rig.list_id}/members",
        params={"status": "everyone", "sort_dir": "SIDEWAYS"},
        headers={"Authorization": "Basic eDp5"},
    )
    response = httpx.Response(200, json={"members": [], "total_items": 0}, request=request)
    _checked, problems = violations([(request, response)])
    assert problems and any("sort_dir" in p or "status" in p for p in problems)
