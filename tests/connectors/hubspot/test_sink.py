"""The sink against the emulator: tags land on the emulated contacts, per-record failures are mapped, values
others set survive, and no changes cost no calls; in both modes (property and lists)."""

from __future__ import annotations

import pytest

from connectors.hubspot.emulator_crm import CONTACT_ID_BASE
from connectors.hubspot.sink import split_tags
from hub.contracts import Outcome, TagChange, TagOp
from hub.errors import ConfigError

from .conftest import HubSpotRig

PROPERTY = "hub_segments"


def contact_ids(rig: HubSpotRig, count: int) -> list[int]:
    return sorted(o.id for o in rig.emulator.account.contacts.live())[:count]


def add(tag: str, remote_id: int | str, person: int = 1) -> TagChange:
    return TagChange(TagOp.ADD, tag, person, None, str(remote_id))


def remove(tag: str, remote_id: int | str, person: int = 1) -> TagChange:
    return TagChange(TagOp.REMOVE, tag, person, None, str(remote_id))


def value(rig: HubSpotRig, contact_id: int) -> frozenset[str]:
    return split_tags(rig.emulator.account.contacts.rows[contact_id].properties.get(PROPERTY))


# ----------------------------------------------------------------------------------------------- property mode


def test_tags_appear_on_the_contacts_and_the_property_is_created_with_its_options(rig: HubSpotRig) -> None:
    sink = rig.sink()
    ids = contact_ids(rig, 150)
    sink.ensure_tags(["hub:vip", "hub:lapsed"])
    definition = rig.emulator.account.contacts.definitions[PROPERTY]
    assert (definition["type"], definition["fieldType"]) == ("enumeration", "checkbox")
    assert {o["value"] for o in definition["options"]} == {"hub:vip", "hub:lapsed"}
    results = sink.apply([add("hub:vip", i) for i in ids] + [add("hub:lapsed", ids[0])])
    assert {r.outcome for r in results} == {Outcome.ACKNOWLEDGED} and len(results) == 151
    assert value(rig, ids[0]) == {"hub:vip", "hub:lapsed"}
    assert all(value(rig, i) == {"hub:vip"} for i in ids[1:])
    endpoints = rig.stats()["endpoints"]
    assert endpoints["POST /crm/v3/objects/contacts/batch/update"] == 2  # 150 contacts, 100 per call
    assert endpoints["POST /crm/v3/objects/contacts/batch/read"] == 2


def test_no_changes_cost_no_calls_and_repeating_a_push_writes_nothing(rig: HubSpotRig) -> None:
    sink = rig.sink()
    ids = contact_ids(rig, 20)
    sink.apply([add("hub:vip", i) for i in ids])
    before = rig.calls()
    assert sink.apply([]) == []
    sink.ensure_tags([])
    assert rig.calls() == before  # nothing sent
    again = sink.apply([add("hub:vip", i) for i in ids])
    assert {r.outcome for r in again} == {Outcome.ACKNOWLEDGED}
    assert "POST /crm/v3/objects/contacts/batch/update" not in _since(rig, before)  # only the read


def _since(rig: HubSpotRig, before: int) -> list[str]:
    return [
        f"{r.method} {rig.emulator.endpoint_name(r).split(' ', 1)[1]}"  # type: ignore[union-attr]
        for r, _ in rig.exchanges[before:]
        if not r.url.path.startswith("/_sandbox")
    ]


def test_values_and_options_set_by_others_survive(rig: HubSpotRig) -> None:
    sink = rig.sink()
    target = contact_ids(rig, 1)[0]
    sink.ensure_tags(["hub:vip"])
    # Someone adds their own option and value to the same property.
    options = rig.emulator.account.contacts.definitions[PROPERTY]["options"]
    options.append({"label": "Partner", "value": "partner:gold", "hidden": False, "displayOrder": 9})
    rig.emulator.update("contacts", target, {PROPERTY: "partner:gold"})
    sink = rig.sink()  # a later run: the options are read again
    sink.ensure_tags(["hub:new"])
    options = rig.emulator.account.contacts.definitions[PROPERTY]["options"]
    assert {o["value"] for o in options} == {"partner:gold", "hub:vip", "hub:new"}
    sink.apply([add("hub:vip", target), add("hub:new", target)])
    assert value(rig, target) == {"partner:gold", "hub:vip", "hub:new"}
    sink.apply([remove("hub:vip", target)])
    assert value(rig, target) == {"partner:gold", "hub:new"}


def test_a_207_maps_the_failed_records_and_acknowledges_the_rest(rig: HubSpotRig) -> None:
    sink = rig.sink()
    ids = contact_ids(rig, 3)
    rig.emulator.archive("contacts", ids[1])
    missing = CONTACT_ID_BASE + 999_999
    results = sink.apply([add("hub:vip", i) for i in ids] + [add("hub:vip", missing)])
    by_id = {r.change.remote_id: r for r in results}
    assert by_id[str(ids[0])].outcome is Outcome.ACKNOWLEDGED
    assert by_id[str(ids[2])].outcome is Outcome.ACKNOWLEDGED
    assert by_id[str(ids[1])].outcome is Outcome.SKIPPED and "OBJECT_NOT_FOUND" in str(by_id[str(ids[1])].reason)
    assert by_id[str(missing)].outcome is Outcome.SKIPPED


def test_a_write_racing_an_archive_gets_its_207_mapped_per_record(rig: HubSpotRig) -> None:
    sink = rig.sink()
    ids = contact_ids(rig, 4)
    sink.ensure_tags(["hub:vip"])
    original = rig.emulator._batch_update

    def archive_then_update(request, groups):  # type: ignore[no-untyped-def]
        rig.emulator.archive("contacts", ids[2])  # deleted between the read and the write
        return original(request, groups)

    rig.emulator._batch_update = archive_then_update  # type: ignore[method-assign]
    results = sink.apply([add("hub:vip", i) for i in ids])
    outcomes = {r.change.remote_id: r.outcome for r in results}
    assert outcomes.pop(str(ids[2])) is Outcome.SKIPPED
    assert set(outcomes.values()) == {Outcome.ACKNOWLEDGED}
    assert 207 in {resp.status_code for _, resp in rig.exchanges}


def test_one_invalid_value_is_isolated_by_halving_the_batch(rig: HubSpotRig) -> None:
    sink = rig.sink()
    ids = contact_ids(rig, 8)
    sink.ensure_tags(["hub:vip", "hub:gone"])
    # The option disappears after the sink cached it: HubSpot refuses the whole batch holding it (400).
    options = rig.emulator.account.contacts.definitions[PROPERTY]["options"]
    options[:] = [o for o in options if o["value"] != "hub:gone"]
    results = sink.apply([add("hub:vip", i) for i in ids[:7]] + [add("hub:gone", ids[7])])
    outcomes = {r.change.remote_id: r.outcome for r in results}
    assert outcomes.pop(str(ids[7])) is Outcome.SKIPPED
    assert set(outcomes.values()) == {Outcome.ACKNOWLEDGED}
    assert all(value(rig, i) == {"hub:vip"} for i in ids[:7])


def test_transient_failures_are_retry_results_not_exceptions(rig: HubSpotRig) -> None:
    sink = rig.sink()
    ids = contact_ids(rig, 5)
    sink.ensure_tags(["hub:vip"])
    rig.sandbox.inject({"kind": "5xx", "status": 502, "count": None, "path": "/crm/v3/objects/contacts/batch/update"})
    results = sink.apply([add("hub:vip", i) for i in ids])
    assert {r.outcome for r in results} == {Outcome.RETRY}
    rig.sandbox.clear_faults()


def test_lookup_finds_contacts_by_email_despite_case_and_whitespace(rig: HubSpotRig) -> None:
    sink = rig.sink()
    people = rig.emulator.ctx.business.people_in("hubspot")
    odd = next(p for p in people if p.email_in("hubspot") != p.email and _same(p.email_in("hubspot"), p.email))
    plain = [p for p in people if p.email_in("hubspot") == p.email][:3]
    wanted = [odd.email, *(p.email for p in plain), "nobody@nowhere.example"]
    found = sink.lookup(wanted)
    assert set(found) == set(wanted[:-1])
    assert found[odd.email].remote_id == str(CONTACT_ID_BASE + odd.key)


def _same(seen: str | None, email: str) -> bool:
    return (seen or "").strip().lower() == email


def test_changes_without_an_id_are_looked_up_by_email(rig: HubSpotRig) -> None:
    sink = rig.sink()
    person = next(p for p in rig.emulator.ctx.business.people_in("hubspot") if _same(p.email_in("hubspot"), p.email))
    results = sink.apply(
        [TagChange(TagOp.ADD, "hub:vip", 1, person.email), TagChange(TagOp.ADD, "hub:vip", 2, "x@nowhere.example")]
    )
    outcomes = [r.outcome for r in sorted(results, key=lambda r: r.change.person_id)]
    assert outcomes == [Outcome.ACKNOWLEDGED, Outcome.SKIPPED]
    assert value(rig, CONTACT_ID_BASE + person.key) == {"hub:vip"}


def test_read_tags_returns_every_contact_holding_a_hub_tag(rig: HubSpotRig) -> None:
    sink = rig.sink()
    ids = contact_ids(rig, 250)
    sink.apply([add("hub:vip", i) for i in ids[:230]] + [add("hub:lapsed", i) for i in ids[200:]])
    held = {c.remote_id: c.tags for c in sink.read_tags("hub:")}
    assert len(held) == 250  # two search pages
    assert held[str(ids[210])] == {"hub:vip", "hub:lapsed"}
    assert held[str(ids[240])] == {"hub:lapsed"}


def test_an_existing_property_of_another_kind_is_a_config_error(rig: HubSpotRig) -> None:
    with pytest.raises(ConfigError, match="not a multiple checkbox"):
        rig.sink(property="city").ensure_tags(["hub:vip"])


def test_missing_write_scope_is_a_config_error(rig_factory) -> None:  # type: ignore[no-untyped-def]
    rig = rig_factory(tokens={"pat-na1-sandbox-0000": {"crm.objects.contacts.read", "crm.schemas.contacts.read"}})
    with pytest.raises(ConfigError, match=r"crm\.schemas\.contacts\.write"):
        rig.sink().ensure_tags(["hub:vip"])


# ----------------------------------------------------------------------------------------------- lists mode


def test_lists_mode_creates_manual_lists_and_writes_memberships(rig: HubSpotRig) -> None:
    sink = rig.sink(mode="lists")
    ids = contact_ids(rig, 120)
    sink.ensure_tags(["hub:vip"])
    results = sink.apply([add("hub:vip", i) for i in ids] + [add("hub:vip", CONTACT_ID_BASE + 999_999)])
    assert sum(r.outcome is Outcome.ACKNOWLEDGED for r in results) == 120
    assert [r.reason for r in results if r.outcome is Outcome.SKIPPED] == ["no such HubSpot contact"]
    created = next(x for x in rig.emulator.account.lists.values() if x.name == "hub:vip")
    assert created.processing_type == "MANUAL" and set(created.members) == set(ids)
    sink.apply([remove("hub:vip", i) for i in ids[:20]])
    assert set(created.members) == set(ids[20:])
    held = {c.remote_id: c.tags for c in rig.sink(mode="lists").read_tags("hub:")}
    assert set(held) == {str(i) for i in ids[20:]} and held[str(ids[50])] == {"hub:vip"}
    found = rig.sink(mode="lists").lookup([p.email for p in rig.emulator.ctx.business.people_in("hubspot")[:5]])
    assert all(c.tags in (frozenset(), frozenset({"hub:vip"})) for c in found.values())
    before = rig.calls()
    assert sink.apply([]) == []
    assert rig.calls() == before


def test_an_active_list_with_the_tag_name_is_not_written(rig: HubSpotRig) -> None:
    rig.emulator.add_list("hub:vip", "DYNAMIC")
    results = rig.sink(mode="lists").apply([add("hub:vip", contact_ids(rig, 1)[0])])
    assert results[0].outcome is Outcome.SKIPPED and "DYNAMIC" in str(results[0].reason)
