"""Fixtures: the HubSpot emulator in-process behind a Sandbox, a recorder of every exchange (contract-checked
when the test ends), and builders for sources and sinks wired to it through ``BuildContext.transports``."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from pydantic import SecretStr

from connectors.hubspot.config import HubSpotDestinationConfig, HubSpotSourceConfig
from connectors.hubspot.emulator import (
    SANDBOX_CLIENT_ID,
    SANDBOX_CLIENT_SECRET,
    SANDBOX_REFRESH_TOKEN,
    SANDBOX_TOKEN,
    HubSpotEmulator,
)
from connectors.hubspot.sink import HubSpotSink
from connectors.hubspot.source import HubSpotSource
from hub.http import RetryPolicy
from hub.registry import BuildContext
from hub.sandbox.business import Business
from tests.connectors.sandboxed import Sandboxed, rigs, sandboxed

from .contract import check_exchanges, specs_present

BASE_URL = "http://hubspot.sandbox"
SECRETS = {
    "env:HUBSPOT_TOKEN": SANDBOX_TOKEN,
    "env:HUBSPOT_BAD_TOKEN": "pat-na1-wrong",
    "env:HUBSPOT_CLIENT_SECRET": SANDBOX_CLIENT_SECRET,
    "env:HUBSPOT_REFRESH": SANDBOX_REFRESH_TOKEN,
    "env:HUBSPOT_BAD_REFRESH": "not-a-refresh-token",
}
# Waits are recorded, not slept: a test sees a 429's Retry-After without spending it.
SLEPT: list[float] = []
FAST = RetryPolicy(initial_wait=0.001, max_wait=0.01, sleep=SLEPT.append)


@pytest.fixture(scope="session")
def business() -> Business:
    """A small business: about 440 HubSpot contacts (5 list pages) and 130 deals."""
    return Business.generate(600, seed=7)


@dataclass
class HubSpotRig(Sandboxed[HubSpotEmulator]):
    """The emulator, its sandbox, the recorded exchanges and a build context pointing at it."""

    ctx: BuildContext = field(default_factory=lambda: BuildContext(resolve_secret=_resolve))
    # Requests written by hand in a test (to probe the emulator) are not the connector's: only the emulator's
    # answers to them are contract-checked.
    check_requests: bool = True

    def source(self, **entry: Any) -> HubSpotSource:
        config = HubSpotSourceConfig.model_validate(
            {"type": "hubspot", "base_url": BASE_URL, "token": "env:HUBSPOT_TOKEN", **entry}
        )
        source: HubSpotSource = self.keep(HubSpotSource(config, "crm", self.ctx, retry=FAST, clock=self.time.datetime))
        return source

    def sink(self, **entry: Any) -> HubSpotSink:
        config = HubSpotDestinationConfig.model_validate(
            {"type": "hubspot", "base_url": BASE_URL, "token": "env:HUBSPOT_TOKEN", **entry}
        )
        sink: HubSpotSink = self.keep(HubSpotSink(config, "crm-tags", self.ctx, retry=FAST))
        return sink

    def fresh_context(self) -> BuildContext:
        """A new build context on the same sandbox (a new run: no shared pacer or token)."""
        self.ctx = _context(self.transport)
        return self.ctx


def _resolve(ref: str) -> SecretStr:
    return SecretStr(SECRETS[ref])


def _context(transport: httpx.BaseTransport) -> BuildContext:
    return BuildContext(resolve_secret=_resolve, transports={"hubspot": transport})


def make_rig(business: Business, *, speed: float = 50.0, direct: bool = False, **emulator: Any) -> HubSpotRig:
    emulator.setdefault("search_lag_s", 0.0)
    parts = sandboxed(lambda ctx: HubSpotEmulator(ctx, **emulator), business, speed=speed)
    return HubSpotRig(*parts, ctx=_context(parts[3]), check_requests=not direct)


def _contract_check(made: list[HubSpotRig]) -> None:
    if specs_present():
        for rig in made:
            check_exchanges(rig.exchanges, requests=rig.check_requests)


@pytest.fixture
def rig_factory(business: Business) -> Iterator[Callable[..., HubSpotRig]]:
    """Build rigs; every exchange they record is contract-checked when the test ends (if the specs exist)."""
    yield from rigs(lambda **options: make_rig(options.pop("business", business), **options), _contract_check)


@pytest.fixture
def rig(rig_factory: Callable[..., HubSpotRig]) -> HubSpotRig:
    """One rig on the shared small business."""
    return rig_factory()


OAUTH_ENTRY = {
    "token": None,
    "oauth": {
        "client_id": SANDBOX_CLIENT_ID,
        "client_secret": "env:HUBSPOT_CLIENT_SECRET",
        "refresh_token": "env:HUBSPOT_REFRESH",
    },
}
