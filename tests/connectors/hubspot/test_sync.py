"""End-to-end syncs into a real store (SQLite and PostgreSQL) through ``hub.sync.sync_source``, against the
emulator in-process: first sync, incremental after mutations, deletions, crash and resume, faults, auth."""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from connectors.hubspot import CONNECTOR
from connectors.hubspot.config import HubSpotSourceConfig
from connectors.hubspot.emulator_crm import CONTACT_ID_BASE
from hub.contracts import Consent, Page
from hub.errors import ConfigError
from hub.sandbox.business import Business
from hub.store import Store, open_store
from hub.store import models as m
from hub.sync import sync_source

from ...support import Crash, crash_after
from .conftest import BASE_URL, OAUTH_ENTRY, HubSpotRig


def live_contacts(rig: HubSpotRig) -> int:
    return len(rig.emulator.account.contacts.live())


def raw_ids(store: Store, object_type: str) -> list[str]:
    with store.engine.connect() as conn:
        rows = conn.execute(
            sa.select(m.raw_record.c.external_id).where(m.raw_record.c.object_type == object_type)
        ).all()
    return [r[0] for r in rows]


def list_calls(rig: HubSpotRig, start: int = 0) -> list[dict[str, str]]:
    return [
        dict(req.url.params)
        for req, _ in rig.exchanges[start:]
        if req.method == "GET" and req.url.path == "/crm/v3/objects/contacts"
    ]


# ----------------------------------------------------------------------------------------------- first sync


def test_first_sync_pulls_every_contact_and_deal_with_one_request_per_page(store: Store, rig: HubSpotRig) -> None:
    source = rig.source()
    result = sync_source(store, source, "hubspot")
    contacts = live_contacts(rig)
    deals = len(rig.emulator.account.deals.rows)
    streams = result.as_dict()["streams"]
    assert streams["contacts"]["records"] == contacts
    assert streams["deals"]["records"] == deals
    assert result.status == "ok"
    endpoints = rig.stats()["endpoints"]
    deal_pages = math.ceil(deals / 100)
    assert endpoints["GET /crm/v3/objects/contacts"] == math.ceil(contacts / 100)
    assert endpoints["GET /crm/v3/objects/deals"] == deal_pages
    assert endpoints["POST /crm/v4/associations/deals/contacts/batch/read"] == deal_pages
    assert endpoints["GET /crm/v3/pipelines/deals"] == 1
    assert rig.stats()["rate_limited"] == 0
    summary = store.summary()
    assert summary.people == contacts
    won = sum(1 for d in rig.emulator.account.deals.rows.values() if d.properties["dealstage"] == "closedwon")
    assert summary.activities["deal_won"] == won
    assert store.get_state("crm", "contacts")["phase"] == "idle"


def test_contact_fields_consent_and_won_deals_land_on_the_person(store: Store, rig: HubSpotRig) -> None:
    sync_source(store, rig.source(), "hubspot")
    business = rig.emulator.ctx.business
    contacts = set(raw_ids(store, "contact"))
    deal = next(d for d in business.deals if d.stage == "won" and str(CONTACT_ID_BASE + d.person) in contacts)
    person = business.person(deal.person)
    with store.engine.connect() as conn:
        identity = (
            conn.execute(sa.select(m.identity).where(m.identity.c.external_id == str(CONTACT_ID_BASE + person.key)))
            .mappings()
            .one()
        )
        amount = conn.execute(
            sa.select(m.activity.c.amount, m.activity.c.currency, m.activity.c.person_id).where(
                m.activity.c.type == "deal_won", m.activity.c.external_id == str(20_000_000 + deal.key)
            )
        ).one()
    assert identity["first_name"] == person.first_name
    assert (
        identity["consent"]
        == {
            "subscribed": Consent.GRANTED,
            "unsubscribed": Consent.DENIED,
            "cleaned": Consent.UNDELIVERABLE,
            "pending": Consent.PENDING,
            "not_subscribed": Consent.UNKNOWN,
        }[person.email_consent].value
    )
    assert amount.amount == deal.amount and amount.currency == "EUR"
    assert amount.person_id == identity["person_id"]
    props = identity["properties"]
    assert props["lifecycle_stage"] == person.lifecycle_stage and props["country"] == person.country


# ----------------------------------------------------------------------------------------------- incremental


def test_incremental_sync_reads_only_changes_and_marks_archived_records_deleted(store: Store, rig: HubSpotRig) -> None:
    source = rig.source()
    sync_source(store, source, "hubspot")
    full_calls = rig.calls()
    rig.time.advance(60)
    mutated = rig.sandbox.mutate(0.05, 0.01, seed=3)
    rig.time.advance(60)
    before = rig.calls()
    result = sync_source(store, rig.source(), "hubspot")
    streams = result.as_dict()["streams"]
    assert streams["contacts"]["records"] == mutated["contacts_changed"] + mutated["contacts_deleted"]
    assert streams["contacts"]["records_deleted"] == mutated["contacts_deleted"]
    assert streams["contacts"]["records_new"] == 0
    incremental = rig.calls() - before
    assert incremental <= 8 < full_calls
    gone = [str(o.id) for o in rig.emulator.account.contacts.rows.values() if o.archived]
    with store.engine.connect() as conn:
        deleted = (
            conn.execute(sa.select(m.identity.c.external_id).where(m.identity.c.deleted.is_(True))).scalars().all()
        )
    assert sorted(deleted) == sorted(gone)
    assert store.summary().deleted_people == len(gone)


def test_a_deal_leaving_closed_won_stops_counting_as_revenue(store: Store, rig: HubSpotRig) -> None:
    sync_source(store, rig.source(), "hubspot")
    won = next(d for d in rig.emulator.account.deals.rows.values() if d.properties["dealstage"] == "closedwon")
    rig.time.advance(30)
    rig.emulator.update("deals", won.id, {"dealstage": "contractsent"})
    rig.time.advance(30)
    sync_source(store, rig.source(), "hubspot")
    with store.engine.connect() as conn:
        deleted = conn.execute(
            sa.select(m.activity.c.deleted).where(m.activity.c.external_id == str(won.id))
        ).scalar_one()
    assert deleted is True


def test_search_lag_is_covered_by_the_lookback_window(store: Store, rig_factory: Callable[..., HubSpotRig]) -> None:
    rig = rig_factory(search_lag_s=30.0)
    sync_source(store, rig.source(lookback="5m"), "hubspot")
    target = min(o.id for o in rig.emulator.account.contacts.live())
    rig.time.advance(10)
    rig.emulator.update("contacts", target, {"city": "Lagos"})
    rig.time.advance(1)  # the index has not caught up: this run cannot see the change
    first = sync_source(store, rig.source(lookback="5m"), "hubspot")
    assert first.as_dict()["streams"]["contacts"]["records"] == 0
    rig.time.advance(60)  # indexed now; the next window starts 5 minutes before the last run's end
    second = sync_source(store, rig.source(lookback="5m"), "hubspot")
    assert second.as_dict()["streams"]["contacts"]["records"] == 1


@pytest.mark.slow
def test_more_than_10000_contacts_with_one_timestamp_complete(tmp_path: Path, rig_factory: Any) -> None:
    # The month-end bulk update: more contacts share one lastmodifieddate than one search query can page
    # through. Restarting at that timestamp would loop forever; keying on hs_object_id completes.
    rig = rig_factory(business=Business.generate(15_000, seed=11), speed=1000.0)
    store = open_store(f"sqlite:///{tmp_path / 'hub.db'}")
    try:
        # Synced an hour ago (an idle checkpoint), without listing 10,000 contacts first.
        synced = int((rig.time.now.timestamp() - 3600) * 1000)
        store.commit_page("crm", "hubspot", "contacts", Page(records=[], state={"phase": "idle", "cursor_ms": synced}))
        ids = rig.emulator.touch(10_500)
        rig.time.advance(60)
        result = sync_source(store, rig.source(streams=["contacts"], detect_deleted=False), "hubspot")
        assert result.as_dict()["streams"]["contacts"]["records"] == 10_500
        assert sorted(map(int, raw_ids(store, "contact"))) == ids  # every one, each exactly once
        searches = rig.stats()["endpoints"]["POST /crm/v3/objects/contacts/search"]
        assert searches == math.ceil(10_500 / 200)
        assert store.get_state("crm", "contacts")["phase"] == "idle"
    finally:
        store.close()


def test_long_property_lists_are_split_between_the_listing_and_batch_reads(store: Store, rig: HubSpotRig) -> None:
    many = [f"custom_property_{i:04d}" for i in range(600)]  # about 12,000 characters of names
    rig.emulator.account.contacts.definitions.update(
        {n: {**rig.emulator.account.contacts.definitions["city"], "name": n, "hubspotDefined": False} for n in many}
    )
    target = min(o.id for o in rig.emulator.account.contacts.live())
    rig.emulator.account.contacts.rows[target].properties["custom_property_0599"] = "deep"
    result = sync_source(store, rig.source(streams=["contacts"], properties=many), "hubspot")
    assert rig.stats()["statuses"].get("414") is None
    endpoints = rig.stats()["endpoints"]
    pages = endpoints["GET /crm/v3/objects/contacts"]
    assert endpoints["POST /crm/v3/objects/contacts/batch/read"] == pages * 3  # three more groups per page
    assert result.status == "ok"
    with store.engine.connect() as conn:
        props = (
            conn.execute(m.identity.select().where(m.identity.c.external_id == str(target)))
            .mappings()
            .one()["properties"]
        )
    assert props["custom_property_0599"] == "deep"


# ----------------------------------------------------------------------------------------------- crash and resume


def test_a_crash_after_page_k_resumes_at_page_k_plus_1(store: Store, rig: HubSpotRig) -> None:
    with pytest.raises(Crash):
        sync_source(store, rig.source(streams=["contacts"]), "hubspot", progress=crash_after(3))
    state = store.get_state("crm", "contacts")
    assert state["phase"] == "list"
    committed = raw_ids(store, "contact")
    assert len(committed) == 300
    mark = len(rig.exchanges)
    result = sync_source(store, rig.source(streams=["contacts"]), "hubspot")
    resumed = list_calls(rig, mark)
    assert resumed[0]["after"] == state["after"]  # page 4 is the first one asked for
    assert result.as_dict()["streams"]["contacts"]["records_unchanged"] == 0  # nothing read twice
    assert sorted(raw_ids(store, "contact")) == sorted(str(o.id) for o in rig.emulator.account.contacts.live())


def test_a_crash_inside_an_incremental_search_resumes_past_the_last_id(
    store: Store, rig_factory: Callable[..., HubSpotRig]
) -> None:
    rig = rig_factory()
    sync_source(store, rig.source(streams=["contacts"]), "hubspot")
    rig.time.advance(30)
    changed = rig.emulator.touch(450)  # three search pages (every contact of the small business)
    assert len(changed) > 400
    rig.time.advance(30)
    with pytest.raises(Crash):
        sync_source(store, rig.source(streams=["contacts"]), "hubspot", progress=crash_after(1))
    state = store.get_state("crm", "contacts")
    assert state["phase"] == "search" and state["last_id"] == changed[199]
    mark = len(rig.exchanges)
    result = sync_source(store, rig.source(streams=["contacts"]), "hubspot")
    first = next(r for r, _ in rig.exchanges[mark:] if r.url.path.endswith("/search"))
    assert f'"value":"{changed[199]}"' in first.content.decode().replace(" ", "")
    assert result.as_dict()["streams"]["contacts"]["records"] == len(changed) - 200


# ----------------------------------------------------------------------------------------------- faults and auth


def test_429_and_5xx_faults_are_survived(store: Store, rig: HubSpotRig) -> None:
    rig.sandbox.inject({"kind": "429", "count": 2, "retry_after": 0.01, "path": "/crm/v3/objects/contacts"})
    rig.sandbox.inject({"kind": "5xx", "status": 503, "skip": 2, "count": 2})
    rig.sandbox.inject({"kind": "truncated", "path": "/crm/v3/objects/deals"})
    result = sync_source(store, rig.source(), "hubspot")
    assert result.status == "ok"
    assert result.as_dict()["streams"]["contacts"]["records"] == live_contacts(rig)
    injected = rig.stats()["faults_injected"]
    assert injected == {"429": 2, "5xx": 2, "truncated": 1}


def test_bad_token_is_a_config_error_and_nothing_is_stored(store: Store, rig: HubSpotRig) -> None:
    with pytest.raises(ConfigError, match="rejected the access token"):
        sync_source(store, rig.source(token="env:HUBSPOT_BAD_TOKEN"), "hubspot")
    assert store.get_state("crm", "contacts") is None


def test_missing_scope_is_named(store: Store, rig_factory: Callable[..., HubSpotRig]) -> None:
    rig = rig_factory(tokens={"pat-na1-sandbox-0000": {"crm.objects.contacts.read"}})
    with pytest.raises(ConfigError, match=r"lacks the scope\(s\) crm\.objects\.deals\.read"):
        sync_source(store, rig.source(), "hubspot")
    assert store.get_state("crm", "contacts")["phase"] == "idle"  # the contacts stream finished first


def test_oauth_refreshes_and_survives_expired_tokens(store: Store, rig_factory: Callable[..., HubSpotRig]) -> None:
    rig = rig_factory(speed=1.0)  # uncompressed: 30-minute tokens
    source = rig.source(**OAUTH_ENTRY)
    pages = [0]

    def expire_midway(stream: str, page: Any, stats: Any) -> None:
        pages[0] += 1
        if pages[0] == 2:
            rig.sandbox.inject({"kind": "token_expiry"})

    result = sync_source(store, source, "hubspot", progress=expire_midway)
    assert result.status == "ok"
    endpoints = rig.stats()["endpoints"]
    assert endpoints["POST /oauth/v1/token"] == 2  # the first token, then one refresh after the expiry
    assert rig.stats()["statuses"]["401"] == 1


def test_oauth_tokens_are_refreshed_ahead_of_expiry(store: Store, rig_factory: Callable[..., HubSpotRig]) -> None:
    rig = rig_factory(speed=1.0)
    source = rig.source(**OAUTH_ENTRY, streams=["contacts"])
    pages = [0]

    def near_expiry(stream: str, page: Any, stats: Any) -> None:
        pages[0] += 1
        if pages[0] == 2:
            rig.time.advance(1_800 - 60)  # a minute before the 30-minute token dies: inside the margin

    result = sync_source(store, source, "hubspot", progress=near_expiry)
    assert result.status == "ok"
    assert rig.stats()["endpoints"]["POST /oauth/v1/token"] == 2  # refreshed before it was refused
    assert rig.stats()["statuses"].get("401") is None


def test_a_rejected_refresh_token_is_a_config_error(store: Store, rig: HubSpotRig) -> None:
    entry = {**OAUTH_ENTRY, "oauth": {**OAUTH_ENTRY["oauth"], "refresh_token": "env:HUBSPOT_BAD_REFRESH"}}
    with pytest.raises(ConfigError, match="refresh token"):
        sync_source(store, rig.source(**entry), "hubspot")


def test_bad_records_are_skipped_and_counted(store: Store, rig: HubSpotRig) -> None:
    target = min(o.id for o in rig.emulator.account.contacts.live())
    rig.emulator.account.contacts.rows[target].properties["hs_email_open"] = "lots"
    result = sync_source(store, rig.source(), "hubspot")
    assert result.status == "ok_with_skips"
    assert result.as_dict()["streams"]["contacts"]["skipped"] == 1
    assert any(str(target) in e and "hs_email_open" in e for e in result.errors)
    assert str(target) not in raw_ids(store, "contact")


def test_the_registered_connector_builds_a_working_source(store: Store, rig: HubSpotRig) -> None:
    config = HubSpotSourceConfig.model_validate(
        {"type": "hubspot", "base_url": BASE_URL, "token": "env:HUBSPOT_TOKEN", "streams": ["deals"]}
    )
    assert CONNECTOR.build_source is not None
    source = CONNECTOR.build_source(config, "crm", rig.ctx)
    try:
        source.check()
        result = sync_source(store, source, "hubspot")
    finally:
        source.close()
    assert result.as_dict()["streams"]["deals"]["records"] == len(rig.emulator.account.deals.rows)
