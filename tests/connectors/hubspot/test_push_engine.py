"""The real push engine (``hub.push.service.push_destination``) driving the HubSpot sink against the emulator.

People come from a real sync of the emulated account, so their record ids address the contacts without
lookups; segment memberships are written as an evaluation leaves them. Calls are counted by the sandbox.
"""

from __future__ import annotations

import math
from typing import Any

import pytest
import sqlalchemy as sa

from connectors.hubspot.config import HubSpotDestinationConfig
from connectors.hubspot.emulator_crm import property_definition
from connectors.hubspot.sink import HubSpotSink, split_tags
from hub.config.models import PushConfig
from hub.push.plan import Targeting, targeting_for
from hub.push.run import PushResult
from hub.push.service import PushOptions, push_destination
from hub.store import Store
from hub.store import models as m
from hub.sync import sync_source

from ...support import set_members
from .conftest import BASE_URL, HubSpotRig

DESTINATION = "hubspot-tags"
SEGMENT = "vip"
TAG = "hub:vip"
PROPERTY = "hub_segments"
CONFIG = PushConfig()


def synced_people(store: Store, rig: HubSpotRig) -> dict[int, int]:
    """Person id -> HubSpot contact id, after a contacts sync of the emulated account."""
    sync_source(store, rig.source(streams=["contacts"]), "hubspot")
    i = m.identity
    with store.engine.connect() as conn:
        rows = conn.execute(sa.select(i.c.person_id, i.c.external_id).where(i.c.source == "crm")).all()
    return {int(p): int(e) for p, e in rows}


def destination(rig: HubSpotRig, mode: str) -> tuple[HubSpotSink, Targeting]:
    entry: dict[str, Any] = {
        "type": "hubspot",
        "base_url": BASE_URL,
        "token": "env:HUBSPOT_TOKEN",
        "mode": mode,
        "segments": [SEGMENT],
        "source": "crm",
    }
    config = HubSpotDestinationConfig.model_validate(entry)
    sink = HubSpotSink(config, DESTINATION, rig.ctx)
    rig.built.append(sink)
    return sink, targeting_for(DESTINATION, config, {SEGMENT: SEGMENT}, {})


def push(store: Store, rig: HubSpotRig, mode: str) -> tuple[PushResult, int]:
    """One push through the engine with a freshly built sink (a new run); the calls it cost."""
    sink, targeting = destination(rig, mode)
    before = rig.calls()
    _, result = push_destination(store, targeting, sink, CONFIG, ["crm"], PushOptions())
    return result, rig.calls() - before


def property_values(rig: HubSpotRig) -> dict[int, frozenset[str]]:
    rows = rig.emulator.account.contacts.rows
    return {i: v for i, o in rows.items() if (v := split_tags(o.properties.get(PROPERTY)))}


def list_members(rig: HubSpotRig) -> set[int]:
    lists = [x for x in rig.emulator.account.lists.values() if x.name == TAG]
    assert len(lists) == 1 and lists[0].processing_type == "MANUAL"
    return set(lists[0].members)


@pytest.mark.parametrize("mode", ["property", "lists"])
def test_tags_appear_repeats_cost_nothing_and_only_leavers_lose_them(store: Store, rig: HubSpotRig, mode: str) -> None:
    people = synced_people(store, rig)
    members = sorted(people)[:250]
    set_members(store, SEGMENT, members)

    first, calls = push(store, rig, mode)
    assert first.added == 250 and not (first.failed or first.retry)
    wanted = {people[p] for p in members}
    if mode == "property":
        assert property_values(rig) == {c: frozenset({TAG}) for c in wanted}
        # reconcile (the property is not there yet), find + create it, then a read and a write per 100
        assert calls == 1 + 2 + 2 * math.ceil(250 / 100)
    else:
        assert list_members(rig) == wanted
        # reconcile (no hub lists yet), find + create the list, then one membership write per 100
        assert calls == 1 + 2 + math.ceil(250 / 100)

    again, calls = push(store, rig, mode)
    assert calls == 0 and again.added == again.removed == 0

    leaving = members[:40]
    set_members(store, SEGMENT, members[40:])
    after, calls = push(store, rig, mode)
    assert after.removed == 40 and after.added == 0
    kept = {people[p] for p in members[40:]}
    if mode == "property":
        assert set(property_values(rig)) == kept
        assert calls == 2 * math.ceil(40 / 100)
    else:
        assert list_members(rig) == kept
        assert calls == 1 + math.ceil(40 / 100)  # the list is found by name, then one write
    assert not {people[p] for p in leaving} & (set(property_values(rig)) | _all_list_members(rig))


def _all_list_members(rig: HubSpotRig) -> set[int]:
    return {c for x in rig.emulator.account.lists.values() for c in x.members}


def test_values_others_set_on_the_property_survive_the_engines_pushes(store: Store, rig: HubSpotRig) -> None:
    people = synced_people(store, rig)
    members = sorted(people)[:30]
    contacts = rig.emulator.account.contacts
    definition = property_definition(PROPERTY, "Segments", "enumeration", "checkbox", False)
    definition["options"] = [{"label": "Partner", "value": "partner", "displayOrder": 0, "hidden": False}]
    contacts.definitions[PROPERTY] = definition
    someone = people[members[0]]
    rig.emulator.update("contacts", someone, {PROPERTY: "partner"})
    set_members(store, SEGMENT, members)

    push(store, rig, "property")
    assert property_values(rig)[someone] == {"partner", TAG}
    options = {o["value"] for o in contacts.definitions[PROPERTY]["options"]}
    assert options == {"partner", TAG}  # the option was added, the existing one kept

    set_members(store, SEGMENT, members[1:])
    result, _ = push(store, rig, "property")
    assert result.removed == 1
    assert property_values(rig)[someone] == {"partner"}  # the hub's value went, the other one stayed


def test_a_lost_ledger_reconciles_from_hubspot_without_resending(store: Store, rig: HubSpotRig) -> None:
    people = synced_people(store, rig)
    members = sorted(people)[:120]
    set_members(store, SEGMENT, members)
    push(store, rig, "lists")
    with store.engine.begin() as conn:  # a new machine: the ledger and the reconcile runs are gone
        conn.execute(sa.delete(m.push_ledger))
        conn.execute(sa.delete(m.run).where(m.run.c.kind == "reconcile"))
    result, _ = push(store, rig, "lists")
    assert result.added == 0 and not (result.failed or result.retry)
    writes = [r for r, _ in rig.exchanges if r.url.path.endswith("/memberships/add-and-remove")]
    assert len(writes) == math.ceil(120 / 100)  # only the first push wrote
    assert list_members(rig) == {people[p] for p in members}
