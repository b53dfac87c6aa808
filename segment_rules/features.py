"""Per-person features at an explicit ``as_of``, aggregated in SQL that runs on SQLite and PostgreSQL.

One ``GROUP BY person_id`` pass over the activities of the people in scope computes every count, sum and
first/last time (conditional aggregates, one column each), joined to the person rows; the result is written
into ``person_feature`` with ``INSERT .. SELECT``, so nothing is loaded into Python per person. Features that
are simple functions of stored ones (``recency_days``, ``aov``, ``tenure_days``, ``click_to_open_rate``,
``frequency``) are not stored: :func:`derived` gives them as SQL expressions, so a rule on ``recency_days``
becomes a comparison on ``last_order_at`` that an index can serve.

Only activities at or before ``as_of`` count, so features at a past cutoff are exactly what was known then
(the churn model trains on such cutoffs). Cancelled and refunded orders (the ``cancelled`` / ``refunded``
attributes every connector sets) are left out of order counts and spend. Merged-away and deleted people are
never in scope, and neither are people who objected to profiling: they are excluded from scoring and
segments altogether.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.elements import ColumnElement

from hub.contracts import ORDER_CANCELLED, ORDER_REFUNDED, SESSION_PAGE_VIEWS, ActivityType, Consent
from hub.store import models as m

from .fields import WINDOWS_DAYS

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


class UtcDay(ColumnElement[Any]):
    """The UTC calendar day of a timestamp (PostgreSQL's ``date()`` would use the session's time zone)."""

    inherit_cache = True
    type = sa.String()

    def __init__(self, when: ColumnElement[Any]) -> None:
        self.when = when


@compiles(UtcDay, "sqlite")
def _day_sqlite(element: UtcDay, compiler: SQLCompiler, **kw: Any) -> str:
    return f"date({compiler.process(element.when, **kw)})"


@compiles(UtcDay, "postgresql")
def _day_postgresql(element: UtcDay, compiler: SQLCompiler, **kw: Any) -> str:
    return f"(({compiler.process(element.when, **kw)}) AT TIME ZONE 'UTC')::date"


def _flag(column: ColumnElement[Any], key: str) -> ColumnElement[bool]:
    # A missing attribute is false: most sources only set these flags on the orders they apply to.
    return sa.func.coalesce(column[key].as_boolean(), sa.false())


# ----------------------------------------------------------------------------------------------- aggregation


def _is_order(a: sa.Table) -> ColumnElement[bool]:
    """A placed order that counts: not cancelled, not refunded."""
    attrs = a.c.attributes
    return (a.c.type == T.ORDER.value) & ~_flag(attrs, ORDER_CANCELLED) & ~_flag(attrs, ORDER_REFUNDED)


def _aggregates(as_of: datetime) -> list[ColumnElement[Any]]:
    a = m.activity
    when = a.c.occurred_at
    typ = a.c.type
    order = _is_order(a)
    opens, clicks, sessions = typ == T.EMAIL_OPEN.value, typ == T.EMAIL_CLICK.value, typ == T.SESSION.value
    won = typ == T.DEAL_WON.value

    def count(cond: ColumnElement[bool], name: str) -> ColumnElement[Any]:
        return sa.func.sum(sa.case((cond, 1), else_=0)).label(name)

    def total(cond: ColumnElement[bool], value: ColumnElement[Any], name: str) -> ColumnElement[Any]:
        return sa.func.sum(sa.case((cond, value), else_=None)).label(name)

    def last(cond: ColumnElement[bool], name: str) -> ColumnElement[Any]:
        return sa.func.max(sa.case((cond, when), else_=None), type_=m.UTCDateTime()).label(name)

    def since(days: int) -> ColumnElement[bool]:
        return when >= sa.literal(as_of - timedelta(days=days), m.UTCDateTime())

    page_views = sa.func.coalesce(sa.cast(a.c.attributes[SESSION_PAGE_VIEWS].as_float(), sa.Integer), 1)
    cols: list[ColumnElement[Any]] = [
        count(order, "orders"),
        sa.func.count(sa.distinct(sa.case((order, UtcDay(when)), else_=None))).label("order_days"),
        total(order, a.c.amount, "monetary"),
        sa.func.min(sa.case((order, when), else_=None), type_=m.UTCDateTime()).label("first_order_at"),
        last(order, "last_order_at"),
        *(count(order & since(d), f"orders_{d}d") for d in WINDOWS_DAYS),
        *(total(order & since(d), a.c.amount, f"spend_{d}d") for d in WINDOWS_DAYS),
        count(opens, "email_opens"),
        count(clicks, "email_clicks"),
        *(count(opens & since(d), f"email_opens_{d}d") for d in WINDOWS_DAYS),
        *(count(clicks & since(d), f"email_clicks_{d}d") for d in WINDOWS_DAYS),
        last(opens, "last_email_open_at"),
        last(clicks, "last_email_click_at"),
        count(typ == T.EMAIL_BOUNCE.value, "email_bounces"),
        count(typ == T.EMAIL_UNSUBSCRIBE.value, "email_unsubscribes"),
        count(sessions, "sessions"),
        *(count(sessions & since(d), f"sessions_{d}d") for d in WINDOWS_DAYS),
        total(sessions & since(90), page_views, "page_views_90d"),
        last(sessions, "last_session_at"),
        count(won, "deals_won"),
        total(won, a.c.amount, "deals_won_amount"),
        sa.func.min(when, type_=m.UTCDateTime()).label("first_activity_at"),
    ]
    return cols


def sampled(person_id: ColumnElement[int], every: int) -> ColumnElement[bool]:
    """Every ``every``-th person by id: a deterministic sample for model fits on very large customer bases."""
    return sa.true() if every <= 1 else (person_id % every) == 0


def activity_aggregates(as_of: datetime, person_ids: Sequence[int] | None = None, every: int = 1) -> sa.Subquery:
    """One row per person with activities at or before ``as_of``: the aggregated feature columns."""
    a = m.activity
    where = [a.c.person_id.is_not(None), a.c.deleted.is_(False), a.c.occurred_at <= sa.literal(as_of, m.UTCDateTime())]
    if person_ids is not None:
        where.append(a.c.person_id.in_(person_ids))
    if every > 1:
        # On the activity's own person id, so the index entry filters before the row is read.
        where.append(sampled(a.c.person_id, every))
    return (
        sa.select(a.c.person_id.label("person_id"), *_aggregates(as_of))
        .where(*where)
        .group_by(a.c.person_id)
        .subquery("agg")
    )


# Stored aggregate columns that are counts: a person without activities has 0, not NULL.
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
TIME_COLUMNS = ("first_order_at", "last_order_at", "last_email_open_at", "last_email_click_at", "last_session_at")
PROPERTY_COLUMNS = ("lifecycle_stage", "country", "city")


def in_scope(person: sa.Table) -> ColumnElement[bool]:
    """People who are scored and segmented: live, not merged away, not objecting to profiling."""
    return person.c.merged_into.is_(None) & person.c.deleted.is_(False) & (person.c.consent != Consent.OBJECTED.value)


def feature_select(as_of: datetime, person_ids: Sequence[int] | None = None, every: int = 1) -> sa.Select[Any]:
    """``person_feature`` rows for the people in scope (all, or ``person_ids``; ``every``: a sample) at ``as_of``."""
    p = m.person
    agg = activity_aggregates(as_of, person_ids, every)
    first_seen = sa.case(
        (agg.c.first_activity_at.is_(None), p.c.created_at),
        (agg.c.first_activity_at < p.c.created_at, agg.c.first_activity_at),
        else_=p.c.created_at,
    )
    props = [sa.cast(p.c.properties[name].as_string(), sa.String).label(name) for name in PROPERTY_COLUMNS]
    where = [in_scope(p), sampled(p.c.id, every)]
    if person_ids is not None:
        where.append(p.c.id.in_(person_ids))
    return (
        sa.select(
            p.c.id.label("person_id"),
            sa.literal(as_of, m.UTCDateTime()).label("as_of"),
            *(sa.func.coalesce(agg.c[c], 0).label(c) for c in COUNT_COLUMNS),
            *(sa.func.coalesce(agg.c[c], 0).label(c) for c in SUM_COLUMNS),
            *(agg.c[c].label(c) for c in TIME_COLUMNS),
            sa.type_coerce(first_seen, m.UTCDateTime()).label("first_seen_at"),
            *props,
        )
        .select_from(p.outerjoin(agg, agg.c.person_id == p.c.id))
        .where(*where)
    )


def feature_columns() -> list[str]:
    """The columns :func:`feature_select` yields, in order (the insert's target list)."""
    return [c.name for c in feature_select(datetime(2000, 1, 1)).selected_columns]


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


def feature_matrix(
    conn: Any, as_of: datetime, names: Sequence[str], person_ids: Sequence[int] | None = None
) -> tuple[Any, Any]:
    """Features ``names`` at ``as_of`` for the people in scope, computed on the fly (nothing stored).

    For models that learn from past cutoffs (churn): the same SQL as ``person_feature``, at another time.

    Args:
        conn: an open connection.
        as_of: the cutoff; only activities at or before it count.
        names: stored or derived feature names (see :mod:`segment_rules.fields`).
        person_ids: only these people.

    Returns:
        ``(person_ids, X)``: an int64 array and a float64 array of shape (n, len(names)), NaN where a value is
        missing, rows in person id order.
    """
    from .scoring import read_float_rows

    sub = feature_select(as_of, person_ids).subquery("pf")
    exprs = derived(sub, as_of)
    cols = [_as_float(exprs.get(n, sub.c.get(n))).label(n) for n in names]  # type: ignore[arg-type]
    stmt = sa.select(sub.c.person_id, *cols).order_by(sub.c.person_id)
    data = read_float_rows(conn, stmt, len(names) + 1)
    return data[:, 0].astype("int64"), data[:, 1:]


def _as_float(expr: ColumnElement[Any]) -> ColumnElement[float]:
    # PostgreSQL will not cast a boolean to a float directly.
    if isinstance(expr.type, sa.Boolean):
        return sa.case((expr, 1.0), else_=0.0)
    return sa.cast(expr, sa.Float)


def orders_between(
    conn: Any, start: datetime, end: datetime, person_ids: Sequence[int] | None = None, every: int = 1
) -> dict[int, int]:
    """Orders per person in ``(start, end]`` (cancelled and refunded left out): the outcome churn models predict."""
    a = m.activity
    stmt = (
        sa.select(a.c.person_id, sa.func.count())
        .where(
            _is_order(a),
            a.c.person_id.is_not(None),
            a.c.deleted.is_(False),
            a.c.occurred_at > sa.literal(start, m.UTCDateTime()),
            a.c.occurred_at <= sa.literal(end, m.UTCDateTime()),
            sampled(a.c.person_id, every),
        )
        .group_by(a.c.person_id)
    )
    if person_ids is not None:
        stmt = stmt.where(a.c.person_id.in_(person_ids))
    return {int(pid): int(n) for pid, n in conn.execute(stmt)}
