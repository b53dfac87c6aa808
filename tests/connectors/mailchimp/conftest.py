"""Fixtures: a small seeded business, a sandbox around a fresh emulator, a rig whose every exchange is
contract-checked against Mailchimp's spec when the test ends (when the spec is present), retries without
sleeping."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from connectors.mailchimp import settings
from hub.http import RetryPolicy
from hub.sandbox.business import Business
from hub.sandbox.control import Sandbox

from .spec import check_exchanges, sample, spec_present
from .support import Rig, make_sandbox


@pytest.fixture(scope="session")
def business() -> Business:
    """About 300 members, 53 campaigns and their reports."""
    return Business.generate(400, seed=11)


@pytest.fixture
def sandbox(business: Business) -> Sandbox:
    return make_sandbox(business)


@pytest.fixture(autouse=True)
def fast_retry(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[float]]:
    """The connector's retry policy, sleeping nowhere (the waits are recorded)."""
    waits: list[float] = []
    monkeypatch.setattr(settings, "RETRY", RetryPolicy(sleep=waits.append))
    yield waits


@pytest.fixture
def rig(sandbox: Sandbox) -> Iterator[Rig]:
    """The sandbox with builders; what the connector sent and the emulator answered is checked at the end."""
    built = Rig.around(sandbox)
    yield built
    built.close()
    if spec_present():
        check_exchanges(sample(built.exchanges))
