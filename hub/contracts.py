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
    """One tag to add to or remove from one person in one destination."""

    op: TagOp
    tag: str
    person_id: int
    email: str | None
    remote_id: str | None = None


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
    """A configured destination that applies tag changes in the vendor's batch sizes."""

    name: str

    def apply(self, changes: Sequence[TagChange]) -> list[TagResult]:
        """Apply the changes; return one result per change, in any order."""
        ...

    def close(self) -> None:
        """Release clients."""
        ...
