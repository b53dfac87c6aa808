"""``hub explain``: for one person, every segment's rule tree with the person's values and which conditions held.

Each node carries a reading with the person's value in it ("last_order_at 2025-01-03 is not within 365d of
2026-11-01", "no last_order_at (never ordered)"), so a condition that failed says what failed it.

The explanation runs the very SQL the evaluation runs (:mod:`segment_rules.compile`), with every node of every
rule as a column, for the one person: what it shows is what decided the membership.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa

from hub.store import Store
from hub.store import models as m

from .compile import Compiler
from .fields import FieldKind, lookup
from .language import AGE_OPS, PRESENCE_OPS, All, AnyOf, Compare, Event, Node, Not, Op, SegmentRef
from .ruleset import RuleSet


@dataclass
class NodeExplanation:
    """One condition: what it says, the person's value, whether it held, and its children."""

    text: str
    holds: bool
    value: Any = None
    children: list[NodeExplanation] = field(default_factory=list)
    reading: str = ""  # the condition with the person's value in it (the text when there is none)

    def as_dict(self) -> dict[str, Any]:
        """JSON-able view."""
        out: dict[str, Any] = {"condition": self.text, "holds": self.holds, "reading": self.reading or self.text}
        if self.value is not None:
            out["value"] = _plain(self.value)
        if self.children:
            out["children"] = [c.as_dict() for c in self.children]
        return out


@dataclass
class SegmentExplanation:
    """One segment for one person."""

    segment: str
    member: bool
    held_out: bool
    group: str | None
    rule: NodeExplanation
    stored_member: bool  # what the last evaluation stored (differs when data changed since)

    def as_dict(self) -> dict[str, Any]:
        """JSON-able view."""
        return {
            "segment": self.segment,
            "member": self.member,
            "held_out": self.held_out,
            "group": self.group,
            "stored_member": self.stored_member,
            "rule": self.rule.as_dict(),
        }


def _plain(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, float):
        return round(value, 4)
    return value


def describe(node: Node) -> str:
    """A one-line reading of a node, as the rule file says it."""
    if isinstance(node, All):
        return "all of"
    if isinstance(node, AnyOf):
        return "any of"
    if isinstance(node, Not):
        return "not"
    if isinstance(node, SegmentRef):
        return f"in segment {node.name}"
    if isinstance(node, Event):
        parts = [f"event {node.type}"]
        parts += [f"where {describe(w)}" for w in node.where]
        if node.within is not None:
            parts.append(f"within {_duration(node.within)}")
        if node.after is not None:
            parts.append(f"after {node.after.date().isoformat()}")
        if node.before is not None:
            parts.append(f"before {node.before.date().isoformat()}")
        parts.append(f"{node.measure} {node.op} {_operand(node.value)}")
        return " ".join(parts)
    return f"{node.field} {node.op} {_operand(node.value)}"


def _duration(value: timedelta) -> str:
    days = value.total_seconds() / 86_400
    return f"{days:g}d" if days >= 1 else f"{value.total_seconds() / 3600:g}h"


def _operand(value: Any) -> str:
    if isinstance(value, timedelta):
        return _duration(value)
    if isinstance(value, datetime):
        return value.date().isoformat()
    if isinstance(value, tuple):
        return "[" + ", ".join(_operand(v) for v in value) + "]"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


_SYMBOLS = {Op.EQ: "=", Op.NE: "!=", Op.GT: ">", Op.GTE: ">=", Op.LT: "<", Op.LTE: "<=", Op.IN: "in",
            Op.NOT_IN: "not in", Op.BETWEEN: "between", Op.CONTAINS: "contains", Op.STARTS_WITH: "starts with"}
# Why a field has no value, by what its name says it counts (a missing value makes a comparison false).
_NO_VALUE = (("order", "never ordered"), ("recency", "never ordered"), ("aov", "never ordered"),
             ("monetary", "never ordered"), ("email", "no email activity"), ("click", "no email activity"),
             ("session", "no web sessions"), ("page_views", "no web sessions"), ("deal", "no won deals"))


def reading(node: Node, holds: bool, value: Any, as_of: datetime, children: Sequence[NodeExplanation] = ()) -> str:
    """The node with the person's value: what held, or the value that failed it."""
    if isinstance(node, All | AnyOf):
        held = sum(1 for c in children if c.holds)
        return f"{describe(node)} ({held} of {len(children)} hold)"
    if isinstance(node, SegmentRef):
        return f"{'in' if holds else 'not in'} segment {node.name}"
    if isinstance(node, Event):
        return _event_reading(node, holds, value)
    if isinstance(node, Compare):
        return _compare_reading(node, holds, value, as_of)
    return describe(node)


def _event_reading(node: Event, holds: bool, value: Any) -> str:
    window = describe(node)[len(f"event {node.type}"):].rsplit(f" {node.measure} ", 1)[0]
    subject = f"event {node.type}{window}"
    shown = _show(value if value is not None else 0)
    verdict = "" if holds else "not "
    return f"{subject}: {node.measure} {shown}, {verdict}{_SYMBOLS.get(node.op, str(node.op))} {_operand(node.value)}"


def _compare_reading(node: Compare, holds: bool, value: Any, as_of: datetime) -> str:
    name = node.field
    if value is None:
        if node.op in PRESENCE_OPS and holds:
            return f"no {name}, as required"
        return f"no {name} ({_why_missing(name)})"
    shown = _show(value)
    if node.op in PRESENCE_OPS:
        return f"{name} is set ({shown})"
    if node.op in AGE_OPS:
        words = "within {} of" if node.op is Op.WITHIN else "older than {} at"
        verdict = "is" if holds else "is not"
        return f"{name} {shown} {verdict} {words.format(_operand(node.value))} {as_of.date().isoformat()}"
    symbol = _SYMBOLS.get(node.op, str(node.op))
    return f"{name} {shown} {symbol} {_operand(node.value)}" if holds else \
        f"{name} {shown}, not {symbol} {_operand(node.value)}"


def _why_missing(name: str) -> str:
    spec = lookup(name)
    if spec is not None and spec.kind is FieldKind.SCORE:
        return "not scored"
    if spec is not None and spec.kind is FieldKind.PROPERTY:
        return "no source sets it"
    return next((why for stem, why in _NO_VALUE if stem in name), "no value")


def _show(value: Any) -> str:
    if isinstance(value, datetime):
        return value.date().isoformat()
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return f"{value:,.0f}" if abs(value) >= 100 else f"{value:.2f}".rstrip("0").rstrip(".")
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def explain_segments(store: Store, rules: RuleSet, person_id: int, as_of: datetime) -> list[SegmentExplanation]:
    """Every segment's rule tree evaluated for one person at ``as_of`` (features as last computed)."""
    compiler = Compiler(rules, as_of)
    compiled = compiler.compile()
    columns: list[sa.ColumnElement[Any]] = []
    keys: dict[tuple[str, int], str] = {}
    for segment in rules.segments:
        keys[("segment", id(segment))] = f"c{len(columns)}"
        columns.append(compiled.conditions[segment.name].label(f"c{len(columns)}"))
        keys[("held", id(segment))] = f"c{len(columns)}"
        columns.append(compiled.held_out[segment.name].label(f"c{len(columns)}"))
    for node_id, expr in compiled.nodes.items():
        keys[("node", node_id)] = f"c{len(columns)}"
        columns.append(expr.label(f"c{len(columns)}"))
    for node_id, expr in compiled.values.items():
        keys[("value", node_id)] = f"c{len(columns)}"
        columns.append(expr.label(f"c{len(columns)}"))
    stmt = sa.select(*columns).select_from(compiled.source).where(compiled.person_id == person_id)
    sm = m.segment_membership
    with store.engine.connect() as conn:
        row = conn.execute(stmt).mappings().first()
        stored = set(
            conn.execute(
                sa.select(sm.c.segment).where(sm.c.person_id == person_id, sm.c.exited_at.is_(None))
            ).scalars()
        )
    if row is None:
        return []

    def build(node: Node) -> NodeExplanation:
        holds = bool(row[keys[("node", id(node))]])
        value_key = keys.get(("value", id(node)))
        value = row[value_key] if value_key else None
        children: list[Node] = []
        if isinstance(node, All | AnyOf):
            children = list(node.items)
        elif isinstance(node, Not):
            children = [node.item]
        explained = [build(c) for c in children]
        return NodeExplanation(describe(node), holds, value, explained, reading(node, holds, value, as_of, explained))

    return [
        SegmentExplanation(
            segment=s.name,
            member=bool(row[keys[("segment", id(s))]]),
            held_out=bool(row[keys[("segment", id(s))]]) and bool(row[keys[("held", id(s))]]),
            group=s.group,
            rule=build(s.rule),
            stored_member=s.name in stored,
        )
        for s in rules.segments
    ]
