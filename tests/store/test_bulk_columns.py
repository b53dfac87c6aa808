"""Rows given column by column (numpy arrays; binary COPY on PostgreSQL) are stored exactly as SQLAlchemy Core
stores the same values given one by one."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import numpy as np
import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hub.store import Store, open_store, pgcopy
from hub.store import models as m
from hub.store.bulk import Column, for_dialect

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
MICROS = st.integers(-2_208_988_800_000_000, 7_258_118_400_000_000)  # 1900 to 2200
TEXT = st.text(st.characters(codec="utf-8", exclude_characters="\x00"), max_size=30)  # PostgreSQL text holds no NUL


def _tables(metadata: sa.MetaData) -> tuple[sa.Table, sa.Table]:
    def table(name: str) -> sa.Table:
        return sa.Table(
            name,
            metadata,
            sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
            sa.Column("big", sa.BigInteger),
            sa.Column("small", sa.SmallInteger),
            sa.Column("ratio", sa.Float),
            sa.Column("amount", m.Money),
            sa.Column("at", m.UTCDateTime()),
            sa.Column("label", sa.String(40)),
        )

    return table("bulk_columns_a"), table("bulk_columns_b")


@pytest.fixture
def tables(store_url: str) -> Any:
    store = open_store(store_url)
    metadata = sa.MetaData()
    a, b = _tables(metadata)
    metadata.create_all(store.engine)
    try:
        yield store, a, b
    finally:
        store.close()


rows = st.lists(
    st.tuples(
        st.none() | st.integers(-(2**63), 2**63 - 1),
        st.none() | st.integers(-(2**15), 2**15 - 1),
        st.none() | st.floats(allow_nan=False, allow_infinity=False),
        st.none() | st.floats(-(10.0**13), 10.0**13, allow_nan=False),
        st.none() | MICROS,
        st.none() | TEXT,
    ),
    min_size=1,
    max_size=40,
)


def _null_mask(values: list[Any]) -> Any:
    return np.array([v is None for v in values], dtype=bool)


def _as_core(row: tuple[Any, ...]) -> dict[str, Any]:
    big, small, ratio, amount, at, label = row
    return {
        "big": big,
        "small": small,
        "ratio": ratio,
        # The text the float path writes: rounded to the column's 4 decimals, shortest repr.
        "amount": None if amount is None else Decimal(repr(float(np.round(amount, 4)))),
        "at": None if at is None else EPOCH + timedelta(microseconds=at),
        "label": label,
    }


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(rows)
def test_columns_are_stored_as_core_stores_the_values(
    tables: tuple[Store, sa.Table, sa.Table], data: list[Any]
) -> None:
    store, a, b = tables
    ids = list(range(len(data)))
    big, small, ratio, amount, at, label = (list(c) for c in zip(*data, strict=True))
    columns = {
        "id": Column(np.array(ids, dtype=np.int64)),
        "big": Column(np.array([v or 0 for v in big], dtype=np.int64), _null_mask(big)),
        "small": Column(np.array([v or 0 for v in small], dtype=np.int64), _null_mask(small)),
        "ratio": Column(np.array([np.nan if v is None else v for v in ratio]), _null_mask(ratio)),
        "amount": Column(np.array([0.0 if v is None else v for v in amount]), _null_mask(amount)),
        "at": Column(np.array([v or 0 for v in at], dtype=np.int64), _null_mask(at)),
        "label": Column(label),
    }
    with store.engine.begin() as conn:
        conn.execute(sa.delete(a))
        conn.execute(sa.delete(b))
        for_dialect(conn.dialect).insert_columns(conn, a, columns)
        conn.execute(sa.insert(b), [{"id": i, **_as_core(row)} for i, row in zip(ids, data, strict=True)])
    with store.engine.connect() as conn:
        got = conn.execute(sa.select(a).order_by(a.c.id)).all()
        want = conn.execute(sa.select(b).order_by(b.c.id)).all()
    assert got == want


def test_values_outside_the_column_are_refused(tables: tuple[Store, sa.Table, sa.Table]) -> None:
    """By the server, as for rows given one by one: the encoder leaves what it cannot send to the row path."""
    store, a, _ = tables
    if store.engine.dialect.name != "postgresql":
        pytest.skip("SQLite stores any integer")
    for column in ({"small": Column(np.array([2**15]))}, {"amount": Column(np.array([np.inf]))}):
        with store.engine.begin() as conn, pytest.raises(sa.exc.DataError):
            for_dialect(conn.dialect).insert_columns(conn, a, {"id": Column(np.array([1])), **column})


@pytest.mark.parametrize(
    ("pg_type", "values", "scale"),
    [("int2", [2**15], 0), ("int4", [-(2**31) - 1], 0), ("numeric", [np.nan], 4), ("numeric", [1e11], 4),
     ("numeric", [1.0], 6), ("uuid", [1], 0)],
)
def test_the_encoder_refuses_what_it_cannot_send_exactly(pg_type: str, values: list[Any], scale: int) -> None:
    with pytest.raises(pgcopy.Unencodable):
        pgcopy.field(pg_type, np.array(values), None, scale=scale)


def test_the_encoding_follows_the_documented_layout() -> None:
    fields = [pgcopy.field("int4", np.array([7, 0]), np.array([False, True])), pgcopy.field("text", ["é", None], None)]
    data = pgcopy.encode(fields, 2)
    assert data[:19] == b"PGCOPY\n\xff\r\n\x00" + bytes(8)
    row1 = b"\x00\x02" + b"\x00\x00\x00\x04" + b"\x00\x00\x00\x07" + b"\x00\x00\x00\x02" + "é".encode()
    row2 = b"\x00\x02" + b"\xff\xff\xff\xff" * 2
    assert data[19:] == row1 + row2 + b"\xff\xff"


@pytest.fixture
def pg_raw() -> Any:
    import os

    from tests.conftest import PG_ENV, PG_SKIP_REASON

    url = os.environ.get(PG_ENV)
    if not url:
        pytest.skip(PG_SKIP_REASON)
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            yield conn
    finally:
        engine.dispose()


def _copy_text(raw: Any, sql: str) -> bytes:
    return b"".join(bytes(b) for b in pgcopy.copy_out(raw, sql))


def test_copy_out_reads_the_whole_stream_in_the_transaction(pg_raw: sa.Connection) -> None:
    raw = pg_raw.connection.driver_connection
    pg_raw.exec_driver_sql("CREATE TEMPORARY TABLE copy_out_t AS SELECT g AS n FROM generate_series(1, 300000) AS g")
    data = _copy_text(raw, "COPY (SELECT n FROM copy_out_t ORDER BY n) TO STDOUT")
    assert data.split(b"\n")[:-1] == [str(i).encode() for i in range(1, 300001)]
    # The transaction goes on: the temporary table is still there, the connection takes statements.
    assert pg_raw.exec_driver_sql("SELECT count(*) FROM copy_out_t").scalar() == 300000


def test_copy_out_raises_the_server_error_and_a_stopped_reader_cancels(pg_raw: sa.Connection) -> None:
    import psycopg

    raw = pg_raw.connection.driver_connection
    with pytest.raises(psycopg.errors.DivisionByZero):
        _copy_text(raw, "COPY (SELECT 1 / (200000 - g) FROM generate_series(1, 300000) AS g) TO STDOUT")
    pg_raw.rollback()
    with pytest.raises(psycopg.ProgrammingError, match="not a COPY"):
        _copy_text(raw, "SELECT 1")
    pg_raw.rollback()
    pg_raw.exec_driver_sql("CREATE TEMPORARY TABLE copy_out_side AS SELECT g AS n FROM generate_series(1, 20000) AS g")
    # Four hundred million rows, streamed as they are made (a function scan would make them all first).
    blocks = pgcopy.copy_out(raw, "COPY (SELECT a.n FROM copy_out_side AS a, copy_out_side AS b) TO STDOUT")
    assert next(blocks)
    blocks.close()  # long before the end: the statement is cancelled, not read to the end
    pg_raw.rollback()
    assert pg_raw.exec_driver_sql("SELECT 42").scalar() == 42


MICROS = st.integers(
    (datetime(1, 1, 1) - datetime(1970, 1, 1)) // timedelta(microseconds=1),
    (datetime(9999, 12, 31, 23, 59, 59, 999999) - datetime(1970, 1, 1)) // timedelta(microseconds=1),
)


@settings(max_examples=200, deadline=None)
@given(
    st.one_of(
        st.lists(MICROS, max_size=30),  # spread over centuries: the table of distinct days
        st.builds(  # within a few days: the table of every day in the span
            lambda base, offsets: [base + o for o in offsets],
            st.integers(0, 2_000_000_000_000_000),
            st.lists(st.integers(0, 3 * 86_400_000_000), min_size=1, max_size=2_000),
        ),
    ),
    st.sampled_from([(" ", ""), ("T", "+00:00"), ("T", "")]),
)
def test_iso_text_is_what_isoformat_writes(values: list[int], layout: tuple[str, str]) -> None:
    from hub.store.bulk import iso_micros

    sep, suffix = layout
    epoch = datetime(1970, 1, 1)
    expected = [(epoch + timedelta(microseconds=v)).isoformat(sep, "microseconds") + suffix for v in values]
    assert iso_micros(np.array(values, dtype=np.int64), sep, suffix).tolist() == expected
