"""What a vendor emulator is, and what it is given.

An emulator is a plain class (no base class) that imitates one vendor's API statefully in memory: the
vendor's paths at the root, its payload shapes, pagination, auth errors, rate-limit headers and error bodies.
It satisfies the :class:`Emulator` Protocol and is wrapped by :class:`hub.sandbox.control.Sandbox`, which adds
the control endpoints (``/_sandbox/...``), statistics and fault injection, and is what tests, ``hub demo``
and ``hub sandbox serve`` actually call.

Concurrency: by default the Sandbox calls ``handle``, ``reset``, ``mutate`` and ``expire_tokens`` under one
lock, so an emulator need not be thread-safe. An emulator that must see simultaneous requests (Mailchimp's
limit of 10 connections) sets the class attribute ``concurrent = True``; it is then called without that lock
and guards its own state.

Optional hooks, looked up with ``getattr`` so that plain emulators need not define them:

- ``endpoint_name(request) -> str | None``: the name a request is counted under in ``/_sandbox/stats`` (for
  example a GraphQL operation). The default is the method plus the path with ids collapsed to ``{id}``. Name
  concrete resources, not templates: ``GET /crm/v3/objects/contacts`` apart from ``.../deals``.
- ``resource_name(request) -> str | None``: the concrete resource a request is about (``contacts``, ``deals``,
  ``members``, the root field of a GraphQL query), counted with its statuses under ``resources`` in
  ``/_sandbox/stats``, so a benchmark can tell contact requests from deal requests. Unnamed ones count as
  ``other``.
- ``error_response(request, status, message) -> httpx.Response``: the vendor-shaped error body the Sandbox
  uses for injected 429 and 5xx faults (HubSpot's ``Error`` object, Mailchimp's problem+json, ...).

Links an emulator puts in payloads (next-page links, bulk result URLs) should be built from ``request.url``,
so they are right both in-process (whatever base URL the client used) and behind the HTTP server.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Protocol, runtime_checkable

if TYPE_CHECKING:
    import httpx

    from hub.sandbox.business import Business


@dataclass(frozen=True)
class SandboxClock:
    """The clock emulators and their rate limiters run on, compressed by ``speed``.

    Rate limits are written in the vendor's own units (100 requests per 10 s, 50 points per second) and
    measured on :meth:`monotonic`, which runs ``speed`` times faster than real time: at speed 10 a 10-second
    window lasts one real second. Durations and rates reported to clients (``Retry-After``, window lengths,
    restore rates) must go through :meth:`real` and :meth:`rate`, so a client pacing on the headers runs at
    the compressed speed too.

    Args:
        speed: compression factor (> 0); 1 is the vendor's real time.
        monotonic_fn: the underlying monotonic clock in real seconds (inject a fake one in tests).
        time_fn: wall-clock seconds since the epoch, for record timestamps.
        sleep_fn: real sleep.
    """

    speed: float = 1.0
    monotonic_fn: Callable[[], float] = time.monotonic
    time_fn: Callable[[], float] = time.time
    sleep_fn: Callable[[float], None] = time.sleep

    def __post_init__(self) -> None:
        if not self.speed > 0:
            raise ValueError(f"speed must be > 0, got {self.speed}")

    def monotonic(self) -> float:
        """Vendor seconds: real monotonic seconds times ``speed``."""
        return self.monotonic_fn() * self.speed

    def real(self, vendor_seconds: float) -> float:
        """A vendor duration expressed in the client's (real) seconds."""
        return vendor_seconds / self.speed

    def rate(self, per_vendor_second: float) -> float:
        """A vendor rate (per second) expressed per real second."""
        return per_vendor_second * self.speed

    def now(self) -> datetime:
        """Wall-clock time (UTC, not compressed): the stamp for records changed while the sandbox runs."""
        return datetime.fromtimestamp(self.time_fn(), UTC)

    def sleep(self, vendor_seconds: float) -> None:
        """Sleep a vendor duration (``vendor_seconds / speed`` real seconds)."""
        if vendor_seconds > 0:
            self.sleep_fn(self.real(vendor_seconds))


@dataclass(frozen=True)
class EmulatorContext:
    """What every emulator is built from.

    Args:
        business: the seeded synthetic business shared by all emulators (immutable; copy what you mutate).
        speed: rate-limit compression factor (also ``clock.speed``).
        clock: the compressed clock; rate limiters in :mod:`hub.sandbox.ratelimit` take it.
        seed: seed for the emulator's own randomness (token values, correlation ids); defaults to the
            business's seed.
    """

    business: Business
    speed: float = 1.0
    clock: SandboxClock = field(default_factory=SandboxClock)
    seed: int = 42

    def __post_init__(self) -> None:
        # ``EmulatorContext(business, speed=10)`` must compress time too: derive the clock from ``speed``.
        if self.clock.speed != self.speed:
            if self.clock.speed != 1.0:
                raise ValueError(f"speed {self.speed} disagrees with clock.speed {self.clock.speed}")
            object.__setattr__(self, "clock", replace(self.clock, speed=self.speed))

    @classmethod
    def create(
        cls,
        business: Business,
        *,
        speed: float = 1.0,
        clock: SandboxClock | None = None,
        seed: int | None = None,
    ) -> EmulatorContext:
        """A context whose clock honours ``speed``.

        Args:
            business: the seeded business.
            speed: rate-limit compression factor.
            clock: a clock to use instead (its speed wins); for tests with a fake time source.
            seed: the emulator's own seed; default ``business.seed``.
        """
        clock = clock or SandboxClock(speed=speed)
        seed = business.seed if seed is None else seed
        return cls(business=business, speed=clock.speed, clock=clock, seed=seed)

    def rng(self, salt: str = "") -> random.Random:
        """A deterministic random generator for this context, salted (e.g. with the vendor name)."""
        return random.Random(f"{self.seed}:{salt}")


@runtime_checkable
class Emulator(Protocol):
    """A stateful in-memory imitation of one vendor API.

    Attributes:
        vendor: the connector type it emulates ("hubspot", "shopify", ...).
    """

    vendor: str

    def handle(self, request: httpx.Request) -> httpx.Response:
        """Answer one request to the vendor's API (vendor paths at the root of ``request.url``)."""
        ...

    def reset(self) -> None:
        """Go back to the seeded state: data, issued tokens and rate-limit counters."""
        ...

    def mutate(self, fraction: float, delete_fraction: float, rng: random.Random) -> dict[str, int]:
        """Change and delete a share of records, for incremental-sync tests.

        Changed records get a new ``updated`` time (``clock.now()``, kept after their previous one); deleted
        ones are archived or removed the way the vendor does it.

        Args:
            fraction: share of records (per object type) to change, in [0, 1].
            delete_fraction: share of records to delete, in [0, 1].
            rng: the random source choosing the records (seeded by the caller).

        Returns:
            Counts of what was done, e.g. ``{"contacts_changed": 20, "contacts_deleted": 2}``.
        """
        ...

    def expire_tokens(self) -> None:
        """Invalidate every OAuth access token issued so far (refresh tokens stay valid)."""
        ...
