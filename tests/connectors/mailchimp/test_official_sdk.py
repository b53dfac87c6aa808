"""Mailchimp's official Python SDK (``mailchimp-marketing``) against the emulator, served over real HTTP.

The SDK builds its URLs from ``api_client.host`` (``https://server.api.mailchimp.com/3.0`` with ``server``
replaced by the data center), so pointing ``host`` at the local server is all it takes. Every exchange is
recorded on the server side and contract-checked against Mailchimp's spec when the test ends (when the spec
is present). The SDK returns the decoded JSON of a 2xx answer, the raw ``requests.Response`` of a 204, and
raises ``ApiClientError`` (``status_code``, ``text``) for anything else.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import pytest

from connectors.mailchimp.emulator import SANDBOX_API_KEY, Latency, MailchimpEmulator
from connectors.mailchimp.emulator_data import Member
from connectors.mailchimp.ids import member_key, subscriber_hash
from hub.contracts import Outcome, TagChange, TagOp
from hub.registry import BuildContext
from hub.sandbox.business import Business
from hub.sandbox.emulator import EmulatorContext, SandboxClock
from hub.sandbox.server import SandboxServers
from tests.connectors.sandboxed import RecordingSandbox

from .spec import check_exchanges, spec_present
from .support import WRONG_KEY, build_sink, resolve

mailchimp_marketing = pytest.importorskip("mailchimp_marketing")
from mailchimp_marketing.api_client import ApiClientError  # noqa: E402


@dataclass
class Served:
    """The official SDK pointed at an emulator served on localhost."""

    sandbox: RecordingSandbox
    base_url: str
    check_requests: bool = True  # off in tests that send invalid requests on purpose

    @property
    def emulator(self) -> MailchimpEmulator:
        emulator = self.sandbox.emulator
        assert isinstance(emulator, MailchimpEmulator)
        return emulator

    @property
    def list_id(self) -> str:
        return self.emulator.list_id

    def sdk(self, api_key: str = SANDBOX_API_KEY) -> Any:
        client = mailchimp_marketing.Client()
        client.set_config({"api_key": api_key, "server": "us21", "timeout": 10})
        client.api_client.host = f"{self.base_url}/3.0"  # the SDK then replaces "server" in it: nothing to replace
        return client

    def members(self, *statuses: str) -> list[Member]:
        """The emulator's members with these statuses, in creation order."""
        found = self.emulator.data.members.values()
        return sorted((m for m in found if m.status in statuses), key=lambda m: m.order)


@contextmanager
def serving(emulator: MailchimpEmulator) -> Iterator[Served]:
    """The emulator on a local port; what it answered is contract-checked afterwards."""
    sandbox = RecordingSandbox(emulator)
    with SandboxServers({"mailchimp": sandbox}) as servers:
        served = Served(sandbox, servers.base_urls["mailchimp"])
        yield served
    if spec_present():
        check_exchanges(sandbox.exchanges, requests=served.check_requests)


@pytest.fixture
def served(business: Business) -> Iterator[Served]:
    with serving(MailchimpEmulator(EmulatorContext.create(business))) as served:
        yield served


@pytest.fixture
def mc(served: Served) -> Any:
    return served.sdk()


def problem_of(error: ApiClientError) -> dict[str, Any]:
    """The problem+json body the SDK hands back as text (its content type is not ``application/json``)."""
    body: dict[str, Any] = json.loads(error.text)
    assert body["status"] == error.status_code
    return body


# ----------------------------------------------------------------------------------------------- account and lists


def test_ping_root_and_lists(served: Served, mc: Any) -> None:
    assert mc.ping.get() == {"health_status": "Everything's Chimpy!"}
    live = len(served.members("subscribed", "unsubscribed", "cleaned", "pending", "transactional"))
    assert mc.root.get_root()["total_subscribers"] == live
    lists = mc.lists.get_all_lists()
    assert lists["total_items"] == 1 and [a["id"] for a in lists["lists"]] == [served.list_id]
    audience = mc.lists.get_list(served.list_id)
    assert audience["stats"]["member_count"] == len(served.members("subscribed"))
    assert audience["stats"]["unsubscribe_count"] == len(served.members("unsubscribed"))
    assert mc.lists.get_all_lists(email=served.members("subscribed")[0].email)["total_items"] == 1
    assert mc.lists.get_all_lists(email="nobody@nowhere.example")["lists"] == []


def test_member_pages_with_count_and_offset_cover_the_audience_once(served: Served, mc: Any) -> None:
    first = mc.lists.get_list_members_info(served.list_id, count=70)
    total = first["total_items"]
    seen = [m["id"] for m in first["members"]]
    for offset in range(70, total, 70):
        page = mc.lists.get_list_members_info(served.list_id, count=70, offset=offset)
        assert page["total_items"] == total
        seen.extend(m["id"] for m in page["members"])
    live = served.members("subscribed", "unsubscribed", "cleaned", "pending", "transactional")
    assert len(seen) == total == len(set(seen)) == len(live)
    assert seen == [m.id for m in live]  # the default order: creation


def test_member_listing_filters_and_projects_like_the_api(served: Served, mc: Any) -> None:
    cleaned = mc.lists.get_list_members_info(
        served.list_id, status="cleaned", count=1000, fields=["members.email_address", "members.status", "total_items"]
    )
    assert cleaned["total_items"] == len(served.members("cleaned"))
    assert {m["email_address"] for m in cleaned["members"]} == {m.email for m in served.members("cleaned")}
    assert all(set(m) == {"email_address", "status"} for m in cleaned["members"])
    vips = mc.lists.get_list_members_info(served.list_id, vip_only=True, count=1000)
    expected = [m.id for m in served.members("subscribed", "unsubscribed", "cleaned", "pending") if m.vip]
    assert [m["id"] for m in vips["members"]] == expected and expected
    one = served.members("subscribed")[4]
    unique = mc.lists.get_list_member(served.list_id, one.id)["unique_email_id"]
    assert [m["id"] for m in mc.lists.get_list_members_info(served.list_id, unique_email_id=unique)["members"]] == [
        one.id
    ]


def test_get_list_member_by_hash_and_by_email(served: Served, mc: Any) -> None:
    member = served.members("subscribed")[3]
    by_hash = mc.lists.get_list_member(served.list_id, member.id)
    assert by_hash["email_address"] == member.email and by_hash["id"] == subscriber_hash(member.email)
    assert mc.lists.get_list_member(served.list_id, member.email.upper())["id"] == member.id
    assert {t["name"] for t in by_hash["tags"]} == {s.name for s in served.emulator.data.tags_of(member.id)}


# ----------------------------------------------------------------------------------------------- member writes


def test_add_update_and_set_a_member(served: Served, mc: Any) -> None:
    added = mc.lists.add_list_member(
        served.list_id,
        {
            "email_address": "Ada.Lovelace@analytical.example",
            "status": "subscribed",
            "merge_fields": {"FNAME": "Ada", "LNAME": "Lovelace"},
            "language": "en",
            "tags": ["Engine"],
        },
    )
    ada = subscriber_hash("ada.lovelace@analytical.example")
    assert added["id"] == ada and added["status"] == "subscribed" and added["full_name"] == "Ada Lovelace"
    assert [t["name"] for t in added["tags"]] == ["Engine"] and added["timestamp_opt"] != ""
    patched = mc.lists.update_list_member(served.list_id, ada, {"vip": True, "merge_fields": {"PHONE": "+44 1"}})
    assert patched["vip"] is True and patched["merge_fields"]["PHONE"] == "+44 1"
    assert patched["merge_fields"]["FNAME"] == "Ada" and patched["last_changed"] >= added["last_changed"]
    # PUT updates an existing member (status_if_new is ignored for it) ...
    put = mc.lists.set_list_member(
        served.list_id,
        ada,
        {"email_address": "ada.lovelace@analytical.example", "status_if_new": "pending", "status": "unsubscribed"},
    )
    assert put["status"] == "unsubscribed" and put["unsubscribe_reason"]
    # ... and creates a new one with status_if_new.
    new = mc.lists.set_list_member(
        served.list_id,
        subscriber_hash("charles@analytical.example"),
        {"email_address": "charles@analytical.example", "status_if_new": "pending"},
    )
    assert new["status"] == "pending" and new["id"] == subscriber_hash("charles@analytical.example")
    pending = mc.lists.get_list_members_info(served.list_id, status="pending", count=1000)
    assert new["id"] in {m["id"] for m in pending["members"]}
    # Unsubscribed by an admin (through the API), Ada may be subscribed again.
    assert mc.lists.update_list_member(served.list_id, ada, {"status": "subscribed"})["status"] == "subscribed"


def test_archive_re_add_and_delete_permanently(served: Served, mc: Any) -> None:
    member = served.members("subscribed")[0]
    assert mc.lists.delete_list_member(served.list_id, member.id).status_code == 204
    assert mc.lists.get_list_member(served.list_id, member.id)["status"] == "archived"
    live = mc.lists.get_list_members_info(served.list_id, count=1000)
    assert member.id not in {m["id"] for m in live["members"]}
    archived = mc.lists.get_list_members_info(served.list_id, status="archived", count=1000)
    assert member.id in {m["id"] for m in archived["members"]}
    back = mc.lists.set_list_member(
        served.list_id, member.id, {"email_address": member.email, "status_if_new": "subscribed"}
    )
    assert back["status"] == "subscribed"
    assert mc.lists.delete_list_member_permanent(served.list_id, member.id).status_code == 204
    with pytest.raises(ApiClientError) as gone:
        mc.lists.get_list_member(served.list_id, member.id)
    assert gone.value.status_code == 404
    with pytest.raises(ApiClientError) as forgotten:
        mc.lists.add_list_member(served.list_id, {"email_address": member.email, "status": "subscribed"})
    assert problem_of(forgotten.value)["title"] == "Forgotten Email Not Subscribed"
    assert member.id not in {h for s in served.emulator.data.segments.values() for h in s.members}


def test_member_exists_and_compliance_states(served: Served, mc: Any) -> None:
    subscribed = served.members("subscribed")[0]
    with pytest.raises(ApiClientError) as exists:
        mc.lists.add_list_member(served.list_id, {"email_address": subscribed.email, "status": "subscribed"})
    assert exists.value.status_code == 400 and problem_of(exists.value)["title"] == "Member Exists"
    for status in ("unsubscribed", "cleaned"):
        member = served.members(status)[0]
        with pytest.raises(ApiClientError) as refused:
            mc.lists.set_list_member(
                served.list_id,
                member.id,
                {"email_address": member.email, "status_if_new": "subscribed", "status": "subscribed"},
            )
        body = problem_of(refused.value)
        assert body["title"] == "Member In Compliance State" and member.email in body["detail"]
        assert mc.lists.get_list_member(served.list_id, member.id)["status"] == status
    leaver = served.members("unsubscribed")[1]
    # A leaver may be asked to confirm again: pending sends the opt-in email.
    assert mc.lists.update_list_member(served.list_id, leaver.id, {"status": "pending"})["status"] == "pending"


def test_batch_subscribe_creates_updates_and_reports_errors(served: Served, mc: Any) -> None:
    existing = served.members("subscribed")[0]
    body = {
        "members": [
            {"email_address": "grace@navy.example", "status": "subscribed", "merge_fields": {"FNAME": "Grace"}},
            {"email_address": existing.email, "status": "subscribed", "language": "fr"},
            {"email_address": "not-an-address", "status": "subscribed"},
        ]
    }
    first = mc.lists.batch_list_members(served.list_id, body)
    assert first["total_created"] == 1 and first["total_updated"] == 0 and first["error_count"] == 2
    codes = {e["email_address"]: e["error_code"] for e in first["errors"]}
    assert codes == {existing.email: "ERROR_CONTACT_EXISTS", "not-an-address": "ERROR_GENERIC"}
    again = mc.lists.batch_list_members(served.list_id, {**body, "update_existing": True})
    assert again["total_created"] == 0 and [m["email_address"] for m in again["updated_members"]] == [
        "grace@navy.example",
        existing.email,
    ]
    assert mc.lists.get_list_member(served.list_id, existing.id)["language"] == "fr"


# ----------------------------------------------------------------------------------------------- tags


def _tag_names(mc: Any, list_id: str, member_id: str) -> set[str]:
    return {t["name"] for t in mc.lists.get_list_member_tags(list_id, member_id, count=1000)["tags"]}


def _segment_named(mc: Any, list_id: str, name: str) -> dict[str, Any] | None:
    segments = mc.lists.list_segments(list_id, count=1000)["segments"]
    return next((s for s in segments if s["name"] == name), None)


def test_member_tags_are_static_segments_everywhere(served: Served, mc: Any) -> None:
    member = served.members("subscribed")[5]
    before = _tag_names(mc, served.list_id, member.id)
    answer = mc.lists.update_list_member_tags(
        served.list_id,
        member.id,
        {"tags": [{"name": "hub:sdk", "status": "active"}, {"name": "VIP", "status": "active"}], "is_syncing": True},
    )
    assert answer.status_code == 204 and answer.content == b""
    assert _tag_names(mc, served.list_id, member.id) == before | {"hub:sdk", "VIP"}
    assert {t["name"] for t in mc.lists.get_list_member(served.list_id, member.id)["tags"]} == before | {
        "hub:sdk",
        "VIP",
    }
    segment = _segment_named(mc, served.list_id, "hub:sdk")
    assert segment is not None and segment["type"] == "static" and segment["member_count"] == 1
    holders = mc.lists.get_segment_members_list(served.list_id, segment["id"])
    assert [m["email_address"] for m in holders["members"]] == [member.email]
    assert [t["name"] for t in mc.lists.tag_search(served.list_id, name="HUB:S")["tags"]] == ["hub:sdk"]
    dated = mc.lists.get_list_member_tags(served.list_id, member.id)["tags"]
    assert all(t["date_added"] for t in dated)

    mc.lists.update_list_member_tags(served.list_id, member.id, {"tags": [{"name": "hub:sdk", "status": "inactive"}]})
    assert _tag_names(mc, served.list_id, member.id) == before | {"VIP"}
    assert mc.lists.get_segment_members_list(served.list_id, segment["id"])["total_items"] == 0
    assert mc.lists.get_segment(served.list_id, segment["id"])["member_count"] == 0


def test_tags_set_by_the_sdk_and_by_the_connector_are_one_thing(served: Served, mc: Any) -> None:
    first, second = served.members("subscribed")[:2]
    mc.lists.update_list_member_tags(served.list_id, first.id, {"tags": [{"name": "hub:both", "status": "active"}]})
    # The connector's sink over the same HTTP server (its base_url override, no in-process transport).
    sink = build_sink(BuildContext(resolve_secret=resolve), served.list_id, base_url=served.base_url)
    try:
        assert {c.email for c in sink.read_tags("hub:")} == {first.email}
        results = sink.apply(
            [
                TagChange(TagOp.ADD, "hub:both", 2, second.email),
                TagChange(TagOp.REMOVE, "hub:both", 1, None, member_key(served.list_id, first.id)),
            ]
        )
        assert [r.outcome for r in results] == [Outcome.ACKNOWLEDGED, Outcome.ACKNOWLEDGED]
    finally:
        sink.close()
    assert "hub:both" not in _tag_names(mc, served.list_id, first.id)
    assert "hub:both" in _tag_names(mc, served.list_id, second.id)


def test_segments_create_batch_rename_and_delete(served: Served, mc: Any) -> None:
    subscribed = served.members("subscribed")
    unsubscribed = served.members("unsubscribed")[0]
    created = mc.lists.create_segment(
        served.list_id, {"name": "hub:batch", "static_segment": [m.email for m in subscribed[:3]]}
    )
    assert created["type"] == "static" and created["member_count"] == 3
    batch = mc.lists.batch_segment_members(
        {
            "members_to_add": [subscribed[3].email, subscribed[4].email, unsubscribed.email],
            "members_to_remove": [subscribed[0].email],
        },
        served.list_id,
        created["id"],
    )
    assert batch["total_added"] == 2 and batch["total_removed"] == 1 and batch["error_count"] == 1
    assert "compliance state" in batch["errors"][0]["error"]
    expected = [m.email for m in subscribed[1:5]]
    page = mc.lists.get_segment_members_list(served.list_id, created["id"], count=2, offset=1)
    assert page["total_items"] == 4 and [m["email_address"] for m in page["members"]] == expected[1:3]
    renamed = mc.lists.update_segment(served.list_id, created["id"], {"name": "hub:renamed"})
    assert renamed["name"] == "hub:renamed" and renamed["member_count"] == 4
    assert "hub:renamed" in _tag_names(mc, served.list_id, subscribed[1].id)
    replaced = mc.lists.update_segment(
        served.list_id, created["id"], {"name": "hub:renamed", "static_segment": [subscribed[0].email]}
    )
    assert replaced["member_count"] == 1
    assert mc.lists.delete_segment(served.list_id, created["id"]).status_code == 204
    with pytest.raises(ApiClientError) as gone:
        mc.lists.get_segment(served.list_id, created["id"])
    assert gone.value.status_code == 404
    assert "hub:renamed" not in _tag_names(mc, served.list_id, subscribed[0].id)


def test_one_segment_member_added_and_removed(served: Served, mc: Any) -> None:
    member = served.members("subscribed")[7]
    segment = mc.lists.create_segment(served.list_id, {"name": "hub:single", "static_segment": []})
    added = mc.lists.create_segment_member(served.list_id, segment["id"], {"email_address": member.email})
    assert added["id"] == member.id
    assert "hub:single" in _tag_names(mc, served.list_id, member.id)
    answer = mc.lists.remove_segment_member(served.list_id, segment["id"], member.id)
    assert answer.status_code == 204 and "hub:single" not in _tag_names(mc, served.list_id, member.id)
    with pytest.raises(ApiClientError) as absent:
        mc.lists.remove_segment_member(served.list_id, segment["id"], member.id)
    assert absent.value.status_code == 404


# ----------------------------------------------------------------------------------------------- reads around members


def test_activity_feed_agrees_with_the_campaign_reports(served: Served, mc: Any) -> None:
    data = served.emulator.data
    campaign = data.campaigns[-1]
    report = data.report(campaign)
    member_id = next(h for h in report.active if h in data.members)
    opens = sorted(at for at, action, _ in report.events[member_id] if action == "open")
    feed = mc.lists.get_list_member_activity_feed(served.list_id, member_id, count=1000, activity_filters=["open"])
    ours = [a for a in feed["activity"] if a["campaign_id"] == campaign.id]
    assert len(ours) == len(opens) and all(a["activity_type"] == "open" for a in feed["activity"])
    stamps = [a["created_at_timestamp"] for a in feed["activity"]]
    assert stamps == sorted(stamps, reverse=True)  # newest first
    everything = mc.lists.get_list_member_activity_feed(served.list_id, member_id, count=1000)["activity"]
    assert {"sent", "open"} <= {a["activity_type"] for a in everything}
    report_entry = mc.reports.get_email_activity_for_subscriber(campaign.id, member_id)
    assert report_entry["email_id"] == member_id
    assert sorted(a["action"] for a in report_entry["activity"]) == sorted(
        action for _, action, _ in report.events[member_id]
    )
    recent = mc.lists.get_list_member_activity(served.list_id, member_id)
    assert 0 < len(recent["activity"]) <= 50 and recent["activity"][0]["action"] == everything[0]["activity_type"]


def test_merge_fields_interest_categories_and_campaigns(served: Served, mc: Any) -> None:
    merge = mc.lists.get_list_merge_fields(served.list_id)
    assert [f["tag"] for f in merge["merge_fields"]] == ["FNAME", "LNAME", "ADDRESS", "PHONE", "BIRTHDAY"]
    address = mc.lists.get_list_merge_field(served.list_id, merge["merge_fields"][2]["merge_id"])
    assert address["type"] == "address"
    assert mc.lists.get_list_interest_categories(served.list_id)["categories"] == []
    campaign = served.emulator.data.campaigns[0]
    assert mc.campaigns.get(campaign.id)["settings"]["subject_line"] == campaign.subject


# ----------------------------------------------------------------------------------------------- errors


def test_an_unknown_member_is_a_404_problem(served: Served, mc: Any) -> None:
    for call in (
        lambda: mc.lists.get_list_member(served.list_id, subscriber_hash("nobody@nowhere.example")),
        lambda: mc.lists.get_list_member_tags(served.list_id, "0" * 32),
        lambda: mc.lists.update_list_member_tags(
            served.list_id, "0" * 32, {"tags": [{"name": "x", "status": "active"}]}
        ),
        lambda: mc.lists.get_list_members_info("nosuchlist1"),
    ):
        with pytest.raises(ApiClientError) as error:
            call()
        body = problem_of(error.value)
        assert error.value.status_code == 404 and body["title"] == "Resource Not Found"
    assert _segment_named(mc, served.list_id, "x") is None  # the refused tag call created nothing


def test_a_bad_key_is_a_401_problem(served: Served) -> None:
    with pytest.raises(ApiClientError) as error:
        served.sdk(WRONG_KEY).ping.get()
    assert error.value.status_code == 401 and problem_of(error.value)["title"] == "API Key Invalid"


def test_a_bad_tag_body_is_a_400_with_field_errors(served: Served, mc: Any) -> None:
    served.check_requests = False  # the request is invalid on purpose; the answer is still checked
    member = served.members("subscribed")[0]
    with pytest.raises(ApiClientError) as error:
        mc.lists.update_list_member_tags(served.list_id, member.id, {"tags": [{"name": "x", "status": "on"}]})
    body = problem_of(error.value)
    assert error.value.status_code == 400 and body["errors"][0]["field"] == "tags[0].status"


def test_the_eleventh_simultaneous_connection_gets_a_429(business: Business) -> None:
    # Each request holds its connection while the emulator "sleeps" its latency; the sleep waits for the gate,
    # so ten requests are provably in flight when the eleventh arrives.
    gate = threading.Event()
    clock = SandboxClock(sleep_fn=lambda _s: gate.wait(10))
    emulator = MailchimpEmulator(EmulatorContext.create(business, clock=clock), latency=Latency(base_s=1.0))
    with serving(emulator) as served:
        statuses: list[object] = []

        def ping() -> None:
            statuses.append(served.sdk().ping.get()["health_status"])

        threads = [threading.Thread(target=ping) for _ in range(10)]
        for thread in threads:
            thread.start()
        deadline = time.monotonic() + 10
        while emulator.connections.in_use < 10 and time.monotonic() < deadline:
            time.sleep(0.005)
        assert emulator.connections.in_use == 10
        with pytest.raises(ApiClientError) as error:
            served.sdk().ping.get()
        gate.set()
        for thread in threads:
            thread.join(10)
        assert error.value.status_code == 429 and "10 simultaneous connections" in problem_of(error.value)["detail"]
        assert statuses == ["Everything's Chimpy!"] * 10
        assert served.sandbox.stats()["rate_limited"] == 1


# ----------------------------------------------------------------------------------------------- statistics


def test_stats_name_each_resource_apart(served: Served, mc: Any) -> None:
    member = served.members("subscribed")[0]
    mc.lists.get_list_member(served.list_id, member.id)
    mc.lists.get_list_member_tags(served.list_id, member.id)
    mc.lists.update_list_member_tags(served.list_id, member.id, {"tags": [{"name": "hub:s", "status": "active"}]})
    mc.lists.list_segments(served.list_id)
    endpoints = served.sandbox.stats()["endpoints"]
    assert endpoints["GET /lists/{list_id}/members/{subscriber_hash}"] == 1
    assert endpoints["GET /lists/{list_id}/members/{subscriber_hash}/tags"] == 1
    assert endpoints["POST /lists/{list_id}/members/{subscriber_hash}/tags"] == 1
    assert endpoints["GET /lists/{list_id}/segments"] == 1
    names = {served.emulator.resource_name(request) for request, _ in served.sandbox.exchanges}
    assert names == {"members", "member-tags", "segments"}
