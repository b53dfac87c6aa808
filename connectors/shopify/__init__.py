"""Shopify: customers and online orders in, segment tags out, through the GraphQL Admin API.

Only the config models are imported here; the registry loads this module to list connectors, and the client,
streams, sink, emulator and conformance kit load when something is built.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from hub.registry import ConnectorSpec, lazy

from .config import ShopifyDestinationConfig, ShopifySourceConfig

if TYPE_CHECKING:
    from hub.registry import BuildContext

    from .client import ShopifyClient
    from .sink import ShopifySink
    from .source import ShopifySource

SANDBOX_TOKEN_ENV = "SHOPIFY_SANDBOX_TOKEN"
SANDBOX_TOKEN = "shpat_sandbox"  # the Admin API token the emulator accepts, with every scope


def _client(config: ShopifySourceConfig | ShopifyDestinationConfig, ctx: BuildContext) -> ShopifyClient:
    from .client import ShopifyClient, base_url, shared_pacer

    return ShopifyClient(
        config.shop,
        ctx.resolve_secret(config.token),
        config.api_version,
        base=base_url(config.shop, config.base_url),
        pacer=shared_pacer(ctx.shared, config.shop),
        transport=ctx.transports.get("shopify"),
    )


def build_source(config: ShopifySourceConfig, name: str, ctx: BuildContext) -> ShopifySource:
    """Build the Shopify source ``name`` from its validated entry."""
    from .source import ShopifySource

    return ShopifySource(config, name, _client(config, ctx))


def build_sink(config: ShopifyDestinationConfig, name: str, ctx: BuildContext) -> ShopifySink:
    """Build the Shopify destination ``name`` from its validated entry."""
    from .sink import ShopifySink

    return ShopifySink(config, name, _client(config, ctx))


def sandbox_entries(url: str) -> dict[str, dict[str, Any]]:
    """Config entries pointing at a Shopify sandbox (its token: ``shpat_sandbox`` in $SHOPIFY_SANDBOX_TOKEN)."""
    connection = {"type": "shopify", "shop": "sandbox-shop", "token": f"env:{SANDBOX_TOKEN_ENV}", "base_url": url}
    return {
        "sources": {"shopify": {**connection, "schedule": {"every": "30m"}}},
        "destinations": {"shopify-tags": {**connection, "tag_prefix": "hub:", "segments": []}},
    }


CONNECTOR = ConnectorSpec(
    name="shopify",
    summary="Shopify customers and orders (GraphQL Admin API, cost-paced, bulk backfill); tags pushed back",
    source_config=ShopifySourceConfig,
    build_source=build_source,
    destination_config=ShopifyDestinationConfig,
    build_sink=build_sink,
    emulator=lazy(f"{__name__}.emulator:ShopifyEmulator"),
    sandbox_entries=sandbox_entries,
    sandbox_secrets={f"env:{SANDBOX_TOKEN_ENV}": SANDBOX_TOKEN},
    conformance=lazy(f"{__name__}.conformance:kit"),
)

__all__ = ["CONNECTOR", "ShopifyDestinationConfig", "ShopifySourceConfig", "build_sink", "build_source"]
