"""Per-person features at an explicit ``as_of``: aggregated from the activities, stored in ``person_feature``.

The aggregation is one streamed pass over the activities (:mod:`segment_rules.aggregate`: the database
filters and encodes the rows, numpy groups them), so nothing is loaded into Python per activity and several
cutoffs can share the pass. :class:`FeatureTable` holds the result as columns, one entry per person in scope;
the features step writes it into ``person_feature`` with the store's bulk writer, and the scoring and churn
steps take their inputs from it without reading the table back. Features that are simple functions of stored
ones (``recency_days``, ``aov``, ``tenure_days``, ``click_to_open_rate``, ``frequency``) are not stored:
:func:`derived` gives them as SQL expressions for rules (so a rule on ``recency_days`` becomes a comparison on
``last_order_at`` that an index can serve), and :meth:`FeatureTable.values` computes the same in numpy.

Only activities at or before ``as_of`` count, so features at a past cutoff are exactly what was known then
(the churn model trains on such cutoffs). Cancelled and refunded orders (the ``cancelled`` / ``refunded``
attributes every connector sets) are left out of order counts and spend. Merged-away and deleted people are
never in scope, and neither are people who objected to profiling: they are excluded from scoring and
segments altogether.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import numpy as np
import sqlalchemy as sa
from numpy.typing import NDArray
from sqlalchemy.engine import Connection
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.elements import ColumnElement

from hub.contracts import ActivityType, Consent
from hub.store import models as m
from hub.store.bulk import Column

from .aggregate import (
    COUNT_COLUMNS,
    DAY_US,
    NO_FIRST,
    NO_LAST,
    SUM_COLUMNS,
    Accumulator,
    FeatureAccumulator,
    FloatArray,
    IntArray,
    ScanTime,
    driver_rows,
    id_chunks,
    micros,
    scan,
    scan_time_dtype,
    to_micros,
    voided,
)

T = ActivityType


# ----------------------------------------------------------------------------------------------- dialect help


class DaysBetween(ColumnElement[float]):
    """``(later - earlier)`` in fractional days, on SQLite and PostgreSQL."""

    inherit_cache = True
    type = sa.Float()

    def __init__(self, later: ColumnElement[Any], earlier: ColumnElement[Any]) -> None:
        self.later = later
        self.earlier = earlier


@compiles(DaysBetween, "sqlite")
def _days_sqlite(element: DaysBetween, compiler: SQLCompiler, **kw: Any) -> str:
    later, earlier = compiler.process(element.later, **kw), compiler.process(element.earlier, **kw)
    return f"(julianday({later}) - julianday({earlier}))"


@compiles(DaysBetween, "postgresql")
def _days_postgresql(element: DaysBetween, compiler: SQLCompiler, **kw: Any) -> str:
    later, earlier = compiler.process(element.later, **kw), compiler.process(element.earlier, **kw)
    return f"(EXTRACT(EPOCH FROM ({later} - {earlier})) / 86400.0)"


def _is_order(a: sa.Table) -> ColumnElement[bool]:
    """A placed order that counts: not cancelled, not refunded."""
    return (a.c.type == T.ORDER.value) & ~voided(a)


def sampled(person_id: ColumnElement[int], every: int) -> ColumnElement[bool]:
    """Every ``every``-th person by id: a deterministic sample for model fits on very large customer bases."""
    return sa.true() if every <= 1 else (person_id % every) == 0


TIME_COLUMNS = ("first_order_at", "last_order_at", "last_email_open_at", "last_email_click_at", "last_session_at")
PROPERTY_COLUMNS = ("lifecycle_stage", "country", "city")
STORED_COLUMNS = ("person_id", "as_of", *COUNT_COLUMNS, *SUM_COLUMNS, *TIME_COLUMNS, "first_seen_at", *PROPERTY_COLUMNS)


def in_scope(person: sa.Table) -> ColumnElement[bool]:
    """People who are scored and segmented: live, not merged away, not objecting to profiling."""
    return person.c.merged_into.is_(None) & person.c.deleted.is_(False) & (person.c.consent != Consent.OBJECTED.value)


# ----------------------------------------------------------------------------------------------- people


@dataclass
class People:
    """The people in scope, ascending by id: when each was created, and the merged person properties."""

    person_id: IntArray
    created_us: IntArray
    properties: dict[str, list[str | None]]

    def __len__(self) -> int:
        return len(self.person_id)

    def subset(self, keep: NDArray[np.bool_]) -> People:
        """The people where ``keep`` is true."""
        where = np.flatnonzero(keep).tolist()
        props = {k: [v[i] for i in where] for k, v in self.properties.items()}
        return People(self.person_id[keep], self.created_us[keep], props)

    def sample(self, every: int) -> People:
        """Every ``every``-th person by id (see :func:`sampled`)."""
        return self if every <= 1 else self.subset(self.person_id % every == 0)


def read_people(conn: Connection, person_ids: Sequence[int] | None = None) -> People:
    """The people in scope (all, or those of ``person_ids``), with their creation time and properties."""
    p = m.person
    props = [sa.cast(p.c.properties[name].as_string(), sa.String) for name in PROPERTY_COLUMNS]
    ids: list[Any] = []
    created: list[Any] = []
    values: list[list[str | None]] = [[] for _ in PROPERTY_COLUMNS]
    for chunk in id_chunks(person_ids):
        stmt = sa.select(p.c.id, ScanTime(p.c.created_at), *props).where(in_scope(p)).order_by(p.c.id)
        if chunk is not None:
            stmt = stmt.where(p.c.id.in_(chunk))
        for rows in driver_rows(conn, stmt):
            columns = list(zip(*rows, strict=True))
            ids.extend(columns[0])
            created.extend(columns[1])
            for column, got in zip(values, columns[2:], strict=True):
                column.extend(got)
    return People(
        np.array(ids, dtype=np.int64),
        to_micros(np.array(created, dtype=scan_time_dtype(conn.dialect))),
        dict(zip(PROPERTY_COLUMNS, values, strict=True)),
    )


# ----------------------------------------------------------------------------------------------- the table


@dataclass
class FeatureTable:
    """The features of some people at ``as_of``: the ``person_feature`` rows, as columns.

    Times are microseconds since the epoch with :data:`NO_FIRST` / :data:`NO_LAST` where there is none;
    :meth:`values` gives any stored or derived numeric feature as floats (NaN where missing).
    """

    as_of: datetime
    people: People
    columns: dict[str, NDArray[Any]]

    @classmethod
    def from_accumulator(cls, acc: FeatureAccumulator, people: People) -> FeatureTable:
        """The table of ``acc``'s people (``people`` must list the same ids)."""
        columns = acc.columns()
        first_activity = columns.pop("first_activity_at")
        columns["first_seen_at"] = np.minimum(first_activity, people.created_us)
        return cls(acc.as_of, people, columns)

    @property
    def person_id(self) -> IntArray:
        return self.people.person_id

    def __len__(self) -> int:
        return len(self.people)

    def subset(self, keep: NDArray[np.bool_]) -> FeatureTable:
        """The rows where ``keep`` is true."""
        return FeatureTable(self.as_of, self.people.subset(keep), {k: v[keep] for k, v in self.columns.items()})

    def times(self, name: str) -> FloatArray:
        """Days from the time column ``name`` to ``as_of`` (NaN where there is none)."""
        at = self.columns[name]
        missing = (at == NO_LAST) | (at == NO_FIRST)
        days = (micros(self.as_of) - at) / DAY_US
        days[missing] = np.nan
        return days

    def values(self, name: str) -> FloatArray:
        """A numeric stored or derived feature as floats, NaN where missing (the same as :func:`derived`)."""
        c = self.columns
        if name in derived_names():
            orders, opens = c["orders"].astype(np.float64), c["email_opens"].astype(np.float64)
            with np.errstate(divide="ignore", invalid="ignore"):
                if name == "frequency":
                    out = orders
                elif name == "aov":
                    out = np.where(orders > 0, c["monetary"] / orders, np.nan)
                elif name == "recency_days":
                    out = self.times("last_order_at")
                elif name == "tenure_days":
                    out = self.times("first_seen_at")
                elif name == "click_to_open_rate":
                    out = np.where(opens > 0, c["email_clicks"] / opens, np.nan)
                else:  # email_bounced, email_unsubscribed
                    counted = c["email_bounces" if name == "email_bounced" else "email_unsubscribes"]
                    out = (counted > 0).astype(np.float64)
            return np.asarray(out, dtype=np.float64)
        if name in TIME_COLUMNS or name == "first_seen_at":
            raise ValueError(f"{name!r} is a time, not a number")
        return c[name].astype(np.float64)

    def matrix(self, names: Sequence[str]) -> FloatArray:
        """The features ``names`` as columns of one float array (rows in person id order)."""
        if not names:
            return np.zeros((len(self), 0))
        return np.column_stack([self.values(n) for n in names])

    def stored(self, start: int, stop: int) -> dict[str, Column]:
        """``person_feature`` rows ``start:stop`` column by column, in :data:`STORED_COLUMNS` order."""
        c = self.columns
        ids = self.person_id[start:stop]
        out = {"person_id": Column(ids), "as_of": Column(np.full(len(ids), micros(self.as_of), dtype=np.int64))}
        out |= {name: Column(c[name][start:stop]) for name in (*COUNT_COLUMNS, *SUM_COLUMNS)}
        for name in (*TIME_COLUMNS, "first_seen_at"):
            at = c[name][start:stop]
            out[name] = Column(at, (at == NO_LAST) | (at == NO_FIRST))
        out |= {name: Column(self.people.properties[name][start:stop]) for name in PROPERTY_COLUMNS}
        return out


def compute_features(
    conn: Connection,
    as_of: datetime,
    person_ids: Sequence[int] | None = None,
    *,
    people: People | None = None,
    also: Sequence[Accumulator] = (),
) -> FeatureTable:
    """The features at ``as_of`` of the people in scope (all, or of ``person_ids``), from one activity pass.

    ``also``: more accumulators (other cutoffs, samples) fed from the same pass.
    """
    people = people if people is not None else read_people(conn, person_ids)
    acc = FeatureAccumulator(as_of, people.person_id)
    scan(conn, [acc, *also], person_ids)
    return FeatureTable.from_accumulator(acc, people)


# ----------------------------------------------------------------------------------------------- derived


def derived(table: sa.Table | sa.Subquery | sa.Alias, as_of: datetime) -> dict[str, ColumnElement[Any]]:
    """The features computed from stored columns, as SQL expressions over ``table`` (a person_feature)."""
    c = table.c
    at = sa.literal(as_of, m.UTCDateTime())
    return {
        "frequency": c.orders,
        "aov": sa.case((c.orders > 0, c.monetary / c.orders), else_=None),
        "recency_days": sa.case((c.last_order_at.is_(None), None), else_=DaysBetween(at, c.last_order_at)),
        "tenure_days": DaysBetween(at, c.first_seen_at),
        "click_to_open_rate": sa.case(
            (c.email_opens > 0, sa.cast(c.email_clicks, sa.Float) / c.email_opens), else_=None
        ),
        "email_bounced": c.email_bounces > 0,
        "email_unsubscribed": c.email_unsubscribes > 0,
    }


def columns_for(names: Iterable[str]) -> list[str]:
    """Which stored columns ``names`` need (derived names map to the columns they are computed from)."""
    needs = {
        "frequency": ("orders",),
        "aov": ("orders", "monetary"),
        "recency_days": ("last_order_at",),
        "tenure_days": ("first_seen_at",),
        "click_to_open_rate": ("email_opens", "email_clicks"),
        "email_bounced": ("email_bounces",),
        "email_unsubscribed": ("email_unsubscribes",),
    }
    out: dict[str, None] = {}
    for name in names:
        for col in needs.get(name, (name,)):
            out[col] = None
    return list(out)


def derived_names() -> frozenset[str]:
    """The names :func:`derived` computes."""
    return _DERIVED


_DERIVED = frozenset(
    ("frequency", "aov", "recency_days", "tenure_days", "click_to_open_rate", "email_bounced", "email_unsubscribed")
)


def feature_matrix(
    conn: Any, as_of: datetime, names: Sequence[str], person_ids: Sequence[int] | None = None
) -> tuple[IntArray, FloatArray]:
    """Features ``names`` at ``as_of`` for the people in scope, computed on the fly (nothing stored).

    Args:
        conn: an open connection.
        as_of: the cutoff; only activities at or before it count.
        names: stored or derived numeric feature names (see :mod:`segment_rules.fields`).
        person_ids: only these people.

    Returns:
        ``(person_ids, X)``: an int64 array and a float64 array of shape (n, len(names)), NaN where a value is
        missing, rows in person id order.
    """
    table = compute_features(conn, as_of, person_ids)
    return table.person_id, table.matrix(names)
