"""A stateful imitation of the Mailchimp Marketing API 3.0, for tests, ``hub demo`` and ``hub sandbox serve``.

What it imitates (each as Mailchimp documents it; see the README for where the spec and the live API part):

- auth: HTTP Basic with an API key, or an OAuth token (``Bearer``/``OAuth``); 401 problem+json otherwise; a
  key used against another data center's host (``us7.api.mailchimp.com`` with a ``-us21`` key) is refused;
- ``GET /oauth2/metadata`` (on any host) answering a bad token with **200** ``{"error": "invalid_token"}``;
- at most 10 simultaneous connections per account, 429 problem+json past it (``concurrent = True``: the
  Sandbox lets requests overlap, and each one holds its connection for a simulated latency);
- ``/`` and ``/ping``; ``/lists`` and one list; members: list (``status``, ``since_last_changed`` /
  ``before_last_changed``, sorting, archived members only with ``status=archived``), get (by hash, email or
  contact id), add, add-or-update, update, archive, delete permanently, batch subscribe; member tags (get,
  add/remove), the member's activity feed and activity; tag search; merge fields; interest categories (none);
  campaigns (list, get); the email activity report (``since``: only recipients with activity after it) and
  the unsubscribe report, both also per member;
- tags as static segments: list, get, create, rename or replace, delete, batch add/remove (at most 500 per
  field, 400 past it) with per-member ``errors`` (compliance state, invalid address, already/not in the
  segment), a segment's members (list, add, remove); a tag set through ``/members/{hash}/tags`` is the same
  static segment;
- ``count`` (at most 1000) and ``offset`` paging with ``total_items`` and ``_links``; ``fields`` and
  ``exclude_fields``; problem+json errors with ``type``, ``title``, ``status``, ``detail``, ``instance``.

Paths are served at the root and under ``/3.0`` (the API's own prefix), so a client can use either base URL.
"""

from __future__ import annotations

import copy
import json
import random
import re
import threading
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from email.utils import format_datetime
from typing import Any

import httpx

from hub.sandbox.emulator import EmulatorContext
from hub.sandbox.ratelimit import ConcurrencyLimiter

from . import SANDBOX_API_KEY, settings
from . import emulator_members as writes
from .emulator_data import AudienceData, Campaign, Member, Segment, contact_id, iso, short_id, template
from .emulator_http import (
    NO_CONTENT,
    Answer,
    Problem,
    api_path,
    basic_password,
    choice,
    choices,
    email_list,
    flag,
    invalid,
    json_body,
    not_found,
    paging,
    project,
    query_time,
    same_dc,
)

"""The API key the sandbox accepts (a public test value, not a secret)."""
SANDBOX_OAUTH_TOKEN = "sandbox-oauth-token-c0ffee00c0ffee00"
"""The OAuth access token the sandbox accepts (a public test value, not a secret)."""
DATA_CENTER = "us21"

ERROR_DOCS = "https://mailchimp.com/developer/marketing/docs/errors/"
_EMAIL_RE = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")

_COMPLIANCE = (
    "Email address is in a compliance state due to unsubscribe, bounce, or compliance review and cannot be "
    "added to a segment."
)
_FAKE = "Email address looks fake or invalid, please enter a real email address."
_ALREADY = "Email address is already a member of this segment."
_ABSENT = "Email address is not a member of this segment."
_MEMBER_STATUSES = ("subscribed", "unsubscribed", "cleaned", "pending", "transactional", "archived")
_FEED_FILTERS = (
    "bounce", "click", "conversation", "ecommerce_signup", "event", "web_engagement", "generic_signup",
    "landing_page_signup", "marketing_permission", "note", "open", "order", "postcard_sent", "sent", "signup",
    "squatter_signup", "unsub", "website_signup", "survey_response",
)  # fmt: skip
_ACTIVITY_ACTIONS = ("abuse", "bounce", "click", "open", "sent", "unsub", "ecomm")
MEMBER_ACTIVITY_LIMIT = 50
"""``GET .../members/{hash}/activity`` lists the member's last 50 events."""


@dataclass(frozen=True)
class Latency:
    """How long a request holds its connection, in vendor seconds (compressed by the sandbox speed).

    Args:
        base_s: per request.
        per_item_s: per item in the answer (a page of 1000 members takes longer than one member).
    """

    base_s: float = 0.0
    per_item_s: float = 0.0

    def of(self, items: int) -> float:
        """The latency of an answer with ``items`` items."""
        return self.base_s + self.per_item_s * items


REALISTIC_LATENCY = Latency(0.05, 0.0002)
"""What ``hub sandbox serve`` uses: about 0.25 s for a page of 1000 members."""


Handler = Callable[[httpx.Request, Mapping[str, str]], Answer]


@dataclass
class _Route:
    method: str
    template: str
    resource: str
    pattern: re.Pattern[str]
    handler: Handler = field(repr=False)


class MailchimpEmulator:
    """The emulated Mailchimp account: one audience from the sandbox business.

    Args:
        ctx: the sandbox context (business, clock).
        latency: the simulated latency (none by default: tests stay fast).
        api_keys: API keys accepted (default: :data:`SANDBOX_API_KEY`).
        oauth_tokens: OAuth tokens accepted (default: :data:`SANDBOX_OAUTH_TOKEN`).
        connections: simultaneous connections allowed (Mailchimp: 10).
    """

    vendor = "mailchimp"
    concurrent = True

    def __init__(
        self,
        ctx: EmulatorContext,
        *,
        latency: Latency = Latency(),
        api_keys: Sequence[str] = (SANDBOX_API_KEY,),
        oauth_tokens: Sequence[str] = (SANDBOX_OAUTH_TOKEN,),
        connections: int = settings.MAX_CONNECTIONS,
    ) -> None:
        self.ctx = ctx
        self.latency = latency
        self.connections = ConcurrencyLimiter(connections)
        self.list_id = short_id("list", ctx.seed)
        self._api_keys = frozenset(api_keys)
        self._oauth_tokens = frozenset(oauth_tokens)
        self._lock = threading.RLock()
        self._rng = ctx.rng("mailchimp")
        self._routes = self._build_routes()
        self.reset()

    # ------------------------------------------------------------------ the Emulator protocol

    def reset(self) -> None:
        """Back to the seeded audience; issued tokens valid again."""
        with self._lock:
            self.data = AudienceData(self.ctx.business, self.list_id)
            self._tokens = set(self._oauth_tokens)
            self._activity_cache: dict[tuple[str, int | None], list[tuple[str, list[Any]]]] = {}
            self._cache_version = -1

    def mutate(self, fraction: float, delete_fraction: float, rng: random.Random) -> dict[str, int]:
        """Change ``fraction`` of the live members (one bulk update: a new ``last_changed`` for all, some also
        unsubscribe or open the latest campaign) and archive ``delete_fraction`` of them."""
        with self._lock:
            return self.data.mutate(fraction, delete_fraction, rng, self.ctx.clock.now())

    def expire_tokens(self) -> None:
        """Revoke every OAuth token (Mailchimp's tokens do not expire, but an account owner can revoke them)."""
        with self._lock:
            self._tokens.clear()

    def error_response(self, request: httpx.Request, status: int, message: str) -> httpx.Response:
        """Mailchimp's problem+json, for the sandbox's injected faults."""
        return self._encode(request, self._problem(Problem(status, message)))

    def endpoint_name(self, request: httpx.Request) -> str | None:
        """``GET /lists/{list_id}/members`` style names for ``/_sandbox/stats``: one per route, so every
        resource (members, member tags, segments, segment members, ...) is counted apart."""
        if api_path(request) == "/oauth2/metadata":
            return "GET /oauth2/metadata"
        route = self._route_of(request)
        return None if route is None else f"{request.method} {route.template}"

    def resource_name(self, request: httpx.Request) -> str | None:
        """The resource a request is about, for ``/_sandbox/stats``: ``members``, ``member-tags``, ``segments``,
        ``segment-members``, ``campaigns``, ``email-activity``, ``unsubscribes``, ``oauth``, ..."""
        if api_path(request) == "/oauth2/metadata":
            return "oauth"
        route = self._route_of(request)
        return None if route is None else route.resource

    def handle(self, request: httpx.Request) -> httpx.Response:
        """Answer one API request."""
        with self.connections.slot() as slot:
            if not slot.allowed:
                limit = self.connections.limit
                busy = Problem(429, f"You have exceeded the limit of {limit} simultaneous connections.")
                return self._encode(request, self._problem(busy))
            path = api_path(request)
            if path == "/oauth2/metadata":
                answer = self._metadata(request)
            else:
                denied = self._authenticate(request)
                answer = denied if denied is not None else self._dispatch(request, path)
            response = self._encode(request, answer)
            self.ctx.clock.sleep(self.latency.of(answer.items))
            return response

    # ------------------------------------------------------------------ plumbing

    def _build_routes(self) -> list[_Route]:
        member = "/lists/{list_id}/members/{subscriber_hash}"
        segment = "/lists/{list_id}/segments/{segment_id}"
        table: list[tuple[str, str, str, Handler]] = [
            ("GET", "/", "root", self._root),
            ("GET", "/ping", "ping", self._ping),
            ("GET", "/lists", "lists", self._lists),
            ("GET", "/lists/{list_id}", "lists", self._list),
            ("POST", "/lists/{list_id}", "members", self._batch_subscribe),
            ("GET", "/lists/{list_id}/members", "members", self._members),
            ("POST", "/lists/{list_id}/members", "members", self._add_member),
            ("GET", member, "members", self._member),
            ("PUT", member, "members", self._put_member),
            ("PATCH", member, "members", self._patch_member),
            ("DELETE", member, "members", self._archive_member),
            ("POST", f"{member}/actions/delete-permanent", "members", self._forget_member),
            ("GET", f"{member}/tags", "member-tags", self._member_tags),
            ("POST", f"{member}/tags", "member-tags", self._set_member_tags),
            ("GET", f"{member}/activity-feed", "activity-feed", self._activity_feed),
            ("GET", f"{member}/activity", "member-activity", self._member_activity),
            ("GET", "/lists/{list_id}/tag-search", "tag-search", self._tag_search),
            ("GET", "/lists/{list_id}/merge-fields", "merge-fields", self._merge_fields),
            ("GET", "/lists/{list_id}/merge-fields/{merge_id}", "merge-fields", self._merge_field),
            ("GET", "/lists/{list_id}/interest-categories", "interest-categories", self._interest_categories),
            (
                "GET",
                "/lists/{list_id}/interest-categories/{interest_category_id}",
                "interest-categories",
                self._interest_category,
            ),
            ("GET", "/lists/{list_id}/segments", "segments", self._segments),
            ("POST", "/lists/{list_id}/segments", "segments", self._create_segment),
            ("GET", segment, "segments", self._segment),
            ("PATCH", segment, "segments", self._update_segment),
            ("DELETE", segment, "segments", self._delete_segment),
            ("POST", segment, "segment-members", self._batch_segment),
            ("GET", f"{segment}/members", "segment-members", self._segment_members),
            ("POST", f"{segment}/members", "segment-members", self._add_segment_member),
            ("DELETE", f"{segment}/members/{{subscriber_hash}}", "segment-members", self._remove_segment_member),
            ("GET", "/campaigns", "campaigns", self._campaigns),
            ("GET", "/campaigns/{campaign_id}", "campaigns", self._campaign),
            ("GET", "/reports/{campaign_id}/email-activity", "email-activity", self._email_activity),
            ("GET", "/reports/{campaign_id}/email-activity/{subscriber_hash}", "email-activity", self._member_email),
            ("GET", "/reports/{campaign_id}/unsubscribed", "unsubscribes", self._unsubscribed),
            ("GET", "/reports/{campaign_id}/unsubscribed/{subscriber_hash}", "unsubscribes", self._unsubscribe),
        ]
        routes = []
        for method, path, resource, handler in table:
            regex = re.sub(r"\{(\w+)\}", r"(?P<\1>[^/]+)", path)
            routes.append(_Route(method, path, resource, re.compile(regex), handler))
        return routes

    def _route_of(self, request: httpx.Request) -> _Route | None:
        """The route of the request's method and path; for a method the path does not take, the path's route."""
        path = api_path(request)
        matching = [route for route in self._routes if route.pattern.fullmatch(path)]
        return next((r for r in matching if r.method == request.method), matching[0] if matching else None)

    def _dispatch(self, request: httpx.Request, path: str) -> Answer:
        allowed = False
        for route in self._routes:
            match = route.pattern.fullmatch(path)
            if match is None:
                continue
            allowed = True
            if route.method == request.method:
                try:
                    with self._lock:
                        return route.handler(request, match.groupdict())
                except Problem as problem:
                    return self._problem(problem)
        if allowed:
            return self._problem(Problem(405, "This method is not allowed on this resource."))
        return self._problem(not_found())

    def _problem(self, problem: Problem) -> Answer:
        body: dict[str, Any] = {
            "type": ERROR_DOCS,
            "title": problem.title,
            "status": problem.status,
            "detail": problem.detail,
            "instance": str(uuid.UUID(int=self._rng.getrandbits(128), version=4)),
        }
        if problem.errors:
            body["errors"] = list(problem.errors)
        return Answer(problem.status, body, problem=True, project=False)

    def _encode(self, request: httpx.Request, answer: Answer) -> httpx.Response:
        date = format_datetime(self.ctx.clock.now(), usegmt=True)
        if answer.status == 204:
            return httpx.Response(204, headers={"Date": date})  # no body, and so no content type
        body = answer.body
        if answer.project and request.method == "GET":
            body = project(body, request.url.params.get("fields"), request.url.params.get("exclude_fields"))
        kind = "application/problem+json" if answer.problem else "application/json; charset=utf-8"
        headers = {"Content-Type": kind, "Date": date}
        return httpx.Response(answer.status, headers=headers, content=json.dumps(body).encode())

    def _authenticate(self, request: httpx.Request) -> Answer | None:
        scheme, _, value = request.headers.get("Authorization", "").partition(" ")
        wrong = Problem(401, "Your API key may be invalid, or you've attempted to access the wrong datacenter.")
        if scheme.lower() == "basic":
            key = basic_password(value)
            if key not in self._api_keys or not same_dc(request, key.rpartition("-")[2]):
                return self._problem(wrong)
            return None
        if scheme.lower() in ("bearer", "oauth"):
            with self._lock:
                valid = value in self._tokens
            return None if valid and same_dc(request, DATA_CENTER) else self._problem(wrong)
        return self._problem(Problem(401, "Your request did not include an API key."))

    def _metadata(self, request: httpx.Request) -> Answer:
        scheme, _, value = request.headers.get("Authorization", "").partition(" ")
        with self._lock:
            valid = scheme.lower() in ("oauth", "bearer") and value in self._tokens
        if not valid:
            return Answer(200, {"error": "invalid_token"}, project=False)  # Mailchimp's 200-with-error
        body = dict(template("oauth_metadata"), dc=DATA_CENTER, api_endpoint=f"https://{DATA_CENTER}.api.mailchimp.com")
        return Answer(200, body, project=False)

    def _audience(self, list_id: str) -> None:
        if list_id != self.list_id:
            raise not_found()

    def _find_member(self, params: Mapping[str, str]) -> Member:
        """The member of the path (hash, email or contact id) in the path's audience; 404 otherwise."""
        self._audience(params["list_id"])
        member = self.data.find(params["subscriber_hash"])
        if member is None:
            raise not_found()
        return member

    # ------------------------------------------------------------------ account and audiences

    def _root(self, request: httpx.Request, _: Mapping[str, str]) -> Answer:
        body = {
            "account_id": short_id("account", self.ctx.seed),
            "account_name": "Example Shop",
            "email": "owner@shop.example",
            "role": "owner",
            "pricing_plan_type": "monthly",
            "account_timezone": "Europe/Berlin",
            "total_subscribers": self._live_count(),
            "_links": [],
        }
        return Answer(200, body)

    def _ping(self, request: httpx.Request, _: Mapping[str, str]) -> Answer:
        return Answer(200, {"health_status": "Everything's Chimpy!"})

    def _lists(self, request: httpx.Request, _: Mapping[str, str]) -> Answer:
        count, offset = paging(request)
        email = request.url.params.get("email")
        # ``email``: only the audiences that address is a (live) member of.
        member = self.data.find(email) if email else None
        audiences = [] if email and (member is None or member.status == "archived") else [self._list_payload()]
        page = audiences[offset : offset + count]
        return Answer(200, {"lists": page, "total_items": len(audiences), "_links": []}, len(page))

    def _list(self, request: httpx.Request, params: Mapping[str, str]) -> Answer:
        self._audience(params["list_id"])
        return Answer(200, self._list_payload(), 1)

    def _list_payload(self) -> dict[str, Any]:
        members = self.data.members.values()
        stats = {
            "member_count": sum(m.status == "subscribed" for m in members),
            "unsubscribe_count": sum(m.status == "unsubscribed" for m in members),
            "cleaned_count": sum(m.status == "cleaned" for m in members),
        }
        return dict(template("audience"), id=self.list_id, stats=stats)

    def _live_count(self) -> int:
        return sum(m.status != "archived" for m in self.data.members.values())

    def _merge_fields(self, request: httpx.Request, params: Mapping[str, str]) -> Answer:
        self._audience(params["list_id"])
        count, offset = paging(request)
        q = request.url.params
        fields = [self._merge_field_payload(f) for f in template("merge_fields")["merge_fields"]]
        if q.get("type"):
            fields = [f for f in fields if f["type"] == q["type"]]
        if "required" in q:
            fields = [f for f in fields if f["required"] == flag(q, "required")]
        page = fields[offset : offset + count]
        body = {"merge_fields": page, "list_id": self.list_id, "total_items": len(fields), "_links": []}
        return Answer(200, body, len(page))

    def _merge_field(self, request: httpx.Request, params: Mapping[str, str]) -> Answer:
        self._audience(params["list_id"])
        for merge_field in template("merge_fields")["merge_fields"]:
            if str(merge_field["merge_id"]) == params["merge_id"]:
                return Answer(200, self._merge_field_payload(merge_field), 1)
        raise not_found()

    def _merge_field_payload(self, merge_field: Mapping[str, Any]) -> dict[str, Any]:
        return dict(copy.deepcopy(dict(merge_field)), list_id=self.list_id)

    def _interest_categories(self, request: httpx.Request, params: Mapping[str, str]) -> Answer:
        # The audience has no groups: an empty listing, as Mailchimp answers for such an audience.
        self._audience(params["list_id"])
        paging(request)
        return Answer(200, {"categories": [], "list_id": self.list_id, "total_items": 0, "_links": []})

    def _interest_category(self, request: httpx.Request, params: Mapping[str, str]) -> Answer:
        self._audience(params["list_id"])
        raise not_found()

    # ------------------------------------------------------------------ members

    def _members(self, request: httpx.Request, params: Mapping[str, str]) -> Answer:
        list_id = params["list_id"]
        self._audience(list_id)
        q = request.url.params
        count, offset = paging(request)
        status = choice(q, "status", _MEMBER_STATUSES)
        sort_field = choice(q, "sort_field", ("timestamp_opt", "timestamp_signup", "last_changed"))
        sort_dir = choice(q, "sort_dir", ("ASC", "DESC")) or "ASC"
        since, before = query_time(q, "since_last_changed"), query_time(q, "before_last_changed")
        data = self.data
        # Archived members are only listed when asked for by status, as Mailchimp does.
        ids = data.changed_between(since, before, archived=status == "archived")
        members = [data.members[i] for i in ids]
        if status not in (None, "archived"):
            members = [m for m in members if m.status == status]
        listed = _member_filter(q)
        members = [m for m in members if listed(m)]
        if sort_field is None:
            members.sort(key=lambda m: m.order)
        elif sort_field != "last_changed":
            members.sort(key=lambda m: (_sort_value(m, sort_field), m.order))
        if sort_dir == "DESC":
            members.reverse()
        page = members[offset : offset + count]
        body = {
            "members": [data.member_payload(m) for m in page],
            "list_id": list_id,
            "total_items": len(members),
            "_links": [],
        }
        return Answer(200, body, len(page))

    def _member(self, request: httpx.Request, params: Mapping[str, str]) -> Answer:
        return Answer(200, self.data.member_payload(self._find_member(params)), 1)

    def _add_member(self, request: httpx.Request, params: Mapping[str, str]) -> Answer:
        self._audience(params["list_id"])
        member = writes.add_member(self.data, json_body(request), self._stamp())
        return Answer(200, self.data.member_payload(member), 1)

    def _put_member(self, request: httpx.Request, params: Mapping[str, str]) -> Answer:
        self._audience(params["list_id"])
        member = writes.upsert_member(self.data, params["subscriber_hash"], json_body(request), self._stamp())
        return Answer(200, self.data.member_payload(member), 1)

    def _patch_member(self, request: httpx.Request, params: Mapping[str, str]) -> Answer:
        self._audience(params["list_id"])
        member = writes.update_member(self.data, params["subscriber_hash"], json_body(request), self._stamp())
        return Answer(200, self.data.member_payload(member), 1)

    def _archive_member(self, request: httpx.Request, params: Mapping[str, str]) -> Answer:
        self.data.archive(self._find_member(params), self._stamp())
        return NO_CONTENT

    def _forget_member(self, request: httpx.Request, params: Mapping[str, str]) -> Answer:
        self.data.forget(self._find_member(params))
        return NO_CONTENT

    def _batch_subscribe(self, request: httpx.Request, params: Mapping[str, str]) -> Answer:
        self._audience(params["list_id"])
        body = writes.batch_subscribe(self.data, json_body(request), self._stamp())
        return Answer(200, body, body["total_created"] + body["total_updated"])

    def _member_tags(self, request: httpx.Request, params: Mapping[str, str]) -> Answer:
        member = self._find_member(params)
        count, offset = paging(request)
        tags = self.data.tags_of(member.id)
        page = [{"id": s.id, "name": s.name, "date_added": iso(s.added_at(member.id))} for s in tags][
            offset : offset + count
        ]
        return Answer(200, {"tags": page, "total_items": len(tags), "_links": []}, len(page))

    def _set_member_tags(self, request: httpx.Request, params: Mapping[str, str]) -> Answer:
        member = self._find_member(params)
        body = json_body(request)
        if "is_syncing" in body and not isinstance(body["is_syncing"], bool):
            raise invalid("is_syncing", "This value should be of type boolean.")
        writes.set_tags(self.data, member, body.get("tags"), self._stamp())
        return NO_CONTENT

    def _activity_feed(self, request: httpx.Request, params: Mapping[str, str]) -> Answer:
        member = self._find_member(params)
        count, offset = paging(request)
        wanted = choices(request.url.params, "activity_filters", _FEED_FILTERS)
        events = [e for e in writes.events_of(self.data, member) if wanted is None or e.action in wanted]
        page = [writes.feed_item(e) for e in events[offset : offset + count]]
        body = {"activity": page, "email_id": member.id, "list_id": self.list_id, "_links": []}
        return Answer(200, body, len(page))

    def _member_activity(self, request: httpx.Request, params: Mapping[str, str]) -> Answer:
        member = self._find_member(params)
        wanted = choices(request.url.params, "action", _ACTIVITY_ACTIONS)
        events = [e for e in writes.events_of(self.data, member) if wanted is None or e.action in wanted]
        items = [writes.activity_item(e) for e in events[:MEMBER_ACTIVITY_LIMIT]]
        body = {
            "activity": items,
            "email_id": member.id,
            "list_id": self.list_id,
            "contact_id": contact_id(member),
            "total_items": len(items),
            "_links": [],
        }
        return Answer(200, body, len(items))

    # ------------------------------------------------------------------ segments (tags)

    def _tag_search(self, request: httpx.Request, params: Mapping[str, str]) -> Answer:
        self._audience(params["list_id"])
        # Tag names ignore case in Mailchimp; the search matches any part of the name.
        name = (request.url.params.get("name") or "").casefold()
        tags = [
            {"id": s.id, "name": s.name}
            for s in sorted(self.data.segments.values(), key=lambda s: s.id)
            if name in s.name.casefold()
        ]
        return Answer(200, {"tags": tags, "total_items": len(tags)}, len(tags))

    def _segments(self, request: httpx.Request, params: Mapping[str, str]) -> Answer:
        list_id = params["list_id"]
        self._audience(list_id)
        count, offset = paging(request)
        q = request.url.params
        kind = choice(q, "type", ("saved", "static", "fuzzy"))
        bounds = {
            key: query_time(q, key)
            for key in ("since_created_at", "before_created_at", "since_updated_at", "before_updated_at")
        }
        segments = [
            s
            for s in sorted(self.data.segments.values(), key=lambda s: s.id)
            if kind in (None, "static")
            and _within(s.created_at, bounds, "created_at")
            and _within(s.updated_at, bounds, "updated_at")
        ]
        page = segments[offset : offset + count]
        body = {
            "segments": [self.data.segment_payload(s) for s in page],
            "list_id": list_id,
            "total_items": len(segments),
            "_links": [],
        }
        return Answer(200, body, len(page))

    def _segment(self, request: httpx.Request, params: Mapping[str, str]) -> Answer:
        self._audience(params["list_id"])
        return Answer(200, self.data.segment_payload(self._find_segment(params["segment_id"])), 1)

    def _segment_fields(self, body: Mapping[str, Any]) -> tuple[str, list[str] | None]:
        """The ``name`` and ``static_segment`` of a create or update body, validated."""
        name = body.get("name")
        if not isinstance(name, str) or not name.strip():
            raise invalid("name", "This value should not be blank.")
        emails = body.get("static_segment")
        if "options" in body and emails is None:
            raise Problem(400, "Only static segments (tags) can be created in this audience.")
        if emails is not None:
            emails = email_list(body, "static_segment")
        return name.strip(), emails

    def _fill(self, segment: Segment, emails: list[str], at: int) -> None:
        """Make a static segment hold exactly these addresses (those not in the audience are ignored)."""
        wanted = {m.id for m in map(self.data.find, emails) if m is not None and m.status != "archived"}
        for member_id in sorted(segment.members - wanted):
            self.data.untag(segment, member_id, at)
        for member_id in sorted(wanted):
            self.data.tag(segment, member_id, at)

    def _create_segment(self, request: httpx.Request, params: Mapping[str, str]) -> Answer:
        self._audience(params["list_id"])
        name, emails = self._segment_fields(json_body(request))
        if self.data.segment_by_name(name) is not None:
            raise Problem(400, f"A tag or segment named {name!r} already exists in this audience.")
        at = self._stamp()
        segment = self.data.new_segment(name, at)
        self._fill(segment, emails or [], at)
        return Answer(200, self.data.segment_payload(segment), 1)

    def _update_segment(self, request: httpx.Request, params: Mapping[str, str]) -> Answer:
        self._audience(params["list_id"])
        segment = self._find_segment(params["segment_id"])
        name, emails = self._segment_fields(json_body(request))
        other = self.data.segment_by_name(name)
        if other is not None and other is not segment:
            raise Problem(400, f"A tag or segment named {name!r} already exists in this audience.")
        at = self._stamp()
        if name != segment.name:
            segment.name, segment.updated_at = name, at
            self.data.version += 1
        if emails is not None:
            # Mailchimp: the array replaces the segment's members; an empty one empties it.
            self._fill(segment, emails, at)
        return Answer(200, self.data.segment_payload(segment), 1)

    def _delete_segment(self, request: httpx.Request, params: Mapping[str, str]) -> Answer:
        self._audience(params["list_id"])
        self.data.delete_segment(self._find_segment(params["segment_id"]))
        return NO_CONTENT

    def _batch_segment(self, request: httpx.Request, params: Mapping[str, str]) -> Answer:
        self._audience(params["list_id"])
        segment = self._find_segment(params["segment_id"])
        body = json_body(request)
        add, remove = email_list(body, "members_to_add"), email_list(body, "members_to_remove")
        cap = settings.SEGMENT_BATCH_LIMIT
        if len(add) > cap or len(remove) > cap:
            raise Problem(
                400,
                f"Maximum allowed member items exceeded, please provide at most {cap} items in "
                "members_to_add field or members_to_remove field",
            )
        at = self._stamp()
        added: list[Member] = []
        removed: list[Member] = []
        errors: dict[str, list[str]] = {}
        for emails, apply, done in ((add, self._add_to, added), (remove, self._remove_from, removed)):
            for email in emails:
                outcome = apply(segment, email, at)
                if isinstance(outcome, str):
                    errors.setdefault(outcome, []).append(email)
                elif outcome is not None:
                    done.append(outcome)
        payload = self.data.member_payload
        result = {
            "members_added": [payload(m) for m in added],
            "members_removed": [payload(m) for m in removed],
            "errors": [{"email_addresses": emails, "error": message} for message, emails in errors.items()],
            "total_added": len(added),
            "total_removed": len(removed),
            "error_count": sum(len(e) for e in errors.values()),
            "_links": [],
        }
        return Answer(200, result, len(added) + len(removed))

    def _add_to(self, segment: Segment, email: str, at: int) -> Member | str | None:
        """The member added, an error message, or None when Mailchimp ignores the address (not in the list)."""
        if not _EMAIL_RE.match(email.strip()):
            return _FAKE
        member = self.data.find(email)
        if member is None or member.status == "archived":
            return None
        if member.status in ("unsubscribed", "cleaned"):
            return _COMPLIANCE
        return member if self.data.tag(segment, member.id, at) else _ALREADY

    def _remove_from(self, segment: Segment, email: str, at: int) -> Member | str | None:
        member = self.data.find(email) if _EMAIL_RE.match(email.strip()) else None
        if member is None or member.status == "archived":
            return None
        return member if self.data.untag(segment, member.id, at) else _ABSENT

    def _segment_members(self, request: httpx.Request, params: Mapping[str, str]) -> Answer:
        self._audience(params["list_id"])
        segment = self._find_segment(params["segment_id"])
        count, offset = paging(request)
        q = request.url.params
        shown = {"subscribed", "pending"}
        for name, status in (
            ("include_cleaned", "cleaned"),
            ("include_unsubscribed", "unsubscribed"),
            ("include_transactional", "transactional"),
        ):
            if flag(q, name):
                shown.add(status)
        members = sorted((self.data.members[h] for h in segment.members), key=lambda m: m.order)
        members = [m for m in members if m.status in shown]
        page = members[offset : offset + count]
        body = {"members": [self.data.member_payload(m) for m in page], "total_items": len(members), "_links": []}
        return Answer(200, body, len(page))

    def _add_segment_member(self, request: httpx.Request, params: Mapping[str, str]) -> Answer:
        self._audience(params["list_id"])
        segment = self._find_segment(params["segment_id"])
        email = json_body(request).get("email_address")
        if not isinstance(email, str) or not email.strip():
            raise invalid("email_address", "This value should not be blank.")
        member = self.data.find(email.strip())
        if member is None or member.status == "archived":
            raise invalid("email_address", "This email address is not a member of this audience.")
        if member.status in ("unsubscribed", "cleaned"):
            raise Problem(400, _COMPLIANCE, title="Member In Compliance State")
        self.data.tag(segment, member.id, self._stamp())  # already in it: the same answer
        return Answer(200, self.data.member_payload(member), 1)

    def _remove_segment_member(self, request: httpx.Request, params: Mapping[str, str]) -> Answer:
        segment = self._find_segment(params["segment_id"])
        member = self._find_member(params)
        if not self.data.untag(segment, member.id, self._stamp()):
            raise not_found()
        return NO_CONTENT

    def _find_segment(self, segment_id: str) -> Segment:
        segment = self.data.segments.get(int(segment_id)) if segment_id.isdigit() else None
        if segment is None:
            raise not_found()
        return segment

    # ------------------------------------------------------------------ campaigns and reports

    def _campaigns(self, request: httpx.Request, _: Mapping[str, str]) -> Answer:
        q = request.url.params
        count, offset = paging(request)
        status = choice(q, "status", ("save", "paused", "schedule", "sending", "sent"))
        since, before = query_time(q, "since_send_time"), query_time(q, "before_send_time")
        list_id = q.get("list_id")
        campaigns = [
            c
            for c in self.data.campaigns
            if status in (None, "sent")
            and (since is None or c.send_time > since)
            and (before is None or c.send_time < before)
            and list_id in (None, self.list_id)
        ]
        if choice(q, "sort_dir", ("ASC", "DESC")) == "DESC":
            campaigns.reverse()
        page = campaigns[offset : offset + count]
        body = {"campaigns": [self.data.campaign_payload(c) for c in page], "total_items": len(campaigns), "_links": []}
        return Answer(200, body, len(page))

    def _campaign(self, request: httpx.Request, params: Mapping[str, str]) -> Answer:
        return Answer(200, self.data.campaign_payload(self._find_campaign(params["campaign_id"])), 1)

    def _email_activity(self, request: httpx.Request, params: Mapping[str, str]) -> Answer:
        campaign = self._find_campaign(params["campaign_id"])
        count, offset = paging(request)
        since = query_time(request.url.params, "since")
        rows = self._activity(campaign, since)
        page = rows[offset : offset + count]
        emails = [self._activity_entry(campaign, member_id, events) for member_id, events in page]
        body = {"emails": emails, "campaign_id": campaign.id, "total_items": len(rows), "_links": []}
        return Answer(200, body, len(page))

    def _member_email(self, request: httpx.Request, params: Mapping[str, str]) -> Answer:
        campaign = self._find_campaign(params["campaign_id"])
        member = self.data.find(params["subscriber_hash"])
        report = self.data.report(campaign)
        if member is None or member.id not in report.sent_to:
            raise not_found()
        since = query_time(request.url.params, "since")
        events = [e for e in report.events.get(member.id, []) if since is None or e[0] > since]
        return Answer(200, self._activity_entry(campaign, member.id, events), 1)

    def _activity(self, campaign: Campaign, since: int | None) -> list[tuple[str, list[Any]]]:
        """The report's rows: every recipient without ``since``; with it, those with activity after it.

        A permanently deleted member's rows are gone with it."""
        if self._cache_version != self.data.version:
            self._activity_cache, self._cache_version = {}, self.data.version
        key = (campaign.id, since)
        rows = self._activity_cache.get(key)
        if rows is None:
            report = self.data.report(campaign)
            known = self.data.members
            if since is None:
                rows = [(h, report.events.get(h, [])) for h in report.recipients if h in known]
            else:
                rows = []
                for member_id in report.active:
                    later = [e for e in report.events[member_id] if e[0] > since]
                    if later and member_id in known:
                        rows.append((member_id, later))
            self._activity_cache[key] = rows
        return rows

    def _activity_entry(self, campaign: Campaign, member_id: str, events: list[Any]) -> dict[str, Any]:
        member = self.data.members[member_id]
        activity = []
        for at, action, detail in events:
            item: dict[str, Any] = {"action": action, "timestamp": iso(at), "ip": f"192.0.2.{int(member_id[:2], 16)}"}
            if action == "click" and detail:
                item["url"] = detail
            if action == "bounce" and detail:
                item["type"] = detail
            activity.append(item)
        entry = dict(
            template("email_activity"),
            campaign_id=campaign.id,
            list_id=self.list_id,
            email_id=member_id,
            email_address=member.email,
            activity=activity,
        )
        entry["list_is_active"] = True
        return entry

    def _unsubscribed(self, request: httpx.Request, params: Mapping[str, str]) -> Answer:
        campaign = self._find_campaign(params["campaign_id"])
        count, offset = paging(request)
        rows = sorted(
            (u for u in self.data.report(campaign).unsubscribes if u[0] in self.data.members), key=lambda u: u[1]
        )
        page = rows[offset : offset + count]
        entries = [self._unsubscribe_entry(campaign, *row) for row in page]
        body = {"unsubscribes": entries, "campaign_id": campaign.id, "total_items": len(rows), "_links": []}
        return Answer(200, body, len(page))

    def _unsubscribe(self, request: httpx.Request, params: Mapping[str, str]) -> Answer:
        campaign = self._find_campaign(params["campaign_id"])
        member = self.data.find(params["subscriber_hash"])
        rows = [u for u in self.data.report(campaign).unsubscribes if member is not None and u[0] == member.id]
        if not rows:
            raise not_found()
        return Answer(200, self._unsubscribe_entry(campaign, *rows[0]), 1)

    def _unsubscribe_entry(self, campaign: Campaign, member_id: str, at: int, reason: str) -> dict[str, Any]:
        member = self.data.members[member_id]
        return dict(
            template("unsubscribe"),
            email_id=member_id,
            email_address=member.email,
            merge_fields={"FNAME": member.first_name, "LNAME": member.last_name},
            vip=member.vip,
            timestamp=iso(at),
            reason=reason,
            campaign_id=campaign.id,
            list_id=self.list_id,
        )

    def _find_campaign(self, campaign_id: str) -> Campaign:
        campaign = self.data.campaign(campaign_id)
        if campaign is None:
            raise not_found()
        return campaign

    def _stamp(self) -> int:
        return self.data.stamp(self.ctx.clock.now())


# ----------------------------------------------------------------------------------------------- helpers


def _sort_value(member: Member, sort_field: str) -> int:
    value = member.timestamp_opt if sort_field == "timestamp_opt" else member.timestamp_signup
    return value or 0


def _member_filter(q: httpx.QueryParams) -> Callable[[Member], bool]:
    """The members listing's other filters: ``email_type``, ``vip_only``, ``unique_email_id`` and the opt-in
    time window (parsed once, applied to every member)."""
    email_type, unique = q.get("email_type"), q.get("unique_email_id")
    vip_only = flag(q, "vip_only")
    since, before = query_time(q, "since_timestamp_opt"), query_time(q, "before_timestamp_opt")

    def listed(member: Member) -> bool:
        opt = member.timestamp_opt or 0
        return (
            (not email_type or member.email_type == email_type)
            and (not vip_only or member.vip)
            and (not unique or short_id("unique", member.id) == unique)
            and (since is None or opt > since)
            and (before is None or opt < before)
        )

    return listed


def _within(value: int, bounds: Mapping[str, int | None], name: str) -> bool:
    since, before = bounds[f"since_{name}"], bounds[f"before_{name}"]
    return (since is None or value > since) and (before is None or value < before)
