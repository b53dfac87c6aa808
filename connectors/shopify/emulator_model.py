"""Fields the emulated shop derives from its data: a customer's order count, spend and orders, an order's
subtotals and transactions, a line item's prices, an address's formatted lines, and so on.

Each resolver answers one ``(type, field)`` of the official schema from the nodes of :mod:`.emulator_data`;
fields neither held by a node nor derived here get the schema's empty value (:class:`.emulator_graphql.Defaults`).
Deprecated fields answer like their replacements (``Order.totalPrice`` is ``totalPriceSet.shopMoney.amount``),
as Shopify keeps them working until they are removed.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import datetime
from decimal import Decimal
from typing import Any, Protocol

from .emulator_data import SHOP_DOMAIN, ShopData, gid, parse_iso
from .emulator_graphql import Connection, Defaults, Resolver, paginate

Node = Mapping[str, Any]
Predicate = Callable[[Node], bool]

# sortKey -> the node's sort value (ties are broken by id). Keys the data has no value for (DESTINATION,
# PO_NUMBER, CUSTOMER_NAME) sort by id.
ORDER_SORTS: dict[str, Callable[[Node], Any]] = {
    "ID": lambda n: 0,
    "CREATED_AT": lambda n: n["createdAt"],
    "PROCESSED_AT": lambda n: n["processedAt"],
    "UPDATED_AT": lambda n: n["updatedAt"],
    "ORDER_NUMBER": lambda n: n["number"],
    "TOTAL_PRICE": lambda n: Decimal(n["totalPriceSet"]["shopMoney"]["amount"]),
    "CURRENT_TOTAL_PRICE": lambda n: Decimal(n["currentTotalPriceSet"]["shopMoney"]["amount"]),
    "TOTAL_ITEMS_QUANTITY": lambda n: _quantity(n),
    "FINANCIAL_STATUS": lambda n: n.get("displayFinancialStatus") or "",
    "FULFILLMENT_STATUS": lambda n: n.get("displayFulfillmentStatus") or "",
}
CUSTOMER_SORTS: dict[str, Callable[[Node], Any]] = {
    "ID": lambda n: 0,
    "CREATED_AT": lambda n: n["createdAt"],
    "UPDATED_AT": lambda n: n["updatedAt"],
    "NAME": lambda n: str(n.get("displayName") or "").casefold(),
    "LOCATION": lambda n: (
        str((n.get("defaultAddress") or {}).get("country") or ""),
        str((n.get("defaultAddress") or {}).get("city") or ""),
    ),
}

# Deprecated Money fields and the MoneyBag whose shop amount they repeat.
_ORDER_MONEY = {
    "totalPrice": "totalPriceSet",
    "subtotalPrice": "subtotalPriceSet",
    "totalRefunded": "totalRefundedSet",
    "totalShippingPrice": "totalShippingPriceSet",
    "totalReceived": "totalReceivedSet",
    "netPayment": "netPaymentSet",
}
_LINE_MONEY = {
    "originalUnitPrice": "originalUnitPriceSet",
    "originalTotal": "originalTotalSet",
    "discountedUnitPrice": "originalUnitPriceSet",
    "discountedTotal": "originalTotalSet",
    "unfulfilledOriginalTotal": "originalTotalSet",
    "unfulfilledDiscountedTotal": "originalTotalSet",
}
# MoneyBags of a line item that equal its original prices: the sandbox has no discounts, taxes or fulfillments.
_LINE_BAGS = {
    "discountedUnitPriceSet": "originalUnitPriceSet",
    "discountedUnitPriceAfterAllDiscountsSet": "originalUnitPriceSet",
    "discountedTotalSet": "originalTotalSet",
    "priceAfterAllDiscountsBeforeTaxesSet": "originalTotalSet",
    "unfulfilledOriginalTotalSet": "originalTotalSet",
    "unfulfilledDiscountedTotalSet": "originalTotalSet",
}
_SPEND_TIERS = ((Decimal("500"), "HIGH"), (Decimal("100"), "MEDIUM"))


class Viewer(Protocol):
    """What the resolvers need of the request: its access, and whether it is a bulk query."""

    unbounded: bool

    def require(self, scope: str, field_name: str) -> None:
        """Raise ``ACCESS_DENIED`` unless the token has ``scope``."""
        ...

    def order_filter(self, name: str, query: Any) -> Predicate:
        """The orders a ``query:`` argument (and the token's order horizon) keeps."""
        ...

    def now(self) -> datetime:
        """The shop's current time."""
        ...


class ShopModel:
    """The derived fields of one request.

    Args:
        data: the shop's nodes.
        viewer: the request.
        defaults: the schema's empty values (zero money in the shop's currency).
    """

    def __init__(self, data: ShopData, viewer: Viewer, defaults: Defaults) -> None:
        self.data = data
        self.viewer = viewer
        self.defaults = defaults

    def resolvers(self) -> dict[tuple[str, str], Resolver]:
        """Every derived ``(type, field)``."""
        out: dict[tuple[str, str], Resolver] = {}
        out.update(self._customer())
        out.update(self._order())
        out.update(self._line_item())
        out.update(self._other())
        return out

    # ------------------------------------------------------------------ Customer

    def _customer(self) -> dict[tuple[str, str], Resolver]:
        return {
            ("Customer", "numberOfOrders"): lambda c, _a: str(c.get("_orders", 0)),
            ("Customer", "amountSpent"): lambda c, _a: self.defaults.money(
                c.get("_currency"), _amount(c.get("_spent", Decimal("0")))
            ),
            ("Customer", "canDelete"): lambda c, _a: not c.get("_orders"),
            ("Customer", "validEmailAddress"): lambda c, _a: bool(c.get("email")),
            ("Customer", "lastOrder"): self._last_order,
            ("Customer", "orders"): self._customer_orders,
            ("Customer", "addresses"): lambda c, a: list(c.get("addresses") or [])[: a.get("first") or None],
            ("Customer", "addressesV2"): lambda c, a: paginate(
                list(c.get("addresses") or []), a, unbounded=self.viewer.unbounded
            ),
            ("Customer", "defaultEmailAddress"): _email_address,
            ("Customer", "defaultPhoneNumber"): _phone_number,
            ("Customer", "smsMarketingConsent"): lambda c, _a: _sms_consent(c) if c.get("phone") else None,
            ("Customer", "lifetimeDuration"): lambda c, _a: _duration(c.get("createdAt"), self.viewer.now()),
            ("Customer", "statistics"): lambda c, _a: {"predictedSpendTier": _spend_tier(c.get("_spent"))},
            ("Customer", "unsubscribeUrl"): lambda c, _a: f"https://{SHOP_DOMAIN}/unsubscribe?c={c.get('_num')}",
        }

    def _last_order(self, customer: Node, _args: dict[str, Any]) -> Node | None:
        self.viewer.require("read_orders", "lastOrder")
        keep = self.viewer.order_filter("lastOrder", None)
        orders = [o for o in self.data.customer_orders(int(customer.get("_num", 0))) if keep(o)]
        return max(orders, key=lambda o: (o["processedAt"], o["_num"])) if orders else None

    def _customer_orders(self, customer: Node, args: dict[str, Any]) -> Connection:
        self.viewer.require("read_orders", "orders")
        keep = self.viewer.order_filter("orders", args.get("query"))
        orders = [o for o in self.data.customer_orders(int(customer.get("_num", 0))) if keep(o)]
        key = ORDER_SORTS.get(str(args.get("sortKey") or "ID"), ORDER_SORTS["ID"])
        orders.sort(key=lambda o: (key(o), o["_num"]))
        return paginate(orders, args, unbounded=self.viewer.unbounded)

    # ------------------------------------------------------------------ Order

    def _order(self) -> dict[tuple[str, str], Resolver]:
        out: dict[tuple[str, str], Resolver] = {
            ("Order", "customer"): lambda o, _a: self.data.customers.nodes.get(o.get("_customer", 0)),
            ("Order", "billingAddress"): self._order_address,
            ("Order", "shippingAddress"): self._order_address,
            ("Order", "displayAddress"): self._order_address,
            ("Order", "originalTotalPriceSet"): lambda o, _a: o["totalPriceSet"],
            ("Order", "totalReceivedSet"): lambda o, _a: o["totalPriceSet"],
            ("Order", "netPaymentSet"): lambda o, _a: o["currentTotalPriceSet"],
            ("Order", "subtotalPriceSet"): lambda o, _a: _minus(o["totalPriceSet"], o["totalShippingPriceSet"]),
            ("Order", "currentSubtotalPriceSet"): lambda o, _a: _minus(
                o["currentTotalPriceSet"], o["totalShippingPriceSet"]
            ),
            ("Order", "currentShippingPriceSet"): lambda o, _a: o["totalShippingPriceSet"],
            ("Order", "subtotalLineItemsQuantity"): lambda o, _a: _quantity(o),
            ("Order", "currentSubtotalLineItemsQuantity"): lambda o, _a: 0 if _refunded(o) else _quantity(o),
            ("Order", "confirmed"): lambda _o, _a: True,
            ("Order", "fullyPaid"): lambda _o, _a: True,
            ("Order", "fulfillable"): lambda o, _a: not o.get("cancelledAt") and not _refunded(o),
            ("Order", "refundable"): lambda o, _a: not o.get("cancelledAt") and not _refunded(o),
            ("Order", "requiresShipping"): lambda _o, _a: True,
            ("Order", "customerAcceptsMarketing"): self._accepts_marketing,
            ("Order", "customerLocale"): lambda _o, _a: "en",
            ("Order", "confirmationNumber"): lambda o, _a: _base36(int(o.get("_num", 0)))[-9:].upper(),
            ("Order", "paymentGatewayNames"): lambda _o, _a: ["shopify_payments"],
            ("Order", "statusPageUrl"): lambda o, _a: f"https://{SHOP_DOMAIN}/orders/{o.get('_num')}/status",
            ("Order", "refunds"): lambda o, a: list(o.get("refunds") or [])[: a.get("first") or None],
            ("Order", "transactions"): lambda o, a: _transactions(o)[: a.get("first") or None],
            ("Order", "transactionsCount"): lambda o, _a: {"count": len(_transactions(o)), "precision": "EXACT"},
            ("Order", "fulfillmentsCount"): lambda _o, _a: {"count": 0, "precision": "EXACT"},
        }
        for name, bag in _ORDER_MONEY.items():
            out[("Order", name)] = _shop_amount(bag, out.get(("Order", bag)))
        return out

    def _order_address(self, order: Node, _args: dict[str, Any]) -> Node | None:
        customer = self.data.customers.nodes.get(order.get("_customer", 0)) or {}
        address = customer.get("defaultAddress")
        return address if isinstance(address, Mapping) else None

    def _accepts_marketing(self, order: Node, _args: dict[str, Any]) -> bool:
        customer = self.data.customers.nodes.get(order.get("_customer", 0)) or {}
        consent = customer.get("emailMarketingConsent") or {}
        return bool(consent.get("marketingState") == "SUBSCRIBED")

    # ------------------------------------------------------------------ LineItem

    def _line_item(self) -> dict[tuple[str, str], Resolver]:
        out: dict[tuple[str, str], Resolver] = {
            ("LineItem", name): (lambda q: lambda li, _a: li.get("quantity", 0))(name)
            for name in ("currentQuantity", "refundableQuantity", "unfulfilledQuantity", "fulfillableQuantity")
        }
        for name, bag in _LINE_BAGS.items():
            out[("LineItem", name)] = (lambda b: lambda li, _a: li[b])(bag)
        for name, bag in _LINE_MONEY.items():
            out[("LineItem", name)] = _shop_amount(bag)
        out.update(
            {
                ("LineItem", "requiresShipping"): lambda _li, _a: True,
                ("LineItem", "taxable"): lambda _li, _a: True,
                ("LineItem", "restockable"): lambda _li, _a: True,
                ("LineItem", "canRestock"): lambda _li, _a: True,
                ("LineItem", "fulfillmentStatus"): lambda _li, _a: "unfulfilled",
            }
        )
        return out

    # ------------------------------------------------------------------ everything else

    def _other(self) -> dict[tuple[str, str], Resolver]:
        return {
            ("MailingAddress", "formatted"): _formatted,
            ("MailingAddress", "formattedArea"): lambda a, _x: (
                ", ".join(str(a[k]) for k in ("city", "province", "country") if a.get(k)) or None
            ),
            ("MailingAddress", "countryCode"): lambda a, _x: a.get("countryCodeV2"),
            ("Refund", "totalRefunded"): lambda r, _a: r["totalRefundedSet"]["shopMoney"],
            ("Product", "variants"): lambda p, a: paginate(
                list(p.get("variants") or []), a, unbounded=self.viewer.unbounded
            ),
            ("Product", "variantsCount"): lambda p, _a: {"count": len(p.get("variants") or []), "precision": "EXACT"},
            ("Product", "description"): lambda p, _a: p.get("title", ""),
            ("Product", "totalInventory"): lambda _p, _a: 0,
            ("ProductVariant", "inventoryQuantity"): lambda _v, _a: 0,
        }


# ---------------------------------------------------------------------------------------------- helpers


def _amount(value: Any) -> str:
    return str(Decimal(value).quantize(Decimal("0.01"))) if value is not None else "0.00"


def _minus(bag: Node, other: Node) -> dict[str, Any]:
    """``bag - other`` per currency (never below zero: a fully refunded order keeps no subtotal)."""
    out: dict[str, Any] = {}
    for side in ("shopMoney", "presentmentMoney"):
        left, right = Decimal(bag[side]["amount"]), Decimal(other[side]["amount"])
        out[side] = {"amount": str(max(left - right, Decimal("0.00"))), "currencyCode": bag[side]["currencyCode"]}
    return out


def _quantity(order: Node) -> int:
    return sum(int(li.get("quantity", 0)) for li in order.get("lineItems") or ())


def _refunded(order: Node) -> bool:
    return order.get("displayFinancialStatus") == "REFUNDED"


def _shop_amount(bag: str, derive: Resolver | None = None) -> Resolver:
    """A deprecated ``Money`` field: the shop amount of the MoneyBag ``bag`` (held, or derived by ``derive``)."""

    def resolve(node: Node, args: dict[str, Any]) -> str | None:
        value = derive(node, args) if derive is not None else node.get(bag)
        return str(value["shopMoney"]["amount"]) if isinstance(value, Mapping) else None

    return resolve


def _transactions(order: Node) -> list[dict[str, Any]]:
    """The payment of the order, and its refund if it has one."""
    number = int(order.get("_num", 0))
    base = {
        "_currency": order.get("_currency"),
        "_presentment": order.get("_presentment"),
        "status": "SUCCESS",
        "gateway": "shopify_payments",
        "formattedGateway": "Shopify Payments",
        "test": False,
        "order": order,
    }
    sale = {
        **base,
        "_num": number,
        "id": gid("OrderTransaction", number),
        "kind": "SALE",
        "amountSet": order["totalPriceSet"],
        "amount": order["totalPriceSet"]["shopMoney"]["amount"],
        "amountV2": order["totalPriceSet"]["shopMoney"],
        "createdAt": order["processedAt"],
        "processedAt": order["processedAt"],
    }
    out = [sale]
    for refund in order.get("refunds") or ():
        out.append(
            {
                **base,
                "_num": number + 1,
                "id": gid("OrderTransaction", number + 1),
                "kind": "REFUND",
                "amountSet": refund["totalRefundedSet"],
                "amount": refund["totalRefundedSet"]["shopMoney"]["amount"],
                "amountV2": refund["totalRefundedSet"]["shopMoney"],
                "createdAt": refund["createdAt"],
                "processedAt": refund["processedAt"],
                "parentTransaction": sale,
            }
        )
    return out


def _email_address(customer: Node, _args: dict[str, Any]) -> dict[str, Any] | None:
    email = customer.get("email")
    if not email:
        return None
    consent = customer.get("emailMarketingConsent") or {}
    state = consent.get("marketingState") or "NOT_SUBSCRIBED"
    return {
        "emailAddress": email,
        # CustomerEmailAddressMarketingState has no REDACTED: an erased customer reads as unsubscribed.
        "marketingState": "UNSUBSCRIBED" if state == "REDACTED" else state,
        "marketingOptInLevel": consent.get("marketingOptInLevel"),
        "marketingUpdatedAt": consent.get("consentUpdatedAt"),
        "marketingUnsubscribeUrl": f"https://{SHOP_DOMAIN}/unsubscribe?c={customer.get('_num')}",
        "openTrackingLevel": "UNKNOWN",
        "openTrackingUrl": f"https://{SHOP_DOMAIN}/open-tracking?c={customer.get('_num')}",
        "validFormat": "@" in str(email),
    }


def _sms_consent(customer: Node) -> dict[str, Any]:
    return {
        "marketingState": "NOT_SUBSCRIBED",
        "marketingOptInLevel": "SINGLE_OPT_IN",
        "consentUpdatedAt": None,
        "consentCollectedFrom": "OTHER",
    }


def _phone_number(customer: Node, _args: dict[str, Any]) -> dict[str, Any] | None:
    phone = customer.get("phone")
    if not phone:
        return None
    return {
        "phoneNumber": phone,
        "marketingState": "NOT_SUBSCRIBED",
        "marketingOptInLevel": None,
        "marketingUpdatedAt": None,
        "marketingCollectedFrom": None,
    }


def _spend_tier(spent: Any) -> str:
    value = Decimal(spent or 0)
    return next((tier for bound, tier in _SPEND_TIERS if value >= bound), "LOW")


def _duration(created: Any, now: datetime) -> str:
    """How long the customer has been one, the way the admin writes it ("about 2 years")."""
    since = parse_iso(created) if isinstance(created, str) else None
    if since is None:
        return ""
    days = max((now - since).days, 0)
    for size, unit in ((365, "year"), (30, "month"), (1, "day")):
        if days >= size:
            count = days // size
            return f"about {count} {unit}{'s' if count > 1 else ''}"
    return "less than a day"


def _formatted(address: Node, args: dict[str, Any]) -> list[str]:
    lines: list[str] = []
    if args.get("withName") and address.get("name"):
        lines.append(str(address["name"]))
    if args.get("withCompany") and address.get("company"):
        lines.append(str(address["company"]))
    lines.extend(str(address[k]) for k in ("address1", "address2") if address.get(k))
    area = " ".join(str(address[k]) for k in ("zip", "city") if address.get(k))
    if area:
        lines.append(area)
    if address.get("province"):
        lines.append(str(address["province"]))
    if address.get("country"):
        lines.append(str(address["country"]))
    return lines


def _base36(number: int) -> str:
    digits = "0123456789abcdefghijklmnopqrstuvwxyz"
    out = ""
    while True:
        number, rest = divmod(number, 36)
        out = digits[rest] + out
        if number == 0:
            return out
