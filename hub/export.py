"""Streamed exports of the store: a segment's members, every person, and the per-customer scores.

Rows are read with one query per export, fetched ``chunk_rows`` at a time (a server-side cursor on PostgreSQL,
SQLite's own lazy stepping), and each chunk is written before the next is fetched, so memory stays bounded
however many people the store holds. The identities and segments of a chunk's people come from one extra
query each per chunk (``IN`` over the chunk's ids), never from a load of the whole table.

Formats:

- **CSV**: the ``csv`` module, a header line, ``\\n`` line ends; empty cell for unknown; ``true``/``false``;
  lists (sources, segments) joined with ``;``.
- **JSON**: JSON Lines, one object per person (no enclosing array, so a reader can stream it too); lists are
  arrays, money and scores are numbers, unknown is ``null``.
- **Parquet** (scores only): one row group per chunk through ``pyarrow`` (the optional ``parquet`` extra).

Times are ISO 8601 in UTC. Sources are ``source:external_id``. People who objected to profiling get no
features, scores or segments in any export (the segmentation never computes them, and an older stored row is
left out too); merged-away and deleted people are never exported. Nothing secret is read: no raw payloads,
no source properties, no config.
"""

from __future__ import annotations

import csv
import json
import os
import tempfile
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager, suppress
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import IO, Any, Literal

import sqlalchemy as sa
from sqlalchemy.engine import Connection
from sqlalchemy.sql.elements import ColumnElement

from hub.contracts import Consent
from hub.errors import ConfigError
from hub.store import Store
from hub.store import models as m

TextFormat = Literal["csv", "json"]
ScoresFormat = Literal["csv", "parquet"]
Row = tuple[Any, ...]

# Rows per fetch and per write: big enough that the per-chunk lookups are cheap, small enough that a chunk
# (with its identities and segments) stays a few MB.
CHUNK_ROWS = 2_000
# The person fields every person-level export starts with.
PERSON_COLUMNS = ("person_id", "email", "first_name", "last_name", "phone", "consent", "sources")
# The features and scores a marketer sorts and filters on, under names that say what they are.
PROFILE_COLUMNS = ("orders", "total_spend", "last_order_at", "rfm_segment", "clv", "churn_probability")
SEGMENT_COLUMNS = (*PERSON_COLUMNS, "entered_at", "held_out", *PROFILE_COLUMNS)
# Held-out members are kept apart: they are in a segment to measure its lift and must not be contacted.
PEOPLE_COLUMNS = (*PERSON_COLUMNS, *PROFILE_COLUMNS, "segments", "held_out_segments")
PARQUET_HINT = "--parquet needs pyarrow: pip install 'audience-hub[parquet]'"


# ----------------------------------------------------------------------------------------------- scope


def _live(p: sa.Table) -> ColumnElement[bool]:
    """A person a marketer may see: not merged into another, not deleted by every source."""
    return p.c.merged_into.is_(None) & p.c.deleted.is_(False)


def _profiled(p: sa.Table) -> ColumnElement[bool]:
    """A person whose features and scores may be shown: did not object to profiling."""
    return p.c.consent != Consent.OBJECTED.value


def _profile_join(p: sa.Table, base: Any) -> Any:
    """``base`` left-joined with the person's features and scores; the join condition itself drops them for
    people who objected, so no caller can forget to."""
    f, s = m.person_feature, m.person_score
    return base.outerjoin(f, (f.c.person_id == p.c.id) & _profiled(p)).outerjoin(
        s, (s.c.person_id == p.c.id) & _profiled(p)
    )


def _person_select(extra: Sequence[Any] = ()) -> list[Any]:
    p, f, s = m.person, m.person_feature, m.person_score
    return [
        p.c.id, p.c.email, p.c.first_name, p.c.last_name, p.c.phone, p.c.consent,
        *extra,
        f.c.orders, f.c.monetary, f.c.last_order_at, s.c.rfm_segment, s.c.clv, s.c.churn_probability,
    ]


# ----------------------------------------------------------------------------------------------- reading


@contextmanager
def _snapshot(store: Store) -> Iterator[Connection]:
    """A read-only connection that sees one state of the store for the whole export.

    PostgreSQL: REPEATABLE READ, so a segment evaluation committing half-way cannot tear the export.
    SQLite: the connection's one read transaction in WAL mode is a snapshot already.
    """
    with store.engine.connect() as conn:
        if conn.dialect.name == "postgresql":
            conn = conn.execution_options(isolation_level="REPEATABLE READ", postgresql_readonly=True)
        with conn.begin():
            yield conn


def _chunks(conn: Connection, stmt: sa.Select[Any], chunk_rows: int) -> Iterator[Sequence[Row]]:
    """The rows of ``stmt`` in chunks of at most ``chunk_rows``, fetched as they are consumed."""
    result = conn.execution_options(yield_per=chunk_rows).execute(stmt)
    for part in result.partitions(chunk_rows):
        yield [tuple(r) for r in part]


# The per-chunk lookups take the chunk's ids as one expanding parameter: the statement is built and compiled
# once (SQLAlchemy caches it), rather than coercing thousands of literals per chunk.
_IDS: sa.BindParameter[list[int]] = sa.bindparam("ids", expanding=True)


def _grouped(conn: Connection, stmt: sa.Select[Any], ids: Sequence[int]) -> dict[int, list[str]]:
    """person id -> the texts of ``stmt``'s (person_id, text) rows for the people ``ids``, in query order."""
    out: dict[int, list[str]] = {}
    if ids:
        for pid, text in conn.execute(stmt, {"ids": list(ids)}).all():
            out.setdefault(int(pid), []).append(str(text))
    return out


def _sources_stmt() -> sa.Select[Any]:
    """``source:external_id`` of each live identity of the people ``ids`` (key-only links included)."""
    i = m.identity
    label = i.c.source + ":" + i.c.external_id
    return sa.select(i.c.person_id, label).where(
        i.c.person_id.in_(_IDS), i.c.deleted.is_(False), i.c.external_id.is_not(None)
    ).order_by(i.c.person_id, i.c.source, i.c.external_id)


def _memberships_stmt(held_out: bool) -> sa.Select[Any]:
    """The segments the people ``ids`` are in now (held-out stays, or the others)."""
    sm = m.segment_membership
    return sa.select(sm.c.person_id, sm.c.segment).where(
        sm.c.person_id.in_(_IDS), sm.c.exited_at.is_(None), sm.c.held_out.is_(held_out)
    ).order_by(sm.c.person_id, sm.c.segment)


def known_segments(conn: Connection) -> list[str]:
    """The segments the store has evaluated or holds stays of, by name."""
    from segment_rules.report import RUN_WIDE

    r, sm = m.segment_run, m.segment_membership
    names = sa.union(
        sa.select(r.c.segment).where(r.c.segment != RUN_WIDE), sa.select(sm.c.segment)
    ).subquery()
    return [str(n) for n in conn.execute(sa.select(names.c.segment).order_by(names.c.segment)).scalars()]


def require_segment(store: Store, segment: str) -> None:
    """Raise a ConfigError listing the known segments when ``segment`` is not one of them."""
    with _snapshot(store) as conn:
        _check_segment(conn, segment)


def _check_segment(conn: Connection, segment: str) -> None:
    from segment_rules.report import RUN_WIDE

    # Two indexed look-ups; the full list (a scan of the stays) only for the error message.
    r, sm = m.segment_run, m.segment_membership
    found = sa.or_(sa.exists().where(r.c.segment == segment), sa.exists().where(sm.c.segment == segment))
    if segment != RUN_WIDE and conn.execute(sa.select(found)).scalar():
        return
    known = known_segments(conn)
    listed = ", ".join(known) if known else "none yet: run `hub segment` first"
    raise ConfigError(f"no segment named {segment!r} in the store (segments: {listed})")


def segment_rows(conn: Connection, segment: str, chunk_rows: int = CHUNK_ROWS) -> Iterator[Sequence[Row]]:
    """The open stays of ``segment``, by person id, in :data:`SEGMENT_COLUMNS` order.

    People who objected to profiling are left out: membership is the result of profiling (the evaluation
    closes their stays on its next run; until then they are not shown either).
    """
    p, sm = m.person, m.segment_membership
    stmt = (
        sa.select(*_person_select([sm.c.entered_at, sm.c.held_out]))
        .select_from(_profile_join(p, sm.join(p, p.c.id == sm.c.person_id)))
        .where(sm.c.segment == segment, sm.c.exited_at.is_(None), _live(p), _profiled(p))
        .order_by(sm.c.person_id)
    )
    sources_of = _sources_stmt()
    for chunk in _chunks(conn, stmt, chunk_rows):
        sources = _grouped(conn, sources_of, [r[0] for r in chunk])
        # person fields, sources, then the stay and profile fields as selected
        yield [(*r[:6], sources.get(r[0], []), *r[6:]) for r in chunk]


def people_rows(conn: Connection, chunk_rows: int = CHUNK_ROWS) -> Iterator[Sequence[Row]]:
    """Every live person, by id, in :data:`PEOPLE_COLUMNS` order (no profile or segments when they objected)."""
    p = m.person
    stmt = sa.select(*_person_select()).select_from(_profile_join(p, p)).where(_live(p)).order_by(p.c.id)
    objected = Consent.OBJECTED.value
    sources_of, segments_of, held_of = _sources_stmt(), _memberships_stmt(False), _memberships_stmt(True)
    for chunk in _chunks(conn, stmt, chunk_rows):
        sources = _grouped(conn, sources_of, [r[0] for r in chunk])
        # Only the people who did not object can have segments to show: ask only about them.
        profiled = [r[0] for r in chunk if r[5] != objected]
        segments = _grouped(conn, segments_of, profiled)
        held = _grouped(conn, held_of, profiled)
        yield [
            (*r[:6], sources.get(r[0], []), *r[6:], segments.get(r[0], []), held.get(r[0], []))
            for r in chunk
        ]


def score_columns() -> tuple[str, ...]:
    """Every column of ``person_score``, then every column of ``person_feature`` but its person id."""
    return (
        *(c.name for c in m.person_score.columns),
        *(c.name for c in m.person_feature.columns if c.name != "person_id"),
    )


def score_rows(conn: Connection, chunk_rows: int = CHUNK_ROWS) -> Iterator[Sequence[Row]]:
    """Each scored person's ``person_score`` row with the features behind it, by id (:func:`score_columns`).

    Only people in scope: a stored score of someone merged away, deleted or objecting since is not exported.
    """
    p, f, s = m.person, m.person_feature, m.person_score
    features = [c for c in f.columns if c.name != "person_id"]
    stmt = (
        sa.select(*s.columns, *features)
        .select_from(s.join(p, p.c.id == s.c.person_id).outerjoin(f, f.c.person_id == s.c.person_id))
        .where(_live(p), _profiled(p))
        .order_by(s.c.person_id)
    )
    yield from _chunks(conn, stmt, chunk_rows)


# ----------------------------------------------------------------------------------------------- writing


def _csv_cell(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, bool):  # before int: bool is an int
        return "true" if value else "false"
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, list):
        return ";".join(str(v) for v in value)
    return value  # str, int, float (shortest repr), Decimal (its exact digits)


def _json_value(value: Any) -> Any:
    # json's `default` hook: only called for what json cannot write itself.
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, Decimal):
        return float(value)  # money as a number: what every JSON consumer expects
    raise TypeError(f"cannot write {type(value).__name__} as JSON")


def write_csv(columns: Sequence[str], chunks: Iterable[Sequence[Row]], out: IO[str]) -> int:
    """Write a header and every row of ``chunks`` as CSV; the number of rows."""
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(columns)
    count = 0
    for chunk in chunks:
        writer.writerows([_csv_cell(v) for v in row] for row in chunk)
        count += len(chunk)
    return count


def write_json_lines(columns: Sequence[str], chunks: Iterable[Sequence[Row]], out: IO[str]) -> int:
    """Write each row of ``chunks`` as one JSON object per line; the number of rows."""
    encode = json.JSONEncoder(default=_json_value, ensure_ascii=False).encode
    count = 0
    for chunk in chunks:
        out.write("".join(encode(dict(zip(columns, row, strict=True))) + "\n" for row in chunk))
        count += len(chunk)
    return count


def _writer(fmt: TextFormat) -> Callable[[Sequence[str], Iterable[Sequence[Row]], IO[str]], int]:
    return write_json_lines if fmt == "json" else write_csv


def require_pyarrow() -> None:
    """Raise a ConfigError with the install command when pyarrow is missing (checked before any work)."""
    try:
        import pyarrow.parquet  # noqa: F401
    except ImportError:
        raise ConfigError(PARQUET_HINT) from None


def _arrow_type(column: sa.Column[Any]) -> Any:
    """The Arrow type of a store column: money as float64 (for analysis tools), times as UTC microseconds."""
    import pyarrow as pa

    kind = column.type
    if isinstance(kind, m.UTCDateTime):
        return pa.timestamp("us", tz="UTC")
    if isinstance(kind, sa.Boolean):
        return pa.bool_()
    if isinstance(kind, sa.Integer):
        return pa.int64()
    if isinstance(kind, sa.Numeric | sa.Float):
        return pa.float64()
    return pa.string()


def write_parquet(chunks: Iterable[Sequence[Row]], out: IO[bytes]) -> int:
    """Write the rows of :func:`score_rows` as Parquet, one row group per chunk; the number of rows."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    f, s = m.person_feature, m.person_score
    stored = [*s.columns, *(c for c in f.columns if c.name != "person_id")]
    schema = pa.schema([pa.field(c.name, _arrow_type(c)) for c in stored])
    money = [i for i, c in enumerate(stored) if isinstance(c.type, sa.Numeric) and c.type.asdecimal]
    count = 0
    with pq.ParquetWriter(out, schema) as writer:
        for chunk in chunks:
            columns = [list(col) for col in zip(*chunk, strict=True)]
            for i in money:
                columns[i] = [None if v is None else float(v) for v in columns[i]]
            writer.write_table(pa.Table.from_arrays(
                [pa.array(col, type=field.type) for col, field in zip(columns, schema, strict=True)], schema=schema
            ))
            count += len(chunk)
        if count == 0:
            writer.write_table(schema.empty_table())  # a readable file with the schema and no rows
    return count


# ----------------------------------------------------------------------------------------------- exports


def export_segment(
    store: Store, segment: str, out: IO[str], fmt: TextFormat = "csv", chunk_rows: int = CHUNK_ROWS
) -> int:
    """Write the members of ``segment`` to ``out``; the number of members written.

    Raises:
        ConfigError: no segment of that name was evaluated in this store (nothing is written).
    """
    with _snapshot(store) as conn:
        _check_segment(conn, segment)
        return _writer(fmt)(SEGMENT_COLUMNS, segment_rows(conn, segment, chunk_rows), out)


def export_people(store: Store, out: IO[str], fmt: TextFormat = "csv", chunk_rows: int = CHUNK_ROWS) -> int:
    """Write every live person with their profile and segments to ``out``; the number of people written."""
    with _snapshot(store) as conn:
        return _writer(fmt)(PEOPLE_COLUMNS, people_rows(conn, chunk_rows), out)


def export_scores(
    store: Store, out: IO[Any], fmt: ScoresFormat = "csv", chunk_rows: int = CHUNK_ROWS
) -> int:
    """Write every scored person's scores and features to ``out`` (a text stream for CSV, a binary one for
    Parquet); the number of rows written."""
    with _snapshot(store) as conn:
        chunks = score_rows(conn, chunk_rows)
        if fmt == "parquet":
            return write_parquet(chunks, out)
        return write_csv(score_columns(), chunks, out)


@contextmanager
def atomic_output(path: Path, *, binary: bool = False) -> Iterator[IO[Any]]:
    """A file that becomes ``path`` only when the block ends without an error (temp file + rename).

    A failed or interrupted export leaves an existing ``path`` as it was and no partial file behind. The file
    is created readable by its owner only (it holds personal data), as :func:`tempfile.mkstemp` makes it.
    """
    folder = path.parent
    if not folder.is_dir():
        raise ConfigError(f"folder {folder} does not exist", field="--out")
    if path.is_dir():
        raise ConfigError(f"{path} is a folder", field="--out")
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{path.name}.", suffix=".tmp")
    try:
        # newline="": the writers choose their own line ends.
        with os.fdopen(fd, "wb") if binary else os.fdopen(fd, "w", encoding="utf-8", newline="") as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())  # the data is on disk before the name points at it
        os.replace(tmp, path)
    except BaseException:
        with suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
