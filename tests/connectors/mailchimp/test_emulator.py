"""The emulator on its own: Mailchimp's shapes, paging, filters, errors, the connection limit and tag batches."""

from __future__ import annotations

import threading
from typing import Any

import httpx
import pytest

from connectors.mailchimp.emulator import SANDBOX_API_KEY, SANDBOX_OAUTH_TOKEN, Latency
from connectors.mailchimp.ids import subscriber_hash
from hub.sandbox.business import Business
from hub.sandbox.control import Sandbox

from .support import OTHER_DC_KEY, WRONG_KEY, emulator_of, make_sandbox

BASE = "https://us21.api.mailchimp.com/3.0"
US7 = "https://us7.api.mailchimp.com/3.0"
PROBLEM_FIELDS = {"type", "title", "status", "detail", "instance"}


def client(sandbox: Sandbox, key: str = SANDBOX_API_KEY, base: str = BASE) -> httpx.Client:
    return httpx.Client(base_url=base, transport=httpx.MockTransport(sandbox), auth=("any", key))


def members(sandbox: Sandbox, **params: Any) -> dict[str, Any]:
    list_id = emulator_of(sandbox).list_id
    response = client(sandbox).get(f"/lists/{list_id}/members", params=params)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def assert_problem(response: httpx.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status
    assert response.headers["content-type"] == "application/problem+json"
    body: dict[str, Any] = response.json()
    assert body.keys() >= PROBLEM_FIELDS and body["status"] == status
    return body


def batch(sandbox: Sandbox, segment_id: int, **body: Any) -> httpx.Response:
    list_id = emulator_of(sandbox).list_id
    return client(sandbox).post(f"/lists/{list_id}/segments/{segment_id}", json=body)


def new_tag(sandbox: Sandbox, name: str = "hub:test") -> int:
    list_id = emulator_of(sandbox).list_id
    response = client(sandbox).post(f"/lists/{list_id}/segments", json={"name": name, "static_segment": []})
    assert response.status_code == 200
    return int(response.json()["id"])


def by_status(sandbox: Sandbox, status: str) -> list[str]:
    return sorted(m.email for m in emulator_of(sandbox).data.members.values() if m.status == status)


# ----------------------------------------------------------------------------------------------- shapes and paging


def test_a_members_page_has_mailchimps_shape(sandbox: Sandbox) -> None:
    body = members(sandbox, count=5)
    assert {"members", "list_id", "total_items", "_links"} <= body.keys()
    live = sum(m.status != "archived" for m in emulator_of(sandbox).data.members.values())
    assert body["total_items"] == live and len(body["members"]) == 5
    member = body["members"][0]
    assert member["id"] == subscriber_hash(member["email_address"])
    for key in ("status", "merge_fields", "tags", "location", "member_rating", "stats", "last_changed"):
        assert key in member


def test_offset_paging_covers_the_audience_once(sandbox: Sandbox) -> None:
    total = members(sandbox, count=1)["total_items"]
    seen: list[str] = []
    for offset in range(0, total, 70):
        seen.extend(m["id"] for m in members(sandbox, count=70, offset=offset)["members"])
    assert len(seen) == total == len(set(seen))


def test_count_above_1000_is_a_400_problem(sandbox: Sandbox) -> None:
    list_id = emulator_of(sandbox).list_id
    body = assert_problem(client(sandbox).get(f"/lists/{list_id}/members", params={"count": 1001}), 400)
    assert body["errors"][0]["field"] == "count"


def test_since_last_changed_sorted_ascending(sandbox: Sandbox) -> None:
    everyone = members(sandbox, count=1000, sort_field="last_changed", sort_dir="ASC")["members"]
    stamps = [m["last_changed"] for m in everyone]
    assert stamps == sorted(stamps)
    middle = stamps[len(stamps) // 2]
    later = members(sandbox, count=1000, since_last_changed=middle, sort_field="last_changed", sort_dir="ASC")
    assert later["members"] and all(m["last_changed"] > middle for m in later["members"])
    assert later["total_items"] == sum(s > middle for s in stamps)


def test_archived_members_are_listed_only_when_asked_for(sandbox: Sandbox) -> None:
    sandbox.mutate(0.0, 0.03, seed=1)
    archived = {m.id for m in emulator_of(sandbox).data.members.values() if m.status == "archived"}
    assert archived
    assert not archived & {m["id"] for m in members(sandbox, count=1000)["members"]}
    assert {m["id"] for m in members(sandbox, count=1000, status="archived")["members"]} == archived


def test_fields_and_exclude_fields_project_the_answer(sandbox: Sandbox) -> None:
    body = members(sandbox, count=2, fields="members.id,members.status,total_items")
    assert set(body) == {"members", "total_items"}
    assert all(set(m) == {"id", "status"} for m in body["members"])
    dropped = members(sandbox, count=2, exclude_fields="members._links,members.merge_fields")
    assert all("merge_fields" not in m and "email_address" in m for m in dropped["members"])


# ----------------------------------------------------------------------------------------------- auth and errors


@pytest.mark.parametrize(
    ("key", "base"),
    [(WRONG_KEY, BASE), (OTHER_DC_KEY, US7), (SANDBOX_API_KEY, US7)],
)
def test_a_wrong_key_or_data_center_is_a_401_problem(sandbox: Sandbox, key: str, base: str) -> None:
    assert_problem(client(sandbox, key, base).get("/ping"), 401)


def test_unknown_resources_are_404_problems(sandbox: Sandbox) -> None:
    assert_problem(client(sandbox).get("/lists/nosuchlist1/members"), 404)
    assert_problem(client(sandbox).get("/reports/nosuchcamp/email-activity"), 404)


def test_the_oauth_metadata_answers_a_bad_token_with_200_and_an_error(sandbox: Sandbox) -> None:
    meta = httpx.Client(transport=httpx.MockTransport(sandbox))
    bad = meta.get("https://login.mailchimp.com/oauth2/metadata", headers={"Authorization": "OAuth nope"})
    assert bad.status_code == 200 and bad.json() == {"error": "invalid_token"}
    good = meta.get(
        "https://login.mailchimp.com/oauth2/metadata", headers={"Authorization": f"OAuth {SANDBOX_OAUTH_TOKEN}"}
    )
    assert good.json()["dc"] == "us21"
    sandbox.inject({"kind": "token_expiry"})
    revoked = meta.get(
        "https://login.mailchimp.com/oauth2/metadata", headers={"Authorization": f"OAuth {SANDBOX_OAUTH_TOKEN}"}
    )
    assert revoked.json() == {"error": "invalid_token"}


def test_injected_faults_come_as_problem_json(sandbox: Sandbox) -> None:
    sandbox.inject({"kind": "429", "path": "/3.0/ping"})
    assert_problem(client(sandbox).get("/ping"), 429)
    assert client(sandbox).get("/ping").status_code == 200


# ----------------------------------------------------------------------------------------------- connections


def _simultaneous(sandbox: Sandbox, clients: int) -> list[int]:
    statuses: list[int] = []
    lock = threading.Lock()
    start = threading.Barrier(clients)

    def one() -> None:
        with client(sandbox) as http:
            start.wait()
            status = http.get("/ping").status_code
        with lock:
            statuses.append(status)

    threads = [threading.Thread(target=one) for _ in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return statuses


def test_ten_simultaneous_connections_pass_and_more_get_429(business: Business) -> None:
    sandbox = make_sandbox(business, latency=Latency(base_s=0.3))
    assert sorted(set(_simultaneous(sandbox, 10))) == [200]
    over = _simultaneous(sandbox, 14)
    assert over.count(429) >= 1 and over.count(200) >= 10
    assert emulator_of(sandbox).connections.max_in_use == 10
    assert sandbox.stats()["rate_limited"] == over.count(429)


# ----------------------------------------------------------------------------------------------- tags


def test_a_tag_batch_adds_removes_and_reports_per_member_errors(sandbox: Sandbox) -> None:
    segment = new_tag(sandbox)
    subscribed, unsubscribed = by_status(sandbox, "subscribed"), by_status(sandbox, "unsubscribed")
    cleaned = by_status(sandbox, "cleaned")
    body = batch(sandbox, segment, members_to_add=[*subscribed[:3], unsubscribed[0], cleaned[0], "not-an-email"]).json()
    assert {m["email_address"] for m in body["members_added"]} == set(subscribed[:3])
    assert body["total_added"] == 3 and body["error_count"] == 3
    errors = {e["error"]: set(e["email_addresses"]) for e in body["errors"]}
    compliance = next(k for k in errors if "compliance state" in k)
    assert errors[compliance] == {unsubscribed[0], cleaned[0]}
    assert any("looks fake or invalid" in k for k in errors)
    again = batch(sandbox, segment, members_to_add=[subscribed[0]], members_to_remove=[subscribed[1], subscribed[5]])
    again = again.json()
    assert [m["email_address"] for m in again["members_removed"]] == [subscribed[1]]
    messages = {e["error"] for e in again["errors"]}
    assert any("already a member" in k for k in messages) and any("not a member" in k for k in messages)
    data = emulator_of(sandbox).data
    assert data.segments[segment].members == {subscriber_hash(subscribed[0]), subscriber_hash(subscribed[2])}


def test_more_than_500_members_per_field_is_refused_whole(sandbox: Sandbox) -> None:
    segment = new_tag(sandbox)
    emails = [f"someone{i}@example.org" for i in range(501)]
    body = assert_problem(batch(sandbox, segment, members_to_add=emails), 400)
    assert "at most 500" in body["detail"]
    assert batch(sandbox, segment, members_to_add=emails[:500], members_to_remove=emails[:500]).status_code == 200


def test_a_tag_name_is_unique_whatever_its_case(sandbox: Sandbox) -> None:
    new_tag(sandbox, "hub:VIP")
    list_id = emulator_of(sandbox).list_id
    again = client(sandbox).post(f"/lists/{list_id}/segments", json={"name": "HUB:vip", "static_segment": []})
    assert_problem(again, 400)


def test_a_tag_lists_its_members_of_every_status_only_when_asked(sandbox: Sandbox) -> None:
    segment = new_tag(sandbox)
    data = emulator_of(sandbox).data
    unsubscribed = by_status(sandbox, "unsubscribed")[0]
    data.segments[segment].members.add(subscriber_hash(unsubscribed))  # tagged before unsubscribing
    list_id = emulator_of(sandbox).list_id
    path = f"/lists/{list_id}/segments/{segment}/members"
    assert client(sandbox).get(path).json()["total_items"] == 0
    shown = client(sandbox).get(path, params={"include_unsubscribed": "true"}).json()
    assert [m["email_address"] for m in shown["members"]] == [unsubscribed]


# ----------------------------------------------------------------------------------------------- changes


def test_mutate_moves_changed_members_to_the_end_and_archives_some(sandbox: Sandbox) -> None:
    emulator = emulator_of(sandbox)
    newest = max(m.last_changed for m in emulator.data.members.values())
    counts = sandbox.mutate(0.1, 0.02, seed=3)
    later = [m for m in emulator.data.members.values() if m.last_changed > newest]
    assert len(later) == counts["members_changed"] + counts["members_archived"] > 0
    assert sum(m.status == "archived" for m in later) == counts["members_archived"]
    sandbox.reset()
    assert max(m.last_changed for m in emulator.data.members.values()) == newest


def test_mutations_are_deterministic_for_a_seed(business: Business) -> None:
    first, second = make_sandbox(business), make_sandbox(business)
    assert first.mutate(0.05, 0.01, seed=9) == second.mutate(0.05, 0.01, seed=9)
    changed = {m.id for m in emulator_of(first).data.members.values() if m.status == "archived"}
    assert changed == {m.id for m in emulator_of(second).data.members.values() if m.status == "archived"}
