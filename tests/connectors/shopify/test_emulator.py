"""The emulator: schema validation, fields answered from the data or the schema's defaults, cost and
throttleStatus, THROTTLED, search syntax, paging, scopes, bulk operations with their lifecycle and result files,
staged uploads, customer mutations and tagsAdd/tagsRemove with userErrors, the resource names of requests."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime
from decimal import Decimal

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from connectors.shopify.emulator_data import iso

from .conftest import BASE_URL, FakeMonotonic, ShopifyRig
from .schemas import require_schema

PAGE = """
query P($first: Int!, $after: String, $query: String) {
  customers(first: $first, after: $after, query: $query, sortKey: UPDATED_AT) {
    pageInfo { hasNextPage endCursor }
    nodes { id email updatedAt defaultAddress { city } }
  }
}
"""
BULK = (
    "mutation B($q: String!) { bulkOperationRunQuery(query: $q) {"
    " bulkOperation { id status } userErrors { code message } } }"
)
STATUS = "query S($id: ID!) { node(id: $id) { ... on BulkOperation { id status errorCode url objectCount } } }"
TAGS = """
mutation T($id: ID!, $add: [String!]!, $remove: [String!]!) {
  a: tagsAdd(id: $id, tags: $add) { node { id } userErrors { field message } }
  r: tagsRemove(id: $id, tags: $remove) { node { id } userErrors { field message } }
}
"""


def first_customer(rig: ShopifyRig) -> dict[str, object]:
    return rig.emulator.data.customers.nodes[rig.emulator.data.customers.by_id[0]]


# ----------------------------------------------------------------------------------------------- validation


def test_a_field_the_official_schema_lacks_is_rejected_as_the_api_would(rig: ShopifyRig) -> None:
    require_schema("2026-07")
    body = rig.graphql("{ customers(first: 1) { nodes { id givenName } } }")
    assert body["_status"] == 200
    assert body["errors"][0]["extensions"]["code"] == "GRAPHQL_VALIDATION_FAILED"
    assert "givenName" in body["errors"][0]["message"]
    assert "data" not in body


def test_a_field_added_in_a_newer_version_is_rejected_by_the_older_one(rig: ShopifyRig) -> None:
    old, new = require_schema("2025-01"), require_schema("2026-07")
    old_fields = old.type_map["Customer"].fields  # type: ignore[union-attr]
    new_fields = new.type_map["Customer"].fields  # type: ignore[union-attr]
    if "defaultEmailAddress" in old_fields or "defaultEmailAddress" not in new_fields:
        pytest.skip("Customer.defaultEmailAddress is not new in 2026-07 in the shipped schemas")
    document = "{ customers(first: 1) { nodes { id defaultEmailAddress { emailAddress } } } }"
    older = rig.graphql(document, version="2025-01")
    newer = rig.graphql(document, version="2026-07")
    assert older["errors"][0]["extensions"]["code"] == "GRAPHQL_VALIDATION_FAILED"
    node = newer["data"]["customers"]["nodes"][0]
    expected = rig.emulator.data.customers.nodes[rig.emulator.data.customers.by_id[0]]
    assert node == {"id": expected["id"], "defaultEmailAddress": {"emailAddress": expected["email"]}}


def test_a_mutation_the_shop_does_not_carry_out_is_refused_not_faked(rig: ShopifyRig) -> None:
    require_schema("2026-07")
    body = rig.graphql('mutation { productDelete(input: {id: "gid://shopify/Product/1"}) { deletedProductId } }')
    assert body["errors"][0]["extensions"]["code"] == "NOT_EMULATED"
    assert "productDelete" in body["errors"][0]["message"]
    assert "data" not in body


def test_bad_token_is_401_and_unknown_version_is_404(rig: ShopifyRig) -> None:
    assert rig.graphql("{ shop { name } }", token="shpat_wrong")["_status"] == 401
    assert rig.graphql("{ shop { name } }", version="2019-04")["_status"] == 404


def test_a_missing_scope_is_access_denied_naming_it(rig: ShopifyRig) -> None:
    body = rig.graphql("{ orders(first: 1) { nodes { id } } }", token="shpat_readonly")
    error = body["errors"][0]
    assert error["extensions"]["code"] == "ACCESS_DENIED"
    assert "read_orders" in error["extensions"]["requiredAccess"]


# ----------------------------------------------------------------------------------------------- cost


def test_cost_is_computed_as_documented_and_the_unused_part_is_refunded(rig_factory: Callable[..., ShopifyRig]) -> None:
    mono = FakeMonotonic()
    rig = rig_factory(speed=1.0, monotonic=mono)
    full = rig.graphql(PAGE, {"first": 10})
    cost = full["extensions"]["cost"]
    # connection 2 + first x (node 1 + defaultAddress 1)
    assert cost["requestedQueryCost"] == 2 + 10 * 2
    assert cost["actualQueryCost"] == 2 + 10 * 2
    assert cost["throttleStatus"] == {"maximumAvailable": 2000.0, "currentlyAvailable": 1978.0, "restoreRate": 100.0}
    newest = max(n["updatedAt"] for n in rig.emulator.data.customers.nodes.values())
    few = rig.graphql(PAGE, {"first": 10, "query": f"updated_at:>='{newest}'"})
    found = len(few["data"]["customers"]["nodes"])
    assert few["extensions"]["cost"]["requestedQueryCost"] == 22
    assert few["extensions"]["cost"]["actualQueryCost"] == 2 + found * 2
    assert few["extensions"]["cost"]["throttleStatus"]["currentlyAvailable"] == 1978.0 - (2 + found * 2)
    mono.advance(0.5)  # 50 points restored
    again = rig.graphql("{ shop { name } }")
    assert again["extensions"]["cost"]["throttleStatus"]["currentlyAvailable"] == pytest.approx(
        min(2000.0, 1978.0 - (2 + found * 2) + 50.0) - 1, abs=0.01
    )


def test_an_empty_bucket_answers_throttled_with_the_cost_block(rig_factory: Callable[..., ShopifyRig]) -> None:
    rig = rig_factory(speed=1.0, monotonic=FakeMonotonic())
    rig.emulator.drain(1990)
    body = rig.graphql(PAGE, {"first": 10})
    assert body["errors"] == [
        {"message": "Throttled", "extensions": {"code": "THROTTLED", "documentation": body["errors"][0]["extensions"]
                                                ["documentation"]}}
    ]
    assert body["extensions"]["cost"]["requestedQueryCost"] == 22
    assert body["extensions"]["cost"]["actualQueryCost"] is None
    assert body["extensions"]["cost"]["throttleStatus"]["currentlyAvailable"] == 10.0
    assert rig.emulator.stats.throttled == 1
    assert rig.graphql(PAGE, {"first": 4})["data"]["customers"]["nodes"]  # 10 points suffice for 2 + 4 x 2


def test_a_query_above_the_single_query_limit_is_refused(rig: ShopifyRig) -> None:
    dear = PAGE.replace("defaultAddress { city }", "defaultAddress { city } home: defaultAddress { zip }"
                        " emailMarketingConsent { marketingState }")
    assert "data" in rig.graphql(dear, {"first": 249})  # 2 + 249 x 4 = 998
    body = rig.graphql(dear, {"first": 250})
    assert body["errors"][0]["extensions"]["code"] == "MAX_COST_EXCEEDED"
    assert body["errors"][0]["extensions"]["cost"] == 2 + 250 * 4
    assert "data" not in body


def test_restore_rates_are_reported_per_real_second_of_the_compressed_clock(rig: ShopifyRig) -> None:
    status = rig.graphql("{ shop { name } }")["extensions"]["cost"]["throttleStatus"]
    assert status["restoreRate"] == 100.0 * 1000  # the rig runs at speed 1000


# ----------------------------------------------------------------------------------------------- search, paging


def test_updated_at_search_with_sort_key_pages_every_match_once_in_order(rig: ShopifyRig) -> None:
    nodes = rig.emulator.data.customers.nodes.values()
    stamps = sorted(n["updatedAt"] for n in nodes)
    bound = stamps[len(stamps) // 3]
    expected = sorted((n["updatedAt"], n["id"]) for n in nodes if n["updatedAt"] >= bound)
    seen: list[tuple[str, str]] = []
    after = None
    while True:
        page = rig.graphql(PAGE, {"first": 50, "after": after, "query": f"updated_at:>='{bound}'"})["data"]["customers"]
        seen.extend((n["updatedAt"], n["id"]) for n in page["nodes"])
        if not page["pageInfo"]["hasNextPage"]:
            break
        after = page["pageInfo"]["endCursor"]
    assert [s for s, _ in seen] == sorted(s for s, _ in seen)
    assert sorted(seen) == expected


def test_an_upper_bound_and_a_changed_record_are_honoured(rig: ShopifyRig) -> None:
    rig.time.now = datetime(2030, 1, 1, tzinfo=UTC)
    node = first_customer(rig)
    rig.emulator.data.change_tags(int(str(node["id"]).rsplit("/", 1)[1]), ["x"], add=True, now=rig.time.now)
    later = rig.graphql(PAGE, {"first": 5, "query": "updated_at:>='2029-12-31T00:00:00Z'"})
    assert [n["id"] for n in later["data"]["customers"]["nodes"]] == [node["id"]]
    before = rig.graphql(PAGE, {"first": 250, "query": "updated_at:<='2029-12-31T00:00:00Z'"})
    assert node["id"] not in {n["id"] for n in before["data"]["customers"]["nodes"]}


def test_an_unknown_search_field_matches_everything_and_is_warned_about(rig: ShopifyRig) -> None:
    body = rig.graphql(PAGE, {"first": 3, "query": "colour:blue"})
    assert len(body["data"]["customers"]["nodes"]) == 3
    assert body["extensions"]["search"][0]["warnings"][0]["field"] == "colour"


def test_email_and_tag_prefix_searches(rig: ShopifyRig) -> None:
    node = first_customer(rig)
    by_email = rig.graphql(PAGE, {"first": 5, "query": f'email:"{str(node["email"]).upper()}"'})
    assert [n["id"] for n in by_email["data"]["customers"]["nodes"]] == [node["id"]]
    rig.emulator.data.change_tags(int(str(node["id"]).rsplit("/", 1)[1]), ["hub:vip"], add=True, now=rig.time.now)
    by_tag = rig.graphql(PAGE, {"first": 5, "query": "tag:hub\\:*"})
    assert [n["id"] for n in by_tag["data"]["customers"]["nodes"]] == [node["id"]]


def test_first_is_required_and_capped_at_250(rig: ShopifyRig) -> None:
    assert "first" in rig.graphql("{ customers { nodes { id } } }")["errors"][0]["message"]
    assert rig.graphql(PAGE, {"first": 251})["errors"]


# ----------------------------------------------------------------------------------------------- bulk operations


def bulk_rig(rig_factory: Callable[..., ShopifyRig]) -> tuple[ShopifyRig, FakeMonotonic]:
    mono = FakeMonotonic()
    return rig_factory(speed=1.0, monotonic=mono, bulk_rate=100.0), mono


def test_bulk_query_lifecycle_and_its_jsonl_result_url(rig_factory: Callable[..., ShopifyRig]) -> None:
    rig, mono = bulk_rig(rig_factory)
    query = "{ customers { edges { node { id email } } } }"
    started = rig.graphql(BULK, {"q": query}, version="2025-01")["data"]["bulkOperationRunQuery"]
    assert started["userErrors"] == []
    op_id = started["bulkOperation"]["id"]
    assert started["bulkOperation"]["status"] == "CREATED"
    refused = rig.graphql(BULK, {"q": query}, version="2025-01")["data"]["bulkOperationRunQuery"]
    assert refused["userErrors"][0]["code"] == "OPERATION_IN_PROGRESS"
    mono.advance(1.0)
    running = rig.graphql(STATUS, {"id": op_id})["data"]["node"]
    assert running["status"] == "RUNNING" and running["url"] is None
    mono.advance(60.0)
    done = rig.graphql(STATUS, {"id": op_id})["data"]["node"]
    assert done["status"] == "COMPLETED"
    customers = rig.emulator.data.customers.nodes
    assert int(done["objectCount"]) == len(customers)
    assert done["url"].startswith(BASE_URL)
    result = httpx.Client(transport=rig.transport).get(done["url"])
    lines = [json.loads(line) for line in result.text.splitlines()]
    assert {line["id"] for line in lines} == {n["id"] for n in customers.values()}
    forged = httpx.Client(transport=rig.transport).get(done["url"].rsplit("-", 1)[0] + "-00.jsonl")
    assert forged.status_code == 403


def test_bulk_children_carry_their_parent_and_are_grouped_only_in_older_versions(
    rig_factory: Callable[..., ShopifyRig],
) -> None:
    rig, mono = bulk_rig(rig_factory)
    query = "{ orders { edges { node { id lineItems { edges { node { quantity } } } } } } }"
    results = {}
    for version in ("2025-01", "2026-07"):
        op_id = rig.graphql(BULK, {"q": query}, version=version)["data"]["bulkOperationRunQuery"]["bulkOperation"]["id"]
        mono.advance(3600)
        url = rig.graphql(STATUS, {"id": op_id}, version=version)["data"]["node"]["url"]
        results[version] = [json.loads(x) for x in httpx.Client(transport=rig.transport).get(url).text.splitlines()]
    for lines in results.values():
        parents = {line["id"] for line in lines if "__parentId" not in line}
        assert parents == {n["id"] for n in rig.emulator.data.orders.nodes.values()}
        assert all(line["__parentId"] in parents for line in lines if "__parentId" in line)

    def adjacent(lines: list[dict[str, object]]) -> bool:
        current = None
        for line in lines:
            if "__parentId" not in line:
                current = line["id"]
            elif line["__parentId"] != current:
                return False
        return True

    assert adjacent(results["2025-01"])
    assert not adjacent(results["2026-07"])


def test_a_bulk_operation_can_fail_and_invalid_bulk_queries_are_refused(rig_factory: Callable[..., ShopifyRig]) -> None:
    rig, mono = bulk_rig(rig_factory)
    rig.emulator.fail_next_bulk("INTERNAL_SERVER_ERROR")
    op_id = rig.graphql(BULK, {"q": "{ customers { edges { node { id } } } }"})["data"]["bulkOperationRunQuery"][
        "bulkOperation"
    ]["id"]
    mono.advance(3600)
    node = rig.graphql(STATUS, {"id": op_id})["data"]["node"]
    assert (node["status"], node["errorCode"], node["url"]) == ("FAILED", "INTERNAL_SERVER_ERROR", None)
    no_connection = rig.graphql(BULK, {"q": "{ shop { name } }"})["data"]["bulkOperationRunQuery"]
    assert no_connection["userErrors"][0]["code"] == "INVALID"


def test_staged_upload_and_bulk_mutation_answer_per_line(rig_factory: Callable[..., ShopifyRig]) -> None:
    rig, mono = bulk_rig(rig_factory)
    staged = rig.graphql(
        "mutation U($input: [StagedUploadInput!]!) { stagedUploadsCreate(input: $input) {"
        " stagedTargets { url parameters { name value } } userErrors { message } } }",
        {"input": [{"resource": "BULK_MUTATION_VARIABLES", "filename": "t.jsonl", "mimeType": "text/jsonl",
                    "httpMethod": "POST"}]},
    )["data"]["stagedUploadsCreate"]["stagedTargets"][0]
    params = {p["name"]: p["value"] for p in staged["parameters"]}
    node = first_customer(rig)
    content = (json.dumps({"id": node["id"], "tags": ["hub:a"]}) + "\n"
               + json.dumps({"id": "gid://shopify/Customer/1", "tags": ["hub:a"]}) + "\n").encode()
    files = {"file": ("t.jsonl", content)}
    upload = httpx.Client(transport=rig.transport).post(staged["url"], data=params, files=files)
    assert upload.status_code == 201
    run = rig.graphql(
        "mutation R($m: String!, $p: String!) { bulkOperationRunMutation(mutation: $m, stagedUploadPath: $p) {"
        " bulkOperation { id } userErrors { code message } } }",
        {"m": "mutation L($id: ID!, $tags: [String!]!) { tagsAdd(id: $id, tags: $tags) { node { id }"
              " userErrors { message } } }", "p": params["key"]},
    )["data"]["bulkOperationRunMutation"]
    assert run["userErrors"] == []
    mono.advance(3600)
    url = rig.graphql(STATUS, {"id": run["bulkOperation"]["id"]})["data"]["node"]["url"]
    lines = [json.loads(x) for x in httpx.Client(transport=rig.transport).get(url).text.splitlines()]
    assert [line["__lineNumber"] for line in lines] == [0, 1]
    assert lines[0]["data"]["tagsAdd"]["userErrors"] == []
    assert lines[1]["data"]["tagsAdd"]["userErrors"][0]["message"] == "Customer does not exist"
    assert "hub:a" in node["tags"]  # type: ignore[operator]


# ----------------------------------------------------------------------------------------------- tags


def test_tags_add_and_remove_touch_only_the_named_tags(rig: ShopifyRig) -> None:
    node = first_customer(rig)
    before = list(node["tags"])  # type: ignore[call-overload]
    stamp = node["updatedAt"]
    rig.time.advance(3600)
    body = rig.graphql(TAGS, {"id": node["id"], "add": ["hub:vip", "HUB:VIP"], "remove": []})["data"]
    assert body["a"]["userErrors"] == [] and body["a"]["node"]["id"] == node["id"]
    assert sorted(node["tags"], key=str.casefold) == sorted([*before, "hub:vip"], key=str.casefold)  # type: ignore[call-overload]
    assert node["updatedAt"] > stamp  # type: ignore[operator]
    rig.graphql(TAGS, {"id": node["id"], "add": [], "remove": ["Hub:Vip"]})
    assert node["tags"] == before


def test_tags_user_errors(rig: ShopifyRig) -> None:
    missing = rig.graphql(TAGS, {"id": "gid://shopify/Customer/1", "add": ["a"], "remove": []})["data"]["a"]
    assert missing == {"node": None, "userErrors": [{"field": ["id"], "message": "Customer does not exist"}]}
    node = first_customer(rig)
    long = rig.graphql(TAGS, {"id": node["id"], "add": ["x" * 256], "remove": []})["data"]["a"]
    assert "too long" in long["userErrors"][0]["message"]
    denied = rig.graphql(TAGS, {"id": node["id"], "add": ["a"], "remove": []}, token="shpat_readonly")
    assert denied["errors"][0]["extensions"]["code"] == "ACCESS_DENIED"


def test_mutate_changes_and_deletes_with_new_stamps(rig: ShopifyRig) -> None:
    import random

    rig.time.now = datetime(2031, 1, 1, tzinfo=UTC)
    counts = rig.emulator.mutate(0.1, 0.02, random.Random(3))
    stamp = iso(rig.time.now)
    changed = [n for n in rig.emulator.data.customers.nodes.values() if n["updatedAt"] >= stamp]
    # A changed customer without orders may have been deleted afterwards.
    assert counts["customers_changed"] - counts["customers_deleted"] <= len(changed) <= counts["customers_changed"]
    assert len(changed) > 0
    assert counts["customers_deleted"] > 0


def test_five_bulk_queries_may_run_at_once_from_2026_01(rig_factory: Callable[..., ShopifyRig]) -> None:
    rig, _mono = bulk_rig(rig_factory)
    query = "{ customers { edges { node { id } } } }"
    answers = [rig.graphql(BULK, {"q": query})["data"]["bulkOperationRunQuery"] for _ in range(6)]
    assert [a["userErrors"] for a in answers[:5]] == [[]] * 5
    assert answers[5]["userErrors"][0]["code"] == "LIMIT_REACHED"
    assert rig.emulator.stats.bulk_started["QUERY"] == 5


def test_a_bulk_operation_queues_then_counts_its_objects_as_it_runs(rig_factory: Callable[..., ShopifyRig]) -> None:
    rig, mono = bulk_rig(rig_factory)  # 100 objects per vendor second, one second in the queue
    customers = len(rig.emulator.data.customers.nodes)
    op_id = rig.graphql(BULK, {"q": "{ customers { edges { node { id } } } }"})["data"]["bulkOperationRunQuery"][
        "bulkOperation"
    ]["id"]
    seen: list[tuple[str, int]] = []
    for _ in range(12):
        node = rig.graphql(STATUS, {"id": op_id})["data"]["node"]
        seen.append((node["status"], int(node["objectCount"])))
        mono.advance(0.25 + customers / 100 / 10)
    statuses = [s for s, _ in seen]
    counts = [c for _, c in seen]
    assert statuses[0] == "CREATED" and counts[0] == 0
    assert "RUNNING" in statuses and statuses[-1] == "COMPLETED"
    assert counts == sorted(counts) and counts[-1] == customers
    assert any(0 < c < customers for s, c in seen if s == "RUNNING")  # objectCount grows while it runs
    assert statuses.index("COMPLETED") > statuses.index("RUNNING")


def test_a_running_bulk_operation_can_be_canceled(rig_factory: Callable[..., ShopifyRig]) -> None:
    rig, mono = bulk_rig(rig_factory)
    op_id = rig.graphql(BULK, {"q": "{ orders { edges { node { id } } } }"})["data"]["bulkOperationRunQuery"][
        "bulkOperation"
    ]["id"]
    cancel = "mutation C($id: ID!) { bulkOperationCancel(id: $id) { bulkOperation { status } userErrors { message } } }"
    answer = rig.graphql(cancel, {"id": op_id})["data"]["bulkOperationCancel"]
    assert answer == {"bulkOperation": {"status": "CANCELING"}, "userErrors": []}
    mono.advance(3600)
    assert rig.graphql(STATUS, {"id": op_id})["data"]["node"]["status"] == "CANCELED"
    again = rig.graphql(cancel, {"id": op_id})["data"]["bulkOperationCancel"]
    assert again["userErrors"] and again["bulkOperation"]["status"] == "CANCELED"


# ----------------------------------------------------------------------------------------------- fields of the schema

CUSTOMER_FIELDS = """
query C($id: ID!) {
  customer(id: $id) {
    id numberOfOrders amountSpent { amount currencyCode } canDelete displayName
    defaultEmailAddress { emailAddress marketingState }
    lastOrder { id }
    orders(first: 250) { nodes { id currentTotalPriceSet { shopMoney { amount } } cancelledAt } }
    addressesV2(first: 5) { nodes { city countryCodeV2 } }
    metafields(first: 5) { nodes { key } pageInfo { hasNextPage } }
    smsMarketingConsent { marketingState }
  }
}
"""


def test_derived_customer_fields_agree_with_the_orders_the_shop_holds(rig: ShopifyRig) -> None:
    require_schema("2026-07")
    data = rig.emulator.data
    number = max(data.orders_of, key=lambda n: len(data.orders_of[n]))
    node = data.customers.nodes[number]
    customer = rig.graphql(CUSTOMER_FIELDS, {"id": node["id"]})["data"]["customer"]
    orders = data.customer_orders(number)
    assert customer["numberOfOrders"] == str(len(orders)) == str(len(customer["orders"]["nodes"]))
    assert [o["id"] for o in customer["orders"]["nodes"]] == sorted(o["id"] for o in orders)
    spent = sum(Decimal(o["currentTotalPriceSet"]["shopMoney"]["amount"]) for o in customer["orders"]["nodes"]
                if not o["cancelledAt"])
    assert Decimal(customer["amountSpent"]["amount"]) == spent
    assert customer["amountSpent"]["currencyCode"] == rig.emulator.ctx.business.currency
    assert customer["lastOrder"]["id"] == max(orders, key=lambda o: o["processedAt"])["id"]
    assert customer["canDelete"] is False
    assert customer["defaultEmailAddress"]["emailAddress"] == node["email"]
    assert customer["addressesV2"]["nodes"] == [{"city": node["defaultAddress"]["city"],
                                                "countryCodeV2": node["defaultAddress"]["countryCodeV2"]}]
    # Nothing in the data model: the empty answers Shopify gives.
    assert customer["metafields"] == {"nodes": [], "pageInfo": {"hasNextPage": False}}
    assert (customer["smsMarketingConsent"] is None) == (not node["phone"])


def test_lookups_by_id_and_identifier_and_nodes(rig: ShopifyRig) -> None:
    require_schema("2026-07")
    data = rig.emulator.data
    customer = first_customer(rig)
    order = data.orders.nodes[data.orders.by_id[0]]
    item = order["lineItems"][0]
    body = rig.graphql(
        """query L($c: ID!, $o: ID!, $li: ID!, $email: String!) {
          customer(id: $c) { id }
          byEmail: customerByIdentifier(identifier: {emailAddress: $email}) { id }
          order(id: $o) { name }
          wrongKind: customer(id: $o) { id }
          nodes(ids: [$c, $o, $li, "gid://shopify/Customer/1"]) { __typename id }
          node(id: $li) { ... on LineItem { title product { title } } }
        }""",
        {"c": customer["id"], "o": order["id"], "li": item["id"], "email": str(customer["email"]).upper()},
    )["data"]
    assert body["customer"] == body["byEmail"] == {"id": customer["id"]}
    assert body["order"] == {"name": order["name"]} and body["wrongKind"] is None
    assert body["nodes"] == [
        {"__typename": "Customer", "id": customer["id"]},
        {"__typename": "Order", "id": order["id"]},
        {"__typename": "LineItem", "id": item["id"]},
        None,
    ]
    assert body["node"] == {"title": item["title"], "product": {"title": item["product"]["title"]}}


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(size=st.integers(1, 7), backward=st.booleans(), reverse=st.booleans(), sort=st.sampled_from(
    ["ID", "UPDATED_AT", "CREATED_AT", "NAME"]))
def test_paging_either_way_visits_every_node_once(
    rig: ShopifyRig, size: int, backward: bool, reverse: bool, sort: str
) -> None:
    query = "tag:wholesale"  # a few dozen customers: several pages of a handful
    document = """query P($first: Int, $last: Int, $after: String, $before: String, $sort: CustomerSortKeys,
      $reverse: Boolean, $q: String) {
      customers(first: $first, last: $last, after: $after, before: $before, sortKey: $sort, reverse: $reverse,
        query: $q) { nodes { id } pageInfo { hasNextPage hasPreviousPage startCursor endCursor } } }"""
    everything = rig.graphql(document, {"first": 250, "sort": sort, "reverse": reverse, "q": query})
    order = [n["id"] for n in everything["data"]["customers"]["nodes"]]
    expected = {n["id"] for n in rig.emulator.data.customers.nodes.values() if "wholesale" in n["tags"]}
    assert set(order) == expected and len(order) == len(expected)
    seen: list[str] = []
    cursor = None
    for _ in range(len(order) + 2):
        variables = {"sort": sort, "reverse": reverse, "q": query}
        variables.update({"last": size, "before": cursor} if backward else {"first": size, "after": cursor})
        page = rig.graphql(document, variables)["data"]["customers"]
        ids = [n["id"] for n in page["nodes"]]
        seen = ids + seen if backward else seen + ids
        more = page["pageInfo"]["hasPreviousPage"] if backward else page["pageInfo"]["hasNextPage"]
        if not more:
            break
        cursor = page["pageInfo"]["startCursor"] if backward else page["pageInfo"]["endCursor"]
    assert seen == order


# ----------------------------------------------------------------------------------------------- customer mutations

CREATE = """mutation M($input: CustomerInput!) { customerCreate(input: $input) {
  customer { id email displayName numberOfOrders tags canDelete } userErrors { field message } } }"""
UPDATE = """mutation M($input: CustomerInput!) { customerUpdate(input: $input) {
  customer { id note tags updatedAt } userErrors { field message } } }"""
DELETE = """mutation M($id: ID!) {
  customerDelete(input: {id: $id}) { deletedCustomerId userErrors { field message } } }"""
SET = """mutation M($identifier: CustomerSetIdentifiers, $input: CustomerSetInput!) {
  customerSet(identifier: $identifier, input: $input) { customer { id email firstName } userErrors { code field } } }"""


def test_customers_are_created_updated_set_and_deleted_consistently(rig: ShopifyRig) -> None:
    require_schema("2026-07")
    data = rig.emulator.data
    before = len(data.customers.nodes)
    made = rig.graphql(CREATE, {"input": {"email": "new.person@example.org", "firstName": "New", "tags": ["a", "b"]}})
    created = made["data"]["customerCreate"]["customer"]
    assert made["data"]["customerCreate"]["userErrors"] == []
    assert created["displayName"] == "New" and created["numberOfOrders"] == "0" and created["canDelete"] is True
    assert len(data.customers.nodes) == before + 1
    taken = rig.graphql(CREATE, {"input": {"email": "NEW.person@example.org"}})["data"]["customerCreate"]
    assert taken["customer"] is None and taken["userErrors"][0]["field"] == ["email"]
    rig.time.advance(60)
    updated = rig.graphql(UPDATE, {"input": {"id": created["id"], "note": "VIP", "tags": ["c"]}})["data"]
    assert updated["customerUpdate"]["customer"]["note"] == "VIP"
    assert updated["customerUpdate"]["customer"]["tags"] == ["c"]  # customerUpdate replaces the list
    upsert = rig.graphql(SET, {"identifier": {"email": "new.person@example.org"},
                               "input": {"firstName": "Renamed"}})["data"]["customerSet"]
    assert upsert["customer"] == {"id": created["id"], "email": "new.person@example.org", "firstName": "Renamed"}
    fresh = rig.graphql(SET, {"identifier": {"email": "other@example.org"}, "input": {"firstName": "O"}})
    assert fresh["data"]["customerSet"]["customer"]["email"] == "other@example.org"
    assert len(data.customers.nodes) == before + 2
    gone = rig.graphql(DELETE, {"id": created["id"]})["data"]["customerDelete"]
    assert gone == {"deletedCustomerId": created["id"], "userErrors": []}
    assert rig.graphql("query($id: ID!) { customer(id: $id) { id } }", {"id": created["id"]})["data"] == {
        "customer": None}
    buyer = data.customers.nodes[next(iter(data.orders_of))]
    kept = rig.graphql(DELETE, {"id": buyer["id"]})["data"]["customerDelete"]
    assert kept["deletedCustomerId"] is None and "orders" in kept["userErrors"][0]["message"]


# ----------------------------------------------------------------------------------------------- resource names


@pytest.mark.parametrize(
    ("document", "expected"),
    [
        (PAGE, "customers"),
        ("query ShopCheck { shop { name } currentAppInstallation { id } }", "shop,currentAppInstallation"),
        (TAGS, "tagsAdd,tagsRemove"),
        (BULK, "bulkOperationRunQuery"),
        ("{ __typename }", None),
        ("not graphql", None),
    ],
)
def test_the_resource_of_a_request_is_its_root_fields(rig: ShopifyRig, document: str, expected: str | None) -> None:
    request = httpx.Request("POST", f"{BASE_URL}/admin/api/2026-07/graphql.json", json={"query": document})
    assert rig.emulator.resource_name(request) == expected
    assert (rig.emulator.endpoint_name(request) or "").startswith("graphql")


def test_storage_requests_are_named_by_their_resource(rig: ShopifyRig) -> None:
    download = httpx.Request("GET", f"{BASE_URL}/bulk-operation-results/1-00ff.jsonl")
    upload = httpx.Request("POST", f"{BASE_URL}/staged-uploads")
    assert rig.emulator.resource_name(download) == "bulk-operation-result"
    assert rig.emulator.resource_name(upload) == "staged-upload"
    assert rig.emulator.endpoint_name(download) == "GET bulk-operation-result"
