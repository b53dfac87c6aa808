"""The config models of ``type: mailchimp`` source and destination entries.

Credentials are one of two secret references: ``api_key`` (the data center is the key's ``-us21`` style
suffix) or ``access_token`` (an OAuth 2 token; the data center comes from Mailchimp's metadata endpoint).
"""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Literal

from pydantic import Field, field_validator, model_validator

from hub.config.models import DestinationConfigBase, SecretRef, SourceConfigBase, StrictModel, parse_duration

from . import settings

_LIST_ID_RE = re.compile(r"^[0-9a-zA-Z]{1,32}$")

StreamName = Literal["members", "email_activity"]


def _all_streams() -> list[StreamName]:
    return ["members", "email_activity"]


class MailchimpCredentials(StrictModel):
    """Exactly one of ``api_key`` and ``access_token``."""

    api_key: SecretRef | None = Field(
        None, description="A Marketing API key (ends in the data center, e.g. -us21); HTTP Basic auth"
    )
    access_token: SecretRef | None = Field(
        None, description="An OAuth 2 access token (Mailchimp's do not expire); the data center is looked up"
    )
    connections: int = Field(
        settings.MAX_CONNECTIONS,
        ge=1,
        le=settings.MAX_CONNECTIONS,
        description="Simultaneous requests to this account (Mailchimp allows 10; shared by every entry using it)",
    )

    @model_validator(mode="after")
    def _one_credential(self) -> MailchimpCredentials:
        if (self.api_key is None) == (self.access_token is None):
            raise ValueError("set exactly one of 'api_key' or 'access_token'")
        return self


def _check_list_id(value: str) -> str:
    if not _LIST_ID_RE.match(value):
        raise ValueError(f"{value!r} is not a Mailchimp audience id (letters and digits, e.g. 'a1b2c3d4e5')")
    return value


class MailchimpSourceConfig(SourceConfigBase, MailchimpCredentials):
    """A Mailchimp source: audience members, and email engagement as activities."""

    type: Literal["mailchimp"]
    list_ids: list[str] = Field(
        default_factory=list, description="Audience (list) ids to pull; empty: every audience of the account"
    )
    streams: list[StreamName] = Field(default_factory=_all_streams, description="The streams to sync")
    page_size: int = Field(
        settings.PAGE_SIZE, ge=1, le=settings.PAGE_SIZE, description="Records per request and per committed page"
    )
    activity_window: str = Field(
        "30d",
        description="Campaigns sent within this long before the newest send are re-read for new opens and clicks",
    )
    lookback: str = Field(
        "1h", description="Each incremental run re-reads this much before its cursors, for late-indexed changes"
    )

    @field_validator("list_ids")
    @classmethod
    def _list_ids(cls, value: list[str]) -> list[str]:
        for list_id in value:
            _check_list_id(list_id)
        if len(set(value)) != len(value):
            raise ValueError("an audience id is listed twice")
        return value

    @field_validator("streams")
    @classmethod
    def _streams(cls, value: list[StreamName]) -> list[StreamName]:
        if not value:
            raise ValueError("name at least one stream")
        return value

    @field_validator("activity_window", "lookback")
    @classmethod
    def _duration(cls, value: str) -> str:
        parse_duration(value)
        return value

    @property
    def activity_window_delta(self) -> timedelta:
        """``activity_window`` as a timedelta."""
        return parse_duration(self.activity_window)

    @property
    def lookback_delta(self) -> timedelta:
        """``lookback`` as a timedelta."""
        return parse_duration(self.lookback)


class MailchimpDestinationConfig(DestinationConfigBase, MailchimpCredentials):
    """A Mailchimp destination: segment tags become tags (static segments) of one audience."""

    type: Literal["mailchimp"]
    list_id: str | None = Field(
        None,
        description="The audience (list) id whose members get the tags (may be left out when the account has "
        "exactly one audience)",
        examples=["a1b2c3d4e5"],
    )

    @field_validator("list_id")
    @classmethod
    def _list_id(cls, value: str | None) -> str | None:
        return None if value is None else _check_list_id(value)

    @field_validator("create_missing")
    @classmethod
    def _never_create(cls, value: bool) -> bool:
        # Adding a member means choosing a subscription status for someone: the hub never does that.
        if value:
            raise ValueError("Mailchimp destinations never create members (that would subscribe people)")
        return value
