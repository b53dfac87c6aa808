"""Write an N-row orders CSV and a matching contacts CSV, deterministically, for the CSV throughput benchmark.

    python bench/gen_orders_csv.py --orders 1000000 --out bench/out            # write the files
    python bench/gen_orders_csv.py --orders 1000000 --out bench/out --measure  # ... and time parsing them

``--measure`` reads the orders file through the CSV connector's stream (hashing, csv parsing, mapping every
row to a Record, pages of 5000) without any store, and prints rows/s. ``--style eu`` writes what a European
point of sale exports: ``;`` delimiter, ``31.12.2024 18:30`` dates, ``1.234,50`` amounts, latin-1.
The files use export-style header names, so the printed config also exercises the column mapping.
"""

from __future__ import annotations

import argparse
import csv
import json
import random
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

FIRST = ["Anna", "Ben", "Chloé", "David", "Emma", "Felix", "Greta", "Hugo", "Ida", "Jonas", "Léa", "Max"]
LAST = ["Müller", "Schmidt", "Martin", "Bernard", "Rossi", "García", "Smith", "Jones", "Novak", "Dubois"]
CITIES = [
    ("DE", "Berlin"),
    ("DE", "München"),
    ("FR", "Paris"),
    ("IT", "Milano"),
    ("ES", "Madrid"),
    ("GB", "Leeds"),
]
STATUSES = ["paid"] * 90 + ["refunded"] * 4 + ["cancelled"] * 3 + ["pending"] * 3
CHANNELS = ["web", "store", "phone"]
START = datetime(2022, 1, 1, tzinfo=UTC)

ORDER_HEADER = [
    "Order ID",
    "Customer ID",
    "Email",
    "Created At",
    "Total",
    "Currency",
    "Financial Status",
    "Channel",
]
CONTACT_HEADER = [
    "Customer ID",
    "Email",
    "First Name",
    "Last Name",
    "Country",
    "City",
    "Newsletter",
    "Signed Up",
]


def _styles(style: str) -> dict[str, str]:
    if style == "eu":
        return {
            "delimiter": ";",
            "date_format": "%d.%m.%Y %H:%M",
            "decimal": ",",
            "thousands": ".",
            "encoding": "latin-1",
        }
    return {"delimiter": ",", "date_format": "iso", "decimal": ".", "thousands": "", "encoding": "utf-8"}


def _date(ts: datetime, style: str) -> str:
    return ts.strftime("%d.%m.%Y %H:%M") if style == "eu" else ts.strftime("%Y-%m-%dT%H:%M:%S")


def _amount(cents: int, style: str) -> str:
    text = f"{cents / 100:,.2f}"
    return (
        text.replace(",", "\x00").replace(".", ",").replace("\x00", ".")
        if style == "eu"
        else text.replace(",", "")
    )


def write_contacts(path: Path, n: int, rng: random.Random, style: str) -> None:
    """Write ``n`` contacts; customer ``C{i}`` has email ``customer{i}@example.com``."""
    fmt = _styles(style)
    with path.open("w", encoding=fmt["encoding"], newline="") as f:
        out = csv.writer(f, delimiter=fmt["delimiter"])
        out.writerow(CONTACT_HEADER)
        for i in range(n):
            country, city = rng.choice(CITIES)
            signed_up = START + timedelta(minutes=rng.randrange(0, 2 * 365 * 24 * 60))
            out.writerow(
                [
                    f"C{i}",
                    f"customer{i}@example.com",
                    rng.choice(FIRST),
                    rng.choice(LAST),
                    country,
                    city,
                    rng.choice(["yes", "yes", "no", "unsubscribed", ""]),
                    _date(signed_up, style),
                ]
            )


def write_orders(path: Path, n: int, customers: int, rng: random.Random, style: str) -> None:
    """Write ``n`` orders by ``customers`` customers, with skewed order values and a few repeat buyers."""
    fmt = _styles(style)
    with path.open("w", encoding=fmt["encoding"], newline="") as f:
        out = csv.writer(f, delimiter=fmt["delimiter"])
        out.writerow(ORDER_HEADER)
        for i in range(n):
            c = min(int(rng.paretovariate(1.2)) - 1, customers - 1)  # a few customers buy a lot
            c = (c * 7919 + i % 3) % customers if rng.random() < 0.5 else rng.randrange(customers)
            placed = START + timedelta(seconds=rng.randrange(0, 3 * 365 * 24 * 3600))
            cents = int(rng.lognormvariate(8.3, 0.9))  # median ~40, long tail into the thousands
            out.writerow(
                [
                    f"O{100000 + i}",
                    f"C{c}",
                    f"customer{c}@example.com",
                    _date(placed, style),
                    _amount(cents, style),
                    "EUR",
                    rng.choice(STATUSES),
                    rng.choice(CHANNELS),
                ]
            )


def source_config(style: str) -> dict[str, object]:
    """The ``type: csv`` source entry that reads the generated files (paths relative to their folder)."""
    defaults = _styles("iso")
    common = {k: v for k, v in _styles(style).items() if v != defaults[k]}
    orders_columns = {
        "id": "Order ID",
        "customer_id": "Customer ID",
        "email": "Email",
        "occurred_at": "Created At",
        "amount": "Total",
        "currency": "Currency",
        "status": "Financial Status",
    }
    contact_columns = {
        "id": "Customer ID",
        "email": "Email",
        "first_name": "First Name",
        "last_name": "Last Name",
        "country": "Country",
        "city": "City",
        "consent": "Newsletter",
        "created_at": "Signed Up",
    }
    return {
        "type": "csv",
        "files": [
            {"kind": "contacts", "path": "contacts.csv", "columns": contact_columns, **common},
            {
                "kind": "orders",
                "path": "orders.csv",
                "columns": orders_columns,
                "attributes": ["Channel"],
                **common,
            },
        ],
    }


def measure(out: Path, style: str) -> float:
    """Parse orders.csv through the CSV stream (no store) and return rows per second."""
    from connectors.csv.config import CsvSourceConfig
    from connectors.csv.source import CsvSource

    config = CsvSourceConfig.model_validate(source_config(style))
    stream = next(s for s in CsvSource(config, "bench", out).streams() if s.name == "orders")
    started, cpu = time.perf_counter(), time.process_time()
    rows = skipped = 0
    for page in stream.read(None):
        rows += len(page.records)
        skipped += page.skipped
    elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu
    # CPU time as well: on a shared VM the wall clock includes time stolen by neighbours.
    print(
        f"parsed {rows:,} orders ({skipped} skipped) in {elapsed:.2f} s: {rows / elapsed:,.0f} rows/s "
        f"({rows / cpu:,.0f} rows/s of CPU time)"
    )
    return rows / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--orders", type=int, default=1_000_000, help="order rows to write")
    parser.add_argument("--contacts", type=int, default=None, help="contacts to write (default: orders / 5)")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--style", choices=["iso", "eu"], default="iso")
    parser.add_argument("--out", type=Path, default=Path("bench/out"))
    parser.add_argument("--measure", action="store_true", help="then time parsing orders.csv")
    args = parser.parse_args()
    contacts = args.contacts or max(1, args.orders // 5)
    args.out.mkdir(parents=True, exist_ok=True)
    rng = random.Random(args.seed)
    write_contacts(args.out / "contacts.csv", contacts, rng, args.style)
    write_orders(args.out / "orders.csv", args.orders, contacts, rng, args.style)
    print(f"wrote {args.orders:,} orders and {contacts:,} contacts to {args.out}")
    print("source entry:", json.dumps(source_config(args.style)))
    if args.measure:
        measure(args.out, args.style)


if __name__ == "__main__":
    main()
