"""The HubSpot API client: the only module that knows HubSpot's paths, built on :mod:`hub.http`.

One :class:`Account` per HubSpot account is kept in ``BuildContext.shared`` and shared by every stream and
sink of that account: the pacer (the burst window and the search limit are per account, not per stream), the
OAuth token (one refresh serves everyone) and the daily-cap budget. :class:`HubSpotClient` turns the calls the
source and sink need into typed methods; retry, pacing, logging and error mapping are the core's.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import httpx

from hub.errors import ConfigError, HubError, TransientError
from hub.http import (
    BearerAuth,
    BodyCursorPaginator,
    HttpClient,
    OAuth2RefreshAuth,
    OffsetPaginator,
    Pacer,
    Paginator,
    RetryPolicy,
    WindowLimit,
    make_client,
    paginate,
)
from hub.http.errors import describe_request
from hub.redact import redact

from .settings import (
    API_BASE_URL,
    ASSOCIATIONS_BATCH_LIMIT,
    BATCH_LIMIT,
    BURST_LIMITS,
    BURST_WINDOW_S,
    DAILY_CAP_RETRY_S,
    HEADER_DAILY_REMAINING,
    HEADER_INTERVAL_MS,
    HEADER_MAX,
    HEADER_REMAINING,
    LIST_MEMBERSHIP_PAGE,
    LIST_PAGE_SIZE,
    LIST_SEARCH_PAGE,
    MAX_PROPERTIES_CHARS,
    OAUTH_APP_BURST_LIMIT,
    OAUTH_REFRESH_MARGIN_S,
    OAUTH_TOKEN_LIFETIME_S,
    OBJECT_TYPE_IDS,
    PACING_MARGIN,
    PACING_MIN_MARGIN_S,
    SEARCH_PAGE_SIZE,
    SEARCH_PER_SECOND,
    TOKEN_PATH,
)

if TYPE_CHECKING:
    from hub.registry import BuildContext

    from .config import HubSpotAccount

logger = logging.getLogger(__name__)

JSON = dict[str, Any]
_CRM = "/crm/v3/objects"
_PROPERTIES = "/crm/v3/properties"
_LISTS = "/crm/v3/lists"


def padded(window_s: float) -> float:
    """A window with the pacing margin added (see ``PACING_MARGIN``)."""
    return window_s + max(window_s * PACING_MARGIN, PACING_MIN_MARGIN_S)


class DailyBudget:
    """What is left of the account's daily cap, from ``X-HubSpot-RateLimit-Daily-Remaining``.

    Waiting for midnight inside a run would hold a worker for hours, and HubSpot counts every 429 against the
    app's error rate: once the cap is (nearly) spent, requests fail fast with a TransientError and the
    scheduler comes back later.

    Args:
        reserve: calls to leave for other apps of the account.
    """

    def __init__(self, reserve: int = 0) -> None:
        self.reserve = reserve
        self.remaining: int | None = None
        self._lock = threading.Lock()

    def observe(self, headers: Mapping[str, str]) -> None:
        """Take the remaining count from a response's headers, if it has one."""
        value = headers.get(HEADER_DAILY_REMAINING)
        if value is None:
            return
        try:
            remaining = int(value.strip())
        except ValueError:
            return
        with self._lock:
            self.remaining = remaining

    def check(self) -> None:
        """Raise TransientError when the daily cap is spent (down to the reserve)."""
        with self._lock:
            remaining = self.remaining
        if remaining is not None and remaining <= self.reserve:
            raise TransientError(
                f"HubSpot daily API cap reached ({remaining} calls left, reserve {self.reserve}); the run stops"
                " here and resumes from its last checkpoint after the cap resets",
                retry_after=DAILY_CAP_RETRY_S,
            )


@dataclass
class Account:
    """The objects every stream and sink of one HubSpot account shares."""

    pacer: Pacer
    auth: httpx.Auth
    daily: DailyBudget

    def observe(self, response: httpx.Response) -> None:
        """Feed the rate-limit headers of a response to the pacer and the daily budget."""
        self.daily.observe(response.headers)
        limit = _header_number(response.headers, HEADER_MAX)
        remaining = _header_number(response.headers, HEADER_REMAINING)
        interval_ms = _header_number(response.headers, HEADER_INTERVAL_MS)
        if limit is None and remaining is None and interval_ms is None:
            return  # search answers carry no burst headers: they are outside that window
        window = padded(interval_ms / 1000.0) if interval_ms else None
        self.pacer.observe("burst", remaining=remaining, limit=limit, window_s=window)


def make_pacer(burst_limit: int) -> Pacer:
    """The account's pacer: the burst window (default bucket) and the separate CRM search limit."""
    return Pacer(
        {
            "burst": WindowLimit(burst_limit, padded(BURST_WINDOW_S)),
            "search": WindowLimit(SEARCH_PER_SECOND, padded(1.0)),
        },
        default_buckets=("burst",),
    )


def shared_account(
    config: HubSpotAccount,
    ctx: BuildContext,
    base_url: str,
    *,
    daily_reserve: int = 0,
    clock: Callable[[], float] = time.time,
) -> Account:
    """The account's shared objects from ``ctx.shared``, built on first use.

    Args:
        clock: POSIX seconds, for OAuth token expiry (injectable for tests).
    """
    key = f"hubspot:{base_url}:{config.credential_ref()}"
    found = ctx.shared.get(key)
    if isinstance(found, Account):
        found.daily.reserve = max(found.daily.reserve, daily_reserve)
        return found
    auth: httpx.Auth
    if config.token is not None:
        auth = BearerAuth(ctx.resolve_secret(config.token))
        burst = BURST_LIMITS[config.tier]
    else:
        assert config.oauth is not None  # the config validator
        auth = OAuth2RefreshAuth(
            base_url.rstrip("/") + TOKEN_PATH,
            config.oauth.client_id,
            ctx.resolve_secret(config.oauth.client_secret),
            ctx.resolve_secret(config.oauth.refresh_token),
            margin_s=OAUTH_REFRESH_MARGIN_S,
            default_expires_in=OAUTH_TOKEN_LIFETIME_S,
            clock=clock,
        )
        burst = OAUTH_APP_BURST_LIMIT
    account = Account(pacer=make_pacer(burst), auth=auth, daily=DailyBudget(daily_reserve))
    ctx.shared[key] = account
    return account


def hubspot_errors(response: httpx.Response) -> HubError | None:
    """HubSpot's 401/403 bodies, turned into ConfigErrors that say what to fix (the missing scope by name)."""
    if response.status_code not in (401, 403):
        return None
    body = _body(response)
    where = describe_request(response)
    category = str(body.get("category") or "")
    message = redact(str(body.get("message") or "")).strip()
    if response.status_code == 403:
        scopes = missing_scopes(body)
        if scopes:
            return ConfigError(
                f"{where}: the HubSpot app lacks the scope(s) {', '.join(scopes)}: add them to the private app"
                " (or re-install the OAuth app with them)"
            )
        return ConfigError(f"{where}: HubSpot refused the request ({category or 'HTTP 403'}): {message}")
    return ConfigError(
        f"{where}: HubSpot rejected the access token ({category or 'HTTP 401'}): {message or 'check the token'}"
    )


def missing_scopes(body: Mapping[str, Any]) -> list[str]:
    """The scopes a MISSING_SCOPES error names (in ``errors[].context`` or ``context``), in order."""
    contexts: list[Any] = [body.get("context")]
    errors = body.get("errors")
    if isinstance(errors, list):
        contexts.extend(e.get("context") for e in errors if isinstance(e, Mapping))
    found: dict[str, None] = {}
    for context in contexts:
        if not isinstance(context, Mapping):
            continue
        for key in ("requiredGranularScopes", "requiredScopes", "missingScopes"):
            values = context.get(key)
            if isinstance(values, list):
                found.update((str(v), None) for v in values)
    return list(found)


def split_properties(names: Sequence[str], budget: int = MAX_PROPERTIES_CHARS) -> list[list[str]]:
    """Property names in groups whose comma-joined length stays within ``budget`` (at least one group)."""
    groups: list[list[str]] = [[]]
    size = 0
    for name in dict.fromkeys(names):
        extra = len(name) + (1 if groups[-1] else 0)
        if groups[-1] and size + extra > budget:
            groups.append([])
            size, extra = 0, len(name)
        groups[-1].append(name)
        size += extra
    return groups


@dataclass(frozen=True)
class SearchPage:
    """One search answer: the records and the total matching the query."""

    results: list[JSON]
    total: int


@dataclass(frozen=True)
class BatchResult:
    """A batch answer (200 or 207): the records done and HubSpot's per-record errors."""

    results: list[JSON]
    errors: list[JSON] = field(default_factory=list)


class HubSpotClient:
    """Typed HubSpot calls over one :class:`~hub.http.HttpClient`.

    Args:
        http: the core client (pacing, retry, logging, error mapping).
        account: the account's shared objects.
    """

    def __init__(self, http: HttpClient, account: Account) -> None:
        self._http = http
        self.account = account

    @classmethod
    def build(
        cls,
        config: HubSpotAccount,
        ctx: BuildContext,
        *,
        base_url: str | None = None,
        retry: RetryPolicy | None = None,
        daily_reserve: int = 0,
        clock: Callable[[], float] = time.time,
    ) -> HubSpotClient:
        """A client for the account ``config`` names, on ``ctx``'s transport when it has one for hubspot."""
        url = (base_url or API_BASE_URL).rstrip("/")
        account = shared_account(config, ctx, url, daily_reserve=daily_reserve, clock=clock)
        http = make_client(
            url,
            auth=account.auth,
            transport=ctx.transports.get("hubspot"),
            pacer=account.pacer,
            retry=retry or RetryPolicy(),
            status_override=hubspot_errors,
            response_hook=account.observe,
            headers={"Accept": "application/json"},
        )
        return cls(http, account)

    def close(self) -> None:
        """Close the HTTP client."""
        self._http.close()

    def request(self, method: str, path: str, *, search: bool = False, **kwargs: Any) -> httpx.Response:
        """One call through the core, after the daily-cap check; search calls draw from the search bucket."""
        self.account.daily.check()
        if search:
            kwargs["buckets"] = ("search",)
        return self._http.request(method, path, expect_json=True, **kwargs)

    def _pages(self, method: str, path: str, paginator: Paginator, **kwargs: Any) -> Iterator[httpx.Response]:
        """:func:`hub.http.paginate`, with the daily-cap check before every page."""
        self.account.daily.check()
        for response in paginate(self._http, method, path, paginator, **kwargs):
            yield response
            self.account.daily.check()

    # ------------------------------------------------------------------ objects

    def check(self, object_type: str) -> None:
        """Read one record of ``object_type``: credentials and scope (ConfigError) and reachability."""
        self.request("GET", f"{_CRM}/{object_type}", params={"limit": 1})

    def list_pages(
        self, object_type: str, properties: Sequence[str], paginator: BodyCursorPaginator, *, archived: bool = False
    ) -> Iterator[list[JSON]]:
        """Pages of ``GET /crm/v3/objects/{type}``, 100 per page, from the paginator's position.

        A property list too long for one URL is split: the first group goes with the listing, the others are
        read for the page's ids with one batch read each (its properties travel in the body), and merged.
        """
        first, *rest = split_properties(properties)
        params: dict[str, Any] = {"limit": LIST_PAGE_SIZE, "properties": ",".join(first)}
        if archived:
            params["archived"] = "true"
        for response in self._pages("GET", f"{_CRM}/{object_type}", paginator, params=params):
            results = _results(response)
            for group in rest:
                self._merge_properties(object_type, results, group, archived)
            yield results

    def _merge_properties(self, object_type: str, results: list[JSON], names: list[str], archived: bool) -> None:
        ids = [str(r.get("id")) for r in results if r.get("id") is not None]
        found = self.batch_read(object_type, ids, names, archived=archived).results
        extra = {str(r.get("id")): r.get("properties") for r in found}
        for record in results:
            more = extra.get(str(record.get("id")))
            if isinstance(more, Mapping) and isinstance(record.get("properties"), dict):
                record["properties"].update(more)

    def search(
        self,
        object_type: str,
        filters: Sequence[Mapping[str, Any]],
        properties: Sequence[str],
        *,
        limit: int = SEARCH_PAGE_SIZE,
        sort: str = "hs_object_id",
    ) -> SearchPage:
        """The first page of a search (one filter group), sorted ascending on ``sort``.

        Callers page by key (``hs_object_id GT last id``) rather than with ``after``: every query then starts
        at offset 0, the 10,000-result cap never applies, and a record leaving the result set between two
        pages cannot shift the offsets and hide another.
        """
        body = {
            "filterGroups": [{"filters": [dict(f) for f in filters]}],
            "sorts": [{"propertyName": sort, "direction": "ASCENDING"}],
            "properties": list(dict.fromkeys(properties)),
            "limit": limit,
            "after": "0",
        }
        data = _object(self.request("POST", f"{_CRM}/{object_type}/search", json=body, search=True))
        total = data.get("total")
        results = _list(data.get("results"))
        return SearchPage(results, total if isinstance(total, int) else len(results))

    def batch_read(
        self,
        object_type: str,
        ids: Sequence[str],
        properties: Sequence[str],
        *,
        id_property: str | None = None,
        archived: bool = False,
    ) -> BatchResult:
        """``POST .../batch/read`` in chunks of 100 (by record id, or by a unique property such as email)."""
        out = BatchResult([], [])
        for chunk in _chunks(ids, BATCH_LIMIT):
            body: JSON = {
                "inputs": [{"id": i} for i in chunk],
                "properties": list(properties),
                "propertiesWithHistory": [],
            }
            if id_property is not None:
                body["idProperty"] = id_property
            params = {"archived": "true"} if archived else None
            data = _object(self.request("POST", f"{_CRM}/{object_type}/batch/read", json=body, params=params))
            out.results.extend(_list(data.get("results")))
            out.errors.extend(_list(data.get("errors")))
        return out

    def batch_update(self, object_type: str, inputs: Sequence[Mapping[str, Any]]) -> BatchResult:
        """``POST .../batch/update`` with at most 100 inputs (the caller chunks, to map failures per record)."""
        if len(inputs) > BATCH_LIMIT:
            raise ValueError(f"at most {BATCH_LIMIT} inputs per batch update, got {len(inputs)}")
        data = _object(self.request("POST", f"{_CRM}/{object_type}/batch/update", json={"inputs": list(inputs)}))
        return BatchResult(_list(data.get("results")), _list(data.get("errors")))

    def associations(self, from_type: str, to_type: str, ids: Sequence[str]) -> dict[str, list[str]]:
        """Associated record ids by source id (v4 batch read); ids without associations map to nothing."""
        out: dict[str, list[str]] = {}
        for chunk in _chunks(ids, ASSOCIATIONS_BATCH_LIMIT):
            body = {"inputs": [{"id": i} for i in chunk]}
            path = f"/crm/v4/associations/{from_type}/{to_type}/batch/read"
            # 207 lists the ids without associations as errors: that is an answer, not a failure.
            data = _object(self.request("POST", path, json=body))
            for result in _list(data.get("results")):
                source = _dig(result, "from", "id")
                targets = [str(t["toObjectId"]) for t in _list(result.get("to")) if t.get("toObjectId") is not None]
                if source is not None:
                    out.setdefault(str(source), []).extend(targets)
        return out

    # ------------------------------------------------------------------ properties and pipelines

    def properties(self, object_type: str) -> list[JSON]:
        """Every property definition of ``object_type``."""
        return _list(_object(self.request("GET", f"{_PROPERTIES}/{object_type}")).get("results"))

    def get_property(self, object_type: str, name: str) -> JSON | None:
        """One property definition, or None when it does not exist."""
        response = self.request("GET", f"{_PROPERTIES}/{object_type}/{quote(name)}", allow_statuses={404})
        return None if response.status_code == 404 else _object(response)

    def create_property(self, object_type: str, definition: Mapping[str, Any]) -> JSON:
        """Create a property; when it exists already (a concurrent create), return the existing one."""
        response = self.request("POST", f"{_PROPERTIES}/{object_type}", json=dict(definition), allow_statuses={409})
        if response.status_code == 409:
            found = self.get_property(object_type, str(definition["name"]))
            if found is None:
                raise TransientError(f"HubSpot says property {definition['name']!r} exists but cannot find it")
            return found
        return _object(response)

    def set_property_options(self, object_type: str, name: str, options: Sequence[Mapping[str, Any]]) -> JSON:
        """Replace the options of an enumeration property (the caller merges: PATCH replaces the whole list)."""
        body = {"options": [dict(o) for o in options]}
        return _object(self.request("PATCH", f"{_PROPERTIES}/{object_type}/{quote(name)}", json=body))

    def pipelines(self, object_type: str) -> list[JSON]:
        """The object type's pipelines with their stages."""
        return _list(_object(self.request("GET", f"/crm/v3/pipelines/{object_type}")).get("results"))

    # ------------------------------------------------------------------ lists

    def list_by_name(self, name: str, object_type: str = "contacts") -> JSON | None:
        """The list named ``name`` (case-insensitive, as HubSpot compares), or None."""
        path = f"{_LISTS}/object-type-id/{OBJECT_TYPE_IDS[object_type]}/name/{quote(name, safe='')}"
        response = self.request("GET", path, allow_statuses={404})
        if response.status_code == 404:
            return None
        found = _object(response).get("list")
        return found if isinstance(found, dict) else None

    def create_list(self, name: str, object_type: str = "contacts") -> JSON:
        """Create a static (MANUAL) list; when the name is taken meanwhile, return that list."""
        body = {"name": name, "objectTypeId": OBJECT_TYPE_IDS[object_type], "processingType": "MANUAL"}
        response = self.request("POST", _LISTS, json=body, allow_statuses={400, 409})
        if response.status_code in (400, 409):
            existing = self.list_by_name(name, object_type)
            if existing is None:
                raise ConfigError(f"HubSpot refused to create list {name!r}: {redact(response.text[:300])}")
            return existing
        created = _object(response).get("list")
        if not isinstance(created, dict):
            raise TransientError(f"HubSpot's answer to creating list {name!r} has no list")
        return created

    def update_memberships(self, list_id: str, add: Sequence[str], remove: Sequence[str]) -> JSON:
        """``PUT .../memberships/add-and-remove``; the answer names the ids added, removed and missing."""
        body = {"recordIdsToAdd": list(add), "recordIdsToRemove": list(remove)}
        return _object(self.request("PUT", f"{_LISTS}/{list_id}/memberships/add-and-remove", json=body))

    def membership_pages(self, list_id: str) -> Iterator[list[str]]:
        """The record ids of a list, page by page (250 per page, ascending)."""
        paginator = BodyCursorPaginator("paging.next.after", "after")
        params = {"limit": LIST_MEMBERSHIP_PAGE}
        for response in self._pages("GET", f"{_LISTS}/{list_id}/memberships", paginator, params=params):
            yield [str(r["recordId"]) for r in _results(response) if r.get("recordId") is not None]

    def search_lists(self, query: str) -> Iterator[JSON]:
        """Static lists whose name contains ``query``."""
        paginator = OffsetPaginator(
            LIST_SEARCH_PAGE, limit_param="count", records_path="lists", total_path="total", location="json"
        )
        body = {"query": query, "processingTypes": ["MANUAL"], "additionalProperties": [], "offset": 0}
        for response in self._pages("POST", f"{_LISTS}/search", paginator, json=body):
            yield from _list(_object(response).get("lists"))

    def memberships_of(self, record_ids: Sequence[str], object_type: str = "contacts") -> dict[str, list[str]]:
        """The list ids each record belongs to (batch read, 100 records per call)."""
        out: dict[str, list[str]] = {}
        type_id = OBJECT_TYPE_IDS[object_type]
        for chunk in _chunks(record_ids, BATCH_LIMIT):
            body = {"inputs": [{"objectTypeId": type_id, "recordId": r} for r in chunk]}
            data = _object(self.request("POST", f"{_LISTS}/records/memberships/batch/read", json=body))
            for result in _list(data.get("results")):
                lists = [str(m["listId"]) for m in _list(result.get("recordListMemberships")) if "listId" in m]
                out[str(result.get("recordId"))] = lists
        return out


# ---------------------------------------------------------------------- payload parsing


def _body(response: httpx.Response) -> JSON:
    try:
        data = response.json()
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}


def _object(response: httpx.Response) -> JSON:
    data = _body(response)
    if not data and response.status_code != 204:
        raise TransientError(f"{describe_request(response)}: HubSpot answered with no JSON object")
    return data


def _results(response: httpx.Response) -> list[JSON]:
    return _list(_object(response).get("results"))


def _list(value: Any) -> list[JSON]:
    return [v for v in value if isinstance(v, dict)] if isinstance(value, list) else []


def _dig(data: Any, *path: str) -> Any:
    for key in path:
        if not isinstance(data, Mapping):
            return None
        data = data.get(key)
    return data


def _chunks(items: Iterable[str], size: int) -> Iterator[list[str]]:
    chunk: list[str] = []
    for item in items:
        chunk.append(item)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def _header_number(headers: Mapping[str, str], name: str) -> float | None:
    value = headers.get(name)
    if value is None:
        return None
    try:
        return float(value.strip())
    except ValueError:
        return None
