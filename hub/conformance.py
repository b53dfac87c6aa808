"""What a connector tells the shared conformance suite about itself.

Every connector registered in the ``hub.connectors`` entry-point group whose :class:`~hub.registry.ConnectorSpec`
has a ``conformance`` kit is run through the same trials: full and incremental syncs against the minimum request
count, ``kill -9`` at random instants then a resume, a fault matrix injected through its emulator, SIGTERM,
concurrent processes on one store, secrets that never leak, and the push side. The suite builds everything else
from the spec itself (the emulator, ``sandbox_entries``, ``sandbox_secrets``); the kit holds only what the
connector alone knows: how many requests a sync of a given account needs at least, which field of a record a
fault can break, and which configurations are worth trying.

A kit is plain data plus a few functions of the connector's own emulator; it imports nothing heavy, so the
registry can hand it out cheaply.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from hub.sandbox.business import Business

RequestCount = Callable[[Any, str], int]
"""``(emulator, variant) -> requests``: the fewest requests a correct sync of the emulator's account needs."""


@dataclass(frozen=True)
class Fault:
    """A field of a pulled record that a fault can break (a wrong type) or take away (a missing field).

    Args:
        field: the JSON key as it appears in the vendor's answer.
        value: the value a ``wrong_type`` fault writes in its place.
    """

    field: str
    value: Any = None


@dataclass(frozen=True)
class ConformanceKit:
    """What the conformance suite needs to know about one connector beyond its spec.

    Args:
        variants: source-entry overrides worth running, by name (``{"default": {}, "oauth": {...}}``); every
            trial runs on the first one, the kill trials on all of them.
        full_requests: the fewest requests a first sync of the emulator's account needs, per variant.
        incremental_requests: the fewest requests the sync right after a first one needs when nothing changed.
        record_path: path prefix of the requests that list records: where paging faults are injected.
        broken_record: a field whose wrong type makes a record unusable (it must be skipped and counted).
        optional_field: a field a record may lack (schema drift): the sync must go on without it.
        expiring_tokens: the variant whose access tokens expire and are refreshed, or None.
        polling: endpoint names whose requests wait for something (a bulk job's status): their number depends
            on how long the vendor takes, so the request counts leave them out.
        kill_points: labelled endpoint names (as the emulator counts them) to kill a sync at, besides random
            instants: ``{"bulk job running": "graphql BulkOperationStatus"}``; the value is matched as a prefix.
        index_lag_s: wall-clock seconds the emulator takes to show a change in incremental listings (a search
            index); the suite waits that long after mutating before an incremental sync.
        reread_limit: records a resumed sync may read again (one page per listing in flight), for the
            "at most one page re-read" check.
        delta_records: object types whose stored payload is the latest increment the vendor sent, not the
            whole object (Mailchimp's email activity since a time): an incremental sync and a fresh full one
            then differ in that payload while their activities agree, so only their ids are compared.
        contacts: people in the seeded business the suite runs on.
        speed: the sandbox clock's compression of the vendor's rate-limit windows.
        files: for a connector without an emulator: writes the business's data where it reads it and returns
            the source entry (``{"type": "csv", "files": [...]}``).
        secrets: secret references the variants use beyond the spec's ``sandbox_secrets``, with the values
            the emulator accepts (``{"env:HUBSPOT_SANDBOX_REFRESH_TOKEN": "..."}``).
    """

    variants: Mapping[str, Mapping[str, Any]] = field(default_factory=lambda: {"default": {}})
    full_requests: RequestCount | None = None
    incremental_requests: RequestCount | None = None
    record_path: str | None = None
    broken_record: Fault | None = None
    optional_field: str | None = None
    expiring_tokens: str | None = None
    polling: frozenset[str] = frozenset()
    kill_points: Mapping[str, str] = field(default_factory=dict)
    index_lag_s: float = 0.0
    reread_limit: int = 1000
    delta_records: frozenset[str] = frozenset()
    contacts: int = 300
    speed: float = 20.0
    files: Callable[[Path, Business], dict[str, Any]] | None = None
    secrets: Mapping[str, str] = field(default_factory=dict)
