"""HubSpot's official Python SDK (``hubspot-api-client``) against the emulator, served over real HTTP.

``HubSpot(access_token=..., host=...)`` hands every keyword to the ``Configuration`` of each API package, so
``host`` points every API (contacts, companies, associations v4, owners, ...) at the local server. The SDK
validates what it deserialises (required fields, enumerations), so a missing or mistyped field fails here.
Every exchange is recorded on the server side and contract-checked, requests included, against HubSpot's
official specs when the test ends (when the specs are present).
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from urllib3.util.retry import Retry

from connectors.hubspot.emulator import _ROUTES, SANDBOX_TOKEN, HubSpotEmulator
from connectors.hubspot.emulator_crm import ASSOCIATION_TYPES, CONTACT_ID_BASE, CrmObject
from hub.sandbox.business import Business
from hub.sandbox.emulator import EmulatorContext, SandboxClock
from hub.sandbox.server import SandboxServers
from tests.connectors.sandboxed import RecordingSandbox

from ...support import FakeTime
from .contract import check_exchanges, spec_for, specs_present

hubspot = pytest.importorskip("hubspot")
from hubspot import HubSpot  # noqa: E402
from hubspot.crm.associations.v4 import AssociationSpec, BatchInputPublicFetchAssociationsBatchRequest  # noqa: E402
from hubspot.crm.companies.exceptions import ApiException as CompaniesApiException  # noqa: E402
from hubspot.crm.contacts import (  # noqa: E402
    BatchInputSimplePublicObjectBatchInput,
    BatchInputSimplePublicObjectBatchInputForCreate,
    BatchInputSimplePublicObjectBatchInputUpsert,
    BatchInputSimplePublicObjectId,
    BatchReadInputSimplePublicObjectId,
    PublicObjectSearchRequest,
    SimplePublicObjectInput,
    SimplePublicObjectInputForCreate,
)
from hubspot.crm.contacts.exceptions import ApiException  # noqa: E402

# Generous enough that only the rate-limit test meets the burst window.
UNLIMITED = 1_000_000


@dataclass
class Served:
    """The emulator behind a sandbox served on localhost, and the official SDK pointed at it."""

    sandbox: RecordingSandbox
    base_url: str
    time: FakeTime

    @property
    def emulator(self) -> HubSpotEmulator:
        emulator = self.sandbox.emulator
        assert isinstance(emulator, HubSpotEmulator)
        return emulator

    def sdk(self, token: str = SANDBOX_TOKEN) -> Any:
        return HubSpot(access_token=token, host=self.base_url)

    def http(self, token: str = SANDBOX_TOKEN) -> httpx.Client:
        """A plain client, for the documented paths the SDK does not call."""
        return httpx.Client(base_url=self.base_url, headers={"Authorization": f"Bearer {token}"})


@pytest.fixture
def serve(business: Business) -> Iterator[Callable[..., Served]]:
    """Start servers on demand; their exchanges are contract-checked when the test ends (if the specs exist)."""
    started: list[tuple[SandboxServers, Served]] = []

    def start(*, speed: float = 50.0, burst_limit: int = UNLIMITED, **emulator: Any) -> Served:
        time = FakeTime()
        clock = SandboxClock(speed=speed, time_fn=time)
        emulator.setdefault("search_lag_s", 0.0)
        hub = HubSpotEmulator(EmulatorContext.create(business, clock=clock), burst_limit=burst_limit, **emulator)
        sandbox = RecordingSandbox(hub)
        servers = SandboxServers({"hubspot": sandbox})
        servers.__enter__()
        served = Served(sandbox, servers.base_urls["hubspot"], time)
        started.append((servers, served))
        return served

    yield start
    for servers, _ in started:
        servers.__exit__(None, None, None)
    if specs_present():
        for _, served in started:
            check_exchanges(served.sandbox.exchanges)


@pytest.fixture
def served(serve: Callable[..., Served]) -> Served:
    return serve()


def live(served: Served, object_type: str) -> list[CrmObject]:
    return sorted(served.emulator.account.tables()[object_type].live(), key=lambda o: o.id)


def millis(at: datetime) -> datetime:
    """A time as HubSpot serialises it (milliseconds)."""
    return at.replace(microsecond=at.microsecond // 1000 * 1000)


def employed(served: Served) -> CrmObject:
    """The first contact with a (primary) company."""
    links = served.emulator.account.associations
    return next(o for o in live(served, "contacts") if links.targets("contacts", o.id, "companies"))


def companies_of(served: Served, contact_id: int) -> list[str]:
    return [str(t) for t, _ in served.emulator.account.associations.targets("contacts", contact_id, "companies")]


# ---------------------------------------------------------------------- contacts: basic, search, batch


def test_contacts_get_page_and_get_all_return_the_records_the_emulator_holds(served: Served) -> None:
    client = served.sdk()
    first = client.crm.contacts.basic_api.get_page(limit=5, properties=["email", "firstname", "city"])
    expected = live(served, "contacts")
    assert [r.id for r in first.results] == [str(o.id) for o in expected[:5]]
    for record, obj in zip(first.results, expected, strict=False):
        assert record.properties == {n: obj.properties.get(n) for n in ("email", "firstname", "city")}
        assert record.created_at == millis(obj.created_at) and record.archived is False
    second = client.crm.contacts.basic_api.get_page(limit=5, after=first.paging.next.after)
    assert [r.id for r in second.results] == [str(o.id) for o in expected[5:10]]
    everyone = client.crm.contacts.get_all(properties=["email"])  # the SDK's own paging helper
    assert [r.id for r in everyone] == [str(o.id) for o in expected]


def test_get_by_id_by_record_id_and_by_email_with_associations(served: Served) -> None:
    client = served.sdk()
    contact = employed(served)
    record = client.crm.contacts.basic_api.get_by_id(
        str(contact.id), properties=["email", "company"], associations=["companies", "deals"]
    )
    assert record.properties == {"email": contact.properties["email"], "company": contact.properties["company"]}
    linked = record.associations["companies"].results
    assert sorted({a.id for a in linked}) == companies_of(served, contact.id)
    assert {a.type for a in linked} == {"contact_to_company", "contact_to_company_unlabeled"}  # primary + unlabeled
    email = str(contact.properties["email"])
    by_email = client.crm.contacts.basic_api.get_by_id(email.upper(), id_property="email", properties=["email"])
    assert by_email.id == str(contact.id) and by_email.properties["email"] == email
    history = client.crm.contacts.basic_api.get_by_id(str(contact.id), properties_with_history=["city"])
    assert [v.value for v in history.properties_with_history["city"]] == [contact.properties["city"]]


def test_create_update_search_archive_round_trip(serve: Callable[..., Served]) -> None:
    served = serve(search_lag_s=5.0)
    client = served.sdk()
    company = live(served, "companies")[0]
    created = client.crm.contacts.basic_api.create(
        SimplePublicObjectInputForCreate(
            properties={"email": "new.person@example.org", "firstname": "Nina", "lifecyclestage": "lead"},
            associations=[
                {
                    "to": {"id": str(company.id)},
                    "types": [{"associationCategory": "HUBSPOT_DEFINED", "associationTypeId": 1}],
                }
            ],
        )
    )
    held = served.emulator.account.contacts.rows[int(created.id)]
    assert held.properties["firstname"] == "Nina" and created.properties["email"] == "new.person@example.org"
    assert companies_of(served, held.id) == [str(company.id)]
    back = client.crm.companies.basic_api.get_by_id(str(company.id), associations=["contacts"])
    assert created.id in {a.id for a in back.associations["contacts"].results}
    updated = client.crm.contacts.basic_api.update(created.id, SimplePublicObjectInput(properties={"city": "Graz"}))
    assert updated.properties["city"] == "Graz" == held.properties["city"]
    query = PublicObjectSearchRequest(
        filter_groups=[{"filters": [{"propertyName": "email", "operator": "EQ", "value": "new.person@example.org"}]}],
        properties=["email", "city"],
    )
    assert client.crm.contacts.search_api.do_search(query).total == 0  # the index lags behind the write
    served.time.advance(6)
    found = client.crm.contacts.search_api.do_search(query)
    assert found.total == 1 and found.results[0].properties == {"email": "new.person@example.org", "city": "Graz"}
    client.crm.contacts.basic_api.archive(created.id)
    with pytest.raises(ApiException) as missing:
        client.crm.contacts.basic_api.get_by_id(created.id)
    assert missing.value.status == 404 and json.loads(missing.value.body)["category"] == "OBJECT_NOT_FOUND"
    archived = client.crm.contacts.basic_api.get_page(archived=True)
    assert [r.id for r in archived.results] == [created.id] and archived.results[0].archived is True
    assert client.crm.contacts.search_api.do_search(query).total == 0


def test_a_second_contact_with_the_same_email_is_a_409_conflict(served: Served) -> None:
    contact = live(served, "contacts")[0]
    with pytest.raises(ApiException) as conflict:
        served.sdk().crm.contacts.basic_api.create(
            SimplePublicObjectInputForCreate(properties={"email": str(contact.properties["email"]).upper()})
        )
    body = json.loads(conflict.value.body)
    assert conflict.value.status == 409 and body["category"] == "CONFLICT"
    assert body["message"] == f"Contact already exists. Existing ID: {contact.id}"


def test_search_filters_sorts_and_query(served: Served) -> None:
    client = served.sdk()
    request = PublicObjectSearchRequest(
        filter_groups=[{"filters": [{"propertyName": "hs_email_open", "operator": "GTE", "value": "2"}]}],
        sorts=[{"propertyName": "hs_email_open", "direction": "DESCENDING"}],
        properties=["hs_email_open"],
        limit=20,
    )
    page = client.crm.contacts.search_api.do_search(request)
    opens = [int(r.properties["hs_email_open"]) for r in page.results]
    assert opens == sorted(opens, reverse=True) and min(opens) >= 2
    assert page.total == sum(1 for o in live(served, "contacts") if int(o.properties["hs_email_open"] or 0) >= 2)
    company = live(served, "companies")[0]
    by_name = client.crm.companies.search_api.do_search(
        {"query": str(company.properties["name"]), "properties": ["name", "domain"]}
    )
    assert {r.id for r in by_name.results} == {
        str(o.id)
        for o in live(served, "companies")
        if str(company.properties["name"]).lower() in str(o.properties["name"]).lower()
    }


def test_batch_read_update_create_upsert_and_archive(served: Served) -> None:
    client = served.sdk()
    first, second = live(served, "contacts")[:2]
    read = client.crm.contacts.batch_api.read(
        BatchReadInputSimplePublicObjectId(
            inputs=[{"id": str(first.id)}, {"id": "1"}], properties=["email"], properties_with_history=[]
        )
    )
    assert [r.properties["email"] for r in read.results] == [first.properties["email"]]
    assert read.num_errors == 1 and read.errors[0].context["ids"] == ["1"]  # a 207: the missing id named
    client.crm.contacts.batch_api.update(
        BatchInputSimplePublicObjectBatchInput(
            inputs=[
                {"id": str(first.id), "properties": {"city": "Linz"}},
                {"id": str(second.properties["email"]), "idProperty": "email", "properties": {"city": "Bern"}},
            ]
        )
    )
    assert (first.properties["city"], second.properties["city"]) == ("Linz", "Bern")
    made = client.crm.contacts.batch_api.create(
        BatchInputSimplePublicObjectBatchInputForCreate(
            inputs=[{"properties": {"email": f"batch{i}@example.org", "firstname": f"B{i}"}} for i in range(2)]
        )
    )
    assert sorted(r.properties["email"] for r in made.results) == ["batch0@example.org", "batch1@example.org"]
    upserted = client.crm.contacts.batch_api.upsert(
        BatchInputSimplePublicObjectBatchInputUpsert(
            inputs=[
                {"id": "batch0@example.org", "idProperty": "email", "properties": {"lastname": "Known"}},
                {"id": "fresh@example.org", "idProperty": "email", "properties": {"lastname": "Fresh"}},
            ]
        )
    )
    new = {r.properties["email"]: r.new for r in upserted.results}
    assert new == {"batch0@example.org": False, "fresh@example.org": True}
    ids = [r.id for r in made.results]
    client.crm.contacts.batch_api.archive(BatchInputSimplePublicObjectId(inputs=[{"id": i} for i in ids]))
    assert all(served.emulator.account.contacts.rows[int(i)].archived for i in ids)


# ---------------------------------------------------------------------- companies, deals, generic objects


def test_companies_are_the_employers_of_their_contacts(served: Served) -> None:
    client = served.sdk()
    page = client.crm.companies.basic_api.get_page(limit=100, properties=["name", "domain", "industry"])
    assert [r.id for r in page.results] == [str(o.id) for o in live(served, "companies")]
    assert len(page.results) > 5
    for record in page.results[:5]:
        company = client.crm.companies.basic_api.get_by_id(record.id, associations=["contacts"])
        staff = {a.id for a in company.associations["contacts"].results}
        assert staff
        for contact_id in staff:
            contact = served.emulator.account.contacts.rows[int(contact_id)]
            assert contact.properties["company"] == record.properties["name"]
        domains = {
            served.emulator.ctx.business.person(int(i) - CONTACT_ID_BASE).email.rsplit("@", 1)[1] for i in staff
        }  # the canonical address of a B2B person is at the company's domain
        assert domains == {record.properties["domain"]}


def test_deals_with_their_contact_and_its_company(served: Served) -> None:
    client = served.sdk()
    page = client.crm.deals.basic_api.get_page(
        limit=50, associations=["contacts", "companies"], properties=["dealname"]
    )
    assert [r.id for r in page.results] == [str(o.id) for o in live(served, "deals")[:50]]
    for deal in page.results:
        (contact,) = {a.id for a in deal.associations["contacts"].results}
        companies = (
            {a.id for a in deal.associations["companies"].results} if "companies" in deal.associations else set()
        )
        assert companies == set(companies_of(served, int(contact)))  # the deal's company is its contact's


def test_the_generic_objects_api_takes_object_type_ids(served: Served) -> None:
    client = served.sdk()
    by_id = client.crm.objects.basic_api.get_page("0-2", limit=3, properties=["name"])
    by_name = client.crm.companies.basic_api.get_page(limit=3, properties=["name"])
    assert [(r.id, r.properties) for r in by_id.results] == [(r.id, r.properties) for r in by_name.results]
    deal = live(served, "deals")[0]
    read = client.crm.objects.basic_api.get_by_id("0-3", str(deal.id), properties=["amount"])
    assert read.properties["amount"] == deal.properties["amount"]


# ---------------------------------------------------------------------- associations v4


def test_v4_associations_read_create_and_archive(served: Served) -> None:
    client = served.sdk()
    contact = employed(served)
    (company_id,) = companies_of(served, contact.id)
    page = client.crm.associations.v4.basic_api.get_page("contacts", str(contact.id), "companies")
    (target,) = page.results
    assert target.to_object_id == company_id
    assert [(t.type_id, t.label) for t in target.association_types] == [(1, "Primary"), (279, None)]
    other = next(o for o in live(served, "companies") if str(o.id) != company_id)
    labeled = client.crm.associations.v4.basic_api.create(
        "contacts",
        str(contact.id),
        "companies",
        str(other.id),
        [AssociationSpec(association_category="HUBSPOT_DEFINED", association_type_id=1)],
    )
    assert labeled.labels == ["Primary"] and labeled.to_object_id == str(other.id)
    types = {
        int(t): set(k) for t, k in served.emulator.account.associations.targets("contacts", contact.id, "companies")
    }
    assert types == {int(company_id): {279}, other.id: {1, 279}}  # the new primary replaced the old one
    batch = client.crm.associations.v4.batch_api.get_page(
        "contacts", "companies", BatchInputPublicFetchAssociationsBatchRequest(inputs=[{"id": str(contact.id)}])
    )
    assert sorted(t.to_object_id for t in batch.results[0].to) == sorted([company_id, str(other.id)])
    client.crm.associations.v4.basic_api.archive("contacts", str(contact.id), "companies", str(other.id))
    assert companies_of(served, contact.id) == [company_id]
    default = client.crm.associations.v4.basic_api.create_default(
        "deals", str(live(served, "deals")[0].id), "companies", company_id
    )
    assert default.results[0].association_spec.association_type_id == 341  # deal to company, unlabeled
    labels = client.crm.associations.v4.schema.definitions_api.get_all("contacts", "companies")
    assert {(x.type_id, x.label) for x in labels.results} == {
        (t.type_id, t.label)
        for t in ASSOCIATION_TYPES.values()
        if (t.from_type, t.to_type) == ("contacts", "companies")
    }


def test_the_older_v3_batch_read_names_each_association_type(served: Served) -> None:
    contact = employed(served)
    (company_id,) = companies_of(served, contact.id)
    answer = served.sdk().crm.associations.batch_api.read(
        "contacts", "companies", {"inputs": [{"id": str(contact.id)}, {"id": "1"}]}
    )
    assert [(a.id, a.type) for a in answer.results[0].to] == [
        (company_id, "contact_to_company"),
        (company_id, "contact_to_company_unlabeled"),
    ]
    assert answer.num_errors == 1 and answer.errors[0].context["ids"] == ["1"]


# ---------------------------------------------------------------------- properties, schemas, owners


def test_properties_groups_schemas_and_owners(served: Served) -> None:
    client = served.sdk()
    account = served.emulator.account
    contact_props = client.crm.properties.core_api.get_all("contacts")
    assert {p.name for p in contact_props.results} == set(account.contacts.definitions)
    industry = client.crm.properties.core_api.get_by_name("companies", "industry")
    assert [o.value for o in industry.options] == [
        o["value"] for o in account.companies.definitions["industry"]["options"]
    ]
    groups = client.crm.properties.groups_api.get_all("deals")
    assert [g.name for g in groups.results] == ["dealinformation"]
    assert client.crm.schemas.core_api.get_all().results == []  # no custom objects in the account
    owners = client.crm.owners.owners_api.get_page(limit=2)
    assert [o.email for o in owners.results] == [o["email"] for o in account.owners[:2]]
    rest = client.crm.owners.owners_api.get_page(limit=2, after=owners.paging.next.after)
    assert [o.id for o in rest.results] == [o["id"] for o in account.owners[2:]]
    owner = account.owners[0]
    by_user = client.crm.owners.owners_api.get_by_id(owner["userId"], id_property="userId")
    assert by_user.id == owner["id"] and by_user.teams[0].name == "Sales"
    deal = client.crm.deals.basic_api.get_by_id(str(live(served, "deals")[0].id), properties=["hubspot_owner_id"])
    assert deal.properties["hubspot_owner_id"] in {o["id"] for o in account.owners}


# ---------------------------------------------------------------------- errors and limits


def test_errors_the_sdk_surfaces(serve: Callable[..., Served]) -> None:
    served = serve(tokens={"pat-na1-contacts-only": {"crm.objects.contacts.read"}})
    with pytest.raises(ApiException) as missing:
        served.sdk("pat-na1-contacts-only").crm.contacts.basic_api.get_by_id("999999999")
    assert missing.value.status == 404
    with pytest.raises(ApiException) as unknown:
        served.sdk("pat-na1-nobody").crm.contacts.basic_api.get_page()
    assert unknown.value.status == 401 and json.loads(unknown.value.body)["category"] == "INVALID_AUTHENTICATION"
    with pytest.raises(CompaniesApiException) as forbidden:
        served.sdk("pat-na1-contacts-only").crm.companies.basic_api.get_page()
    body = json.loads(forbidden.value.body)
    assert forbidden.value.status == 403 and body["category"] == "MISSING_SCOPES"
    assert body["errors"][0]["context"]["requiredGranularScopes"] == ["crm.objects.companies.read"]


def test_the_burst_window_surfaces_as_429_with_retry_after(serve: Callable[..., Served]) -> None:
    served = serve(speed=1.0, burst_limit=3)
    # Without retries: urllib3's default Retry would honour Retry-After and try again (see the next test).
    client = HubSpot(access_token=SANDBOX_TOKEN, host=served.base_url, retry=Retry(0, respect_retry_after_header=False))
    api = client.crm.contacts.basic_api
    answers = [api.get_page_with_http_info(limit=1) for _ in range(3)]
    assert [a[2]["X-HubSpot-RateLimit-Remaining"] for a in answers] == ["2", "1", "0"]
    with pytest.raises(ApiException) as limited:
        api.get_page(limit=1)
    assert limited.value.status == 429 and limited.value.headers["Retry-After"] in {str(s) for s in range(1, 11)}
    assert json.loads(limited.value.body)["policyName"] == "TEN_SECONDLY_ROLLING"


def test_the_sdk_waits_out_a_429_by_its_retry_after(serve: Callable[..., Served]) -> None:
    # Speed 20: the 10-second window lasts half a real second; Retry-After (whole seconds) says 1.
    served = serve(speed=20.0, burst_limit=2)
    api = served.sdk().crm.contacts.basic_api  # the SDK's default: urllib3's Retry, honouring Retry-After
    pages = [api.get_page(limit=1).results[0].id for _ in range(3)]
    assert pages == [str(live(served, "contacts")[0].id)] * 3
    statuses = [a.status_code for _, a in served.sandbox.exchanges]
    assert statuses == [200, 200, 429, 200]
    assert served.sandbox.exchanges[2][1].headers["Retry-After"] == "1"


# ---------------------------------------------------------------------- statistics


def test_stats_name_concrete_resources(served: Served) -> None:
    client = served.sdk()
    client.crm.contacts.basic_api.get_page(limit=1)
    client.crm.contacts.basic_api.get_page(limit=1)
    client.crm.deals.basic_api.get_page(limit=1)
    client.crm.objects.basic_api.get_page("0-1", limit=1)
    contact = live(served, "contacts")[0]
    client.crm.contacts.basic_api.get_by_id(str(contact.id))
    client.crm.associations.v4.basic_api.get_page("contacts", str(contact.id), "companies")
    endpoints = served.sandbox.stats()["endpoints"]
    assert endpoints["GET /crm/v3/objects/contacts"] == 2
    assert endpoints["GET /crm/v3/objects/deals"] == 1
    assert endpoints["GET /crm/v3/objects/0-1"] == 1
    assert endpoints["GET /crm/v3/objects/contacts/{id}"] == 1
    assert endpoints["GET /crm/v4/objects/contacts/{id}/associations/companies"] == 1
    named = [served.emulator.resource_name(r) for r, _ in served.sandbox.exchanges]
    assert named == ["contacts", "contacts", "deals", "contacts", "contacts", "associations"]
    resources = served.sandbox.stats().get("resources")
    if resources is not None:  # the sandbox counts by resource once it knows the hook
        assert resources["contacts"]["requests"] == 4 and resources["deals"]["requests"] == 1


# ---------------------------------------------------------------------- every route


def test_every_route_is_served_and_contract_checked(served: Served) -> None:
    """One call per route (the SDK where it has the call, plain HTTP for the rest), all answered 2xx."""
    client = served.sdk()
    contact, deal = employed(served), live(served, "deals")[0]
    (company,) = companies_of(served, contact.id)
    crm = client.crm
    crm.contacts.basic_api.get_page(limit=1)
    crm.contacts.basic_api.get_by_id(str(contact.id))
    made = crm.companies.basic_api.create(SimplePublicObjectInputForCreate(properties={"name": "Neu AG"}))
    crm.companies.basic_api.update(made.id, SimplePublicObjectInput(properties={"domain": "neu-ag.example"}))
    crm.companies.basic_api.archive(made.id)
    crm.contacts.search_api.do_search(PublicObjectSearchRequest(limit=1))
    crm.deals.batch_api.read(
        BatchReadInputSimplePublicObjectId(inputs=[{"id": str(deal.id)}], properties=[], properties_with_history=[])
    )
    batch_made = crm.deals.batch_api.create({"inputs": [{"properties": {"dealname": "New deal"}}]})
    crm.deals.batch_api.update({"inputs": [{"id": batch_made.results[0].id, "properties": {"amount": "10"}}]})
    crm.deals.batch_api.upsert({"inputs": [{"id": batch_made.results[0].id, "properties": {"amount": "11"}}]})
    crm.deals.batch_api.archive({"inputs": [{"id": batch_made.results[0].id}]})
    crm.properties.core_api.get_all("companies")
    crm.properties.core_api.create(
        "companies",
        {"name": "tier", "label": "Tier", "type": "string", "fieldType": "text", "groupName": "companyinformation"},
    )
    crm.properties.core_api.get_by_name("companies", "tier")
    crm.properties.core_api.update("companies", "tier", {"label": "Company tier"})
    crm.properties.groups_api.get_all("companies")
    crm.properties.groups_api.get_by_name("companies", "companyinformation")
    crm.pipelines.pipelines_api.get_all("deals")
    v4 = crm.associations.v4
    v4.basic_api.get_page("contacts", str(contact.id), "deals")
    v4.basic_api.create(
        "deals",
        str(deal.id),
        "companies",
        company,
        [{"associationCategory": "HUBSPOT_DEFINED", "associationTypeId": 5}],
    )
    v4.basic_api.create_default("contacts", str(contact.id), "deals", str(deal.id))
    v4.basic_api.archive("contacts", str(contact.id), "deals", str(deal.id))
    v4.batch_api.get_page("deals", "contacts", {"inputs": [{"id": str(deal.id)}]})
    v4.batch_api.create(
        "contacts",
        "deals",
        {
            "inputs": [
                {
                    "from": {"id": str(contact.id)},
                    "to": {"id": str(deal.id)},
                    "types": [{"associationCategory": "HUBSPOT_DEFINED", "associationTypeId": 4}],
                }
            ]
        },
    )
    v4.batch_api.create_default(
        "contacts", "deals", {"inputs": [{"from": {"id": str(contact.id)}, "to": {"id": str(deal.id)}}]}
    )
    v4.batch_api.archive(
        "contacts", "deals", {"inputs": [{"from": {"id": str(contact.id)}, "to": [{"id": str(deal.id)}]}]}
    )
    v4.schema.definitions_api.get_all("deals", "companies")
    crm.associations.batch_api.read("contacts", "companies", {"inputs": [{"id": str(contact.id)}]})  # v3
    crm.owners.owners_api.get_page()
    crm.owners.owners_api.get_by_id(int(served.emulator.account.owners[0]["id"]))
    crm.schemas.core_api.get_all()
    with pytest.raises(hubspot.crm.schemas.ApiException):
        crm.schemas.core_api.get_by_id("p_widgets")
    with served.http() as http:
        for path in (
            "/crm/v3/schemas",
            "/crm/associations/v4/contacts/companies/labels",
        ):
            assert http.get(path).status_code == 200
        assert http.get("/crm/v3/schemas/p_widgets").status_code == 404
        assert (
            http.post(
                "/oauth/v1/token",
                data={
                    "grant_type": "refresh_token",
                    "client_id": "sandbox-client",
                    "client_secret": "sandbox-client-secret",
                    "refresh_token": "sandbox-refresh-token",
                },
            ).status_code
            == 200
        )
        listed = http.post(
            "/crm/v3/lists", json={"name": "tour", "objectTypeId": "0-1", "processingType": "MANUAL"}
        ).json()["list"]
        http.get("/crm/v3/lists/object-type-id/0-1/name/tour")
        http.put(
            f"/crm/v3/lists/{listed['listId']}/memberships/add-and-remove",
            json={"recordIdsToAdd": [str(contact.id)], "recordIdsToRemove": []},
        )
        http.get(f"/crm/v3/lists/{listed['listId']}/memberships")
        http.post("/crm/v3/lists/search", json={"query": "tour", "offset": 0, "additionalProperties": []})
        http.post(
            "/crm/v3/lists/records/memberships/batch/read",
            json={"inputs": [{"objectTypeId": "0-1", "recordId": str(contact.id)}]},
        )
    exchanges = served.sandbox.exchanges
    used = {served.emulator.route_name(r) for r, _ in exchanges}
    assert used == {route.name for route in _ROUTES}
    failed = [
        (r.method, r.url.path, a.status_code)
        for r, a in exchanges
        if a.status_code >= 400 and "p_widgets" not in r.url.path
    ]
    assert failed == []
    unchecked = {served.emulator.route_name(r) for r, _ in exchanges if spec_for(r.url.path) is None}
    assert unchecked == {
        "POST /crm/v3/associations/{fromObjectType}/{toObjectType}/batch/read",
        "GET /crm/v3/schemas",
        "GET /crm/v3/schemas/{objectType}",
        "GET /crm-object-schemas/v3/schemas",
        "GET /crm-object-schemas/v3/schemas/{objectType}",
    }


# ---------------------------------------------------------------------- properties that hold for any input


@pytest.fixture(scope="module")
def small_business() -> Business:
    return Business.generate(150, seed=3)


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(limit=st.integers(1, 100), archived_share=st.floats(0.0, 0.5), seed=st.integers(0, 2**16))
def test_paging_returns_every_live_record_exactly_once(
    small_business: Business, limit: int, archived_share: float, seed: int
) -> None:
    # In-process (no server): many pages per example. Every page has one shape, so the first (with paging) and
    # the last (without) of each object type are contract-checked, which keeps an example fast.
    hub = HubSpotEmulator(EmulatorContext.create(small_business, speed=50), burst_limit=UNLIMITED, search_lag_s=0)
    hub.mutate(0.0, archived_share, random.Random(seed))
    handler = RecordingSandbox(hub)
    checked: list[tuple[httpx.Request, httpx.Response]] = []
    with httpx.Client(transport=httpx.MockTransport(handler), base_url="http://hubspot.sandbox") as http:
        http.headers["Authorization"] = f"Bearer {SANDBOX_TOKEN}"
        for object_type in ("contacts", "companies", "deals"):
            seen: list[str] = []
            params: dict[str, Any] = {"limit": limit}
            first = len(handler.exchanges)
            while True:
                body = http.get(f"/crm/v3/objects/{object_type}", params=params).json()
                assert len(body["results"]) <= limit
                seen.extend(r["id"] for r in body["results"])
                if "paging" not in body:
                    break
                params["after"] = body["paging"]["next"]["after"]
            expected = [str(o.id) for o in sorted(hub.account.tables()[object_type].live(), key=lambda o: o.id)]
            assert seen == expected
            checked.extend(dict.fromkeys([handler.exchanges[first], handler.exchanges[-1]]))
    if specs_present():
        check_exchanges(checked)


_TEXT = st.text(st.characters(codec="utf-8", exclude_categories=["Cs", "Cc"]), min_size=1, max_size=40)


@pytest.fixture(scope="module")
def long_served(small_business: Business) -> Iterator[Served]:
    time = FakeTime()
    hub = HubSpotEmulator(
        EmulatorContext.create(small_business, clock=SandboxClock(speed=50, time_fn=time)),
        burst_limit=UNLIMITED,
        search_lag_s=0,
    )
    sandbox = RecordingSandbox(hub)
    with SandboxServers({"hubspot": sandbox}) as servers:
        yield Served(sandbox, servers.base_urls["hubspot"], time)
    if specs_present():
        check_exchanges(sandbox.exchanges)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    firstname=_TEXT,
    city=_TEXT,
    stage=st.sampled_from(["subscriber", "lead", "customer"]),
    points=st.integers(0, 10**9),
    tier=st.none() | st.sampled_from(["bronze", "silver", "gold"]),
)
def test_create_then_read_by_id_round_trips_the_properties(
    long_served: Served, firstname: str, city: str, stage: str, points: int, tier: str | None
) -> None:
    client = long_served.sdk()
    sent = {"firstname": firstname, "city": city, "lifecyclestage": stage, "loyalty_points": str(points)}
    if tier is not None:
        sent["customer_tier"] = tier
    email = f"p{len(long_served.emulator.account.contacts.rows)}@roundtrip.example"
    created = client.crm.contacts.basic_api.create(
        SimplePublicObjectInputForCreate(properties={**sent, "email": email})
    )
    names = [*sent, "email", "customer_tier"]
    read = client.crm.contacts.basic_api.get_by_id(created.id, properties=names)
    assert read.properties == {**sent, "email": email, "customer_tier": tier}
    assert read.created_at - created.created_at == timedelta(0)
