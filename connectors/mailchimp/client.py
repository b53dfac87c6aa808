"""The Mailchimp Marketing API client: the only module that knows a Mailchimp URL.

Auth modes:

- API key: HTTP Basic with any user name and the key as password. The data center is the key's suffix
  (``...-us21`` -> ``https://us21.api.mailchimp.com/3.0``).
- OAuth 2 token: ``Authorization: Bearer``. The data center comes from ``GET
  https://login.mailchimp.com/oauth2/metadata`` (``Authorization: OAuth <token>``), looked up on first use.
  That endpoint answers a bad token with **200** and ``{"error": "invalid_token"}``: a ConfigError here.

A ``base_url`` in the config replaces the API root (a sandbox, a proxy); the metadata lookup then goes to
``{base_url}/oauth2/metadata``. Every request goes through :mod:`hub.http` (retry, pacing, logging, error
mapping) with the account's shared pacer, which holds at most ``connections`` requests in flight.
"""

from __future__ import annotations

import hashlib
import logging
import re
import threading
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any, Literal

import httpx
from pydantic import SecretStr

from hub.errors import ConfigError, HubError, TransientError
from hub.http import (
    NO_RETRY,
    BasicAuth,
    BearerAuth,
    HttpClient,
    NotFoundError,
    OffsetPaginator,
    Pacer,
    Paginator,
    RetryPolicy,
    WindowLimit,
    make_client,
    paginate,
)

from . import settings

logger = logging.getLogger(__name__)

API_ROOT = "https://{dc}.api.mailchimp.com/3.0"
LOGIN_ROOT = "https://login.mailchimp.com"
METADATA_PATH = "/oauth2/metadata"

PING = "/ping"
LISTS = "/lists"
LIST = "/lists/{list_id}"
MEMBERS = "/lists/{list_id}/members"
MEMBER = "/lists/{list_id}/members/{subscriber_hash}"
SEGMENTS = "/lists/{list_id}/segments"
SEGMENT = "/lists/{list_id}/segments/{segment_id}"
SEGMENT_MEMBERS = "/lists/{list_id}/segments/{segment_id}/members"
CAMPAIGNS = "/campaigns"
EMAIL_ACTIVITY = "/reports/{campaign_id}/email-activity"
UNSUBSCRIBED = "/reports/{campaign_id}/unsubscribed"

_KEY_RE = re.compile(r"^\S+-(?P<dc>[a-z]{2,}[0-9]+)$")
_DC_RE = re.compile(r"^[a-z]{2,}[0-9]+$")
_USER = "audience-hub"  # Basic auth wants a user name; Mailchimp ignores it


@dataclass(frozen=True)
class Credentials:
    """The resolved credential of an entry (never logged: both forms are registered for redaction)."""

    kind: Literal["api_key", "oauth"]
    secret: SecretStr

    def account_key(self, base_url: str | None) -> str:
        """A key naming the account in ``BuildContext.shared`` without holding the secret itself."""
        digest = hashlib.sha256(self.secret.get_secret_value().encode()).hexdigest()[:16]
        return f"mailchimp:{base_url or '-'}:{digest}"


def data_center(api_key: SecretStr) -> str:
    """The data center an API key belongs to (``us21`` for ``...-us21``).

    Raises:
        ConfigError: the key has no data-center suffix (the message never shows the key).
    """
    match = _KEY_RE.match(api_key.get_secret_value().strip())
    if match is None:
        raise ConfigError(
            "the Mailchimp API key has no data-center suffix (it ends in something like -us21); "
            "copy the whole key from Profile > Extras > API keys"
        )
    return match.group("dc")


def server_time(response: httpx.Response) -> datetime | None:
    """The server's clock from the ``Date`` header, when it sent one."""
    value = response.headers.get("Date")
    if not value:
        return None
    try:
        return parsedate_to_datetime(value).astimezone(UTC)
    except (TypeError, ValueError, IndexError):
        return None


def account_pacer(connections: int) -> Pacer:
    """The pacer of one account: at most ``connections`` requests in flight (Mailchimp: 10)."""
    return Pacer.single(WindowLimit(settings.REQUESTS_PER_SECOND, 1.0), max_concurrent=connections)


def _metadata_override(response: httpx.Response) -> HubError | None:
    """Mailchimp's metadata endpoint says "bad token" with a 200 and an ``error`` field."""
    if response.status_code != 200:
        return None
    try:
        body = response.json()
    except ValueError:
        return TransientError("Mailchimp's OAuth metadata answer is not JSON")
    if isinstance(body, Mapping) and body.get("error"):
        return ConfigError(f"Mailchimp rejected the OAuth access token ({body.get('error')}); authorize the app again")
    return None


class MailchimpClient:
    """Typed calls to the Marketing API for one account; thread-safe (streams call it from worker threads).

    Args:
        credentials: the entry's API key or OAuth token.
        base_url: the config's ``base_url`` override, or None for Mailchimp itself.
        pacer: the account's shared pacer.
        transport: an in-process transport (sandbox) instead of the network.
        retry: the retry policy (default :data:`settings.RETRY`).
    """

    def __init__(
        self,
        credentials: Credentials,
        *,
        base_url: str | None = None,
        pacer: Pacer | None = None,
        transport: httpx.BaseTransport | None = None,
        retry: RetryPolicy | None = None,
    ) -> None:
        self._credentials = credentials
        self._base_url = base_url.rstrip("/") if base_url else None
        self._pacer = pacer
        self._transport = transport
        self._retry = retry or settings.RETRY
        self._lock = threading.Lock()
        self._http: HttpClient | None = None
        if credentials.kind == "api_key":
            # No network needed: build at once, so a key without a data center fails when the entry is built.
            self._http = self._api_client(self._base_url or API_ROOT.format(dc=data_center(credentials.secret)))

    # ------------------------------------------------------------------ plumbing

    @property
    def http(self) -> HttpClient:
        """The API client (for OAuth, built after the data-center lookup on first use)."""
        with self._lock:
            if self._http is None:
                self._http = self._api_client(self._base_url or self._oauth_root())
            return self._http

    def stats(self) -> dict[str, int]:
        """Request counters of the API client (zeros before the first request)."""
        return self._http.stats() if self._http is not None else {}

    def close(self) -> None:
        """Close the underlying connections."""
        with self._lock:
            if self._http is not None:
                self._http.close()

    def _api_client(self, root: str) -> HttpClient:
        secret = self._credentials.secret
        auth: httpx.Auth = BasicAuth(_USER, secret) if self._credentials.kind == "api_key" else BearerAuth(secret)
        return make_client(
            root, auth=auth, timeout=settings.TIMEOUT, transport=self._transport, pacer=self._pacer, retry=self._retry
        )

    def _oauth_root(self) -> str:
        with make_client(
            self._base_url or LOGIN_ROOT,
            auth=BearerAuth(self._credentials.secret, scheme="OAuth"),
            timeout=settings.TIMEOUT,
            transport=self._transport,
            retry=self._retry,
            status_override=_metadata_override,
        ) as meta:
            body = meta.get(METADATA_PATH, expect_json=True).json()
        dc = body.get("dc") if isinstance(body, Mapping) else None
        if not isinstance(dc, str) or not _DC_RE.match(dc):
            raise ConfigError("Mailchimp's OAuth metadata named no data center for this token")
        logger.info("mailchimp: the OAuth token belongs to data center %s", dc)
        return API_ROOT.format(dc=dc)

    def _get(self, path: str, **params: Any) -> dict[str, Any]:
        body = self.http.get(path, params=_params(params), expect_json=True).json()
        if not isinstance(body, dict):
            raise TransientError(f"GET {path}: the answer is not a JSON object")
        return body

    def pages(self, path: str, paginator: Paginator, **params: Any) -> Iterator[httpx.Response]:
        """Every page of a listing, through the core ``paginate`` (the paginator may be resumed)."""
        return paginate(self.http, "GET", path, paginator, params=_params(params))

    # ------------------------------------------------------------------ account and audiences

    def ping(self) -> None:
        """Check the credentials (``GET /ping``)."""
        self._get(PING)

    def audiences(self) -> list[dict[str, Any]]:
        """Every audience of the account: ``[{id, name}, ...]``."""
        body = self._get(LISTS, count=1000, fields="lists.id,lists.name,total_items")
        lists = body.get("lists")
        return [x for x in lists if isinstance(x, dict)] if isinstance(lists, list) else []

    def audience(self, list_id: str) -> dict[str, Any]:
        """One audience (``{id, name}``).

        Raises:
            ConfigError: there is no such audience in this account.
        """
        try:
            return self._get(LIST.format(list_id=list_id), fields="id,name")
        except NotFoundError:
            raise ConfigError(f"no Mailchimp audience {list_id!r} in this account (check list_ids)") from None

    # ------------------------------------------------------------------ members

    def members_path(self, list_id: str) -> str:
        """The path of an audience's member listing (for :meth:`pages`)."""
        return MEMBERS.format(list_id=list_id)

    def member_probe(self, list_id: str, offset: int, *, status: str | None = None) -> dict[str, Any]:
        """One member at ``offset`` in ``last_changed`` order, plus ``total_items`` (for slicing a backfill)."""
        params = {
            "count": 1,
            "offset": offset,
            "sort_field": "last_changed",
            "sort_dir": "ASC",
            "fields": "members.id,members.last_changed,total_items",
            "status": status,
        }
        return self._get(MEMBERS.format(list_id=list_id), **params)

    def member(self, list_id: str, subscriber_hash: str) -> dict[str, Any] | None:
        """One member by subscriber hash, or None when the audience has none."""
        path = MEMBER.format(list_id=list_id, subscriber_hash=subscriber_hash)
        response = self.http.get(
            path,
            params={"fields": ",".join(_strip(settings.LOOKUP_FIELDS, "members."))},
            allow_statuses={404},
            expect_json=True,
        )
        if response.status_code == 404:
            return None
        body = response.json()
        return body if isinstance(body, dict) else None

    def member_count(self, list_id: str) -> int:
        """Members of an audience (archived ones are not counted, as Mailchimp counts)."""
        total = self._get(MEMBERS.format(list_id=list_id), count=1, fields="total_items").get("total_items")
        return total if isinstance(total, int) else 0

    def members_page(self, list_id: str, offset: int, count: int, *, status: str | None = None) -> dict[str, Any]:
        """One page of a plain scan (lookup fields only), of every member or of one status."""
        return self._get(
            MEMBERS.format(list_id=list_id),
            count=count,
            offset=offset,
            status=status,
            fields=",".join(settings.LOOKUP_FIELDS),
        )

    # ------------------------------------------------------------------ campaigns and reports

    def campaigns_path(self) -> str:
        """The path of the campaign listing (for :meth:`pages`)."""
        return CAMPAIGNS

    def email_activity_path(self, campaign_id: str) -> str:
        """The path of a campaign's email activity report (for :meth:`pages`)."""
        return EMAIL_ACTIVITY.format(campaign_id=campaign_id)

    def unsubscribed_path(self, campaign_id: str) -> str:
        """The path of a campaign's unsubscribe report (for :meth:`pages`)."""
        return UNSUBSCRIBED.format(campaign_id=campaign_id)

    # ------------------------------------------------------------------ static segments (tags)

    def segments(self, list_id: str) -> list[dict[str, Any]]:
        """Every static segment (tag) of an audience."""
        out: list[dict[str, Any]] = []
        pager = OffsetPaginator(
            settings.PAGE_SIZE, limit_param="count", records_path="segments", total_path="total_items"
        )
        for response in self.pages(
            SEGMENTS.format(list_id=list_id), pager, type="static", fields=",".join(settings.SEGMENT_FIELDS)
        ):
            items = response.json().get("segments")
            out.extend(x for x in items or [] if isinstance(x, dict))
        return out

    def create_segment(self, list_id: str, name: str) -> dict[str, Any]:
        """Create an empty static segment (a tag). Not retried: a retry could create it twice."""
        body = self.http.post(
            SEGMENTS.format(list_id=list_id),
            json={"name": name, "static_segment": []},
            retry=NO_RETRY,
            expect_json=True,
        ).json()
        if not isinstance(body, dict) or not isinstance(body.get("id"), int):
            raise TransientError("creating a Mailchimp tag returned no segment id")
        return body

    def update_segment(
        self, list_id: str, segment_id: int, add: Sequence[str], remove: Sequence[str]
    ) -> dict[str, Any]:
        """Batch add and remove emails (at most 500 each) to a static segment; idempotent, so retried."""
        if len(add) > settings.SEGMENT_BATCH_LIMIT or len(remove) > settings.SEGMENT_BATCH_LIMIT:
            raise ValueError(f"at most {settings.SEGMENT_BATCH_LIMIT} members to add and to remove per call")
        payload: dict[str, list[str]] = {}
        if add:
            payload["members_to_add"] = list(add)
        if remove:
            payload["members_to_remove"] = list(remove)
        body = self.http.post(
            SEGMENT.format(list_id=list_id, segment_id=segment_id), json=payload, expect_json=True
        ).json()
        return body if isinstance(body, dict) else {}

    def segment_members_path(self, list_id: str, segment_id: int) -> str:
        """The path of a static segment's member listing (for :meth:`pages`)."""
        return SEGMENT_MEMBERS.format(list_id=list_id, segment_id=segment_id)


def _params(params: Mapping[str, Any]) -> dict[str, Any]:
    """Query parameters without the unset ones; booleans as Mailchimp writes them."""
    out: dict[str, Any] = {}
    for key, value in params.items():
        if value is None:
            continue
        out[key] = ("true" if value else "false") if isinstance(value, bool) else value
    return out


def _strip(fields: Sequence[str], prefix: str) -> list[str]:
    """Collection field names (``members.id``) as the single-resource call names them (``id``)."""
    return [f.removeprefix(prefix) for f in fields if f.startswith(prefix)]
