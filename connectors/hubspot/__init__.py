"""HubSpot: contacts and deals pulled from the CRM, segment tags pushed back as a property or static lists.

Only the config models are imported here; the registry loads this module to list connectors, and the client,
streams, sink, emulator and conformance kit are imported when something is built.
"""

from __future__ import annotations

from typing import Any

from hub.registry import ConnectorSpec, lazy

from .config import HubSpotDestinationConfig, HubSpotSourceConfig

# What `hub sandbox serve --config-out` writes: the emulator accepts this private app token.
SANDBOX_TOKEN_ENV = "HUBSPOT_SANDBOX_TOKEN"
SANDBOX_TOKEN = "pat-na1-sandbox-0000"  # the private app token the emulator accepts, with every scope


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
    build_source=lazy(f"{__name__}.source:HubSpotSource"),
    destination_config=HubSpotDestinationConfig,
    build_sink=lazy(f"{__name__}.sink:HubSpotSink"),
    emulator=lazy(f"{__name__}.emulator:HubSpotEmulator"),
    sandbox_entries=sandbox_entries,
    sandbox_secrets={f"env:{SANDBOX_TOKEN_ENV}": SANDBOX_TOKEN},
    conformance=lazy(f"{__name__}.conformance:kit"),
)

__all__ = ["CONNECTOR", "HubSpotDestinationConfig", "HubSpotSourceConfig"]
