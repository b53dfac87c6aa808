"""What a connector gives the core: Protocols for sources and sinks, and the plain data they exchange.

The core never imports a vendor module. A connector package exposes a :class:`hub.registry.ConnectorSpec`
through the ``hub.connectors`` entry-point group, and everything flows through the types below.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from enum import StrEnum
from typing import Any, Protocol, runtime_checkable


class Consent(StrEnum):
    """One consent status for every source's consent fields (email marketing and profiling)."""

    GRANTED = "granted"  # opted in / subscribed
    PENDING = "pending"  # double opt-in not confirmed yet
    DENIED = "denied"  # unsubscribed, opted out
    UNDELIVERABLE = "undeliverable"  # bounced / cleaned: never re-add
    OBJECTED = "objected"  # objected to profiling or direct marketing: exclude from scoring and segments
    UNKNOWN = "unknown"


@dataclass(frozen=True, slots=True)
class PersonData:
    """The person a source record describes, normalised by the connector.

    ``links`` holds explicit external-id links to other sources (``{"shopify": "123"}``), which identity
    resolution treats like a shared email.
    """

    email: str | None = None
    first_name: str | None = None
    last_name: str | None = None
    phone: str | None = None
    consent: Consent = Consent.UNKNOWN
    properties: Mapping[str, Any] = field(default_factory=dict)
    links: Mapping[str, str] = field(default_factory=dict)


class ActivityType(StrEnum):
    """The activity types the segmentation core knows; connectors may emit others (rules can still use them)."""

    ORDER = "order"
    EMAIL_OPEN = "email_open"
    EMAIL_CLICK = "email_click"
    EMAIL_BOUNCE = "email_bounce"
    EMAIL_UNSUBSCRIBE = "email_unsubscribe"
    SESSION = "session"
    PAGE_VIEW = "page_view"
    DEAL_WON = "deal_won"


# Order attributes every connector sets (booleans), so revenue features leave such orders out whatever the
# vendor's wording of the status.
ORDER_CANCELLED = "cancelled"
ORDER_REFUNDED = "refunded"
# A session's page count, when the source knows it.
SESSION_PAGE_VIEWS = "page_views"


@dataclass(frozen=True, slots=True)
class ActivityData:
    """Something a person did: an order, an email open, a web session, a won deal.

    ``external_id`` is unique per (source, type), so re-pulling the same activity never duplicates it.
    The person is named by the source's own person id (``person_external_id``) or, failing that, by email.
    """

    type: str
    external_id: str
    occurred_at: datetime
    amount: Decimal | None = None
    currency: str | None = None
    attributes: Mapping[str, Any] = field(default_factory=dict)
    person_external_id: str | None = None
    person_email: str | None = None


@dataclass(frozen=True, slots=True)
class Record:
    """One source object as pulled: the raw payload plus what the connector made of it.

    Args:
        object_type: the source's object kind ("contact", "order", "member", ...).
        external_id: the source's id for it, unique per (source, object_type).
        payload: the raw vendor payload, stored as is (without secrets).
        updated_at: the source's last-modified time, when it has one.
        deleted: the source reports the object as deleted/archived.
        person: set when the record describes a person.
        activities: activities carried by the record (an order is one; a member may carry engagement).
    """

    object_type: str
    external_id: str
    payload: Mapping[str, Any]
    updated_at: datetime | None = None
    deleted: bool = False
    person: PersonData | None = None
    activities: Sequence[ActivityData] = ()


@dataclass(slots=True)
class Page:
    """A batch of records and the stream state to store once they are committed.

    The store commits ``records`` and ``state`` in one transaction, so a crash resumes after the last page.
    ``skipped`` counts records the connector rejected (bad payload, bad row); ``errors`` holds a few of their
    messages (``file:line: what``) for the run report.
    """

    records: list[Record]
    state: Mapping[str, Any] | None
    skipped: int = 0
    errors: list[str] = field(default_factory=list)


@runtime_checkable
class Stream(Protocol):
    """One kind of object a source pulls, resumable from a stored state."""

    name: str

    def read(self, state: Mapping[str, Any] | None, *, full: bool = False) -> Iterator[Page]:
        """Yield pages after ``state`` (from the beginning when ``state`` is None or ``full``)."""
        ...


@runtime_checkable
class Source(Protocol):
    """A configured source instance (one account of one vendor)."""

    name: str

    def streams(self) -> Sequence[Stream]:
        """The streams to sync, in order."""
        ...

    def check(self) -> None:
        """Test the connection and credentials; raise ConfigError or TransientError."""
        ...

    def close(self) -> None:
        """Release clients and files."""
        ...


class TagOp(StrEnum):
    ADD = "add"
    REMOVE = "remove"


@dataclass(frozen=True, slots=True)
class TagChange:
    """One tag to add to or remove from one person in one destination.

    ``tag`` is the full tag as the destination shows it (the namespace prefix included). ``remote_id`` is the
    destination's id of the contact (HubSpot record id, Shopify customer GID, Mailchimp subscriber hash, ...),
    found by the push engine through :meth:`Sink.lookup` or a linked source's identities.
    """

    op: TagOp
    tag: str
    person_id: int
    email: str | None
    remote_id: str | None = None


@dataclass(frozen=True, slots=True)
class RemoteContact:
    """A contact as a destination knows it: its id there, its email, its tags and its subscription state.

    Args:
        remote_id: the destination's id of the contact (what :class:`TagChange` ``remote_id`` carries).
        email: the contact's email as the destination has it.
        tags: the contact's tags (all of them, the hub's and everyone else's; the engine filters by prefix).
        status: a state that forbids tagging (``unsubscribed``, ``cleaned``, ``archived``, ...), or None.
    """

    remote_id: str
    email: str | None
    tags: frozenset[str] = frozenset()
    status: str | None = None


class Outcome(StrEnum):
    ACKNOWLEDGED = "acknowledged"
    RETRY = "retry"  # transient: try again in a later run, with backoff
    SKIPPED = "skipped"  # permanent: invalid email, not found, compliance state


@dataclass(frozen=True, slots=True)
class TagResult:
    """What the destination said about one TagChange."""

    change: TagChange
    outcome: Outcome
    reason: str | None = None


@runtime_checkable
class Sink(Protocol):
    """A configured destination that applies tag changes in the vendor's batch sizes.

    The push engine decides *what* changes (diff against its ledger, ownership, consent, guards); a sink only
    talks to the vendor, as few calls as the vendor allows, and reports per record what happened.

    Attributes:
        name: the destination entry's name.
        batch_limits: the vendor's documented per-call limits by call kind (``{"tags_add": 100, ...}``), so the
            engine can report the minimum number of calls a plan needs.
    """

    name: str
    batch_limits: Mapping[str, int]

    def lookup(self, emails: Sequence[str]) -> dict[str, RemoteContact]:
        """The destination's contacts for these normalized emails (missing ones are simply absent)."""
        ...

    def read_tags(self, prefix: str) -> Iterator[RemoteContact]:
        """Every contact holding at least one tag starting with ``prefix`` (to reconcile a lost ledger)."""
        ...

    def ensure_tags(self, tags: Sequence[str]) -> None:
        """Create what the vendor needs before a tag can be used (a static segment, a property option)."""
        ...

    def apply(self, changes: Sequence[TagChange]) -> list[TagResult]:
        """Apply the changes; return one result per change, in any order.

        Per-record failures are results (RETRY for transient ones, SKIPPED with the vendor's reason for
        permanent ones), never exceptions; a failed record never blocks the rest of its batch, and a record
        is ACKNOWLEDGED only when the vendor confirmed it. Bad credentials raise ConfigError.
        """
        ...

    def close(self) -> None:
        """Release clients."""
        ...
