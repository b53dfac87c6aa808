"""The config models of ``type: shopify`` source and destination entries."""

from __future__ import annotations

from datetime import timedelta
from typing import Literal

from pydantic import Field, field_validator

from hub.config.models import DestinationConfigBase, SecretRef, SourceConfigBase, StrictModel, parse_duration

from .settings import API_VERSION, API_VERSION_RE, MAX_PAGED_BACKFILL, SHOP_DOMAIN_SUFFIX, SHOP_HANDLE_RE

StreamName = Literal["customers", "orders", "customer_deletions"]
ALL_STREAMS: tuple[StreamName, ...] = ("customers", "orders", "customer_deletions")


def shop_handle(value: str) -> str:
    """The shop's handle from ``example-store``, ``example-store.myshopify.com`` or a URL of it.

    Raises:
        ValueError: not a shop handle or ``*.myshopify.com`` domain.
    """
    text = value.strip().lower().removeprefix("https://").removeprefix("http://").rstrip("/")
    text = text.removesuffix("/admin").removesuffix(SHOP_DOMAIN_SUFFIX)
    if not SHOP_HANDLE_RE.match(text):
        raise ValueError(
            f"not a shop: {value!r} (use the shop's handle or its myshopify.com domain, e.g. example-store)"
        )
    return text


class ShopifyConnection(StrictModel):
    """What a source and a destination entry share: which shop, which token, which API version."""

    shop: str = Field(
        description="The shop's handle or myshopify.com domain (not a custom domain)", examples=["example-store"]
    )
    token: SecretRef = Field(description="Admin API access token of the shop's custom app (shpat_...)")
    api_version: str = Field(
        API_VERSION, description="GraphQL Admin API version, YYYY-MM (pinned; supported about a year)"
    )

    @field_validator("shop")
    @classmethod
    def _shop(cls, value: str) -> str:
        return shop_handle(value)

    @field_validator("api_version")
    @classmethod
    def _version(cls, value: str) -> str:
        if not API_VERSION_RE.match(value):
            raise ValueError(f"not an API version: {value!r} (YYYY-MM with MM 01, 04, 07 or 10)")
        return value


def _duration(value: str) -> str:
    parse_duration(value)
    return value


class ShopifySourceConfig(ShopifyConnection, SourceConfigBase):
    """A Shopify source: customers and online orders through the GraphQL Admin API."""

    type: Literal["shopify"]
    streams: list[StreamName] = Field(
        default_factory=lambda: list(ALL_STREAMS),
        description="Streams to sync: customers, orders, customer_deletions (periodic deletion check)",
    )
    backfill: Literal["auto", "bulk", "pages"] = Field(
        "auto",
        description="First sync of a stream: a bulk operation (bulk), paged queries (pages), or (auto) a bulk"
        " operation when paging would take longer than max_paged_backfill or the shop has at least bulk_threshold"
        " objects",
    )
    max_paged_backfill: str = Field(
        MAX_PAGED_BACKFILL,
        description="`auto`: a first sync whose paged read is expected to take longer than this (objects / page size"
        " x the page's query cost, beyond the points available, at the restore rate the shop reports) runs a bulk"
        " operation instead",
    )
    bulk_threshold: int = Field(
        10_000, ge=1, description="`auto`: a bulk operation from this many objects on, whatever paging would take"
    )
    overlap: str = Field("5m", description="Each incremental pass re-reads this much before the last one ended")
    reconcile_every: str = Field(
        "1d", description="How often customer_deletions lists every customer id to find deleted customers"
    )
    bulk_poll_interval: float = Field(
        1.0, gt=0, le=60, description="Seconds between the first ten bulk operation status checks (then every 5 s)"
    )
    bulk_timeout: str = Field(
        "6h", description="Give up waiting for a bulk operation after this long (the next run resumes it)"
    )

    @field_validator("overlap", "reconcile_every", "bulk_timeout", "max_paged_backfill")
    @classmethod
    def _durations(cls, value: str) -> str:
        return _duration(value)

    def duration(self, name: Literal["overlap", "reconcile_every", "bulk_timeout", "max_paged_backfill"]) -> timedelta:
        """One of the duration options as a timedelta."""
        value: str = getattr(self, name)
        return parse_duration(value)


class ShopifyDestinationConfig(ShopifyConnection, DestinationConfigBase):
    """A Shopify destination: segment tags on customers, by tagsAdd and tagsRemove."""

    type: Literal["shopify"]
    bulk_mutation_threshold: int = Field(
        500, ge=1, description="Customers per push from which tags go by one bulk mutation instead of batched calls"
    )
    bulk_poll_interval: float = Field(
        1.0, gt=0, le=60, description="Seconds between the first ten bulk operation status checks (then every 5 s)"
    )
    bulk_timeout: str = Field("6h", description="Give up waiting for a bulk mutation after this long")

    @field_validator("bulk_timeout")
    @classmethod
    def _durations(cls, value: str) -> str:
        return _duration(value)
