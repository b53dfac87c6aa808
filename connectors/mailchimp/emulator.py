"""A stateful imitation of the Mailchimp Marketing API 3.0, for tests, ``hub demo`` and ``hub sandbox serve``.

What it imitates (each as Mailchimp documents it; see the README for where the spec and the live API part):

- auth: HTTP Basic with an API key, or an OAuth token (``Bearer``/``OAuth``); 401 problem+json otherwise; a
  key used against another data center's host (``us7.api.mailchimp.com`` with a ``-us21`` key) is refused;
- ``GET /oauth2/metadata`` (on any host) answering a bad token with **200** ``{"error": "invalid_token"}``;
- at most 10 simultaneous connections per account, 429 problem+json past it (``concurrent = True``: the
  Sandbox lets requests overlap, and each one holds its connection for a simulated latency);
- ``/ping``, ``/lists``, members (``status``, ``since_last_changed``/``before_last_changed``, sorting, archived
  members only with ``status=archived``, lookup by hash, email or contact id), campaigns, the email activity
  report (``since``: only recipients with activity after it) and the unsubscribe report;
- tags as static segments: list, create, batch add/remove (at most 500 per field, 400 past it), per-member
  ``errors`` (compliance state, invalid address, already/not in the segment), members of a segment;
- ``count`` (at most 1000) and ``offset`` paging with ``total_items`` and ``_links``; ``fields`` and
  ``exclude_fields``; problem+json errors with ``type``, ``title``, ``status``, ``detail``, ``instance``.

Paths are served at the root and under ``/3.0`` (the API's own prefix), so a client can use either base URL.
"""

from __future__ import annotations

import base64
import binascii
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
from .emulator_data import AudienceData, Campaign, Member, Segment, iso, short_id, template
from .paging import parse_time

"""The API key the sandbox accepts (a public test value, not a secret)."""
SANDBOX_OAUTH_TOKEN = "sandbox-oauth-token-c0ffee00c0ffee00"
"""The OAuth access token the sandbox accepts (a public test value, not a secret)."""
DATA_CENTER = "us21"

ERROR_DOCS = "https://mailchimp.com/developer/marketing/docs/errors/"
_TITLES = {
    400: "Invalid Resource",
    401: "API Key Invalid",
    403: "Forbidden",
    404: "Resource Not Found",
    405: "Method Not Allowed",
    429: "Too Many Requests",
    500: "Internal Server Error",
    502: "Bad Gateway",
    503: "Service Unavailable",
}
_EMAIL_RE = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")

_COMPLIANCE = (
    "Email address is in a compliance state due to unsubscribe, bounce, or compliance review and cannot be "
    "added to a segment."
)
_FAKE = "Email address looks fake or invalid, please enter a real email address."
_ALREADY = "Email address is already a member of this segment."
_ABSENT = "Email address is not a member of this segment."


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


class _Problem(Exception):
    def __init__(self, status: int, detail: str, *, errors: Sequence[Mapping[str, str]] = ()) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.errors = list(errors)


@dataclass
class _Answer:
    status: int
    body: Mapping[str, Any]
    items: int = 0
    problem: bool = False
    project: bool = True  # apply fields / exclude_fields


Handler = Callable[[httpx.Request, Mapping[str, str]], _Answer]


@dataclass
class _Route:
    method: str
    template: str
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
        return self._encode(request, self._problem(status, message))

    def endpoint_name(self, request: httpx.Request) -> str | None:
        """``GET /lists/{list_id}/members`` style names for ``/_sandbox/stats``."""
        path = _api_path(request)
        for route in self._routes:
            if route.pattern.fullmatch(path):
                return f"{request.method} {route.template}"
        return "GET /oauth2/metadata" if path == "/oauth2/metadata" else None

    def handle(self, request: httpx.Request) -> httpx.Response:
        """Answer one API request."""
        with self.connections.slot() as slot:
            if not slot.allowed:
                limit = self.connections.limit
                answer = self._problem(429, f"You have exceeded the limit of {limit} simultaneous connections.")
                return self._encode(request, answer)
            path = _api_path(request)
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
        table: list[tuple[str, str, Handler]] = [
            ("GET", "/", self._root),
            ("GET", "/ping", self._ping),
            ("GET", "/lists", self._lists),
            ("GET", "/lists/{list_id}", self._list),
            ("GET", "/lists/{list_id}/members", self._members),
            ("GET", "/lists/{list_id}/members/{subscriber_hash}", self._member),
            ("GET", "/lists/{list_id}/segments", self._segments),
            ("POST", "/lists/{list_id}/segments", self._create_segment),
            ("GET", "/lists/{list_id}/segments/{segment_id}", self._segment),
            ("POST", "/lists/{list_id}/segments/{segment_id}", self._batch_segment),
            ("GET", "/lists/{list_id}/segments/{segment_id}/members", self._segment_members),
            ("GET", "/campaigns", self._campaigns),
            ("GET", "/reports/{campaign_id}/email-activity", self._email_activity),
            ("GET", "/reports/{campaign_id}/unsubscribed", self._unsubscribed),
        ]
        routes = []
        for method, path, handler in table:
            regex = re.sub(r"\{(\w+)\}", r"(?P<\1>[^/]+)", path)
            routes.append(_Route(method, path, re.compile(regex), handler))
        return routes

    def _dispatch(self, request: httpx.Request, path: str) -> _Answer:
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
                except _Problem as problem:
                    return self._problem(problem.status, problem.detail, problem.errors)
        if allowed:
            return self._problem(405, "This method is not allowed on this resource.")
        return self._problem(404, "The requested resource could not be found.")

    def _problem(self, status: int, detail: str, errors: Sequence[Mapping[str, str]] = ()) -> _Answer:
        body: dict[str, Any] = {
            "type": ERROR_DOCS,
            "title": _TITLES.get(status, "Error"),
            "status": status,
            "detail": detail,
            "instance": str(uuid.UUID(int=self._rng.getrandbits(128), version=4)),
        }
        if errors:
            body["errors"] = list(errors)
        return _Answer(status, body, problem=True, project=False)

    def _encode(self, request: httpx.Request, answer: _Answer) -> httpx.Response:
        body = answer.body
        if answer.project and request.method == "GET":
            body = _project(body, request.url.params.get("fields"), request.url.params.get("exclude_fields"))
        kind = "application/problem+json" if answer.problem else "application/json; charset=utf-8"
        headers = {"Content-Type": kind, "Date": format_datetime(self.ctx.clock.now(), usegmt=True)}
        return httpx.Response(answer.status, headers=headers, content=json.dumps(body).encode())

    def _authenticate(self, request: httpx.Request) -> _Answer | None:
        scheme, _, value = request.headers.get("Authorization", "").partition(" ")
        wrong = "Your API key may be invalid, or you've attempted to access the wrong datacenter."
        if scheme.lower() == "basic":
            key = _basic_password(value)
            if key not in self._api_keys or not _same_dc(request, key.rpartition("-")[2]):
                return self._problem(401, wrong)
            return None
        if scheme.lower() in ("bearer", "oauth"):
            with self._lock:
                valid = value in self._tokens
            return None if valid and _same_dc(request, DATA_CENTER) else self._problem(401, wrong)
        return self._problem(401, "Your request did not include an API key.")

    def _metadata(self, request: httpx.Request) -> _Answer:
        scheme, _, value = request.headers.get("Authorization", "").partition(" ")
        with self._lock:
            valid = scheme.lower() in ("oauth", "bearer") and value in self._tokens
        if not valid:
            return _Answer(200, {"error": "invalid_token"}, project=False)  # Mailchimp's 200-with-error
        body = dict(template("oauth_metadata"), dc=DATA_CENTER, api_endpoint=f"https://{DATA_CENTER}.api.mailchimp.com")
        return _Answer(200, body, project=False)

    def _audience(self, list_id: str) -> None:
        if list_id != self.list_id:
            raise _Problem(404, "The requested resource could not be found.")

    # ------------------------------------------------------------------ account and audiences

    def _root(self, request: httpx.Request, _: Mapping[str, str]) -> _Answer:
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
        return _Answer(200, body)

    def _ping(self, request: httpx.Request, _: Mapping[str, str]) -> _Answer:
        return _Answer(200, {"health_status": "Everything's Chimpy!"})

    def _lists(self, request: httpx.Request, _: Mapping[str, str]) -> _Answer:
        count, offset = _paging(request)
        lists = [self._list_payload()][offset : offset + count]
        return _Answer(200, {"lists": lists, "total_items": 1, "_links": []}, len(lists))

    def _list(self, request: httpx.Request, params: Mapping[str, str]) -> _Answer:
        self._audience(params["list_id"])
        return _Answer(200, self._list_payload(), 1)

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

    # ------------------------------------------------------------------ members

    def _members(self, request: httpx.Request, params: Mapping[str, str]) -> _Answer:
        list_id = params["list_id"]
        self._audience(list_id)
        q = request.url.params
        count, offset = _paging(request)
        status = _choice(q, "status", ("subscribed", "unsubscribed", "cleaned", "pending", "transactional", "archived"))
        sort_field = _choice(q, "sort_field", ("timestamp_opt", "timestamp_signup", "last_changed"))
        sort_dir = _choice(q, "sort_dir", ("ASC", "DESC")) or "ASC"
        since, before = _time(q, "since_last_changed"), _time(q, "before_last_changed")
        data = self.data
        # Archived members are only listed when asked for by status, as Mailchimp does.
        ids = data.changed_between(since, before, archived=status == "archived")
        members = [data.members[i] for i in ids]
        if status not in (None, "archived"):
            members = [m for m in members if m.status == status]
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
        return _Answer(200, body, len(page))

    def _member(self, request: httpx.Request, params: Mapping[str, str]) -> _Answer:
        self._audience(params["list_id"])
        member = self.data.find(params["subscriber_hash"])
        if member is None:
            raise _Problem(404, "The requested resource could not be found.")
        return _Answer(200, self.data.member_payload(member), 1)

    # ------------------------------------------------------------------ segments (tags)

    def _segments(self, request: httpx.Request, params: Mapping[str, str]) -> _Answer:
        list_id = params["list_id"]
        self._audience(list_id)
        count, offset = _paging(request)
        kind = _choice(request.url.params, "type", ("saved", "static", "fuzzy"))
        segments = [s for s in sorted(self.data.segments.values(), key=lambda s: s.id) if kind in (None, "static")]
        page = segments[offset : offset + count]
        body = {
            "segments": [self.data.segment_payload(s) for s in page],
            "list_id": list_id,
            "total_items": len(segments),
            "_links": [],
        }
        return _Answer(200, body, len(page))

    def _segment(self, request: httpx.Request, params: Mapping[str, str]) -> _Answer:
        self._audience(params["list_id"])
        return _Answer(200, self.data.segment_payload(self._find_segment(params["segment_id"])), 1)

    def _create_segment(self, request: httpx.Request, params: Mapping[str, str]) -> _Answer:
        self._audience(params["list_id"])
        body = _json_body(request)
        name = body.get("name")
        if not isinstance(name, str) or not name.strip():
            raise _Problem(
                400,
                "The resource submitted could not be validated.",
                errors=[{"field": "name", "message": "This value should not be blank."}],
            )
        emails = body.get("static_segment")
        if "options" in body and emails is None:
            raise _Problem(400, "Only static segments (tags) can be created in this audience.")
        if not isinstance(emails, list | type(None)) or not all(isinstance(e, str) for e in emails or []):
            raise _Problem(
                400,
                "The resource submitted could not be validated.",
                errors=[{"field": "static_segment", "message": "Expected an array of emails."}],
            )
        if self.data.segment_by_name(name) is not None:
            raise _Problem(400, f"A tag or segment named {name!r} already exists in this audience.")
        segment = self.data.new_segment(name.strip(), self._stamp())
        for email in emails or []:
            member = self.data.find(email)
            if member is not None and member.status != "archived":
                segment.members.add(member.id)
        return _Answer(200, self.data.segment_payload(segment), 1)

    def _batch_segment(self, request: httpx.Request, params: Mapping[str, str]) -> _Answer:
        self._audience(params["list_id"])
        segment = self._find_segment(params["segment_id"])
        body = _json_body(request)
        add, remove = _emails(body, "members_to_add"), _emails(body, "members_to_remove")
        cap = settings.SEGMENT_BATCH_LIMIT
        if len(add) > cap or len(remove) > cap:
            raise _Problem(
                400,
                f"Maximum allowed member items exceeded, please provide at most {cap} items in "
                "members_to_add field or members_to_remove field",
            )
        added: list[Member] = []
        removed: list[Member] = []
        errors: dict[str, list[str]] = {}
        for email in add:
            outcome = self._add_to(segment, email)
            if isinstance(outcome, str):
                errors.setdefault(outcome, []).append(email)
            elif outcome is not None:
                added.append(outcome)
        for email in remove:
            outcome = self._remove_from(segment, email)
            if isinstance(outcome, str):
                errors.setdefault(outcome, []).append(email)
            elif outcome is not None:
                removed.append(outcome)
        if added or removed:
            segment.updated_at = self._stamp()
            self.data.version += 1
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
        return _Answer(200, result, len(added) + len(removed))

    def _add_to(self, segment: Segment, email: str) -> Member | str | None:
        """The member added, an error message, or None when Mailchimp ignores the address (not in the list)."""
        if not _EMAIL_RE.match(email.strip()):
            return _FAKE
        member = self.data.find(email)
        if member is None or member.status == "archived":
            return None
        if member.status in ("unsubscribed", "cleaned"):
            return _COMPLIANCE
        if member.id in segment.members:
            return _ALREADY
        segment.members.add(member.id)
        return member

    def _remove_from(self, segment: Segment, email: str) -> Member | str | None:
        member = self.data.find(email) if _EMAIL_RE.match(email.strip()) else None
        if member is None or member.status == "archived":
            return None
        if member.id not in segment.members:
            return _ABSENT
        segment.members.discard(member.id)
        return member

    def _segment_members(self, request: httpx.Request, params: Mapping[str, str]) -> _Answer:
        self._audience(params["list_id"])
        segment = self._find_segment(params["segment_id"])
        count, offset = _paging(request)
        q = request.url.params
        shown = {"subscribed", "pending"}
        for flag, status in (
            ("include_cleaned", "cleaned"),
            ("include_unsubscribed", "unsubscribed"),
            ("include_transactional", "transactional"),
        ):
            if q.get(flag, "false").lower() == "true":
                shown.add(status)
        members = sorted((self.data.members[h] for h in segment.members), key=lambda m: m.order)
        members = [m for m in members if m.status in shown]
        page = members[offset : offset + count]
        body = {"members": [self.data.member_payload(m) for m in page], "total_items": len(members), "_links": []}
        return _Answer(200, body, len(page))

    def _find_segment(self, segment_id: str) -> Segment:
        segment = self.data.segments.get(int(segment_id)) if segment_id.isdigit() else None
        if segment is None:
            raise _Problem(404, "The requested resource could not be found.")
        return segment

    # ------------------------------------------------------------------ campaigns and reports

    def _campaigns(self, request: httpx.Request, _: Mapping[str, str]) -> _Answer:
        q = request.url.params
        count, offset = _paging(request)
        status = _choice(q, "status", ("save", "paused", "schedule", "sending", "sent"))
        since, before = _time(q, "since_send_time"), _time(q, "before_send_time")
        list_id = q.get("list_id")
        campaigns = [
            c
            for c in self.data.campaigns
            if status in (None, "sent")
            and (since is None or c.send_time > since)
            and (before is None or c.send_time < before)
            and list_id in (None, self.list_id)
        ]
        if _choice(q, "sort_dir", ("ASC", "DESC")) == "DESC":
            campaigns.reverse()
        page = campaigns[offset : offset + count]
        body = {"campaigns": [self.data.campaign_payload(c) for c in page], "total_items": len(campaigns), "_links": []}
        return _Answer(200, body, len(page))

    def _email_activity(self, request: httpx.Request, params: Mapping[str, str]) -> _Answer:
        campaign = self._find_campaign(params["campaign_id"])
        count, offset = _paging(request)
        since = _time(request.url.params, "since")
        rows = self._activity(campaign, since)
        page = rows[offset : offset + count]
        emails = [self._activity_entry(campaign, member_id, events) for member_id, events in page]
        body = {"emails": emails, "campaign_id": campaign.id, "total_items": len(rows), "_links": []}
        return _Answer(200, body, len(page))

    def _activity(self, campaign: Campaign, since: int | None) -> list[tuple[str, list[Any]]]:
        """The report's rows: every recipient without ``since``; with it, those with activity after it."""
        if self._cache_version != self.data.version:
            self._activity_cache, self._cache_version = {}, self.data.version
        key = (campaign.id, since)
        rows = self._activity_cache.get(key)
        if rows is None:
            report = self.data.report(campaign)
            if since is None:
                rows = [(h, report.events.get(h, [])) for h in report.recipients]
            else:
                rows = []
                for member_id in report.active:
                    later = [e for e in report.events[member_id] if e[0] > since]
                    if later:
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

    def _unsubscribed(self, request: httpx.Request, params: Mapping[str, str]) -> _Answer:
        campaign = self._find_campaign(params["campaign_id"])
        count, offset = _paging(request)
        rows = sorted(self.data.report(campaign).unsubscribes, key=lambda u: u[1])
        page = rows[offset : offset + count]
        entries = []
        for member_id, at, reason in page:
            member = self.data.members[member_id]
            entries.append(
                dict(
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
            )
        body = {"unsubscribes": entries, "campaign_id": campaign.id, "total_items": len(rows), "_links": []}
        return _Answer(200, body, len(page))

    def _find_campaign(self, campaign_id: str) -> Campaign:
        campaign = self.data.campaign(campaign_id)
        if campaign is None:
            raise _Problem(404, "The requested resource could not be found.")
        return campaign

    def _stamp(self) -> int:
        return self.data.stamp(self.ctx.clock.now())


# ----------------------------------------------------------------------------------------------- helpers


def _api_path(request: httpx.Request) -> str:
    path = request.url.path
    if path == "/3.0" or path.startswith("/3.0/"):
        path = path[4:] or "/"
    return path.rstrip("/") or "/"


def _basic_password(value: str) -> str:
    try:
        decoded = base64.b64decode(value.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return ""
    return decoded.partition(":")[2]


def _same_dc(request: httpx.Request, dc: str) -> bool:
    """A key only works on its own data center's host (any other host: a sandbox or a proxy)."""
    host = request.url.host
    return not host.endswith(".api.mailchimp.com") or host.split(".", 1)[0] == dc


def _paging(request: httpx.Request) -> tuple[int, int]:
    q = request.url.params
    try:
        count = int(q.get("count", "10"))
        offset = int(q.get("offset", "0"))
    except ValueError:
        raise _Problem(
            400,
            "The resource submitted could not be validated.",
            errors=[{"field": "count", "message": "count and offset must be integers"}],
        ) from None
    if not 0 <= count <= settings.PAGE_SIZE or offset < 0:
        raise _Problem(
            400,
            "The resource submitted could not be validated.",
            errors=[{"field": "count", "message": f"count must be at most {settings.PAGE_SIZE}"}],
        )
    return count, offset


def _choice(q: httpx.QueryParams, name: str, allowed: Sequence[str]) -> str | None:
    value = q.get(name)
    if value is None or value == "":
        return None
    if value not in allowed:
        raise _Problem(
            400, f"{name} must be one of {', '.join(allowed)}.", errors=[{"field": name, "message": "invalid value"}]
        )
    return str(value)


def _time(q: httpx.QueryParams, name: str) -> int | None:
    value = q.get(name)
    if not value:
        return None
    parsed = parse_time(value.replace(" ", "+"))  # a '+' sent unencoded arrives as a space
    if parsed is None:
        raise _Problem(
            400,
            f"{name} must be an ISO 8601 time, like 2015-10-21T15:41:36+00:00.",
            errors=[{"field": name, "message": "invalid date"}],
        )
    return int(parsed.timestamp())


def _sort_value(member: Member, sort_field: str) -> int:
    value = member.timestamp_opt if sort_field == "timestamp_opt" else member.timestamp_signup
    return value or 0


def _json_body(request: httpx.Request) -> dict[str, Any]:
    try:
        body = json.loads(request.content or b"{}")
    except ValueError:
        raise _Problem(400, "We encountered an unspecified JSON parsing error.") from None
    if not isinstance(body, dict):
        raise _Problem(400, "The request body must be a JSON object.")
    return body


def _emails(body: Mapping[str, Any], key: str) -> list[str]:
    value = body.get(key, [])
    if not isinstance(value, list) or not all(isinstance(e, str) for e in value):
        raise _Problem(
            400,
            "The resource submitted could not be validated.",
            errors=[{"field": key, "message": "Expected an array of email addresses."}],
        )
    return value


def _tree(paths: str | None) -> dict[str, Any]:
    tree: dict[str, Any] = {}
    for path in (paths or "").split(","):
        node = tree
        for part in (p for p in path.strip().split(".") if p):
            node = node.setdefault(part, {})
    return tree


def _project(body: Mapping[str, Any], fields: str | None, exclude: str | None) -> Mapping[str, Any]:
    """``fields`` keeps only the named dot paths, ``exclude_fields`` drops them (lists apply to each item)."""
    out: Any = body
    keep = _tree(fields)
    if keep:
        out = _keep(out, keep)
    drop = _tree(exclude)
    if drop:
        out = _drop(out, drop)
    return out  # type: ignore[no-any-return]


def _keep(value: Any, tree: Mapping[str, Any]) -> Any:
    if not tree:
        return value
    if isinstance(value, list):
        return [_keep(v, tree) for v in value]
    if isinstance(value, dict):
        return {k: _keep(value[k], sub) for k, sub in tree.items() if k in value}
    return value


def _drop(value: Any, tree: Mapping[str, Any]) -> Any:
    if isinstance(value, list):
        return [_drop(v, tree) for v in value]
    if isinstance(value, dict):
        out = dict(value)
        for key, sub in tree.items():
            if key in out:
                if sub:
                    out[key] = _drop(out[key], sub)
                else:
                    del out[key]
        return out
    return value
