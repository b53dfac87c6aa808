"""One GraphQL request to the emulated shop: validation, cost and throttling, then execution with the root
fields and mutations the shop serves (the fields below the roots come from :mod:`.emulator_model` and the
schema's defaults)."""

from __future__ import annotations

import json
import secrets
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from graphql import DocumentNode, OperationType

from . import emulator_graphql as gql
from .emulator_data import (
    CUSTOMER_DEFAULT,
    CUSTOMER_FIELDS,
    ORDER_DEFAULT,
    ORDER_FIELDS,
    SHOP_DOMAIN,
    SHOP_NAME,
    VARIANT_OFFSET,
    Resource,
    gid,
    iso,
    number_of,
)
from .emulator_model import CUSTOMER_SORTS, ORDER_SORTS, ShopModel
from .emulator_schema import serving_schema, validation_errors
from .emulator_search import Kind as SearchKind
from .emulator_search import SearchField, SearchSyntaxError, matcher, parse, time_bounds
from .settings import MAX_QUERY_COST

if TYPE_CHECKING:
    from .emulator import BulkJob, ShopifyEmulator

Node = Mapping[str, Any]

RECENT_ORDERS = timedelta(days=60)
# From this version on, bulk query results no longer list children right after their parent by default.
UNGROUPED_FROM = "2026-01"
COUNT_LIMIT = 10_000
BULK_MAX_CONNECTIONS = 5
BULK_MAX_DEPTH = 2
_ACCESS_DOC = "https://shopify.dev/api/usage/access-scopes"
# The mutations the shop carries out; any other mutation of the schema is refused rather than faked.
EMULATED_MUTATIONS = frozenset(
    {
        "tagsAdd",
        "tagsRemove",
        "customerCreate",
        "customerUpdate",
        "customerSet",
        "customerDelete",
        "bulkOperationRunQuery",
        "bulkOperationRunMutation",
        "bulkOperationCancel",
        "stagedUploadsCreate",
    }
)
MAX_TAGS = 250
MAX_TAG_LENGTH = 255


class Call:
    """One GraphQL request.

    Args:
        emulator: the shop.
        version: the API version of the path.
        scopes: the token's scopes.
        base: scheme and host of the request (for the links the answer carries).
        variables: the request's variables.
    """

    def __init__(
        self, emulator: ShopifyEmulator, version: str, scopes: frozenset[str], base: str, variables: Any
    ) -> None:
        self.em = emulator
        self.version = version
        self.scopes = scopes
        self.base = base
        self.variables = variables if isinstance(variables, dict) else {}
        self.warnings: list[dict[str, Any]] = []
        self.unbounded = False
        self.schema, _ = serving_schema(version)
        self.defaults = gql.Defaults(currency=emulator.data.currency, url=f"https://{SHOP_DOMAIN}")

    # ------------------------------------------------------------------ the request

    def run(self, document: str, operation_name: str | None) -> dict[str, Any]:
        """The answer to ``document`` (validation errors, refusals and THROTTLED included)."""
        problems = validation_errors(self.version, document)
        if problems:
            return {"errors": [{"message": m, "extensions": {"code": "GRAPHQL_VALIDATION_FAILED"}} for m in problems]}
        try:
            ast = gql.parsed(document)
            operation = gql.operation_of(ast, operation_name)
            if operation.operation == OperationType.MUTATION:
                _refuse_unemulated(gql.root_fields(operation))
            requested = gql.requested_cost(self.schema, ast, operation_name, self.variables)
        except gql.QueryError as exc:
            return {"errors": [exc.error]}
        if requested > MAX_QUERY_COST:
            return {
                "errors": [
                    {
                        "message": f"Query cost is {requested}, which exceeds the single query max cost limit"
                        f" ({MAX_QUERY_COST:.0f}). See https://shopify.dev/concepts/about-apis/rate-limits for more"
                        " information on how the cost of a query is calculated. To query larger amounts of data"
                        " with fewer limits, bulk operations should be used instead.",
                        "extensions": {"code": "MAX_COST_EXCEEDED", "cost": requested, "maxCost": MAX_QUERY_COST},
                    }
                ],
                "extensions": {"cost": self._cost(requested, None, self.em.bucket.status())},
            }
        decision = self.em.bucket.hit(requested)
        if not decision.allowed:
            self.em.stats.throttled += 1
            return {
                "errors": [
                    {
                        "message": "Throttled",
                        "extensions": {
                            "code": "THROTTLED",
                            "documentation": "https://shopify.dev/api/usage/rate-limits",
                        },
                    }
                ],
                "extensions": {"cost": self._cost(requested, None, decision)},
            }
        return self._execute(ast, operation_name, requested)

    def _execute(self, ast: DocumentNode, operation_name: str | None, requested: int) -> dict[str, Any]:
        executor = gql.Executor(self.schema, self.resolvers(), self.defaults)
        outcome = executor.run(ast, operation_name, self.variables)
        actual = min(outcome.cost, requested)
        status = self.em.bucket.refund(max(requested - actual, 0))
        self.em.stats.requested_points += requested
        self.em.stats.actual_points += actual
        answer: dict[str, Any] = {}
        if outcome.errors:
            answer["errors"] = outcome.errors
        if outcome.data is not None or any("path" in e for e in outcome.errors):
            answer["data"] = outcome.data
        extensions: dict[str, Any] = {"cost": self._cost(requested, actual, status)}
        if self.warnings:
            extensions["search"] = self.warnings
        answer["extensions"] = extensions
        return answer

    def _cost(self, requested: float, actual: float | None, status: Any) -> dict[str, Any]:
        return {
            "requestedQueryCost": requested,
            "actualQueryCost": actual,
            "throttleStatus": {
                "maximumAvailable": status.capacity,
                "currentlyAvailable": round(status.available, 3),
                "restoreRate": status.restore_rate,
            },
        }

    # ------------------------------------------------------------------ resolvers

    def resolvers(self) -> dict[tuple[str, str], gql.Resolver]:
        """The root fields and mutations of the shop, and the derived fields below them."""
        data = self.em.data
        out = ShopModel(data, self, self.defaults).resolvers()
        out.update(
            {
                ("QueryRoot", "customers"): lambda _o, a: self._list(data.customers, a, "customers"),
                ("QueryRoot", "orders"): lambda _o, a: self._list(data.orders, a, "orders"),
                ("QueryRoot", "customersCount"): lambda _o, a: self._count(data.customers, a, "customersCount"),
                ("QueryRoot", "ordersCount"): lambda _o, a: self._count(data.orders, a, "ordersCount"),
                ("QueryRoot", "customer"): lambda _o, a: self._typed(a.get("id"), "Customer", "customer"),
                ("QueryRoot", "order"): lambda _o, a: self._typed(a.get("id"), "Order", "order"),
                ("QueryRoot", "product"): lambda _o, a: self._typed(a.get("id"), "Product", "product"),
                ("QueryRoot", "productVariant"): lambda _o, a: self._typed(
                    a.get("id"), "ProductVariant", "productVariant"
                ),
                ("QueryRoot", "refund"): lambda _o, a: self._typed(a.get("id"), "Refund", "refund"),
                ("QueryRoot", "bulkOperation"): lambda _o, a: self._typed(
                    a.get("id"), "BulkOperation", "bulkOperation"
                ),
                ("QueryRoot", "customerByIdentifier"): lambda _o, a: self._customer_by(a.get("identifier") or {}),
                ("QueryRoot", "orderByIdentifier"): lambda _o, a: self._typed(
                    (a.get("identifier") or {}).get("id"), "Order", "orderByIdentifier"
                ),
                ("QueryRoot", "products"): lambda _o, a: gql.paginate(
                    [data.products[k] for k in sorted(data.products)], a, unbounded=self.unbounded
                ),
                ("QueryRoot", "bulkOperations"): self._bulk_operations,
                ("QueryRoot", "node"): lambda _o, a: self._node(str(a.get("id")), "node"),
                ("QueryRoot", "nodes"): lambda _o, a: [self._node(str(i), "nodes") for i in a.get("ids") or []],
                ("QueryRoot", "shop"): lambda _o, _a: self._shop(),
                ("QueryRoot", "currentAppInstallation"): lambda _o, _a: self._installation(),
                ("QueryRoot", "currentBulkOperation"): lambda _o, a: self._current(str(a.get("type") or "QUERY")),
                ("Mutation", "tagsAdd"): lambda _o, a: self._tags(a, add=True),
                ("Mutation", "tagsRemove"): lambda _o, a: self._tags(a, add=False),
                ("Mutation", "customerCreate"): lambda _o, a: self._customer_create(a.get("input") or {}),
                ("Mutation", "customerUpdate"): lambda _o, a: self._customer_update(a.get("input") or {}),
                ("Mutation", "customerSet"): lambda _o, a: self._customer_set(
                    a.get("identifier"), a.get("input") or {}
                ),
                ("Mutation", "customerDelete"): lambda _o, a: self._customer_delete(a.get("input") or {}),
                ("Mutation", "bulkOperationRunQuery"): lambda _o, a: self._run_query(a),
                ("Mutation", "bulkOperationRunMutation"): lambda _o, a: self._run_mutation(a),
                ("Mutation", "bulkOperationCancel"): lambda _o, a: self._cancel(str(a.get("id"))),
                ("Mutation", "stagedUploadsCreate"): lambda _o, a: self._staged(a),
            }
        )
        return out

    # The Viewer protocol of emulator_model.

    def require(self, scope: str, field_name: str) -> None:
        """Raise ``ACCESS_DENIED`` unless the token has ``scope`` (a write scope implies its read scope)."""
        if scope in self.scopes or (scope.startswith("read_") and "write_" + scope[5:] in self.scopes):
            return
        raise gql.QueryError(
            f"Access denied for {field_name} field. Required access: `{scope}` access scope.",
            code="ACCESS_DENIED",
            documentation=_ACCESS_DOC,
            requiredAccess=f"`{scope}` access scope.",
        )

    def order_filter(self, name: str, query: Any) -> Callable[[Node], bool]:
        """The orders a ``query:`` keeps, within the token's order horizon."""
        return self._filter(self.em.data.orders, name, query)

    def now(self) -> datetime:
        """The shop's current time."""
        return self.em.ctx.clock.now()

    # ------------------------------------------------------------------ lists and lookups

    def _list(self, resource: Resource, args: Mapping[str, Any], name: str) -> gql.Connection:
        self.require("read_customers" if resource.kind == "Customer" else "read_orders", name)
        size, from_end = gql.page_size(args, unbounded=self.unbounded)
        keep = self._filter(resource, name, args.get("query"))
        sort = str(args.get("sortKey") or "ID")
        if sort == "RELEVANCE":
            sort = "ID"
        if sort in ("ID", "UPDATED_AT") and not from_end and not args.get("reverse") and not args.get("before"):
            return self._scan(resource, sort, keep, args, size)
        # Any other order: sort the matching nodes, then page them by position (cursors stay keyed by id).
        sorts = CUSTOMER_SORTS if resource.kind == "Customer" else ORDER_SORTS
        key = sorts.get(sort, sorts["ID"])
        nodes = sorted((n for n in resource.nodes.values() if keep(n)), key=lambda n: (key(n), n["_num"]))
        return _keyed_page(nodes, args, unbounded=self.unbounded)

    def _scan(
        self, resource: Resource, sort: str, keep: Callable[[Node], bool], args: Mapping[str, Any], size: int | None
    ) -> gql.Connection:
        """Forward pages in id or ``updatedAt`` order straight from the resource's index (the connector's pages)."""
        tree = self._parsed(args.get("query"))
        low, high = time_bounds(tree, "updated_at")
        items: list[Mapping[str, Any]] = []
        cursors: list[str] = []
        more = False
        for node, cursor in resource.scan(sort, args.get("after"), low if sort == "UPDATED_AT" else None):
            if sort == "UPDATED_AT" and high is not None and node["updatedAt"] > iso(high):
                break
            if not keep(node):
                continue
            if size is not None and len(items) >= size:
                more = True
                break
            items.append(node)
            cursors.append(cursor)
        return gql.Connection(items, cursors, has_next=more, has_previous=bool(args.get("after")))

    def _parsed(self, query: Any) -> Any:
        try:
            return parse(str(query)) if query else None
        except SearchSyntaxError:
            return None

    def _filter(self, resource: Resource, name: str, query: Any) -> Callable[[Node], bool]:
        fields, default = (
            (CUSTOMER_FIELDS, CUSTOMER_DEFAULT) if resource.kind == "Customer" else (ORDER_FIELDS, ORDER_DEFAULT)
        )
        try:
            tree = parse(str(query)) if query else None
        except SearchSyntaxError as exc:
            self.warnings.append({"path": [name], "query": str(query), "warnings": [{"message": str(exc)}]})
            tree = None
        predicate, unknown = matcher(tree, fields, default)
        if unknown:
            self.warnings.append(
                {
                    "path": [name],
                    "query": str(query),
                    "warnings": [{"field": f, "message": "Invalid search field for this query."} for f in unknown],
                }
            )
        if resource.kind == "Order" and "read_all_orders" not in self.scopes:
            horizon = iso(self.em.ctx.clock.now() - RECENT_ORDERS)
            return lambda n: n["processedAt"] >= horizon and predicate(n)
        return predicate

    def _count(self, resource: Resource, args: Mapping[str, Any], name: str) -> dict[str, Any]:
        self.require("read_customers" if resource.kind == "Customer" else "read_orders", name)
        keep = self._filter(resource, name, args.get("query"))
        limit = args.get("limit")
        cap = limit if isinstance(limit, int) and limit >= 0 else COUNT_LIMIT
        total = 0
        for node in resource.nodes.values():
            if keep(node):
                total += 1
                if total > cap:
                    return {"count": cap, "precision": "AT_LEAST"}
        return {"count": total, "precision": "EXACT"}

    def _typed(self, global_id: Any, kind: str, field_name: str) -> Node | None:
        """``customer(id:)`` and its kin: the node when the id names one of ``kind``."""
        if not isinstance(global_id, str):
            return None
        found = self._node(global_id, field_name)
        return found if found is not None and str(found.get("id", "")).startswith(f"gid://shopify/{kind}/") else None

    def _node(self, global_id: str, field_name: str) -> Node | None:
        kind = global_id.split("/")[3] if global_id.count("/") >= 4 else ""
        number = number_of(global_id, kind)
        if number is None:
            raise gql.QueryError(f"Invalid global id '{global_id}'", code="argumentLiteralsIncompatible")
        return self._lookup(kind, number, field_name)

    def _lookup(self, kind: str, number: int, field_name: str) -> Node | None:
        data = self.em.data
        if kind in ("Customer", "MailingAddress"):
            self.require("read_customers", field_name)
            if kind == "Customer":
                return data.customers.nodes.get(number)
            holder = data.customers.nodes.get(number - 1) or {}
            address: Node | None = next((a for a in holder.get("addresses") or () if a.get("_num") == number), None)
            return address
        if kind in ("Order", "LineItem", "Refund"):
            self.require("read_orders", field_name)
            owner = {"Order": number, "LineItem": number // 10, "Refund": number - 1}[kind]
            order = data.orders.nodes.get(owner)
            if order is None or not self._filter(data.orders, field_name, None)(order):
                return None
            if kind == "Order":
                return order
            children = order.get("lineItems" if kind == "LineItem" else "refunds") or ()
            child: Node | None = next((c for c in children if c.get("_num") == number), None)
            return child
        if kind == "Product":
            return data.products.get(number)
        if kind == "ProductVariant":
            product = data.products.get(number - VARIANT_OFFSET) or {}
            return next(iter(product.get("variants") or ()), None)
        if kind == "BulkOperation":
            job = self.em.jobs.get(number)
            return self.em.job_node(job, self.base) if job else None
        if kind == "Shop" and number == 1:
            return self._shop()
        if kind == "AppInstallation" and number == 1:
            return self._installation()
        return None

    def _customer_by(self, identifier: Mapping[str, Any]) -> Node | None:
        self.require("read_customers", "customerByIdentifier")
        if identifier.get("id"):
            return self._typed(identifier["id"], "Customer", "customerByIdentifier")
        if identifier.get("emailAddress"):
            return self.em.data.customer_by(email=str(identifier["emailAddress"]))
        if identifier.get("phoneNumber"):
            return self.em.data.customer_by(phone=str(identifier["phoneNumber"]))
        return None

    def _shop(self) -> dict[str, Any]:
        currency = self.em.data.currency
        presentment = sorted({currency} | {o["_presentment"] for o in self.em.data.orders.nodes.values()})
        url = f"https://{SHOP_DOMAIN}"
        return {
            "_num": 1,
            "_currency": currency,
            "id": gid("Shop", 1),
            "name": SHOP_NAME,
            "email": "owner@sandbox-shop.example",
            "contactEmail": "hello@sandbox-shop.example",
            "shopOwnerName": "Sandbox Owner",
            "myshopifyDomain": SHOP_DOMAIN,
            "url": url,
            "storefrontUrl": url,
            "primaryDomain": {"_num": 1, "id": gid("Domain", 1), "host": SHOP_DOMAIN, "url": url, "sslEnabled": True},
            "domains": [{"_num": 1, "id": gid("Domain", 1), "host": SHOP_DOMAIN, "url": url, "sslEnabled": True}],
            "currencyCode": currency,
            "enabledPresentmentCurrencies": presentment,
            "ianaTimezone": "Europe/Berlin",
            "timezoneAbbreviation": "CET",
            "timezoneOffset": "+0100",
            "timezoneOffsetMinutes": 60,
            "weightUnit": "KILOGRAMS",
            "unitSystem": "METRIC_SYSTEM",
            "orderNumberFormatPrefix": "#",
            "taxesIncluded": True,
            "checkoutApiSupported": True,
            "plan": {
                "displayName": self.em.plan.title(),
                "publicDisplayName": self.em.plan.title(),
                "partnerDevelopment": False,
                "shopifyPlus": self.em.plan == "plus",
            },
        }

    def _installation(self) -> dict[str, Any]:
        scopes = [{"handle": s, "description": s.replace("_", " ")} for s in sorted(self.scopes)]
        return {
            "_num": 1,
            "id": gid("AppInstallation", 1),
            "accessScopes": scopes,
            "launchUrl": f"https://{SHOP_DOMAIN}/admin/apps/audience-hub",
            "app": {
                "_num": 1,
                "id": gid("App", 1),
                "title": "Audience Hub",
                "handle": "audience-hub",
                "apiKey": "sandbox",
                "developerName": "Audience Hub",
                "requestedAccessScopes": scopes,
                "availableAccessScopes": scopes,
                "embedded": False,
            },
        }

    def _current(self, kind: str) -> dict[str, Any] | None:
        jobs = [j for j in self.em.jobs.values() if j.type == kind]
        return self.em.job_node(jobs[-1], self.base) if jobs else None

    def _bulk_operations(self, _obj: Any, args: Mapping[str, Any]) -> gql.Connection:
        nodes = [self.em.job_node(j, self.base) for j in self.em.jobs.values()]
        tree = self._parsed(args.get("query"))
        fields = {
            "status": _search_field("text", "status"),
            "operation_type": _search_field("text", "type"),
            "created_at": _search_field("time", "createdAt"),
            "id": _search_field("id", "_num"),
        }
        keep, _unknown = matcher(tree, fields, ())
        chosen = [n for n in nodes if keep(n)]
        if str(args.get("sortKey") or "CREATED_AT") == "COMPLETED_AT":
            chosen.sort(key=lambda n: (n["completedAt"] or "", n["_num"]))
        return gql.paginate(chosen, args, unbounded=self.unbounded)

    # ------------------------------------------------------------------ customer mutations

    def _tags(self, args: Mapping[str, Any], *, add: bool) -> dict[str, Any]:
        global_id = str(args.get("id"))
        kind = global_id.split("/")[3] if global_id.count("/") >= 4 else ""
        number = number_of(global_id, kind)
        if number is None:
            raise gql.QueryError(f"Invalid global id '{global_id}'", code="argumentLiteralsIncompatible")
        if kind not in ("Customer", "Order"):
            return {"node": None, "userErrors": [{"field": ["id"], "message": "Resource not found"}]}
        self.require("write_customers" if kind == "Customer" else "write_orders", "tagsAdd" if add else "tagsRemove")
        resource = self.em.data.customers if kind == "Customer" else self.em.data.orders
        node = resource.nodes.get(number)
        if node is None:
            return {"node": None, "userErrors": [{"field": ["id"], "message": f"{kind} does not exist"}]}
        tags = _tag_list(args.get("tags"))
        if any(len(t) > MAX_TAG_LENGTH for t in tags):
            return {
                "node": node,
                "userErrors": [{"field": ["tags"], "message": "Tags is too long (maximum is 255 characters)"}],
            }
        current = {t.casefold() for t in node.get("tags") or []}
        if add and len(current | {t.casefold() for t in tags}) > MAX_TAGS:
            return {"node": node, "userErrors": [{"field": ["tags"], "message": "Tags cannot exceed 250"}]}
        self.em.data.change_tags(number, tags, add=add, now=self.now())
        return {"node": node, "userErrors": []}

    def _customer_input(self, given: Mapping[str, Any], number: int | None) -> list[dict[str, Any]]:
        """Shopify's ``userErrors`` for a customer input (an empty list when it is acceptable)."""
        errors: list[dict[str, Any]] = []
        email = given.get("email")
        if email and ("@" not in str(email) or str(email).startswith("@") or str(email).endswith("@")):
            errors.append({"field": ["email"], "message": "Email is invalid", "code": "INVALID"})
        elif email:
            owner = self.em.data.customer_by(email=str(email))
            if owner is not None and owner["_num"] != number:
                errors.append({"field": ["email"], "message": "Email has already been taken", "code": "TAKEN"})
        tags = _tag_list(given.get("tags"))
        if any(len(t) > MAX_TAG_LENGTH for t in tags):
            errors.append(
                {"field": ["tags"], "message": "Tags is too long (maximum is 255 characters)", "code": "TOO_LONG"}
            )
        if number is None and not any(given.get(k) for k in ("email", "phone", "firstName", "lastName")):
            errors.append(
                {
                    "field": ["input"],
                    "message": "A name, phone number, or email address must be present",
                    "code": "BLANK",
                }
            )
        return errors

    def _customer_create(self, given: Mapping[str, Any]) -> dict[str, Any]:
        self.require("write_customers", "customerCreate")
        if given.get("id"):
            return {"customer": None, "userErrors": [{"field": ["id"], "message": "Id must not be set"}]}
        errors = self._customer_input(given, None)
        if errors:
            return {"customer": None, "userErrors": [_user_error(e) for e in errors]}
        return {"customer": self.em.data.create_customer(given, self.now()), "userErrors": []}

    def _customer_update(self, given: Mapping[str, Any]) -> dict[str, Any]:
        self.require("write_customers", "customerUpdate")
        number = number_of(str(given.get("id") or ""), "Customer")
        if number is None or number not in self.em.data.customers.nodes:
            return {"customer": None, "userErrors": [{"field": ["id"], "message": "Customer does not exist"}]}
        errors = self._customer_input(given, number)
        if errors:
            return {"customer": None, "userErrors": [_user_error(e) for e in errors]}
        return {"customer": self.em.data.update_customer(number, given, self.now()), "userErrors": []}

    def _customer_set(self, identifier: Any, given: Mapping[str, Any]) -> dict[str, Any]:
        """``customerSet``: update the customer the identifier names, or create one (an upsert)."""
        self.require("write_customers", "customerSet")
        data = self.em.data
        found: Node | None = None
        if isinstance(identifier, Mapping):
            if identifier.get("id"):
                number = number_of(str(identifier["id"]), "Customer")
                found = data.customers.nodes.get(number) if number is not None else None
                if found is None:
                    return _set_error(["identifier", "id"], "Customer does not exist", "NOT_FOUND")
            elif identifier.get("email"):
                if given.get("email") and str(given["email"]).casefold() != str(identifier["email"]).casefold():
                    return _set_error(["input", "email"], "The email does not match the identifier", "INPUT_MISMATCH")
                found = data.customer_by(email=str(identifier["email"]))
            elif identifier.get("phone"):
                found = data.customer_by(phone=str(identifier["phone"]))
        if given.get("id") and identifier:
            return _set_error(["input", "id"], "An id can't be given with an identifier", "ID_NOT_ALLOWED")
        fields = dict(given)
        if found is None and isinstance(identifier, Mapping):
            for source, target in (("email", "email"), ("phone", "phone")):
                if identifier.get(source) and not fields.get(target):
                    fields[target] = identifier[source]
        number = int(found["_num"]) if found is not None else None
        errors = self._customer_input(fields, number)
        if errors:
            return {"customer": None, "userErrors": errors}
        if number is None:
            return {"customer": data.create_customer(fields, self.now()), "userErrors": []}
        return {"customer": data.update_customer(number, fields, self.now()), "userErrors": []}

    def _customer_delete(self, given: Mapping[str, Any]) -> dict[str, Any]:
        self.require("write_customers", "customerDelete")
        global_id = str(given.get("id") or "")
        number = number_of(global_id, "Customer")
        node = self.em.data.customers.nodes.get(number) if number is not None else None
        out: dict[str, Any] = {"deletedCustomerId": None, "shop": self._shop(), "userErrors": []}
        if node is None or number is None:
            out["userErrors"] = [{"field": ["id"], "message": "Customer can't be found"}]
        elif node.get("_orders"):
            # Shopify keeps customers that have orders: they can only be disabled or have their data erased.
            out["userErrors"] = [{"field": ["id"], "message": "Customer can't be deleted because they have orders"}]
        else:
            self.em.data.delete_customer(number)
            out["deletedCustomerId"] = global_id
        return out

    # ------------------------------------------------------------------ bulk operations

    def _start_refusal(self, kind: str) -> dict[str, Any] | None:
        running = self.em.running(kind)
        allowed = self.em.at_once(kind, self.version)
        if len(running) < allowed:
            return None
        label = "query" if kind == "QUERY" else "mutation"
        if allowed > 1:
            return _bulk_refused("LIMIT_REACHED", f"A maximum of {allowed} bulk {label} operations can run at a time.")
        return _in_progress(label, running[0])

    def _run_query(self, args: Mapping[str, Any]) -> dict[str, Any]:
        query = str(args.get("query") or "")
        refused = self._start_refusal("QUERY")
        if refused is not None:
            return refused
        problems = validation_errors(self.version, query)
        try:
            if problems:
                raise gql.QueryError("; ".join(problems))
            ast = gql.parsed(query)
            operation = gql.operation_of(ast, None)
            if operation.operation != OperationType.QUERY:
                raise gql.QueryError("Bulk queries must be queries")
            shapes = gql.bulk_shape(self.schema, ast)
            count, depth = gql.connection_depth(shapes)
            if not shapes or not all(s.connection for s in shapes.values()):
                raise gql.QueryError(
                    "Bulk queries must contain at least one connection, and no top-level node or nodes"
                )
            if count > BULK_MAX_CONNECTIONS or depth > BULK_MAX_DEPTH:
                raise gql.QueryError(
                    f"Bulk queries support up to {BULK_MAX_CONNECTIONS} connections, nested at most"
                    f" {BULK_MAX_DEPTH} levels deep"
                )
        except gql.QueryError as exc:
            return _bulk_refused("INVALID", f"Invalid bulk query: {exc}")
        grouped = bool(args.get("groupObjects")) or self.version < UNGROUPED_FROM
        began = self.em.ctx.clock.monotonic()
        lines, objects, roots, fail = self._bulk_lines(ast, shapes, grouped)
        job = self.em.start_job("QUERY", query, lines, objects, roots, fail, started=began)
        return {"bulkOperation": self.em.job_node(job, self.base), "userErrors": []}

    def _bulk_lines(
        self, ast: DocumentNode, shapes: Mapping[str, gql.Shape], grouped: bool
    ) -> tuple[bytes, int, int, str | None]:
        """Execute a bulk query over everything; its JSONL lines, object and root counts, and a failure code."""
        self.unbounded = True
        try:
            outcome = gql.Executor(self.schema, self.resolvers(), self.defaults, unbounded=True).run(ast, None, {})
        finally:
            self.unbounded = False
        if outcome.errors or outcome.data is None:
            codes = {str((e.get("extensions") or {}).get("code")) for e in outcome.errors}
            return b"", 0, 0, "ACCESS_DENIED" if "ACCESS_DENIED" in codes else "INTERNAL_SERVER_ERROR"
        lines: list[bytes] = []
        later: list[bytes] = []
        root_count = 0
        for key, shape in shapes.items():
            for node in _connection_nodes(outcome.data.get(key)):
                root_count += 1
                children: list[bytes] = []
                lines.append(_flatten(node, shape.fields, None, children))
                (lines if grouped else later).extend(children)
        # Ungrouped: children after all roots, the last parent's first, so no reader can rely on adjacency.
        lines.extend(reversed(later))
        return b"".join(lines), len(lines), root_count, None

    def _run_mutation(self, args: Mapping[str, Any]) -> dict[str, Any]:
        refused = self._start_refusal("MUTATION")
        if refused is not None:
            return refused
        path = str(args.get("stagedUploadPath") or "")
        content = self.em.uploads.get(path)
        if content is None:
            return _bulk_refused("INVALID", "The staged upload path is invalid or the file has not been uploaded.")
        mutation = str(args.get("mutation") or "")
        problems = validation_errors(self.version, mutation)
        try:
            if problems:
                raise gql.QueryError("; ".join(problems))
            ast = gql.parsed(mutation)
            operation = gql.operation_of(ast, None)
            names = gql.root_fields(operation)
            if operation.operation != OperationType.MUTATION or len(names) != 1:
                raise gql.QueryError("A bulk mutation runs exactly one mutation field")
            _refuse_unemulated(names)
        except gql.QueryError as exc:
            return _bulk_refused("INVALID", f"Invalid bulk mutation: {exc}")
        out = [self._mutation_line(ast, raw, number) for number, raw in enumerate(content.splitlines())]
        job = self.em.start_job("MUTATION", mutation, b"".join(out), len(out), len(out), None)
        return {"bulkOperation": self.em.job_node(job, self.base), "userErrors": []}

    def _mutation_line(self, ast: DocumentNode, raw: bytes, number: int) -> bytes:
        line: dict[str, Any]
        try:
            variables = json.loads(raw)
        except ValueError:
            line = {"errors": [{"message": "Invalid JSON on this line"}]}
        else:
            executor = gql.Executor(self.schema, self.resolvers(), self.defaults)
            outcome = executor.run(ast, None, variables if isinstance(variables, dict) else {})
            line = {"data": outcome.data} if not outcome.errors else {"errors": outcome.errors, "data": outcome.data}
        line["__lineNumber"] = number
        return json.dumps(line).encode() + b"\n"

    def _cancel(self, global_id: str) -> dict[str, Any]:
        number = number_of(global_id, "BulkOperation")
        job = self.em.jobs.get(number) if number is not None else None
        if job is None:
            return {
                "bulkOperation": None,
                "userErrors": [{"field": ["id"], "message": "Bulk operation does not exist"}],
            }
        status = job.status(self.em.ctx.clock.monotonic())
        if status not in ("CREATED", "RUNNING"):
            message = f"A bulk operation cannot be canceled when it is {status.lower()}"
            return {
                "bulkOperation": self.em.job_node(job, self.base),
                "userErrors": [{"field": None, "message": message}],
            }
        self.em.cancel(job)
        return {"bulkOperation": self.em.job_node(job, self.base), "userErrors": []}

    def _staged(self, args: Mapping[str, Any]) -> dict[str, Any]:
        targets = []
        errors = []
        for item in args.get("input") or []:
            if not isinstance(item, Mapping) or item.get("resource") != "BULK_MUTATION_VARIABLES":
                errors.append(
                    {"field": ["input"], "message": "The sandbox only emulates BULK_MUTATION_VARIABLES uploads"}
                )
                continue
            key = f"tmp/sandbox-shop/bulk/{secrets.token_hex(8)}/{item.get('filename') or 'upload.jsonl'}"
            url = f"{self.base}/staged-uploads"
            targets.append(
                {
                    "url": url,
                    "resourceUrl": f"{url}/{key}",
                    "parameters": [
                        {"name": "Content-Type", "value": str(item.get("mimeType") or "text/jsonl")},
                        {"name": "success_action_status", "value": "201"},
                        {"name": "acl", "value": "private"},
                        {"name": "key", "value": key},
                        {"name": "x-goog-algorithm", "value": "GOOG4-RSA-SHA256"},
                        {"name": "x-goog-credential", "value": f"sandbox-{secrets.token_hex(6)}"},
                        {"name": "x-goog-signature", "value": secrets.token_hex(32)},
                        {"name": "policy", "value": secrets.token_urlsafe(24)},
                    ],
                }
            )
        return {"stagedTargets": targets, "userErrors": errors}


# ---------------------------------------------------------------------------------------------- helpers


def _refuse_unemulated(names: list[str]) -> None:
    missing = [n for n in names if n not in EMULATED_MUTATIONS]
    if missing:
        raise gql.QueryError(
            f"The sandbox does not carry out the mutation(s) {', '.join(missing)} (it carries out:"
            f" {', '.join(sorted(EMULATED_MUTATIONS))})",
            code="NOT_EMULATED",
        )


def _keyed_page(nodes: Sequence[Node], args: Mapping[str, Any], *, unbounded: bool) -> gql.Connection:
    """A page of ``nodes`` (already sorted) whose cursors carry each node's id, like Shopify's keyset cursors."""
    return gql.paginate(nodes, args, unbounded=unbounded, key=lambda n: int(n["_num"]))


def _search_field(kind: SearchKind, key: str) -> SearchField:
    return SearchField(kind, lambda n: n.get(key))


def _in_progress(kind: str, job: BulkJob) -> dict[str, Any]:
    running = gid("BulkOperation", job.number)
    return _bulk_refused(
        "OPERATION_IN_PROGRESS", f"A bulk {kind} operation for this app and shop is already in progress: {running}."
    )


def _bulk_refused(code: str, message: str) -> dict[str, Any]:
    return {"bulkOperation": None, "userErrors": [{"field": ["query"], "message": message, "code": code}]}


def _user_error(error: Mapping[str, Any]) -> dict[str, Any]:
    """A ``UserError`` (field and message; the code is only part of ``CustomerSetUserError``)."""
    return {"field": error.get("field"), "message": error["message"]}


def _set_error(path: list[str], message: str, code: str) -> dict[str, Any]:
    return {"customer": None, "userErrors": [{"field": path, "message": message, "code": code}]}


def _tag_list(value: Any) -> list[str]:
    """Tags as Shopify reads them: a list, or one comma-separated string; every item is split on commas too."""
    items = value if isinstance(value, list) else [value] if isinstance(value, str) else []
    return [t.strip() for item in items for t in str(item).split(",") if t.strip()]


def _connection_nodes(rendered: Any) -> list[dict[str, Any]]:
    if not isinstance(rendered, dict):
        return []
    if isinstance(rendered.get("nodes"), list):
        return list(rendered["nodes"])
    return [e["node"] for e in rendered.get("edges") or [] if isinstance(e, dict) and isinstance(e.get("node"), dict)]


def _flatten(node: dict[str, Any], shapes: Mapping[str, gql.Shape], parent: str | None, children: list[bytes]) -> bytes:
    """The JSONL line of ``node`` without its nested connections, whose nodes go to ``children`` (``__parentId``)."""
    line = dict(node)
    nested: list[tuple[list[dict[str, Any]], Mapping[str, gql.Shape]]] = []
    for key, shape in shapes.items():
        if shape.connection and key in line:
            nested.append((_connection_nodes(line.pop(key)), shape.fields))
    if parent is not None:
        line["__parentId"] = parent
    for items, inner in nested:
        for child in items:
            grandchildren: list[bytes] = []
            children.append(_flatten(child, inner, str(node.get("id")), grandchildren))
            children.extend(grandchildren)
    return json.dumps(line, separators=(",", ":")).encode() + b"\n"
