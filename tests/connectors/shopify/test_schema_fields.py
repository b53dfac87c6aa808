"""Any selection of the official schema's Customer and Order fields executes: documents generated from the schema's
type information (random fields, arguments where they are required, nested objects and connections to a bounded
depth) validate, run without errors, and answer every field with a value of its declared type; fields the data
model holds answer the held value."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from graphql import (
    GraphQLField,
    GraphQLSchema,
    get_named_type,
    is_abstract_type,
    is_enum_type,
    is_input_type,
    is_leaf_type,
    is_list_type,
    is_non_null_type,
    is_object_type,
)
from graphql.pyutils import Undefined
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from connectors.shopify.emulator_graphql import argument_default, is_connection, node_type, parsed, requested_cost
from connectors.shopify.emulator_model import ShopModel
from connectors.shopify.settings import MAX_QUERY_COST

from .conftest import ShopifyRig
from .schemas import VERSIONS, errors_for, require_schema

DEPTH = 2
# Literals for required scalar arguments; a field needing anything else (an input object) is left out.
_LITERALS = {
    "Int": "1",
    "Float": "1.0",
    "String": '"x"',
    "Boolean": "true",
    "ID": '"gid://shopify/Customer/1"',
    "URL": '"https://example.org"',
    "DateTime": '"2026-01-01T00:00:00Z"',
}
_STRING_SCALARS = {
    "String",
    "ID",
    "URL",
    "DateTime",
    "Date",
    "Decimal",
    "Money",
    "UnsignedInt64",
    "HTML",
    "FormattedString",
    "StorefrontID",
    "ARN",
    "Color",
    "UtcOffset",
    "BigInt",
}


def _arguments(field: GraphQLField, connection: bool, draw: Any) -> str | None:
    """The argument list of a selected field, or None when a required one cannot be written as a literal."""
    parts: list[str] = []
    for name, arg in sorted(field.args.items()):
        if connection and name == "first":
            parts.append(f"first: {draw(st.integers(1, 2))}")
            continue
        required = is_non_null_type(arg.type) and argument_default(arg) is Undefined
        if not required:
            continue
        inner = arg.type.of_type  # type: ignore[attr-defined]
        listed = is_list_type(inner)
        named = get_named_type(inner)
        if is_enum_type(named):
            literal = next(iter(named.values))
        elif named.name in _LITERALS:
            literal = _LITERALS[named.name]
        else:
            return None
        parts.append(f"{name}: [{literal}]" if listed else f"{name}: {literal}")
    return f"({', '.join(parts)})" if parts else ""


def _selection(schema: GraphQLSchema, named: Any, depth: int, draw: Any) -> str:
    if is_abstract_type(named):
        shared = getattr(named, "fields", None) or {}
        leaves = [n for n, f in shared.items() if is_leaf_type(get_named_type(f.type)) and not f.args]
        return " ".join(["__typename", *leaves[:3]])
    names = draw(st.lists(st.sampled_from(sorted(named.fields)), min_size=1, max_size=7, unique=True))
    parts = ["__typename"]
    for name in names:
        field = named.fields[name]
        inner = get_named_type(field.type)
        connection = is_connection(inner)
        args = _arguments(field, connection, draw)
        if args is None:
            continue
        if is_leaf_type(inner):
            parts.append(name + args)
        elif depth == 0:
            parts.append(f"{name}{args} {{ __typename }}")
        elif connection:
            nodes = _selection(schema, node_type(inner), depth - 1, draw)
            parts.append(f"{name}{args} {{ nodes {{ {nodes} }} pageInfo {{ hasNextPage endCursor }} }}")
        else:
            parts.append(f"{name}{args} {{ {_selection(schema, inner, depth - 1, draw)} }}")
    return " ".join(parts)


def _check(schema: GraphQLSchema, value: Any, gtype: Any, where: str) -> None:
    """``value`` has the declared type ``gtype`` (non-null, lists, scalars, enums, objects) all the way down."""
    if is_non_null_type(gtype):
        assert value is not None, f"{where}: null for a non-null {gtype}"
        gtype = gtype.of_type
    if value is None:
        return
    if is_list_type(gtype):
        assert isinstance(value, list), where
        for i, item in enumerate(value):
            _check(schema, item, gtype.of_type, f"{where}[{i}]")
        return
    if is_enum_type(gtype):
        assert value in gtype.values, f"{where}: {value!r} is no {gtype.name}"
    elif is_leaf_type(gtype):
        _check_scalar(gtype.name, value, where)
    else:
        assert isinstance(value, dict), where
        concrete = schema.get_type(value["__typename"]) if is_abstract_type(gtype) else gtype
        assert concrete is not None and is_object_type(concrete), where
        if is_abstract_type(gtype):
            assert schema.is_sub_type(gtype, concrete), f"{where}: {concrete} is no {gtype}"
        for key, item in value.items():
            if key != "__typename":
                _check(schema, item, concrete.fields[key].type, f"{where}.{key}")


def _check_scalar(name: str, value: Any, where: str) -> None:
    if name == "Boolean":
        assert isinstance(value, bool), where
    elif name == "Int":
        assert isinstance(value, int) and not isinstance(value, bool), where
    elif name == "Float":
        assert isinstance(value, int | float) and not isinstance(value, bool), where
    elif name in _STRING_SCALARS:
        assert isinstance(value, str), f"{where}: {value!r} is no {name}"
        if name == "DateTime":
            datetime.fromisoformat(value)
        if name in ("UnsignedInt64", "Decimal", "Money"):
            float(value)
    else:
        json.dumps(value)  # JSON and other free-form scalars: anything serialisable


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data(), root=st.sampled_from(["customers", "orders"]), version=st.sampled_from(VERSIONS))
def test_random_selections_of_customers_and_orders_execute_with_values_of_their_types(
    rig: ShopifyRig, data: Any, root: str, version: str
) -> None:
    schema = require_schema(version)
    kind = "Customer" if root == "customers" else "Order"
    selection = _selection(schema, schema.get_type(kind), DEPTH, data.draw)
    document = f"{{ {root}(first: 2, sortKey: ID) {{ nodes {{ id {selection} }} }} }}"
    assert errors_for(schema, document) == [], document  # the generator writes valid documents only
    requested = requested_cost(schema, parsed(document), None, {})
    if requested > MAX_QUERY_COST:
        return  # refused before execution, as Shopify would (tested elsewhere)
    body = rig.graphql(document, version=version)
    assert "errors" not in body, (document, body.get("errors"))
    cost = body["extensions"]["cost"]
    assert cost["requestedQueryCost"] == requested and 0 < cost["actualQueryCost"] <= requested
    nodes = body["data"][root]["nodes"]
    assert len(nodes) == 2
    _check(schema, body["data"], schema.query_type, "data")
    held = rig.emulator.data.customers if root == "customers" else rig.emulator.data.orders
    derived = set(ShopModel(rig.emulator.data, None, None).resolvers())  # type: ignore[arg-type]
    fields = schema.get_type(kind).fields  # type: ignore[union-attr]
    for node in nodes:
        truth = held.nodes[int(node["id"].rsplit("/", 1)[1])]
        for key, value in node.items():
            leaf = key in fields and is_leaf_type(get_named_type(fields[key].type)) and not fields[key].args
            if leaf and key in truth and (kind, key) not in derived:
                assert value == truth[key], f"{kind}.{key}"


def test_the_generator_is_not_trivial() -> None:
    schema = require_schema("2026-07")
    order = schema.get_type("Order")
    # Enough of Order's fields can be selected with literal arguments for the property test to mean something.
    usable = [
        n
        for n, f in order.fields.items()  # type: ignore[union-attr]
        if _arguments(f, is_connection(get_named_type(f.type)), lambda _s: 1) is not None
    ]
    assert len(usable) > 120
    assert all(is_input_type(a.type) for f in order.fields.values() for a in f.args.values())  # type: ignore[union-attr]
