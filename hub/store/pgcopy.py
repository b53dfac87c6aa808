"""PostgreSQL's binary COPY: the format built from column arrays with numpy, and a fast reader of COPY's output.

A million wide rows through text COPY cost the client a Python tuple per row and a text rendering of every
value, and the server a parse of every value (timestamps the dearest); in the binary format each value is
its fixed-width network-order bytes, which numpy lays out for a whole column at once. The layout
(PostgreSQL manual, "COPY", binary format): a 19-byte header, per row an int16 field count then per field
an int32 byte length (-1 for NULL) and the bytes, and an int16 -1 trailer.

Values come column-wise, as :class:`hub.store.bulk.Column` does: integers and floats as numpy arrays,
timestamps as int64 microseconds since the Unix epoch, NUMERIC as floats (rounded to the column's scale),
text as a sequence of ``str | None``; plus a boolean NULL mask.
"""

from __future__ import annotations

import select
from collections.abc import Generator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

HEADER = b"PGCOPY\n\xff\r\n\x00" + b"\x00\x00\x00\x00" + b"\x00\x00\x00\x00"  # signature, flags, no extension
TRAILER = b"\xff\xff"
PG_EPOCH_US = 946_684_800_000_000  # 2000-01-01 (PostgreSQL's timestamp zero) in Unix microseconds
_NBASE = 10_000  # NUMERIC's digits are base 10,000
# Below 10^11, a float times 10^4 rounds to an integer of at most 15 digits, whose ten-thousandths are exactly
# what the text path writes (np.round, then the shortest repr); above, the text path decides.
_NUMERIC_LIMIT = 10.0**11
# So NUMERIC goes with 3 integer digits and 1 fractional one, whatever the value (the server strips zeros).
_NUMERIC_INT_DIGITS = 3

_OUT_BLOCK = 1 << 20  # bytes per block handed on by :func:`copy_out`

_FIXED = {"int2": ">i2", "int4": ">i4", "int8": ">i8", "float4": ">f4", "float8": ">f8", "bool": "u1"}
_INT_RANGE: dict[str, Any] = {"int2": np.iinfo(np.int16), "int4": np.iinfo(np.int32), "int8": np.iinfo(np.int64)}


class Unencodable(ValueError):
    """Values this encoder does not send (out of the type's range, or beyond the exact float range)."""


@dataclass(frozen=True)
class Field:
    """One column, every row's field at its widest: ``data`` (numpy converts it to ``dtype``, network order,
    as it is put in place), the length words (-1 for NULL), and the bytes of ``data`` that are not part of a
    row's field: a NULL's (``null``), or a shorter text's padding (``sizes``: each text's byte length)."""

    dtype: np.dtype[Any]
    data: Any
    lengths: NDArray[np.int64]
    null: NDArray[np.bool_] | None = None
    sizes: NDArray[np.int64] | None = None


def encode(fields: Sequence[Field], n: int) -> bytes:
    """The COPY data (header, ``n`` rows, trailer) of ``fields`` side by side.

    Every row is laid out at its widest in one structured array (a typed, strided copy per column), then the
    bytes that are no field's (NULLs' values, texts' padding) are dropped by one boolean selection, which
    reads the kept bytes in row order: the COPY stream.
    """
    layout: list[tuple[str, Any]] = [("count", ">i2")]
    for i, f in enumerate(fields):
        layout.append((f"l{i}", ">i4"))
        if f.dtype.itemsize:
            layout.append((f"v{i}", f.dtype))
    rows = np.empty(n, dtype=np.dtype(layout))
    rows["count"] = len(fields)
    for i, f in enumerate(fields):
        rows[f"l{i}"] = f.lengths
        if f.dtype.itemsize:
            rows[f"v{i}"] = f.data
    raw = rows.view(np.uint8).reshape(n, -1)
    if all(f.null is None and f.sizes is None for f in fields):
        body = raw.ravel()
    else:
        keep = np.ones(raw.shape, dtype=np.bool_)
        for i, f in enumerate(fields):
            if not f.dtype.itemsize:
                continue
            start = rows.dtype.fields[f"v{i}"][1]  # type: ignore[index]
            stop = start + f.dtype.itemsize
            if f.null is not None:
                keep[f.null, start:stop] = False
            if f.sizes is not None:
                keep[:, start:stop] = np.arange(f.dtype.itemsize) < f.sizes[:, None]
        body = raw[keep]
    return HEADER + body.tobytes() + TRAILER


def field(pg_type: str, values: Any, null: NDArray[np.bool_] | None, *, scale: int = 0) -> Field:
    """The :class:`Field` of a column of PostgreSQL type ``pg_type`` (its ``pg_type.typname``)."""
    if pg_type in ("text", "varchar", "bpchar"):
        return _text(values)
    n = len(values)
    if null is not None:
        null = np.asarray(null, dtype=np.bool_)
        if not null.any():
            null = None
    if pg_type == "timestamptz" or pg_type == "timestamp":
        # Where NULL, whatever the value (a sentinel may wrap around): those bytes are dropped.
        return _fixed(np.dtype(">i8"), np.asarray(values, dtype=np.int64) - PG_EPOCH_US, null, n)
    if pg_type == "numeric":
        return _fixed(np.dtype((">i2", 4 + _NUMERIC_INT_DIGITS + 1)), _numeric(values, null, scale), null, n)
    if pg_type not in _FIXED:
        raise Unencodable(f"no binary COPY encoding for PostgreSQL type {pg_type!r}")
    data = np.asarray(values)
    if pg_type in _INT_RANGE:
        bounds = _INT_RANGE[pg_type]
        live = data if null is None else data[~null]
        if live.size and (live.min() < bounds.min or live.max() > bounds.max):
            raise Unencodable(f"a value does not fit PostgreSQL's {pg_type}")
    return _fixed(np.dtype(_FIXED[pg_type]), data, null, n)


def copy_out(raw: Any, sql: str) -> Generator[bytearray, None, None]:
    """The data of ``sql`` (a ``COPY .. TO STDOUT``) on the psycopg connection ``raw``, in blocks of about a
    megabyte, inside the connection's current transaction.

    Read from libpq through psycopg's ``pgconn``: psycopg's ``Copy`` hands on each of the server's messages
    (one per row) through several generator layers, which cost as much as parsing the rows: ten million rows
    took 14.4 s of client CPU that way and 7.2 s this way. A reader that stops early cancels the statement.
    """
    from psycopg import errors, pq

    pg = raw.pgconn
    pg.send_query(sql.encode())
    started = pg.get_result()
    if started is None or started.status != pq.ExecStatus.COPY_OUT:
        _results(pg, raw.info.encoding, started)
        raise errors.ProgrammingError(f"not a COPY TO STDOUT statement: {sql[:60]}")
    poller = select.poll()
    poller.register(pg.socket, select.POLLIN)
    block = bytearray()
    finished = False
    try:
        while True:
            size, data = pg.get_copy_data(1)
            if size > 0:
                block += data
                if len(block) >= _OUT_BLOCK:
                    yield block
                    block = bytearray()
            elif size == 0:  # nothing buffered yet: wait for the socket
                poller.poll()
                pg.consume_input()
            else:  # -1: the data is over
                break
        finished = True
    finally:
        if not finished:
            raw.cancel_safe()
            while pg.get_copy_data(0)[0] >= 0:
                pass
            _results(pg, raw.info.encoding, None, cancelled=True)
    if block:
        yield block
    _results(pg, raw.info.encoding, None)


def _results(pg: Any, encoding: str, first: Any, *, cancelled: bool = False) -> None:
    """Read the statement's remaining results; raise the server's error (unless it was ``cancelled``)."""
    from psycopg import errors, pq

    failure = None
    result = first if first is not None else pg.get_result()
    while result is not None:
        if result.status == pq.ExecStatus.FATAL_ERROR and failure is None:
            failure = errors.error_from_result(result, encoding)
        result = pg.get_result()
    if failure is not None and not cancelled:
        raise failure


# ----------------------------------------------------------------------------------------------- helpers


def _fixed(dtype: np.dtype[Any], data: Any, null: NDArray[np.bool_] | None, n: int) -> Field:
    width = np.full(n, dtype.itemsize, dtype=np.int64)
    return Field(dtype, data, width if null is None else np.where(null, -1, width), null)


def _text(values: Sequence[str | None]) -> Field:
    encoded = [b"" if v is None else v.encode() for v in values]
    n = len(encoded)
    null = np.fromiter((v is None for v in values), dtype=np.bool_, count=n)
    sizes = np.fromiter(map(len, encoded), dtype=np.int64, count=n)
    widest = int(sizes.max()) if n else 0
    # numpy's fixed-width bytes pad with NULs; the padding is left out by ``sizes``.
    return Field(np.dtype(f"S{widest}"), encoded, np.where(null, -1, sizes), sizes=sizes)


def _numeric(values: Any, null: NDArray[np.bool_] | None, scale: int) -> NDArray[np.int64]:
    """NUMERIC values rounded to ``scale`` (at most 4) decimals: per row its fixed digits (ndigits, weight,
    sign, display scale, then base-10,000 digits)."""
    if not 0 <= scale <= 4:
        raise Unencodable(f"binary COPY supports NUMERIC scales 0 to 4, not {scale}")
    values = np.asarray(values, dtype=np.float64)
    if null is not None:
        values = np.where(null, 0.0, values)
    if values.size and not (np.isfinite(values).all() and np.abs(values).max() < _NUMERIC_LIMIT):
        raise Unencodable("a NUMERIC value is not finite or too large for binary COPY")
    # Rounded as the text path rounds (np.round is rint of the scaled value), then kept as ten-thousandths.
    scaled = np.rint(values * 10.0**scale).astype(np.int64) * 10 ** (4 - scale)
    magnitude = np.abs(scaled)
    out = np.empty((len(values), 4 + _NUMERIC_INT_DIGITS + 1), dtype=np.int64)
    out[:, 0] = _NUMERIC_INT_DIGITS + 1  # ndigits
    out[:, 1] = _NUMERIC_INT_DIGITS - 1  # weight of the first digit
    out[:, 2] = np.where(scaled < 0, 0x4000, 0)  # sign
    out[:, 3] = scale  # display scale
    whole = magnitude // _NBASE
    for k in range(_NUMERIC_INT_DIGITS):
        out[:, 4 + k] = (whole // _NBASE ** (_NUMERIC_INT_DIGITS - 1 - k)) % _NBASE
    out[:, -1] = magnitude % _NBASE
    return out
