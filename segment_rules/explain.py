"""``hub explain``: for one person, every segment's rule tree with the person's values and which conditions held.

The explanation runs the very SQL the evaluation runs (:mod:`segment_rules.compile`), with every node of every
rule as a column, for the one person: what it shows is what decided the membership.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa

from hub.store import Store
from hub.store import models as m

from .compile import Compiler
from .language import All, AnyOf, Event, Node, Not, SegmentRef
from .ruleset import RuleSet


@dataclass
class NodeExplanation:
    """One condition: what it says, the person's value, whether it held, and its children."""

    text: str
    holds: bool
    value: Any = None
    children: list[NodeExplanation] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        """JSON-able view."""
        out: dict[str, Any] = {"condition": self.text, "holds": self.holds}
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
        return NodeExplanation(describe(node), holds, value, [build(c) for c in children])

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
