"""The emulated shop's data: customers and online orders of the seeded business, as Admin API nodes.

Every person the business knows in ``shopify`` is a customer (with the email as the shop has it); every
``online`` order is a Shopify order (``pos`` orders are the till's, exported as CSV). Ids are derived from the
business's stable keys. ``order_scale`` > 1 adds copies of each order (earlier, for the same customer) to
make a larger shop for load tests; the copies are not part of the business's truth.

Nodes are plain dicts keyed by GraphQL field names, so the executor reads them directly. Each resource keeps a
list sorted by ``(updatedAt, id)`` and one sorted by id, so a page of ``updated_at`` windows sorted by
``UPDATED_AT`` is a bisect plus the page, however large the shop.
"""

from __future__ import annotations

import base64
import bisect
import json
import random
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from hub.sandbox.business import Business, Order, Person

from .emulator_search import SearchField

CUSTOMER_ID_BASE = 6_100_000_000_000
ORDER_ID_BASE = 5_400_000_000_000
ID_STEP = 8
ORDER_NAME_BASE = 1000

_MARKETING = {
    "subscribed": "SUBSCRIBED",
    "unsubscribed": "UNSUBSCRIBED",
    "cleaned": "INVALID",
    "pending": "PENDING",
    "not_subscribed": "NOT_SUBSCRIBED",
}
_FINANCIAL = {"paid": "PAID", "refunded": "REFUNDED", "partially_refunded": "PARTIALLY_REFUNDED"}


def iso(at: datetime) -> str:
    """Shopify's DateTime format: UTC, whole seconds, ``Z``."""
    return at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def gid(kind: str, number: int) -> str:
    """``gid://shopify/<kind>/<number>``."""
    return f"gid://shopify/{kind}/{number}"


def number_of(global_id: str, kind: str) -> int | None:
    """The number of a ``gid://shopify/<kind>/<n>`` id, None for another kind or form."""
    prefix = f"gid://shopify/{kind}/"
    tail = global_id[len(prefix) :] if global_id.startswith(prefix) else ""
    return int(tail) if tail.isdigit() else None


def encode_cursor(number: int, value: Any) -> str:
    """A keyset cursor like Shopify's: base64 of ``{"last_id": ..., "last_value": ...}``."""
    raw = json.dumps({"last_id": number, "last_value": value}, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[int, Any] | None:
    """``(last_id, last_value)`` of a cursor, None when it is not one."""
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        data = json.loads(base64.urlsafe_b64decode(padded.encode()))
        return int(data["last_id"]), data["last_value"]
    except (ValueError, KeyError, TypeError):
        return None


@dataclass
class Resource:
    """Nodes of one kind by number, with the two sort orders the connector pages in."""

    kind: str
    nodes: dict[int, dict[str, Any]] = field(default_factory=dict)
    by_updated: list[tuple[str, int]] = field(default_factory=list)
    by_id: list[int] = field(default_factory=list)

    def load(self, nodes: Mapping[int, dict[str, Any]]) -> None:
        """Replace every node and rebuild the indexes."""
        self.nodes = dict(nodes)
        self.by_updated = sorted((n["updatedAt"], k) for k, n in self.nodes.items())
        self.by_id = sorted(self.nodes)

    def touch(self, number: int, updated_at: str) -> None:
        """Set a node's ``updatedAt`` (kept after its previous one) and re-index it."""
        node = self.nodes[number]
        old = (node["updatedAt"], number)
        if updated_at <= node["updatedAt"]:
            updated_at = iso(datetime.fromisoformat(node["updatedAt"]) + timedelta(seconds=1))
        del self.by_updated[bisect.bisect_left(self.by_updated, old)]
        node["updatedAt"] = updated_at
        bisect.insort(self.by_updated, (updated_at, number))

    def remove(self, number: int) -> None:
        """Delete a node."""
        node = self.nodes.pop(number)
        del self.by_updated[bisect.bisect_left(self.by_updated, (node["updatedAt"], number))]
        del self.by_id[bisect.bisect_left(self.by_id, number)]

    def scan(self, sort_key: str, after: str | None, low: datetime | None) -> Iterator[tuple[dict[str, Any], str]]:
        """Nodes in ``sort_key`` order after cursor ``after`` (and from ``low`` on ``updatedAt``), with cursors."""
        position = decode_cursor(after) if after else None
        if sort_key == "UPDATED_AT":
            start = 0
            if position is not None:
                start = bisect.bisect_right(self.by_updated, (str(position[1]), position[0]))
            if low is not None:
                start = max(start, bisect.bisect_left(self.by_updated, (iso(low), -1)))
            for value, number in self.by_updated[start:]:
                yield self.nodes[number], encode_cursor(number, value)
            return
        start = bisect.bisect_right(self.by_id, position[0]) if position is not None else 0
        for number in self.by_id[start:]:
            yield self.nodes[number], encode_cursor(number, number)


@dataclass
class ShopData:
    """The shop's customers and orders, built from the business."""

    customers: Resource
    orders: Resource
    emails: dict[str, int]

    @classmethod
    def build(cls, business: Business, *, order_scale: float = 1.0, seed: int = 42) -> ShopData:
        """The shop as the business's ``shopify`` presence and online orders describe it."""
        people = {p.key: p for p in business.people_in("shopify")}
        online = [o for o in business.orders if o.channel == "online" and o.person in people]
        orders = _scaled(online, order_scale, random.Random(f"{seed}:shopify-orders"))
        last_order: dict[int, datetime] = {}
        order_nodes: dict[int, dict[str, Any]] = {}
        for index, (order, shift) in enumerate(orders):
            number = ORDER_ID_BASE + (index + 1) * ID_STEP
            person = people[order.person]
            order_nodes[number] = _order_node(number, index, order, shift, person)
            placed = order.processed_at - shift
            last_order[person.key] = max(last_order.get(person.key, placed), placed)
        customer_nodes = {
            CUSTOMER_ID_BASE + p.key * ID_STEP: _customer_node(CUSTOMER_ID_BASE + p.key * ID_STEP, p, last_order)
            for p in people.values()
        }
        customers, order_resource = Resource("Customer"), Resource("Order")
        customers.load(customer_nodes)
        order_resource.load(order_nodes)
        counts: dict[int, int] = {}
        for node in order_nodes.values():
            counts[node["_customer"]] = counts.get(node["_customer"], 0) + 1
        for number, node in customer_nodes.items():
            node["_orders"] = counts.get(number, 0)
        emails = {_email_key(n["email"]): k for k, n in customer_nodes.items() if n.get("email")}
        return cls(customers, order_resource, emails)

    # ------------------------------------------------------------------ changes

    def change_tags(self, number: int, tags: list[str], *, add: bool, now: datetime) -> None:
        """Add or remove tags of a customer or order (case-insensitively, as Shopify compares tags)."""
        resource = self.customers if number in self.customers.nodes else self.orders
        node = resource.nodes[number]
        current: list[str] = list(node.get("tags") or [])
        folded = {t.casefold() for t in current}
        if add:
            new = list(current)
            for tag in tags:
                if tag.casefold() not in folded:
                    folded.add(tag.casefold())
                    new.append(tag)
        else:
            drop = {t.casefold() for t in tags}
            new = [t for t in current if t.casefold() not in drop]
        if new != current:
            node["tags"] = sorted(new, key=str.casefold)
            resource.touch(number, iso(now))

    def mutate(self, fraction: float, delete_fraction: float, rng: random.Random, now: datetime) -> dict[str, int]:
        """Change a share of customers and orders, and delete customers that have no orders.

        Shopify refuses to delete a customer with orders, so deletions are drawn from those without.
        """
        stamp = iso(now)
        customers = sorted(self.customers.nodes)
        changed = rng.sample(customers, round(len(customers) * fraction))
        for i, number in enumerate(changed):
            _change_customer(self.customers.nodes[number], i)
            self.customers.touch(number, stamp)
        orders = sorted(self.orders.nodes)
        touched = rng.sample(orders, round(len(orders) * fraction))
        for number in touched:
            _refund(self.orders.nodes[number])
            self.orders.touch(number, stamp)
        idle = [n for n in customers if self.customers.nodes[n]["_orders"] == 0]
        wanted = min(len(idle), round(len(customers) * delete_fraction))
        deleted = rng.sample(idle, wanted)
        for number in deleted:
            email = self.customers.nodes[number].get("email")
            self.customers.remove(number)
            if email:
                self.emails.pop(_email_key(email), None)
        return {"customers_changed": len(changed), "orders_changed": len(touched), "customers_deleted": len(deleted)}


# ------------------------------------------------------------------------------------------ search fields


def _path(*keys: str) -> Any:
    def get(node: Mapping[str, Any]) -> Any:
        value: Any = node
        for key in keys:
            value = value.get(key) if isinstance(value, Mapping) else None
        return value

    return get


CUSTOMER_FIELDS: dict[str, SearchField] = {
    "updated_at": SearchField("time", _path("updatedAt")),
    "created_at": SearchField("time", _path("createdAt")),
    "customer_date": SearchField("time", _path("createdAt")),
    "email": SearchField("tokens", _path("email")),
    "first_name": SearchField("text", _path("firstName")),
    "last_name": SearchField("text", _path("lastName")),
    "phone": SearchField("text", _path("phone")),
    "state": SearchField("text", _path("state")),
    "tag": SearchField("tags", _path("tags")),
    "id": SearchField("id", _path("legacyResourceId")),
    "country": SearchField("text", _path("defaultAddress", "countryCodeV2")),
    "accepts_marketing": SearchField(
        "bool", lambda n: _path("emailMarketingConsent", "marketingState")(n) == "SUBSCRIBED"
    ),
    "_default_email": SearchField("tokens", _path("email")),
    "_default_first": SearchField("tokens", _path("firstName")),
    "_default_last": SearchField("tokens", _path("lastName")),
}
CUSTOMER_DEFAULT = ("_default_email", "_default_first", "_default_last")

ORDER_FIELDS: dict[str, SearchField] = {
    "updated_at": SearchField("time", _path("updatedAt")),
    "created_at": SearchField("time", _path("createdAt")),
    "processed_at": SearchField("time", _path("processedAt")),
    "email": SearchField("tokens", _path("email")),
    "customer_id": SearchField("id", lambda n: n.get("_customer")),
    "financial_status": SearchField("text", lambda n: str(n.get("displayFinancialStatus", "")).lower()),
    "tag": SearchField("tags", _path("tags")),
    "id": SearchField("id", _path("legacyResourceId")),
    "name": SearchField("text", _path("name")),
    "_default_name": SearchField("tokens", _path("name")),
    "_default_email": SearchField("tokens", _path("email")),
}
ORDER_DEFAULT = ("_default_name", "_default_email")


# ------------------------------------------------------------------------------------------ building nodes


def _scaled(orders: list[Order], scale: float, rng: random.Random) -> list[tuple[Order, timedelta]]:
    """The orders with ``scale`` - 1 copies each on average, each copy shifted some weeks earlier."""
    out: list[tuple[Order, timedelta]] = []
    for order in orders:
        copies = int(scale) + (rng.random() < scale - int(scale))
        for copy in range(max(copies, 1) if scale >= 1 else copies):
            out.append((order, timedelta(days=copy * rng.uniform(20.0, 60.0))))
    out.sort(key=lambda pair: pair[0].processed_at - pair[1])
    return out


def _email_key(email: str) -> str:
    return email.strip().casefold()


def _customer_node(number: int, person: Person, last_order: Mapping[int, datetime]) -> dict[str, Any]:
    view = person.vendors["shopify"]
    created = view.created_at
    updated = max(created, last_order.get(person.key, created))
    state = "ENABLED" if person.key % 3 == 0 else "INVITED" if person.key % 17 == 0 else "DISABLED"
    marketing = _MARKETING.get(person.email_consent, "NOT_SUBSCRIBED")
    tags = []
    if person.company:
        tags.append("wholesale")
    if person.key % 7 == 0:
        tags.append("newsletter-signup")
    return {
        "_num": number,
        "id": gid("Customer", number),
        "legacyResourceId": str(number),
        "email": view.email,
        "firstName": person.first_name,
        "lastName": person.last_name,
        "displayName": f"{person.first_name} {person.last_name}",
        "phone": person.phone.replace(" ", "") if person.phone else None,
        "state": state,
        "tags": sorted(tags),
        "note": None,
        "verifiedEmail": state == "ENABLED",
        "createdAt": iso(created),
        "updatedAt": iso(updated),
        "emailMarketingConsent": {
            "marketingState": marketing,
            "marketingOptInLevel": "SINGLE_OPT_IN" if marketing in ("SUBSCRIBED", "PENDING") else None,
            "consentUpdatedAt": iso(person.consent_at) if person.consent_at else None,
        },
        "defaultAddress": {
            "id": gid("MailingAddress", number + 1),
            "city": person.city,
            "country": person.country,
            "countryCodeV2": person.country,
            "province": person.region,
            "provinceCode": None,
            "zip": None,
        },
    }


def _order_node(number: int, index: int, order: Order, shift: timedelta, person: Person) -> dict[str, Any]:
    placed = order.processed_at - shift
    updated = order.updated_at - shift
    rate = order.presentment_total / order.total if order.total else Decimal(1)
    refunded_p = (order.refunded * rate).quantize(Decimal("0.01"))
    customer = CUSTOMER_ID_BASE + person.key * ID_STEP
    lines = [
        {
            "id": gid("LineItem", number * 10 + i),
            "name": li.title,
            "title": li.title,
            "sku": li.sku,
            "quantity": li.quantity,
            "product": {
                "id": gid("Product", 8_000_000_000_000 + li.product),
                "title": li.title,
                "productType": li.product_type,
            },
        }
        for i, li in enumerate(order.line_items)
    ]
    return {
        "_num": number,
        "_customer": customer,
        "id": gid("Order", number),
        "legacyResourceId": str(number),
        "name": f"#{ORDER_NAME_BASE + index + 1}",
        "email": person.email_in("shopify"),
        "createdAt": iso(placed),
        "processedAt": iso(placed),
        "updatedAt": iso(max(updated, placed)),
        "cancelledAt": iso(order.cancelled_at - shift) if order.cancelled_at else None,
        "cancelReason": "CUSTOMER" if order.cancelled_at else None,
        "closed": order.cancelled_at is not None,
        "test": False,
        "sourceName": "web",
        "tags": [],
        "displayFinancialStatus": _FINANCIAL.get(order.financial_status, "PAID"),
        "currencyCode": order.currency,
        "presentmentCurrencyCode": order.presentment_currency,
        "totalPriceSet": _money_bag(order.total, order.currency, order.presentment_total, order.presentment_currency),
        "totalRefundedSet": _money_bag(order.refunded, order.currency, refunded_p, order.presentment_currency),
        "currentTotalPriceSet": _money_bag(
            order.total - order.refunded,
            order.currency,
            order.presentment_total - refunded_p,
            order.presentment_currency,
        ),
        "lineItems": lines,
    }


def _money_bag(shop: Decimal, currency: str, presentment: Decimal, presentment_currency: str) -> dict[str, Any]:
    return {
        "shopMoney": {"amount": str(shop), "currencyCode": currency},
        "presentmentMoney": {"amount": str(presentment), "currencyCode": presentment_currency},
    }


def _change_customer(node: dict[str, Any], i: int) -> None:
    """One of three everyday changes: a consent change, a new city, a merchant's tag."""
    if i % 3 == 0:
        consent = node["emailMarketingConsent"]
        subscribed = consent["marketingState"] == "SUBSCRIBED"
        consent["marketingState"] = "UNSUBSCRIBED" if subscribed else "SUBSCRIBED"
        consent["marketingOptInLevel"] = None if subscribed else "SINGLE_OPT_IN"
    elif i % 3 == 1 and node.get("defaultAddress"):
        node["defaultAddress"] = {**node["defaultAddress"], "city": f"{node['defaultAddress']['city']} (new)"}
    else:
        node["tags"] = sorted({*node["tags"], "returning"}, key=str.casefold)


def _refund(node: dict[str, Any]) -> None:
    """A full refund of the order."""
    node["displayFinancialStatus"] = "REFUNDED"
    node["totalRefundedSet"] = json.loads(json.dumps(node["totalPriceSet"]))
    bag = node["currentTotalPriceSet"]
    node["currentTotalPriceSet"] = {k: {**v, "amount": "0.00"} for k, v in bag.items()}
