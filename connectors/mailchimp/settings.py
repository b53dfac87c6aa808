"""Mailchimp Marketing API constants: limits, page sizes, the fields we ask for, and the stream table.

Only numbers and names live here; every URL and path is in :mod:`.client`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

import httpx

from hub.http import RetryPolicy

PAGE_SIZE = 1000
"""``count`` of a list call; Mailchimp answers 400 above 1000."""

MAX_CONNECTIONS = 10
"""Simultaneous connections Mailchimp allows per account; the 11th gets a 429."""

REQUESTS_PER_SECOND = 1000
"""No per-second limit is documented; this ceiling only keeps a runaway loop from hammering the API."""

SEGMENT_BATCH_LIMIT = 500
"""``members_to_add`` and ``members_to_remove`` each take at most 500 emails per call (400 above)."""

TAGS_LISTED_PER_MEMBER = 50
"""A member payload lists at most 50 of its tags (``tags_count`` has them all)."""

LOOKUP_BY_HASH_MAX = 25
"""Up to this many emails, a lookup reads members one by one; above it, a full audience scan may be cheaper."""

TIMEOUT = httpx.Timeout(120, connect=10)
"""Mailchimp cuts requests off after 120 s; large pages of 1000 members can take several seconds."""

RETRY = RetryPolicy()
"""429 (no Retry-After is sent), 5xx and transport errors: the core's policy."""

SLICE_MIN_PAGES = 4
"""A first sync splits an audience into parallel slices only when it has more than this many pages."""

TIE_OVERLAP = timedelta(seconds=1)
"""``last_changed`` and activity timestamps have second resolution: each keyset request reaches one second back
and drops what was already seen, whatever the server's notion of "since" (strictly after, or not)."""

MEMBER_FIELDS = (
    "members.id", "members.email_address", "members.unique_email_id", "members.contact_id", "members.full_name",
    "members.web_id", "members.email_type", "members.status", "members.unsubscribe_reason", "members.merge_fields",
    "members.stats", "members.ip_signup", "members.timestamp_signup", "members.ip_opt", "members.timestamp_opt",
    "members.member_rating", "members.last_changed", "members.language", "members.vip", "members.email_client",
    "members.location", "members.source", "members.tags_count", "members.tags", "members.list_id", "total_items",
)  # fmt: skip
"""What a members page asks for: everything the mapping uses, without ``_links``, interests and notes."""

LOOKUP_FIELDS = (
    "members.id", "members.email_address", "members.status", "members.tags", "members.list_id", "total_items",
)  # fmt: skip
"""What a lookup or a segment listing needs to know about a member."""

ACTIVITY_FIELDS = (
    "emails.email_id", "emails.email_address", "emails.list_id", "emails.campaign_id", "emails.activity",
    "total_items",
)  # fmt: skip
UNSUBSCRIBE_FIELDS = (
    "unsubscribes.email_id", "unsubscribes.email_address", "unsubscribes.list_id", "unsubscribes.campaign_id",
    "unsubscribes.timestamp", "unsubscribes.reason", "total_items",
)  # fmt: skip
CAMPAIGN_FIELDS = (
    "campaigns.id", "campaigns.web_id", "campaigns.type", "campaigns.status", "campaigns.send_time",
    "campaigns.emails_sent", "campaigns.recipients.list_id", "campaigns.settings.title",
    "campaigns.settings.subject_line", "total_items",
)  # fmt: skip
SEGMENT_FIELDS = ("segments.id", "segments.name", "segments.type", "segments.member_count", "total_items")

CONSENT_BY_STATUS = {
    "subscribed": "granted",
    "unsubscribed": "denied",
    "cleaned": "undeliverable",
    "pending": "pending",
    "transactional": "unknown",
    "archived": "unknown",
}
"""Member status -> :class:`hub.contracts.Consent` value."""

UNTAGGABLE_STATUSES = frozenset({"unsubscribed", "cleaned", "archived"})
"""Members the sink never adds a tag to: adding them to a segment could read as re-engaging them."""

LISTED_UNTAGGABLE = frozenset({"unsubscribed", "cleaned"})
"""The statuses the sink lists to find untaggable members (archived ones are ignored by Mailchimp anyway)."""

ACTIVITY_TYPES = {"open": "email_open", "click": "email_click", "bounce": "email_bounce"}
"""``emails[].activity[].action`` -> activity type; unsubscribes come from their own report."""


@dataclass(frozen=True, slots=True)
class StreamSpec:
    """One stream of the source.

    Args:
        name: the stream name (``streams:`` in the config, ``hub sync --stream``).
        object_types: the record kinds it writes.
        cursor: what its incremental state follows.
        description: one line for the README and ``hub check``.
    """

    name: str
    object_types: tuple[str, ...]
    cursor: str
    description: str


MEMBERS = StreamSpec(
    "members",
    ("member",),
    "last_changed (keyset, per audience; archived members on their own cursor)",
    "audience members with status, merge fields, tags, location, rating and stats; archived ones as deleted",
)
EMAIL_ACTIVITY = StreamSpec(
    "email_activity",
    ("email_activity", "unsubscribe"),
    "campaign send_time, then per campaign the last activity timestamp",
    "opens, clicks and bounces per campaign recipient, and unsubscribes per campaign",
)
STREAMS: tuple[StreamSpec, ...] = (MEMBERS, EMAIL_ACTIVITY)
STREAM_NAMES = tuple(s.name for s in STREAMS)
