"""Fixtures: the Shopify emulator in-process behind a Sandbox, a recorder of every exchange (each GraphQL
document the connector sent is validated against both shipped schema versions when the test ends), and
builders for sources and sinks wired to it.

The sandbox clock runs fast (speed 1000: the Standard bucket restores 100,000 points per real second), so bulk
operations finish within milliseconds and pacing never sleeps long; tests of throttling build a slower rig.
Record stamps come from a wall clock the tests move by hand.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from pydantic import SecretStr

from connectors.shopify.client import ShopifyClient, base_url
from connectors.shopify.config import ShopifyDestinationConfig, ShopifySourceConfig
from connectors.shopify.emulator import SANDBOX_TOKEN, ShopifyEmulator
from connectors.shopify.sink import ShopifySink
from connectors.shopify.source import ShopifySource
from hub.http import Pacer, RetryPolicy, TokenBucket
from hub.registry import BuildContext
from hub.sandbox.business import Business
from tests.connectors.sandboxed import Sandboxed, rigs, sandboxed

from .schemas import invalid_documents, shipped_schemas

BASE_URL = "http://shopify.sandbox"
TOKENS = {"env:SHOPIFY_TOKEN": SANDBOX_TOKEN, "env:SHOPIFY_READONLY": "shpat_readonly", "env:SHOPIFY_BAD": "shpat_x"}
FAST = RetryPolicy(max_attempts=8, initial_wait=0.001, max_wait=0.01)


@pytest.fixture(scope="session")
def business() -> Business:
    """A small business: about 500 customers (2 pages) and 770 online orders (24 pages)."""
    return Business.generate(600, seed=7)


@dataclass
class ShopifyRig(Sandboxed[ShopifyEmulator]):
    """The emulator, its sandbox, the recorded exchanges and builders of sources and sinks pointing at it."""

    shared: dict[str, Any] = field(default_factory=dict)

    def client(self, token: str = SANDBOX_TOKEN, api_version: str = "2026-07") -> ShopifyClient:
        pacer = self.shared.setdefault("pacer", Pacer.single(TokenBucket(1000.0, 50.0)))
        client: ShopifyClient = self.keep(ShopifyClient(
            "sandbox-shop",
            SecretStr(token),
            api_version,
            base=base_url("sandbox-shop", BASE_URL),
            pacer=pacer,
            transport=self.transport,
            retry=FAST,
        ))
        return client

    def source(self, token: str = SANDBOX_TOKEN, **entry: Any) -> ShopifySource:
        config = ShopifySourceConfig.model_validate(
            {"type": "shopify", "shop": "sandbox-shop", "token": "env:SHOPIFY_TOKEN", "base_url": BASE_URL,
             "bulk_poll_interval": 0.01, **entry}
        )
        return ShopifySource(
            config, "shopify", self.client(token, config.api_version), clock=self.time.datetime, sleep=_short_sleep
        )

    def sink(self, token: str = SANDBOX_TOKEN, **entry: Any) -> ShopifySink:
        config = ShopifyDestinationConfig.model_validate(
            {"type": "shopify", "shop": "sandbox-shop", "token": "env:SHOPIFY_TOKEN", "base_url": BASE_URL,
             "tag_prefix": "hub:", "bulk_poll_interval": 0.01, **entry}
        )
        return ShopifySink(config, "shopify-tags", self.client(token, config.api_version), sleep=_short_sleep)

    def fresh(self) -> ShopifyRig:
        """The same sandbox as seen by a new process: no shared pacer."""
        self.shared = {}
        return self

    def context(self) -> BuildContext:
        """A build context for the registry's builders (``connectors.shopify.build_source``)."""
        return BuildContext(resolve_secret=lambda ref: SecretStr(TOKENS[ref]), transports={"shopify": self.transport},
                            shared=self.shared)

    def graphql(self, document: str, variables: dict[str, Any] | None = None, *, token: str = SANDBOX_TOKEN,
                version: str = "2026-07") -> dict[str, Any]:
        """A raw GraphQL call, as a test probing the emulator writes it."""
        response = httpx.Client(transport=self.transport).post(
            f"{BASE_URL}/admin/api/{version}/graphql.json",
            json={"query": document, "variables": variables or {}},
            headers={"X-Shopify-Access-Token": token},
        )
        body: dict[str, Any] = response.json()
        body["_status"] = response.status_code
        return body


def _short_sleep(seconds: float) -> None:
    import time

    time.sleep(min(seconds, 0.01))


class FakeMonotonic:
    """A monotonic clock moved by hand (bulk operation lifecycles, bucket levels)."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def make_rig(
    business: Business, *, speed: float = 1000.0, monotonic: FakeMonotonic | None = None, **emulator: Any
) -> ShopifyRig:
    rig = ShopifyRig(*sandboxed(lambda ctx: ShopifyEmulator(ctx, **emulator), business, speed=speed,
                                monotonic=monotonic))
    rig.emulator.add_token("shpat_readonly", ["read_customers"])
    return rig


def _schema_check(made: list[ShopifyRig]) -> None:
    schemas = shipped_schemas()
    if schemas:
        documents = {doc for r in made for doc in sent_documents(r.exchanges)}
        problems = invalid_documents(documents, schemas)
        assert not problems, f"documents the connector sent are invalid for a shipped schema: {problems}"


@pytest.fixture
def rig_factory(business: Business) -> Iterator[Callable[..., ShopifyRig]]:
    """Build rigs; every GraphQL document a connector sent through them is schema-checked when the test ends."""
    yield from rigs(lambda **options: make_rig(options.pop("business", business), **options), _schema_check)


@pytest.fixture
def rig(rig_factory: Callable[..., ShopifyRig]) -> ShopifyRig:
    """One rig on the shared small business."""
    return rig_factory()


def sent_documents(exchanges: list[tuple[httpx.Request, httpx.Response]]) -> set[str]:
    """Every GraphQL document (and bulk query or mutation string) sent by a connector client."""
    out: set[str] = set()
    for request, _ in exchanges:
        if not request.url.path.endswith("/graphql.json") or "audience-hub" not in request.headers.get(
            "user-agent", ""
        ):
            continue
        body = json.loads(request.content)
        out.add(body["query"])
        variables = body.get("variables") or {}
        for key in ("query", "mutation"):
            text = variables.get(key)
            if isinstance(text, str) and text.lstrip().startswith(("{", "mutation", "query")):
                out.add(text)
    return out
