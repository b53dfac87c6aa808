from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st

from hub.errors import PaginationLoopError
from hub.http.client import HttpClient, make_client
from hub.http.paginate import (
    BodyCursorPaginator,
    LinkHeaderPaginator,
    OffsetPaginator,
    PageRequest,
    PageTokenPaginator,
    Paginator,
    get_path,
    paginate,
    set_path,
)
from hub.http.retry import RetryPolicy

ITEMS = [f"id{i}" for i in range(23)]


def client(handler: Callable[[httpx.Request], httpx.Response]) -> HttpClient:
    return make_client(
        "https://api.example.com",
        transport=httpx.MockTransport(handler),
        retry=RetryPolicy(sleep=lambda s: None),
    )


def hubspot_handler(request: httpx.Request) -> httpx.Response:
    after = int(request.url.params.get("after", "0"))
    page = ITEMS[after : after + 10]
    body: dict[str, Any] = {"results": page}
    if after + 10 < len(ITEMS):
        body["paging"] = {"next": {"after": str(after + 10), "link": "ignored"}}
    return httpx.Response(200, json=body)


def shopify_handler(request: httpx.Request) -> httpx.Response:
    query = json.loads(request.content)
    after = int(query["variables"].get("after") or 0)
    assert query["variables"]["first"] == 10
    page = ITEMS[after : after + 10]
    more = after + 10 < len(ITEMS)
    info = {"endCursor": str(after + len(page)), "hasNextPage": more}  # endCursor set even on the last page
    return httpx.Response(200, json={"data": {"customers": {"nodes": page, "pageInfo": info}}})


def mailchimp_handler(request: httpx.Request) -> httpx.Response:
    offset, count = int(request.url.params["offset"]), int(request.url.params["count"])
    return httpx.Response(200, json={"members": ITEMS[offset : offset + count], "total_items": len(ITEMS)})


def zoho_handler(request: httpx.Request) -> httpx.Response:
    token = request.url.params.get("page_token")
    start = int(token[1:]) if token else 0
    more = start + 10 < len(ITEMS)
    info = {"more_records": more, "next_page_token": f"t{start + 10}" if more else None}
    return httpx.Response(200, json={"data": ITEMS[start : start + 10], "info": info})


def link_handler(request: httpx.Request) -> httpx.Response:
    start = int(request.url.params.get("page_info", "0"))
    headers = {}
    if start + 10 < len(ITEMS):
        headers["Link"] = f'<https://api.example.com/orders.json?limit=10&page_info={start + 10}>; rel="next"'
    return httpx.Response(200, json={"orders": ITEMS[start : start + 10]}, headers=headers)


CASES: list[
    tuple[str, Callable[[], Paginator], Callable[[httpx.Request], httpx.Response], str, dict[str, Any]]
] = [
    ("hubspot", lambda: BodyCursorPaginator("paging.next.after", "after"), hubspot_handler, "results", {}),
    (
        "shopify",
        lambda: BodyCursorPaginator(
            "data.customers.pageInfo.endCursor",
            "variables.after",
            has_next_path="data.customers.pageInfo.hasNextPage",
            location="json",
        ),
        shopify_handler,
        "data.customers.nodes",
        {"method": "POST", "json": {"query": "{...}", "variables": {"first": 10}}},
    ),
    (
        "mailchimp",
        lambda: OffsetPaginator(10, limit_param="count", records_path="members", total_path="total_items"),
        mailchimp_handler,
        "members",
        {},
    ),
    (
        "zoho",
        lambda: PageTokenPaginator("info.next_page_token", "page_token", more_path="info.more_records"),
        zoho_handler,
        "data",
        {},
    ),
    ("link", LinkHeaderPaginator, link_handler, "orders", {"params": {"limit": 10}}),
]


def collect(pages: Any, records_path: str) -> list[str]:
    out: list[str] = []
    for response in pages:
        out.extend(get_path(response.json(), records_path))
    return out


@pytest.mark.parametrize(("name", "make", "handler", "records", "kw"), CASES, ids=[c[0] for c in CASES])
def test_reads_every_record_once(
    name: str, make: Callable[[], Paginator], handler: Any, records: str, kw: dict[str, Any]
) -> None:
    kw = dict(kw)
    method = kw.pop("method", "GET")
    paginator = make()
    assert isinstance(paginator, Paginator)
    got = collect(paginate(client(handler), method, "/items", paginator, **kw), records)
    assert got == ITEMS
    assert not paginator.has_next


@pytest.mark.parametrize(("name", "make", "handler", "records", "kw"), CASES, ids=[c[0] for c in CASES])
def test_state_round_trip_resumes_after_a_crash(
    name: str, make: Callable[[], Paginator], handler: Any, records: str, kw: dict[str, Any]
) -> None:
    kw = dict(kw)
    method = kw.pop("method", "GET")
    first = make()
    got: list[str] = []
    for response in paginate(client(handler), method, "/items", first, **kw):
        got.extend(get_path(response.json(), records))
        checkpoint = json.loads(json.dumps(first.get_state()))  # what the store would keep
        break  # the process dies after committing page one
    resumed = make()
    resumed.set_state(checkpoint)
    got.extend(collect(paginate(client(handler), method, "/items", resumed, **kw), records))
    assert got == ITEMS
    done = json.loads(json.dumps(resumed.get_state()))
    finished = make()
    finished.set_state(done)
    assert not finished.has_next
    assert list(paginate(client(handler), method, "/items", finished, **kw)) == []


def test_body_cursor_loop_is_detected() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json={"results": [1], "paging": {"next": {"after": "A"}}})

    with pytest.raises(PaginationLoopError, match="repeated cursor 'A'"):
        list(paginate(client(handler), "GET", "/x", BodyCursorPaginator("paging.next.after", "after")))


def test_cursor_cycle_is_detected() -> None:
    cycle = {"": "A", "A": "B", "B": "A"}

    def handler(request: httpx.Request) -> httpx.Response:
        nxt = cycle[request.url.params.get("pageToken", "")]
        return httpx.Response(200, json={"nextPageToken": nxt})

    with pytest.raises(PaginationLoopError):
        list(paginate(client(handler), "GET", "/x", PageTokenPaginator()))


def test_link_loop_is_detected() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json={"orders": []}, headers={"Link": '</x?page_info=same>; rel="next"'})

    with pytest.raises(PaginationLoopError):
        list(paginate(client(handler), "GET", "/x", LinkHeaderPaginator()))


def test_link_to_another_host_is_refused() -> None:
    from hub.http.errors import HttpError

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json={}, headers={"Link": '<https://evil.example/x?p=2>; rel="next"'})

    with pytest.raises(HttpError, match="another host"):
        list(paginate(client(handler), "GET", "/x", LinkHeaderPaginator()))


def test_offset_server_ignoring_offset_is_detected() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json={"members": ITEMS[:10]})  # no total, same page forever

    with pytest.raises(PaginationLoopError):
        list(paginate(client(handler), "GET", "/x", OffsetPaginator(10, records_path="members")))


def test_offset_without_total_stops_on_a_short_page() -> None:
    pages = list(
        paginate(client(mailchimp_handler_no_total), "GET", "/x", OffsetPaginator(10, records_path="m"))
    )
    assert len(pages) == 3


def mailchimp_handler_no_total(request: httpx.Request) -> httpx.Response:
    offset = int(request.url.params["offset"])
    return httpx.Response(200, json={"m": ITEMS[offset : offset + 10]})


def test_ga4_offset_in_json_body() -> None:
    seen: list[dict[str, Any]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        seen.append(body)
        rows = ITEMS[body["offset"] : body["offset"] + body["limit"]]
        return httpx.Response(200, json={"rows": rows, "rowCount": len(ITEMS)})

    paginator = OffsetPaginator(
        10, limit_param="limit", records_path="rows", total_path="rowCount", location="json"
    )
    body = {"dimensions": [{"name": "date"}]}
    got = collect(
        paginate(client(handler), "POST", "/v1beta/properties/1:runReport", paginator, json=body), "rows"
    )
    assert got == ITEMS
    assert [s["offset"] for s in seen] == [0, 10, 20]
    assert body == {"dimensions": [{"name": "date"}]}  # the caller's body is not mutated


def test_more_pages_but_no_cursor_is_transient() -> None:
    from hub.errors import TransientError

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json={"pageInfo": {"hasNextPage": True, "endCursor": None}})

    paginator = BodyCursorPaginator("pageInfo.endCursor", "after", has_next_path="pageInfo.hasNextPage")
    with pytest.raises(TransientError):
        list(paginate(client(handler), "GET", "/x", paginator))


def test_max_pages() -> None:
    pages = list(
        paginate(
            client(hubspot_handler),
            "GET",
            "/x",
            BodyCursorPaginator("paging.next.after", "after"),
            max_pages=2,
        )
    )
    assert len(pages) == 2


def test_prepare_leaves_first_request_alone() -> None:
    request = PageRequest("GET", "/x", {"limit": 100})
    assert BodyCursorPaginator("a", "after").prepare(request) == request
    assert LinkHeaderPaginator().prepare(request) == request


@given(
    path=st.lists(st.text(st.characters(categories=["Ll"]), min_size=1, max_size=5), min_size=1, max_size=4),
    value=st.one_of(st.integers(), st.text(max_size=5)),
)
def test_set_then_get_path(path: list[str], value: object) -> None:
    dotted = ".".join(path)
    original = {"keep": 1}
    updated = set_path(original, dotted, value)
    assert get_path(updated, dotted) == value
    assert original == {"keep": 1}
