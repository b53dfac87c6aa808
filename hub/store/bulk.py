"""Bulk statements for the page writer: many rows per statement, values handed to the driver as they are.

SQLAlchemy Core's executemany builds a parameter dict per row and runs every type processor on every value;
for a page of 5,000 records that costs several times what the database spends on the rows. These helpers
take rows as tuples already converted to what SQLAlchemy's types would have bound (:meth:`Bulk.ts`,
:meth:`Bulk.money`, :func:`json_value`), so the stored values are byte for byte the same as through Core:

- SQLite: one ``cursor.executemany`` of one statement (sqlite3 loops over the rows in C);
- PostgreSQL: a small batch the same way (psycopg pipelines it); from :data:`COPY_MIN_ROWS` rows, ``COPY``
  into a temporary table and one ``INSERT .. SELECT`` or ``UPDATE .. FROM`` out of it. COPY is the cheapest
  way into PostgreSQL on both sides, and the table lives and dies inside the page's transaction (safe
  behind a transaction-pooling proxy).

Rows given column by column as numpy arrays (:meth:`Bulk.insert_columns`, for the segmentation engine's million-row
tables) skip the tuples altogether on PostgreSQL: a binary COPY laid out by numpy (:mod:`hub.store.pgcopy`).

Every statement runs on the caller's connection, so it is part of the page's transaction. Rows given to one
``ON CONFLICT .. DO UPDATE`` must have distinct keys: PostgreSQL rejects a statement that updates a row twice
(the page writer de-duplicates before it gets here, as SQLAlchemy's batched inserts already required).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Dialect

from hub.store.engine import dumps

# Below this many rows the temporary table costs more than it saves on PostgreSQL.
COPY_MIN_ROWS = 200
_TEMP_ALLOWED = "hub_temp_tables"  # connection info key: may this connection create temporary tables

Row = tuple[Any, ...]


def json_value(value: Any) -> str:
    """A JSON column's value as SQLAlchemy's JSON type binds it: None is the JSON ``null``, not SQL NULL."""
    return dumps(value)


@dataclass(frozen=True)
class Column:
    """One column of rows given column-wise (see :meth:`Bulk.insert_columns`).

    ``values``: a numpy array of integers, floats (also for NUMERIC columns, rounded to their scale), or int64
    microseconds since the Unix epoch for timestamp columns; or a sequence of ``str | None`` for text.
    ``null``: a numpy boolean array, true where the value is NULL (None: text's None, no NULL elsewhere).
    """

    values: Any
    null: Any = None


_DAY_US = 86_400_000_000
_TABLES: Any = None  # the lookup tables of :func:`iso_micros`, made on first use


def _iso_tables() -> Any:
    """Three digits for 0..999, and "HH:MM:SS." for every second of a day."""
    import numpy as np

    global _TABLES
    if _TABLES is None:
        two = np.array([f"{i:02d}" for i in range(100)])
        second = np.arange(86_400)
        clock = two[second // 3600]
        for part in (two[second // 60 % 60], two[second % 60]):
            clock = np.strings.add(np.strings.add(clock, ":"), part)
        _TABLES = np.array([f"{i:03d}" for i in range(1_000)]), np.strings.add(clock, ".")
    return _TABLES


def iso_micros(at: Any, sep: str = "T", suffix: str = "") -> Any:
    """Microseconds since the epoch (a numpy int array, UTC, years 1 to 9999) as ISO text with microseconds
    (``YYYY-MM-DD<sep>HH:MM:SS.ffffff<suffix>``), as a numpy string array.

    What ``datetime.isoformat(sep, "microseconds")`` gives, assembled from lookup tables of dates, clock times
    and digits: numpy's ``datetime_as_string`` (and the separator put in after) takes three times as long, and
    formatting the seven time columns of a million feature rows that way took about half as long as SQLite
    took to store the rows.
    """
    import numpy as np

    digits, clock = _iso_tables()
    days, micros = np.divmod(np.asarray(at, dtype=np.int64), _DAY_US)
    if not days.size:
        return np.array([], dtype="U1")
    first, last = int(days.min()), int(days.max())
    if last - first < max(days.size, 1_000):
        dates, index = np.arange(first, last + 1), days - first
    else:  # few values spread over centuries: a table of the distinct days only
        dates, index = np.unique(days, return_inverse=True)
    date_text = np.strings.add(np.datetime_as_string(dates.astype("M8[D]"), unit="D"), sep)
    seconds, fraction = np.divmod(micros, 1_000_000)
    high, low = np.divmod(fraction, 1_000)
    layout = np.dtype([("d", "U11"), ("t", "U9"), ("f", "U3"), ("g", "U3"), ("s", f"U{max(len(suffix), 1)}")])
    out = np.empty(days.size, dtype=layout)
    out["d"], out["t"], out["f"], out["g"] = date_text[index], clock[seconds], digits[high], digits[low]
    out["s"] = suffix
    # One string per row: the fields laid end to end (an empty suffix is trailing NULs, which numpy drops).
    return out.view(f"U{layout.itemsize // 4}")


class Bulk:
    """Bulk inserts, upserts and updates on one backend (see :func:`for_dialect`)."""

    placeholder = "?"

    def __init__(self, dialect: Dialect) -> None:
        self._quote = dialect.identifier_preparer.quote

    # -- values: what SQLAlchemy's column types would bind

    def ts(self, value: datetime | None) -> Any:
        """A :class:`hub.store.models.UTCDateTime` value (naive input is UTC)."""
        raise NotImplementedError

    def money(self, value: Decimal | None) -> Any:
        """A :data:`hub.store.models.Money` value."""
        raise NotImplementedError

    def ts_micros(self, at: Any, missing: Any) -> list[Any]:
        """Many :meth:`ts` values at once, given as a numpy array of microseconds since the epoch (None where
        ``missing``): millions of datetime objects would cost more than the rows' insert."""
        import numpy as np

        out: list[Any] = iso_micros(np.where(missing, 0, at), self._ts_sep, self._ts_suffix).tolist()
        for i in np.flatnonzero(missing).tolist():
            out[i] = None
        return out

    _ts_sep = "T"  # how :meth:`ts` writes a time as text: date, separator, time with microseconds, suffix
    _ts_suffix = ""

    # -- statements

    def insert(
        self,
        conn: Connection,
        table: sa.Table,
        columns: Sequence[str],
        rows: Sequence[Row],
        *,
        conflict: Sequence[str] = (),
        update: Sequence[str] = (),
    ) -> None:
        """``INSERT`` rows of ``columns``; on a ``conflict`` key, update ``update`` (none: do nothing)."""
        if rows:
            self._execute(conn, self._insert_sql(table, columns, self._values(table, columns), conflict, update), rows)

    def insert_columns(self, conn: Connection, table: sa.Table, columns: Mapping[str, Column]) -> None:
        """``INSERT`` rows given column by column (numpy arrays: see :class:`Column`), no conflict expected.

        For many rows of numbers and times, where a tuple per row would cost more than the insert.
        """
        names = list(columns)
        bound = [self._bound(table.c[name].type, columns[name]) for name in names]
        self.insert(conn, table, names, list(zip(*bound, strict=True)))

    def update(self, conn: Connection, table: sa.Table, key: str, columns: Sequence[str], rows: Sequence[Row]) -> None:
        """``UPDATE`` ``columns`` of the rows whose ``key`` is the first value of each row (then ``columns``)."""
        if not rows:
            return
        q = self._quote
        sets = ", ".join(f"{q(c)} = {v}" for c, v in zip(columns, self._values(table, columns), strict=True))
        sql = f"UPDATE {q(table.name)} SET {sets} WHERE {q(key)} = {self.placeholder}"
        # The key goes last in the statement but first in the row (as callers build them): move it.
        self._execute(conn, sql, [(*row[1:], row[0]) for row in rows])

    def reserve_ids(self, conn: Connection, table: sa.Table, n: int) -> list[int]:
        """``n`` new ids for ``table``, the very ids the database would give ``n`` inserted rows, ascending."""
        raise NotImplementedError

    def in_(self, values: Sequence[Any], sql_type: str) -> tuple[str, list[Any]]:
        """A ``column IN (values)`` test without the column, and its parameters: ``(" IN (?, ?)", [a, b])``.

        ``sql_type`` is the column's SQL type (``varchar``, ``integer``), which PostgreSQL's array needs.
        """
        return f" IN ({', '.join([self.placeholder] * len(values))})", list(values)

    def binary(self, column: str) -> str:
        """``column`` compared by code point, as SQLite's default collation does (for ORDER BY)."""
        return column

    def rows(self, conn: Connection, sql: str, params: Sequence[Any]) -> list[Row]:
        """The rows of a query with driver placeholders, as plain tuples."""
        return [tuple(row) for row in conn.exec_driver_sql(sql, tuple(params))]

    def by_unique_key(
        self,
        conn: Connection,
        table: str,
        columns: Sequence[str],
        fixed: Sequence[tuple[str, Any]],
        key: str,
        values: Sequence[str],
    ) -> list[Row]:
        """``columns`` of the rows whose ``fixed`` columns equal their values and whose ``key`` is one of
        ``values`` (distinct): a lookup by a unique index on (fixed columns, key), in (key, id) order."""
        ph = self.placeholder
        test, params = self.in_(values, "varchar")
        where = " AND ".join([*(f"{c} = {ph}" for c, _ in fixed), f"{key}{test}"])
        sql = f"SELECT {', '.join(columns)} FROM {table} WHERE {where} ORDER BY {self.binary(key)}, id"
        return self.rows(conn, sql, [*(v for _, v in fixed), *params])

    # -- helpers

    def _bound(self, sql_type: Any, column: Column) -> list[Any]:
        """A :class:`Column` as the values :meth:`insert` takes."""
        import numpy as np

        from hub.store.models import UTCDateTime

        values, null = column.values, column.null
        if isinstance(values, list | tuple):
            return list(values)
        if isinstance(sql_type, UTCDateTime):
            return self.ts_micros(values, np.zeros(len(values), dtype=bool) if null is None else null)
        if isinstance(sql_type, sa.Numeric) and not isinstance(sql_type, sa.Float):
            values = np.round(values, sql_type.scale or 0)
        out: list[Any] = values.tolist()
        for i in np.flatnonzero(null).tolist() if null is not None else ():
            out[i] = None
        return out

    def _values(self, table: sa.Table, columns: Sequence[str]) -> list[str]:
        return [self.placeholder] * len(columns)

    def _insert_sql(
        self,
        table: sa.Table,
        columns: Sequence[str],
        values: Sequence[str] | str,
        conflict: Sequence[str],
        update: Sequence[str],
    ) -> str:
        q = self._quote
        cols = ", ".join(q(c) for c in columns)
        source = f"VALUES ({', '.join(values)})" if not isinstance(values, str) else values
        sql = f"INSERT INTO {q(table.name)} ({cols}) {source}"
        if conflict:
            target = ", ".join(q(c) for c in conflict)
            if update:
                sets = ", ".join(f"{q(c)} = excluded.{q(c)}" for c in update)
                sql += f" ON CONFLICT ({target}) DO UPDATE SET {sets}"
            else:
                sql += f" ON CONFLICT ({target}) DO NOTHING"
        return sql

    def _execute(self, conn: Connection, sql: str, rows: Sequence[Row]) -> None:
        conn.exec_driver_sql(sql, list(rows))


class SqliteBulk(Bulk):
    """SQLite: executemany of prepared statements; timestamps are naive UTC text, money is REAL."""

    def ts(self, value: datetime | None) -> Any:
        if value is None:
            return None
        if value.tzinfo is not None:
            value = value.astimezone(UTC).replace(tzinfo=None)
        # The text SQLAlchemy's SQLite DATETIME writes ("%Y-%m-%d %H:%M:%S.%f", microseconds always); the
        # base class method, so a datetime subclass cannot change it.
        return datetime.isoformat(value, " ", "microseconds")

    def money(self, value: Decimal | None) -> Any:
        return None if value is None else float(value)

    _ts_sep = " "  # as :meth:`ts` writes them

    def reserve_ids(self, conn: Connection, table: sa.Table, n: int) -> list[int]:
        # A rowid table without AUTOINCREMENT gives each new row max(rowid) + 1, and the page's write
        # transaction (BEGIN IMMEDIATE) keeps every other writer out until commit.
        q = self._quote
        top = conn.exec_driver_sql(f"SELECT coalesce(max({q('id')}), 0) FROM {q(table.name)}").scalar_one()
        return list(range(int(top) + 1, int(top) + 1 + n))


class PostgresBulk(Bulk):
    """PostgreSQL (psycopg 3): pipelined executemany for few rows, COPY through a temporary table for many."""

    placeholder = "%s"

    def ts(self, value: datetime | None) -> Any:
        if value is None:
            return None
        # Aware, so the session's time zone never gets a say (COPY would read a naive value in it).
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)

    def money(self, value: Decimal | None) -> Any:
        return value

    _ts_suffix = "+00:00"  # with the offset, so the session's time zone never gets a say (as with :meth:`ts`)

    def binary(self, column: str) -> str:
        return f'{column} COLLATE "C"'

    def in_(self, values: Sequence[Any], sql_type: str) -> tuple[str, list[Any]]:
        # One array parameter instead of thousands: the server plans the same "= ANY(array)" either way.
        return f" = ANY({self.placeholder}::{sql_type}[])", [list(values)]

    def by_unique_key(
        self,
        conn: Connection,
        table: str,
        columns: Sequence[str],
        fixed: Sequence[tuple[str, Any]],
        key: str,
        values: Sequence[str],
    ) -> list[Row]:
        # One index probe per value, whatever the statistics say. As "key = ANY($n)" the planner may use
        # the unique index for the fixed columns alone and filter the array: when it believes few rows
        # match them (no statistics yet, as in a first load, or stale ones), that reads every row of the
        # source per lookup and a million-row load turns quadratic. A LATERAL subquery with LIMIT 1 (the key
        # is unique) cannot be flattened into such a plan.
        ph = self.placeholder
        where = " AND ".join([*(f"t.{c} = {ph}" for c, _ in fixed), f"t.{key} = k.value"])
        cols = ", ".join(f"t.{c}" for c in columns)
        sql = (
            f"SELECT x.* FROM unnest({ph}::varchar[]) AS k(value) CROSS JOIN LATERAL "
            f"(SELECT {cols}, t.id FROM {table} AS t WHERE {where} LIMIT 1) AS x "
            f"ORDER BY {self.binary('x.' + key)}, x.id"
        )
        rows = self.rows(conn, sql, [list(values), *(v for _, v in fixed)])
        return [row[:-1] for row in rows]  # without the id, as on SQLite

    def insert(
        self,
        conn: Connection,
        table: sa.Table,
        columns: Sequence[str],
        rows: Sequence[Row],
        *,
        conflict: Sequence[str] = (),
        update: Sequence[str] = (),
    ) -> None:
        if not conflict and len(rows) >= COPY_MIN_ROWS:  # nothing to reconcile: straight into the table
            self._copy(conn, self._quote(table.name), columns, rows)
            return
        if not self._stages(conn, rows):
            super().insert(conn, table, columns, rows, conflict=conflict, update=update)
            return
        q = self._quote
        stage = self._stage(conn, table, columns, rows)
        cols = ", ".join(q(c) for c in columns)
        self._run(conn, self._insert_sql(table, columns, f"SELECT {cols} FROM {stage}", conflict, update))
        self._run(conn, f"DROP TABLE {stage}")

    def insert_columns(self, conn: Connection, table: sa.Table, columns: Mapping[str, Column]) -> None:
        # Binary COPY straight into the table, laid out by numpy (see :mod:`hub.store.pgcopy`).
        from hub.store import pgcopy

        names = list(columns)
        n = len(columns[names[0]].values) if names else 0
        if not n:
            return
        types = self._column_types(conn, table.name)
        try:
            if any(types[name] == ("numeric", None) for name in names):
                raise pgcopy.Unencodable("an unconstrained NUMERIC column: no scale to round to")
            fields = [
                pgcopy.field(types[name][0], columns[name].values, columns[name].null, scale=types[name][1] or 0)
                for name in names
            ]
        except pgcopy.Unencodable:
            # Rare values (or types) the encoder leaves alone: the row path, where the server has its say.
            super().insert_columns(conn, table, columns)
            return
        sql = f"COPY {self._quote(table.name)} ({', '.join(self._quote(c) for c in names)}) FROM STDIN (FORMAT BINARY)"
        raw: Any = conn.connection.driver_connection  # the psycopg connection, inside the caller's transaction
        with raw.cursor() as cur, cur.copy(sql) as copy:
            copy.write(pgcopy.encode(fields, n))

    def _bound(self, sql_type: Any, column: Column) -> list[Any]:
        out = super()._bound(sql_type, column)
        if isinstance(sql_type, sa.Numeric) and not isinstance(sql_type, sa.Float):
            # As Decimals of their shortest repr: the server's float8-to-numeric cast keeps only 15 digits.
            out = [None if v is None else Decimal(repr(v)) for v in out]
        return out

    def _column_types(self, conn: Connection, table: str) -> dict[str, tuple[str, int | None]]:
        """Each column's type name and NUMERIC scale (None: unconstrained), as the server has them: binary
        COPY must send exactly these widths."""
        sql = (
            "SELECT a.attname, t.typname, a.atttypmod FROM pg_attribute AS a JOIN pg_type AS t "
            "ON t.oid = a.atttypid WHERE a.attrelid = %s::regclass AND a.attnum > 0 AND NOT a.attisdropped"
        )
        # NUMERIC(p, s) keeps s in the low 16 bits of typmod - 4 (-1: no typmod).
        return {
            str(name): (str(typ), ((int(mod) - 4) & 0xFFFF) if int(mod) >= 0 else None)
            for name, typ, mod in conn.exec_driver_sql(sql, (self._quote(table),))
        }

    def update(self, conn: Connection, table: sa.Table, key: str, columns: Sequence[str], rows: Sequence[Row]) -> None:
        if not self._stages(conn, rows):
            super().update(conn, table, key, columns, rows)
            return
        q = self._quote
        stage = self._stage(conn, table, [key, *columns], rows)
        sets = ", ".join(f"{q(c)} = s.{q(c)}" for c in columns)
        self._run(conn, f"UPDATE {q(table.name)} AS t SET {sets} FROM {stage} AS s WHERE t.{q(key)} = s.{q(key)}")
        self._run(conn, f"DROP TABLE {stage}")

    def reserve_ids(self, conn: Connection, table: sa.Table, n: int) -> list[int]:
        # The values the column's default (nextval of its sequence) would take, in the order it would take
        # them; this is also what SQLAlchemy's INSERT .. RETURNING did, one batch at a time.
        sql = "SELECT nextval(pg_get_serial_sequence(%s, 'id')) FROM generate_series(1, %s)"
        ids = conn.exec_driver_sql(sql, (self._quote(table.name), n)).scalars().all()
        return sorted(int(i) for i in ids)

    def _values(self, table: sa.Table, columns: Sequence[str]) -> list[str]:
        # psycopg sends str as "unknown" and lets the server infer the type; the cast makes JSON explicit.
        ph = self.placeholder
        return [f"{ph}::jsonb" if isinstance(table.c[c].type, sa.JSON) else ph for c in columns]

    def _stages(self, conn: Connection, rows: Sequence[Row]) -> bool:
        """Whether to go through a temporary table: enough rows, and the role may create one (a database
        can revoke TEMPORARY; the answer is kept per connection)."""
        if len(rows) < COPY_MIN_ROWS:
            return False
        info = conn.connection.info
        allowed = info.get(_TEMP_ALLOWED)
        if allowed is None:
            sql = "SELECT has_database_privilege(current_database(), 'TEMPORARY')"
            allowed = info[_TEMP_ALLOWED] = bool(conn.exec_driver_sql(sql).scalar())
        return bool(allowed)

    def _stage(self, conn: Connection, table: sa.Table, columns: Sequence[str], rows: Sequence[Row]) -> str:
        """COPY ``rows`` into a temporary copy of ``table``'s ``columns`` (same types); return its name."""
        q = self._quote
        stage = q(f"_hub_stage_{table.name}")
        cols = ", ".join(q(c) for c in columns)
        self._run(
            conn, f"CREATE TEMPORARY TABLE {stage} ON COMMIT DROP AS SELECT {cols} FROM {q(table.name)} WITH NO DATA"
        )
        self._copy(conn, stage, columns, rows)
        return stage

    def _copy(self, conn: Connection, target: str, columns: Sequence[str], rows: Sequence[Row]) -> None:
        cols = ", ".join(self._quote(c) for c in columns)
        raw: Any = conn.connection.driver_connection  # the psycopg connection, inside the page's transaction
        with raw.cursor() as cur, cur.copy(f"COPY {target} ({cols}) FROM STDIN") as copy:
            for row in rows:
                copy.write_row(row)

    def _run(self, conn: Connection, sql: str) -> None:
        conn.exec_driver_sql(sql)


def for_dialect(dialect: Dialect) -> Bulk:
    """The bulk helpers for ``dialect`` (``sqlite`` or ``postgresql``)."""
    if dialect.name == "postgresql":
        return PostgresBulk(dialect)
    if dialect.name == "sqlite":
        return SqliteBulk(dialect)
    raise ValueError(f"no bulk statements for {dialect.name!r}")
