"""HubSpot: contacts and deals pulled from the CRM, segment tags pushed back as a property or static lists.

Only the config models are imported here; the registry loads this module to list connectors, and the client,
streams, sink and emulator are imported when something is built.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from hub.registry import ConnectorSpec

from .config import HubSpotDestinationConfig, HubSpotSourceConfig

if TYPE_CHECKING:
    from hub.registry import BuildContext
    from hub.sandbox.emulator import EmulatorContext

    from .emulator import HubSpotEmulator
    from .sink import HubSpotSink
    from .source import HubSpotSource

# What `hub sandbox serve --config-out` writes: the emulator accepts this private app token.
SANDBOX_TOKEN_ENV = "HUBSPOT_SANDBOX_TOKEN"
SANDBOX_TOKEN = "pat-na1-sandbox-0000"  # the private app token the emulator accepts, with every scope


def build_source(config: HubSpotSourceConfig, name: str, ctx: BuildContext) -> HubSpotSource:
    """Build the HubSpot source ``name`` from its validated entry."""
    from .source import HubSpotSource

    return HubSpotSource(config, name, ctx)


def build_sink(config: HubSpotDestinationConfig, name: str, ctx: BuildContext) -> HubSpotSink:
    """Build the HubSpot destination ``name`` from its validated entry."""
    from .sink import HubSpotSink

    return HubSpotSink(config, name, ctx)


def build_emulator(ctx: EmulatorContext) -> HubSpotEmulator:
    """The HubSpot emulator on the sandbox's seeded business."""
    from .emulator import HubSpotEmulator

    return HubSpotEmulator(ctx)


def sandbox_entries(base_url: str) -> dict[str, dict[str, Any]]:
    """Config entries pointing at an emulator served at ``base_url`` (token from ``$HUBSPOT_SANDBOX_TOKEN``)."""
    token = f"env:{SANDBOX_TOKEN_ENV}"
    return {
        "sources": {"hubspot": {"type": "hubspot", "base_url": base_url, "token": token}},
        "destinations": {"hubspot-tags": {"type": "hubspot", "base_url": base_url, "token": token, "mode": "property"}},
    }


CONNECTOR = ConnectorSpec(
    name="hubspot",
    summary="HubSpot CRM: contacts and deals (incremental, deletions), segment tags as a property or static lists",
    source_config=HubSpotSourceConfig,
    build_source=build_source,
    destination_config=HubSpotDestinationConfig,
    build_sink=build_sink,
    emulator=build_emulator,
    sandbox_entries=sandbox_entries,
    sandbox_secrets={f"env:{SANDBOX_TOKEN_ENV}": SANDBOX_TOKEN},
)

__all__ = ["CONNECTOR", "HubSpotDestinationConfig", "HubSpotSourceConfig", "build_sink", "build_source"]
