"""Mailchimp: audience members and email engagement in, segment tags (static segments) out.

Only the config models are imported here: the registry loads this module to list connectors, and the client,
streams, sink, emulator and conformance kit load when an entry is built.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from hub.registry import ConnectorSpec, lazy

from .config import MailchimpDestinationConfig, MailchimpSourceConfig

if TYPE_CHECKING:
    from hub.registry import BuildContext
    from hub.sandbox.emulator import EmulatorContext

    from .client import MailchimpClient
    from .config import MailchimpCredentials
    from .emulator import MailchimpEmulator
    from .sink import MailchimpSink
    from .source import MailchimpSource

SANDBOX_KEY_ENV = "MAILCHIMP_SANDBOX_API_KEY"
"""The variable a sandbox config reads the (public) sandbox API key from."""
SANDBOX_API_KEY = "c0ffee00c0ffee00c0ffee00c0ffee00-us21"
"""The API key the emulator accepts (data center us21)."""


def client_for(config: MailchimpCredentials, ctx: BuildContext) -> MailchimpClient:
    """The client of an entry, with its account's shared pacer (one per account, whatever the entry)."""
    from .client import Credentials, MailchimpClient, account_pacer

    if config.api_key is not None:
        credentials = Credentials("api_key", ctx.resolve_secret(config.api_key))
    else:
        assert config.access_token is not None  # the model requires one of them
        credentials = Credentials("oauth", ctx.resolve_secret(config.access_token))
    base_url = getattr(config, "base_url", None)
    pacer = ctx.shared.setdefault(credentials.account_key(base_url), account_pacer(config.connections))
    return MailchimpClient(credentials, base_url=base_url, pacer=pacer, transport=ctx.transports.get("mailchimp"))


def build_source(config: MailchimpSourceConfig, name: str, ctx: BuildContext) -> MailchimpSource:
    """Build the Mailchimp source ``name`` from its validated entry."""
    from .source import MailchimpSource

    return MailchimpSource(config, name, client_for(config, ctx))


def build_sink(config: MailchimpDestinationConfig, name: str, ctx: BuildContext) -> MailchimpSink:
    """Build the Mailchimp destination ``name`` from its validated entry."""
    from .sink import MailchimpSink

    return MailchimpSink(config, name, client_for(config, ctx))


def build_emulator(ctx: EmulatorContext) -> MailchimpEmulator:
    """The sandbox emulator, with a realistic latency so the 10-connection limit shows."""
    from .emulator import REALISTIC_LATENCY, MailchimpEmulator

    return MailchimpEmulator(ctx, latency=REALISTIC_LATENCY)


def sandbox_entries(base_url: str) -> dict[str, dict[str, Any]]:
    """Config entries pointing at a sandbox (export ``MAILCHIMP_SANDBOX_API_KEY`` first; see the README)."""
    credentials = {"api_key": f"env:{SANDBOX_KEY_ENV}", "base_url": base_url}
    return {
        "sources": {"newsletter": {"type": "mailchimp", **credentials, "schedule": {"every": "1h"}}},
        # No list_id: the sandbox account has one audience, whatever its seed.
        "destinations": {"newsletter-tags": {"type": "mailchimp", **credentials}},
    }


CONNECTOR = ConnectorSpec(
    name="mailchimp",
    summary="Mailchimp audiences and email engagement; segment tags pushed back as Mailchimp tags",
    source_config=MailchimpSourceConfig,
    build_source=build_source,
    destination_config=MailchimpDestinationConfig,
    build_sink=build_sink,
    emulator=build_emulator,
    sandbox_entries=sandbox_entries,
    sandbox_secrets={f"env:{SANDBOX_KEY_ENV}": SANDBOX_API_KEY},
    conformance=lazy(f"{__name__}.conformance:kit"),
)

__all__ = ["CONNECTOR", "MailchimpDestinationConfig", "MailchimpSourceConfig", "build_sink", "build_source"]
