"""The page writer's bulk path: rows stored exactly as SQLAlchemy Core would store them (on both backends, in
small pages and in pages large enough for PostgreSQL's COPY), content hashes that never change, person ids as
the database would give them, and merge reasons that do not depend on the physical order of rows."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import pytest
import sqlalchemy as sa

from hub.contracts import ActivityData, Consent, Page, PersonData, Record
from hub.store import Store
from hub.store import models as m
from hub.store.bulk import COPY_MIN_ROWS
from hub.store.repo import content_hash

BERLIN = timezone(timedelta(hours=2))


def _contact(external_id: str, email: str | None, **person: Any) -> Record:
    data = PersonData(email=email, **person)
    return Record("contact", external_id, {"id": external_id, "email": email}, person=data)


def _order(n: int, attributes: dict[str, Any]) -> Record:
    activity = ActivityData(
        type="order",
        external_id=f"O{n}",
        occurred_at=datetime(2024, 5, 1, 12, 30, 15, 250, tzinfo=BERLIN),  # stored as UTC
        amount=Decimal("1234.5678"),
        currency="EUR",
        attributes=attributes,
        person_external_id="C1",
        person_email=" Ann@Example.com ",
    )
    payload = {"Order ID": f"O{n}", "Total": "1234,5678", "Zoë": None, "nested": {"b": [1, 2.5], "a": True}}
    return Record("order", f"O{n}", payload, updated_at=datetime(2024, 5, 2, 8, 0), activities=(activity,))


def _raw(store: Store, table: sa.Table, where: str, params: tuple[Any, ...]) -> dict[str, Any]:
    """One row as the driver returns it (no SQLAlchemy types): what is really stored."""
    mark = "?" if store.engine.dialect.name == "sqlite" else "%s"
    with store.engine.connect() as conn:
        result = conn.exec_driver_sql(f"SELECT * FROM {table.name} WHERE {where.format(mark=mark)}", params)
        rows = [dict(r._mapping) for r in result]
    assert len(rows) == 1
    return rows[0]


def _core_copy(store: Store, table: sa.Table, values: dict[str, Any]) -> None:
    with store.engine.begin() as conn:
        conn.execute(sa.insert(table), [values])


def test_content_hash_is_the_published_canonical_form() -> None:
    # Every stored hash depends on this text: if it changes, the next re-pull rewrites every record.
    record = Record(
        "contact",
        "C1",
        {"name": "Zoë", "n": Decimal("1.50"), "at": datetime(2024, 5, 1, 12, tzinfo=UTC), "tags": {"b", "a"},
         "z": [1, 2.5, None, True]},
        updated_at=datetime(2024, 5, 2, tzinfo=UTC),
        person=PersonData(email="Zoë@Example.com", first_name="Zoë", consent=Consent.GRANTED,
                          properties={"city": "Köln", "since": datetime(2020, 1, 1, tzinfo=UTC)}, links={"crm": "K9"}),
        activities=(
            ActivityData("order", "O1", datetime(2024, 5, 1, 12, 30, tzinfo=BERLIN), Decimal("12.50"), "EUR",
                         {"status": "paid", "cancelled": False}, "C1", "zoe@example.com"),
        ),
    )
    assert content_hash(record) == "2251e810340ec7c23f7ff5f5cc0ad59c6bfe963168cc797eb15666e727f88d2d"


@pytest.mark.parametrize("orders", [1, COPY_MIN_ROWS + 5], ids=["small page", "large page"])
def test_bulk_rows_are_stored_as_sqlalchemy_core_stores_them(store: Store, orders: int) -> None:
    page = [_contact("C1", "Ann@Example.com", first_name="Ann", consent=Consent.GRANTED,
                     properties={"since": datetime(2020, 1, 1, tzinfo=UTC), "score": Decimal("2.5")})]
    page += [_order(n, {"status": "paid"} if n % 2 else {}) for n in range(orders)]
    store.commit_page("shop", "csv", "main", Page(page, {"row": orders}))

    now = m.utcnow()
    raw = _raw(store, m.raw_record, "external_id = {mark}", ("O1",) if orders > 1 else ("O0",))
    _core_copy(store, m.raw_record, {
        "source": "shop", "source_type": "csv", "object_type": "order", "external_id": "copy",
        "payload": _order(1 if orders > 1 else 0, {}).payload, "content_hash": raw["content_hash"],
        "updated_at": datetime(2024, 5, 2, 8, 0), "deleted": False, "is_person": False,
        "first_seen_at": raw_value_time(raw["first_seen_at"]), "changed_at": raw_value_time(raw["changed_at"]),
    })
    assert _without(_raw(store, m.raw_record, "external_id = {mark}", ("copy",))) == _without(raw)

    for n in {0, orders - 1}:
        stored = _raw(store, m.activity, "external_id = {mark}", (f"O{n}",))
        _core_copy(store, m.activity, {
            "person_id": stored["person_id"], "source": "shop", "type": "order", "external_id": "copy",
            "occurred_at": datetime(2024, 5, 1, 12, 30, 15, 250, tzinfo=BERLIN), "amount": Decimal("1234.5678"),
            "currency": "EUR", "attributes": {"status": "paid"} if n % 2 else None, "person_external_id": "C1",
            "person_email": "ann@example.com", "deleted": False, "updated_at": raw_value_time(stored["updated_at"]),
        })
        assert _without(_raw(store, m.activity, "external_id = {mark}", ("copy",))) == _without(stored)
        with store.engine.begin() as conn:
            conn.execute(sa.delete(m.activity).where(m.activity.c.external_id == "copy"))

    profile = _raw(store, m.identity, "external_id = {mark}", ("C1",))
    _core_copy(store, m.identity, {
        "person_id": profile["person_id"], "source": "shop", "external_id": "copy", "email": "ann@example.com",
        "email_seen": "Ann@Example.com", "first_name": "Ann", "last_name": None, "phone": None,
        "consent": "granted", "properties": {"since": datetime(2020, 1, 1, tzinfo=UTC), "score": Decimal("2.5")},
        "seen": True, "deleted": False, "created_at": raw_value_time(profile["created_at"]),
        "updated_at": raw_value_time(profile["updated_at"]),
    })
    assert _without(_raw(store, m.identity, "external_id = {mark}", ("copy",))) == _without(profile)
    assert now >= raw_value_time(profile["updated_at"])


def raw_value_time(value: Any) -> datetime:
    """A stored timestamp as the datetime it was written from (SQLite keeps naive UTC text)."""
    if isinstance(value, str):
        return datetime.fromisoformat(value).replace(tzinfo=UTC)
    assert isinstance(value, datetime)
    return value


def _without(row: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in row.items() if k not in ("id", "external_id")}


def test_new_people_get_the_ids_the_database_would_give(store: Store) -> None:
    store.commit_page("shop", "csv", "main", Page([_contact("C1", "a@example.com")], None))
    with store.engine.begin() as conn:  # a person written elsewhere, by the database's own id
        conn.execute(sa.insert(m.person).values(consent="unknown", deleted=False, created_at=m.utcnow(),
                                                changed_at=m.utcnow()))
    page = [_contact(f"C{n}", f"p{n}@example.com") for n in range(2, 2 + COPY_MIN_ROWS + 5)]
    store.commit_page("shop", "csv", "main", Page(page, None))
    with store.engine.begin() as conn:
        conn.execute(sa.insert(m.person).values(consent="unknown", deleted=False, created_at=m.utcnow(),
                                                changed_at=m.utcnow()))
        ids = list(conn.execute(sa.select(m.person.c.id).order_by(m.person.c.id)).scalars())
        by_profile = dict(conn.execute(sa.select(m.identity.c.external_id, m.identity.c.person_id)).all())
    assert ids == list(range(1, len(page) + 4))
    assert by_profile["C1"] == 1
    assert [by_profile[r.external_id] for r in page] == list(range(3, len(page) + 3))


def test_merge_reason_does_not_depend_on_the_physical_order_of_rows(store: Store) -> None:
    fillers = [_contact(f"F{n}", f"f{n}@example.com") for n in range(100)]
    store.commit_page("shop", "csv", "main", Page([_contact("C1", "ann@example.com"), *fillers], None))
    store.commit_page("crm", "csv", "main", Page([_contact("K1", "Ann@example.com")], None))
    # On PostgreSQL, rewriting C1's identity puts the new row version on a later page (its own is full), so
    # a scan now meets K1 before C1.
    store.commit_page("shop", "csv", "main", Page([_contact("C1", "ann@example.com", first_name="Ann")], None))
    store.commit_page("mail", "csv", "main", Page([_contact("M1", "other@example.com")], None))

    stats = store.commit_page("mail", "csv", "main", Page([_contact("M1", "ann@example.com")], None))

    assert stats.people_merged == 1
    with store.engine.connect() as conn:
        reasons = list(conn.execute(sa.select(m.person_merge.c.reason)).scalars())
    # The person is named by their first identity with that email, in id order, on every backend.
    assert reasons == ["same email ann@example.com from shop:C1 and mail:M1"]
