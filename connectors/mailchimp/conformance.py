"""Mailchimp's conformance kit: the fewest requests a sync of an account needs."""

from __future__ import annotations

import math
from typing import Any

from hub.config.models import parse_duration
from hub.conformance import ConformanceKit, Fault

from .config import MailchimpSourceConfig
from .settings import PAGE_SIZE


def _pages(count: int) -> int:
    return max(1, math.ceil(count / PAGE_SIZE))


def _members(emulator: Any) -> int:
    """Members listed, then archived members: one listing each."""
    data = emulator.data
    return _pages(len(data.sorted_members(archived=False))) + _pages(len(data.sorted_members(archived=True)))


def _reports(emulator: Any, campaigns: list[Any]) -> int:
    data = emulator.data
    return sum(_pages(len(data.report(c).recipients)) + _pages(len(data.report(c).unsubscribes)) for c in campaigns)


def full_requests(emulator: Any, variant: str) -> int:
    """The audiences, a member count (to split a large first sync), the member listings, the sent campaigns,
    and every campaign's email activity and unsubscribes."""
    campaigns = list(emulator.data.campaigns)
    return 1 + 1 + _members(emulator) + _pages(len(campaigns)) + _reports(emulator, campaigns)


def incremental_requests(emulator: Any, variant: str) -> int:
    """Nothing changed: the audiences, the member listings since the cursor, and the reports of the campaigns
    sent within ``activity_window`` of the newest send."""
    campaigns = list(emulator.data.campaigns)
    window = parse_duration(MailchimpSourceConfig.model_fields["activity_window"].default).total_seconds()
    newest = max(c.send_time for c in campaigns)
    recent = [c for c in campaigns if c.send_time >= newest - window]
    return 1 + _members(emulator) + 1 + _reports(emulator, recent)


def kit() -> ConformanceKit:
    """Mailchimp's kit."""
    return ConformanceKit(
        full_requests=full_requests,
        incremental_requests=incremental_requests,
        record_path="/lists/",
        broken_record=Fault("email_address", 12345),
        optional_field="merge_fields",
        reread_limit=PAGE_SIZE,
        delta_records=frozenset({"email_activity"}),
    )
