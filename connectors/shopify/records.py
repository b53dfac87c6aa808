"""Shopify customers and orders as the hub's records, people and order activities.

A node that lacks what the hub needs (an id, a parseable time, a numeric total) raises
:class:`~hub.errors.SkippableRecordError`; the stream counts and skips it.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from hub.contracts import ORDER_CANCELLED, ORDER_REFUNDED, ActivityData, ActivityType, Consent, PersonData, Record
from hub.errors import SkippableRecordError

CUSTOMER = "customer"
ORDER = "order"

# emailMarketingConsent.marketingState. NOT_SUBSCRIBED only says nobody opted in through the shop, which is no
# opt-out: it stays unknown so that an opt-in recorded by another tool is not overruled. INVALID addresses
# bounce; REDACTED customers had their data erased on request.
MARKETING_CONSENT = {
    "SUBSCRIBED": Consent.GRANTED,
    "PENDING": Consent.PENDING,
    "UNSUBSCRIBED": Consent.DENIED,
    "NOT_SUBSCRIBED": Consent.UNKNOWN,
    "INVALID": Consent.UNDELIVERABLE,
    "REDACTED": Consent.DENIED,
}

# displayFinancialStatus values that mean no money was kept.
_REFUNDED_STATUSES = frozenset({"refunded"})
_VOIDED_STATUSES = frozenset({"voided"})


def customer_record(node: Mapping[str, Any]) -> Record:
    """A ``customer`` record with its person.

    Raises:
        SkippableRecordError: no id, or no valid ``updatedAt``.
    """
    gid = _id(node, "customer")
    consent = _mapping(node.get("emailMarketingConsent"))
    address = _mapping(node.get("defaultAddress"))
    tags = node.get("tags")
    created = _maybe_time(node.get("createdAt"), gid, "createdAt")
    properties = {
        "country": _text(address.get("countryCodeV2")),
        "region": _text(address.get("province")),
        "region_code": _text(address.get("provinceCode")),
        "city": _text(address.get("city")),
        "tags": sorted(str(t) for t in tags) if isinstance(tags, list) else [],
        "state": _lower(node.get("state")),
        "created_at": created.isoformat() if created is not None else None,
        "marketing_opt_in_level": _lower(consent.get("marketingOptInLevel")),
    }
    person = PersonData(
        email=_text(node.get("email")),
        first_name=_text(node.get("firstName")),
        last_name=_text(node.get("lastName")),
        phone=_text(node.get("phone")),
        consent=MARKETING_CONSENT.get(str(consent.get("marketingState") or ""), Consent.UNKNOWN),
        properties=properties,
    )
    return Record(
        object_type=CUSTOMER,
        external_id=gid,
        payload=dict(node),
        updated_at=_time(node.get("updatedAt"), gid, "updatedAt"),
        person=person,
    )


def deleted_customer(gid: str) -> Record:
    """The record saying customer ``gid`` is gone from the shop."""
    return Record(object_type=CUSTOMER, external_id=gid, payload={"id": gid, "deleted": True}, deleted=True)


def order_record(node: Mapping[str, Any], line_items: Sequence[Mapping[str, Any]]) -> Record:
    """An ``order`` record carrying one order activity, in the shop's currency.

    Args:
        node: the order node (its ``lineItems`` are ignored; pass them complete in ``line_items``).
        line_items: every line item of the order.

    Raises:
        SkippableRecordError: no id, no valid time, or totals that are not amounts.
    """
    gid = _id(node, "order")
    processed = _time(node.get("processedAt") or node.get("createdAt"), gid, "processedAt")
    total = _mapping(node.get("totalPriceSet"))
    shop_money = _money(total.get("shopMoney"), gid, "totalPriceSet.shopMoney")
    presentment = _money(total.get("presentmentMoney") or total.get("shopMoney"), gid, "totalPriceSet.presentmentMoney")
    refunded = _mapping(node.get("totalRefundedSet"))
    refunded_amount = _money(refunded.get("shopMoney"), gid, "totalRefundedSet.shopMoney")[0] if refunded else None
    status = _lower(node.get("displayFinancialStatus"))
    customer = _mapping(node.get("customer"))
    products = sorted({t for t in (_product_type(li) for li in line_items) if t})
    attributes: dict[str, Any] = {
        ORDER_CANCELLED: node.get("cancelledAt") is not None or status in _VOIDED_STATUSES,
        ORDER_REFUNDED: status in _REFUNDED_STATUSES,
        "financial_status": status,
        "name": _text(node.get("name")),
        "presentment_currency": presentment[1],
        "presentment_amount": str(presentment[0]),
        "refunded_amount": str(refunded_amount) if refunded_amount is not None else None,
        "product_types": products,
        "items": sum(_quantity(li) for li in line_items),
        "source_name": _text(node.get("sourceName")),
        "test": bool(node.get("test", False)),
    }
    activity = ActivityData(
        type=ActivityType.ORDER.value,
        external_id=gid,
        occurred_at=processed,
        amount=shop_money[0],
        currency=shop_money[1],
        attributes=attributes,
        person_external_id=_text(customer.get("id")),
        person_email=_text(node.get("email")),
    )
    payload = {k: v for k, v in node.items() if k != "lineItems"}
    # In a canonical order: a bulk result does not promise to list an order's line items as its pages do, and
    # the same order read both ways must store the same payload (else every re-read counts as a change).
    payload["lineItems"] = sorted((dict(li) for li in line_items), key=lambda li: json.dumps(li, sort_keys=True))
    return Record(
        object_type=ORDER,
        external_id=gid,
        payload=payload,
        updated_at=_maybe_time(node.get("updatedAt"), gid, "updatedAt"),
        activities=(activity,),
    )


# ---------------------------------------------------------------------------------------------- values


def parse_time(value: Any) -> datetime | None:
    """An aware datetime from Shopify's ISO 8601 ``DateTime`` (``2024-05-01T10:00:00Z``), None when invalid."""
    if not isinstance(value, str) or not value:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    return parsed if parsed.tzinfo is not None else None


def _id(node: Mapping[str, Any], kind: str) -> str:
    gid = node.get("id")
    if not isinstance(gid, str) or not gid.startswith("gid://shopify/"):
        raise SkippableRecordError(f"{kind} without a valid id: {str(gid)[:60]!r}")
    return gid


def _time(value: Any, gid: str, name: str) -> datetime:
    parsed = parse_time(value)
    if parsed is None:
        raise SkippableRecordError(f"{gid}: {name} is not a date-time: {str(value)[:40]!r}")
    return parsed


def _maybe_time(value: Any, gid: str, name: str) -> datetime | None:
    return None if value is None else _time(value, gid, name)


def _money(value: Any, gid: str, name: str) -> tuple[Decimal, str]:
    money = _mapping(value)
    try:
        amount = Decimal(str(money.get("amount")))
    except (InvalidOperation, ValueError):
        amount = Decimal("NaN")
    code = money.get("currencyCode")
    if not amount.is_finite() or not isinstance(code, str) or len(code) != 3:
        raise SkippableRecordError(f"{gid}: {name} is not an amount with a currency: {dict(money)!r:.80}")
    return amount, code


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _text(value: Any) -> str | None:
    if value is None:
        return None
    text = str(value).strip()
    return text or None


def _lower(value: Any) -> str | None:
    text = _text(value)
    return text.lower() if text else None


def _product_type(line_item: Mapping[str, Any]) -> str | None:
    return _text(_mapping(line_item.get("product")).get("productType"))


def _quantity(line_item: Mapping[str, Any]) -> int:
    value = line_item.get("quantity")
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0
