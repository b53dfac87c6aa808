"""Units: payload mapping, consent, stage outcomes, property splitting, checkpoints, scope parsing, pacing."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st

from connectors.hubspot.client import DailyBudget, hubspot_errors, make_pacer, missing_scopes, split_properties
from connectors.hubspot.config import HubSpotDestinationConfig, HubSpotSourceConfig
from connectors.hubspot.mapping import StageBook, consent_of, contact_record, deal_records, parse_time
from connectors.hubspot.source import Checkpoint
from hub.contracts import ActivityType, Consent
from hub.errors import ConfigError, SkippableRecordError, TransientError

PIPELINES = [
    {
        "id": "default",
        "stages": [
            {"id": "closedwon", "metadata": {"isClosed": "true", "probability": "1.0"}},
            {"id": "closedlost", "metadata": {"isClosed": "true", "probability": "0.0"}},
            {"id": "contractsent", "metadata": {"isClosed": "false", "probability": "0.9"}},
            {"id": "4711", "metadata": {"isClosed": "true", "probability": "1.0"}},  # a custom won stage
        ],
    }
]


def contact(**props: Any) -> dict[str, Any]:
    return {
        "id": "1001",
        "properties": {
            "email": " Ann@Example.com ",
            "firstname": "Ann",
            "lastmodifieddate": "2026-01-02T03:04:05.006Z",
            **props,
        },
        "createdAt": "2025-01-01T00:00:00.000Z",
        "updatedAt": "2026-01-02T03:04:05.006Z",
        "archived": False,
    }


def deal(stage: str, **props: Any) -> dict[str, Any]:
    return {
        "id": "20000001",
        "properties": {"dealstage": stage, "amount": "1200.50", "closedate": "2026-05-01T00:00:00Z", **props},
        "updatedAt": "2026-05-02T00:00:00Z",
        "archived": False,
    }


# ----------------------------------------------------------------------------------------------- times


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("2026-01-02T03:04:05.006Z", datetime(2026, 1, 2, 3, 4, 5, 6000, tzinfo=UTC)),
        ("2026-01-02T03:04:05+01:00", datetime(2026, 1, 2, 2, 4, 5, tzinfo=UTC)),
        ("2026-01-02", datetime(2026, 1, 2, tzinfo=UTC)),
        ("1767323045006", datetime(2026, 1, 2, 3, 4, 5, 6000, tzinfo=UTC)),
        ("", None),
        (None, None),
    ],
)
def test_timestamps_in_every_form_hubspot_uses(raw: str | None, expected: datetime | None) -> None:
    assert parse_time(raw) == expected


def test_an_unreadable_timestamp_is_a_value_error() -> None:
    with pytest.raises(ValueError):
        parse_time("yesterday")


# ----------------------------------------------------------------------------------------------- contacts


@pytest.mark.parametrize(
    ("props", "consent"),
    [
        ({"hs_email_optout": "false", "hs_legal_basis": "Freely given consent from contact"}, Consent.GRANTED),
        ({"hs_email_optout": "true", "hs_legal_basis": "Freely given consent from contact"}, Consent.DENIED),
        ({"hs_email_optout": "false", "hs_email_hard_bounce_reason_enum": "BAD_MAILBOX"}, Consent.UNDELIVERABLE),
        ({"hs_email_bad_address": "true"}, Consent.UNDELIVERABLE),
        ({"hs_email_quarantined": "true", "hs_email_optout": "true"}, Consent.UNDELIVERABLE),
        ({"hs_emailconfirmationstatus": "Confirmation Pending"}, Consent.PENDING),
        ({"hs_email_optout": "false", "hs_legal_basis": "Legitimate interest - prospect/lead"}, Consent.UNKNOWN),
        ({"hs_email_optout": None}, Consent.UNKNOWN),
    ],
)
def test_consent_mapping(props: dict[str, Any], consent: Consent) -> None:
    assert consent_of(props) is consent


def test_a_contact_becomes_a_person_with_properties_and_engagement() -> None:
    record = contact_record(
        contact(
            lifecyclestage="customer",
            country="DE",
            city="Köln",
            state="NRW",
            phone=None,
            mobilephone="+49 1",
            hs_email_open="12",
            hs_email_click="3",
            hs_email_first_open_date="2025-03-01T10:00:00Z",
            hs_email_last_open_date="2026-01-01T10:00:00Z",
            hs_email_last_click_date="2026-01-01T10:00:00Z",
            customer_tier="gold",
        ),
        custom=["customer_tier"],
    )
    assert record.object_type == "contact" and record.external_id == "1001"
    assert record.updated_at == datetime(2026, 1, 2, 3, 4, 5, 6000, tzinfo=UTC)
    person = record.person
    assert person is not None
    assert (person.email, person.first_name, person.phone) == ("Ann@Example.com", "Ann", "+49 1")
    assert person.properties == {
        "lifecycle_stage": "customer",
        "country": "DE",
        "city": "Köln",
        "region": "NRW",
        "email_open_count": 12,
        "email_click_count": 3,
        "customer_tier": "gold",
    }
    kinds = sorted((a.type, a.occurred_at.year) for a in record.activities)
    assert kinds == [("email_click", 2026), ("email_open", 2025), ("email_open", 2026)]
    assert {a.person_external_id for a in record.activities} == {"1001"}
    again = contact_record(contact(hs_email_last_open_date="2026-01-01T10:00:00Z"))
    assert again.activities[0].external_id in {a.external_id for a in record.activities}  # stable ids


def test_the_same_first_and_last_open_is_one_activity() -> None:
    record = contact_record(
        contact(hs_email_first_open_date="2026-01-01T10:00:00Z", hs_email_last_open_date="2026-01-01T10:00:00.000Z")
    )
    assert [a.type for a in record.activities] == [ActivityType.EMAIL_OPEN.value]


@pytest.mark.parametrize(
    "payload",
    [
        {"properties": {}},
        {"id": "", "properties": {}},
        {"id": "1", "properties": "nope"},
        contact(hs_email_open="lots"),
        contact(hs_email_last_open_date="last tuesday"),
        {**contact(), "updatedAt": "soon"},
    ],
)
def test_a_malformed_contact_is_skippable(payload: dict[str, Any]) -> None:
    with pytest.raises(SkippableRecordError):
        contact_record(payload)


def test_an_archived_contact_is_a_deleted_record() -> None:
    record = contact_record({**contact(), "archived": True, "archivedAt": "2026-02-01T00:00:00Z"})
    assert record.deleted and record.person is not None


# ----------------------------------------------------------------------------------------------- deals


def test_stage_outcomes_come_from_the_pipelines() -> None:
    book = StageBook.from_pipelines(PIPELINES)
    assert [book.outcome(s) for s in ("closedwon", "closedlost", "contractsent", "4711", None, "??")] == [
        "won",
        "lost",
        "open",
        "won",
        "open",
        "open",
    ]


def test_a_won_deal_carries_a_deal_won_activity_for_its_lowest_contact() -> None:
    book = StageBook.from_pipelines(PIPELINES)
    [record] = deal_records(deal("4711", deal_currency_code="CHF"), book, ["1010", "999"], currency="EUR")
    [won] = record.activities
    assert (won.type, won.amount, won.currency, won.person_external_id) == (
        "deal_won",
        Decimal("1200.50"),
        "CHF",
        "999",
    )
    assert won.occurred_at == datetime(2026, 5, 1, tzinfo=UTC)
    assert record.payload["associations"] == {"contacts": ["999", "1010"]}
    [fallback] = deal_records(deal("closedwon"), book, [], currency="EUR")
    assert fallback.activities[0].currency == "EUR" and fallback.activities[0].person_external_id is None


def test_a_deal_that_is_not_won_retracts_its_activity_only_on_incremental_runs() -> None:
    book = StageBook.from_pipelines(PIPELINES)
    assert [r.object_type for r in deal_records(deal("contractsent"), book, ["1"])] == ["deal"]
    deal_record, retract = deal_records(deal("closedlost"), book, ["1"], tombstone=True)
    assert deal_record.activities == ()
    assert retract.deleted and [a.type for a in retract.activities] == ["deal_won"]
    archived = deal_records({**deal("closedwon"), "archived": True}, book, ["1"], tombstone=True)
    assert len(archived) == 1 and archived[0].deleted and archived[0].activities


def test_a_deal_with_a_bad_amount_is_skippable() -> None:
    with pytest.raises(SkippableRecordError, match="amount"):
        deal_records(deal("closedwon", amount="a lot"), StageBook({}), [])


# ----------------------------------------------------------------------------------------------- paging helpers


@given(st.lists(st.from_regex(r"[a-z][a-z0-9_]{0,40}", fullmatch=True), max_size=300), st.integers(50, 500))
def test_property_groups_fit_the_budget_and_keep_every_name_once(names: list[str], budget: int) -> None:
    groups = split_properties(names, budget)
    assert [n for g in groups for n in g] == list(dict.fromkeys(names))
    assert all(len(",".join(g)) <= budget for g in groups)
    assert len(groups) >= 1


checkpoints = st.builds(
    Checkpoint,
    phase=st.sampled_from(["list", "search", "archived", "idle"]),
    cursor_ms=st.integers(0, 2**45),
    since_ms=st.none() | st.integers(0, 2**45),
    until_ms=st.none() | st.integers(0, 2**45),
    after=st.none() | st.text(min_size=1, max_size=12),
    last_id=st.integers(0, 2**40),
)


@given(checkpoints)
def test_a_checkpoint_survives_its_json_round_trip(point: Checkpoint) -> None:
    import json

    assert Checkpoint.load(json.loads(json.dumps(point.dump()))) == point


@pytest.mark.parametrize(
    "state", [None, {}, {"phase": "paused"}, {"phase": "search", "last_id": "x", "cursor_ms": 1}, {"phase": "idle"}]
)
def test_an_unusable_state_starts_over_with_a_listing(state: dict[str, Any] | None) -> None:
    assert Checkpoint.load(state) == Checkpoint()


# ----------------------------------------------------------------------------------------------- errors, pacing


def _response(status: int, body: dict[str, Any]) -> httpx.Response:
    return httpx.Response(status, json=body, request=httpx.Request("GET", "https://api.hubapi.com/crm/v3/objects/x"))


def test_a_missing_scope_is_named_in_the_config_error() -> None:
    body = {
        "category": "MISSING_SCOPES",
        "message": "This app hasn't been granted all required scopes",
        "errors": [{"message": "...", "context": {"requiredGranularScopes": ["crm.lists.write", "crm.lists.read"]}}],
    }
    assert missing_scopes(body) == ["crm.lists.write", "crm.lists.read"]
    error = hubspot_errors(_response(403, body))
    assert isinstance(error, ConfigError) and "crm.lists.write, crm.lists.read" in str(error)
    expired = hubspot_errors(_response(401, {"category": "EXPIRED_AUTHENTICATION", "message": "expired"}))
    assert isinstance(expired, ConfigError) and "EXPIRED_AUTHENTICATION" in str(expired)
    assert hubspot_errors(_response(429, {})) is None


def test_the_daily_budget_stops_at_the_reserve() -> None:
    budget = DailyBudget(reserve=10)
    budget.check()  # nothing known yet
    budget.observe({"X-HubSpot-RateLimit-Daily-Remaining": "11"})
    budget.check()
    budget.observe({"X-HubSpot-RateLimit-Daily-Remaining": "10"})
    with pytest.raises(TransientError) as raised:
        budget.check()
    assert raised.value.retry_after and raised.value.retry_after > 0


def test_the_pacer_has_a_burst_window_and_a_separate_search_limit() -> None:
    pacer = make_pacer(100)
    snapshot = pacer.snapshot()["buckets"]
    assert snapshot["burst"]["limit"] == 100 and snapshot["burst"]["window_s"] > 10.0
    assert snapshot["search"]["limit"] == 5 and 1.0 < snapshot["search"]["window_s"] < 1.1


# ----------------------------------------------------------------------------------------------- config


def test_exactly_one_credential_is_required() -> None:
    with pytest.raises(ValueError, match="exactly one"):
        HubSpotSourceConfig.model_validate({"type": "hubspot"})
    with pytest.raises(ValueError, match="secret reference"):
        HubSpotSourceConfig.model_validate({"type": "hubspot", "token": "pat-na1-pasted-secret"})
    with pytest.raises(ValueError, match="exactly one"):
        HubSpotDestinationConfig.model_validate(
            {
                "type": "hubspot",
                "token": "env:T",
                "oauth": {"client_id": "c", "client_secret": "env:S", "refresh_token": "env:R"},
            }
        )


def test_bad_property_names_and_durations_are_rejected() -> None:
    with pytest.raises(ValueError, match="internal property name"):
        HubSpotSourceConfig.model_validate({"type": "hubspot", "token": "env:T", "properties": ["Customer Tier"]})
    with pytest.raises(ValueError, match="duration"):
        HubSpotSourceConfig.model_validate({"type": "hubspot", "token": "env:T", "lookback": "a while"})
