"""The segment rule language: the syntax tree, and the parser that checks a rule file and builds it.

A rule file defines one segment, or a group of segments::

    segment: vip
    description: Spent 1,000 or more in the last year, and still buying
    tag: vip                       # the tag pushed (the destination adds its prefix); default: the name
    destinations: [crm-tags]       # where it is pushed (a destination's own `segments:` list adds to this)
    holdout: 10                    # percent of members computed but never pushed, to measure lift
    rule:
      all:
        - spend_365d: {gte: 1000}
        - recency_days: {lte: 90}
        - not: {consent: {in: [denied, undeliverable]}}
        - event: order             # an event condition: type, attribute filters, window, count or sum
          where: {channel: online}
          within: 365d
          count: {gte: 2}
        - segment: engaged         # membership in another segment

A group file lists segments under ``segments:``; with ``exclusive: true`` a person lands in the first matching
member only (lifecycle tiers, RFM segments).

Conditions
----------
- ``FIELD: {OP: VALUE, ...}`` (several operators are all required), ``FIELD: VALUE`` (equality) and
  ``FIELD: [A, B]`` (one of). Several fields in one mapping are all required.
- Operators: eq, ne, in, not_in, gt, gte, lt, lte, between [low, high] (inclusive), contains, starts_with,
  exists (true/false), is_empty (true/false); on time fields also within (``90d``: at most that long before
  ``as_of``), older_than (``30d``: longer ago than that), and gt/gte/lt/lte/between with ISO dates.
- ``all: [...]``, ``any: [...]`` and ``not: {...}`` nest to any depth; ``all: []`` is true, ``any: []`` false.
- ``event: TYPE`` with optional ``where`` (conditions on the activity's attributes, ``amount`` or
  ``currency``), a window (``within: 90d``, ``after: DATE``, ``before: DATE``) and ``count: {OP: N}`` or
  ``sum: {OP: X}`` (of ``amount``); the default is ``count: {gte: 1}``. ``count: 0`` means "never" in the
  window.
- ``segment: NAME`` refers to another segment (cycles are errors). Scores (``rfm_segment``, ``clv``,
  ``churn_probability``, ``cluster``) are ordinary fields.

Missing values: a comparison with a field that has no value is false (``ne`` and ``not_in`` included), so
``not`` of it is true; ``exists`` and ``is_empty`` test for missing values explicitly.

Every problem is reported at once, one line each, as ``file:line:col: field.path: what is wrong``.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from enum import StrEnum
from typing import Any, Protocol

from hub.errors import ConfigError

from .fields import FIELDS, FieldKind, FieldSpec, FieldType, lookup

Path = tuple[str | int, ...]


class Locate(Protocol):
    """Gives ``file:line:col`` of a path in the file being parsed (of its key, with ``key=True``)."""

    def __call__(self, path: Path, *, key: bool = False) -> str: ...

NAME_RE = re.compile(r"^[a-z][a-z0-9_-]{0,62}$")
DURATION_RE = re.compile(r"^(\d+)\s*(d|w|h|m)$")
_DURATION_UNITS = {"d": timedelta(days=1), "w": timedelta(weeks=1), "h": timedelta(hours=1), "m": timedelta(minutes=1)}
MAX_HOLDOUT_PERCENT = 50.0
# A window reaching further back than this is a typo (and as_of minus it would leave datetime's range).
MAX_WINDOW_DAYS = 36500
# Numbers are compared as floats, in SQL too: beyond 2**53 a float no longer holds every integer, and far
# beyond it SQLite and PostgreSQL integers overflow. No count, amount or score in a rule comes near.
MAX_NUMBER = 10**15


class Op(StrEnum):
    EQ = "eq"
    NE = "ne"
    IN = "in"
    NOT_IN = "not_in"
    GT = "gt"
    GTE = "gte"
    LT = "lt"
    LTE = "lte"
    BETWEEN = "between"
    CONTAINS = "contains"
    STARTS_WITH = "starts_with"
    EXISTS = "exists"
    IS_EMPTY = "is_empty"
    WITHIN = "within"
    OLDER_THAN = "older_than"


ORDERING_OPS = frozenset({Op.GT, Op.GTE, Op.LT, Op.LTE, Op.BETWEEN})
TEXT_OPS = frozenset({Op.CONTAINS, Op.STARTS_WITH})
PRESENCE_OPS = frozenset({Op.EXISTS, Op.IS_EMPTY})
AGE_OPS = frozenset({Op.WITHIN, Op.OLDER_THAN})
MEASURE_OPS = (Op.EQ, Op.NE, Op.GT, Op.GTE, Op.LT, Op.LTE, Op.BETWEEN)
_NODE_KEYS = ("all", "any", "not", "segment", "event")
_EVENT_KEYS = ("event", "where", "within", "after", "before", "count", "sum")


# ----------------------------------------------------------------------------------------------- the tree


@dataclass(frozen=True, slots=True)
class Compare:
    """``field OP value`` on a person field, feature, score, property or (inside ``where``) an activity field.

    ``value`` is normalized: numbers as float, dates as aware UTC datetimes, windows as timedelta, ``between``
    as a (low, high) tuple, ``in`` as a tuple.
    """

    field: str
    type: FieldType
    op: Op
    value: Any
    at: str = dataclasses.field(default="", compare=False)


@dataclass(frozen=True, slots=True)
class Event:
    """Activities of one type, filtered, in a window, counted or summed, compared with a threshold."""

    type: str
    where: tuple[Compare, ...]
    within: timedelta | None
    after: datetime | None
    before: datetime | None
    measure: str  # "count" or "sum"
    op: Op
    value: Any
    at: str = field(default="", compare=False)


@dataclass(frozen=True, slots=True)
class SegmentRef:
    """Membership in another segment of the same evaluation."""

    name: str
    at: str = field(default="", compare=False)
    path: str = field(default="segment", compare=False)


@dataclass(frozen=True, slots=True)
class All:
    items: tuple[Node, ...]
    at: str = field(default="", compare=False)


@dataclass(frozen=True, slots=True)
class AnyOf:
    items: tuple[Node, ...]
    at: str = field(default="", compare=False)


@dataclass(frozen=True, slots=True)
class Not:
    item: Node
    at: str = field(default="", compare=False)


Node = Compare | Event | SegmentRef | All | AnyOf | Not


@dataclass(frozen=True, slots=True)
class ProtectedUse:
    """A protected attribute a segment may use, and why (shown by ``hub check`` and ``hub explain``)."""

    field: str
    reason: str


@dataclass(frozen=True, slots=True)
class SegmentDef:
    """One segment, as a rule file defines it.

    Args:
        name: unique across all rule files.
        description: what the segment means, for marketers.
        tag: the tag pushed to destinations (without the destination's prefix).
        destinations: destination names the segment is pushed to (a destination's ``segments`` adds more).
        holdout: percent of members held out (computed, stored, never pushed).
        rule: the condition tree.
        group: the group it belongs to, if any; ``exclusive`` groups assign each person to one member.
        allow_protected: protected attributes this segment may use, with the reason.
        at: where it is defined (``file:line:col``).
    """

    name: str
    description: str
    tag: str
    destinations: tuple[str, ...]
    holdout: float
    rule: Node
    group: str | None = None
    allow_protected: tuple[ProtectedUse, ...] = ()
    at: str = ""


@dataclass(frozen=True, slots=True)
class GroupDef:
    """A group of segments; in an exclusive group a person is in the first matching member only."""

    name: str
    description: str
    exclusive: bool
    members: tuple[str, ...]
    at: str = ""


# ----------------------------------------------------------------------------------------------- values


def parse_window(value: object) -> timedelta:
    """``90d``, ``12w``, ``6h``, ``30m`` as a timedelta; ValueError otherwise."""
    if isinstance(value, str):
        m = DURATION_RE.match(value.strip())
        if m:
            unit = _DURATION_UNITS[m.group(2)]
            # Compared before multiplying: a timedelta of a 20-digit count of days overflows.
            if int(m.group(1)) * unit.total_seconds() > MAX_WINDOW_DAYS * 86400:
                raise ValueError(f"window {value!r} is out of range (at most {MAX_WINDOW_DAYS}d)")
            return int(m.group(1)) * unit
    raise ValueError(f"must be a duration such as 30d, 12w or 6h, not {value!r}")


def parse_when(value: object) -> datetime:
    """An ISO date or date-time as an aware UTC datetime (a date means its midnight in UTC)."""
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    if isinstance(value, date):
        return datetime(value.year, value.month, value.day, tzinfo=UTC)
    if isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
        except ValueError:
            pass
        else:
            return parsed.astimezone(UTC) if parsed.tzinfo else parsed.replace(tzinfo=UTC)
    raise ValueError(f"must be an ISO date such as 2025-01-31, not {value!r}")


def did_you_mean(word: object, choices: Sequence[str]) -> str:
    """`` (did you mean 'x'?)`` for the closest choice, or an empty string."""
    import difflib

    close = difflib.get_close_matches(str(word), list(choices), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def dotted(path: Path) -> str:
    """``rule.all[0].event`` for a path."""
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


# ----------------------------------------------------------------------------------------------- the parser


@dataclass
class Parser:
    """Builds segment definitions from one rule file's data, collecting every error.

    Args:
        locate: ``file:line:col`` of a path in the file.
        protected: field names (and property names) rules may not use without an ``allow_protected`` entry.
    """

    locate: Locate
    protected: frozenset[str] = frozenset()
    errors: list[ConfigError] = field(default_factory=list)
    # Every segment name the file defines, valid or not, so a reference to a broken segment is not "unknown".
    defined: list[str] = field(default_factory=list)
    # The protected attributes the segment being parsed may use, with the reason given.
    _reasons: dict[str, str] = field(default_factory=dict)

    def error(self, path: Path, message: str, *, key: bool = False) -> None:
        """Record a problem at ``path`` (pointing at its key with ``key``: an unknown name is the key)."""
        where = self.locate(path, key=key)
        self.errors.append(ConfigError(message, location=where, field=dotted(path) or None))

    # -- files

    def parse_file(self, data: object) -> tuple[list[SegmentDef], list[GroupDef]]:
        """The segments (and group) a file defines; problems go to :attr:`errors`."""
        if not isinstance(data, Mapping):
            self.error((), "a rule file must be a mapping with `segment:` or `group:`")
            return [], []
        if "group" in data:
            return self._group(data)
        if "segment" in data:
            segment = self._segment(data, (), group=None, defaults={})
            return ([segment] if segment else []), []
        self.error((), "a rule file needs `segment: NAME` (one segment) or `group: NAME` (several)")
        return [], []

    def _group(self, data: Mapping[str, Any]) -> tuple[list[SegmentDef], list[GroupDef]]:
        self._unknown(data, (), ("group", "description", "exclusive", "destinations", "holdout", "segments"))
        name = self._name(data.get("group"), ("group",))
        exclusive = data.get("exclusive", True)
        if not isinstance(exclusive, bool):
            self.error(("exclusive",), "must be true or false")
            exclusive = True
        defaults = {k: data[k] for k in ("destinations", "holdout") if k in data}
        items = data.get("segments")
        segments: list[SegmentDef] = []
        if not isinstance(items, list) or not items:
            self.error(("segments",), "a group needs a non-empty list of segments")
            items = []
        for i, item in enumerate(items):
            path: Path = ("segments", i)
            if not isinstance(item, Mapping):
                self.error(path, "must be a mapping with name and rule")
                continue
            segment = self._segment(item, path, group=name, defaults=defaults)
            if segment is not None:
                segments.append(segment)
        description = self._text(data.get("description", ""), ("description",))
        group = GroupDef(name or "", description, exclusive, tuple(s.name for s in segments), self.locate(()))
        return segments, ([group] if name else [])

    def _segment(
        self, data: Mapping[str, Any], path: Path, *, group: str | None, defaults: Mapping[str, Any]
    ) -> SegmentDef | None:
        key = "name" if group is not None else "segment"
        allowed = (key, "description", "tag", "destinations", "holdout", "rule", "allow_protected")
        self._unknown(data, path, allowed)
        name = self._name(data.get(key), (*path, key))
        if name is not None:
            self.defined.append(name)
        self._reasons = self._protected_uses(data.get("allow_protected", []), (*path, "allow_protected"))
        if "rule" not in data:
            self.error((*path, "rule"), "required field missing")
            rule: Node | None = None
        else:
            rule = self.node(data["rule"], (*path, "rule"))
        tag = data.get("tag", name)
        if not isinstance(tag, str) or not tag.strip() or len(tag) > 100:
            self.error((*path, "tag"), "must be a non-empty text of at most 100 characters")
        destinations = self._destinations(data.get("destinations", defaults.get("destinations", [])), path)
        holdout = self._holdout(data.get("holdout", defaults.get("holdout", 0)), (*path, "holdout"))
        uses = tuple(ProtectedUse(f, r) for f, r in sorted(self._reasons.items()))
        self._reasons = {}
        if name is None or rule is None or not isinstance(tag, str):
            return None
        return SegmentDef(
            name=name,
            description=self._text(data.get("description", ""), (*path, "description")),
            tag=tag.strip(),
            destinations=destinations,
            holdout=holdout,
            rule=rule,
            group=group,
            allow_protected=uses,
            at=self.locate(path),
        )

    def _name(self, value: object, path: Path) -> str | None:
        if not isinstance(value, str) or not NAME_RE.match(value):
            self.error(path, "must be a name of lowercase letters, digits, '_' and '-', starting with a letter")
            return None
        return value

    def _text(self, value: object, path: Path) -> str:
        if not isinstance(value, str):
            self.error(path, "must be text")
            return ""
        return value.strip()

    def _destinations(self, value: object, path: Path) -> tuple[str, ...]:
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, list) or not all(isinstance(v, str) and NAME_RE.match(v) for v in value):
            self.error((*path, "destinations"), "must be a list of destination names")
            return ()
        return tuple(dict.fromkeys(value))

    def _holdout(self, value: object, path: Path) -> float:
        if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= MAX_HOLDOUT_PERCENT:
            self.error(path, f"must be a percentage from 0 to {MAX_HOLDOUT_PERCENT:g}")
            return 0.0
        return float(value)

    def _protected_uses(self, value: object, path: Path) -> dict[str, str]:
        reasons: dict[str, str] = {}
        if not isinstance(value, list):
            self.error(path, "must be a list of {field: NAME, reason: WHY}")
            return reasons
        for i, item in enumerate(value):
            here = (*path, i)
            if not isinstance(item, Mapping) or set(item) != {"field", "reason"}:
                self.error(here, "must be {field: NAME, reason: WHY}")
                continue
            name, reason = item["field"], item["reason"]
            if not isinstance(reason, str) or len(reason.strip()) < 10:
                self.error((*here, "reason"), "give a reason of at least a few words: it is shown to reviewers")
                continue
            reasons[str(name)] = reason.strip()
        return reasons

    def _unknown(self, data: Mapping[str, Any], path: Path, allowed: Sequence[str]) -> None:
        for key in data:
            if key not in allowed:
                self.error((*path, key), f"unknown field{did_you_mean(key, allowed)}", key=True)

    # -- conditions

    def node(self, data: object, path: Path) -> Node | None:
        """One condition (or a combination); None when it has errors (already recorded)."""
        if not isinstance(data, Mapping) or not data:
            self.error(path, "a condition must be a mapping: FIELD: {OP: VALUE}, all, any, not, event or segment")
            return None
        at = self.locate(path)
        keys = list(data)
        if "event" in data:
            return self._event(data, path)
        combinators = [k for k in keys if k in ("all", "any", "not", "segment")]
        if combinators:
            if len(keys) > 1:
                self.error(path, f"`{combinators[0]}` must be alone in its mapping; put the rest in an `all:` list")
                return None
            return self._combinator(combinators[0], data[combinators[0]], (*path, combinators[0]), at)
        parts = [self._field(str(k), data[k], (*path, k)) for k in keys]
        found = [p for p in parts if p is not None]
        if len(found) != len(parts):
            return None
        nodes = [n for group in found for n in group]
        return nodes[0] if len(nodes) == 1 else All(tuple(nodes), at)

    def _combinator(self, key: str, value: object, path: Path, at: str) -> Node | None:
        if key == "not":
            inner = self.node(value, path)
            return Not(inner, at) if inner is not None else None
        if key == "segment":
            if not isinstance(value, str) or not NAME_RE.match(value):
                self.error(path, "must be the name of a segment")
                return None
            return SegmentRef(value, self.locate(path), dotted(path))
        if not isinstance(value, list):
            self.error(path, f"`{key}` takes a list of conditions")
            return None
        items = [self.node(item, (*path, i)) for i, item in enumerate(value)]
        if any(item is None for item in items):
            return None
        children = tuple(i for i in items if i is not None)
        return All(children, at) if key == "all" else AnyOf(children, at)

    def _field(self, name: str, value: object, path: Path) -> list[Compare] | None:
        spec = lookup(name)
        if spec is None:
            self.error(path, f"unknown field{did_you_mean(name, list(FIELDS) + list(_NODE_KEYS))}", key=True)
            return None
        if self._is_protected(name) and name not in self._reasons:
            self.error(
                path,
                f"{name!r} is a protected attribute: segments may not use it unless the segment lists it under "
                "allow_protected with a reason",
            )
            return None
        return self._ops(spec, value, path)

    def _is_protected(self, name: str) -> bool:
        bare = name.removeprefix("properties.").lower()
        return name in self.protected or bare in self.protected

    def _ops(self, spec: FieldSpec, value: object, path: Path) -> list[Compare] | None:
        at = self.locate(path)
        if isinstance(value, Mapping):
            if not value:
                self.error(path, "give at least one operator, e.g. {gte: 3}")
                return None
            out: list[Compare] = []
            ok = True
            for op_name, operand in value.items():
                compare = self._compare(spec, str(op_name), operand, (*path, op_name), at)
                ok = ok and compare is not None
                if compare is not None:
                    out.append(compare)
            return out if ok else None
        shorthand = "in" if isinstance(value, list) else "eq"
        compare = self._compare(spec, shorthand, value, path, at)
        return [compare] if compare is not None else None

    def _compare(self, spec: FieldSpec, op_name: str, operand: object, path: Path, at: str) -> Compare | None:
        try:
            op = Op(op_name)
        except ValueError:
            self.error(path, f"unknown operator{did_you_mean(op_name, [o.value for o in Op])}", key=True)
            return None
        try:
            value = check_operand(spec, op, operand)
        except ValueError as exc:
            self.error(path, str(exc))
            return None
        return Compare(spec.name, spec.type, op, value, at)

    def _event(self, data: Mapping[str, Any], path: Path) -> Event | None:
        self._unknown(data, path, _EVENT_KEYS)
        errors_before = len(self.errors)
        kind = data["event"]
        if not isinstance(kind, str) or not kind.strip():
            self.error((*path, "event"), "must be an activity type such as order, email_open or session")
            kind = ""
        where = self._where(data.get("where", {}), (*path, "where"))
        within = self._opt(data, "within", path, parse_window)
        after = self._opt(data, "after", path, parse_when)
        before = self._opt(data, "before", path, parse_when)
        if "count" in data and "sum" in data:
            self.error(path, "give either count or sum, not both")
        measure = "sum" if "sum" in data else "count"
        op, value = self._measure(data.get(measure, {"gte": 1}), (*path, measure), measure)
        if len(self.errors) > errors_before or op is None:
            return None
        return Event(
            normalize_event_type(kind), where, within, after, before, measure, op, value, self.locate(path)
        )

    def _opt(self, data: Mapping[str, Any], key: str, path: Path, parse: Callable[[object], Any]) -> Any:
        if key not in data:
            return None
        try:
            return parse(data[key])
        except ValueError as exc:
            self.error((*path, key), str(exc))
            return None

    def _where(self, value: object, path: Path) -> tuple[Compare, ...]:
        if not isinstance(value, Mapping):
            self.error(path, "must be a mapping of attribute: {OP: VALUE}")
            return ()
        spec_of = {"amount": FieldType.NUMBER, "currency": FieldType.STRING}
        out: list[Compare] = []
        for key, ops in value.items():
            spec = FieldSpec(str(key), spec_of.get(str(key), FieldType.ANY), FieldKind.PROPERTY, "activity field")
            found = self._ops(spec, ops, (*path, key))
            out.extend(found or ())
        return tuple(out)

    def _measure(self, value: object, path: Path, measure: str) -> tuple[Op | None, Any]:
        if not isinstance(value, Mapping):
            value = {"eq": value}
        if len(value) != 1:
            self.error(path, f"give one comparison, e.g. {measure}: {{gte: 3}}")
            return None, None
        (op_name, operand), = value.items()
        if op_name not in [o.value for o in MEASURE_OPS]:
            self.error(
                (*path, op_name), f"unknown operator{did_you_mean(op_name, [o.value for o in MEASURE_OPS])}", key=True
            )
            return None, None
        ftype = FieldType.INTEGER if measure == "count" else FieldType.NUMBER
        spec = FieldSpec(measure, ftype, FieldKind.FEATURE, f"the {measure} of matching activities")
        try:
            checked = check_operand(spec, Op(op_name), operand)
        except ValueError as exc:
            self.error((*path, op_name), str(exc))
            return None, None
        if measure == "count" and _negative(checked):
            self.error((*path, op_name), "a count is never negative")
            return None, None
        return Op(op_name), checked


def _negative(value: Any) -> bool:
    values = value if isinstance(value, tuple) else (value,)
    return any(v < 0 for v in values)


def normalize_event_type(raw: str) -> str:
    """``Email Open``, ``email-open`` and ``email_open`` are one type (as the CSV source writes them)."""
    return re.sub(r"[\s\-]+", "_", raw.strip()).lower()


# ----------------------------------------------------------------------------------------------- operands


def check_operand(spec: FieldSpec, op: Op, operand: object) -> Any:
    """The operand of ``spec OP operand``, normalized; ValueError saying what is wrong."""
    ftype = spec.type
    if op in PRESENCE_OPS:
        if not isinstance(operand, bool):
            raise ValueError(f"{op} takes true or false")
        return operand
    if op in AGE_OPS:
        if ftype not in (FieldType.DATETIME, FieldType.ANY):
            raise ValueError(f"{op} needs a time field; {spec.name!r} is {_a(ftype)}")
        return parse_window(operand)
    if op in TEXT_OPS:
        if ftype not in (FieldType.STRING, FieldType.ANY):
            raise ValueError(f"{op} needs a text field; {spec.name!r} is {_a(ftype)}")
        if not isinstance(operand, str):
            raise ValueError(f"{op} takes a text")
        return operand
    if op in (Op.IN, Op.NOT_IN):
        if not isinstance(operand, list) or not operand:
            raise ValueError(f"{op} takes a non-empty list")
        return tuple(_scalar(spec, v) for v in operand)
    if op is Op.BETWEEN:
        if not isinstance(operand, list) or len(operand) != 2:
            raise ValueError("between takes a list of two values [low, high]")
        low, high = (_ordered(spec, v) for v in operand)
        if low > high:
            raise ValueError("between needs low <= high")
        return (low, high)
    if op in ORDERING_OPS:
        return _ordered(spec, operand)
    return _scalar(spec, operand)


def _a(ftype: FieldType) -> str:
    return {"integer": "an integer", "any": "untyped"}.get(ftype.value, f"a {ftype.value}")


def _ordered(spec: FieldSpec, value: object) -> Any:
    if spec.type in (FieldType.NUMBER, FieldType.INTEGER):
        return _number(spec, value)
    if spec.type is FieldType.DATETIME:
        return parse_when(value)
    if spec.type is FieldType.ANY:
        if isinstance(value, bool):
            raise ValueError("comparisons need a number or a date")
        if isinstance(value, int | float):
            return float(_in_range(value))
        return parse_when(value)
    raise ValueError(f"comparisons need a number or time field; {spec.name!r} is {_a(spec.type)}")


def _number(spec: FieldSpec, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"{spec.name!r} is {_a(spec.type)}: compare it with a number, not {value!r}")
    return float(_in_range(value))


def _in_range(value: int | float, hint: str = "") -> int | float:
    """``value`` if SQL can compare it exactly; ValueError otherwise (before ``float()`` can overflow)."""
    if isinstance(value, float) and value != value:
        raise ValueError("must be a number, not NaN")
    if not -MAX_NUMBER <= value <= MAX_NUMBER:
        shown = f"{value:.3g}" if isinstance(value, float) else (str(value) if len(str(value)) <= 40 else
                                                                 f"a {len(str(abs(value)))}-digit number")
        raise ValueError(f"{shown} is out of range (numbers in rules are at most 1e15 in magnitude){hint}")
    return value


def _scalar(spec: FieldSpec, value: object) -> Any:
    ftype = spec.type
    if ftype in (FieldType.NUMBER, FieldType.INTEGER):
        return _number(spec, value)
    if ftype is FieldType.DATETIME:
        return parse_when(value)
    if ftype is FieldType.BOOLEAN:
        if not isinstance(value, bool):
            raise ValueError(f"{spec.name!r} is true or false, not {value!r}")
        return value
    if ftype is FieldType.STRING:
        if isinstance(value, bool) or not isinstance(value, str | int | float):
            raise ValueError(f"{spec.name!r} is a text: compare it with a text, not {value!r}")
        return str(value)
    if isinstance(value, Mapping | list):
        raise ValueError("compare with a single value")
    if isinstance(value, int | float) and not isinstance(value, bool):
        # An id written as a number (a 20-digit one) is text to the store: say how to compare it.
        return _in_range(value, " (quote it to compare it as text)")
    return value


# ----------------------------------------------------------------------------------------------- walking


def walk(node: Node) -> Iterator[Node]:
    """``node`` and every node below it, depth first."""
    yield node
    if isinstance(node, All | AnyOf):
        for item in node.items:
            yield from walk(item)
    elif isinstance(node, Not):
        yield from walk(node.item)


def references(node: Node) -> list[SegmentRef]:
    """The segment references in a rule tree, in order."""
    return [n for n in walk(node) if isinstance(n, SegmentRef)]
