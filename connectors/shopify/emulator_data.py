"""The emulated shop's data: customers and online orders of the seeded business, as Admin API nodes.

Every person the business knows in ``shopify`` is a customer (with the email as the shop has it); every
``online`` order is a Shopify order (``pos`` orders are the till's, exported as CSV). Ids are derived from the
business's stable keys. ``order_scale`` > 1 adds copies of each order (earlier, for the same customer) to
make a larger shop for load tests; the copies are not part of the business's truth.

Nodes are plain dicts keyed by GraphQL field names, so the executor reads them directly; keys starting with
``_`` are the emulator's own (the number, the customer of an order, the currencies defaults are written in).
Fields derived from other data (a customer's ``numberOfOrders``) are answered by :mod:`.emulator_model`, and
the rest by the schema's defaults. Each resource keeps a list sorted by ``(updatedAt, id)`` and one sorted by
id, so a page of ``updated_at`` windows sorted by ``UPDATED_AT`` is a bisect plus the page, however large the
shop.
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
PRODUCT_ID_BASE = 8_000_000_000_000
VARIANT_OFFSET = 1_000_000_000_000
SHOP_NAME = "Sandbox Shop"
SHOP_DOMAIN = "sandbox-shop.myshopify.com"

# MailingAddress.country is the country's name; countryCodeV2 its ISO code.
COUNTRY_NAMES = {
    "AT": "Austria",
    "BE": "Belgium",
    "CH": "Switzerland",
    "DE": "Germany",
    "DK": "Denmark",
    "ES": "Spain",
    "FR": "France",
    "GB": "United Kingdom",
    "IE": "Ireland",
    "IT": "Italy",
    "NL": "Netherlands",
    "PL": "Poland",
    "PT": "Portugal",
    "SE": "Sweden",
    "US": "United States",
}

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


def parse_iso(text: str) -> datetime | None:
    """A DateTime as the emulator writes it (``iso``), aware UTC; None when it is not one."""
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


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

    def add(self, node: dict[str, Any]) -> None:
        """Insert a new node (its ``_num`` above every existing one)."""
        number = int(node["_num"])
        self.nodes[number] = node
        bisect.insort(self.by_updated, (node["updatedAt"], number))
        bisect.insort(self.by_id, number)

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
    """The shop's customers, orders and products, built from the business.

    Attributes:
        customers: customer nodes.
        orders: order nodes.
        emails: customer number by folded email (Shopify's emails are unique per shop).
        orders_of: order numbers of each customer, oldest first.
        products: product nodes by number.
        currency: the shop's currency.
    """

    customers: Resource
    orders: Resource
    emails: dict[str, int]
    orders_of: dict[int, list[int]] = field(default_factory=dict)
    products: dict[int, dict[str, Any]] = field(default_factory=dict)
    currency: str = "EUR"

    @classmethod
    def build(cls, business: Business, *, order_scale: float = 1.0, seed: int = 42) -> ShopData:
        """The shop as the business's ``shopify`` presence and online orders describe it."""
        people = {p.key: p for p in business.people_in("shopify")}
        online = [o for o in business.orders if o.channel == "online" and o.person in people]
        orders = _scaled(online, order_scale, random.Random(f"{seed}:shopify-orders"))
        products = {
            PRODUCT_ID_BASE + p.key: _product_node(
                PRODUCT_ID_BASE + p.key, p.key, p.sku, p.title, p.product_type, p.price, business.currency
            )
            for p in business.products
        }
        last_order: dict[int, datetime] = {}
        order_nodes: dict[int, dict[str, Any]] = {}
        for index, (order, shift) in enumerate(orders):
            number = ORDER_ID_BASE + (index + 1) * ID_STEP
            person = people[order.person]
            order_nodes[number] = _order_node(number, index, order, shift, person, products)
            placed = order.processed_at - shift
            last_order[person.key] = max(last_order.get(person.key, placed), placed)
        customer_nodes = {
            CUSTOMER_ID_BASE + p.key * ID_STEP: _customer_node(
                CUSTOMER_ID_BASE + p.key * ID_STEP, p, last_order, business.currency
            )
            for p in people.values()
        }
        customers, order_resource = Resource("Customer"), Resource("Order")
        customers.load(customer_nodes)
        order_resource.load(order_nodes)
        orders_of: dict[int, list[int]] = {}
        for number in sorted(order_nodes, key=lambda n: (order_nodes[n]["processedAt"], n)):
            orders_of.setdefault(order_nodes[number]["_customer"], []).append(number)
        shop = cls(customers, order_resource, {}, orders_of, products, business.currency)
        for number, node in customer_nodes.items():
            node["_orders"] = len(orders_of.get(number, ()))
            shop.refresh_spent(number)
        shop.emails = {_email_key(n["email"]): k for k, n in customer_nodes.items() if n.get("email")}
        return shop

    # ------------------------------------------------------------------ reading

    def customer_orders(self, number: int) -> list[dict[str, Any]]:
        """The orders of customer ``number``, oldest first."""
        nodes = self.orders.nodes
        return [nodes[n] for n in self.orders_of.get(number, ()) if n in nodes]

    def customer_by(self, *, email: str | None = None, phone: str | None = None) -> dict[str, Any] | None:
        """The customer with this email (case-insensitive) or phone number, if any."""
        if email is not None:
            number = self.emails.get(_email_key(email))
            return self.customers.nodes.get(number) if number is not None else None
        if phone is not None:
            wanted = _digits(phone)
            return next(
                (n for n in self.customers.nodes.values() if n.get("phone") and _digits(n["phone"]) == wanted), None
            )
        return None

    def refresh_spent(self, number: int) -> None:
        """Recompute a customer's ``amountSpent``: the current totals of their orders that were not cancelled."""
        total = sum(
            (
                Decimal(o["currentTotalPriceSet"]["shopMoney"]["amount"])
                for o in self.customer_orders(number)
                if not o.get("cancelledAt")
            ),
            Decimal("0.00"),
        )
        self.customers.nodes[number]["_spent"] = total

    # ------------------------------------------------------------------ changes

    def create_customer(self, fields: Mapping[str, Any], now: datetime) -> dict[str, Any]:
        """A new customer from ``customerCreate``/``customerSet`` input (validated by the caller)."""
        number = max(self.customers.nodes, default=CUSTOMER_ID_BASE) + ID_STEP
        stamp = iso(now)
        node: dict[str, Any] = {
            "_num": number,
            "_at": stamp,
            "_currency": self.currency,
            "_orders": 0,
            "_spent": Decimal("0.00"),
            "id": gid("Customer", number),
            "legacyResourceId": str(number),
            "email": None,
            "firstName": None,
            "lastName": None,
            "phone": None,
            "state": "DISABLED",
            "tags": [],
            "note": None,
            "locale": "en",
            "verifiedEmail": False,
            "createdAt": stamp,
            "updatedAt": stamp,
            "emailMarketingConsent": None,
            "defaultAddress": None,
            "addresses": [],
        }
        self.customers.add(node)
        self.update_customer(number, fields, now)
        return node

    def update_customer(self, number: int, fields: Mapping[str, Any], now: datetime) -> dict[str, Any]:
        """Apply ``customerUpdate``-style input: only the fields given change (tags are replaced, as Shopify does)."""
        node = self.customers.nodes[number]
        old_email = node.get("email")
        for key in ("firstName", "lastName", "note", "locale"):
            if key in fields:
                node[key] = fields[key]
        if "email" in fields:
            node["email"] = fields["email"] or None
        if "phone" in fields:
            node["phone"] = fields["phone"] or None
        if "tags" in fields:
            node["tags"] = sorted(dict.fromkeys(_tag_items(fields["tags"])), key=str.casefold)
        consent = fields.get("emailMarketingConsent")
        if isinstance(consent, Mapping):
            node["emailMarketingConsent"] = {
                "marketingState": consent.get("marketingState"),
                "marketingOptInLevel": consent.get("marketingOptInLevel"),
                "consentUpdatedAt": consent.get("consentUpdatedAt") or iso(now),
            }
        elif node.get("email") and node.get("emailMarketingConsent") is None:
            node["emailMarketingConsent"] = {
                "marketingState": "NOT_SUBSCRIBED",
                "marketingOptInLevel": None,
                "consentUpdatedAt": None,
            }
        addresses = fields.get("addresses")
        if isinstance(addresses, list):
            node["addresses"] = [
                _address_from_input(number, i, a) for i, a in enumerate(addresses) if isinstance(a, Mapping)
            ]
            node["defaultAddress"] = node["addresses"][0] if node["addresses"] else None
        node["displayName"] = _display_name(node)
        if old_email != node.get("email"):
            if old_email:
                self.emails.pop(_email_key(old_email), None)
            if node.get("email"):
                self.emails[_email_key(node["email"])] = number
        self.customers.touch(number, iso(now))
        return node

    def delete_customer(self, number: int) -> None:
        """Remove a customer (the caller refuses customers with orders, as Shopify does)."""
        email = self.customers.nodes[number].get("email")
        self.customers.remove(number)
        if email:
            self.emails.pop(_email_key(email), None)

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
            node = self.orders.nodes[number]
            _refund(node, stamp)
            self.orders.touch(number, stamp)
            if node["_customer"] in self.customers.nodes:
                self.refresh_spent(node["_customer"])
        idle = [n for n in customers if self.customers.nodes[n]["_orders"] == 0]
        wanted = min(len(idle), round(len(customers) * delete_fraction))
        deleted = rng.sample(idle, wanted)
        for number in deleted:
            self.delete_customer(number)
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
    "orders_count": SearchField("number", _path("_orders")),
    "total_spent": SearchField("number", _path("_spent")),
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


def _customer_node(number: int, person: Person, last_order: Mapping[int, datetime], currency: str) -> dict[str, Any]:
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
    phone = person.phone.replace(" ", "") if person.phone else None
    address = {
        "_num": number + 1,
        "id": gid("MailingAddress", number + 1),
        "firstName": person.first_name,
        "lastName": person.last_name,
        "name": f"{person.first_name} {person.last_name}",
        "company": person.company,
        "address1": None,
        "address2": None,
        "city": person.city,
        "province": person.region,
        "provinceCode": None,
        "zip": None,
        "country": COUNTRY_NAMES.get(person.country, person.country),
        "countryCodeV2": person.country,
        "phone": phone,
    }
    return {
        "_num": number,
        "_at": iso(created),
        "_currency": currency,
        "id": gid("Customer", number),
        "legacyResourceId": str(number),
        "email": view.email,
        "firstName": person.first_name,
        "lastName": person.last_name,
        "displayName": f"{person.first_name} {person.last_name}",
        "phone": phone,
        "state": state,
        "tags": sorted(tags),
        "note": None,
        "locale": "en",
        "verifiedEmail": state == "ENABLED",
        "createdAt": iso(created),
        "updatedAt": iso(updated),
        "emailMarketingConsent": {
            "marketingState": marketing,
            "marketingOptInLevel": "SINGLE_OPT_IN" if marketing in ("SUBSCRIBED", "PENDING") else None,
            "consentUpdatedAt": iso(person.consent_at) if person.consent_at else None,
        },
        "defaultAddress": address,
        "addresses": [address],
    }


def _product_node(
    number: int, key: int, sku: str, title: str, product_type: str, price: Decimal, currency: str
) -> dict[str, Any]:
    handle = title.lower().replace(" ", "-")
    variant = {
        "_num": number + VARIANT_OFFSET,
        "id": gid("ProductVariant", number + VARIANT_OFFSET),
        "legacyResourceId": str(number + VARIANT_OFFSET),
        "title": "Default Title",
        "displayName": f"{title} - Default Title",
        "sku": sku,
        "price": str(price),
        "availableForSale": True,
        "position": 1,
    }
    node = {
        "_num": number,
        "_at": "2020-01-01T00:00:00Z",
        "_currency": currency,
        "id": gid("Product", number),
        "legacyResourceId": str(number),
        "title": title,
        "handle": handle,
        "productType": product_type,
        "vendor": SHOP_NAME,
        "status": "ACTIVE",
        "tags": [product_type.lower()],
        "totalVariants": 1,
        "hasOnlyDefaultVariant": True,
        "onlineStoreUrl": f"https://{SHOP_DOMAIN}/products/{handle}",
        "variants": [variant],
        "_key": key,
    }
    variant["product"] = node
    return node


def _order_node(
    number: int, index: int, order: Order, shift: timedelta, person: Person, products: Mapping[int, dict[str, Any]]
) -> dict[str, Any]:
    placed = order.processed_at - shift
    updated = order.updated_at - shift
    rate = order.presentment_total / order.total if order.total else Decimal(1)
    refunded_p = (order.refunded * rate).quantize(Decimal("0.01"))
    shipping_p = (order.shipping * rate).quantize(Decimal("0.01"))
    customer = CUSTOMER_ID_BASE + person.key * ID_STEP
    currencies = {"_currency": order.currency, "_presentment": order.presentment_currency}
    lines = []
    for i, li in enumerate(order.line_items):
        unit_p = (li.unit_price * rate).quantize(Decimal("0.01"))
        product = products.get(PRODUCT_ID_BASE + li.product)
        lines.append(
            {
                "_num": number * 10 + i,
                **currencies,
                "id": gid("LineItem", number * 10 + i),
                "name": li.title,
                "title": li.title,
                "sku": li.sku,
                "vendor": SHOP_NAME,
                "quantity": li.quantity,
                "originalUnitPriceSet": _money_bag(li.unit_price, order.currency, unit_p, order.presentment_currency),
                "originalTotalSet": _money_bag(
                    li.unit_price * li.quantity, order.currency, unit_p * li.quantity, order.presentment_currency
                ),
                "product": product
                or {
                    "id": gid("Product", PRODUCT_ID_BASE + li.product),
                    "title": li.title,
                    "productType": li.product_type,
                },
                "variant": (product or {}).get("variants", [None])[0],
            }
        )
    stamp = iso(placed)
    node: dict[str, Any] = {
        "_num": number,
        "_at": stamp,
        **currencies,
        "_customer": customer,
        "id": gid("Order", number),
        "legacyResourceId": str(number),
        "name": f"#{ORDER_NAME_BASE + index + 1}",
        "number": ORDER_NAME_BASE + index + 1,
        "email": person.email_in("shopify"),
        "phone": person.phone.replace(" ", "") if person.phone else None,
        "createdAt": stamp,
        "processedAt": stamp,
        "updatedAt": iso(max(updated, placed)),
        "cancelledAt": iso(order.cancelled_at - shift) if order.cancelled_at else None,
        "cancelReason": "CUSTOMER" if order.cancelled_at else None,
        "closed": order.cancelled_at is not None,
        "closedAt": iso(order.cancelled_at - shift) if order.cancelled_at else None,
        "test": False,
        "sourceName": "web",
        "tags": [],
        "note": None,
        "displayFinancialStatus": _FINANCIAL.get(order.financial_status, "PAID"),
        "displayFulfillmentStatus": "UNFULFILLED",
        "currencyCode": order.currency,
        "presentmentCurrencyCode": order.presentment_currency,
        "totalPriceSet": _money_bag(order.total, order.currency, order.presentment_total, order.presentment_currency),
        "totalShippingPriceSet": _money_bag(order.shipping, order.currency, shipping_p, order.presentment_currency),
        "totalRefundedSet": _money_bag(order.refunded, order.currency, refunded_p, order.presentment_currency),
        "currentTotalPriceSet": _money_bag(
            order.total - order.refunded,
            order.currency,
            order.presentment_total - refunded_p,
            order.presentment_currency,
        ),
        "lineItems": lines,
    }
    node["refunds"] = [_refund_node(node, iso(max(updated, placed)))] if order.refunded > 0 else []
    return node


def _refund_node(order: dict[str, Any], stamp: str) -> dict[str, Any]:
    number = int(order["_num"]) + 1
    return {
        "_num": number,
        "_at": stamp,
        "_currency": order["_currency"],
        "_presentment": order["_presentment"],
        "id": gid("Refund", number),
        "legacyResourceId": str(number),
        "createdAt": stamp,
        "processedAt": stamp,
        "updatedAt": stamp,
        "note": None,
        "totalRefundedSet": json.loads(json.dumps(order["totalRefundedSet"])),
        "order": order,
    }


def _money_bag(shop: Decimal, currency: str, presentment: Decimal, presentment_currency: str) -> dict[str, Any]:
    return {
        "shopMoney": {"amount": str(shop), "currencyCode": currency},
        "presentmentMoney": {"amount": str(presentment), "currencyCode": presentment_currency},
    }


def _change_customer(node: dict[str, Any], i: int) -> None:
    """One of three everyday changes: a consent change, a new city, a merchant's tag."""
    if i % 3 == 0 and node.get("emailMarketingConsent"):
        consent = node["emailMarketingConsent"]
        subscribed = consent["marketingState"] == "SUBSCRIBED"
        consent["marketingState"] = "UNSUBSCRIBED" if subscribed else "SUBSCRIBED"
        consent["marketingOptInLevel"] = None if subscribed else "SINGLE_OPT_IN"
    elif i % 3 == 1 and node.get("defaultAddress"):
        moved = {**node["defaultAddress"], "city": f"{node['defaultAddress']['city']} (new)"}
        node["defaultAddress"] = moved
        node["addresses"] = [moved, *node.get("addresses", [])[1:]]
    else:
        node["tags"] = sorted({*node["tags"], "returning"}, key=str.casefold)


def _refund(node: dict[str, Any], stamp: str) -> None:
    """A full refund of the order."""
    node["displayFinancialStatus"] = "REFUNDED"
    node["totalRefundedSet"] = json.loads(json.dumps(node["totalPriceSet"]))
    bag = node["currentTotalPriceSet"]
    node["currentTotalPriceSet"] = {k: {**v, "amount": "0.00"} for k, v in bag.items()}
    node["refunds"] = [_refund_node(node, stamp)]


def _tag_items(value: Any) -> list[str]:
    """Tags as Shopify reads them: a list, or one comma-separated string; every item is split on commas too."""
    items = value if isinstance(value, list) else [value] if isinstance(value, str) else []
    return [t.strip() for item in items for t in str(item).split(",") if t.strip()]


def _digits(phone: str) -> str:
    return "".join(ch for ch in phone if ch.isdigit())


def _display_name(node: Mapping[str, Any]) -> str:
    # Shopify shows the name, else the email, else the phone number.
    name = " ".join(str(node[k]) for k in ("firstName", "lastName") if node.get(k))
    return name or str(node.get("email") or node.get("phone") or "")


def _address_from_input(customer: int, index: int, given: Mapping[str, Any]) -> dict[str, Any]:
    number = customer + 1 + index
    code = given.get("countryCode")
    return {
        "_num": number,
        "id": gid("MailingAddress", number),
        **{
            k: given.get(k)
            for k in (
                "firstName",
                "lastName",
                "company",
                "address1",
                "address2",
                "city",
                "zip",
                "phone",
                "provinceCode",
            )
        },
        "name": " ".join(str(given[k]) for k in ("firstName", "lastName") if given.get(k)) or None,
        "province": given.get("province") or given.get("provinceCode"),
        "country": COUNTRY_NAMES.get(str(code), given.get("country")) if code else given.get("country"),
        "countryCodeV2": code,
    }
