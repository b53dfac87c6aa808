"""Fake connectors for config tests: the real ones are found through entry points, not installed here."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from hub.config.loader import LoadedConfig, validate_config_text
from hub.config.models import DestinationConfigBase, SecretRef, SourceConfigBase, StrictModel
from hub.errors import ConfigErrors
from hub.registry import ConnectorSpec


class FakeCrmSource(SourceConfigBase):
    """A HubSpot-like source."""

    type: Literal["hubspot"]
    token: SecretRef = Field(description="Private app token")
    page_size: int = Field(100, ge=1, le=100, description="Records per page")


class FakeShopOptions(StrictModel):
    api_version: str = "2024-07"
    include_drafts: bool = False


class FakeShopSource(SourceConfigBase):
    """A Shopify-like source with a nested options block and a list of secret references."""

    type: Literal["shopify"]
    shop: str
    token: SecretRef
    fallback_tokens: list[SecretRef] = Field(default_factory=list)
    options: FakeShopOptions = Field(default_factory=FakeShopOptions)


class FakeMailDestination(DestinationConfigBase):
    """A Mailchimp-like destination (it cannot be a source)."""

    type: Literal["mailchimp"]
    api_key: SecretRef
    list_id: str | None = None


FAKE_SPECS: dict[str, ConnectorSpec] = {
    "hubspot": ConnectorSpec("hubspot", "fake CRM", source_config=FakeCrmSource, destination_config=None),
    "shopify": ConnectorSpec("shopify", "fake shop", source_config=FakeShopSource),
    "mailchimp": ConnectorSpec("mailchimp", "fake email tool", destination_config=FakeMailDestination),
}


def load(text: str, **env: str) -> LoadedConfig:
    """Validate ``text`` against the fake connectors, with exactly ``env`` as the environment."""
    return validate_config_text(text, filename="hub.yaml", specs=FAKE_SPECS, environ=env)


def error_lines(text: str, **env: str) -> list[str]:
    """The error lines ``text`` produces (fails the test if it validates)."""
    try:
        load(text, **env)
    except ConfigErrors as exc:
        lines = [str(e) for e in exc.errors]
        assert str(exc) == "\n".join(lines)
        return lines
    raise AssertionError("the config validated, but errors were expected")
