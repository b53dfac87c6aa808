"""The CSV source's conformance kit: the seeded business's exports, read in small pages.

There is no API, so no request counts and no injected HTTP faults; a broken row is the CSV's bad record (the
suite's file trials cover it), and pages are small so that kills land between many commits.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from hub.conformance import ConformanceKit
from hub.sandbox.business import Business

PAGE_ROWS = 200


def write_exports(folder: Path, business: Business) -> dict[str, Any]:
    """Write the business's exports under ``folder`` and return the source entry reading them."""
    exports = business.write_csv_exports(folder / "exports")
    return {
        "type": "csv",
        "page_size": PAGE_ROWS,
        "files": [
            {"kind": "orders", "path": str(exports["orders"]), "attributes": ["channel", "items"]},
            {"kind": "contacts", "path": str(exports["contacts"]), "properties": ["lifecycle_stage"]},
            {"kind": "events", "path": str(exports["events"]), "attributes": ["campaign", "page_views"]},
        ],
    }


def kit() -> ConformanceKit:
    """The CSV source's kit."""
    return ConformanceKit(files=write_exports, reread_limit=PAGE_ROWS)
