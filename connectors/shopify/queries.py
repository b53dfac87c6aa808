"""Every GraphQL document the connector sends, and the search-query strings it builds.

The contract tests validate each document here against the official Admin API schemas, so keep them to fields
that exist in every supported version. ``email``, ``phone`` and ``emailMarketingConsent`` are deprecated in newer
versions in favour of ``defaultEmailAddress``/``defaultPhoneNumber``, which older versions lack; the deprecated
fields still answer everywhere, so they are used until the oldest supported version has the new ones.

Bulk queries are sent as strings inside ``bulkOperationRunQuery``; they take no ``first``/``after`` and may nest
at most two connection levels, so they repeat the field selections inline instead of using fragments.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC, datetime

from .settings import ORDER_LINE_ITEMS

# ------------------------------------------------------------------------------------------ selections

# Node cost: the customer (1) + emailMarketingConsent (1) + defaultAddress (1) = 3 points; 250 fit in 752.
CUSTOMER_SELECTION = """
    id
    email
    firstName
    lastName
    phone
    state
    tags
    createdAt
    updatedAt
    emailMarketingConsent { marketingState marketingOptInLevel consentUpdatedAt }
    defaultAddress { countryCodeV2 province provinceCode city }
"""

# Objects beyond the order: customer (1), totalPriceSet with its two MoneyV2 (3), totalRefundedSet with one (2).
ORDER_SELECTION = """
    id
    name
    email
    createdAt
    updatedAt
    processedAt
    cancelledAt
    test
    sourceName
    displayFinancialStatus
    currencyCode
    presentmentCurrencyCode
    customer { id }
    totalPriceSet { shopMoney { amount currencyCode } presentmentMoney { amount currencyCode } }
    totalRefundedSet { shopMoney { amount currencyCode } }
"""

LINE_ITEM_SELECTION = "quantity product { productType }"

# ------------------------------------------------------------------------------------------ paged pulls

CUSTOMERS_PAGE = f"""
query CustomersPage($first: Int!, $after: String, $query: String) {{
  customers(first: $first, after: $after, query: $query, sortKey: UPDATED_AT) {{
    pageInfo {{ hasNextPage endCursor }}
    nodes {{ {CUSTOMER_SELECTION} }}
  }}
}}
"""

# Ten line items per order cost 2 + 10 x 2 points (one for the item, one for its product), so an order node
# requests 1 + 6 (ORDER_SELECTION's objects) + 22 = 29 points; an order with more line items gets the rest from
# ORDER_LINE_ITEMS_PAGE.
ORDERS_PAGE = f"""
query OrdersPage($first: Int!, $after: String, $query: String) {{
  orders(first: $first, after: $after, query: $query, sortKey: UPDATED_AT) {{
    pageInfo {{ hasNextPage endCursor }}
    nodes {{
      {ORDER_SELECTION}
      lineItems(first: {ORDER_LINE_ITEMS}) {{
        pageInfo {{ hasNextPage endCursor }}
        nodes {{ {LINE_ITEM_SELECTION} }}
      }}
    }}
  }}
}}
"""

ORDER_LINE_ITEMS_PAGE = f"""
query OrderLineItems($id: ID!, $after: String) {{
  node(id: $id) {{
    ... on Order {{
      lineItems(first: 100, after: $after) {{
        pageInfo {{ hasNextPage endCursor }}
        nodes {{ {LINE_ITEM_SELECTION} }}
      }}
    }}
  }}
}}
"""

CUSTOMER_IDS_PAGE = """
query CustomerIds($first: Int!, $after: String) {
  customers(first: $first, after: $after, sortKey: ID) {
    pageInfo { hasNextPage endCursor }
    nodes { id }
  }
}
"""

CUSTOMERS_COUNT = """
query CustomersCount($query: String) {
  customersCount(query: $query) { count precision }
}
"""

ORDERS_COUNT = """
query OrdersCount($query: String) {
  ordersCount(query: $query) { count precision }
}
"""

# count root -> (operation name, document)
COUNT_QUERIES = {"customersCount": ("CustomersCount", CUSTOMERS_COUNT), "ordersCount": ("OrdersCount", ORDERS_COUNT)}

SHOP_CHECK = """
query ShopCheck {
  shop { name myshopifyDomain currencyCode plan { displayName } }
  currentAppInstallation { accessScopes { handle } }
}
"""

# ------------------------------------------------------------------------------------------ bulk operations

BULK_RUN_QUERY = """
mutation BulkQueryRun($query: String!) {
  bulkOperationRunQuery(query: $query) {
    bulkOperation { id status }
    userErrors { field message code }
  }
}
"""

BULK_RUN_MUTATION = """
mutation BulkMutationRun($mutation: String!, $path: String!) {
  bulkOperationRunMutation(mutation: $mutation, stagedUploadPath: $path) {
    bulkOperation { id status }
    userErrors { field message code }
  }
}
"""

_BULK_FIELDS = "id status errorCode objectCount rootObjectCount fileSize url partialDataUrl createdAt completedAt query"

BULK_STATUS = f"""
query BulkOperationStatus($id: ID!) {{
  node(id: $id) {{ ... on BulkOperation {{ {_BULK_FIELDS} }} }}
}}
"""

# Deprecated in newer versions (in favour of bulkOperations with a status filter, which older ones lack); it is
# only asked when a start is refused because an operation is running, to find that operation.
CURRENT_BULK = f"""
query CurrentBulkOperation($type: BulkOperationType!) {{
  currentBulkOperation(type: $type) {{ {_BULK_FIELDS} }}
}}
"""

STAGED_UPLOAD = """
mutation StagedUploadCreate($input: [StagedUploadInput!]!) {
  stagedUploadsCreate(input: $input) {
    stagedTargets { url resourceUrl parameters { name value } }
    userErrors { field message }
  }
}
"""

_TAGS_PAYLOAD = "node { id } userErrors { field message }"

# The per-line mutations of a bulk mutation: each line of the uploaded file holds {"id": ..., "tags": [...]}.
TAGS_FIELD = {"add": "tagsAdd", "remove": "tagsRemove"}
_LINE_PARAMS = "($id: ID!, $tags: [String!]!)"
TAGS_LINE = {
    op: f"mutation Tags{op.title()}Line{_LINE_PARAMS} {{ {name}(id: $id, tags: $tags) {{ {_TAGS_PAYLOAD} }} }}"
    for op, name in TAGS_FIELD.items()
}
# ------------------------------------------------------------------------------------------ push lookups

_CONTACT_SELECTION = "id email tags emailMarketingConsent { marketingState }"

CUSTOMERS_BY_EMAIL = f"""
query CustomersByEmail($first: Int!, $after: String, $query: String!) {{
  customers(first: $first, after: $after, query: $query, sortKey: ID) {{
    pageInfo {{ hasNextPage endCursor }}
    nodes {{ {_CONTACT_SELECTION} }}
  }}
}}
"""

CUSTOMERS_BY_TAG = CUSTOMERS_BY_EMAIL.replace("CustomersByEmail", "CustomersByTag")


def tags_batch(ops: Sequence[str]) -> str:
    """One mutation document with an aliased tagsAdd or tagsRemove per entry of ``ops`` ("add"/"remove").

    Variables are ``id0``/``tags0``, ``id1``/``tags1``, ...; the answer of entry ``i`` is under alias ``c<i>``.
    """
    params = ", ".join(f"$id{i}: ID!, $tags{i}: [String!]!" for i in range(len(ops)))
    fields = "\n  ".join(
        f"c{i}: {TAGS_FIELD[op]}(id: $id{i}, tags: $tags{i}) {{ {_TAGS_PAYLOAD} }}" for i, op in enumerate(ops)
    )
    return f"mutation TagsBatch({params}) {{\n  {fields}\n}}\n"


def bulk_query(root: str, search: str | None) -> str:
    """The bulk query listing every node of ``root`` (``customers``/``orders``) matching ``search``."""
    args = f"(query: {json.dumps(search)})" if search else ""
    if root == "customers":
        node = CUSTOMER_SELECTION
    elif root == "orders":
        node = f"{ORDER_SELECTION} lineItems {{ edges {{ node {{ {LINE_ITEM_SELECTION} }} }} }}"
    else:
        raise ValueError(f"no bulk query for {root!r}")
    return f"{{\n  {root}{args} {{\n    edges {{ node {{ {node} }} }}\n  }}\n}}\n"


def page_query(root: str) -> str:
    """The paged query of ``root``."""
    return {"customers": CUSTOMERS_PAGE, "orders": ORDERS_PAGE}[root]


# ------------------------------------------------------------------------------------------ search strings

# Shopify search syntax: ``: \\ ( )`` are special inside a bare term and are escaped with a backslash.
_SPECIAL = str.maketrans({"\\": "\\\\", ":": "\\:", "(": "\\(", ")": "\\)"})


def search_time(at: datetime) -> str:
    """``at`` as Shopify search syntax wants a date: quoted ISO 8601 in UTC, whole seconds."""
    return "'" + at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ") + "'"


def updated_window(since: datetime | None, until: datetime | None) -> str | None:
    """``updated_at:>='since' AND updated_at:<='until'`` (either bound may be absent)."""
    terms = []
    if since is not None:
        terms.append(f"updated_at:>={search_time(since)}")
    if until is not None:
        terms.append(f"updated_at:<={search_time(until)}")
    return " AND ".join(terms) or None


def quoted(value: str) -> str:
    """``value`` as a double-quoted phrase (exact match on tokenized fields such as ``email``)."""
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def emails_query(emails: Sequence[str]) -> str:
    """Customers having any of ``emails``: ``email:"a@x" OR email:"b@y"``."""
    return " OR ".join(f"email:{quoted(e)}" for e in emails)


def tag_prefix_query(prefix: str) -> str | None:
    """Customers with a tag starting with ``prefix`` (a prefix query), or None when the syntax cannot say it.

    A prefix query is a bare term ending in ``*``; quotes would make it a phrase, so a prefix with whitespace or
    quotes cannot be expressed and the caller lists every customer instead.
    """
    if not prefix or any(ch.isspace() or ch in "'\"*" for ch in prefix):
        return None
    return f"tag:{prefix.translate(_SPECIAL)}*"
