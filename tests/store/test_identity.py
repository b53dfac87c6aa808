"""Pure identity rules: email normalisation, consent strictness, the person view, the resolver."""

from __future__ import annotations

import random
import string

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hub.contracts import Consent
from hub.store.identity import (
    CONSENT_STRICTNESS,
    Claim,
    Profile,
    Resolver,
    normalize_email,
    person_view,
    strictest_consent,
)

local_part = st.text(alphabet=string.ascii_letters + string.digits + "._+-", min_size=1, max_size=12)
domain = st.from_regex(r"[A-Za-z0-9-]{1,10}(\.[A-Za-z]{2,4}){1,2}", fullmatch=True)
emails = st.builds(lambda a, b: f"{a}@{b}", local_part, domain)
padding = st.text(alphabet=" \t\n\u00a0\u200b", max_size=3)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("  Ann.Lee@Example.COM ", "ann.lee@example.com"),
        ("ann+shop@example.com", "ann+shop@example.com"),  # +tags are kept: they are real addresses elsewhere
        ("Ann Lee <ANN@example.com>", "ann@example.com"),
        ("mailto:ann@example.com", "ann@example.com"),
        ("\ufeffann@example.com.", "ann@example.com"),
        ("", None),
        (None, None),
        ("not an email", None),
        ("a@b@c", None),
        ("@example.com", None),
        ("ann@", None),
        ("ann lee@example.com", None),
    ],
)
def test_normalize_email_examples(raw: str | None, expected: str | None) -> None:
    assert normalize_email(raw) == expected


@given(emails, padding, padding)
def test_normalize_ignores_case_and_surrounding_space(email: str, left: str, right: str) -> None:
    expected = email.lower()
    assert normalize_email(f"{left}{email}{right}") == expected
    assert normalize_email(email.upper()) == expected
    assert normalize_email(email.swapcase()) == expected


@given(st.text(max_size=40))
def test_normalize_is_idempotent_and_canonical(raw: str) -> None:
    once = normalize_email(raw)
    if once is None:
        return
    assert normalize_email(once) == once
    assert once == once.strip().lower()
    assert once.count("@") == 1
    assert not any(ch.isspace() for ch in once)


def test_consent_strictness_order() -> None:
    assert strictest_consent([]) == "unknown"
    assert strictest_consent(["granted", "unknown"]) == "granted"
    assert strictest_consent(["granted", "pending"]) == "pending"
    assert strictest_consent(["granted", "denied", "undeliverable"]) == "undeliverable"
    assert strictest_consent(["objected", "undeliverable"]) == "objected"
    assert CONSENT_STRICTNESS[0] is Consent.OBJECTED and CONSENT_STRICTNESS[-1] is Consent.UNKNOWN


profiles = st.builds(
    Profile,
    source=st.sampled_from(["crm", "shop", "mail"]),
    external_id=st.one_of(st.none(), st.text(alphabet="0123456789", min_size=1, max_size=3)),
    email=st.one_of(st.none(), emails.map(str.lower)),
    first_name=st.one_of(st.none(), st.sampled_from(["Ann", "Bo", ""])),
    last_name=st.one_of(st.none(), st.sampled_from(["Lee", "Ng"])),
    phone=st.none(),
    consent=st.sampled_from([c.value for c in Consent]),
    seen=st.booleans(),
    deleted=st.booleans(),
    properties=st.one_of(
        st.none(),
        st.dictionaries(st.sampled_from(["country", "city", "lifecycle_stage"]), st.sampled_from(["", "DE", "x"])),
    ),
)


@given(st.lists(profiles, max_size=6), st.randoms())
def test_person_view_ignores_profile_order(items: list[Profile], rnd: random.Random) -> None:
    shuffled = list(items)
    rnd.shuffle(shuffled)
    assert person_view(items) == person_view(shuffled)


def test_person_view_rules() -> None:
    view = person_view([
        Profile("shop", "1", "a@x.com", first_name=None, last_name="Lee", consent="granted"),
        Profile("crm", "9", "a@x.com", first_name="Ann", last_name="Lee-Old", consent="denied", deleted=True),
        Profile("mail", None, "other@x.com", consent="unknown", seen=False),
    ])
    # Live profiles first (shop), then deleted ones (crm): names fill from the first that has one.
    assert (view.first_name, view.last_name) == ("Ann", "Lee")
    assert view.consent == "denied"
    assert not view.deleted  # one live profile remains
    assert person_view([Profile("shop", "1", None, deleted=True), Profile("x", None, "e@x", seen=False)]).deleted
    assert not person_view([Profile("mail", None, "e@x.com", seen=False)]).deleted


def test_person_properties_merge_live_profiles_first_value_wins() -> None:
    view = person_view([
        Profile("shop", "1", "a@x.com", properties={"country": "DE", "city": ""}),
        Profile("crm", "9", "a@x.com", properties={"country": "FR", "city": "Lyon", "lifecycle_stage": "customer"}),
        Profile("mail", "m", "a@x.com", deleted=True, properties={"tier": "gold"}),
    ])
    # crm sorts before shop; an empty value never hides another source's; a deleted profile contributes nothing.
    assert view.properties == {"country": "FR", "city": "Lyon", "lifecycle_stage": "customer"}
    assert person_view([Profile("shop", "1", "a@x.com", properties={"city": ""})]).properties is None


# ---------------------------------------------------------------------------------------------- resolver


def test_resolver_merges_stored_people_into_lowest_id_with_reason() -> None:
    r = Resolver()
    r.load(7, "shop", "123", "x@y.com")
    r.load(3, "crm", "456", None)
    person = r.resolve(Claim("crm", "456", "x@y.com"))
    assert person == 3
    assert [(m.winner, m.loser) for m in r.merges] == [(3, 7)]
    assert r.merges[0].reason == "same email x@y.com from crm:456 and shop:123"


def test_resolver_explicit_link_reason() -> None:
    r = Resolver()
    r.load(2, "shop", "123", None)
    r.load(5, "crm", "456", None)
    assert r.resolve(Claim("crm", "456", None, links=(("shop", "123"),))) == 2
    assert r.merges[0].reason == "explicit link crm:456 -> shop:123"


def test_resolver_new_people_are_created_once_and_merged_without_log() -> None:
    r = Resolver()
    a = r.resolve(Claim("shop", "1", "a@x.com"))
    b = r.resolve(Claim("crm", "9", "b@x.com"))
    c = r.resolve(Claim("mail", "m", "a@x.com", links=(("crm", "9"),)))
    assert a < 0 and b < 0 and r.find(b) == r.find(c) == a
    assert r.new_people == [a] and r.merges == []


def _partition(claims: list[Claim]) -> set[frozenset[tuple[str, str | None]]]:
    r = Resolver()
    refs = [r.resolve(c) for c in claims]
    groups: dict[int, set[tuple[str, str | None]]] = {}
    for claim, ref in zip(claims, refs, strict=True):
        groups.setdefault(r.find(ref), set()).add((claim.source, claim.external_id))
    return {frozenset(g) for g in groups.values()}


claims = st.lists(
    st.builds(
        Claim,
        source=st.sampled_from(["crm", "shop"]),
        external_id=st.text(alphabet="0123456789", min_size=1, max_size=2),
        email=st.one_of(st.none(), st.sampled_from(["a@x.com", "b@x.com", "c@x.com"])),
        links=st.lists(st.tuples(st.sampled_from(["crm", "shop"]), st.sampled_from(["1", "2", "3"])),
                       max_size=1).map(tuple),
    ),
    max_size=12,
    unique_by=lambda c: (c.source, c.external_id),
)


@settings(max_examples=300)
@given(claims, st.randoms())
def test_resolver_partition_ignores_claim_order(items: list[Claim], rnd: random.Random) -> None:
    shuffled = list(items)
    rnd.shuffle(shuffled)
    assert _partition(items) == _partition(shuffled)
