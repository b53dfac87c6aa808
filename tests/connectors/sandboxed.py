"""What every vendor's test rig is made of: its emulator in-process behind a Sandbox, on a clock the test
controls, with every exchange recorded (for the vendor's contract checks) and whatever it built closed at the end.

Each vendor's ``conftest.py`` adds its own builders (sources, sinks, raw calls) on top of :class:`Sandboxed`
and its own contract check of :attr:`Sandboxed.exchanges`.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

import httpx

from hub.sandbox.business import Business
from hub.sandbox.control import Hang, Sandbox
from hub.sandbox.emulator import Emulator, EmulatorContext, SandboxClock
from tests.contract.openapi import recorded
from tests.support import FakeTime

E = TypeVar("E")
Exchange = tuple[httpx.Request, httpx.Response]


@dataclass
class Sandboxed(Generic[E]):
    """An emulator behind a sandbox, the exchanges it answered, and the objects a test built on it.

    Attributes:
        emulator: the vendor emulator.
        sandbox: the Sandbox wrapping it (stats, faults).
        exchanges: every request and answer, in order.
        transport: an ``httpx.MockTransport`` that records, for clients and build contexts.
        time: the wall clock of record stamps, moved by hand.
        built: sources, sinks and clients to close when the test ends.
    """

    emulator: E
    sandbox: Sandbox
    exchanges: list[Exchange]
    transport: httpx.MockTransport
    time: FakeTime
    built: list[Any] = field(default_factory=list)

    def stats(self) -> dict[str, Any]:
        """The sandbox's counters."""
        return self.sandbox.stats()

    def calls(self, endpoint: str | None = None) -> int:
        """Requests the sandbox answered (to one endpoint, when named)."""
        stats = self.stats()
        return int(stats["requests"] if endpoint is None else stats["endpoints"].get(endpoint, 0))

    def clear_stats(self) -> None:
        """Zero the sandbox's counters."""
        self.sandbox.reset_stats()

    def keep(self, item: Any) -> Any:
        """Close ``item`` when the test ends; returns it."""
        self.built.append(item)
        return item

    def close(self) -> None:
        """Close everything built on the rig."""
        for item in self.built:
            item.close()
        self.built.clear()


def sandboxed(
    build: Callable[[EmulatorContext], E],
    business: Business,
    *,
    speed: float = 1.0,
    monotonic: Callable[[], float] | None = None,
) -> tuple[E, Sandbox, list[Exchange], httpx.MockTransport, FakeTime]:
    """A fresh emulator of ``business`` behind a sandbox that never sleeps, recording every exchange.

    Args:
        build: makes the emulator from its context (``lambda ctx: HubSpotEmulator(ctx, tier="pro")``).
        business: the seeded business.
        speed: the sandbox clock's compression of rate-limit windows.
        monotonic: a hand-moved monotonic clock instead of the real one.

    Returns:
        The parts of a :class:`Sandboxed`, in its field order.
    """
    time = FakeTime()
    clock = SandboxClock(speed=speed, time_fn=time, **({"monotonic_fn": monotonic} if monotonic else {}))
    emulator = build(EmulatorContext.create(business, clock=clock))
    sandbox = Sandbox(emulator, sleep=lambda _s: None)  # type: ignore[arg-type]
    handler, exchanges = recorded(sandbox)
    return emulator, sandbox, exchanges, httpx.MockTransport(handler), time


def rigs(make: Callable[..., Any], check: Callable[[list[Any]], None]) -> Iterator[Callable[..., Any]]:
    """The body of a vendor's ``rig_factory`` fixture: builds rigs with ``make``, and when the test ends closes
    what they built and runs the vendor's contract ``check`` over them."""
    made: list[Any] = []

    def build(**options: Any) -> Any:
        rig = make(**options)
        made.append(rig)
        return rig

    yield build
    for rig in made:
        rig.close()
    check(made)


class RecordingSandbox(Sandbox):
    """A sandbox that keeps every exchange it answered, for an emulator served over HTTP to a client the test does
    not control (a vendor's SDK): the server side of the calls, for the contract checks."""

    def __init__(self, emulator: Emulator) -> None:
        super().__init__(emulator, sleep=lambda _s: None)
        self.exchanges: list[Exchange] = []
        self._record_lock = threading.Lock()

    def dispatch(self, request: httpx.Request) -> httpx.Response | Hang:
        result = super().dispatch(request)
        if isinstance(result, httpx.Response):
            result.read()
            with self._record_lock:
                self.exchanges.append((request, result))
        return result
