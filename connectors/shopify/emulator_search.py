"""Shopify's search syntax (the ``query:`` argument of connections), parsed and evaluated for the emulator.

Grammar (shopify.dev "Shopify API search syntax"), as far as the emulator needs it::

    query      = or_expr
    or_expr    = and_expr { "OR" and_expr }
    and_expr   = unary { ["AND"] unary }          (terms side by side are ANDed)
    unary      = ("NOT" | "-") unary | "(" query ")" | term
    term       = [field ":" [comparator]] value   (comparator: < > <= >=)
    value      = bare name, or a 'single' or "double" quoted string; a bare name ending in * is a prefix query

Inside a bare name, ``: \\ ( )`` are escaped with a backslash. A term naming a field the resource does not know is
ignored (it matches everything) and reported as a warning, as Shopify does in ``extensions.search``.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any, Literal

Comparator = Literal["=", "<", "<=", ">", ">="]
_COMPARATORS: tuple[Comparator, ...] = ("<=", ">=", "<", ">")
_SPECIAL = "\\:()"
_TOKEN = re.compile(r"[^\W_]+", re.UNICODE)


class SearchSyntaxError(ValueError):
    """The query string does not follow the search grammar."""


@dataclass(frozen=True)
class Term:
    """``field:comparator value`` (``field`` None: a free-text term)."""

    field: str | None
    op: Comparator
    value: str
    quoted: bool = False
    prefix: bool = False


@dataclass(frozen=True)
class Not:
    child: Node


@dataclass(frozen=True)
class And:
    children: tuple[Node, ...]


@dataclass(frozen=True)
class Or:
    children: tuple[Node, ...]


Node = Term | Not | And | Or

# ------------------------------------------------------------------------------------------ parsing


@dataclass(frozen=True)
class _Tok:
    kind: Literal["(", ")", "AND", "OR", "NOT", "term"]
    term: Term | None = None


def parse(text: str) -> Node | None:
    """The query's syntax tree, or None for an empty query.

    Raises:
        SearchSyntaxError: unbalanced parentheses or quotes, a connective without a term.
    """
    tokens = _tokens(text)
    if not tokens:
        return None
    parser = _Parser(tokens)
    node = parser.or_expr()
    if parser.pos != len(tokens):
        raise SearchSyntaxError(f"unexpected {tokens[parser.pos].kind!r} in {text!r}")
    return node


class _Parser:
    def __init__(self, tokens: list[_Tok]) -> None:
        self.tokens = tokens
        self.pos = 0

    def peek(self) -> str | None:
        return self.tokens[self.pos].kind if self.pos < len(self.tokens) else None

    def or_expr(self) -> Node:
        parts = [self.and_expr()]
        while self.peek() == "OR":
            self.pos += 1
            parts.append(self.and_expr())
        return parts[0] if len(parts) == 1 else Or(tuple(parts))

    def and_expr(self) -> Node:
        parts = [self.unary()]
        while self.peek() not in (None, ")", "OR"):
            if self.peek() == "AND":
                self.pos += 1
            parts.append(self.unary())
        return parts[0] if len(parts) == 1 else And(tuple(parts))

    def unary(self) -> Node:
        kind = self.peek()
        if kind is None:
            raise SearchSyntaxError("the query ends where a term was expected")
        if kind == "NOT":
            self.pos += 1
            return Not(self.unary())
        if kind == "(":
            self.pos += 1
            inner = self.or_expr()
            if self.peek() != ")":
                raise SearchSyntaxError("unbalanced parenthesis")
            self.pos += 1
            return inner
        if kind == "term":
            tok = self.tokens[self.pos]
            self.pos += 1
            assert tok.term is not None
            return tok.term
        raise SearchSyntaxError(f"unexpected {kind!r}")


def _tokens(text: str) -> list[_Tok]:
    out: list[_Tok] = []
    i, n = 0, len(text)
    while i < n:
        ch = text[i]
        if ch.isspace():
            i += 1
        elif ch in "()":
            out.append(_Tok(ch))  # type: ignore[arg-type]
            i += 1
        else:
            negate = ch == "-" and i + 1 < n and not text[i + 1].isspace()
            if negate:
                i += 1
            term, i = _term(text, i)
            if term.field is None and not term.quoted and term.value in ("AND", "OR", "NOT") and not negate:
                out.append(_Tok(term.value))  # type: ignore[arg-type]
                continue
            if negate:
                out.append(_Tok("NOT"))
            out.append(_Tok("term", term))
    return out


def _term(text: str, i: int) -> tuple[Term, int]:
    word, i, quoted, colon, star = _value(text, i, stop_at_colon=True)
    if not colon:
        return _make(None, "=", word, quoted, star), i
    op: Comparator = "="
    for cmp in _COMPARATORS:
        if text.startswith(cmp, i):
            op, i = cmp, i + len(cmp)
            break
    if i >= len(text) or text[i].isspace() or text[i] in "()":
        raise SearchSyntaxError(f"field {word!r} has no value")
    value, i, quoted, _, star = _value(text, i, stop_at_colon=False)
    return _make(word, op, value, quoted, star), i


def _make(field: str | None, op: Comparator, value: str, quoted: bool, star: bool) -> Term:
    return Term(field, op, value[:-1] if star else value, quoted, star)


def _value(text: str, i: int, *, stop_at_colon: bool) -> tuple[str, int, bool, bool, bool]:
    """A bare or quoted value starting at ``i``.

    Returns:
        (text, next index, quoted, ended at an unescaped colon, ends in an unescaped ``*``: a prefix query).
    """
    if text[i] in "'\"":
        quote, i = text[i], i + 1
        chars: list[str] = []
        while i < len(text) and text[i] != quote:
            if text[i] == "\\" and i + 1 < len(text):
                i += 1
            chars.append(text[i])
            i += 1
        if i >= len(text):
            raise SearchSyntaxError("unterminated quoted string")
        return "".join(chars), i + 1, True, False, False
    chars = []
    escaped_last = False
    while i < len(text) and not text[i].isspace() and text[i] not in "()":
        ch = text[i]
        if ch == "\\" and i + 1 < len(text):
            chars.append(text[i + 1])
            i += 2
            escaped_last = True
            continue
        if ch == ":" and stop_at_colon:
            return "".join(chars), i + 1, False, True, False
        chars.append(ch)
        escaped_last = False
        i += 1
    star = bool(chars) and chars[-1] == "*" and not escaped_last
    return "".join(chars), i, False, False, star


def render(node: Node) -> str:
    """The query string of a syntax tree (``parse(render(t)) == t`` for trees :func:`parse` can produce)."""
    if isinstance(node, Term):
        head = f"{_escape(node.field)}:{'' if node.op == '=' else node.op}" if node.field is not None else ""
        if node.quoted:
            body = '"' + node.value.replace("\\", "\\\\").replace('"', '\\"') + '"'
        else:
            # A literal star at the end is escaped, or it would read as a prefix query.
            literal_star = node.value.endswith("*")
            body = _escape(node.value[:-1]) + "\\*" if literal_star else _escape(node.value)
            body += "*" if node.prefix else ""
        return head + body
    if isinstance(node, Not):
        return f"NOT {_group(node.child)}"
    joiner = " AND " if isinstance(node, And) else " OR "
    return joiner.join(_group(c) for c in node.children)


def _group(node: Node) -> str:
    return f"({render(node)})" if isinstance(node, And | Or) else render(node)


def _escape(text: str) -> str:
    return "".join("\\" + ch if ch in _SPECIAL else ch for ch in text)


# ------------------------------------------------------------------------------------------ evaluation

Kind = Literal["time", "id", "text", "tokens", "tags", "bool", "number"]


@dataclass(frozen=True)
class SearchField:
    """A searchable field of a resource: how to read it from a node, and how to compare it."""

    kind: Kind
    get: Callable[[Mapping[str, Any]], Any]


def matcher(
    node: Node | None, fields: Mapping[str, SearchField], default: Iterable[str]
) -> tuple[Callable[[Mapping[str, Any]], bool], list[str]]:
    """A predicate over nodes for the query, and warnings for terms naming unknown fields.

    Args:
        node: the parsed query (None matches everything).
        fields: the resource's searchable fields.
        default: the fields a free-text term searches.
    """
    warnings: list[str] = []
    defaults = [fields[f] for f in default]

    def build(n: Node) -> Callable[[Mapping[str, Any]], bool]:
        if isinstance(n, Not):
            inner = build(n.child)
            return lambda r: not inner(r)
        if isinstance(n, And):
            parts = [build(c) for c in n.children]
            return lambda r: all(p(r) for p in parts)
        if isinstance(n, Or):
            parts = [build(c) for c in n.children]
            return lambda r: any(p(r) for p in parts)
        if n.field is None:
            return lambda r: any(_compare(f, f.get(r), n) for f in defaults)
        spec = fields.get(n.field)
        if spec is None:
            warnings.append(n.field)
            return lambda r: True
        return lambda r: _compare(spec, spec.get(r), n)

    return (build(node) if node is not None else (lambda r: True)), warnings


def time_bounds(node: Node | None, field: str) -> tuple[datetime | None, datetime | None]:
    """The [lower, upper] range a query's top-level AND puts on a time ``field`` (None where open).

    Only used to narrow the scan; the predicate still checks every candidate exactly.
    """
    terms = node.children if isinstance(node, And) else (node,) if node is not None else ()
    low: datetime | None = None
    high: datetime | None = None
    for t in terms:
        if not isinstance(t, Term) or t.field != field or t.prefix:
            continue
        at = parse_time_value(t.value)
        if at is None:
            continue
        if t.op in (">", ">=") and (low is None or at > low):
            low = at
        elif t.op in ("<", "<=") and (high is None or at < high):
            high = at
    return low, high


def parse_time_value(text: str) -> datetime | None:
    """A search-syntax date or date-time (``2024-01-01``, ``2024-01-01T10:00:00Z``) as aware UTC."""
    try:
        if len(text) == 10:
            return datetime.combine(date.fromisoformat(text), datetime.min.time(), UTC)
        parsed = datetime.fromisoformat(text)
    except ValueError:
        return None
    return parsed.astimezone(UTC) if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _compare(spec: SearchField, value: Any, term: Term) -> bool:
    if term.value == "" and term.prefix:  # field:* -- the field has any value
        return value not in (None, "", [])
    if spec.kind == "time":
        return _order(_as_time(value), parse_time_value(term.value), term.op, day=len(term.value) == 10)
    if spec.kind in ("id", "number"):
        return _order(_as_number(value), _as_number(term.value.rsplit("/", 1)[-1]), term.op)
    if spec.kind == "bool":
        return str(value).lower() == term.value.lower()
    if spec.kind == "tags":
        return any(_text_match(str(t), term) for t in value or ())
    if spec.kind == "tokens":
        return _tokens_match(value, term)
    return value is not None and _text_match(str(value), term)


def _order(value: Any, wanted: Any, op: Comparator, *, day: bool = False) -> bool:
    if value is None or wanted is None:
        return False
    if op == "=":
        if day and isinstance(value, datetime) and isinstance(wanted, datetime):
            return bool(value.date() == wanted.date())
        return bool(value == wanted)
    return bool({"<": value < wanted, "<=": value <= wanted, ">": value > wanted, ">=": value >= wanted}[op])


def _text_match(value: str, term: Term) -> bool:
    have, want = value.strip().casefold(), term.value.casefold()
    return have.startswith(want) if term.prefix else have == want


def _tokens_match(value: Any, term: Term) -> bool:
    """A tokenized field: a quoted phrase matches the whole value; bare words match its tokens."""
    if value is None:
        return False
    text = str(value).strip().casefold()
    if term.quoted:
        return text == term.value.strip().casefold()
    have = _TOKEN.findall(text)
    want = _TOKEN.findall(term.value.casefold())
    if not want:
        return False
    *full, last = want
    return all(w in have for w in full) and any(h.startswith(last) if term.prefix else h == last for h in have)


def _as_time(value: Any) -> datetime | None:
    return parse_time_value(value) if isinstance(value, str) else value if isinstance(value, datetime) else None


def _as_number(value: Any) -> float | None:
    try:
        return float(value)
    except (TypeError, ValueError):
        return None
