"""An ordinary GraphQL client against the emulator over HTTP: ``gql`` built with Shopify's official 2026-07
schema, so every document is validated on the client before it is sent, as a schema-checking app would.

The queries are the ones an app sends (customers with their order count and spend, a customer's orders, orders
with line items, ``node``, ``shop``, ``tagsAdd``, a bulk query polled to its JSONL file); the answers are
checked against the emulator's own data, not against what our connector expects.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import httpx
import pytest
from gql import Client, gql
from gql.transport.httpx import HTTPXTransport
from graphql import GraphQLError

from connectors.shopify.emulator import SANDBOX_TOKEN, ShopifyEmulator
from connectors.shopify.settings import TOKEN_HEADER
from hub.sandbox.business import Business
from hub.sandbox.control import Sandbox
from hub.sandbox.emulator import EmulatorContext
from hub.sandbox.server import SandboxServers

from .schemas import require_schema

VERSION = "2026-07"


class Shop:
    """The emulator served over HTTP, and a gql session validating against the official schema."""

    def __init__(self, sandbox: Sandbox, session: Any) -> None:
        self.sandbox = sandbox
        self.emulator: ShopifyEmulator = sandbox.emulator  # type: ignore[assignment]
        self.session = session

    def run(self, document: str, **variables: Any) -> dict[str, Any]:
        request = gql(document)
        request.variable_values = variables or None
        result: dict[str, Any] = self.session.execute(request)
        return result


@pytest.fixture
def shop(business: Business) -> Iterator[Shop]:
    schema = require_schema(VERSION)
    # Speed 50: a bulk query over the small shop finishes within a fraction of a real second.
    sandbox = Sandbox(ShopifyEmulator(EmulatorContext.create(business, speed=50.0)))
    with SandboxServers({"shopify": sandbox}) as servers:
        url = f"{servers.base_urls['shopify']}/admin/api/{VERSION}/graphql.json"
        transport = HTTPXTransport(url=url, headers={TOKEN_HEADER: SANDBOX_TOKEN})
        with Client(schema=schema, transport=transport) as session:
            yield Shop(sandbox, session)


def _spent(emulator: ShopifyEmulator, number: int) -> Decimal:
    orders = emulator.data.customer_orders(number)
    return sum(
        (Decimal(o["currentTotalPriceSet"]["shopMoney"]["amount"]) for o in orders if not o["cancelledAt"]),
        Decimal("0"),
    )


def test_the_client_refuses_a_document_the_schema_does_not_allow(shop: Shop) -> None:
    with pytest.raises(GraphQLError, match="givenName"):
        shop.run("{ customers(first: 1) { nodes { givenName } } }")
    assert shop.sandbox.stats()["requests"] == 0  # refused before anything was sent


def test_customers_with_order_counts_spend_addresses_and_consent(shop: Shop) -> None:
    data = shop.run(
        """query Customers($query: String) {
          customers(first: 50, query: $query, sortKey: UPDATED_AT) {
            nodes {
              id numberOfOrders amountSpent { amount currencyCode }
              defaultEmailAddress { emailAddress marketingState }
              addresses { city countryCodeV2 country }
              tags createdAt updatedAt state note
            }
            pageInfo { hasNextPage endCursor }
          }
        }""",
        query="tag:wholesale",
    )
    nodes = data["customers"]["nodes"]
    held = shop.emulator.data.customers.nodes
    wholesale = [n for n in held.values() if "wholesale" in n["tags"]]
    assert len(nodes) == min(50, len(wholesale)) > 0
    assert data["customers"]["pageInfo"]["hasNextPage"] == (len(wholesale) > 50)
    stamps = [n["updatedAt"] for n in nodes]
    assert stamps == sorted(stamps)
    for node in nodes:
        number = int(node["id"].rsplit("/", 1)[1])
        truth = held[number]
        assert node["numberOfOrders"] == str(len(shop.emulator.data.customer_orders(number)))
        assert Decimal(node["amountSpent"]["amount"]) == _spent(shop.emulator, number)
        assert node["amountSpent"]["currencyCode"] == shop.emulator.data.currency
        assert node["defaultEmailAddress"]["emailAddress"] == truth["email"]
        assert node["defaultEmailAddress"]["marketingState"] == truth["emailMarketingConsent"]["marketingState"]
        assert node["addresses"] == [
            {
                "city": truth["defaultAddress"]["city"],
                "countryCodeV2": truth["defaultAddress"]["countryCodeV2"],
                "country": truth["defaultAddress"]["country"],
            }
        ]
        assert "wholesale" in node["tags"] and node["tags"] == truth["tags"]
        assert (node["createdAt"], node["updatedAt"], node["state"], node["note"]) == (
            truth["createdAt"],
            truth["updatedAt"],
            truth["state"],
            truth["note"],
        )


def test_a_customer_by_id_with_its_orders(shop: Shop) -> None:
    data = shop.emulator.data
    number = max(data.orders_of, key=lambda n: len(data.orders_of[n]))
    answer = shop.run(
        """query Customer($id: ID!) {
          customer(id: $id) {
            displayName numberOfOrders
            orders(first: 2) { nodes { id name totalPriceSet { shopMoney { amount } } } pageInfo { hasNextPage } }
          }
        }""",
        id=data.customers.nodes[number]["id"],
    )["customer"]
    held = data.customer_orders(number)
    assert answer["displayName"] == data.customers.nodes[number]["displayName"]
    assert answer["numberOfOrders"] == str(len(held))
    wanted = sorted(held, key=lambda o: o["_num"])[:2]
    assert answer["orders"]["nodes"] == [
        {
            "id": o["id"],
            "name": o["name"],
            "totalPriceSet": {"shopMoney": {"amount": o["totalPriceSet"]["shopMoney"]["amount"]}},
        }
        for o in wanted
    ]
    assert answer["orders"]["pageInfo"]["hasNextPage"] == (len(held) > 2)


def test_orders_with_line_items_totals_and_their_customer(shop: Shop) -> None:
    data = shop.run(
        """{
          orders(first: 20, sortKey: PROCESSED_AT) {
            edges {
              cursor
              node {
                id processedAt
                totalPriceSet { shopMoney { amount currencyCode } presentmentMoney { amount currencyCode } }
                lineItems(first: 5) { nodes { title quantity sku originalUnitPriceSet { shopMoney { amount } } } }
                customer { id email }
              }
            }
          }
        }"""
    )
    edges = data["orders"]["edges"]
    assert len(edges) == 20 and len({e["cursor"] for e in edges}) == 20
    stamps = [e["node"]["processedAt"] for e in edges]
    assert stamps == sorted(stamps)
    held = shop.emulator.data
    for edge in edges:
        node = edge["node"]
        truth = held.orders.nodes[int(node["id"].rsplit("/", 1)[1])]
        assert node["totalPriceSet"] == truth["totalPriceSet"]
        assert [(li["title"], li["quantity"], li["sku"]) for li in node["lineItems"]["nodes"]] == [
            (li["title"], li["quantity"], li["sku"]) for li in truth["lineItems"][:5]
        ]
        total = sum(
            Decimal(li["originalUnitPriceSet"]["shopMoney"]["amount"]) * li["quantity"]
            for li in node["lineItems"]["nodes"]
        )
        assert total <= Decimal(truth["totalPriceSet"]["shopMoney"]["amount"])
        buyer = held.customers.nodes[truth["_customer"]]
        assert node["customer"] == {"id": buyer["id"], "email": buyer["email"]}


def test_node_and_shop(shop: Shop) -> None:
    order = next(iter(shop.emulator.data.orders.nodes.values()))
    data = shop.run(
        """query N($id: ID!) {
          node(id: $id) { __typename id ... on Order { name email } }
          shop { name currencyCode myshopifyDomain }
        }""",
        id=order["id"],
    )
    assert data["node"] == {"__typename": "Order", "id": order["id"], "name": order["name"], "email": order["email"]}
    assert data["shop"] == {
        "name": "Sandbox Shop",
        "currencyCode": shop.emulator.ctx.business.currency,
        "myshopifyDomain": "sandbox-shop.myshopify.com",
    }


def test_tags_add(shop: Shop) -> None:
    customer = next(iter(shop.emulator.data.customers.nodes.values()))
    answer = shop.run(
        """mutation Tag($id: ID!, $tags: [String!]!) {
          tagsAdd(id: $id, tags: $tags) { node { id ... on Customer { tags } } userErrors { field message } }
        }""",
        id=customer["id"],
        tags=["vip", "spring-sale"],
    )["tagsAdd"]
    assert answer["userErrors"] == []
    assert {"vip", "spring-sale"} <= set(answer["node"]["tags"])
    assert answer["node"]["tags"] == customer["tags"]  # the shop's own record changed


def test_a_bulk_query_is_polled_to_completion_and_its_file_downloaded(shop: Shop) -> None:
    started = shop.run(
        """mutation Bulk($query: String!) {
          bulkOperationRunQuery(query: $query) { bulkOperation { id status } userErrors { field message code } }
        }""",
        query="{ customers { edges { node { id email numberOfOrders } } } }",
    )["bulkOperationRunQuery"]
    assert started["userErrors"] == []
    op_id = started["bulkOperation"]["id"]
    status_query = """query S($id: ID!) {
      node(id: $id) { ... on BulkOperation { status objectCount url } }
      currentBulkOperation { id status }
    }"""
    deadline = time.monotonic() + 20
    while True:
        status = shop.run(status_query, id=op_id)
        assert status["currentBulkOperation"]["id"] == op_id
        if status["node"]["status"] == "COMPLETED" or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    node = status["node"]
    customers = shop.emulator.data.customers.nodes
    assert node["status"] == "COMPLETED" and int(node["objectCount"]) == len(customers)
    lines = [json.loads(line) for line in httpx.get(node["url"]).text.splitlines()]
    assert {line["id"] for line in lines} == {c["id"] for c in customers.values()}
    for line in lines:
        number = int(line["id"].rsplit("/", 1)[1])
        assert line["email"] == customers[number]["email"]
        assert line["numberOfOrders"] == str(len(shop.emulator.data.customer_orders(number)))
