"""A small GraphQL executor for the part of the Admin API the emulator serves, with Shopify's cost model.

The document is parsed by ``graphql-core`` (and, when the official schema is present, validated against it
first, see :mod:`.emulator_schema`). It is then compiled against :data:`TYPES`, the emulated subset of the
schema: a field or argument outside it is refused with a message saying the sandbox does not emulate it, so a
query the connector starts sending is never silently half-answered.

Cost (shopify.dev "GraphQL Admin API rate limits"): a scalar or enum costs 0, an object 1, a connection 2 plus
``first`` times the cost of one node, an interface the dearest of its selections, a mutation field 10. The
*requested* cost is computed before execution from the arguments; the *actual* cost counts what came back.
``pageInfo`` and the ``edges``/``nodes`` wrappers are counted with their connection.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from graphql import (
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    GraphQLError,
    InlineFragmentNode,
    NonNullTypeNode,
    OperationDefinitionNode,
    SelectionSetNode,
    parse,
    value_from_ast_untyped,
)

Kind = Literal["scalar", "object", "list", "connection", "interface", "mutation"]

# ------------------------------------------------------------------------------------------ the emulated types


@dataclass(frozen=True)
class FieldType:
    """What a field returns in the emulated subset, and which arguments the emulator honours."""

    type: str
    kind: Kind
    args: frozenset[str] = frozenset()


def _scalars(names: str) -> dict[str, FieldType]:
    return {n: FieldType("", "scalar") for n in names.split()}


def _obj(name: str, kind: Kind = "object", args: str = "") -> FieldType:
    return FieldType(name, kind, frozenset(args.split()))


_CONNECTION_ARGS = "first after query sortKey"
TYPES: dict[str, dict[str, FieldType]] = {
    "QueryRoot": {
        "customers": _obj("Customer", "connection", _CONNECTION_ARGS),
        "orders": _obj("Order", "connection", _CONNECTION_ARGS),
        "customersCount": _obj("Count", args="query"),
        "ordersCount": _obj("Count", args="query"),
        "node": _obj("Node", "interface", "id"),
        "shop": _obj("Shop"),
        "currentAppInstallation": _obj("AppInstallation"),
        "currentBulkOperation": _obj("BulkOperation", args="type"),
    },
    "Mutation": {
        "tagsAdd": _obj("TagsAddPayload", "mutation", "id tags"),
        "tagsRemove": _obj("TagsRemovePayload", "mutation", "id tags"),
        "bulkOperationRunQuery": _obj("BulkOperationRunQueryPayload", "mutation", "query groupObjects"),
        "bulkOperationRunMutation": _obj(
            "BulkOperationRunMutationPayload", "mutation", "mutation stagedUploadPath clientIdentifier groupObjects"
        ),
        "stagedUploadsCreate": _obj("StagedUploadsCreatePayload", "mutation", "input"),
    },
    "Customer": {
        **_scalars(
            "id legacyResourceId email firstName lastName displayName phone state tags note createdAt updatedAt"
            " verifiedEmail"
        ),
        "emailMarketingConsent": _obj("CustomerEmailMarketingConsentState"),
        "defaultAddress": _obj("MailingAddress"),
    },
    "CustomerEmailMarketingConsentState": _scalars("marketingState marketingOptInLevel consentUpdatedAt"),
    "MailingAddress": _scalars("id city country countryCodeV2 province provinceCode zip"),
    "Order": {
        **_scalars(
            "id legacyResourceId name email createdAt updatedAt processedAt cancelledAt cancelReason closed test"
            " sourceName tags displayFinancialStatus currencyCode presentmentCurrencyCode"
        ),
        "customer": _obj("Customer"),
        "totalPriceSet": _obj("MoneyBag"),
        "currentTotalPriceSet": _obj("MoneyBag"),
        "totalRefundedSet": _obj("MoneyBag"),
        "lineItems": _obj("LineItem", "connection", "first after"),
    },
    "MoneyBag": {"shopMoney": _obj("MoneyV2"), "presentmentMoney": _obj("MoneyV2")},
    "MoneyV2": _scalars("amount currencyCode"),
    "LineItem": {**_scalars("id name title sku quantity"), "product": _obj("Product")},
    "Product": _scalars("id title productType"),
    "Count": _scalars("count precision"),
    "Shop": {**_scalars("id name myshopifyDomain currencyCode ianaTimezone"), "plan": _obj("ShopPlan")},
    "ShopPlan": _scalars("displayName partnerDevelopment shopifyPlus"),
    "AppInstallation": {"accessScopes": _obj("AccessScope", "list")},
    "AccessScope": _scalars("handle description"),
    "BulkOperation": _scalars(
        "id status errorCode objectCount rootObjectCount fileSize url partialDataUrl createdAt completedAt query type"
    ),
    "TagsAddPayload": {"node": _obj("Node", "interface"), "userErrors": _obj("UserError", "list")},
    "TagsRemovePayload": {"node": _obj("Node", "interface"), "userErrors": _obj("UserError", "list")},
    "UserError": _scalars("field message"),
    "BulkOperationRunQueryPayload": {
        "bulkOperation": _obj("BulkOperation"),
        "userErrors": _obj("BulkOperationUserError", "list"),
    },
    "BulkOperationRunMutationPayload": {
        "bulkOperation": _obj("BulkOperation"),
        "userErrors": _obj("BulkOperationUserError", "list"),
    },
    "BulkOperationUserError": _scalars("field message code"),
    "StagedUploadsCreatePayload": {
        "stagedTargets": _obj("StagedMediaUploadTarget", "list"),
        "userErrors": _obj("UserError", "list"),
    },
    "StagedMediaUploadTarget": {**_scalars("url resourceUrl"), "parameters": _obj("StagedUploadParameter", "list")},
    "StagedUploadParameter": _scalars("name value"),
    "PageInfo": _scalars("hasNextPage hasPreviousPage startCursor endCursor"),
    "Node": _scalars("id"),
}
INTERFACES: dict[str, tuple[str, ...]] = {
    "Node": ("Customer", "Order", "BulkOperation", "LineItem", "Product"),
}
ROOTS = {"query": "QueryRoot", "mutation": "Mutation"}
MUTATION_COST = 10

# ------------------------------------------------------------------------------------------ errors


class QueryError(Exception):
    """The request fails as a whole: the answer is ``{"errors": [...]}`` (HTTP 200, as Shopify answers)."""

    def __init__(self, message: str, *, code: str | None = None, node: Any = None, **extensions: Any) -> None:
        super().__init__(message)
        self.error: dict[str, Any] = {"message": message}
        loc = getattr(node, "loc", None)
        if loc is not None and loc.source is not None:
            line, column = _line_column(loc.source.body, loc.start)
            self.error["locations"] = [{"line": line, "column": column}]
        if code or extensions:
            self.error["extensions"] = {**({"code": code} if code else {}), **extensions}


def _line_column(body: str, offset: int) -> tuple[int, int]:
    line = body.count("\n", 0, offset) + 1
    return line, offset - (body.rfind("\n", 0, offset) + 1) + 1


# ------------------------------------------------------------------------------------------ compiling


@dataclass
class FieldPlan:
    """One selected field, compiled against the emulated types."""

    key: str
    name: str
    ftype: FieldType
    parent: str
    node: FieldNode
    children: dict[str, list[FieldPlan]] = field(default_factory=dict)  # by concrete type; "*" for all
    ident: tuple[str, str] = ("", "")

    def __post_init__(self) -> None:
        self.ident = (self.parent, self.name)

    def selection(self, type_name: str = "*") -> list[FieldPlan]:
        """The children selected on ``type_name`` (for interfaces: its own plus the shared ones)."""
        if type_name == "*" or self.ftype.kind != "interface":
            return self.children.get("*", [])
        return [*self.children.get("*", []), *self.children.get(type_name, [])]


@dataclass
class Operation:
    """A compiled operation."""

    kind: str
    name: str | None
    fields: list[FieldPlan]
    definition: OperationDefinitionNode


_compiled_lock = threading.Lock()
_compiled: dict[tuple[str, str | None], Operation] = {}


def compile_operation(document: str, operation_name: str | None = None) -> Operation:
    """Parse and compile ``document`` (cached by text and operation name).

    Raises:
        QueryError: a syntax error, an unknown operation, a field or argument outside the emulated subset.
    """
    key = (document, operation_name)
    with _compiled_lock:
        hit = _compiled.get(key)
    if hit is not None:
        return hit
    try:
        ast = parse(document)
    except GraphQLError as exc:
        raise QueryError(exc.message, node=None) from exc
    ops = [d for d in ast.definitions if isinstance(d, OperationDefinitionNode)]
    fragments = {d.name.value: d for d in ast.definitions if isinstance(d, FragmentDefinitionNode)}
    chosen = [o for o in ops if operation_name is None or (o.name and o.name.value == operation_name)]
    if len(chosen) != 1:
        raise QueryError(
            "An operation name is required" if len(chosen) > 1 else f"No operation named {operation_name!r}"
        )
    op = chosen[0]
    kind = op.operation.value
    if kind not in ROOTS:
        raise QueryError(f"Subscriptions are not supported: {kind}")
    compiler = _Compiler(fragments)
    compiled = Operation(kind, op.name.value if op.name else None, compiler.select(op.selection_set, ROOTS[kind]), op)
    with _compiled_lock:
        _compiled[key] = compiled
    return compiled


class _Compiler:
    def __init__(self, fragments: Mapping[str, FragmentDefinitionNode]) -> None:
        self.fragments = fragments

    def select(self, selection_set: SelectionSetNode | None, type_name: str) -> list[FieldPlan]:
        plans: list[FieldPlan] = []
        self._collect(selection_set, type_name, plans)
        return plans

    def _collect(self, selection_set: SelectionSetNode | None, type_name: str, out: list[FieldPlan]) -> None:
        if selection_set is None:
            return
        for sel in selection_set.selections:
            if isinstance(sel, FieldNode):
                out.append(self._field(sel, type_name))
            elif isinstance(sel, FragmentSpreadNode):
                frag = self.fragments.get(sel.name.value)
                if frag is None:
                    raise QueryError(f"Fragment {sel.name.value} was used, but not defined", node=sel)
                if frag.type_condition.name.value == type_name:
                    self._collect(frag.selection_set, type_name, out)
            elif isinstance(sel, InlineFragmentNode):
                cond = sel.type_condition.name.value if sel.type_condition else type_name
                if cond == type_name:
                    self._collect(sel.selection_set, type_name, out)

    def _field(self, node: FieldNode, parent: str) -> FieldPlan:
        name = node.name.value
        key = node.alias.value if node.alias else name
        if name == "__typename":
            return FieldPlan(key, name, FieldType("", "scalar"), parent, node)
        ftype = TYPES.get(parent, {}).get(name)
        if ftype is None:
            raise QueryError(
                f"Field '{name}' doesn't exist on type '{parent}' (or the sandbox does not emulate it)",
                code="undefinedField",
                node=node,
                typeName=parent,
                fieldName=name,
            )
        for arg in node.arguments or ():
            if arg.name.value not in ftype.args:
                raise QueryError(
                    f"The sandbox does not emulate argument '{arg.name.value}' on field '{parent}.{name}'",
                    code="argumentNotAccepted",
                    node=arg,
                )
        plan = FieldPlan(key, name, ftype, parent, node)
        if ftype.kind == "scalar":
            if node.selection_set is not None:
                raise QueryError(f"Selections can't be made on scalars (field '{name}')", node=node)
            return plan
        if node.selection_set is None:
            raise QueryError(f"Field must have selections (field '{name}' returns {ftype.type})", node=node)
        if ftype.kind == "connection":
            plan.children["*"] = self._connection(node.selection_set, ftype.type)
        elif ftype.kind == "interface":
            plan.children["*"] = self.select(node.selection_set, ftype.type)
            for impl in INTERFACES.get(ftype.type, ()):
                own = self._inline_only(node.selection_set, impl)
                if own:
                    plan.children[impl] = own
        else:
            plan.children["*"] = self.select(node.selection_set, ftype.type)
        return plan

    def _inline_only(self, selection_set: SelectionSetNode, type_name: str) -> list[FieldPlan]:
        out: list[FieldPlan] = []
        for sel in selection_set.selections:
            if (
                isinstance(sel, InlineFragmentNode)
                and sel.type_condition
                and sel.type_condition.name.value == type_name
            ):
                self._collect(sel.selection_set, type_name, out)
            elif isinstance(sel, FragmentSpreadNode):
                frag = self.fragments.get(sel.name.value)
                if frag is not None and frag.type_condition.name.value == type_name:
                    self._collect(frag.selection_set, type_name, out)
        return out

    def _connection(self, selection_set: SelectionSetNode, node_type: str) -> list[FieldPlan]:
        """The wrappers of a connection: ``nodes``, ``edges { cursor node }``, ``pageInfo``."""
        wrappers = {
            "nodes": FieldType(node_type, "list"),
            "edges": FieldType(f"{node_type}Edge", "list"),
            "pageInfo": FieldType("PageInfo", "object"),
        }
        out: list[FieldPlan] = []
        for sel in selection_set.selections:
            if not isinstance(sel, FieldNode):
                raise QueryError("Fragments on connections are not emulated", node=sel)
            name = sel.name.value
            key = sel.alias.value if sel.alias else name
            if name == "__typename":
                out.append(FieldPlan(key, name, FieldType("", "scalar"), f"{node_type}Connection", sel))
                continue
            ftype = wrappers.get(name)
            if ftype is None or sel.selection_set is None:
                raise QueryError(
                    f"Field '{name}' doesn't exist on type '{node_type}Connection' (or needs selections)", node=sel
                )
            plan = FieldPlan(key, name, ftype, f"{node_type}Connection", sel)
            if name == "edges":
                plan.children["*"] = self._edge(sel.selection_set, node_type)
            else:
                plan.children["*"] = self.select(sel.selection_set, ftype.type)
            out.append(plan)
        return out

    def _edge(self, selection_set: SelectionSetNode, node_type: str) -> list[FieldPlan]:
        out: list[FieldPlan] = []
        for sel in selection_set.selections:
            if not isinstance(sel, FieldNode) or sel.name.value not in ("cursor", "node", "__typename"):
                raise QueryError(f"Only cursor and node are emulated on {node_type}Edge", node=sel)
            key = sel.alias.value if sel.alias else sel.name.value
            if sel.name.value == "node":
                plan = FieldPlan(key, "node", FieldType(node_type, "object"), f"{node_type}Edge", sel)
                plan.children["*"] = self.select(sel.selection_set, node_type)
            else:
                plan = FieldPlan(key, sel.name.value, FieldType("", "scalar"), f"{node_type}Edge", sel)
            out.append(plan)
        return out


# ------------------------------------------------------------------------------------------ variables, arguments


def coerce_variables(op: Operation, given: Mapping[str, Any] | None) -> dict[str, Any]:
    """The operation's variables: the given values, else the declared defaults.

    Raises:
        QueryError: a non-null variable without a value.
    """
    values = dict(given or {})
    out: dict[str, Any] = {}
    for definition in op.definition.variable_definitions or ():
        name = definition.variable.name.value
        if name in values:
            out[name] = values[name]
        elif definition.default_value is not None:
            out[name] = value_from_ast_untyped(definition.default_value)
        if isinstance(definition.type, NonNullTypeNode) and out.get(name) is None:
            raise QueryError(
                f"Variable ${name} of type {_type_text(definition.type)} was provided invalid value",
                code="INVALID_VARIABLE",
                node=definition,
            )
    return out


def _type_text(node: Any) -> str:
    inner = getattr(node, "type", None)
    if inner is not None:
        wrapped = _type_text(inner)
        return f"[{wrapped}]" if type(node).__name__ == "ListTypeNode" else f"{wrapped}!"
    return str(node.name.value)


def arguments(plan: FieldPlan, variables: Mapping[str, Any]) -> dict[str, Any]:
    """The field's argument values (variables substituted, enums as their names)."""
    given = dict(variables)
    return {a.name.value: value_from_ast_untyped(a.value, given) for a in plan.node.arguments or ()}


# ------------------------------------------------------------------------------------------ cost


def requested_cost(fields: Sequence[FieldPlan], variables: Mapping[str, Any]) -> int:
    """The requested cost of a selection (see the module docstring)."""
    total = 0
    for plan in fields:
        kind = plan.ftype.kind
        if kind == "scalar":
            continue
        if kind == "mutation":
            total += MUTATION_COST
        elif kind == "connection":
            args = arguments(plan, variables)
            size = args.get("first") or 0
            total += 2 + int(size) * (1 + _node_cost(plan, variables))
        elif kind == "interface":
            shapes = [requested_cost(plan.selection(t), variables) for t in INTERFACES.get(plan.ftype.type, ())]
            total += 1 + max(shapes or [requested_cost(plan.selection(), variables)])
        else:
            total += 1 + requested_cost(plan.selection(), variables)
    return total


def _node_cost(connection: FieldPlan, variables: Mapping[str, Any]) -> int:
    """The cost of one node of a connection beyond its own point: the dearest of ``nodes`` and ``edges.node``."""
    best = 0
    for wrapper in connection.selection():
        if wrapper.name == "nodes":
            best = max(best, requested_cost(wrapper.selection(), variables))
        elif wrapper.name == "edges":
            for part in wrapper.selection():
                if part.name == "node":
                    best = max(best, requested_cost(part.selection(), variables))
    return best


# ------------------------------------------------------------------------------------------ execution


@dataclass
class Connection:
    """What a connection resolver returns: the page of nodes and where it is."""

    items: list[Mapping[str, Any]]
    cursors: list[str]
    has_next: bool = False
    has_previous: bool = False


Resolver = Callable[[Mapping[str, Any], dict[str, Any]], Any]
"""``(parent object, arguments) -> value``: a dict, a list, a :class:`Connection`, or ``(type name, dict)`` for
an interface."""


@dataclass
class Executor:
    """Runs compiled operations over plain dicts, with resolvers for the fields that take arguments.

    Args:
        resolvers: by ``(type, field)``; every other field is read from the parent dict by name.
    """

    resolvers: Mapping[tuple[str, str], Resolver]

    def run(self, op: Operation, variables: Mapping[str, Any], root: Mapping[str, Any]) -> tuple[dict[str, Any], int]:
        """Execute; return ``data`` and the actual cost.

        Raises:
            QueryError: a resolver refused the request (access denied, bad argument).
        """
        return self._object(op.fields, root, ROOTS[op.kind], variables)

    def _object(
        self, fields: Sequence[FieldPlan], obj: Mapping[str, Any], type_name: str, variables: Mapping[str, Any]
    ) -> tuple[dict[str, Any], int]:
        out: dict[str, Any] = {}
        cost = 0
        resolvers = self.resolvers
        for plan in fields:
            resolver = resolvers.get(plan.ident)
            if resolver is None and plan.ftype.kind == "scalar":
                # The hot path: most selected fields are scalars read straight from the node.
                out[plan.key] = type_name if plan.name == "__typename" else obj.get(plan.name)
                continue
            value = resolver(obj, arguments(plan, variables)) if resolver is not None else obj.get(plan.name)
            out[plan.key], spent = self._value(plan, value, variables)
            cost += spent
        return out, cost

    def _value(self, plan: FieldPlan, value: Any, variables: Mapping[str, Any]) -> tuple[Any, int]:
        kind = plan.ftype.kind
        if kind == "scalar":
            return value, 0
        if kind == "connection":
            return self._connection(plan, value, variables)
        if kind == "mutation":
            if value is None:
                return None, MUTATION_COST
            data, _ = self._object(plan.selection(), value, plan.ftype.type, variables)
            return data, MUTATION_COST
        if value is None:
            return None, 0
        if kind == "interface":
            type_name, obj = value
            data, spent = self._object(plan.selection(type_name), obj, type_name, variables)
            return data, 1 + spent
        if kind == "list":
            rendered = [self._object(plan.selection(), item, plan.ftype.type, variables) for item in value]
            return [r[0] for r in rendered], 1 + sum(r[1] for r in rendered)
        data, spent = self._object(plan.selection(), value, plan.ftype.type, variables)
        return data, 1 + spent

    def _connection(self, plan: FieldPlan, conn: Connection, variables: Mapping[str, Any]) -> tuple[Any, int]:
        node_type = plan.ftype.type
        out: dict[str, Any] = {}
        per_item = [0] * len(conn.items)
        for wrapper in plan.selection():
            if wrapper.name == "__typename":
                out[wrapper.key] = f"{node_type}Connection"
            elif wrapper.name == "pageInfo":
                info = {
                    "hasNextPage": conn.has_next,
                    "hasPreviousPage": conn.has_previous,
                    "startCursor": conn.cursors[0] if conn.cursors else None,
                    "endCursor": conn.cursors[-1] if conn.cursors else None,
                }
                out[wrapper.key] = {p.key: info.get(p.name) for p in wrapper.selection()}
            elif wrapper.name == "nodes":
                rendered = [self._object(wrapper.selection(), item, node_type, variables) for item in conn.items]
                out[wrapper.key] = [r[0] for r in rendered]
                per_item = [max(a, r[1]) for a, r in zip(per_item, rendered, strict=True)]
            elif wrapper.name == "edges":
                edges = []
                for i, (item, cursor) in enumerate(zip(conn.items, conn.cursors, strict=True)):
                    edge: dict[str, Any] = {}
                    for part in wrapper.selection():
                        if part.name == "cursor":
                            edge[part.key] = cursor
                        elif part.name == "__typename":
                            edge[part.key] = f"{node_type}Edge"
                        else:
                            edge[part.key], spent = self._object(part.selection(), item, node_type, variables)
                            per_item[i] = max(per_item[i], spent)
                    edges.append(edge)
                out[wrapper.key] = edges
        return out, 2 + sum(1 + c for c in per_item)


def node_selection(connection: FieldPlan) -> list[FieldPlan] | None:
    """The selection on a connection's nodes (``nodes { ... }`` or ``edges { node { ... } }``)."""
    for wrapper in connection.selection():
        if wrapper.name == "nodes":
            return wrapper.selection()
        if wrapper.name == "edges":
            for part in wrapper.selection():
                if part.name == "node":
                    return part.selection()
    return None


def connection_depth(fields: Sequence[FieldPlan]) -> tuple[int, int]:
    """(connections in all, deepest nesting of connections) of a selection, for the bulk-query limits."""
    count, depth = 0, 0
    for plan in fields:
        if plan.ftype.kind == "connection":
            inner = node_selection(plan) or []
            c, d = connection_depth(inner)
            count, depth = count + 1 + c, max(depth, 1 + d)
        elif plan.ftype.kind != "scalar":
            c, d = connection_depth(plan.selection())
            count, depth = count + c, max(depth, d)
    return count, depth
