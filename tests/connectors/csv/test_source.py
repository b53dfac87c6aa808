from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from connectors.csv import source as csv_source
from connectors.csv.config import CsvSourceConfig
from connectors.csv.source import CsvSource, CsvStream
from hub.contracts import Page
from hub.errors import ConfigError, ConfigErrors

ORDERS_HEADER = "id,email,occurred_at,amount\n"


def make_source(base: Path, *files: dict[str, Any], page_size: int = 5000) -> CsvSource:
    cfg = CsvSourceConfig.model_validate({"type": "csv", "files": list(files), "page_size": page_size})
    return CsvSource(cfg, "shop", base)


def stream(base: Path, page_size: int = 5000, **entry: Any) -> CsvStream:
    return make_source(
        base, {"kind": "orders", "path": "orders*.csv", **entry}, page_size=page_size
    ).streams()[0]


def orders(n: int, start: int = 0) -> str:
    return ORDERS_HEADER + "".join(
        f"o{i},c{i}@x.io,2024-01-01T00:00:{i % 60:02d},{i}.50\n" for i in range(start, start + n)
    )


def ids(pages: list[Page]) -> list[str]:
    return [r.external_id for p in pages for r in p.records]


def read(s: CsvStream, state: Mapping[str, Any] | None = None, full: bool = False) -> list[Page]:
    return list(s.read(state, full=full))


# --- bad rows


def test_bad_rows_are_reported_at_their_physical_line_and_the_rest_loaded(tmp_path: Path) -> None:
    (tmp_path / "orders.csv").write_text(
        ORDERS_HEADER
        + 'o1,a@x.io,2024-01-01,"10.00"\n'  # line 2
        + 'o2,b@x.io,2024-01-02,"1,5"\n'  # line 3: bad amount
        + 'o3,"c@x.io",2024-01-03,3\n'  # line 4
        + "\n"  # line 5: blank, ignored
        + 'o4,d@x.io,"2024-01-04",4,"a note\nover\nthree lines"\n'  # lines 6-8: one column too many
        + "o5,e@x.io,someday,5\n"  # line 9: bad date
        + "o6,,2024-01-06,6\n"  # line 10: no customer
        + "o7,f@x.io,2024-01-07,7\n",  # line 11
        encoding="utf-8",
    )
    pages = read(stream(tmp_path))
    assert ids(pages) == ["o1", "o3", "o7"]
    assert sum(p.skipped for p in pages) == 4
    assert [e for p in pages for e in p.errors] == [
        "orders.csv:3: amount: not a number (decimal '.'): '1,5'",
        "orders.csv:6: row: expected 4 columns (as in the header), found 5",
        "orders.csv:9: occurred_at: not a date in format iso: 'someday'",
        "orders.csv:10: email: missing value (no customer id and no email)",
    ]


def test_multi_line_fields_before_a_bad_row_do_not_shift_its_line(tmp_path: Path) -> None:
    (tmp_path / "orders.csv").write_text(
        "id,email,occurred_at,amount,note\n"
        + 'o1,a@x.io,2024-01-01,1,"line one\nline two\r\nline three"\n'  # lines 2-4
        + 'o2,b@x.io,2024-01-02,x,""\n',  # line 5
        encoding="utf-8",
        newline="",
    )
    pages = read(stream(tmp_path))
    assert ids(pages) == ["o1"]
    assert pages[0].records[0].payload["note"] == "line one\nline two\r\nline three"
    assert pages[-1].errors == ["orders.csv:5: amount: not a number (decimal '.'): 'x'"]


def test_error_messages_are_capped_per_file_but_every_bad_row_counted(tmp_path: Path) -> None:
    n = csv_source.MAX_ERRORS_PER_FILE + 30
    (tmp_path / "orders.csv").write_text(
        ORDERS_HEADER + "".join(f"o{i},a@x.io,2024-01-01,bad\n" for i in range(n))
    )
    pages = read(stream(tmp_path, page_size=40))
    assert sum(p.skipped for p in pages) == n
    messages = [e for p in pages for e in p.errors]
    assert len(messages) == csv_source.MAX_ERRORS_PER_FILE
    assert messages[0].startswith("orders.csv:2: amount:") and messages[-1].startswith(
        "orders.csv:101: amount:"
    )


# --- pages and state


def test_pages_every_page_size_rows_with_a_resumable_state(tmp_path: Path) -> None:
    (tmp_path / "orders.csv").write_text(orders(5))
    pages = read(stream(tmp_path, page_size=2))
    assert [len(p.records) for p in pages] == [2, 2, 1]
    digest = pages[0].state["current"]["sha256"]  # type: ignore[index]
    assert pages[0].state == {"files": {}, "current": {"path": "orders.csv", "sha256": digest, "row": 2}}
    assert pages[-1].state == {"files": {"orders.csv": {"sha256": digest, "done": True}}, "current": None}


@pytest.fixture(scope="module")
def three_files(tmp_path_factory: pytest.TempPathFactory) -> Path:
    base = tmp_path_factory.mktemp("resume")
    (base / "orders-1.csv").write_text(orders(7))
    (base / "orders-2.csv").write_text(ORDERS_HEADER)  # header only
    (base / "orders-3.csv").write_text(orders(23, start=100).replace("o105,", "o105,bad-email,x,"))
    return base


@settings(max_examples=60, deadline=None)
@given(page_size=st.integers(1, 12), crash_after=st.integers(0, 40))
def test_resuming_from_any_committed_page_yields_exactly_the_rest(
    three_files: Path, page_size: int, crash_after: int
) -> None:
    s = stream(three_files, page_size=page_size)
    everything = read(s)
    all_ids = ids(everything)
    assert len(all_ids) == len(set(all_ids)) == 7 + 22
    crash_after = min(crash_after, len(everything) - 1)
    committed = everything[: crash_after + 1]
    resumed = read(s, committed[-1].state)
    assert ids(committed) + ids(resumed) == all_ids  # no loss, no duplicate, same order
    assert sum(p.skipped for p in committed + resumed) == 1
    assert resumed == [] or resumed[-1].state == everything[-1].state


def test_unchanged_files_are_skipped_and_changed_ones_read_again(tmp_path: Path) -> None:
    (tmp_path / "orders-a.csv").write_text(orders(3))
    (tmp_path / "orders-b.csv").write_text(orders(2, start=10))
    s = stream(tmp_path)
    state = read(s)[-1].state
    assert read(s, state) == []
    (tmp_path / "orders-b.csv").write_text(orders(3, start=10))  # an export that grew
    again = read(s, state)
    assert ids(again) == ["o10", "o11", "o12"]  # the whole changed file; the store upserts o10, o11
    assert read(s, again[-1].state) == []
    assert ids(read(s, again[-1].state, full=True)) == ["o0", "o1", "o2", "o10", "o11", "o12"]


def test_a_file_changed_after_a_crash_is_read_from_the_top(tmp_path: Path) -> None:
    (tmp_path / "orders.csv").write_text(orders(6))
    s = stream(tmp_path, page_size=2)
    crashed_at = read(s)[0].state
    (tmp_path / "orders.csv").write_text(orders(6).replace("o4,", "o4x,"))
    assert ids(read(s, crashed_at)) == ["o0", "o1", "o2", "o3", "o4x", "o5"]


def test_files_no_longer_matched_are_dropped_from_the_state(tmp_path: Path) -> None:
    (tmp_path / "orders-a.csv").write_text(orders(1))
    (tmp_path / "orders-b.csv").write_text(orders(1, start=0))
    s = stream(tmp_path)
    state = read(s)[-1].state
    assert state is not None and set(state["files"]) == {"orders-a.csv", "orders-b.csv"}
    (tmp_path / "orders-a.csv").unlink()
    (tmp_path / "orders-c.csv").write_text(orders(2))
    state = read(s, state)[-1].state
    assert state is not None and set(state["files"]) == {"orders-b.csv", "orders-c.csv"}


def test_an_empty_file_is_remembered_as_read(tmp_path: Path) -> None:
    (tmp_path / "orders.csv").write_text("")
    pages = read(stream(tmp_path))
    assert [(p.records, p.skipped) for p in pages] == [([], 0)]
    assert read(stream(tmp_path), pages[-1].state) == []


def test_a_garbled_state_is_read_as_no_state(tmp_path: Path) -> None:
    (tmp_path / "orders.csv").write_text(orders(2))
    assert ids(read(stream(tmp_path), {"files": "nonsense", "current": 3})) == ["o0", "o1"]


# --- files, headers, formats


def test_missing_files_and_empty_globs_are_config_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        read(stream(tmp_path, path="exports/orders.csv"))
    assert info.value.field == "sources.shop.files.0.path"
    assert f"file not found: {tmp_path / 'exports/orders.csv'}" in str(info.value)
    with pytest.raises(ConfigError, match=r"no file matches .*allow_empty"):
        read(stream(tmp_path, path="exports/*.csv"))
    assert read(stream(tmp_path, path="exports/*.csv", allow_empty=True)) == []


def test_paths_are_relative_to_the_config_folder_and_globs_sorted(tmp_path: Path) -> None:
    (tmp_path / "exports" / "2024").mkdir(parents=True)
    for name in ("b", "a", "c"):
        (tmp_path / "exports" / "2024" / f"orders-{name}.csv").write_text(
            orders(1, start=0).replace("o0", name)
        )
    s = stream(tmp_path, path="exports/**/orders-*.csv")
    assert ids(read(s)) == ["a", "b", "c"]
    assert list(read(s)[-1].state["files"]) == [  # type: ignore[index]
        "exports/2024/orders-a.csv",
        "exports/2024/orders-b.csv",
        "exports/2024/orders-c.csv",
    ]


def test_header_mismatch_is_a_config_error_with_did_you_mean(tmp_path: Path) -> None:
    (tmp_path / "orders.csv").write_text("Order ID,Email,Date,Amount\no1,a@x.io,2024-01-01,1\n")
    s = stream(tmp_path, columns={"id": "OrderID", "occurred_at": "Dates"})
    with pytest.raises(ConfigErrors) as info:
        read(s)
    where = "orders.csv:1: sources.shop.files.0.columns"
    assert str(info.value).splitlines() == [
        f"{where}.id: no column 'OrderID' in the header (did you mean 'Order ID'?)",
        f"{where}.occurred_at: no column 'Dates' in the header (did you mean 'Date'?)",
    ]


def test_check_reports_every_entry_at_once(tmp_path: Path) -> None:
    (tmp_path / "orders.csv").write_text("id,email,occurred,amount\n")
    (tmp_path / "contacts.csv").write_text("id,email\n")
    good = make_source(
        tmp_path,
        {"kind": "orders", "path": "orders.csv", "columns": {"occurred_at": "occurred"}},
        {"kind": "contacts", "path": "contacts.csv"},
    )
    good.check()
    bad = make_source(
        tmp_path, {"kind": "orders", "path": "orders.csv"}, {"kind": "events", "path": "none.csv"}
    )
    with pytest.raises(ConfigErrors) as info:
        bad.check()
    assert [e.field for e in info.value.errors] == [
        "sources.shop.files.0.columns.occurred_at",
        "sources.shop.files.1.path",
    ]
    assert "did you mean 'occurred'?" in str(info.value)
    bad.close()


@pytest.mark.parametrize("encoding", ["latin-1", "cp1252", "utf-8-sig", "utf-8"])
def test_encodings_and_semicolons(tmp_path: Path, encoding: str) -> None:
    text = "Kundennr;E-Mail;Vorname;Nachname;Ort;Newsletter\nK1;jö@beispiel.de;Jörg;Müßig;Köln;ja\n"
    (tmp_path / "kunden.csv").write_text(text, encoding=encoding)
    source = make_source(
        tmp_path,
        {
            "kind": "contacts",
            "path": "kunden.csv",
            "delimiter": ";",
            "encoding": encoding,
            "columns": {
                "id": "Kundennr",
                "email": "E-Mail",
                "first_name": "Vorname",
                "last_name": "Nachname",
                "city": "Ort",
                "consent": "Newsletter",
            },
            "consent_values": {"ja": "granted"},
        },
    )
    source.check()
    (record,) = [r for p in source.streams()[0].read(None) for r in p.records]
    assert record.person is not None
    assert (record.external_id, record.person.last_name, record.person.properties["city"]) == (
        "K1",
        "Müßig",
        "Köln",
    )
    assert record.person.consent == "granted"


def test_a_bom_is_tolerated_even_when_reading_as_utf_8(tmp_path: Path) -> None:
    (tmp_path / "orders.csv").write_text(orders(1), encoding="utf-8-sig")
    assert ids(read(stream(tmp_path))) == ["o0"]


def test_undecodable_bytes_are_a_config_error_naming_the_line(tmp_path: Path) -> None:
    body = orders(3).encode() + "o9,ä@x.io,2024-01-01,1\n".encode("latin-1")
    (tmp_path / "orders.csv").write_bytes(body)
    with pytest.raises(ConfigError) as info:
        read(stream(tmp_path))
    assert info.value.location == "orders.csv:5"
    assert info.value.field == "sources.shop.files.0.encoding"
    assert "not valid utf-8 (byte 0xe4)" in str(info.value)
