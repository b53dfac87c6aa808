"""Compiling a checked :class:`~segment_rules.ruleset.RuleSet` into SQL, one boolean expression per segment.

Every segment becomes a ``WHERE`` condition over one FROM clause: the person, their ``person_feature`` and
``person_score`` rows, and one aggregated subquery per distinct event condition (activities of a type,
filtered and windowed, counted and summed per person), LEFT JOINed. The same SQL runs on SQLite and PostgreSQL.

Two-valued logic: every leaf is ``COALESCE(condition, false)``, so a comparison with a missing value is false
and ``not`` of it is true. That keeps the laws of ``all`` / ``any`` / ``not`` exact (De Morgan, double
negation), which plain SQL NULL logic would not.

A ``segment:`` reference is replaced by the referred segment's condition (the rule set is ordered so it is
compiled first); members of an exclusive group are "this member's rule and none of the earlier members'".
"""

from __future__ import annotations

import zlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.sql.elements import ColumnElement

from hub.store import models as m

from .aggregate import EventWindow
from .features import derived
from .fields import PROPERTY_PREFIX, FieldKind, FieldType, lookup
from .language import All, AnyOf, Compare, Event, Node, Not, Op, SegmentRef
from .ruleset import RuleSet

# Holdout assignment: a fixed hash of (segment, person id) into 10,000 buckets. Integer arithmetic only, so it
# is identical on SQLite and PostgreSQL and stable across runs and machines.
_HASH_MULTIPLIER = 2_654_435_761
_HASH_PRIME = 4_294_967_291
HOLDOUT_BUCKETS = 10_000


@dataclass
class Compiled:
    """The SQL of a rule set at one ``as_of``.

    Args:
        source: the FROM clause (person joined to features, scores and event subqueries).
        person_id: the person id column of ``source``.
        conditions: per segment (evaluation order), its membership condition.
        held_out: per segment, the condition that a member is held out (false without a holdout).
        nodes: the condition of every node, by ``id(node)``, for ``hub explain``.
        exclusive: per exclusive group, its members in group order with their own rules' conditions: a member
            holds where its own rule does and no earlier member's does (its entry in ``conditions``).
    """

    source: sa.FromClause
    person_id: ColumnElement[int]
    conditions: dict[str, ColumnElement[bool]]
    held_out: dict[str, ColumnElement[bool]]
    nodes: dict[int, ColumnElement[bool]] = field(default_factory=dict)
    values: dict[int, ColumnElement[Any]] = field(default_factory=dict)
    exclusive: list[list[tuple[str, ColumnElement[bool]]]] = field(default_factory=list)


def holdout_bucket(person_id: ColumnElement[int], segment: str) -> ColumnElement[int]:
    """The holdout bucket (0..9,999) of a person in a segment, as SQL."""
    salt = zlib.crc32(segment.encode())
    # 64-bit arithmetic: the product overflows PostgreSQL's 32-bit integer.
    big = sa.BigInteger()
    pid = sa.cast(person_id, big)
    mixed = (pid * sa.literal(_HASH_MULTIPLIER, big) + sa.literal(salt, big)) % sa.literal(_HASH_PRIME, big)
    return mixed % sa.literal(HOLDOUT_BUCKETS, big)


def holdout_bucket_py(person_id: int, segment: str) -> int:
    """:func:`holdout_bucket` in Python (tests and ``hub explain``)."""
    salt = zlib.crc32(segment.encode())
    return ((person_id * _HASH_MULTIPLIER + salt) % _HASH_PRIME) % HOLDOUT_BUCKETS


class Compiler:
    """Builds the SQL of one rule set at one ``as_of`` (see the module docstring)."""

    def __init__(
        self,
        rules: RuleSet,
        as_of: datetime,
        person_ids: Sequence[int] | None = None,
        counted: Mapping[EventWindow, sa.Table] | None = None,
    ) -> None:
        self.rules = rules
        self.as_of = as_of
        # An incremental evaluation restricts the event subqueries too, so they aggregate only those people.
        self.person_ids = person_ids
        # Events already counted by the activity pass (see pass_windows): tables of person_id, n, total.
        self.counted = dict(counted or {})
        self.p = m.person
        self.f = m.person_feature
        self.s = m.person_score
        self._derived = derived(self.f, as_of)
        self._events: dict[Event | EventWindow, sa.FromClause] = {}
        self._segments: dict[str, ColumnElement[bool]] = {}
        self._nodes: dict[int, ColumnElement[bool]] = {}
        self._values: dict[int, ColumnElement[Any]] = {}

    def compile(self) -> Compiled:
        """Compile every segment (dependencies first, as the rule set is ordered)."""
        own: dict[str, ColumnElement[bool]] = {}
        for segment in self.rules.segments:
            own[segment.name] = self.node(segment.rule)
            self._segments[segment.name] = self._effective(segment.name, segment.group, own)
        source: sa.FromClause = self.p.join(self.f, self.f.c.person_id == self.p.c.id).outerjoin(
            self.s, self.s.c.person_id == self.p.c.id
        )
        for sub in self._events.values():
            source = source.outerjoin(sub, sub.c.person_id == self.p.c.id)
        held = {
            s.name: (holdout_bucket(self.p.c.id, s.name) < round(s.holdout * 100)) if s.holdout else sa.false()
            for s in self.rules.segments
        }
        exclusive = [
            [(name, own[name]) for name in group.members if name in own]
            for group in self.rules.groups.values()
            if group.exclusive
        ]
        return Compiled(source, self.p.c.id, dict(self._segments), held, dict(self._nodes), dict(self._values),
                        [members for members in exclusive if members])

    def _effective(self, name: str, group: str | None, own: Mapping[str, ColumnElement[bool]]) -> ColumnElement[bool]:
        if group is None or not self.rules.groups[group].exclusive:
            return own[name]
        members = self.rules.groups[group].members
        earlier = [own[n] for n in members[: members.index(name)] if n in own]
        return sa.and_(own[name], *(sa.not_(e) for e in earlier)) if earlier else own[name]

    # -- nodes

    def node(self, node: Node) -> ColumnElement[bool]:
        """The two-valued condition of one node."""
        expr = self._node(node)
        self._nodes[id(node)] = expr
        return expr

    def _node(self, node: Node) -> ColumnElement[bool]:
        if isinstance(node, All):
            return sa.and_(sa.true(), *(self.node(n) for n in node.items))
        if isinstance(node, AnyOf):
            return sa.or_(sa.false(), *(self.node(n) for n in node.items))
        if isinstance(node, Not):
            return sa.not_(self.node(node.item))
        if isinstance(node, SegmentRef):
            return self._segments[node.name]
        if isinstance(node, Event):
            return self._event(node)
        column = self._column(node.field, node)
        self._values[id(node)] = column
        return _two_valued(compare(column, node.op, node.value, self.as_of, node.type))

    def _column(self, name: str, node: Compare) -> ColumnElement[Any]:
        spec = lookup(name)
        assert spec is not None  # the parser only lets known fields through
        if spec.kind is FieldKind.PROPERTY:
            return _json_value(self.p.c.properties[name[len(PROPERTY_PREFIX):]], node)
        if spec.kind is FieldKind.PERSON:
            return self.p.c[name]
        if spec.kind is FieldKind.SCORE:
            return self.s.c[name]
        return self._derived.get(name, self.f.c.get(name))  # type: ignore[return-value]

    def _event(self, event: Event) -> ColumnElement[bool]:
        window = event_window(event)
        key: Event | EventWindow = window if window is not None and window in self.counted else event
        sub = self._events.get(key)
        if sub is None:
            name = f"ev{len(self._events)}"
            sub = self.counted[key].alias(name) if isinstance(key, EventWindow) else self._event_subquery(event, name)
            self._events[key] = sub
        measure = sa.func.coalesce(sub.c.n if event.measure == "count" else sub.c.total, 0)
        self._values[id(event)] = measure
        return _two_valued(compare(measure, event.op, event.value, self.as_of, FieldType.NUMBER))

    def _event_subquery(self, event: Event, name: str) -> sa.Subquery:
        a = m.activity
        at = a.c.occurred_at
        where: list[ColumnElement[bool]] = [
            a.c.type == event.type,
            a.c.person_id.is_not(None),
            a.c.deleted.is_(False),
            at <= sa.literal(self.as_of, m.UTCDateTime()),
        ]
        if self.person_ids is not None:
            where.append(a.c.person_id.in_(self.person_ids))
        if event.within is not None:
            where.append(at >= sa.literal(self.as_of - event.within, m.UTCDateTime()))
        if event.after is not None:
            where.append(at >= sa.literal(event.after, m.UTCDateTime()))
        if event.before is not None:
            where.append(at < sa.literal(event.before, m.UTCDateTime()))
        for cond in event.where:
            column = _activity_column(cond)
            where.append(_two_valued(compare(column, cond.op, cond.value, self.as_of, cond.type)))
        return (
            sa.select(a.c.person_id, sa.func.count().label("n"), sa.func.sum(a.c.amount).label("total"))
            .where(*where)
            .group_by(a.c.person_id)
            .subquery(name)
        )


def event_window(event: Event) -> EventWindow | None:
    """The window an event condition counts in, when the activity pass can count it (no attribute filters, a
    type the pass tells apart); None otherwise."""
    if event.where:
        return None
    window = EventWindow(event.type, event.within, event.after, event.before)
    return window if window.kinds() is not None else None


def pass_windows(rules: RuleSet) -> list[EventWindow]:
    """The distinct windows of the rule set's event conditions that the activity pass can count."""
    found: dict[EventWindow, None] = {}

    def visit(node: Node) -> None:
        if isinstance(node, All | AnyOf):
            for item in node.items:
                visit(item)
        elif isinstance(node, Not):
            visit(node.item)
        elif isinstance(node, Event) and (window := event_window(node)) is not None:
            found[window] = None

    for segment in rules.segments:
        visit(segment.rule)
    return list(found)


def _two_valued(expr: ColumnElement[bool]) -> ColumnElement[bool]:
    return sa.func.coalesce(expr, sa.false())


def _activity_column(cond: Compare) -> ColumnElement[Any]:
    a = m.activity
    if cond.field == "amount":
        return a.c.amount
    if cond.field == "currency":
        return a.c.currency
    return _json_value(a.c.attributes[cond.field], cond)


def _json_value(element: Any, cond: Compare) -> ColumnElement[Any]:
    """A JSON value read as the type of the literal it is compared with."""
    sample = cond.value[0] if isinstance(cond.value, tuple) and cond.value else cond.value
    if cond.op in (Op.EXISTS, Op.IS_EMPTY) or isinstance(sample, str):
        return element.as_string()  # type: ignore[no-any-return]
    if isinstance(sample, bool):
        return element.as_boolean()  # type: ignore[no-any-return]
    if isinstance(sample, float | int):
        return element.as_float()  # type: ignore[no-any-return]
    if isinstance(sample, datetime) or cond.op in (Op.WITHIN, Op.OLDER_THAN):
        return sa.type_coerce(element.as_string(), m.UTCDateTime())
    return element.as_string()  # type: ignore[no-any-return]


def _ts(value: datetime) -> ColumnElement[Any]:
    return sa.literal(value, m.UTCDateTime())


def compare(column: ColumnElement[Any], op: Op, value: Any, as_of: datetime, ftype: FieldType) -> ColumnElement[bool]:
    """``column OP value`` in SQL (before two-valued coalescing)."""
    lit: Callable[[Any], Any] = _ts if ftype is FieldType.DATETIME or isinstance(value, datetime) else (lambda v: v)
    if op is Op.EXISTS:
        return column.is_not(None) if value else column.is_(None)
    if op is Op.IS_EMPTY:
        empty = column.is_(None) | (sa.cast(column, sa.String) == "") if ftype in (
            FieldType.STRING, FieldType.ANY) else column.is_(None)
        return empty if value else sa.not_(empty)
    if op is Op.WITHIN:
        return (column >= _ts(as_of - value)) & (column <= _ts(as_of))
    if op is Op.OLDER_THAN:
        return column < _ts(as_of - value)
    if op is Op.BETWEEN:
        low, high = value
        return column.between(lit(low), lit(high))
    if op is Op.IN:
        return column.in_([lit(v) for v in value])
    if op is Op.NOT_IN:
        return column.is_not(None) & column.not_in([lit(v) for v in value])
    if op is Op.CONTAINS:
        return column.contains(value, autoescape=True)
    if op is Op.STARTS_WITH:
        return column.startswith(value, autoescape=True)
    table: dict[Op, Callable[[Any, Any], ColumnElement[bool]]] = {
        Op.EQ: lambda c, v: c == v,
        Op.NE: lambda c, v: c.is_not(None) & (c != v),
        Op.GT: lambda c, v: c > v,
        Op.GTE: lambda c, v: c >= v,
        Op.LT: lambda c, v: c < v,
        Op.LTE: lambda c, v: c <= v,
    }
    return table[op](column, lit(value))
