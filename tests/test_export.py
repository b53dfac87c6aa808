"""`hub export segment|people|scores`: what is exported equals what the store holds, on SQLite and PostgreSQL,
people who objected to profiling get no scores, files are replaced atomically, and memory stays bounded."""

from __future__ import annotations

import csv
import io
import json
import sys
import tracemalloc
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from hub.redact import clear_secrets
from hub.store import Store, open_store
from hub.store import models as m

from .cli_support import all_output, invoke

AS_OF = "2026-11-01"  # the seeded business's "today"


@pytest.fixture(autouse=True)
def _in_tmp(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[None]:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("HUB_CONFIG", raising=False)
    yield
    clear_secrets()


@dataclass
class Filled:
    """A demo business synced and segmented into the store at ``url``, then edited (see :func:`filled`)."""

    config: Path
    url: str
    objected: int  # scored and segmented, then objected to profiling (no re-evaluation since)
    merged: int  # a member merged into another person since
    held_out: tuple[int, str]  # (person, segment): a held-out stay

    def args(self, *args: str) -> list[str]:
        return ["export", *args, "--config", str(self.config)]


@pytest.fixture
def filled(store_url: str, tmp_path: Path) -> Filled:
    from hub.demo import prepare_demo

    workspace = prepare_demo(tmp_path / "demo", contacts=200, seed=11)
    text = workspace.config.read_text(encoding="utf-8")
    workspace.config.write_text(text.replace("url: sqlite:///hub.db", f"url: {json.dumps(store_url)}"), "utf-8")
    for args in (["sync"], ["segment", "--as-of", AS_OF]):
        result = invoke([*args, "--config", str(workspace.config)])
        assert result.exit_code == 0, all_output(result)
    sm, p, s = m.segment_membership, m.person, m.person_score
    store = open_store(store_url)
    try:
        with store.engine.begin() as conn:
            members = conn.execute(
                sa.select(sm.c.person_id, sm.c.segment).join(s, s.c.person_id == sm.c.person_id)
                .where(sm.c.exited_at.is_(None)).order_by(sm.c.person_id, sm.c.segment)
            ).all()
            objected, merged, (held, segment) = members[0][0], members[-1][0], members[len(members) // 2]
            assert len({objected, merged, held}) == 3
            conn.execute(sa.update(p).where(p.c.id == objected).values(consent="objected"))
            conn.execute(sa.update(p).where(p.c.id == merged).values(merged_into=held))
            conn.execute(sa.update(sm).where(sm.c.person_id == held, sm.c.segment == segment).values(held_out=True))
    finally:
        store.close()
    return Filled(workspace.config, store_url, objected, merged, (held, segment))


def _read(url: str, stmt: sa.Select[Any]) -> list[Any]:
    store = open_store(url)
    try:
        with store.engine.connect() as conn:
            return list(conn.execute(stmt).mappings())
    finally:
        store.close()


def _csv(text: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(text)))


def _lines(text: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in text.splitlines()]


def _iso(value: datetime | None) -> str:
    return "" if value is None else value.isoformat()


def _sources(url: str) -> dict[int, list[str]]:
    i = m.identity
    out: dict[int, list[str]] = {}
    for row in _read(url, sa.select(i).where(i.c.deleted.is_(False), i.c.external_id.is_not(None))):
        out.setdefault(row["person_id"], []).append(f"{row['source']}:{row['external_id']}")
    return {k: sorted(v) for k, v in out.items()}


# ----------------------------------------------------------------------------------------------- segment


def test_segment_export_is_the_open_stays_with_profile_fields(filled: Filled) -> None:
    sm, p, f, s = m.segment_membership, m.person, m.person_feature, m.person_score
    held_person, segment = filled.held_out
    stays = _read(filled.url, sa.select(sm, p.c.email, p.c.merged_into, p.c.consent)
                  .join(p, p.c.id == sm.c.person_id).where(sm.c.segment == segment, sm.c.exited_at.is_(None)))
    expected = {r["person_id"]: r for r in stays if r["merged_into"] is None and r["consent"] != "objected"}
    assert held_person in expected
    features = {r["person_id"]: r for r in _read(filled.url, sa.select(f))}
    scores = {r["person_id"]: r for r in _read(filled.url, sa.select(s))}
    sources = _sources(filled.url)

    result = invoke(filled.args("segment", segment))
    assert result.exit_code == 0, all_output(result)
    rows = _csv(result.stdout)
    assert [int(r["person_id"]) for r in rows] == sorted(expected)  # every member once, by person id
    for row in rows:
        pid = int(row["person_id"])
        stay, feature, score = expected[pid], features[pid], scores[pid]
        assert row["email"] == (stay["email"] or "")
        assert row["entered_at"] == _iso(stay["entered_at"])
        assert row["held_out"] == ("true" if pid == held_person else "false")
        assert row["sources"].split(";") == sources[pid]
        assert Decimal(row["total_spend"]) == feature["monetary"]
        assert int(row["orders"]) == feature["orders"]
        assert row["last_order_at"] == _iso(feature["last_order_at"])
        assert row["rfm_segment"] == (score["rfm_segment"] or "")
        assert (float(row["clv"]) if row["clv"] else None) == score["clv"]
        assert (float(row["churn_probability"]) if row["churn_probability"] else None) == score["churn_probability"]

    as_json = invoke(filled.args("segment", segment, "--json"))
    assert as_json.exit_code == 0, all_output(as_json)
    objects = _lines(as_json.stdout)
    assert [o["person_id"] for o in objects] == sorted(expected)
    for obj, row in zip(objects, rows, strict=True):
        assert list(obj) == list(row)  # the same columns in the same order
        assert obj["sources"] == row["sources"].split(";")
        assert obj["held_out"] is (row["held_out"] == "true")
        assert obj["total_spend"] == float(row["total_spend"])
        assert obj["clv"] == (float(row["clv"]) if row["clv"] else None)
        assert obj["entered_at"] == row["entered_at"]


def test_objected_and_merged_members_are_not_exported(filled: Filled) -> None:
    sm = m.segment_membership
    for pid in (filled.objected, filled.merged):
        open_stays = _read(filled.url, sa.select(sm.c.segment).where(sm.c.person_id == pid, sm.c.exited_at.is_(None)))
        segment = open_stays[0]["segment"]  # the stay is still open in the store...
        result = invoke(filled.args("segment", segment, "--json"))
        assert result.exit_code == 0, all_output(result)
        assert pid not in {o["person_id"] for o in _lines(result.stdout)}  # ...but not exported


def test_an_unknown_segment_is_one_line_and_exit_2_and_leaves_out_alone(filled: Filled, tmp_path: Path) -> None:
    target = tmp_path / "vip.csv"
    target.write_text("earlier export\n", encoding="utf-8")
    result = invoke(filled.args("segment", "vipp", "--out", str(target)))
    assert result.exit_code == 2
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: no segment named 'vipp' in the store (segments: ")
    assert " vip" in lines[0]
    assert result.stdout == ""
    assert target.read_text(encoding="utf-8") == "earlier export\n"
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".vip")) == []


# ----------------------------------------------------------------------------------------------- people


def test_people_export_lists_every_live_person_with_their_segments(filled: Filled, tmp_path: Path) -> None:
    p, sm, f = m.person, m.segment_membership, m.person_feature
    people = {r["id"]: r for r in _read(filled.url, sa.select(p).where(p.c.merged_into.is_(None),
                                                                        p.c.deleted.is_(False)))}
    assert filled.merged not in people and filled.objected in people
    segments: dict[int, list[str]] = {}
    held: dict[int, list[str]] = {}
    for r in _read(filled.url, sa.select(sm).where(sm.c.exited_at.is_(None))):
        (held if r["held_out"] else segments).setdefault(r["person_id"], []).append(r["segment"])
    features = {r["person_id"]: r for r in _read(filled.url, sa.select(f))}
    sources = _sources(filled.url)

    out = tmp_path / "people.jsonl"
    result = invoke(filled.args("people", "--json", "--out", str(out)))
    assert result.exit_code == 0, all_output(result)
    assert result.stdout == f"wrote {len(people):,} people to {out}\n"
    assert [q.name for q in tmp_path.iterdir() if q.name.endswith(".tmp")] == []  # the temp file was renamed
    objects = _lines(out.read_text(encoding="utf-8"))
    assert [o["person_id"] for o in objects] == sorted(people)
    held_person, held_segment = filled.held_out
    for obj in objects:
        pid = obj["person_id"]
        assert obj["email"] == people[pid]["email"] and obj["phone"] == people[pid]["phone"]
        assert obj["sources"] == sources.get(pid, [])
        if pid == filled.objected:
            # Objected to profiling: contact fields only, no features, scores or segments.
            assert obj["consent"] == "objected"
            assert pid in features and segments.get(pid)  # the store still holds them (no evaluation since)
            assert [obj[k] for k in ("orders", "total_spend", "rfm_segment", "clv", "churn_probability")] == [None] * 5
            assert obj["segments"] == [] and obj["held_out_segments"] == []
            continue
        assert obj["segments"] == sorted(segments.get(pid, []))
        assert obj["held_out_segments"] == sorted(held.get(pid, []))
        assert obj["orders"] == (features[pid]["orders"] if pid in features else None)
    assert held_segment in next(o for o in objects if o["person_id"] == held_person)["held_out_segments"]

    as_csv = invoke(filled.args("people"))
    assert as_csv.exit_code == 0, all_output(as_csv)
    rows = _csv(as_csv.stdout)
    assert [int(r["person_id"]) for r in rows] == sorted(people)
    assert [r["segments"] for r in rows] == [";".join(o["segments"]) for o in objects]


# ----------------------------------------------------------------------------------------------- scores


def _expected_scores(filled: Filled) -> dict[int, dict[str, Any]]:
    p, f, s = m.person, m.person_feature, m.person_score
    stored = _read(filled.url, sa.select(s, *(c for c in f.columns if c.name != "person_id"))
                   .join(p, p.c.id == s.c.person_id).outerjoin(f, f.c.person_id == s.c.person_id)
                   .where(p.c.merged_into.is_(None), p.c.deleted.is_(False), p.c.consent != "objected"))
    return {r["person_id"]: dict(r) for r in stored}


def test_scores_export_has_every_score_and_feature_column(filled: Filled) -> None:
    expected = _expected_scores(filled)
    assert expected and filled.objected not in expected and filled.merged not in expected
    result = invoke(filled.args("scores"))
    assert result.exit_code == 0, all_output(result)
    rows = _csv(result.stdout)
    columns = [c.name for c in m.person_score.columns] + [c.name for c in m.person_feature.columns][1:]
    assert list(rows[0]) == columns
    assert [int(r["person_id"]) for r in rows] == sorted(expected)
    for row in rows:
        want = expected[int(row["person_id"])]
        for name, value in want.items():
            if value is None:
                assert row[name] == "", name
            elif isinstance(value, datetime):
                assert row[name] == value.isoformat(), name
            elif isinstance(value, Decimal):
                assert Decimal(row[name]) == value, name
            else:
                assert type(value)(row[name]) == value, name  # floats round-trip through their repr


def test_scores_export_as_parquet_equals_the_store(filled: Filled, tmp_path: Path) -> None:
    import pyarrow.parquet as pq

    expected = _expected_scores(filled)
    out = tmp_path / "scores.parquet"
    result = invoke(filled.args("scores", "--parquet", "--out", str(out)))
    assert result.exit_code == 0, all_output(result)
    table = pq.read_table(out)
    assert str(table.schema.field("scored_at").type) == "timestamp[us, tz=UTC]"
    assert str(table.schema.field("monetary").type) == "double"
    got = table.to_pylist()
    assert [r["person_id"] for r in got] == sorted(expected)
    for row in got:
        want = expected[row["person_id"]]
        assert set(row) == set(want)
        for name, value in want.items():
            if isinstance(value, datetime):
                assert row[name] == value and row[name].utcoffset() == value.utcoffset(), name
            elif isinstance(value, Decimal):
                assert row[name] == float(value), name
            else:
                assert row[name] == value, name
    piped = invoke(filled.args("scores", "--parquet"))  # to stdout (redirected), the same bytes' content
    assert piped.exit_code == 0, all_output(piped)
    assert pq.read_table(io.BytesIO(piped.stdout_bytes)).to_pylist() == got


def test_parquet_without_pyarrow_says_how_to_install_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pyarrow", None)  # an import of it now raises ImportError
    monkeypatch.setitem(sys.modules, "pyarrow.parquet", None)
    result = invoke(["export", "scores", "--parquet", "--out", "scores.parquet"])
    assert result.exit_code == 2
    assert result.stderr == "error: --parquet needs pyarrow: pip install 'audience-hub[parquet]'\n"
    assert not Path("scores.parquet").exists()


def test_two_format_flags_are_a_usage_error() -> None:
    result = invoke(["export", "people", "--csv", "--json"])
    assert result.exit_code == 2 and result.stderr == "error: choose one of --csv, --json\n"


# ----------------------------------------------------------------------------------------------- streaming


def _fill(store: Store, people: int) -> None:
    """``people`` people with an identity, features, scores and one stay each, straight into the tables."""
    now = "2026-11-01 00:00:00.000000"  # what SQLAlchemy stores on SQLite for a UTC time: naive text
    ids = range(1, people + 1)
    raw = store.engine.raw_connection()
    try:
        cur = raw.cursor()
        cur.execute("BEGIN IMMEDIATE")
        cur.executemany(
            "INSERT INTO person (id, email, first_name, last_name, phone, consent, deleted, created_at, changed_at) "
            "VALUES (?, ?, ?, ?, ?, 'granted', 0, ?, ?)",
            ((i, f"person{i}@example.com", f"First{i}", f"Last{i}", f"+49 30 {i:07d}", now, now) for i in ids),
        )
        cur.executemany(
            "INSERT INTO identity (person_id, source, external_id, email, consent, seen, deleted, created_at, "
            "updated_at) VALUES (?, 'shop', ?, ?, 'granted', 1, 0, ?, ?)",
            ((i, f"C{i:08d}", f"person{i}@example.com", now, now) for i in ids),
        )
        # Every feature column: counts and sums are NOT NULL (0 when nothing happened), the rest may be NULL.
        columns = [c for c in m.person_feature.columns if c.name not in ("person_id", "as_of")]
        given = {"orders": lambda i: i % 7, "monetary": lambda i: i * 1.25, "last_order_at": lambda i: now}
        default = {c.name: None if c.nullable else 0 for c in columns}
        cur.executemany(
            f"INSERT INTO person_feature (person_id, as_of, {', '.join(c.name for c in columns)}) "
            f"VALUES (?, ?{', ?' * len(columns)})",
            ((i, now, *(given[c.name](i) if c.name in given else default[c.name] for c in columns)) for i in ids),
        )
        cur.executemany(
            "INSERT INTO person_score (person_id, scored_at, rfm_segment, clv, churn_probability) "
            "VALUES (?, ?, 'loyal', ?, 0.5)",
            ((i, now, i / 3) for i in ids),
        )
        cur.executemany(
            "INSERT INTO segment_membership (person_id, segment, entered_at, held_out) VALUES (?, 'all', ?, 0)",
            ((i, now) for i in ids),
        )
        cur.execute("COMMIT")
    finally:
        raw.close()


class Sink(io.TextIOBase):
    """A text stream that counts what is written and keeps nothing (so it adds no memory of its own)."""

    def __init__(self) -> None:
        self.lines = 0

    def write(self, text: str) -> int:
        self.lines += text.count("\n")
        return len(text)


def _peak(fn: Any) -> tuple[Any, int]:
    """fn()'s result and the peak of Python memory allocated while it ran, in bytes."""
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        before = tracemalloc.get_traced_memory()[0]
        out = fn()
        return out, tracemalloc.get_traced_memory()[1] - before
    finally:
        tracemalloc.stop()


def test_exports_stream_in_bounded_memory(tmp_path: Path) -> None:
    from hub import export

    # tracemalloc slows every allocation down several times: 12,000 people in chunks of 400 keep the test at a
    # few seconds and still leave 30 chunks, so an export that holds all its rows needs many times a streamed one.
    people, chunk = 12_000, 400
    store = open_store(f"sqlite:///{tmp_path / 'big.db'}")
    try:
        _fill(store, people)
        # What holding every row at once costs: the person rows alone, fetched in one go.
        p = m.person
        with store.engine.connect() as conn:
            _, all_at_once = _peak(lambda: conn.execute(sa.select(p)).all())
        for name, run in [
            ("people", lambda sink: export.export_people(store, sink, "json", chunk)),
            ("segment", lambda sink: export.export_segment(store, "all", sink, "csv", chunk)),
            ("scores", lambda sink: export.export_scores(store, sink, "csv", chunk)),
        ]:
            sink = Sink()
            count, peak = _peak(lambda run=run, sink=sink: run(sink))
            assert count == people, name
            assert sink.lines in (people, people + 1), name  # JSON Lines, or CSV with its header
            # A chunk of 400 rows with its lookups is under 2 MB; the person rows alone, all at once, 11 MB.
            assert peak < 4_000_000, f"{name}: peak {peak:,} bytes"
            assert peak < all_at_once / 3, f"{name}: peak {peak:,} bytes, all rows at once {all_at_once:,}"
    finally:
        store.close()


def test_rows_are_fetched_and_looked_up_per_chunk(tmp_path: Path) -> None:
    from hub import export

    store = open_store(f"sqlite:///{tmp_path / 'hub.db'}")
    try:
        _fill(store, 1_050)
        statements: list[str] = []
        sa.event.listen(store.engine, "before_cursor_execute",
                        lambda _c, _cur, statement, *_a: statements.append(statement))
        sink = Sink()
        assert export.export_people(store, sink, "csv", chunk_rows=100) == 1_050
        # One query over the people, and per chunk of 100 one lookup each of sources, segments, held-out stays.
        assert sum("FROM person LEFT OUTER JOIN person_feature" in s for s in statements) == 1
        assert sum(s.lstrip().startswith("SELECT identity.person_id") for s in statements) == 11
        assert sum("FROM segment_membership" in s for s in statements) == 22
    finally:
        store.close()
