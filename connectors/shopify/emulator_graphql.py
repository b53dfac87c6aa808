"""GraphQL execution for the emulator: graphql-core runs each document against the official schema, with
Shopify's cost model around it.

The emulator answers every field of the schema it validates against (the official Admin schema of the
requested version, see :mod:`.emulator_schema`). :class:`Executor` hands graphql-core one field resolver for
all fields: a resolver registered for ``(type, field)`` when the shop derives the value (a customer's
``numberOfOrders``, an order's ``customer``), else the key of that name in the parent dict (the data model),
else :class:`Defaults`: what Shopify answers for an empty value, driven by the field's type in the schema (null
for a nullable field, an empty list or connection, ``0``/``""``/``false`` or the most neutral enum value for
non-null ones, an object whose own fields follow the same rules). So any valid query executes, and a value the
data model holds is never invented.

Cost (shopify.dev "GraphQL Admin API rate limits"): a scalar or enum costs 0, an object 1, a connection 2 plus
``first`` (or ``last``) times the cost of one node, an interface or union the dearest of its possible
selections, a mutation field 10. The *requested* cost (:func:`requested_cost`) is computed from the document
before execution; the *actual* cost is counted while resolving: 2 per connection, 1 per node returned, 1 per
non-null object. ``pageInfo`` and the ``edges``/``nodes`` wrappers are part of their connection.
"""

from __future__ import annotations

import threading
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, Literal, TypeGuard

from graphql import (
    BooleanValueNode,
    DocumentNode,
    ExecutionResult,
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    GraphQLError,
    GraphQLField,
    GraphQLObjectType,
    GraphQLOutputType,
    GraphQLSchema,
    InlineFragmentNode,
    OperationDefinitionNode,
    OperationType,
    SelectionSetNode,
    VariableNode,
    execute,
    get_named_type,
    is_abstract_type,
    is_enum_type,
    is_leaf_type,
    is_list_type,
    is_non_null_type,
    is_object_type,
    parse,
    value_from_ast,
)
from graphql.pyutils import Undefined

from .emulator_data import decode_cursor, encode_cursor

MUTATION_COST = 10
MAX_PAGE_SIZE = 250

# ------------------------------------------------------------------------------------------ errors


class QueryError(Exception):
    """A request or a field fails: its error object (``message``, ``extensions.code``, ...) as Shopify writes it."""

    def __init__(self, message: str, *, code: str | None = None, **extensions: Any) -> None:
        super().__init__(message)
        self.error: dict[str, Any] = {"message": message}
        if code or extensions:
            self.error["extensions"] = {**({"code": code} if code else {}), **extensions}


@lru_cache(maxsize=512)
def parsed(document: str) -> DocumentNode:
    """The document's syntax tree, parsed once per text (graphql-core does not change it).

    Raises:
        QueryError: a syntax error.
    """
    try:
        return parse(document)
    except GraphQLError as exc:
        raise QueryError(exc.message) from exc


def operation_of(document: DocumentNode, name: str | None) -> OperationDefinitionNode:
    """The operation to run: the one named ``name``, or the only one.

    Raises:
        QueryError: no such operation, or several without a name to choose.
    """
    ops = [d for d in document.definitions if isinstance(d, OperationDefinitionNode)]
    chosen = [o for o in ops if name is None or (o.name is not None and o.name.value == name)]
    if len(chosen) != 1:
        raise QueryError("An operation name is required" if len(chosen) > 1 else f"No operation named {name!r}")
    if chosen[0].operation == OperationType.SUBSCRIPTION:
        raise QueryError("Subscriptions are not supported")
    return chosen[0]


def root_fields(operation: OperationDefinitionNode) -> list[str]:
    """The names of the operation's top-level fields (``__typename`` excluded)."""
    names: list[str] = []
    for sel in operation.selection_set.selections:
        if isinstance(sel, FieldNode) and sel.name.value != "__typename":
            names.append(sel.name.value)
    return names


# ------------------------------------------------------------------------------------------ paging


@dataclass
class Connection:
    """A page of a connection: its nodes and their cursors, and whether pages lie before and after it."""

    items: list[Any]
    cursors: list[str]
    has_next: bool = False
    has_previous: bool = False

    def page_info(self) -> dict[str, Any]:
        """The ``PageInfo`` object of this page."""
        return {
            "hasNextPage": self.has_next,
            "hasPreviousPage": self.has_previous,
            "startCursor": self.cursors[0] if self.cursors else None,
            "endCursor": self.cursors[-1] if self.cursors else None,
        }


@dataclass(frozen=True)
class Edge:
    """One edge of a connection page."""

    cursor: str
    node: Any


def page_size(args: Mapping[str, Any], *, unbounded: bool) -> tuple[int | None, bool]:
    """``(size, from the end)`` asked by ``first`` or ``last``; size None in a bulk query (everything).

    Raises:
        QueryError: neither is given, or the size is outside 0..250 (as Shopify refuses both).
    """
    first, last = args.get("first"), args.get("last")
    if unbounded:
        return None, False
    if first is None and last is None:
        raise QueryError("you must provide one of first or last", code="BAD_REQUEST")
    size = first if first is not None else last
    if not isinstance(size, int) or not 0 <= size <= MAX_PAGE_SIZE:
        raise QueryError(f"first and last must be between 0 and {MAX_PAGE_SIZE}", code="BAD_REQUEST")
    return size, first is None


def paginate(
    items: Sequence[Any],
    args: Mapping[str, Any],
    *,
    unbounded: bool = False,
    key: Callable[[Any], int] | None = None,
) -> Connection:
    """A page of an in-memory list by ``first``/``after``/``last``/``before``/``reverse``.

    Cursors name an item: its position in ``items``, or ``key(item)`` (a node's number, as Shopify's keyset
    cursors carry the last id), so they stay valid whichever way the list is walked.

    Args:
        items: every node, in the connection's order.
        args: the field's arguments.
        unbounded: a bulk query: every node, whatever ``first`` says.
        key: the number naming an item in its cursor (default: its position).

    Raises:
        QueryError: see :func:`page_size`.
    """
    size, from_end = page_size(args, unbounded=unbounded)
    names = [key(item) for item in items] if key is not None else list(range(len(items)))
    where = {name: i for i, name in enumerate(names)}
    order = list(range(len(items)))
    if args.get("reverse"):
        order.reverse()
    rank = {i: r for r, i in enumerate(order)}
    low, high = 0, len(order)
    after, before = _position(args.get("after"), where), _position(args.get("before"), where)
    if after is not None:
        low = rank[after] + 1
    if before is not None:
        high = min(high, rank[before])
    window = order[low:high]
    cut_front = cut_back = False
    if size is not None and len(window) > size:
        if from_end:
            chosen, cut_front = window[len(window) - size :], True
        else:
            chosen, cut_back = window[:size], True
    else:
        chosen = window
    return Connection(
        [items[i] for i in chosen],
        [encode_cursor(names[i], names[i]) for i in chosen],
        has_next=cut_back or high < len(order),
        has_previous=cut_front or low > 0,
    )


def _position(cursor: Any, where: Mapping[int, int]) -> int | None:
    decoded = decode_cursor(cursor) if isinstance(cursor, str) and cursor else None
    return where.get(decoded[0]) if decoded is not None else None


# ------------------------------------------------------------------------------------------ type helpers


def is_connection(named: Any) -> bool:
    """Whether a named type is a Relay connection (``...Connection`` with ``pageInfo`` and ``edges``/``nodes``)."""
    return (
        is_object_type(named)
        and named.name.endswith("Connection")
        and "pageInfo" in named.fields
        and ("edges" in named.fields or "nodes" in named.fields)
    )


def is_edge(named: Any) -> bool:
    """Whether a named type is a connection's edge (``...Edge`` with ``cursor`` and ``node``)."""
    return is_object_type(named) and named.name.endswith("Edge") and {"cursor", "node"} <= set(named.fields)


def node_type(connection: Any) -> Any:
    """The type of a connection's nodes."""
    wrapper = connection.fields.get("nodes") or connection.fields["edges"]
    named = get_named_type(wrapper.type)
    if wrapper is connection.fields.get("edges") and is_object_type(named):
        return get_named_type(named.fields["node"].type)
    return named


# ------------------------------------------------------------------------------------------ defaults

# Enum values that say "nothing recorded", preferred when a non-null enum has no value in the data model.
_NEUTRAL_ENUM_VALUES = (
    "NONE",
    "NO_RETURN",
    "NOT_SUBSCRIBED",
    "NEVER_SUBSCRIBED",
    "UNKNOWN",
    "OTHER",
    "DEFAULT",
    "NOT_APPLICABLE",
    "LOW",
)
_SCALAR_DEFAULTS: dict[str, Any] = {
    "String": "",
    "Int": 0,
    "Float": 0.0,
    "Boolean": False,
    "Money": "0.0",
    "Decimal": "0.0",
    "UnsignedInt64": "0",
    "BigInt": "0",
    "JSON": {},
    "UtcOffset": "+00:00",
    "Color": "#000000",
}
# Keys a default object inherits from its parent, so that its own defaults stay consistent (ids, currencies).
_CONTEXT_KEYS = ("_num", "_at", "_currency", "_presentment")


@dataclass(frozen=True)
class Defaults:
    """What a field the data model does not hold answers, from its type in the schema.

    Args:
        currency: the shop's currency (a ``CurrencyCode`` without one of its own).
        epoch: the DateTime of records without a time of their own.
        url: the URL fields answer.
    """

    currency: str
    epoch: str = "2020-01-01T00:00:00Z"
    url: str = "https://sandbox-shop.myshopify.com"

    def value(self, gtype: GraphQLOutputType, parent: str, source: Any) -> Any:
        """The empty value of a field of type ``gtype`` on an object of type ``parent``."""
        if not is_non_null_type(gtype):
            return None
        inner = gtype.of_type  # type: ignore[attr-defined]
        if is_list_type(inner):
            return []
        context = source if isinstance(source, Mapping) else {}
        if is_enum_type(inner):
            return self.enum(inner, context)
        if is_leaf_type(inner):
            return self.scalar(inner.name, parent, context)
        if is_connection(inner):
            return Connection([], [])
        base = {k: context[k] for k in _CONTEXT_KEYS if k in context}
        if inner.name == "MoneyV2":
            return self.money(context.get("_currency"))
        if inner.name == "MoneyBag":
            return self.bag(context)
        if is_abstract_type(inner):
            return {**base, "__typename": "*"}  # the type resolver picks the first possible type
        return base

    def enum(self, enum: Any, context: Mapping[str, Any]) -> str:
        """The most neutral value of a non-null enum (the shop's currency for ``CurrencyCode``)."""
        names = list(enum.values)
        if enum.name == "CurrencyCode":
            wanted = context.get("_currency") or self.currency
            return str(wanted) if wanted in names else names[0]
        return next((v for v in _NEUTRAL_ENUM_VALUES if v in names), names[0])

    def scalar(self, name: str, parent: str, context: Mapping[str, Any]) -> Any:
        """The empty value of a non-null scalar of type ``name`` on ``parent``."""
        if name == "ID":
            return f"gid://shopify/{parent}/{context.get('_num', 0)}"
        if name == "DateTime":
            return context.get("_at") or self.epoch
        if name == "Date":
            return str(context.get("_at") or self.epoch)[:10]
        if name == "URL":
            return self.url
        return _SCALAR_DEFAULTS.get(name, "")

    def money(self, currency: Any, amount: str = "0.0") -> dict[str, Any]:
        """A ``MoneyV2``."""
        return {"amount": amount, "currencyCode": currency or self.currency}

    def bag(self, context: Mapping[str, Any]) -> dict[str, Any]:
        """A zero ``MoneyBag`` in the currencies of ``context`` (an order's shop and presentment currencies)."""
        shop = context.get("_currency") or self.currency
        return {"shopMoney": self.money(shop), "presentmentMoney": self.money(context.get("_presentment") or shop)}


# ------------------------------------------------------------------------------------------ execution

Resolver = Callable[[Any, dict[str, Any]], Any]
"""``(parent object, arguments) -> value``: a dict, a list, a :class:`Connection`, a scalar, or None."""

Charge = Literal["free", "connection", "items", "one", "mutation"]


@dataclass(frozen=True)
class _Plan:
    resolver: Resolver | None
    charge: Charge
    connection: bool


@dataclass
class Outcome:
    """What an execution gave: ``data``, errors in Shopify's shape, and the actual cost."""

    data: dict[str, Any] | None
    errors: list[dict[str, Any]]
    cost: int


_MISSING = object()


@dataclass
class Executor:
    """Runs one operation with the shop's resolvers and the schema's defaults, counting its actual cost.

    Args:
        schema: the schema of the requested version.
        resolvers: by ``(type name, field name)``; every other field is read from the parent dict by name or,
            absent there, answered by ``defaults``.
        defaults: the empty values.
        unbounded: a bulk query: connections give every node.
    """

    schema: GraphQLSchema
    resolvers: Mapping[tuple[str, str], Resolver]
    defaults: Defaults
    unbounded: bool = False
    cost: int = 0
    _plans: dict[tuple[str, str], _Plan] = field(default_factory=dict)
    _mutation: bool = False

    def run(self, document: DocumentNode, operation_name: str | None, variables: Mapping[str, Any]) -> Outcome:
        """Execute the operation.

        Raises:
            Exception: a resolver failed with anything but :class:`QueryError` (an emulator bug, not an answer).
        """
        operation = operation_of(document, operation_name)
        self._mutation = operation.operation == OperationType.MUTATION
        self.cost = 0
        result = execute(
            self.schema,
            document,
            variable_values=dict(variables),
            operation_name=operation.name.value if operation.name else None,
            field_resolver=self._resolve,
            type_resolver=self._type_of,
            is_awaitable=_never,  # no resolver is async: spare graphql-core the check of every value
        )
        if not isinstance(result, ExecutionResult):  # an awaitable: no resolver here is async
            raise TypeError("the emulator executes synchronously")
        errors = [self._error(e) for e in result.errors or ()]
        return Outcome(result.data, errors, self.cost)

    def _error(self, error: GraphQLError) -> dict[str, Any]:
        original = error.original_error
        if original is not None and not isinstance(original, QueryError):
            raise original
        out: dict[str, Any] = dict(original.error) if isinstance(original, QueryError) else {"message": error.message}
        if error.locations:
            out["locations"] = [{"line": loc.line, "column": loc.column} for loc in error.locations]
        if error.path:
            out["path"] = list(error.path)
        return out

    def _resolve(self, source: Any, info: Any, **args: Any) -> Any:
        parent = info.parent_type
        plan = self._plans.get((parent.name, info.field_name))
        if plan is None:
            plan = self._plans[(parent.name, info.field_name)] = self._plan(parent, info.field_name)
        name = info.field_name
        if plan.resolver is not None:
            value = plan.resolver(source, args)
        elif isinstance(source, Connection):
            value = _wrapper(source, name)
        elif isinstance(source, Edge):
            value = source.cursor if name == "cursor" else source.node
        else:
            value = source.get(name, _MISSING) if isinstance(source, Mapping) else _MISSING
            if value is _MISSING:
                value = self.defaults.value(info.return_type, parent.name, source)
        if plan.connection and isinstance(value, list | tuple):
            value = paginate(value, args, unbounded=self.unbounded)
        if plan.charge != "free" and value is not None:
            self.cost += _CHARGES[plan.charge](value)
        return value

    def _plan(self, parent: GraphQLObjectType, name: str) -> _Plan:
        resolver = self.resolvers.get((parent.name, name))
        definition: GraphQLField | None = parent.fields.get(name)
        named = get_named_type(definition.type) if definition is not None else None
        connection = named is not None and is_connection(named)
        charge: Charge = "free"
        if self._mutation:
            charge = "mutation" if parent is self.schema.mutation_type else "free"
        elif named is None or is_leaf_type(named):
            charge = "free"
        elif connection:
            charge = "connection"
        elif is_connection(parent):
            charge = "items" if name == "nodes" else "free"  # edges and pageInfo come with their connection
        elif is_edge(parent):
            charge = "one" if name == "node" else "free"
        else:
            charge = "one"
        return _Plan(resolver, charge, connection)

    def _type_of(self, value: Any, info: Any, abstract: Any) -> str | None:
        possible = self.schema.get_possible_types(abstract)
        names = {t.name for t in possible}
        if isinstance(value, Mapping):
            wanted = value.get("__typename")
            if isinstance(wanted, str) and wanted in names:
                return wanted
            kind = _gid_kind(value.get("id"))
            if kind in names:
                return kind
        return sorted(names)[0] if names else None


def _never(_value: Any) -> TypeGuard[Awaitable[Any]]:
    return False


_CHARGES: dict[str, Callable[[Any], int]] = {
    "connection": lambda _v: 2,
    "items": lambda v: len(v) if isinstance(v, list | tuple) else 0,
    "one": lambda _v: 1,
    "mutation": lambda _v: MUTATION_COST,
}


def _wrapper(conn: Connection, name: str) -> Any:
    if name == "nodes":
        return conn.items
    if name == "edges":
        return [Edge(c, n) for c, n in zip(conn.cursors, conn.items, strict=True)]
    if name == "pageInfo":
        return conn.page_info()
    return None  # e.g. a connection's own count field, which the data model does not hold


def _gid_kind(value: Any) -> str | None:
    if isinstance(value, str) and value.startswith("gid://shopify/"):
        parts = value.split("/")
        return parts[3] if len(parts) > 4 else None
    return None


# ------------------------------------------------------------------------------------------ requested cost


@dataclass
class _CostWalk:
    schema: GraphQLSchema
    fragments: Mapping[str, FragmentDefinitionNode]
    variables: Mapping[str, Any]

    def selection(self, named: Any, sets: list[SelectionSetNode]) -> int:
        """The cost of a selection on ``named``: its fields' costs (the dearest possible type of an abstract one)."""
        if not is_abstract_type(named):
            return self.fields(named, sets)
        conditions = self._conditions(sets)
        best = 0
        seen: set[tuple[str, ...]] = set()
        for candidate in self.schema.get_possible_types(named):
            key = tuple(sorted(c for c in conditions if self._applies(c, candidate)))
            if key not in seen:  # types matching the same fragments select the same fields
                seen.add(key)
                best = max(best, self.fields(candidate, sets))
        return best

    def fields(self, obj: GraphQLObjectType, sets: list[SelectionSetNode]) -> int:
        total = 0
        for nodes in self.collect(obj, sets).values():
            name = nodes[0].name.value
            definition = obj.fields.get(name)
            if definition is None:  # __typename and introspection fields are free
                continue
            total += self.field(definition, nodes)
        return total

    def field(self, definition: GraphQLField, nodes: list[FieldNode]) -> int:
        named = get_named_type(definition.type)
        if is_leaf_type(named):
            return 0
        sets = [n.selection_set for n in nodes if n.selection_set is not None]
        if is_connection(named):
            size = self._size(definition, nodes[0])
            return 2 + size * (1 + self._node_cost(named, sets))
        return 1 + self.selection(named, sets)

    def _node_cost(self, connection: Any, sets: list[SelectionSetNode]) -> int:
        best = 0
        for nodes in self.collect(connection, sets).values():
            name = nodes[0].name.value
            inner = [n.selection_set for n in nodes if n.selection_set is not None]
            if name == "nodes":
                best = max(best, self.selection(node_type(connection), inner))
            elif name == "edges":
                edge = get_named_type(connection.fields["edges"].type)
                for parts in self.collect(edge, inner).values():
                    if parts[0].name.value == "node":
                        node_sets = [p.selection_set for p in parts if p.selection_set is not None]
                        best = max(best, self.selection(get_named_type(edge.fields["node"].type), node_sets))
        return best

    def _size(self, definition: GraphQLField, node: FieldNode) -> int:
        given = {a.name.value: a.value for a in node.arguments or ()}
        for name in ("first", "last"):
            arg = definition.args.get(name)
            if arg is None:
                continue
            literal = given.get(name)
            value = (
                argument_default(arg) if literal is None else value_from_ast(literal, arg.type, dict(self.variables))
            )
            if isinstance(value, int) and not isinstance(value, bool):
                return max(value, 0)
        return 0

    def collect(self, obj: GraphQLObjectType, sets: Iterable[SelectionSetNode]) -> dict[str, list[FieldNode]]:
        """The fields selected on runtime type ``obj`` by response key (fragments applied, skip/include honoured)."""
        out: dict[str, list[FieldNode]] = {}
        self._collect(obj, sets, out, set())
        return out

    def _collect(
        self, obj: GraphQLObjectType, sets: Iterable[SelectionSetNode], out: dict[str, list[FieldNode]], seen: set[str]
    ) -> None:
        for selection_set in sets:
            for sel in selection_set.selections:
                if not self._included(sel):
                    continue
                if isinstance(sel, FieldNode):
                    key = sel.alias.value if sel.alias else sel.name.value
                    out.setdefault(key, []).append(sel)
                elif isinstance(sel, InlineFragmentNode):
                    condition = sel.type_condition.name.value if sel.type_condition else None
                    if condition is None or self._applies(condition, obj):
                        self._collect(obj, [sel.selection_set], out, seen)
                elif isinstance(sel, FragmentSpreadNode) and sel.name.value not in seen:
                    fragment = self.fragments.get(sel.name.value)
                    if fragment is not None and self._applies(fragment.type_condition.name.value, obj):
                        self._collect(obj, [fragment.selection_set], out, seen | {sel.name.value})

    def _conditions(self, sets: Iterable[SelectionSetNode], seen: frozenset[str] = frozenset()) -> set[str]:
        found: set[str] = set()
        for selection_set in sets:
            for sel in selection_set.selections:
                if isinstance(sel, InlineFragmentNode):
                    if sel.type_condition:
                        found.add(sel.type_condition.name.value)
                    found |= self._conditions([sel.selection_set], seen)
                elif isinstance(sel, FragmentSpreadNode) and sel.name.value not in seen:
                    fragment = self.fragments.get(sel.name.value)
                    if fragment is not None:
                        found.add(fragment.type_condition.name.value)
                        found |= self._conditions([fragment.selection_set], seen | {sel.name.value})
        return found

    def _applies(self, condition: str, obj: GraphQLObjectType) -> bool:
        if condition == obj.name:
            return True
        wanted = self.schema.get_type(condition)
        return wanted is not None and is_abstract_type(wanted) and self.schema.is_sub_type(wanted, obj)  # type: ignore[arg-type]

    def _included(self, sel: Any) -> bool:
        for directive in sel.directives or ():
            name = directive.name.value
            if name not in ("skip", "include"):
                continue
            arg = next((a.value for a in directive.arguments or () if a.name.value == "if"), None)
            flag = (
                arg.value
                if isinstance(arg, BooleanValueNode)
                else bool(self.variables.get(arg.name.value))
                if isinstance(arg, VariableNode)
                else False
            )
            if flag == (name == "skip"):
                return False
        return True


def argument_default(arg: Any) -> Any:
    """An argument's default value (graphql-core 3.2 keeps it in ``default_value``, 3.3 in ``default``)."""
    if arg.default_value is not Undefined:
        return arg.default_value
    default = getattr(arg, "default", None)
    if default is None:
        return Undefined
    value = getattr(default, "value", Undefined)
    literal = getattr(default, "literal", None)
    if value is Undefined and literal is not None:
        value = value_from_ast(literal, arg.type)
    return value


_cost_lock = threading.Lock()


def requested_cost(
    schema: GraphQLSchema, document: DocumentNode, operation_name: str | None, variables: Mapping[str, Any]
) -> int:
    """The requested cost of the operation (see the module docstring): known before it runs.

    Raises:
        QueryError: no such operation.
    """
    operation = operation_of(document, operation_name)
    if operation.operation == OperationType.MUTATION:
        return MUTATION_COST * len(root_fields(operation))
    fragments = {d.name.value: d for d in document.definitions if isinstance(d, FragmentDefinitionNode)}
    walk = _CostWalk(schema, fragments, variables)
    root = schema.query_type
    if root is None:
        return 0
    with _cost_lock:  # graphql-core caches possible types lazily on the schema
        return walk.selection(root, [operation.selection_set])


# ------------------------------------------------------------------------------------------ bulk queries


@dataclass
class Shape:
    """Where the connections of a selection are, for splitting a bulk query's result into JSONL lines.

    Attributes:
        connection: the field is a connection (its nodes become lines of their own).
        fields: the shapes of the selected fields of a node or object, by response key.
    """

    connection: bool = False
    fields: dict[str, Shape] = field(default_factory=dict)


def bulk_shape(schema: GraphQLSchema, document: DocumentNode, operation_name: str | None = None) -> dict[str, Shape]:
    """The shapes of the operation's top-level fields (fragments merged whatever their type condition).

    Raises:
        QueryError: no such operation.
    """
    operation = operation_of(document, operation_name)
    fragments = {d.name.value: d for d in document.definitions if isinstance(d, FragmentDefinitionNode)}
    root = schema.mutation_type if operation.operation == OperationType.MUTATION else schema.query_type
    assert root is not None
    return _shape_fields(schema, fragments, root, [operation.selection_set])


def _shape_fields(
    schema: GraphQLSchema,
    fragments: Mapping[str, FragmentDefinitionNode],
    named: Any,
    sets: list[SelectionSetNode],
) -> dict[str, Shape]:
    out: dict[str, Shape] = {}
    for key, nodes in _loose_collect(fragments, sets).items():
        definition = _field_on(schema, named, nodes[0].name.value)
        if definition is None:
            continue
        inner_named = get_named_type(definition.type)
        inner_sets = [n.selection_set for n in nodes if n.selection_set is not None]
        if is_connection(inner_named):
            node_sets: list[SelectionSetNode] = []
            for wrapper_nodes in _loose_collect(fragments, inner_sets).values():
                name = wrapper_nodes[0].name.value
                wrapper_sets = [n.selection_set for n in wrapper_nodes if n.selection_set is not None]
                if name == "nodes":
                    node_sets.extend(wrapper_sets)
                elif name == "edges":
                    for parts in _loose_collect(fragments, wrapper_sets).values():
                        if parts[0].name.value == "node":
                            node_sets.extend(p.selection_set for p in parts if p.selection_set is not None)
            out[key] = Shape(True, _shape_fields(schema, fragments, node_type(inner_named), node_sets))
        elif not is_leaf_type(inner_named):
            out[key] = Shape(False, _shape_fields(schema, fragments, inner_named, inner_sets))
        else:
            out[key] = Shape()
    return out


def _field_on(schema: GraphQLSchema, named: Any, name: str) -> GraphQLField | None:
    fields: Mapping[str, GraphQLField] = getattr(named, "fields", None) or {}
    if name in fields:
        return fields[name]
    if is_abstract_type(named):
        for candidate in schema.get_possible_types(named):
            found: GraphQLField | None = candidate.fields.get(name)
            if found is not None:
                return found
    return None


def _loose_collect(
    fragments: Mapping[str, FragmentDefinitionNode], sets: Iterable[SelectionSetNode]
) -> dict[str, list[FieldNode]]:
    out: dict[str, list[FieldNode]] = {}
    pending = list(sets)
    seen: set[str] = set()
    while pending:
        for sel in pending.pop(0).selections:
            if isinstance(sel, FieldNode):
                out.setdefault(sel.alias.value if sel.alias else sel.name.value, []).append(sel)
            elif isinstance(sel, InlineFragmentNode):
                pending.append(sel.selection_set)
            elif isinstance(sel, FragmentSpreadNode) and sel.name.value not in seen:
                seen.add(sel.name.value)
                fragment = fragments.get(sel.name.value)
                if fragment is not None:
                    pending.append(fragment.selection_set)
    return out


def connection_depth(shapes: Mapping[str, Shape]) -> tuple[int, int]:
    """(connections in all, deepest nesting of connections) of a selection, for the bulk-query limits."""
    count, depth = 0, 0
    for shape in shapes.values():
        c, d = connection_depth(shape.fields)
        if shape.connection:
            count, depth = count + 1 + c, max(depth, 1 + d)
        else:
            count, depth = count + c, max(depth, d)
    return count, depth
