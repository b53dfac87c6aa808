"""The config models of ``type: hubspot`` source and destination entries.

Credentials are secret references, resolved through ``BuildContext.resolve_secret`` when the connector is
built: a private app access token, or an OAuth app's client secret and refresh token.
"""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Literal

from pydantic import Field, field_validator, model_validator

from hub.config.models import DestinationConfigBase, SecretRef, SourceConfigBase, StrictModel, parse_duration

from .settings import (
    DEFAULT_LOOKBACK,
    DEFAULT_PROPERTY_GROUP,
    DEFAULT_TAG_PROPERTY,
    DEFAULT_TAG_PROPERTY_LABEL,
)

Tier = Literal["free", "starter", "professional", "enterprise"]
StreamName = Literal["contacts", "deals"]
# HubSpot internal property names: lowercase letters, digits and underscores, starting with a letter.
_PROPERTY_NAME = re.compile(r"^[a-z][a-z0-9_]{0,99}$")


class OAuthCredentials(StrictModel):
    """A public (OAuth) app installed in the account: refresh token -> 30-minute access tokens."""

    client_id: str = Field(min_length=1, description="The app's client id (not secret)")
    client_secret: SecretRef = Field(description="The app's client secret")
    refresh_token: SecretRef = Field(description="The account's refresh token, from the app's install flow")


class HubSpotAccount(StrictModel):
    """How to reach one HubSpot account; shared by the source and destination entries."""

    token: SecretRef | None = Field(
        None, description="Private app access token (Settings > Integrations > Private apps); or use oauth"
    )
    oauth: OAuthCredentials | None = Field(None, description="OAuth app credentials instead of a private app token")
    tier: Tier = Field(
        "starter",
        description="The account's subscription tier: the starting point of request pacing (100 requests per 10 s"
        " on free/starter, 190 on professional/enterprise) until HubSpot's rate-limit headers say otherwise",
    )

    @model_validator(mode="after")
    def _one_credential(self) -> HubSpotAccount:
        if (self.token is None) == (self.oauth is None):
            raise ValueError("set exactly one of 'token' (a private app) or 'oauth' (an OAuth app)")
        return self

    def credential_ref(self) -> str:
        """The reference naming the account's credential (identifies the account without resolving it)."""
        if self.token is not None:
            return self.token
        assert self.oauth is not None  # the validator
        return f"{self.oauth.client_id}:{self.oauth.refresh_token}"


def _all_streams() -> list[StreamName]:
    return ["contacts", "deals"]


def _check_property(name: str) -> str:
    if not _PROPERTY_NAME.match(name):
        raise ValueError(f"{name!r} is not a HubSpot internal property name (lowercase letters, digits, '_')")
    return name


class HubSpotSourceConfig(SourceConfigBase, HubSpotAccount):
    """Contacts and deals pulled from one HubSpot account."""

    type: Literal["hubspot"]
    streams: list[StreamName] = Field(default_factory=_all_streams, min_length=1, description="The streams to pull")
    properties: list[str] = Field(
        default_factory=list,
        description="Custom contact properties to pull as person properties (internal names, e.g. customer_tier)",
    )
    all_custom_properties: bool = Field(
        False, description="Pull every custom contact property the account defines (found with the properties API)"
    )
    lookback: str = Field(
        DEFAULT_LOOKBACK,
        description="How far before the previous run each incremental run starts again: HubSpot's search index"
        " lags behind writes, so a record changed just before a run may only be found by the next one",
    )
    detect_deleted: bool = Field(
        True, description="Look for archived (deleted) records on each incremental run and mark them deleted"
    )
    currency: str | None = Field(
        None,
        pattern=r"^[A-Z]{3}$",
        description="The account's company currency, for deals without deal_currency_code (e.g. EUR)",
    )
    daily_reserve: int = Field(
        0, ge=0, description="Stop a run when fewer than this many of the day's API calls remain (for other apps)"
    )

    @field_validator("properties")
    @classmethod
    def _property_names(cls, value: list[str]) -> list[str]:
        return [_check_property(v) for v in dict.fromkeys(value)]

    @field_validator("lookback")
    @classmethod
    def _duration(cls, value: str) -> str:
        parse_duration(value)
        return value

    def lookback_delta(self) -> timedelta:
        """``lookback`` as a timedelta."""
        return parse_duration(self.lookback)


class HubSpotDestinationConfig(DestinationConfigBase, HubSpotAccount):
    """Segment tags written to HubSpot contacts, as a multiple-checkbox property or as static lists."""

    type: Literal["hubspot"]
    mode: Literal["property", "lists"] = Field(
        "property",
        description="property: one multiple-checkbox contact property holding the tags (one write per contact,"
        " 100 contacts per call); lists: one static (MANUAL) list per tag",
    )
    property: str = Field(
        DEFAULT_TAG_PROPERTY, description="The multiple-checkbox contact property (mode: property); created if missing"
    )
    property_label: str = Field(DEFAULT_TAG_PROPERTY_LABEL, description="Its label, when the hub creates it")
    property_group: str = Field(DEFAULT_PROPERTY_GROUP, description="Its property group, when the hub creates it")

    @field_validator("property")
    @classmethod
    def _property_name(cls, value: str) -> str:
        return _check_property(value)
