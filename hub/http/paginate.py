"""Paginators: where the next page is, as a small strategy object with a checkpointable state.

A :class:`Paginator` puts its position on the next request (:meth:`~Paginator.prepare`) and reads the next
position from a response (:meth:`~Paginator.update`). Its state is a plain dict (:meth:`~Paginator.get_state`,
:meth:`~Paginator.set_state`), so a stream stores it with each page's checkpoint and resumes after a crash.
Every paginator raises :class:`~hub.errors.PaginationLoopError` when the server hands back a position it
already gave: following it would loop forever.

Vendor shapes (for the connectors):

- HubSpot list: ``BodyCursorPaginator("paging.next.after", "after")``; search (POST):
  ``BodyCursorPaginator("paging.next.after", "after", location="json")``.
- Shopify GraphQL: ``BodyCursorPaginator("data.customers.pageInfo.endCursor", "variables.after",
  has_next_path="data.customers.pageInfo.hasNextPage", location="json")``.
- Mailchimp: ``OffsetPaginator(1000, limit_param="count", records_path="members", total_path="total_items")``.
- GA4 runReport: ``OffsetPaginator(100_000, limit_param="limit", records_path="rows", total_path="rowCount",
  location="json")``.
- Zoho CRM: ``PageTokenPaginator("info.next_page_token", "page_token", more_path="info.more_records")``.
- REST APIs with ``Link: <...>; rel="next"``: ``LinkHeaderPaginator()``.
"""

from __future__ import annotations

import copy
import hashlib
import json
import logging
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, Literal, Protocol, runtime_checkable

import httpx

from hub.errors import PaginationLoopError, TransientError
from hub.http.errors import HttpError
from hub.redact import redact, sanitize_url

if TYPE_CHECKING:
    from hub.http.client import HttpClient

logger = logging.getLogger(__name__)

Location = Literal["query", "json"]
_SHOWN_TOKEN = 40


@dataclass(frozen=True)
class PageRequest:
    """The parts of a request a paginator may change."""

    method: str
    url: str
    params: Mapping[str, Any] = field(default_factory=dict)
    json: Any = None


@runtime_checkable
class Paginator(Protocol):
    """Where the next page is. Implementations keep their position in a JSON-serialisable dict."""

    @property
    def has_next(self) -> bool:
        """Whether another page should be requested."""
        ...

    def prepare(self, request: PageRequest) -> PageRequest:
        """``request`` with the current position applied (unchanged for the first page of a fresh listing)."""
        ...

    def update(self, response: httpx.Response) -> None:
        """Advance from a page's response.

        Raises:
            PaginationLoopError: the response names a position already visited.
        """
        ...

    def get_state(self) -> dict[str, Any]:
        """The position, JSON-serialisable, to checkpoint with the page."""
        ...

    def set_state(self, state: Mapping[str, Any]) -> None:
        """Resume from a checkpointed position (an empty mapping starts over)."""
        ...


def get_path(data: Any, path: str) -> Any:
    """The value at dotted ``path`` in nested dicts (list items by index); None when any step is missing."""
    current = data
    for part in path.split(".") if path else ():
        if isinstance(current, Mapping):
            current = current.get(part)
        elif isinstance(current, list) and part.isdigit() and int(part) < len(current):
            current = current[int(part)]
        else:
            return None
    return current


def set_path(data: Any, path: str, value: Any) -> dict[str, Any]:
    """A deep copy of dict ``data`` (None: an empty dict) with ``value`` at dotted ``path``."""
    out: dict[str, Any] = copy.deepcopy(dict(data)) if isinstance(data, Mapping) else {}
    node = out
    *parents, leaf = path.split(".")
    for part in parents:
        child = node.get(part)
        if not isinstance(child, dict):
            child = {}
            node[part] = child
        node = child
    node[leaf] = value
    return out


def _apply(request: PageRequest, location: Location, param: str, value: Any) -> PageRequest:
    if location == "json":
        return replace(request, json=set_path(request.json, param, value))
    return replace(request, params={**request.params, param: value})


def _json(response: httpx.Response) -> Any:
    try:
        return response.json()
    except ValueError as exc:
        raise TransientError(f"{_where(response)}: the page body is not valid JSON") from exc


def _where(response: httpx.Response) -> str:
    try:
        return f"{response.request.method} {sanitize_url(str(response.request.url))}"
    except RuntimeError:
        return "page"


def _loop(response: httpx.Response, what: str, value: object) -> PaginationLoopError:
    shown = redact(str(value))
    if len(shown) > _SHOWN_TOKEN:
        shown = shown[:_SHOWN_TOKEN] + "..."
    return PaginationLoopError(
        f"{_where(response)}: the server repeated {what} {shown!r}; stopping to avoid a loop"
    )


class BodyCursorPaginator:
    """A cursor read from the response body and sent back as a parameter.

    Args:
        cursor_path: dotted path of the next cursor in the body (``paging.next.after``).
        param: the query parameter, or dotted JSON body path, that carries it (``after``,
            ``variables.after``).
        has_next_path: dotted path of a "more pages" flag (``pageInfo.hasNextPage``); without it, a missing or
            empty cursor ends the listing.
        location: ``query`` (URL parameter) or ``json`` (request body).
    """

    def __init__(
        self, cursor_path: str, param: str, *, has_next_path: str | None = None, location: Location = "query"
    ) -> None:
        self.cursor_path = cursor_path
        self.param = param
        self.has_next_path = has_next_path
        self.location: Location = location
        self._cursor: str | None = None
        self._done = False
        self._seen: set[str] = set()

    @property
    def has_next(self) -> bool:
        return not self._done

    def prepare(self, request: PageRequest) -> PageRequest:
        if self._cursor is None:
            return request
        return _apply(request, self.location, self.param, self._cursor)

    def update(self, response: httpx.Response) -> None:
        data = _json(response)
        raw = get_path(data, self.cursor_path)
        cursor = None if raw is None or raw == "" else str(raw)
        more = bool(get_path(data, self.has_next_path)) if self.has_next_path else cursor is not None
        if not more:
            self._done = True
            return
        if cursor is None:
            raise TransientError(f"{_where(response)}: the server reports more pages but sent no cursor")
        if cursor in self._seen or cursor == self._cursor:
            raise _loop(response, "cursor", cursor)
        if self._cursor is not None:
            self._seen.add(self._cursor)
        self._cursor = cursor

    def get_state(self) -> dict[str, Any]:
        return {"cursor": self._cursor, "done": self._done}

    def set_state(self, state: Mapping[str, Any]) -> None:
        cursor = state.get("cursor")
        self._cursor = None if cursor is None else str(cursor)
        self._done = bool(state.get("done", False))
        self._seen = set()


class PageTokenPaginator(BodyCursorPaginator):
    """A page token in the body (``nextPageToken``, Zoho ``info.next_page_token``), sent back as a parameter.

    Args:
        token_path: dotted path of the next token in the body.
        param: the parameter that carries it.
        more_path: dotted path of a "more records" flag (Zoho ``info.more_records``), if the API has one.
        location: ``query`` or ``json``.
    """

    def __init__(
        self,
        token_path: str = "nextPageToken",
        param: str = "pageToken",
        *,
        more_path: str | None = None,
        location: Location = "query",
    ) -> None:
        super().__init__(token_path, param, has_next_path=more_path, location=location)


class LinkHeaderPaginator:
    """The next page's URL from the ``Link`` header (RFC 8288): ``<https://...&page_info=x>; rel="next"``.

    The next URL carries every parameter, so the request's own parameters are dropped after the first page.

    Args:
        rel: the link relation to follow.
    """

    def __init__(self, rel: str = "next") -> None:
        self.rel = rel
        self._next: str | None = None
        self._done = False
        self._seen: set[str] = set()

    @property
    def has_next(self) -> bool:
        return not self._done

    def prepare(self, request: PageRequest) -> PageRequest:
        if self._next is None:
            return request
        return replace(request, url=self._next, params={})

    def update(self, response: httpx.Response) -> None:
        link = response.links.get(self.rel, {}).get("url")
        if not link:
            self._done = True
            return
        current = response.request.url
        target = current.join(link)
        if target.host != current.host:
            # The client's credentials go with every request: never follow a link off the vendor's host.
            raise HttpError(f"{_where(response)}: the next-page link points to another host ({target.host})")
        nxt = str(target)
        if nxt in self._seen or nxt == self._next or nxt == str(response.request.url):
            raise _loop(response, "next link", sanitize_url(nxt))
        if self._next is not None:
            self._seen.add(self._next)
        self._next = nxt

    def get_state(self) -> dict[str, Any]:
        return {"next_url": self._next, "done": self._done}

    def set_state(self, state: Mapping[str, Any]) -> None:
        nxt = state.get("next_url")
        self._next = None if nxt is None else str(nxt)
        self._done = bool(state.get("done", False))
        self._seen = set()


class OffsetPaginator:
    """Offset/limit paging: ``offset`` advances by the records received, until ``total`` or a short page.

    A server that ignores the offset would return the same page forever; the paginator notices an identical
    page and raises instead.

    Args:
        limit: page size to ask for (keep it within the vendor's maximum: a short page ends the listing when
            the API reports no total).
        offset_param: the offset parameter (``offset``).
        limit_param: the page-size parameter (Mailchimp ``count``, GA4 ``limit``).
        records_path: dotted path of the list of records in the body (``members``, ``rows``).
        total_path: dotted path of the total count (``total_items``, ``rowCount``), if the API gives one.
        location: ``query`` or ``json``.
        start: the first offset.
    """

    def __init__(
        self,
        limit: int,
        *,
        offset_param: str = "offset",
        limit_param: str = "limit",
        records_path: str = "",
        total_path: str | None = None,
        location: Location = "query",
        start: int = 0,
    ) -> None:
        if limit <= 0:
            raise ValueError("limit must be positive")
        self.limit = limit
        self.offset_param = offset_param
        self.limit_param = limit_param
        self.records_path = records_path
        self.total_path = total_path
        self.location: Location = location
        self._start = start
        self._offset = start
        self._done = False
        self._last_digest: str | None = None

    @property
    def has_next(self) -> bool:
        return not self._done

    @property
    def offset(self) -> int:
        """The offset of the next page."""
        return self._offset

    def prepare(self, request: PageRequest) -> PageRequest:
        request = _apply(request, self.location, self.limit_param, self.limit)
        return _apply(request, self.location, self.offset_param, self._offset)

    def update(self, response: httpx.Response) -> None:
        data = _json(response)
        records = get_path(data, self.records_path)
        if not isinstance(records, list):
            records = []
        if records:
            digest = hashlib.sha256(json.dumps(records, sort_keys=True, default=str).encode()).hexdigest()
            if digest == self._last_digest:
                raise _loop(response, "page at offset", self._offset)
            self._last_digest = digest
        self._offset += len(records)
        total = get_path(data, self.total_path) if self.total_path else None
        reached_total = isinstance(total, int | float) and self._offset >= total
        short_page = total is None and len(records) < self.limit
        self._done = not records or reached_total or short_page

    def get_state(self) -> dict[str, Any]:
        return {"offset": self._offset, "done": self._done}

    def set_state(self, state: Mapping[str, Any]) -> None:
        self._offset = int(state.get("offset", self._start))
        self._done = bool(state.get("done", False))
        self._last_digest = None


def paginate(
    client: HttpClient,
    method: str,
    url: str,
    paginator: Paginator,
    *,
    params: Mapping[str, Any] | None = None,
    json: Any = None,
    max_pages: int | None = None,
    **kwargs: Any,
) -> Iterator[httpx.Response]:
    """Request page after page until the paginator says there is no next one.

    The paginator is updated before each page is yielded, so ``paginator.get_state()`` at that point is the
    position *after* the page: store it in the same transaction as the page's records.

    Args:
        client: the connector's client.
        method: the HTTP method (POST for search and GraphQL).
        url: the path or URL of the first page.
        paginator: the strategy (possibly resumed with ``set_state``).
        params: the query parameters of every page.
        json: the JSON body of every page.
        max_pages: stop after this many pages (None: no limit).
        **kwargs: passed to :meth:`HttpClient.request` (``expect_json`` defaults to True here).

    Yields:
        Each page's response.
    """
    kwargs.setdefault("expect_json", True)
    base = PageRequest(method, url, dict(params or {}), json)
    pages = 0
    while paginator.has_next and (max_pages is None or pages < max_pages):
        req = paginator.prepare(base)
        extra: dict[str, Any] = {"params": dict(req.params)} if req.params else {}
        if req.json is not None:
            extra["json"] = req.json
        response = client.request(req.method, req.url, **extra, **kwargs)
        paginator.update(response)
        pages += 1
        yield response
