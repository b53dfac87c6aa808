"""Per-person features from one streamed pass over the activities, at one or more cutoffs at once.

Why streamed rather than one grouped SQL query: with some forty conditional aggregates per row, SQLite spends
about 3 µs per activity evaluating every CASE of every column, and PostgreSQL about 2.4 µs reading the rows in
person order through the index; reading the five columns the features need costs about 1 µs per row on either,
and numpy groups a chunk of rows in a small fraction of that. The churn model also needs the features at
several past cutoffs: one pass feeds all of them, where SQL would aggregate the activities once per cutoff.

The database does what it does cheaply: filter (not deleted, at or before the latest cutoff, the people asked
for), turn each row into a small kind code (:data:`KIND_ORDER` ... ; cancelled and refunded orders get
:data:`KIND_VOID` and count nowhere but in the first activity), a time in microseconds since the epoch and the
amount. Rows arrive in chunks of :data:`CHUNK_ROWS`, in no particular order; every :class:`FeatureAccumulator`
adds the chunk's rows of its people with unbuffered ``ufunc.at`` updates, so memory is the per-person arrays
and one chunk, never the activities.

Only activities at or before a cutoff count for it, so features at a past cutoff are exactly what was known
then. The column meanings are those of :mod:`segment_rules.features`.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import closing
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

import numpy as np
import sqlalchemy as sa
from numpy.typing import NDArray
from sqlalchemy.engine import Connection, Dialect
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.elements import ColumnElement

from hub.contracts import ORDER_CANCELLED, ORDER_REFUNDED, SESSION_PAGE_VIEWS, ActivityType
from hub.store import models as m
from hub.store.pgcopy import HEADER as COPY_HEADER
from hub.store.pgcopy import PG_EPOCH_US, copy_out

from .fields import WINDOWS_DAYS

T = ActivityType
IntArray = NDArray[np.int64]
FloatArray = NDArray[np.float64]

CHUNK_ROWS = 100_000
_COMPACT_KEYS = 20_000_000  # pending order-day keys (8 bytes each) before they are de-duplicated
ID_CHUNK = 5_000  # person ids per IN list (SQLite binds at most 32,766 parameters)
DAY_US = 86_400_000_000
# Sentinels for "no such activity" in the first/last time columns (microseconds since the epoch).
NO_LAST = np.iinfo(np.int64).min
NO_FIRST = np.iinfo(np.int64).max

KIND_ORDER, KIND_VOID, KIND_OPEN, KIND_CLICK, KIND_BOUNCE, KIND_UNSUBSCRIBE, KIND_SESSION, KIND_WON, KIND_OTHER = (
    range(9)
)
_KINDS = {
    T.EMAIL_OPEN: KIND_OPEN,
    T.EMAIL_CLICK: KIND_CLICK,
    T.EMAIL_BOUNCE: KIND_BOUNCE,
    T.EMAIL_UNSUBSCRIBE: KIND_UNSUBSCRIBE,
    T.SESSION: KIND_SESSION,
    T.DEAL_WON: KIND_WON,
}


# ----------------------------------------------------------------------------------------------- SQL side


class ScanTime(ColumnElement[Any]):
    """A timestamp as a scan reads it: whole microseconds since the Unix epoch on PostgreSQL (exact: EXTRACT
    gives a numeric), the stored text on SQLite ("YYYY-MM-DD HH:MM:SS.ffffff"), which numpy parses faster
    than SQLite converts it (and exactly: SQLite's own clock keeps milliseconds). See :func:`to_micros`."""

    inherit_cache = True
    type = sa.String()

    def __init__(self, when: ColumnElement[Any]) -> None:
        self.when = when


@compiles(ScanTime, "sqlite")
def _scan_time_sqlite(element: ScanTime, compiler: SQLCompiler, **kw: Any) -> str:
    return str(compiler.process(element.when, **kw))


# Compiled with this keyword, a PostgreSQL ScanTime is the timestamp itself: binary COPY sends it as int64
# microseconds since 2000-01-01, free of charge, where the exact EXTRACT (numeric arithmetic) costs the server
# 6.7 of a 16.4 s scan of ten million rows.
NATIVE_TIMES = "hub_native_times"


@compiles(ScanTime, "postgresql")
def _scan_time_postgresql(element: ScanTime, compiler: SQLCompiler, **kw: Any) -> str:
    when = compiler.process(element.when, **kw)
    return when if kw.get(NATIVE_TIMES) else f"CAST(EXTRACT(EPOCH FROM {when}) * 1000000 AS BIGINT)"


def scan_time_dtype(dialect: Dialect) -> np.dtype[Any]:
    """How :class:`ScanTime` values load into numpy on ``dialect``."""
    return np.dtype("M8[us]") if dialect.name == "sqlite" else np.dtype(np.int64)


def to_micros(values: NDArray[Any]) -> IntArray:
    """:class:`ScanTime` values loaded with :func:`scan_time_dtype` as microseconds since the epoch."""
    return values.astype(np.int64) if values.dtype.kind == "M" else np.asarray(values, dtype=np.int64)


class Unindexed(ColumnElement[Any]):
    """``column`` as a value no index may serve, on SQLite (its documented unary ``+``; a no-op elsewhere).

    A full pass reads the table in storage order; left alone, SQLite's planner serves the time bound with a
    skip-scan of the (type, occurred_at) index and then fetches every row at random, three times slower.
    """

    inherit_cache = True

    def __init__(self, column: ColumnElement[Any]) -> None:
        self.column = column
        self.type = column.type


@compiles(Unindexed, "sqlite")
def _unindexed_sqlite(element: Unindexed, compiler: SQLCompiler, **kw: Any) -> str:
    return f"+{compiler.process(element.column, **kw)}"


@compiles(Unindexed)
def _unindexed_default(element: Unindexed, compiler: SQLCompiler, **kw: Any) -> str:
    return str(compiler.process(element.column, **kw))


def micros(value: datetime) -> int:
    """``value`` (aware, or naive UTC) in microseconds since the epoch."""
    value = value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    return micros_delta(value - datetime(1970, 1, 1, tzinfo=UTC))


def _flag(column: ColumnElement[Any], key: str) -> ColumnElement[bool]:
    # A missing attribute is false: most sources only set these flags on the orders they apply to.
    return sa.func.coalesce(column[key].as_boolean(), sa.false())


def voided(a: sa.Table) -> ColumnElement[bool]:
    """A cancelled or refunded activity (the ``cancelled`` / ``refunded`` attributes every connector sets)."""
    return _flag(a.c.attributes, ORDER_CANCELLED) | _flag(a.c.attributes, ORDER_REFUNDED)


def _kind(a: sa.Table) -> ColumnElement[int]:
    order = sa.case((a.c.attributes.is_(None), KIND_ORDER), (voided(a), KIND_VOID), else_=KIND_ORDER)
    whens: list[tuple[ColumnElement[bool], Any]] = [(a.c.type == T.ORDER.value, order)]
    whens += [(a.c.type == typ.value, code) for typ, code in _KINDS.items()]
    return sa.case(*whens, else_=KIND_OTHER)


def activity_rows(
    until: datetime, person_ids: Sequence[int] | None = None, every: int = 1
) -> sa.Select[Any]:
    """The rows a scan reads: person, kind, time (µs), amount, page views (sessions only)."""
    a = m.activity
    page_views = sa.case(
        (a.c.type == T.SESSION.value, sa.cast(a.c.attributes[SESSION_PAGE_VIEWS].as_float(), sa.Integer)),
        else_=None,
    )
    until_ = sa.literal(until, m.UTCDateTime())
    if person_ids is None:
        where = [Unindexed(a.c.person_id).is_not(None), Unindexed(a.c.occurred_at) <= until_]
    else:  # a few people: their rows through the person index
        where = [a.c.person_id.in_(person_ids), a.c.occurred_at <= until_]
    where.append(a.c.deleted.is_(False))
    if every > 1:
        where.append((a.c.person_id % every) == 0)
    return sa.select(
        a.c.person_id.label("p"),
        _kind(a).label("k"),
        ScanTime(a.c.occurred_at).label("t"),
        sa.cast(a.c.amount, sa.Float).label("a"),
        page_views.label("v"),
    ).where(*where)


@dataclass(frozen=True)
class Chunk:
    """Some activity rows as columns."""

    person: IntArray
    kind: NDArray[np.int8]
    at: IntArray  # µs since the epoch
    amount: FloatArray  # 0 where the row has none
    page_views: FloatArray  # NaN where unknown

    @classmethod
    def from_rows(cls, rows: Sequence[Sequence[Any]], time_dtype: np.dtype[Any]) -> Chunk:
        # One structured array straight from the tuples: numpy converts in C, None becomes NaN.
        dtype = np.dtype([("p", np.int64), ("k", np.int8), ("t", time_dtype), ("a", np.float64), ("v", np.float64)])
        data = np.array(rows, dtype=dtype)
        return cls(
            person=data["p"],
            kind=data["k"],
            at=to_micros(data["t"]),
            amount=np.nan_to_num(data["a"]),
            page_views=data["v"],
        )


def no_jit(conn: Connection) -> None:
    """On PostgreSQL, no JIT compilation until the transaction ends: a scan or a wide evaluation query runs
    each expression over a million rows once, and compiling the CASE trees first costs more than it saves
    (2.1 s of a 5.2 s evaluation statement at a million people)."""
    if conn.dialect.name == "postgresql":
        conn.exec_driver_sql("SET LOCAL jit = off")


def driver_rows(conn: Connection, stmt: sa.Select[Any]) -> Iterator[list[tuple[Any, ...]]]:
    """``stmt``'s rows as the driver gives them, in lists of :data:`CHUNK_ROWS`, never all in memory.

    Through the driver's own cursor (a server-side one on PostgreSQL): the columns read this way are plain
    numbers and strings that need no conversion, and numpy reads plain tuples several times faster than
    SQLAlchemy's Row objects. The statement's values (times, ids, attribute names) are rendered as SQL
    literals by SQLAlchemy, quoted as the dialect requires.
    """
    sql = str(stmt.compile(dialect=conn.dialect, compile_kwargs={"literal_binds": True}))
    raw: Any = conn.connection.driver_connection
    postgresql = conn.dialect.name == "postgresql"
    no_jit(conn)
    cursor = raw.cursor(name="hub_scan") if postgresql else raw.cursor()
    try:
        cursor.execute(sql)
        while rows := cursor.fetchmany(CHUNK_ROWS):
            yield rows
    finally:
        cursor.close()


def read_chunks(conn: Connection, stmt: sa.Select[Any]) -> Iterator[Chunk]:
    """The rows of an :func:`activity_rows` statement as :class:`Chunk` columns."""
    if conn.dialect.name == "postgresql":
        yield from _copy_chunks(conn, stmt)
        return
    time_dtype = scan_time_dtype(conn.dialect)
    for rows in driver_rows(conn, stmt):
        yield Chunk.from_rows(rows, time_dtype)


# PostgreSQL's binary COPY of five NOT NULL columns (bigint, integer, timestamptz, float8, float8) is a sequence
# of fixed-size tuples: a field count, then a length and the big-endian value of each field.
_COPY_ROW = np.dtype([
    ("n", ">i2"), ("lp", ">i4"), ("p", ">i8"), ("lk", ">i4"), ("k", ">i4"), ("lt", ">i4"), ("t", ">i8"),
    ("la", ">i4"), ("a", ">f8"), ("lv", ">i4"), ("v", ">f8"),
])
_COPY_SIGNATURE = COPY_HEADER[:11]  # the signature: the flags and extension length follow


def _copy_chunks(conn: Connection, stmt: sa.Select[Any]) -> Iterator[Chunk]:
    """On PostgreSQL: the rows by binary COPY, parsed by numpy as fixed-size records.

    Cheaper than a server-side cursor on both ends: the server sends binary values without formatting them,
    and no Python object is made per row or per value. The columns are made NOT NULL for it (a missing amount
    is 0, a missing page count NaN, as :class:`Chunk` holds them anyway).
    """
    inner = str(stmt.compile(dialect=conn.dialect, compile_kwargs={"literal_binds": True, NATIVE_TIMES: True}))
    sql = (
        "COPY (SELECT CAST(s.p AS BIGINT), CAST(s.k AS INTEGER), CAST(s.t AS TIMESTAMPTZ), "
        "CAST(COALESCE(s.a, 0) AS DOUBLE PRECISION), COALESCE(CAST(s.v AS DOUBLE PRECISION), 'NaN') "
        f"FROM ({inner}) AS s) TO STDOUT (FORMAT BINARY)"
    )
    no_jit(conn)
    raw: Any = conn.connection.driver_connection
    size = _COPY_ROW.itemsize
    buffer = bytearray()
    header = True
    with closing(copy_out(raw, sql)) as blocks:  # closed at once if the reader stops: the statement is cancelled
        for block in blocks:
            buffer += block
            if header:
                if len(buffer) < 19:
                    continue
                if bytes(buffer[:11]) != _COPY_SIGNATURE:
                    raise ValueError("not a PostgreSQL binary COPY stream")
                skip = 19 + int.from_bytes(buffer[15:19], "big")
                if len(buffer) < skip:
                    continue
                del buffer[:skip]
                header = False
            whole = len(buffer) // size
            if whole >= CHUNK_ROWS:
                yield _copy_chunk(buffer, whole)
                del buffer[: whole * size]
    # What is left: whole rows, then the trailer (a field count of -1).
    if header or len(buffer) < 2 or buffer[-2:] != b"\xff\xff":
        raise ValueError("the binary COPY stream ended early")
    whole = (len(buffer) - 2) // size
    if whole:
        yield _copy_chunk(buffer, whole)


def _copy_chunk(buffer: bytearray, rows: int) -> Chunk:
    data = np.frombuffer(bytes(buffer[: rows * _COPY_ROW.itemsize]), dtype=_COPY_ROW)
    if (data["n"] != 5).any():
        raise ValueError("unexpected tuple in the binary COPY stream")
    return Chunk(
        person=data["p"].astype(np.int64),
        kind=data["k"].astype(np.int8),
        at=data["t"].astype(np.int64) + PG_EPOCH_US,
        amount=data["a"].astype(np.float64),
        page_views=data["v"].astype(np.float64),
    )


# ----------------------------------------------------------------------------------------------- accumulation


MONEY_UNITS = 10_000
"""Units per currency unit of the summed money columns (the store keeps amounts to four decimals)."""


def _since(as_of_us: int, days: int) -> int:
    return as_of_us - days * DAY_US


class FeatureAccumulator:
    """Running per-person aggregates of the activities at or before ``as_of``, for the people ``person_id``.

    Args:
        as_of: only activities at or before it count.
        person_id: the people, ascending and distinct; everyone else's rows are ignored.
        outcome_days: also count each person's orders in ``(as_of, as_of + outcome_days]`` (the churn label).
    """

    def __init__(self, as_of: datetime, person_id: IntArray, outcome_days: int | None = None) -> None:
        self.as_of = as_of
        self.person_id = np.asarray(person_id, dtype=np.int64)
        n = len(self.person_id)
        self._cut = micros(as_of)
        self.reads_until = as_of if outcome_days is None else as_of + timedelta(days=outcome_days)
        self._outcome_cut = None if outcome_days is None else micros(self.reads_until)
        self._slot = _slot_table(self.person_id)
        self.counts = {name: np.zeros(n, dtype=np.int64) for name in _COUNTED}
        # Money adds up in whole ten-thousandths (the store's NUMERIC(18, 4)): integer sums are exact, so the
        # same orders give the same total in any row order (float sums differ in the last bit, and a customer
        # spending exactly a quintile edge then flips between RFM scores).
        self.sums = {name: np.zeros(n, dtype=np.int64) for name in _SUMMED}
        self.last = {name: np.full(n, NO_LAST, dtype=np.int64) for name in _LAST}
        self.first = {name: np.full(n, NO_FIRST, dtype=np.int64) for name in _FIRST}
        self.outcome = np.zeros(n, dtype=np.int64) if outcome_days is not None else None
        self._order_days: list[IntArray] = []
        self._pending = 0

    def __len__(self) -> int:
        return len(self.person_id)

    def add(self, chunk: Chunk) -> None:
        """Add the chunk's rows of this accumulator's people."""
        slot = _slots_of(self._slot, chunk.person)
        mine = slot >= 0
        if self.outcome is not None and self._outcome_cut is not None:
            later = mine & (chunk.at > self._cut) & (chunk.at <= self._outcome_cut) & (chunk.kind == KIND_ORDER)
            np.add.at(self.outcome, slot[later], 1)
        rows = np.flatnonzero(mine & (chunk.at <= self._cut))
        if rows.size:
            self._add(slot[rows], chunk.kind[rows], chunk.at[rows], chunk.amount[rows], chunk.page_views[rows])

    def _add(self, slot: IntArray, kind: NDArray[np.int8], at: IntArray, amount: FloatArray, pv: FloatArray) -> None:
        np.minimum.at(self.first["first_activity_at"], slot, at)
        windows = {d: at >= _since(self._cut, d) for d in WINDOWS_DAYS}
        order = kind == KIND_ORDER
        self._family(slot, order, windows, "orders", "orders_{}d")
        self._total(slot, order, amount, "monetary")
        for d in WINDOWS_DAYS:
            self._total(slot, order & windows[d], amount, f"spend_{d}d")
        np.minimum.at(self.first["first_order_at"], slot[order], at[order])
        np.maximum.at(self.last["last_order_at"], slot[order], at[order])
        # Distinct order days: slot and UTC day in one key, de-duplicated when many are pending and at the end
        # (one sort of all keys is cheaper than one per chunk).
        keys = slot[order] * 2**21 + at[order] // DAY_US
        if keys.size:
            self._order_days.append(keys)
            self._pending += keys.size
            if self._pending > _COMPACT_KEYS:
                self._order_days = [sorted_distinct(np.concatenate(self._order_days))]
                self._pending = self._order_days[0].size
        for kind_code, name, last in ((KIND_OPEN, "email_opens", "last_email_open_at"),
                                      (KIND_CLICK, "email_clicks", "last_email_click_at"),
                                      (KIND_SESSION, "sessions", "last_session_at")):
            mask = kind == kind_code
            if mask.any():
                self._family(slot, mask, windows, name, name + "_{}d")
                np.maximum.at(self.last[last], slot[mask], at[mask])
        self._count(slot, kind == KIND_BOUNCE, "email_bounces")
        self._count(slot, kind == KIND_UNSUBSCRIBE, "email_unsubscribes")
        sessions_90 = (kind == KIND_SESSION) & windows[90]
        # A session whose source gives no page count is one page view.
        views = np.where(np.isnan(pv), 1.0, pv)
        self._count(slot, sessions_90, "page_views_90d", views)
        won = kind == KIND_WON
        self._count(slot, won, "deals_won")
        self._total(slot, won, amount, "deals_won_amount")

    def _family(self, slot: IntArray, mask: NDArray[np.bool_], windows: dict[int, Any], name: str, fmt: str) -> None:
        self._count(slot, mask, name)
        for d in WINDOWS_DAYS:
            self._count(slot, mask & windows[d], fmt.format(d))

    def _count(self, slot: IntArray, mask: NDArray[np.bool_], name: str, weight: FloatArray | None = None) -> None:
        if mask.any():
            value = 1 if weight is None else weight[mask].astype(np.int64)
            np.add.at(self.counts[name], slot[mask], value)

    def _total(self, slot: IntArray, mask: NDArray[np.bool_], amount: FloatArray, name: str) -> None:
        if mask.any():
            np.add.at(self.sums[name], slot[mask], np.rint(amount[mask] * MONEY_UNITS).astype(np.int64))

    def order_days(self) -> IntArray:
        """Distinct UTC days with a counted order, per person."""
        if not self._order_days:
            return np.zeros(len(self), dtype=np.int64)
        keys = sorted_distinct(np.concatenate(self._order_days))
        return np.bincount(keys // 2**21, minlength=len(self)).astype(np.int64)

    def columns(self) -> dict[str, NDArray[Any]]:
        """Every aggregated column of :mod:`segment_rules.features` (times in µs, sentinels where none)."""
        out: dict[str, NDArray[Any]] = {**self.counts, **self.last, **self.first}
        out |= {name: total / MONEY_UNITS for name, total in self.sums.items()}
        out["order_days"] = self.order_days()
        return out


@dataclass(frozen=True)
class EventWindow:
    """Activities of one type in a time window: what an event condition without attribute filters counts.

    ``within`` counts back from the evaluation time; ``after`` is inclusive, ``before`` exclusive; nothing
    after the evaluation time counts (as :meth:`segment_rules.compile.Compiler` writes the same in SQL).
    """

    type: str
    within: timedelta | None = None
    after: datetime | None = None
    before: datetime | None = None

    def kinds(self) -> tuple[int, ...] | None:
        """The pass's kind codes of this type (cancelled orders too: an event counts every activity of its
        type), or None for a type the pass does not tell apart (it reads every other type as one)."""
        if self.type == T.ORDER.value:
            return (KIND_ORDER, KIND_VOID)
        code = next((c for typ, c in _KINDS.items() if typ.value == self.type), None)
        return None if code is None else (code,)


class EventAccumulator:
    """Per person, the number and the summed amount of the activities in each of ``windows`` (see
    :class:`EventWindow`, whose :meth:`~EventWindow.kinds` must not be None) at ``as_of``, from the same pass
    as the features, so the segments step needs no aggregate query over the activities."""

    def __init__(self, as_of: datetime, person_id: IntArray, windows: Sequence[EventWindow]) -> None:
        self.as_of = as_of
        self.reads_until = as_of
        self.person_id = np.asarray(person_id, dtype=np.int64)
        self.windows = list(windows)
        n = len(self.person_id)
        self._slot = _slot_table(self.person_id)
        cut = micros(as_of)
        self._bounds: list[tuple[NDArray[np.int8], int, int]] = []  # kinds, first and last µs counted
        for w in self.windows:
            kinds = w.kinds()
            if kinds is None:
                raise ValueError(f"the activity pass cannot count {w.type!r} events")
            since = NO_LAST if w.within is None else cut - micros_delta(w.within)
            low = max(since, NO_LAST if w.after is None else micros(w.after))
            high = cut if w.before is None else min(cut, micros(w.before) - 1)  # before is exclusive
            self._bounds.append((np.array(kinds, dtype=np.int8), low, high))
        self.count = [np.zeros(n, dtype=np.int64) for _ in self.windows]
        self.total = [np.zeros(n, dtype=np.int64) for _ in self.windows]  # in MONEY_UNITS: exact in any order

    def add(self, chunk: Chunk) -> None:
        """Add the chunk's rows of this accumulator's people."""
        slot = _slots_of(self._slot, chunk.person)
        mine = slot >= 0
        for (kinds, low, high), count, total in zip(self._bounds, self.count, self.total, strict=True):
            rows = mine & np.isin(chunk.kind, kinds) & (chunk.at >= low) & (chunk.at <= high)
            if rows.any():
                np.add.at(count, slot[rows], 1)
                np.add.at(total, slot[rows], np.rint(chunk.amount[rows] * MONEY_UNITS).astype(np.int64))

    def totals(self, window: EventWindow) -> tuple[IntArray, IntArray, FloatArray]:
        """``window``'s people with at least one such activity: their ids, counts and summed amounts."""
        k = self.windows.index(window)
        some = self.count[k] > 0
        return self.person_id[some], self.count[k][some], self.total[k][some] / MONEY_UNITS


def sorted_distinct(values: IntArray) -> IntArray:
    """The distinct values, ascending: ``np.unique`` by a sort.

    numpy 2.3 and later give integer arrays to ``np.unique`` a hash table, which on millions of mostly distinct
    keys is sixty times slower than sorting (2.5 million order-day keys: 3.3 s against 0.06 s).
    """
    ordered = np.sort(values)
    keep = np.ones(len(ordered), dtype=np.bool_)
    keep[1:] = ordered[1:] != ordered[:-1]
    return ordered[keep]


def micros_delta(delta: timedelta) -> int:
    """``delta`` in whole microseconds."""
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def _slot_table(person_id: IntArray) -> NDArray[Any]:
    """Person id -> position in ``person_id`` (ascending, distinct), -1 for everyone else: a dense lookup table
    (ids are compact), far cheaper than a search per row."""
    n = len(person_id)
    top = int(person_id[-1]) + 1 if n else 1
    table = np.full(top, -1, dtype=np.int32 if n < 2**31 else np.int64)
    table[person_id] = np.arange(n)
    return table


def _slots_of(table: NDArray[Any], person: IntArray) -> IntArray:
    """Each row's position by :func:`_slot_table` (-1: not one of the people)."""
    inside = person < len(table)
    slot = np.full(len(person), -1, dtype=np.int64)
    slot[inside] = table[person[inside]]
    return slot


class Accumulator(Protocol):
    """What a pass feeds: anything that adds chunks of rows and says up to when it reads."""

    reads_until: datetime

    def add(self, chunk: Chunk) -> None: ...


def scan(
    conn: Connection,
    accumulators: Sequence[Accumulator],
    person_ids: Sequence[int] | None = None,
    every: int = 1,
) -> None:
    """Feed every accumulator from one pass over the activities.

    Args:
        conn: an open connection.
        accumulators: what to feed; the pass reads up to the latest time any of them needs.
        person_ids: read only these people's activities (in chunks of ids, each an indexed lookup).
        every: read only every ``every``-th person's activities (a sample).
    """
    if not accumulators:
        return
    until = max(acc.reads_until for acc in accumulators)
    for ids in id_chunks(person_ids):
        for chunk in read_chunks(conn, activity_rows(until, ids, every)):
            for acc in accumulators:
                acc.add(chunk)


def id_chunks(person_ids: Sequence[int] | None, size: int = ID_CHUNK) -> Iterator[Sequence[int] | None]:
    """``person_ids`` sorted, in slices a statement can bind; ``None`` (everyone) as is."""
    if person_ids is None:
        yield None
        return
    ids = sorted(set(person_ids))
    for start in range(0, len(ids), size):
        yield ids[start : start + size]


# The aggregated columns, as stored in ``person_feature``. Counts: a person without activities has 0, not NULL.
COUNT_COLUMNS = (
    "orders",
    "order_days",
    *(f"orders_{d}d" for d in WINDOWS_DAYS),
    "email_opens",
    "email_clicks",
    *(f"email_opens_{d}d" for d in WINDOWS_DAYS),
    *(f"email_clicks_{d}d" for d in WINDOWS_DAYS),
    "email_bounces",
    "email_unsubscribes",
    "sessions",
    *(f"sessions_{d}d" for d in WINDOWS_DAYS),
    "page_views_90d",
    "deals_won",
)
# Sums: a person without such activities has spent 0.
SUM_COLUMNS = ("monetary", *(f"spend_{d}d" for d in WINDOWS_DAYS), "deals_won_amount")
_COUNTED = tuple(c for c in COUNT_COLUMNS if c != "order_days")  # distinct days are counted at the end
_SUMMED = SUM_COLUMNS
_LAST = ("last_order_at", "last_email_open_at", "last_email_click_at", "last_session_at")
_FIRST = ("first_order_at", "first_activity_at")
