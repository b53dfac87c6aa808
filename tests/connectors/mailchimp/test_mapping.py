"""Members, email activity and unsubscribes as hub records; the subscriber hash."""

from __future__ import annotations

import copy
import hashlib
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from connectors.mailchimp.emulator_data import template
from connectors.mailchimp.ids import is_subscriber_hash, member_key, split_member_key, subscriber_hash
from connectors.mailchimp.mapping import (
    CampaignInfo,
    activity_record,
    consent_of,
    member_record,
    unsubscribe_record,
)
from hub.contracts import ActivityType, Consent
from hub.errors import SkippableRecordError

LIST = "5d1c0b9a8e"


def member(**changes: Any) -> dict[str, Any]:
    payload = copy.deepcopy(template("member"))
    payload.update(changes)
    return payload


def campaign() -> CampaignInfo:
    return CampaignInfo.from_payload(template("campaign"))


# --- subscriber hash


def test_subscriber_hash_is_md5_of_the_lowercased_address() -> None:
    assert subscriber_hash("Anna.Mueller@Example.com ") == hashlib.md5(b"anna.mueller@example.com").hexdigest()
    assert subscriber_hash("anna.mueller@example.com") == "dc913cd6b4259cc77fe6d7f9de362bec"


@given(st.emails(), st.sampled_from([str.upper, str.lower, str.title, lambda s: f"  {s}\t"]))
def test_subscriber_hash_ignores_case_and_surrounding_space(email: str, variant: Any) -> None:
    assert subscriber_hash(variant(email)) == subscriber_hash(email)
    assert is_subscriber_hash(subscriber_hash(email))


@given(st.from_regex(r"[a-z0-9]{10}", fullmatch=True), st.from_regex(r"[0-9a-f]{32}", fullmatch=True))
def test_member_keys_round_trip(list_id: str, member_id: str) -> None:
    assert split_member_key(member_key(list_id, member_id)) == (list_id, member_id)
    assert split_member_key(member_id) == (None, member_id)


# --- members


def test_a_member_becomes_a_person_record() -> None:
    record = member_record(LIST, member())
    assert record.object_type == "member"
    assert record.external_id == f"{LIST}:dc913cd6b4259cc77fe6d7f9de362bec"
    assert record.updated_at == datetime(2025, 3, 14, 9, 26, 53, tzinfo=UTC)
    assert not record.deleted
    assert "_links" not in record.payload
    person = record.person
    assert person is not None
    assert (person.email, person.first_name, person.last_name, person.phone) == (
        "anna.mueller@example.com", "Anna", "Müller", "+49 1234 5678",
    )  # fmt: skip
    assert person.consent is Consent.GRANTED
    assert person.properties == {
        "list_id": LIST,
        "email_status": "subscribed",
        "country": "DE",
        "region": "Bayern",
        "city": "München",
        "timezone": "Europe/Berlin",
        "member_rating": 3,
        "avg_open_rate": 0.42,
        "avg_click_rate": 0.08,
        "tags": ["Customer"],
        "language": "de",
        "vip": False,
        "email_type": "html",
        "signup_source": "API - Generic",
        "opted_in_at": "2025-03-14T09:26:53+00:00",
    }


@pytest.mark.parametrize(
    ("status", "consent"),
    [
        ("subscribed", Consent.GRANTED),
        ("unsubscribed", Consent.DENIED),
        ("cleaned", Consent.UNDELIVERABLE),
        ("pending", Consent.PENDING),
        ("transactional", Consent.UNKNOWN),
        ("archived", Consent.UNKNOWN),
        ("something-new", Consent.UNKNOWN),
    ],
)
def test_status_maps_to_consent(status: str, consent: Consent) -> None:
    assert consent_of(status) is consent
    record = member_record(LIST, member(status=status))
    assert record.person is not None and record.person.consent is consent
    assert record.deleted is (status == "archived")


def test_empty_timestamps_and_an_empty_address_are_left_out() -> None:
    # Mailchimp writes "" for unknown timestamps and for an unset ADDRESS merge field.
    payload = member(timestamp_signup="", timestamp_opt="", merge_fields={"FNAME": "", "ADDRESS": "", "SHOE": 42})
    person = member_record(LIST, payload).person
    assert person is not None
    assert person.first_name is None
    assert "signed_up_at" not in person.properties and "opted_in_at" not in person.properties
    assert "city" not in person.properties
    assert person.properties["merge_shoe"] == 42


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"id": ""}, "without id"),
        ({"email_address": None}, "no email address"),
        ({"email_address": "not-an-address"}, "no email address"),
        ({"last_changed": ""}, "no valid last_changed"),
        ({"last_changed": "yesterday"}, "no valid last_changed"),
    ],
)
def test_a_malformed_member_is_skippable(changes: dict[str, Any], message: str) -> None:
    with pytest.raises(SkippableRecordError, match=message):
        member_record(LIST, member(**changes))


_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
    max_leaves=12,
)


@given(st.dictionaries(st.sampled_from(sorted(template("member"))), _json, max_size=12))
def test_any_member_payload_maps_or_is_skipped(changes: dict[str, Any]) -> None:
    try:
        record = member_record(LIST, member(**changes))
    except SkippableRecordError:
        return
    assert record.person is not None and record.external_id.startswith(f"{LIST}:")


# --- email activity


def test_email_activity_becomes_opens_and_clicks_with_campaign_attributes() -> None:
    record, problems = activity_record(campaign(), template("email_activity"))
    assert problems == []
    assert record.object_type == "email_activity"
    assert record.external_id == f"b03bfc273a:{LIST}:dc913cd6b4259cc77fe6d7f9de362bec"
    opened, clicked = record.activities
    assert (opened.type, clicked.type) == (ActivityType.EMAIL_OPEN, ActivityType.EMAIL_CLICK)
    assert opened.person_external_id == f"{LIST}:dc913cd6b4259cc77fe6d7f9de362bec"
    assert opened.person_email == "anna.mueller@example.com"
    assert opened.attributes == {
        "campaign_id": "b03bfc273a",
        "send_time": "2026-10-06T09:00:00+00:00",
        "campaign": "Newsletter 2026-10-06",
        "subject": "Autumn edit",
        "list_id": LIST,
    }
    assert clicked.attributes["url"] == "https://shop.example/autumn-edit"
    assert record.updated_at == clicked.occurred_at


def test_activity_ids_are_stable_and_distinct() -> None:
    entry = copy.deepcopy(template("email_activity"))
    entry["activity"] = [
        {"action": "click", "timestamp": "2026-10-06T09:42:11+00:00", "url": "https://shop.example/a"},
        {"action": "click", "timestamp": "2026-10-06T09:42:11+00:00", "url": "https://shop.example/b"},
        {"action": "bounce", "timestamp": "2026-10-06T09:00:05+00:00", "type": "hard"},
    ]
    first, _ = activity_record(campaign(), entry)
    again, _ = activity_record(campaign(), copy.deepcopy(entry))
    ids = [a.external_id for a in first.activities]
    assert ids == [a.external_id for a in again.activities]
    assert len(set(ids)) == 3
    assert first.activities[2].type == ActivityType.EMAIL_BOUNCE
    assert first.activities[2].attributes["bounce_type"] == "hard"


def test_bad_activity_items_are_reported_and_the_rest_kept() -> None:
    entry = copy.deepcopy(template("email_activity"))
    entry["activity"].extend([{"action": "forward", "timestamp": "2026-10-06T10:00:00+00:00"}, "junk",
                              {"action": "open", "timestamp": ""}])  # fmt: skip
    record, problems = activity_record(campaign(), entry)
    assert len(record.activities) == 2
    assert len(problems) == 3
    with pytest.raises(SkippableRecordError):
        activity_record(campaign(), {"activity": []})


def test_an_unsubscribe_becomes_one_activity() -> None:
    record = unsubscribe_record(campaign(), template("unsubscribe"))
    (activity,) = record.activities
    assert activity.type == ActivityType.EMAIL_UNSUBSCRIBE
    assert activity.external_id == "b03bfc273a:dc913cd6b4259cc77fe6d7f9de362bec:unsubscribe"
    assert activity.attributes["reason"] == "I no longer want to receive these emails"
    with pytest.raises(SkippableRecordError):
        unsubscribe_record(campaign(), {"email_id": "x", "timestamp": ""})


def test_a_campaign_needs_an_id_and_a_send_time() -> None:
    with pytest.raises(SkippableRecordError):
        CampaignInfo.from_payload({"id": "x", "send_time": ""})
    info = campaign()
    assert (info.id, info.list_id, info.title) == ("b03bfc273a", LIST, "Newsletter 2026-10-06")
