"""A stateful in-memory imitation of the HubSpot API parts the connector uses, seeded from the shared business.

What it imitates (see README.md for the list and where the official spec and the live API disagree):

- Auth: private app tokens (``Authorization: Bearer``) and OAuth (``POST /oauth/v1/token`` with a refresh
  token, 30-minute access tokens that expire, ``expire_tokens`` for the sandbox's fault). 401 with
  ``INVALID_AUTHENTICATION``/``EXPIRED_AUTHENTICATION``; 403 ``MISSING_SCOPES`` naming the scope.
- Limits: the burst window by tier (100 or 190 requests per 10 s for private apps, 110 for OAuth apps), the CRM
  search limit (5 per second, outside the burst window), the daily cap; ``X-HubSpot-RateLimit-*`` headers on
  every non-search answer; 429 with HubSpot's body and ``Retry-After``. Windows run on the sandbox clock, so
  ``speed`` compresses them (and the header values with them).
- CRM objects (contacts, deals): list with ``after`` paging (100 per page), archived listing, search (filters,
  one sort, 200 per page, ``total``, 400 past 10,000 results, an index that lags ``search_lag_s`` behind
  writes), batch read by id or email (207 for missing ones), batch update (207 per record, 400 for invalid
  values), properties (list, read, create, option changes), the deal pipeline, v4 associations, and static
  lists (create, by name, add-and-remove, memberships, search, memberships per record).
- Every property value is a string (or null), every error is HubSpot's ``Error`` object with ``category`` and
  ``correlationId``.
"""

from __future__ import annotations

import json
import math
import random
import re
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any
from urllib.parse import parse_qsl, unquote

import httpx

from hub.sandbox.emulator import EmulatorContext
from hub.sandbox.ratelimit import (
    FixedWindowLimiter,
    SlidingWindowLimiter,
    WindowDecision,
    WindowLimiter,
    format_seconds,
    hit_all,
)

from . import SANDBOX_TOKEN
from .emulator_crm import (
    CURSOR_PROPERTY,
    DEFAULT_PROPERTIES,
    PORTAL_ID,
    Account,
    CrmObject,
    FilterError,
    ObjectTable,
    StaticList,
    compile_filter,
    iso,
    later,
    property_definition,
    seed,
)
from .emulator_crm import pipelines as default_pipelines
from .emulator_crm import search as run_search
from .settings import (
    ASSOCIATIONS_BATCH_LIMIT,
    BATCH_LIMIT,
    BURST_LIMITS,
    BURST_WINDOW_S,
    DAILY_LIMITS,
    HEADER_DAILY,
    HEADER_DAILY_REMAINING,
    HEADER_INTERVAL_MS,
    HEADER_MAX,
    HEADER_REMAINING,
    LIST_MEMBERSHIP_PAGE,
    LIST_PAGE_SIZE,
    LIST_SEARCH_PAGE,
    OAUTH_APP_BURST_LIMIT,
    OAUTH_TOKEN_LIFETIME_S,
    OBJECT_TYPE_IDS,
    SEARCH_MAX_FILTER_GROUPS,
    SEARCH_MAX_FILTERS,
    SEARCH_PAGE_SIZE,
    SEARCH_PER_SECOND,
    SEARCH_RESULT_CAP,
)

JSON = dict[str, Any]

SANDBOX_CLIENT_ID = "sandbox-client"
SANDBOX_CLIENT_SECRET = "sandbox-client-secret"
SANDBOX_REFRESH_TOKEN = "sandbox-refresh-token"
ALL_SCOPES = frozenset(
    {
        "crm.objects.contacts.read",
        "crm.objects.contacts.write",
        "crm.objects.deals.read",
        "crm.schemas.contacts.read",
        "crm.schemas.contacts.write",
        "crm.schemas.deals.read",
        "crm.lists.read",
        "crm.lists.write",
        "oauth",
    }
)
# Servers commonly refuse longer request lines; HubSpot answers 414.
MAX_URL_CHARS = 16_384
LIST_MEMBERSHIP_WRITE_LIMIT = 100_000
_READ_SCOPE = {"contacts": "crm.objects.contacts.read", "deals": "crm.objects.deals.read"}
_WRITE_SCOPE = {"contacts": "crm.objects.contacts.write", "deals": "crm.objects.deals.write"}
_SCHEMA_READ = {"contacts": "crm.schemas.contacts.read", "deals": "crm.schemas.deals.read"}
_SCHEMA_WRITE = {"contacts": "crm.schemas.contacts.write", "deals": "crm.schemas.deals.write"}
_TYPE_NAMES = {"0-1": "contacts", "0-3": "deals", "contacts": "contacts", "deals": "deals"}


class _Reject(Exception):
    """An error answer raised from inside a handler."""

    def __init__(self, http_status: int, category: str, message: str, **extra: Any) -> None:
        super().__init__(message)
        self.http_status = http_status
        self.category = category
        self.message = message
        self.extra = extra


@dataclass(frozen=True)
class _Route:
    method: str
    pattern: re.Pattern[str]
    name: str
    handler: str
    scope: Callable[[Mapping[str, str]], str | None]
    search: bool = False


def _route(
    method: str, path: str, handler: str, scope: Callable[[Mapping[str, str]], str | None], *, search: bool = False
) -> _Route:
    regex = re.sub(r"\{(\w+)\}", lambda m: f"(?P<{m.group(1)}>[^/]+)", path)
    return _Route(method, re.compile(f"^{regex}$"), f"{method} {path}", handler, scope, search)


def _of(table: Mapping[str, str], key: str) -> Callable[[Mapping[str, str]], str | None]:
    return lambda groups: table.get(_TYPE_NAMES.get(groups.get(key, ""), ""))


def _fixed(scope: str | None) -> Callable[[Mapping[str, str]], str | None]:
    return lambda groups: scope


_ROUTES = (
    _route("POST", "/oauth/v1/token", "_token", _fixed(None)),
    _route("GET", "/crm/v3/objects/{objectType}", "_list_objects", _of(_READ_SCOPE, "objectType")),
    _route("POST", "/crm/v3/objects/{objectType}/search", "_search", _of(_READ_SCOPE, "objectType"), search=True),
    _route("POST", "/crm/v3/objects/{objectType}/batch/read", "_batch_read", _of(_READ_SCOPE, "objectType")),
    _route("POST", "/crm/v3/objects/{objectType}/batch/update", "_batch_update", _of(_WRITE_SCOPE, "objectType")),
    _route("GET", "/crm/v3/properties/{objectType}", "_properties", _of(_SCHEMA_READ, "objectType")),
    _route("POST", "/crm/v3/properties/{objectType}", "_create_property", _of(_SCHEMA_WRITE, "objectType")),
    _route("GET", "/crm/v3/properties/{objectType}/{propertyName}", "_get_property", _of(_SCHEMA_READ, "objectType")),
    _route(
        "PATCH", "/crm/v3/properties/{objectType}/{propertyName}", "_update_property", _of(_SCHEMA_WRITE, "objectType")
    ),
    _route("GET", "/crm/v3/pipelines/{objectType}", "_pipelines", _of(_READ_SCOPE, "objectType")),
    _route(
        "POST",
        "/crm/v4/associations/{fromObjectType}/{toObjectType}/batch/read",
        "_associations",
        _of(_READ_SCOPE, "fromObjectType"),
    ),
    _route("POST", "/crm/v3/lists", "_create_list", _fixed("crm.lists.write")),
    _route("POST", "/crm/v3/lists/search", "_search_lists", _fixed("crm.lists.read")),
    _route("POST", "/crm/v3/lists/records/memberships/batch/read", "_record_memberships", _fixed("crm.lists.read")),
    _route(
        "GET", "/crm/v3/lists/object-type-id/{objectTypeId}/name/{listName}", "_list_by_name", _fixed("crm.lists.read")
    ),
    _route(
        "PUT", "/crm/v3/lists/{listId}/memberships/add-and-remove", "_update_memberships", _fixed("crm.lists.write")
    ),
    _route("GET", "/crm/v3/lists/{listId}/memberships", "_memberships", _fixed("crm.lists.read")),
)


@dataclass
class _Grant:
    scopes: frozenset[str]
    oauth: bool
    expires_at: float | None = None  # vendor monotonic seconds


class HubSpotEmulator:
    """The emulated HubSpot account (see the module docstring).

    Args:
        ctx: the sandbox context: the shared business and the (compressible) clock.
        tier: the account's tier, for the burst window and the daily cap of private apps.
        tokens: private app tokens and their scopes (default: the sandbox token with every scope).
        search_lag_s: wall-clock seconds before a change is visible to search.
        burst_limit: requests per 10-second window for private apps instead of the tier's (a benchmark can
            set another rate; the sandbox ``speed`` compresses the window itself).
    """

    vendor = "hubspot"

    def __init__(
        self,
        ctx: EmulatorContext,
        *,
        tier: str = "starter",
        tokens: Mapping[str, Iterable[str]] | None = None,
        search_lag_s: float = 2.0,
        burst_limit: int | None = None,
    ) -> None:
        self.ctx = ctx
        self.tier = tier
        self.private_tokens = {t: frozenset(s) for t, s in (tokens or {SANDBOX_TOKEN: ALL_SCOPES}).items()}
        self.oauth_clients = {SANDBOX_CLIENT_ID: SANDBOX_CLIENT_SECRET}
        self.refresh_tokens: dict[str, frozenset[str]] = {SANDBOX_REFRESH_TOKEN: ALL_SCOPES}
        self.search_lag = timedelta(seconds=search_lag_s)
        clock = ctx.clock
        burst = burst_limit if burst_limit is not None else BURST_LIMITS[tier]
        self.burst = SlidingWindowLimiter(clock, limit=burst, window_s=BURST_WINDOW_S)
        self.oauth_burst = SlidingWindowLimiter(clock, limit=OAUTH_APP_BURST_LIMIT, window_s=BURST_WINDOW_S)
        self.search_limit = SlidingWindowLimiter(clock, limit=SEARCH_PER_SECOND, window_s=1.0)
        self.daily = FixedWindowLimiter(clock, limit=DAILY_LIMITS[tier], window_s=86_400.0)
        self.reset()

    # ------------------------------------------------------------------ sandbox hooks

    def reset(self) -> None:
        """Back to the seeded account: data, issued tokens, rate-limit counters."""
        self.account: Account = seed(self.ctx.business)
        self._access: dict[str, _Grant] = {}
        self._rng = self.ctx.rng("hubspot")
        for limiter in (self.burst, self.oauth_burst, self.search_limit, self.daily):
            limiter.reset()

    def expire_tokens(self) -> None:
        """Every OAuth access token issued so far expires now (refresh tokens stay valid)."""
        now = self.ctx.clock.monotonic()
        for grant in self._access.values():
            grant.expires_at = now

    def mutate(self, fraction: float, delete_fraction: float, rng: random.Random) -> dict[str, int]:
        """Change ``fraction`` and archive ``delete_fraction`` of the live contacts and deals."""
        now = self.ctx.clock.now()
        counts: dict[str, int] = {}
        for name, table in (("contacts", self.account.contacts), ("deals", self.account.deals)):
            live = sorted(o.id for o in table.live())
            changed = rng.sample(live, min(len(live), round(len(live) * fraction)))
            for object_id in changed:
                self._change(table, table.rows[object_id], now, rng)
            rest = sorted(set(live) - set(changed))
            deleted = rng.sample(rest, min(len(rest), round(len(live) * delete_fraction)))
            for object_id in deleted:
                self.archive(name, object_id, now)
            counts[f"{name}_changed"] = len(changed)
            counts[f"{name}_deleted"] = len(deleted)
        return counts

    def _change(self, table: ObjectTable, obj: CrmObject, now: datetime, rng: random.Random) -> None:
        if table.object_type == "contacts":
            changes = {
                "hs_email_open": str(int(obj.properties.get("hs_email_open") or 0) + 1),
                "hs_email_last_open_date": iso(now),
                "city": rng.choice(["Berlin", "Wien", "Zürich", "Paris"]),
            }
            self.update(table.object_type, obj.id, changes, now)
        else:
            amount = Decimal(obj.properties.get("amount") or "0") + 100
            self.update(table.object_type, obj.id, {"amount": str(amount)}, now)

    def update(
        self, object_type: str, object_id: int, properties: Mapping[str, str | None], now: datetime | None = None
    ) -> CrmObject:
        """Set properties the way a HubSpot user or workflow would (the last-modified time moves on)."""
        table = self._table(object_type)
        obj = table.rows[object_id]
        at = later(obj.updated_at, now or self.ctx.clock.now())
        obj.properties.update({k: (v if v != "" else None) for k, v in properties.items()})
        obj.updated_at = at
        obj.properties[CURSOR_PROPERTY[table.object_type]] = iso(at)
        obj.indexed_at = at + self.search_lag
        return obj

    def archive(self, object_type: str, object_id: int, now: datetime | None = None) -> None:
        """Delete (archive) a record, as the UI's delete does."""
        obj = self._table(object_type).rows[object_id]
        at = later(obj.updated_at, now or self.ctx.clock.now())
        obj.archived_at = obj.updated_at = at

    def touch(self, count: int, at: datetime | None = None) -> list[int]:
        """Stamp ``count`` contacts with one identical last-modified time (a bulk import or workflow run)."""
        when = at or self.ctx.clock.now()
        ids = sorted(o.id for o in self.account.contacts.live())[:count]
        for contact_id in ids:
            obj = self.account.contacts.rows[contact_id]
            obj.updated_at = when
            obj.properties["lastmodifieddate"] = iso(when)
            obj.indexed_at = when + self.search_lag
        return ids

    def keep_contacts(self, count: int) -> None:
        """Shrink the account to its ``count`` lowest contact ids and their deals (a benchmark sizes it exactly).

        ``reset`` brings the seeded account back.
        """
        contacts = self.account.contacts
        kept = set(contacts.first_ids(count))
        contacts.drop([i for i in contacts.rows if i not in kept])
        links = self.account.deal_contacts
        orphans = [d for d, linked in links.items() if not set(linked) & kept]
        for deal_id in orphans:
            del links[deal_id]
        self.account.deals.drop(orphans)

    def add_list(self, name: str, processing_type: str = "MANUAL") -> StaticList:
        """Create a contact list directly (a list someone made in the UI)."""
        created = StaticList(self.account.next_list_id, name, processing_type, "0-1", self.ctx.clock.now())
        self.account.lists[created.id] = created
        self.account.next_list_id += 1
        return created

    def endpoint_name(self, request: httpx.Request) -> str | None:
        """The route template a request is counted under in the sandbox stats."""
        route, _ = self._match(request)
        return route.name if route else None

    def error_response(self, request: httpx.Request, status: int, message: str) -> httpx.Response:
        """HubSpot's error body for an injected fault."""
        if status == 429:
            return self._rate_limited("TEN_SECONDLY_ROLLING", message, None)
        return self._error(status, "INTERNAL_ERROR" if status >= 500 else "VALIDATION_ERROR", message)

    # ------------------------------------------------------------------ dispatch

    def handle(self, request: httpx.Request) -> httpx.Response:
        """Answer one request."""
        route, groups = self._match(request)
        if route is None:
            return self._error(404, "OBJECT_NOT_FOUND", f"No such API: {request.method} {request.url.path}")
        if route.handler == "_token":
            return self._answer(lambda: self._token(request))
        if len(str(request.url)) > MAX_URL_CHARS:
            return self._error(414, "VALIDATION_ERROR", "Request-URI Too Long")
        grant_or_error = self._authenticate(request, route.scope(groups))
        if isinstance(grant_or_error, httpx.Response):
            return grant_or_error
        grant = grant_or_error
        limited, headers = self._limit(route, grant)
        if limited is not None:
            return limited
        response = self._answer(lambda: getattr(self, route.handler)(request, groups))
        response.headers.update(headers)
        return response

    def _match(self, request: httpx.Request) -> tuple[_Route | None, dict[str, str]]:
        path = request.url.path.rstrip("/") or "/"
        for route in _ROUTES:
            if route.method == request.method.upper():
                found = route.pattern.match(path)
                if found:
                    return route, {k: unquote(v) for k, v in found.groupdict().items()}
        return None, {}

    def _answer(self, handler: Callable[[], tuple[int, Any]]) -> httpx.Response:
        try:
            status, body = handler()
        except _Reject as exc:
            return self._error(exc.http_status, exc.category, exc.message, **exc.extra)
        return httpx.Response(status, json=body)

    def _authenticate(self, request: httpx.Request, scope: str | None) -> _Grant | httpx.Response:
        header = request.headers.get("Authorization", "")
        token = header[7:].strip() if header.lower().startswith("bearer ") else ""
        if not token:
            return self._error(
                401,
                "INVALID_AUTHENTICATION",
                "Authentication credentials not found. This API supports OAuth 2.0"
                " authentication and you can find more details at https://developers.hubspot.com/docs/methods/auth/oauth-overview",
            )
        grant = self._grant(token)
        if grant is None:
            return self._error(401, "INVALID_AUTHENTICATION", "The access token is invalid or has been revoked.")
        if grant.expires_at is not None and self.ctx.clock.monotonic() >= grant.expires_at:
            return self._error(401, "EXPIRED_AUTHENTICATION", "The OAuth token used to make this call expired.")
        if scope is not None and scope not in grant.scopes:
            return self._error(
                403,
                "MISSING_SCOPES",
                "This app hasn't been granted all required scopes to make this call. Read more about required"
                " scopes here: https://developers.hubspot.com/scopes.",
                errors=[
                    {
                        "message": "One or more of the following scopes are required.",
                        "context": {"requiredGranularScopes": [scope]},
                    }
                ],
                links={"scopes": "https://developers.hubspot.com/scopes"},
            )
        return grant

    def _grant(self, token: str) -> _Grant | None:
        if token in self.private_tokens:
            return _Grant(self.private_tokens[token], oauth=False)
        return self._access.get(token)

    def _limit(self, route: _Route, grant: _Grant) -> tuple[httpx.Response | None, dict[str, str]]:
        if route.search:
            # Search has its own per-second limit and is exempt from the ten-second window; its answers carry
            # no burst headers.
            allowed, (decision, day) = hit_all([self.search_limit, self.daily])
            if not allowed:
                policy = "SECONDLY" if not decision.allowed else "DAILY"
                return self._rate_limited(policy, f"You have reached your {policy.lower()} limit.", [decision, day]), {}
            return None, {}
        burst = self.oauth_burst if grant.oauth else self.burst
        limiters: list[WindowLimiter] = [burst] if grant.oauth else [burst, self.daily]
        allowed, decisions = hit_all(limiters)
        headers = self._rate_headers(decisions)
        if not allowed:
            policy = "DAILY" if len(decisions) > 1 and not decisions[1].allowed else "TEN_SECONDLY_ROLLING"
            response = self._rate_limited(policy, f"You have reached your {policy.lower()} limit.", decisions)
            response.headers.update(headers)
            return response, {}
        return None, headers

    def _rate_headers(self, decisions: list[WindowDecision]) -> dict[str, str]:
        burst = decisions[0]
        headers = {
            HEADER_MAX: str(burst.limit),
            HEADER_REMAINING: str(max(burst.remaining, 0)),
            HEADER_INTERVAL_MS: str(max(1, round(burst.window_s * 1000))),
        }
        if len(decisions) > 1:
            headers[HEADER_DAILY] = str(decisions[1].limit)
            headers[HEADER_DAILY_REMAINING] = str(max(decisions[1].remaining, 0))
        return headers

    def _rate_limited(self, policy: str, message: str, decisions: list[WindowDecision] | None) -> httpx.Response:
        body = {
            "status": "error",
            "message": message,
            "errorType": "RATE_LIMIT",
            "correlationId": self._correlation(),
            "policyName": policy,
            "category": "RATE_LIMITS",
        }
        response = httpx.Response(429, json=body)
        if decisions:
            wait = max(d.retry_after for d in decisions if not d.allowed)
            response.headers["Retry-After"] = format_seconds(wait if not math.isinf(wait) else 86_400.0)
        return response

    def _error(self, http_status: int, category: str, message: str, **extra: Any) -> httpx.Response:
        body = {"status": "error", "message": message, "correlationId": self._correlation(), "category": category}
        body.update(extra)
        return httpx.Response(http_status, json=body)

    def _correlation(self) -> str:
        return str(uuid.UUID(int=self._rng.getrandbits(128), version=4))

    # ------------------------------------------------------------------ OAuth

    def _token(self, request: httpx.Request) -> tuple[int, Any]:
        fields = dict(parse_qsl(request.content.decode("utf-8", "replace"), keep_blank_values=True))
        fields.update({k: v for k, v in request.url.params.items() if k not in fields})
        if fields.get("grant_type") != "refresh_token":
            raise _Reject(400, "BAD_GRANT_TYPE", "The emulator supports the refresh_token grant only.")
        if self.oauth_clients.get(fields.get("client_id", "")) != fields.get("client_secret"):
            raise _Reject(400, "BAD_CLIENT_ID", "missing or invalid client id or secret", status="BAD_CLIENT_ID")
        scopes = self.refresh_tokens.get(fields.get("refresh_token", ""))
        if scopes is None:
            raise _Reject(400, "BAD_REFRESH_TOKEN", "missing or unknown refresh token", status="BAD_REFRESH_TOKEN")
        token = f"oat-na1-{self._rng.getrandbits(64):016x}"
        lifetime = OAUTH_TOKEN_LIFETIME_S
        self._access[token] = _Grant(scopes, oauth=True, expires_at=self.ctx.clock.monotonic() + lifetime)
        return 200, {
            "access_token": token,
            "refresh_token": fields["refresh_token"],
            "expires_in": max(1, math.ceil(self.ctx.clock.real(lifetime))),
            "token_type": "bearer",
            "token_use": "access_token",
            "hub_id": PORTAL_ID,
            "scopes": sorted(scopes),
        }

    # ------------------------------------------------------------------ objects

    def _table(self, object_type: str) -> ObjectTable:
        table = self.account.table(object_type)
        if table is None:
            raise _Reject(400, "VALIDATION_ERROR", f"Unable to infer object type from: {object_type}")
        return table

    def _list_objects(self, request: httpx.Request, groups: Mapping[str, str]) -> tuple[int, Any]:
        table = self._table(groups["objectType"])
        params = request.url.params
        limit = min(_int(params.get("limit"), 10), LIST_PAGE_SIZE)
        after = _int(params.get("after"), 0)
        archived = params.get("archived", "false").lower() == "true"
        names = _requested(params.get_list("properties")) or list(DEFAULT_PROPERTIES[table.object_type])
        page: list[CrmObject] = []
        more = False
        for object_id in table.ids_from(after):
            obj = table.rows[object_id]
            if obj.archived != archived:
                continue
            if len(page) == limit:
                more = True
                break
            page.append(obj)
        body: JSON = {"results": [o.payload(names, table.definitions) for o in page]}
        if more:
            cursor = str(page[-1].id + 1)
            body["paging"] = {"next": {"after": cursor, "link": str(request.url.copy_set_param("after", cursor))}}
        return 200, body

    def _search(self, request: httpx.Request, groups: Mapping[str, str]) -> tuple[int, Any]:
        table = self._table(groups["objectType"])
        body = _body(request)
        limit = _int(body.get("limit"), 10)
        after = _int(body.get("after"), 0)
        if not 0 < limit <= SEARCH_PAGE_SIZE:
            raise _Reject(400, "VALIDATION_ERROR", f"limit must be between 1 and {SEARCH_PAGE_SIZE}")
        if after >= SEARCH_RESULT_CAP:
            raise _Reject(
                400, "VALIDATION_ERROR", f"Search results are limited to {SEARCH_RESULT_CAP} records; narrow the query"
            )
        filter_groups = body.get("filterGroups") or []
        if len(filter_groups) > SEARCH_MAX_FILTER_GROUPS:
            raise _Reject(400, "VALIDATION_ERROR", f"at most {SEARCH_MAX_FILTER_GROUPS} filterGroups are allowed")
        if sum(len(g.get("filters") or []) for g in filter_groups) > SEARCH_MAX_FILTERS:
            raise _Reject(400, "VALIDATION_ERROR", f"at most {SEARCH_MAX_FILTERS} filters are allowed")
        try:
            matchers = [[compile_filter(table, f) for f in g.get("filters") or []] for g in filter_groups]
        except FilterError as exc:
            raise _Reject(400, "VALIDATION_ERROR", str(exc)) from None
        found = run_search(table, matchers, _sort(body.get("sorts")), self.ctx.clock.now())
        names = _requested(body.get("properties") or []) or list(DEFAULT_PROPERTIES[table.object_type])
        page = found[after : min(after + limit, SEARCH_RESULT_CAP)]
        out: JSON = {"total": len(found), "results": [o.payload(names, table.definitions) for o in page]}
        if after + limit < len(found):
            cursor = str(after + limit)
            out["paging"] = {"next": {"after": cursor, "link": f"?after={cursor}"}}
        return 200, out

    def _batch_read(self, request: httpx.Request, groups: Mapping[str, str]) -> tuple[int, Any]:
        table = self._table(groups["objectType"])
        body = _body(request)
        inputs = _inputs(body, BATCH_LIMIT)
        archived = request.url.params.get("archived", "false").lower() == "true"
        id_property = body.get("idProperty")
        names = _requested(body.get("properties") or []) or list(DEFAULT_PROPERTIES[table.object_type])
        index = _unique_index(table, id_property) if id_property else None
        started = self.ctx.clock.now()
        results, missing = [], []
        for item in inputs:
            key = str(item.get("id", ""))
            obj = index.get(key.strip().lower()) if index is not None else table.rows.get(_int(key, -1))
            if obj is None or obj.archived != archived:
                missing.append(key)
                continue
            results.append(obj.payload(names, table.definitions))
        errors = [_not_found(table.object_type, missing)] if missing else []
        return _batch(results, errors, started, self.ctx.clock.now())

    def _batch_update(self, request: httpx.Request, groups: Mapping[str, str]) -> tuple[int, Any]:
        table = self._table(groups["objectType"])
        inputs = _inputs(_body(request), BATCH_LIMIT)
        started = now = self.ctx.clock.now()
        invalid = [problem for item in inputs for problem in _invalid_values(table, item.get("properties"))]
        if invalid:
            raise _Reject(400, "VALIDATION_ERROR", "Property values were not valid: " + json.dumps(invalid))
        results, missing, traces = [], [], []
        for item in inputs:
            obj = table.rows.get(_int(item.get("id"), -1))
            if obj is None or obj.archived:
                missing.append(str(item.get("id")))
                if item.get("objectWriteTraceId"):
                    traces.append(str(item["objectWriteTraceId"]))
                continue
            props = {str(k): (None if v is None else str(v)) for k, v in (item.get("properties") or {}).items()}
            updated = self.update(table.object_type, obj.id, props, now)
            names = [*props, CURSOR_PROPERTY[table.object_type]]
            results.append(updated.payload(names, table.definitions))
        errors = [_not_found(table.object_type, missing, traces)] if missing else []
        return _batch(results, errors, started, self.ctx.clock.now())

    # ------------------------------------------------------------------ properties, pipelines, associations

    def _properties(self, request: httpx.Request, groups: Mapping[str, str]) -> tuple[int, Any]:
        table = self._table(groups["objectType"])
        return 200, {"results": list(table.definitions.values())}

    def _get_property(self, request: httpx.Request, groups: Mapping[str, str]) -> tuple[int, Any]:
        table = self._table(groups["objectType"])
        found = table.definitions.get(groups["propertyName"])
        if found is None:
            raise _Reject(404, "OBJECT_NOT_FOUND", f"Unable to find property {groups['propertyName']!r}")
        return 200, found

    def _create_property(self, request: httpx.Request, groups: Mapping[str, str]) -> tuple[int, Any]:
        table = self._table(groups["objectType"])
        body = _body(request)
        missing = [k for k in ("name", "label", "type", "fieldType", "groupName") if not body.get(k)]
        if missing:
            raise _Reject(400, "VALIDATION_ERROR", f"missing required field(s): {', '.join(missing)}")
        name = str(body["name"])
        if name in table.definitions:
            raise _Reject(409, "OBJECT_ALREADY_EXISTS", f"A property named {name!r} already exists.")
        created = property_definition(name, str(body["label"]), str(body["type"]), str(body["fieldType"]), False)
        created.update(groupName=str(body["groupName"]), description=str(body.get("description") or ""))
        created["options"] = _options(body.get("options"))
        table.definitions[name] = created
        return 201, created

    def _update_property(self, request: httpx.Request, groups: Mapping[str, str]) -> tuple[int, Any]:
        table = self._table(groups["objectType"])
        found = table.definitions.get(groups["propertyName"])
        if found is None:
            raise _Reject(404, "OBJECT_NOT_FOUND", f"Unable to find property {groups['propertyName']!r}")
        body = _body(request)
        if "options" in body:
            found["options"] = _options(body["options"])  # the list is replaced, not merged
        for key in ("label", "description", "groupName", "hidden", "displayOrder"):
            if key in body:
                found[key] = body[key]
        found["updatedAt"] = iso(self.ctx.clock.now())
        return 200, found

    def _pipelines(self, request: httpx.Request, groups: Mapping[str, str]) -> tuple[int, Any]:
        table = self._table(groups["objectType"])
        return 200, {"results": default_pipelines() if table.object_type == "deals" else []}

    def _associations(self, request: httpx.Request, groups: Mapping[str, str]) -> tuple[int, Any]:
        source = self._table(groups["fromObjectType"]).object_type
        target = self._table(groups["toObjectType"]).object_type
        inputs = _inputs(_body(request), ASSOCIATIONS_BATCH_LIMIT)
        started = self.ctx.clock.now()
        links = self.account.deal_contacts if source == "deals" else self.account.contact_deals()
        if source == target:
            links = {}
        type_id = 3 if source == "deals" else 4
        results, missing = [], []
        for item in inputs:
            key = str(item.get("id", ""))
            targets = links.get(_int(key, -1), [])
            if not targets:
                missing.append(key)
                continue
            to = [
                {"toObjectId": str(t), "associationTypes": [{"category": "HUBSPOT_DEFINED", "typeId": type_id}]}
                for t in targets
            ]
            results.append({"from": {"id": key}, "to": to})
        errors = [
            _standard_error("OBJECT_NOT_FOUND", f"No {target} is associated with {source[:-1]} {key}.", {"ids": [key]})
            for key in missing
        ]
        return _batch(results, errors, started, self.ctx.clock.now())

    # ------------------------------------------------------------------ lists

    def _list_named(self, name: str) -> StaticList | None:
        wanted = name.strip().lower()
        return next((x for x in self.account.lists.values() if x.name.lower() == wanted), None)

    def _create_list(self, request: httpx.Request, groups: Mapping[str, str]) -> tuple[int, Any]:
        body = _body(request)
        missing = [k for k in ("name", "objectTypeId", "processingType") if not body.get(k)]
        if missing:
            raise _Reject(400, "VALIDATION_ERROR", f"missing required field(s): {', '.join(missing)}")
        if self._list_named(str(body["name"])) is not None:
            raise _Reject(
                400, "VALIDATION_ERROR", "A list with this name already exists.", subCategory="ILS.DUPLICATE_LIST_NAMES"
            )
        processing = str(body["processingType"]).upper()
        if processing not in ("MANUAL", "SNAPSHOT", "DYNAMIC"):
            raise _Reject(400, "VALIDATION_ERROR", f"unknown processingType {processing!r}")
        created = self.add_list(str(body["name"]), processing)
        created.object_type_id = str(body["objectTypeId"])
        return 200, {"list": created.payload()}

    def _list_by_name(self, request: httpx.Request, groups: Mapping[str, str]) -> tuple[int, Any]:
        found = self._list_named(groups["listName"])
        if found is None or found.object_type_id != groups["objectTypeId"]:
            raise _Reject(404, "OBJECT_NOT_FOUND", f"List {groups['listName']!r} does not exist.")
        return 200, {"list": found.payload()}

    def _static_list(self, list_id: str) -> StaticList:
        found = self.account.lists.get(_int(list_id, -1))
        if found is None:
            raise _Reject(404, "OBJECT_NOT_FOUND", f"List {list_id} does not exist.")
        return found

    def _update_memberships(self, request: httpx.Request, groups: Mapping[str, str]) -> tuple[int, Any]:
        target = self._static_list(groups["listId"])
        if target.processing_type not in ("MANUAL", "SNAPSHOT"):
            raise _Reject(400, "VALIDATION_ERROR", f"List {target.id} is a {target.processing_type} list.")
        body = _body(request)
        add = [str(x) for x in body.get("recordIdsToAdd") or []]
        remove = [str(x) for x in body.get("recordIdsToRemove") or []]
        if len(add) + len(remove) > LIST_MEMBERSHIP_WRITE_LIMIT:
            raise _Reject(400, "VALIDATION_ERROR", f"at most {LIST_MEMBERSHIP_WRITE_LIMIT} records per request")
        contacts = self.account.contacts.rows
        now = self.ctx.clock.now()
        added, removed, missing = [], [], []
        for record in add:
            obj = contacts.get(_int(record, -1))
            if obj is None or obj.archived:
                missing.append(record)
            elif obj.id not in target.members:
                target.members[obj.id] = now
                added.append(record)
        for record in remove:
            obj = contacts.get(_int(record, -1))
            if obj is None or obj.archived:
                missing.append(record)
            elif target.members.pop(obj.id, None) is not None:
                removed.append(record)
        if added or removed:
            target.version += 1
        # "recordsIdsAdded" is HubSpot's own spelling.
        return 200, {"recordsIdsAdded": added, "recordIdsRemoved": removed, "recordIdsMissing": missing}

    def _memberships(self, request: httpx.Request, groups: Mapping[str, str]) -> tuple[int, Any]:
        target = self._static_list(groups["listId"])
        params = request.url.params
        limit = min(_int(params.get("limit"), 100), LIST_MEMBERSHIP_PAGE)
        after = _int(params.get("after"), 0)
        live = self.account.contacts.rows
        members = sorted(m for m in target.members if m > after and not live[m].archived)
        page = members[:limit]
        body: JSON = {
            "results": [{"recordId": str(m), "membershipTimestamp": iso(target.members[m])} for m in page],
            "total": len(members),
        }
        if len(members) > limit:
            link = str(request.url.copy_set_param("after", page[-1]))
            body["paging"] = {"next": {"after": str(page[-1]), "link": link}}
        return 200, body

    def _search_lists(self, request: httpx.Request, groups: Mapping[str, str]) -> tuple[int, Any]:
        body = _body(request)
        query = str(body.get("query") or "").lower()
        types = {str(t).upper() for t in body.get("processingTypes") or []}
        offset = _int(body.get("offset"), 0)
        count = min(_int(body.get("count"), 20), LIST_SEARCH_PAGE)
        found = [
            x
            for x in sorted(self.account.lists.values(), key=lambda x: x.id)
            if query in x.name.lower() and (not types or x.processing_type in types)
        ]
        page = found[offset : offset + count]
        lists = [{**x.payload(), "additionalProperties": {"hs_list_size": str(len(x.members))}} for x in page]
        return 200, {
            "lists": lists,
            "offset": offset + len(page),
            "hasMore": offset + count < len(found),
            "total": len(found),
        }

    def _record_memberships(self, request: httpx.Request, groups: Mapping[str, str]) -> tuple[int, Any]:
        inputs = _inputs(_body(request), BATCH_LIMIT)
        started = self.ctx.clock.now()
        results = []
        for item in inputs:
            record = _int(item.get("recordId"), -1)
            member_of = [
                {
                    "listId": str(x.id),
                    "listVersion": x.version,
                    "firstAddedTimestamp": iso(x.members[record]),
                    "lastAddedTimestamp": iso(x.members[record]),
                    "isPublicList": True,
                }
                for x in self.account.lists.values()
                if record in x.members
            ]
            type_id = str(item.get("objectTypeId") or OBJECT_TYPE_IDS["contacts"])
            results.append({"objectTypeId": type_id, "recordId": str(record), "recordListMemberships": member_of})
        return _batch(results, [], started, self.ctx.clock.now())


# ---------------------------------------------------------------------- request parsing


def _int(value: Any, default: int) -> int:
    try:
        return int(str(value))
    except (TypeError, ValueError):
        return default


def _body(request: httpx.Request) -> JSON:
    try:
        data = json.loads(request.content or b"null")
    except ValueError:
        raise _Reject(400, "VALIDATION_ERROR", "Invalid input JSON on line 1") from None
    if not isinstance(data, dict):
        raise _Reject(400, "VALIDATION_ERROR", "The request body must be a JSON object")
    return data


def _inputs(body: Mapping[str, Any], limit: int) -> list[JSON]:
    inputs = body.get("inputs")
    if not isinstance(inputs, list):
        raise _Reject(400, "VALIDATION_ERROR", "inputs is required")
    if len(inputs) > limit:
        raise _Reject(400, "VALIDATION_ERROR", f"Batch input limit is {limit}, got {len(inputs)}")
    return [i for i in inputs if isinstance(i, dict)]


def _requested(values: Iterable[str]) -> list[str]:
    """Property names from repeated and comma-separated values, in order."""
    names = (n.strip() for v in values for n in str(v).split(","))
    return list(dict.fromkeys(n for n in names if n))


def _sort(sorts: Any) -> tuple[str, bool] | None:
    if not isinstance(sorts, list) or not sorts:
        return None
    first = sorts[0]
    if isinstance(first, str):  # the string form the spec declares: "name" or "-name"
        return first.lstrip("-"), first.startswith("-")
    if isinstance(first, Mapping) and first.get("propertyName"):
        return str(first["propertyName"]), str(first.get("direction", "ASCENDING")).upper() == "DESCENDING"
    return None


def _unique_index(table: ObjectTable, id_property: str) -> dict[str, CrmObject]:
    if id_property == "hs_object_id":
        return {str(i): o for i, o in table.rows.items()}
    if not table.definitions.get(id_property, {}).get("hasUniqueValue"):
        raise _Reject(400, "VALIDATION_ERROR", f"{id_property} is not a unique identifier property")
    index: dict[str, CrmObject] = {}
    for obj in sorted(table.rows.values(), key=lambda o: o.archived):
        value = (obj.properties.get(id_property) or "").strip().lower()
        if value:
            index.setdefault(value, obj)
    return index


def _invalid_values(table: ObjectTable, properties: Any) -> list[JSON]:
    problems: list[JSON] = []
    for name, value in (properties or {}).items():
        definition = table.definitions.get(name)
        if definition is None:
            problems.append(
                {
                    "isValid": False,
                    "message": f'Property "{name}" does not exist',
                    "error": "PROPERTY_DOESNT_EXIST",
                    "name": name,
                }
            )
            continue
        if definition.get("type") != "enumeration" or value in (None, ""):
            continue
        allowed = {str(o.get("value")) for o in definition.get("options") or ()}
        values = str(value).split(";") if definition.get("fieldType") == "checkbox" else [str(value)]
        for bad in (v for v in values if v not in allowed):
            problems.append(
                {
                    "isValid": False,
                    "message": f"{bad} was not one of the allowed options",
                    "error": "INVALID_OPTION",
                    "name": name,
                }
            )
    return problems


def _options(raw: Any) -> list[JSON]:
    out: list[JSON] = []
    for i, option in enumerate(raw or []):
        if not isinstance(option, Mapping) or not option.get("value") or not option.get("label"):
            raise _Reject(400, "VALIDATION_ERROR", "every option needs a label and a value")
        out.append(
            {
                "label": str(option["label"]),
                "value": str(option["value"]),
                "hidden": bool(option.get("hidden", False)),
                "displayOrder": int(option.get("displayOrder", i)),
                **({"description": str(option["description"])} if option.get("description") else {}),
            }
        )
    return out


def _standard_error(category: str, message: str, context: Mapping[str, list[str]]) -> JSON:
    return {
        "status": "error",
        "category": category,
        "message": message,
        "context": dict(context),
        "errors": [],
        "links": {},
    }


def _not_found(object_type: str, ids: list[str], traces: list[str] | None = None) -> JSON:
    kind = object_type.upper().rstrip("S")
    context: dict[str, list[str]] = {"ids": ids}
    if traces:
        context["objectWriteTraceId"] = traces
    message = f"Could not get some {kind} objects, they may be deleted or not exist. Check that ids are valid."
    return _standard_error("OBJECT_NOT_FOUND", message, context)


def _batch(results: list[JSON], errors: list[JSON], started: datetime, done: datetime) -> tuple[int, Any]:
    body: JSON = {"status": "COMPLETE", "results": results, "startedAt": iso(started), "completedAt": iso(done)}
    if errors:
        body["errors"] = errors
        body["numErrors"] = len(errors)
        return 207, body
    return 200, body
