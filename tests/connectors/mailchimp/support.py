"""Shared test helpers: a sandbox around the emulator, a rig recording every exchange, build contexts."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import httpx
from pydantic import SecretStr

from connectors.mailchimp import CONNECTOR
from connectors.mailchimp.config import MailchimpDestinationConfig, MailchimpSourceConfig
from connectors.mailchimp.emulator import SANDBOX_API_KEY, SANDBOX_OAUTH_TOKEN, Latency, MailchimpEmulator
from connectors.mailchimp.sink import MailchimpSink
from connectors.mailchimp.source import MailchimpSource
from hub.contracts import Page
from hub.errors import ConfigError
from hub.registry import BuildContext
from hub.sandbox.business import Business
from hub.sandbox.control import Sandbox
from hub.sandbox.emulator import EmulatorContext
from tests.connectors.sandboxed import Sandboxed
from tests.contract.openapi import recorded
from tests.support import FakeTime

WRONG_KEY = "deadbeefdeadbeefdeadbeefdeadbeef-us21"
OTHER_DC_KEY = "c0ffee00c0ffee00c0ffee00c0ffee00-us7"
SECRETS = {
    "env:MC_KEY": SANDBOX_API_KEY,
    "env:MC_WRONG": WRONG_KEY,
    "env:MC_TOKEN": SANDBOX_OAUTH_TOKEN,
    "env:MC_BAD_TOKEN": "not-a-token-at-all",
    "env:MC_NO_DC": "c0ffee00c0ffee00c0ffee00c0ffee00",
}


def resolve(ref: str) -> SecretStr:
    if ref not in SECRETS:
        raise ConfigError(f"unknown secret {ref}")
    return SecretStr(SECRETS[ref])


def make_sandbox(business: Business, *, latency: Latency = Latency(), speed: float = 1.0) -> Sandbox:
    """A Sandbox around a fresh emulator of ``business`` (no sleeping for injected delays)."""
    emulator = MailchimpEmulator(EmulatorContext.create(business, speed=speed), latency=latency)
    return Sandbox(emulator, sleep=lambda _s: None)


def emulator_of(sandbox: Sandbox) -> MailchimpEmulator:
    emulator = sandbox.emulator
    assert isinstance(emulator, MailchimpEmulator)
    return emulator


def context(handler: Callable[[httpx.Request], httpx.Response]) -> BuildContext:
    """A build context sending Mailchimp requests to ``handler`` in-process."""
    return BuildContext(resolve_secret=resolve, transports={"mailchimp": httpx.MockTransport(handler)})


def source_config(**entry: Any) -> MailchimpSourceConfig:
    return MailchimpSourceConfig.model_validate({"type": "mailchimp", "api_key": "env:MC_KEY", **entry})


def sink_config(list_id: str, **entry: Any) -> MailchimpDestinationConfig:
    return MailchimpDestinationConfig.model_validate(
        {"type": "mailchimp", "api_key": "env:MC_KEY", "list_id": list_id, **entry}
    )


def build_source(ctx: BuildContext, **entry: Any) -> MailchimpSource:
    assert CONNECTOR.build_source is not None
    source = CONNECTOR.build_source(source_config(**entry), "mc", ctx)
    assert isinstance(source, MailchimpSource)
    return source


def build_sink(ctx: BuildContext, list_id: str, **entry: Any) -> MailchimpSink:
    assert CONNECTOR.build_sink is not None
    sink = CONNECTOR.build_sink(sink_config(list_id, **entry), "mc-tags", ctx)
    assert isinstance(sink, MailchimpSink)
    return sink


@dataclass
class Pages:
    """What a sync committed, per stream (a progress callback)."""

    pages: dict[str, list[Page]] = field(default_factory=dict)

    def __call__(self, stream: str, page: Page, stats: Any) -> None:
        self.pages.setdefault(stream, []).append(page)

    def ids(self, stream: str, object_type: str | None = None) -> list[str]:
        return [
            r.external_id
            for p in self.pages.get(stream, [])
            for r in p.records
            if object_type is None or r.object_type == object_type
        ]


def stats(sandbox: Sandbox) -> Mapping[str, Any]:
    return sandbox.stats()


def requests_to(sandbox: Sandbox, endpoint: str) -> int:
    return int(sandbox.stats()["endpoints"].get(endpoint, 0))


@dataclass
class Rig(Sandboxed[MailchimpEmulator]):
    """A sandbox, the exchanges it saw (contract-checked by the ``rig`` fixture), and builders wired to it.

    Every :meth:`source` and :meth:`sink` gets a fresh build context, that is a new run with its own
    account pacer, as ``hub sync`` and ``hub push`` have.
    """

    @classmethod
    def around(cls, sandbox: Sandbox) -> Rig:
        """A rig recording what ``sandbox`` answers."""
        handler, exchanges = recorded(sandbox)
        return cls(emulator_of(sandbox), sandbox, exchanges, httpx.MockTransport(handler), FakeTime())

    @property
    def list_id(self) -> str:
        return self.emulator.list_id

    def context(self) -> BuildContext:
        return BuildContext(resolve_secret=resolve, transports={"mailchimp": self.transport})

    def source(self, **entry: Any) -> MailchimpSource:
        source: MailchimpSource = self.keep(build_source(self.context(), **entry))
        return source

    def sink(self, **entry: Any) -> MailchimpSink:
        sink: MailchimpSink = self.keep(build_sink(self.context(), self.list_id, **entry))
        return sink
