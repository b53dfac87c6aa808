"""``hub demo``: a workspace with the seeded synthetic business, ready to sync and explore.

The demo writes the business's CSV exports (contacts, orders, email and web events), a commented config that
reads them, and points the store at a SQLite file beside it. The CLI then runs the ordinary sync and prints
the store summary, so the demo exercises exactly the code paths an admin's own config does. Running it again
re-writes identical exports, which the incremental sync recognises by content hash and skips.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from hub.sandbox.business import Business
from segment_rules.configured import copy_example_rules

DEMO_CONFIG = """\
# Written by `hub demo`: a CSV source reading the exports of the seeded synthetic business.
# Explore with `hub status --config {config}`, `hub segment --config {config}` and
# `hub explain EMAIL --config {config}`. The segment rules are the files in segment_rules/.
version: 1
timezone: Europe/Berlin
store:
  url: sqlite:///hub.db
sources:
  shop_exports:
    type: csv
    schedule: {{every: 1h}}
    files:
      - kind: contacts
        path: exports/contacts.csv
        properties: [lifecycle_stage]
      - kind: orders
        path: exports/orders.csv
        attributes: [channel, items, categories]
      - kind: events
        path: exports/events.csv
        attributes: [campaign, category, page_views]
"""


@dataclass(frozen=True)
class DemoWorkspace:
    """Where the demo put its files.

    Args:
        directory: the workspace folder.
        config: its config file.
        exports: the CSV exports by kind.
        business: the generated business (for the summary's "what was generated" line).
    """

    directory: Path
    config: Path
    exports: dict[str, Path]
    business: Business

    @property
    def as_of(self) -> datetime:
        """The business's "today": segments are evaluated at it, so the demo's windows hold data."""
        return self.business.as_of


def prepare_demo(directory: Path, *, contacts: int = 2000, seed: int = 42) -> DemoWorkspace:
    """Write the exports and config of a demo workspace into ``directory`` (created if missing).

    Args:
        directory: the workspace folder; an existing demo there is refreshed in place.
        contacts: people in the seeded business.
        seed: its seed (the same seed gives the same business).

    Returns:
        The workspace's paths.
    """
    directory.mkdir(parents=True, exist_ok=True)
    business = Business.generate(contacts, seed)
    exports = business.write_csv_exports(directory / "exports")
    copy_example_rules(directory / "segment_rules")
    config = directory / "config.yaml"
    config.write_text(DEMO_CONFIG.format(config=config), encoding="utf-8")
    return DemoWorkspace(directory=directory, config=config, exports=exports, business=business)
