"""The emulator's writes in-process: member tags and segments as one model (a property test), member rules the
SDK tests do not reach, and the names requests are counted under."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from connectors.mailchimp.emulator import SANDBOX_API_KEY, MailchimpEmulator
from connectors.mailchimp.ids import subscriber_hash
from hub.sandbox.business import Business
from hub.sandbox.control import Sandbox
from tests.contract.openapi import recorded

from .spec import check_exchanges, sample, spec_present
from .support import emulator_of, make_sandbox

BASE = "https://us21.api.mailchimp.com/3.0"


class Api:
    """An httpx client on a fresh sandbox, recording what it exchanged (contract-checked on close)."""

    def __init__(self, business: Business) -> None:
        self.sandbox: Sandbox = make_sandbox(business)
        handler, self.exchanges = recorded(self.sandbox)
        self.http = httpx.Client(base_url=BASE, transport=httpx.MockTransport(handler), auth=("x", SANDBOX_API_KEY))
        self.check_requests = True

    @property
    def emulator(self) -> MailchimpEmulator:
        return emulator_of(self.sandbox)

    @property
    def lists(self) -> str:
        return f"/lists/{self.emulator.list_id}"

    def email(self, status: str, index: int = 0) -> str:
        members = sorted(self.emulator.data.members.values(), key=lambda m: m.order)
        return [m.email for m in members if m.status == status][index]

    def ok(self, method: str, path: str, **kwargs: Any) -> Any:
        response = self.http.request(method, path, **kwargs)
        assert response.status_code in (200, 204), response.text
        return response.json() if response.status_code == 200 else None

    def close(self, *, check: bool = True) -> None:
        self.http.close()
        if check and spec_present():
            check_exchanges(sample(self.exchanges), requests=self.check_requests)


@pytest.fixture
def api(business: Business) -> Iterator[Api]:
    client = Api(business)
    yield client
    client.close()


# ----------------------------------------------------------------------------------------------- the tag model

TAGS = ("hub:a", "hub:b", "HUB:A", "VIP")
OPS = st.lists(
    st.tuples(
        st.sampled_from(("tags-on", "tags-off", "batch-add", "batch-remove", "one-add", "one-remove")),
        st.sampled_from(TAGS),
    ),
    max_size=12,
)


def _segment_id(api: Api, name: str) -> int:
    segments = api.ok("GET", f"{api.lists}/segments", params={"count": 1000})["segments"]
    found = next((s["id"] for s in segments if s["name"].casefold() == name.casefold()), None)
    if found is None:
        found = api.ok("POST", f"{api.lists}/segments", json={"name": name, "static_segment": []})["id"]
    return int(found)


def _apply(api: Api, email: str, op: str, name: str) -> None:
    member = subscriber_hash(email)
    if op in ("tags-on", "tags-off"):
        status = "active" if op == "tags-on" else "inactive"
        api.ok("POST", f"{api.lists}/members/{member}/tags", json={"tags": [{"name": name, "status": status}]})
    elif op in ("batch-add", "batch-remove"):
        field = "members_to_add" if op == "batch-add" else "members_to_remove"
        api.ok("POST", f"{api.lists}/segments/{_segment_id(api, name)}", json={field: [email]})
    elif op == "one-add":
        api.ok("POST", f"{api.lists}/segments/{_segment_id(api, name)}/members", json={"email_address": email})
    else:
        response = api.http.delete(f"{api.lists}/segments/{_segment_id(api, name)}/members/{member}")
        assert response.status_code in (204, 404)  # 404: it was not in the segment


@pytest.fixture(scope="module")
def seen() -> Iterator[list[tuple[httpx.Request, httpx.Response]]]:
    """The exchanges of every example, contract-checked once at the end (a sample of each kind)."""
    exchanges: list[tuple[httpx.Request, httpx.Response]] = []
    yield exchanges
    if spec_present():
        check_exchanges(sample(exchanges))


@settings(max_examples=25, deadline=None)
@given(ops=OPS)
def test_any_tag_calls_leave_the_member_with_the_model_tags(
    business: Business, seen: list[tuple[httpx.Request, httpx.Response]], ops: list[tuple[str, str]]
) -> None:
    api = Api(business)
    try:
        email, bystander = api.email("subscribed", 2), api.email("subscribed", 3)
        member = subscriber_hash(email)
        model = {t["name"].casefold() for t in api.ok("GET", f"{api.lists}/members/{member}/tags")["tags"]}
        others = api.ok("GET", f"{api.lists}/members/{subscriber_hash(bystander)}")["tags"]
        for op, name in ops:
            _apply(api, email, op, name)
            if op in ("tags-on", "batch-add", "one-add"):
                model.add(name.casefold())
            else:
                model.discard(name.casefold())
        tags = api.ok("GET", f"{api.lists}/members/{member}/tags", params={"count": 1000})
        assert (
            {t["name"].casefold() for t in tags["tags"]}
            == model
            == {t["name"].casefold() for t in api.ok("GET", f"{api.lists}/members/{member}")["tags"]}
        )
        for segment in api.ok("GET", f"{api.lists}/segments", params={"count": 1000})["segments"]:
            holders = api.ok("GET", f"{api.lists}/segments/{segment['id']}/members", params={"count": 1000})
            assert (email in {m["email_address"] for m in holders["members"]}) == (segment["name"].casefold() in model)
        assert api.ok("GET", f"{api.lists}/members/{subscriber_hash(bystander)}")["tags"] == others
    finally:
        api.close(check=False)
        seen.extend(api.exchanges)


# ----------------------------------------------------------------------------------------------- member rules


def test_a_put_must_name_the_member_of_its_path(api: Api) -> None:
    api.check_requests = False  # status_if_new is left out on purpose below
    email = api.email("subscribed")
    wrong = api.http.put(
        f"{api.lists}/members/{subscriber_hash('someone.else@example.org')}",
        json={"email_address": email, "status_if_new": "subscribed"},
    )
    assert wrong.status_code == 400 and wrong.json()["errors"][0]["field"] == "email_address"
    missing = api.http.put(
        f"{api.lists}/members/{subscriber_hash('new@example.org')}", json={"email_address": "new@example.org"}
    )
    assert missing.status_code == 400 and missing.json()["errors"][0]["field"] == "status_if_new"
    assert subscriber_hash("new@example.org") not in api.emulator.data.members


def test_an_archived_leaver_stays_a_leaver(api: Api) -> None:
    email = api.email("unsubscribed")
    assert api.http.delete(f"{api.lists}/members/{subscriber_hash(email)}").status_code == 204
    again = api.http.post(f"{api.lists}/members", json={"email_address": email, "status": "subscribed"})
    assert again.status_code == 400 and again.json()["title"] == "Member In Compliance State"
    back = api.ok("POST", f"{api.lists}/members", json={"email_address": email, "status": "unsubscribed"})
    assert back["status"] == "unsubscribed"


def test_a_member_deleted_for_good_leaves_the_reports(api: Api) -> None:
    data = api.emulator.data
    campaign = data.campaigns[-1]
    member = next(h for h in data.report(campaign).active if h in data.members)
    report = f"/reports/{campaign.id}/email-activity"
    assert member in {e["email_id"] for e in api.ok("GET", report, params={"count": 1000})["emails"]}
    before = api.ok("GET", report, params={"count": 1})["total_items"]
    api.ok("POST", f"{api.lists}/members/{member}/actions/delete-permanent")
    after = api.ok("GET", report, params={"count": 1000})
    assert after["total_items"] == before - 1 and member not in {e["email_id"] for e in after["emails"]}
    assert api.http.get(f"{report}/{member}").status_code == 404
    assert api.http.get(f"{api.lists}/members/{member}/activity-feed").status_code == 404


def test_the_unsubscribe_report_per_member(api: Api) -> None:
    data = api.emulator.data
    campaign = next(c for c in data.campaigns if data.report(c).unsubscribes)
    member_id, _, reason = data.report(campaign).unsubscribes[0]
    entry = api.ok("GET", f"/reports/{campaign.id}/unsubscribed/{member_id}")
    assert entry["email_id"] == member_id and entry["reason"] == reason
    assert api.http.get(f"/reports/{campaign.id}/unsubscribed/{'0' * 32}").status_code == 404


def test_batch_subscribe_takes_at_most_500(api: Api) -> None:
    members = [{"email_address": f"p{i}@example.org", "status": "subscribed"} for i in range(501)]
    refused = api.http.post(api.lists, json={"members": members})
    assert refused.status_code == 400 and "500" in refused.json()["detail"]
    done = api.ok("POST", api.lists, json={"members": members[:500]})
    assert done["total_created"] == 500 and done["error_count"] == 0


def test_an_email_change_is_refused_rather_than_half_done(api: Api) -> None:
    email = api.email("subscribed")
    changed = api.http.patch(f"{api.lists}/members/{subscriber_hash(email)}", json={"email_address": "x@example.org"})
    assert changed.status_code == 400
    assert api.ok("GET", f"{api.lists}/members/{subscriber_hash(email)}")["email_address"] == email


def test_a_bad_merge_field_writes_nothing(api: Api) -> None:
    email = api.email("subscribed")
    path = f"{api.lists}/members/{subscriber_hash(email)}"
    before = api.ok("GET", path)
    bad = api.http.patch(path, json={"language": "fr", "merge_fields": {"BIRTHDAY": "31.12."}})
    assert bad.status_code == 400 and bad.json()["errors"][0]["field"] == "BIRTHDAY"
    assert api.ok("GET", path) == before


# ----------------------------------------------------------------------------------------------- names in the stats


@pytest.mark.parametrize(
    ("method", "path", "endpoint", "resource"),
    [
        ("GET", "/3.0/lists/{l}/members", "GET /lists/{list_id}/members", "members"),
        ("PUT", "/lists/{l}/members/{h}", "PUT /lists/{list_id}/members/{subscriber_hash}", "members"),
        ("GET", "/lists/{l}/members/{h}/tags", "GET /lists/{list_id}/members/{subscriber_hash}/tags", "member-tags"),
        ("POST", "/lists/{l}/segments/7", "POST /lists/{list_id}/segments/{segment_id}", "segment-members"),
        ("GET", "/lists/{l}/segments", "GET /lists/{list_id}/segments", "segments"),
        ("GET", "/lists/{l}/tag-search", "GET /lists/{list_id}/tag-search", "tag-search"),
        ("GET", "/campaigns", "GET /campaigns", "campaigns"),
        ("GET", "/reports/c1/email-activity", "GET /reports/{campaign_id}/email-activity", "email-activity"),
        (
            "GET",
            "/reports/c1/unsubscribed/{h}",
            "GET /reports/{campaign_id}/unsubscribed/{subscriber_hash}",
            "unsubscribes",
        ),
        ("PUT", "/lists/{l}/segments", "PUT /lists/{list_id}/segments", "segments"),  # a 405: still the resource
        ("GET", "/oauth2/metadata", "GET /oauth2/metadata", "oauth"),
        ("GET", "/lists/{l}/webhooks", None, None),  # not emulated: the sandbox's own default name
    ],
)
def test_each_request_is_named_by_its_resource(
    api: Api, method: str, path: str, endpoint: str | None, resource: str | None
) -> None:
    url = "https://us21.api.mailchimp.com" + path.format(l=api.emulator.list_id, h="0" * 32)
    request = httpx.Request(method, url)
    assert api.emulator.endpoint_name(request) == endpoint
    assert api.emulator.resource_name(request) == resource
