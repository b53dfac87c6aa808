"""A stateful in-memory imitation of the HubSpot API, seeded from the shared business.

What it imitates (see README.md for the list and where the official spec and the live API disagree):

- Auth: private app tokens (``Authorization: Bearer``) and OAuth (``POST /oauth/v1/token`` with a refresh
  token, 30-minute access tokens that expire, ``expire_tokens`` for the sandbox's fault). 401 with
  ``INVALID_AUTHENTICATION``/``EXPIRED_AUTHENTICATION``; 403 ``MISSING_SCOPES`` naming the scope.
- Limits: the burst window by tier (100 or 190 requests per 10 s for private apps, 110 for OAuth apps), the CRM
  search limit (5 per second, outside the burst window), the daily cap; ``X-HubSpot-RateLimit-*`` headers on
  every non-search answer; 429 with HubSpot's body and ``Retry-After``. Windows run on the sandbox clock, so
  ``speed`` compresses them (and the header values with them).
- CRM objects (contacts, companies, deals; by name or type id ``0-1``/``0-2``/``0-3``): list with ``after``
  paging (100 per page), ``associations`` and ``propertiesWithHistory``, the archived listing, read by id or
  unique property, create, update, archive, search (filters, ``query``, one sort, 200 per page, ``total``, 400
  past 10,000 results, an index that lags ``search_lag_s`` behind writes), batch read, create, update, upsert
  and archive (207 for missing ones, 400 for invalid values, 409 for a duplicate contact email).
- Associations v4 (contact-company, contact-deal, deal-company with HubSpot's type ids and the Primary label):
  per record (paged), batch read, create, default, archive and their batch forms, labels.
- Properties (list, read, create, option changes) and property groups, the deal pipeline, owners, custom
  object schemas (none), and static lists (create, by name, add-and-remove, memberships, search, memberships
  per record).
- Every property value is a string (or null), every error is HubSpot's ``Error`` object with ``category`` and
  ``correlationId``.

The handlers live in mixins: :mod:`.emulator_objects`, :mod:`.emulator_associations`, :mod:`.emulator_meta`;
the account's data in :mod:`.emulator_crm`.
"""

from __future__ import annotations

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
    hit_all,
)

from . import SANDBOX_TOKEN
from .emulator_associations import AssociationsApi
from .emulator_crm import PORTAL_ID, CrmObject, ObjectTable, StaticList, iso, object_type_name, seed
from .emulator_http import JSON, Answer, Reject, as_int, batch, inputs, json_body
from .emulator_meta import MetaApi
from .emulator_objects import ObjectsApi
from .settings import (
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
    LIST_SEARCH_PAGE,
    OAUTH_APP_BURST_LIMIT,
    OAUTH_TOKEN_LIFETIME_S,
    OBJECT_TYPE_IDS,
    SEARCH_PER_SECOND,
)

SANDBOX_CLIENT_ID = "sandbox-client"
SANDBOX_CLIENT_SECRET = "sandbox-client-secret"
SANDBOX_REFRESH_TOKEN = "sandbox-refresh-token"
ALL_SCOPES = frozenset(
    {
        "crm.objects.contacts.read",
        "crm.objects.contacts.write",
        "crm.objects.companies.read",
        "crm.objects.companies.write",
        "crm.objects.deals.read",
        "crm.objects.deals.write",
        "crm.objects.owners.read",
        "crm.schemas.contacts.read",
        "crm.schemas.contacts.write",
        "crm.schemas.companies.read",
        "crm.schemas.companies.write",
        "crm.schemas.deals.read",
        "crm.schemas.deals.write",
        "crm.schemas.custom.read",
        "crm.lists.read",
        "crm.lists.write",
        "oauth",
    }
)
# Servers commonly refuse longer request lines; HubSpot answers 414.
MAX_URL_CHARS = 16_384
LIST_MEMBERSHIP_WRITE_LIMIT = 100_000
_TYPES = ("contacts", "companies", "deals")
_READ_SCOPE = {t: f"crm.objects.{t}.read" for t in _TYPES}
_WRITE_SCOPE = {t: f"crm.objects.{t}.write" for t in _TYPES}
_SCHEMA_READ = {t: f"crm.schemas.{t}.read" for t in _TYPES}
_SCHEMA_WRITE = {t: f"crm.schemas.{t}.write" for t in _TYPES}
# Path groups that name an object type: endpoint names keep them as sent (concrete resources); every other
# group (record ids, property and list names) stays a template.
_TYPE_GROUPS = frozenset({"objectType", "objectTypeId", "fromObjectType", "toObjectType"})


@dataclass(frozen=True)
class _Route:
    method: str
    pattern: re.Pattern[str]
    path: str
    handler: str
    scope: Callable[[Mapping[str, str]], str | None]
    resource: str  # a fixed resource name, or "@group": the object type in that path group
    search: bool = False

    @property
    def name(self) -> str:
        """The route template, e.g. ``GET /crm/v3/objects/{objectType}/{id}``."""
        return f"{self.method} {self.path}"


def _route(
    method: str,
    path: str,
    handler: str,
    scope: Callable[[Mapping[str, str]], str | None],
    resource: str,
    *,
    search: bool = False,
) -> _Route:
    regex = re.sub(r"\{(\w+)\}", lambda m: f"(?P<{m.group(1)}>[^/]+)", path)
    return _Route(method, re.compile(f"^{regex}$"), path, handler, scope, resource, search)


def _of(table: Mapping[str, str], key: str) -> Callable[[Mapping[str, str]], str | None]:
    return lambda groups: table.get(object_type_name(groups.get(key, "")) or "")


def _fixed(scope: str | None) -> Callable[[Mapping[str, str]], str | None]:
    return lambda groups: scope


_OBJECTS = "/crm/v3/objects/{objectType}"
_V4_RECORD = "/crm/v4/objects/{objectType}/{id}/associations"
_V4_PAIR = "/crm/v4/associations/{fromObjectType}/{toObjectType}"
_READ, _WRITE = _of(_READ_SCOPE, "objectType"), _of(_WRITE_SCOPE, "objectType")
_FROM_READ, _FROM_WRITE = _of(_READ_SCOPE, "fromObjectType"), _of(_WRITE_SCOPE, "fromObjectType")
_SCHEMAS = _fixed("crm.schemas.custom.read")
_ROUTES = (
    _route("POST", "/oauth/v1/token", "_token", _fixed(None), "oauth"),
    # CRM objects
    _route("GET", _OBJECTS, "_list_objects", _READ, "@objectType"),
    _route("POST", _OBJECTS, "_create_object", _WRITE, "@objectType"),
    _route("POST", f"{_OBJECTS}/search", "_search", _READ, "@objectType", search=True),
    _route("POST", f"{_OBJECTS}/batch/read", "_batch_read", _READ, "@objectType"),
    _route("POST", f"{_OBJECTS}/batch/create", "_batch_create", _WRITE, "@objectType"),
    _route("POST", f"{_OBJECTS}/batch/update", "_batch_update", _WRITE, "@objectType"),
    _route("POST", f"{_OBJECTS}/batch/upsert", "_batch_upsert", _WRITE, "@objectType"),
    _route("POST", f"{_OBJECTS}/batch/archive", "_batch_archive", _WRITE, "@objectType"),
    _route("GET", f"{_OBJECTS}/{{id}}", "_get_object", _READ, "@objectType"),
    _route("PATCH", f"{_OBJECTS}/{{id}}", "_update_object", _WRITE, "@objectType"),
    _route("DELETE", f"{_OBJECTS}/{{id}}", "_archive_object", _WRITE, "@objectType"),
    # properties and groups, pipelines
    _route("GET", "/crm/v3/properties/{objectType}", "_properties", _of(_SCHEMA_READ, "objectType"), "properties"),
    _route(
        "POST", "/crm/v3/properties/{objectType}", "_create_property", _of(_SCHEMA_WRITE, "objectType"), "properties"
    ),
    _route(
        "GET",
        "/crm/v3/properties/{objectType}/groups",
        "_property_groups",
        _of(_SCHEMA_READ, "objectType"),
        "properties",
    ),
    _route(
        "GET",
        "/crm/v3/properties/{objectType}/groups/{groupName}",
        "_property_group",
        _of(_SCHEMA_READ, "objectType"),
        "properties",
    ),
    _route(
        "GET",
        "/crm/v3/properties/{objectType}/{propertyName}",
        "_get_property",
        _of(_SCHEMA_READ, "objectType"),
        "properties",
    ),
    _route(
        "PATCH",
        "/crm/v3/properties/{objectType}/{propertyName}",
        "_update_property",
        _of(_SCHEMA_WRITE, "objectType"),
        "properties",
    ),
    _route("GET", "/crm/v3/pipelines/{objectType}", "_pipelines", _READ, "pipelines"),
    # associations v4
    _route("GET", f"{_V4_RECORD}/{{toObjectType}}", "_object_associations", _READ, "associations"),
    _route(
        "PUT",
        f"{_V4_RECORD}/default/{{toObjectType}}/{{toObjectId}}",
        "_create_default_association",
        _WRITE,
        "associations",
    ),
    _route("PUT", f"{_V4_RECORD}/{{toObjectType}}/{{toObjectId}}", "_create_association", _WRITE, "associations"),
    _route("DELETE", f"{_V4_RECORD}/{{toObjectType}}/{{toObjectId}}", "_archive_association", _WRITE, "associations"),
    _route("POST", f"{_V4_PAIR}/batch/read", "_associations", _FROM_READ, "associations"),
    _route("POST", f"{_V4_PAIR}/batch/create", "_batch_create_associations", _FROM_WRITE, "associations"),
    _route("POST", f"{_V4_PAIR}/batch/archive", "_batch_archive_associations", _FROM_WRITE, "associations"),
    _route("POST", f"{_V4_PAIR}/batch/associate/default", "_batch_default_associations", _FROM_WRITE, "associations"),
    _route(
        "POST",
        "/crm/v3/associations/{fromObjectType}/{toObjectType}/batch/read",
        "_v3_batch_associations",
        _FROM_READ,
        "associations",
    ),
    # labels: the SDK's path and the one the associations schema spec lists
    _route("GET", f"{_V4_PAIR}/labels", "_association_labels", _FROM_READ, "associations"),
    _route(
        "GET",
        "/crm/associations/v4/{fromObjectType}/{toObjectType}/labels",
        "_association_labels",
        _FROM_READ,
        "associations",
    ),
    # owners, custom object schemas (the documented path and the SDK's)
    _route("GET", "/crm/v3/owners", "_owners", _fixed("crm.objects.owners.read"), "owners"),
    _route("GET", "/crm/v3/owners/{ownerId}", "_owner", _fixed("crm.objects.owners.read"), "owners"),
    _route("GET", "/crm/v3/schemas", "_schemas", _SCHEMAS, "schemas"),
    _route("GET", "/crm/v3/schemas/{objectType}", "_schema", _SCHEMAS, "schemas"),
    _route("GET", "/crm-object-schemas/v3/schemas", "_schemas", _SCHEMAS, "schemas"),
    _route("GET", "/crm-object-schemas/v3/schemas/{objectType}", "_schema", _SCHEMAS, "schemas"),
    # lists
    _route("POST", "/crm/v3/lists", "_create_list", _fixed("crm.lists.write"), "lists"),
    _route("POST", "/crm/v3/lists/search", "_search_lists", _fixed("crm.lists.read"), "lists"),
    _route(
        "POST",
        "/crm/v3/lists/records/memberships/batch/read",
        "_record_memberships",
        _fixed("crm.lists.read"),
        "lists",
    ),
    _route(
        "GET",
        "/crm/v3/lists/object-type-id/{objectTypeId}/name/{listName}",
        "_list_by_name",
        _fixed("crm.lists.read"),
        "lists",
    ),
    _route(
        "PUT",
        "/crm/v3/lists/{listId}/memberships/add-and-remove",
        "_update_memberships",
        _fixed("crm.lists.write"),
        "lists",
    ),
    _route("GET", "/crm/v3/lists/{listId}/memberships", "_memberships", _fixed("crm.lists.read"), "lists"),
)


@dataclass
class _Grant:
    scopes: frozenset[str]
    oauth: bool
    expires_at: float | None = None  # vendor monotonic seconds


class HubSpotEmulator(ObjectsApi, AssociationsApi, MetaApi):
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
        self.account = seed(self.ctx.business)
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
        """Change ``fraction`` and archive ``delete_fraction`` of the live contacts, deals and companies."""
        now = self.ctx.clock.now()
        counts: dict[str, int] = {}
        tables = self.account.tables()
        for name in ("contacts", "deals", "companies"):  # this order keeps a seed's draws for the first two
            table = tables[name]
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
        elif table.object_type == "deals":
            amount = Decimal(obj.properties.get("amount") or "0") + 100
            self.update(table.object_type, obj.id, {"amount": str(amount)}, now)
        else:
            staff = int(obj.properties.get("numberofemployees") or "0") + 1
            self.update(table.object_type, obj.id, {"numberofemployees": str(staff)}, now)

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
        """Shrink the account to its ``count`` lowest contact ids, their deals and their companies (a benchmark
        sizes it exactly).

        ``reset`` brings the seeded account back.
        """
        account = self.account
        kept = set(account.contacts.first_ids(count))
        links = account.associations
        dropped = [i for i in account.contacts.rows if i not in kept]
        account.contacts.drop(dropped)
        links.drop("contacts", dropped)
        for name in ("deals", "companies"):
            table = account.tables()[name]
            orphans = [i for i in table.rows if not links.targets(name, i, "contacts")]
            table.drop(orphans)
            links.drop(name, orphans)

    def add_list(self, name: str, processing_type: str = "MANUAL") -> StaticList:
        """Create a contact list directly (a list someone made in the UI)."""
        created = StaticList(self.account.next_list_id, name, processing_type, "0-1", self.ctx.clock.now())
        self.account.lists[created.id] = created
        self.account.next_list_id += 1
        return created

    def endpoint_name(self, request: httpx.Request) -> str | None:
        """The name a request is counted under in the sandbox stats: the route with the object types as sent.

        ``GET /crm/v3/objects/contacts`` and ``GET /crm/v3/objects/deals`` are apart; record ids, property and
        list names stay templates (``GET /crm/v3/objects/contacts/{id}``).
        """
        route, groups = self._match(request)
        if route is None:
            return None
        path = re.sub(
            r"\{(\w+)\}", lambda m: groups[m.group(1)] if m.group(1) in _TYPE_GROUPS else m.group(0), route.path
        )
        return f"{route.method} {path}"

    def route_name(self, request: httpx.Request) -> str | None:
        """The route template a request matches (``GET /crm/v3/objects/{objectType}``), None for no route."""
        route, _ = self._match(request)
        return route.name if route else None

    def resource_name(self, request: httpx.Request) -> str | None:
        """The resource a request is about: the object type (``contacts``, also for ``0-1``), else the API
        family (``associations``, ``properties``, ``lists``, ``owners``, ``oauth``, ...)."""
        route, groups = self._match(request)
        if route is None:
            return None
        if not route.resource.startswith("@"):
            return route.resource
        sent = groups[route.resource[1:]]
        return object_type_name(sent) or sent.lower()

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

    def _answer(self, handler: Callable[[], Answer]) -> httpx.Response:
        try:
            status, body = handler()
        except Reject as exc:
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
            # Whole seconds, rounded up: HubSpot sends delay-seconds (RFC 9110: an integer), and strict clients
            # (urllib3's Retry, which the official SDK uses) refuse a fraction. At compressed speeds a client
            # waits up to a second longer than the window needs, never less.
            real = 86_400.0 if math.isinf(wait) else wait
            response.headers["Retry-After"] = str(max(0, math.ceil(real - 1e-9)))
        return response

    def _error(self, http_status: int, category: str, message: str, **extra: Any) -> httpx.Response:
        body = {"status": "error", "message": message, "correlationId": self._correlation(), "category": category}
        body.update(extra)
        return httpx.Response(http_status, json=body)

    def _correlation(self) -> str:
        return str(uuid.UUID(int=self._rng.getrandbits(128), version=4))

    # ------------------------------------------------------------------ OAuth

    def _token(self, request: httpx.Request) -> Answer:
        fields = dict(parse_qsl(request.content.decode("utf-8", "replace"), keep_blank_values=True))
        fields.update({k: v for k, v in request.url.params.items() if k not in fields})
        if fields.get("grant_type") != "refresh_token":
            raise Reject(400, "BAD_GRANT_TYPE", "The emulator supports the refresh_token grant only.")
        if self.oauth_clients.get(fields.get("client_id", "")) != fields.get("client_secret"):
            raise Reject(400, "BAD_CLIENT_ID", "missing or invalid client id or secret", status="BAD_CLIENT_ID")
        scopes = self.refresh_tokens.get(fields.get("refresh_token", ""))
        if scopes is None:
            raise Reject(400, "BAD_REFRESH_TOKEN", "missing or unknown refresh token", status="BAD_REFRESH_TOKEN")
        token = f"oat-na1-{self._rng.getrandbits(64):016x}"
        # A token lives its 30 minutes of wall-clock time: the sandbox speed compresses rate-limit windows, not
        # token lifetimes (a 90-second token at speed 20 would be inside every client's refresh margin).
        # The sandbox's token_expiry fault ends tokens early where a trial needs it.
        lifetime = OAUTH_TOKEN_LIFETIME_S
        expires_at = self.ctx.clock.monotonic() + lifetime * self.ctx.clock.speed
        self._access[token] = _Grant(scopes, oauth=True, expires_at=expires_at)
        return 200, {
            "access_token": token,
            "refresh_token": fields["refresh_token"],
            "expires_in": lifetime,
            "token_type": "bearer",
            "token_use": "access_token",
            "hub_id": PORTAL_ID,
            "scopes": sorted(scopes),
        }

    # ------------------------------------------------------------------ lists

    def _list_named(self, name: str) -> StaticList | None:
        wanted = name.strip().lower()
        return next((x for x in self.account.lists.values() if x.name.lower() == wanted), None)

    def _create_list(self, request: httpx.Request, groups: Mapping[str, str]) -> Answer:
        body = json_body(request)
        missing = [k for k in ("name", "objectTypeId", "processingType") if not body.get(k)]
        if missing:
            raise Reject(400, "VALIDATION_ERROR", f"missing required field(s): {', '.join(missing)}")
        if self._list_named(str(body["name"])) is not None:
            raise Reject(
                400, "VALIDATION_ERROR", "A list with this name already exists.", subCategory="ILS.DUPLICATE_LIST_NAMES"
            )
        processing = str(body["processingType"]).upper()
        if processing not in ("MANUAL", "SNAPSHOT", "DYNAMIC"):
            raise Reject(400, "VALIDATION_ERROR", f"unknown processingType {processing!r}")
        created = self.add_list(str(body["name"]), processing)
        created.object_type_id = str(body["objectTypeId"])
        return 200, {"list": created.payload()}

    def _list_by_name(self, request: httpx.Request, groups: Mapping[str, str]) -> Answer:
        found = self._list_named(groups["listName"])
        if found is None or found.object_type_id != groups["objectTypeId"]:
            raise Reject(404, "OBJECT_NOT_FOUND", f"List {groups['listName']!r} does not exist.")
        return 200, {"list": found.payload()}

    def _static_list(self, list_id: str) -> StaticList:
        found = self.account.lists.get(as_int(list_id, -1))
        if found is None:
            raise Reject(404, "OBJECT_NOT_FOUND", f"List {list_id} does not exist.")
        return found

    def _update_memberships(self, request: httpx.Request, groups: Mapping[str, str]) -> Answer:
        target = self._static_list(groups["listId"])
        if target.processing_type not in ("MANUAL", "SNAPSHOT"):
            raise Reject(400, "VALIDATION_ERROR", f"List {target.id} is a {target.processing_type} list.")
        body = json_body(request)
        add = [str(x) for x in body.get("recordIdsToAdd") or []]
        remove = [str(x) for x in body.get("recordIdsToRemove") or []]
        if len(add) + len(remove) > LIST_MEMBERSHIP_WRITE_LIMIT:
            raise Reject(400, "VALIDATION_ERROR", f"at most {LIST_MEMBERSHIP_WRITE_LIMIT} records per request")
        contacts = self.account.contacts.rows
        now = self._now()
        added, removed, missing = [], [], []
        for record in add:
            obj = contacts.get(as_int(record, -1))
            if obj is None or obj.archived:
                missing.append(record)
            elif obj.id not in target.members:
                target.members[obj.id] = now
                added.append(record)
        for record in remove:
            obj = contacts.get(as_int(record, -1))
            if obj is None or obj.archived:
                missing.append(record)
            elif target.members.pop(obj.id, None) is not None:
                removed.append(record)
        if added or removed:
            target.version += 1
        # "recordsIdsAdded" is HubSpot's own spelling.
        return 200, {"recordsIdsAdded": added, "recordIdsRemoved": removed, "recordIdsMissing": missing}

    def _memberships(self, request: httpx.Request, groups: Mapping[str, str]) -> Answer:
        target = self._static_list(groups["listId"])
        params = request.url.params
        limit = min(as_int(params.get("limit"), 100), LIST_MEMBERSHIP_PAGE)
        after = as_int(params.get("after"), 0)
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

    def _search_lists(self, request: httpx.Request, groups: Mapping[str, str]) -> Answer:
        body = json_body(request)
        query = str(body.get("query") or "").lower()
        types = {str(t).upper() for t in body.get("processingTypes") or []}
        offset = as_int(body.get("offset"), 0)
        count = min(as_int(body.get("count"), 20), LIST_SEARCH_PAGE)
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

    def _record_memberships(self, request: httpx.Request, groups: Mapping[str, str]) -> Answer:
        items = inputs(json_body(request), BATCH_LIMIT)
        started = self._now()
        results = []
        for item in items:
            record = as_int(item.get("recordId"), -1)
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
        return batch(results, [], started, self._now())
