"""HubSpot's conformance kit: a private app and an OAuth app, the fewest requests a sync of an account needs."""

from __future__ import annotations

import math
from typing import Any

from hub.conformance import ConformanceKit, Fault

from .emulator import SANDBOX_CLIENT_ID, SANDBOX_CLIENT_SECRET, SANDBOX_REFRESH_TOKEN
from .settings import LIST_PAGE_SIZE

_SECRET_ENV = "env:HUBSPOT_SANDBOX_CLIENT_SECRET"
_REFRESH_ENV = "env:HUBSPOT_SANDBOX_REFRESH_TOKEN"
OAUTH = {
    "token": None,
    "oauth": {"client_id": SANDBOX_CLIENT_ID, "client_secret": _SECRET_ENV, "refresh_token": _REFRESH_ENV},
}


def _pages(count: int) -> int:
    return max(1, math.ceil(count / LIST_PAGE_SIZE))


def _token(variant: str) -> int:
    return 1 if variant == "oauth" else 0  # one access token per run, fetched before the first call


def full_requests(emulator: Any, variant: str) -> int:
    """Contacts and deals listed 100 a page, each deals page's contact associations in one batch read, and
    the deal pipelines once (for the won and lost stages)."""
    account = emulator.account
    deal_pages = _pages(len(account.deals.live()))
    return _token(variant) + _pages(len(account.contacts.live())) + 2 * deal_pages + 1


def incremental_requests(emulator: Any, variant: str) -> int:
    """Nothing changed: one search per object for recent changes, one archived listing per object."""
    return _token(variant) + 4


def kit() -> ConformanceKit:
    """HubSpot's kit."""
    return ConformanceKit(
        variants={"private-app": {}, "oauth": OAUTH},
        full_requests=full_requests,
        incremental_requests=incremental_requests,
        record_path="/crm/v3/objects/contacts",
        broken_record=Fault("properties", "not an object"),
        optional_field="firstname",
        expiring_tokens="oauth",
        kill_points={"token request": "POST /oauth/v1/token"},
        index_lag_s=2.5,
        reread_limit=LIST_PAGE_SIZE,
        secrets={_SECRET_ENV: SANDBOX_CLIENT_SECRET, _REFRESH_ENV: SANDBOX_REFRESH_TOKEN},
    )
