"""Reads ``config.yaml``: YAML with positions, ``${VAR}`` interpolation, validation, one line per error.

Every problem is reported at once, each as ``file:line:col: field.path: what is wrong (did you mean ...?)``,
so an admin fixes a file in one pass. Positions come from ruamel.yaml's round-trip loader, which remembers
the line and column of every key and value; pydantic's error locations are mapped back onto them.
"""

from __future__ import annotations

import codecs
import difflib
import os
import re
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from types import UnionType
from typing import TYPE_CHECKING, Annotated, Any, Union, get_args, get_origin

from hub.errors import ConfigError, ConfigErrors

if TYPE_CHECKING:
    from pydantic import BaseModel, SecretStr
    from pydantic_core import ErrorDetails

    from hub.config.models import HubConfig
    from hub.registry import ConnectorSpec

EMPTY_CONFIG_MESSAGE = (
    "the config is empty: it needs at least one entry under `sources:` (see config.example.yaml, "
    "or write a commented one with `hub init`)"
)
ENV_CONFIG = "HUB_CONFIG"
DEFAULT_CONFIG = "config.yaml"
EXTENSION_PREFIX = "x-"

# `$$` is a literal `$` (as in Docker Compose, so a literal `$` can sit right before a reference);
# `${NAME}` and `${NAME:-default}` substitute; any other `${` is a mistake; a lone `$` stays as it is.
_INTERPOLATION_RE = re.compile(r"\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}|\$\{")

Path_ = tuple[str | int, ...]
LineCol = tuple[int, int]  # 0-based, as ruamel.yaml keeps them


class InterpolationError(ValueError):
    """A ``${...}`` reference that cannot be substituted."""


def interpolate(text: str, environ: Mapping[str, str]) -> str:
    """Substitute ``${NAME}`` and ``${NAME:-default}`` from ``environ``; ``$$`` stands for a literal ``$``.

    As in POSIX shells, ``:-`` uses the default when the variable is unset *or empty*.

    Args:
        text: a string value from the config.
        environ: the environment to read.

    Returns:
        The text with every reference substituted.

    Raises:
        InterpolationError: a variable without default is unset, or a ``${`` is malformed.
    """

    def substitute(match: re.Match[str]) -> str:
        whole, name, default = match.group(0), match.group(1), match.group(2)
        if whole == "$$":
            return "$"
        if name is None:
            raise InterpolationError(
                "malformed '${': write ${NAME} or ${NAME:-default}, or $${ for a literal '${'"
            )
        value = environ.get(name)
        if default is not None:
            return value or default
        if value is None:
            raise InterpolationError(
                f"environment variable {name} is not set (set it, or write ${{{name}:-default}})"
            )
        return value

    return _INTERPOLATION_RE.sub(substitute, text)


def escape(text: str) -> str:
    """``text`` written so that :func:`interpolate` gives it back unchanged."""
    return text.replace("$", "$$")


# --------------------------------------------------------------------------- YAML with positions


@dataclass(frozen=True, slots=True)
class _Node:
    """Where one value sits in the file: its key (or list dash) and its value."""

    key: LineCol
    value: LineCol
    collection: bool


@dataclass
class _Tree:
    """The config as plain Python data, with the position of every node and the errors found while reading."""

    data: Any
    nodes: dict[Path_, _Node] = field(default_factory=dict)
    errors: list[tuple[Path_, LineCol, str]] = field(default_factory=list)


@dataclass(frozen=True)
class YamlDocument:
    """A YAML file read as plain data, with the position of every key and value (for ``file:line:col``).

    Rule files and the config share this reader: the same YAML errors, ``${VAR}`` interpolation and positions.
    """

    filename: str
    data: Any
    _tree: _Tree

    @property
    def interpolation_errors(self) -> list[ConfigError]:
        """``${VAR}`` references that could not be substituted, one error each."""
        return [
            ConfigError(message, location=_loc(self.filename, pos), field=_dotted(path) or None)
            for path, pos, message in self._tree.errors
        ]

    def locate(self, path: Sequence[str | int], *, key: bool = False) -> str:
        """``file:line:col`` of the value at ``path``: a mapping or list by its key, a scalar by its value.

        With ``key``, always the key (or list dash). A path that does not exist (a missing field) points at
        its nearest existing parent's key.
        """
        nodes = self._tree.nodes
        here = tuple(path)
        while here not in nodes and here:
            here = here[:-1]
        node = nodes.get(here)
        if node is None:
            return _loc(self.filename, (0, 0))
        exact = here == tuple(path)
        return _loc(self.filename, node.value if exact and not node.collection and not key else node.key)


def display_path(path: Path) -> str:
    """``path`` as messages show it: relative to the current folder when inside it, else absolute."""
    full = path.absolute()
    try:
        return str(full.relative_to(Path.cwd()))
    except ValueError:
        return str(full)


def read_text_file(path: Path, shown: str, *, what: str = "config file") -> str:
    """The text of a UTF-8 config or rule file; ConfigErrors (one line, with the position) if it is not one.

    Raises:
        FileNotFoundError: there is no such file (callers word that themselves).
        ConfigErrors: the file cannot be read, or is not UTF-8 text.
    """
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise
    except OSError as exc:
        reason = exc.strerror or str(exc)
        raise ConfigErrors([ConfigError(f"cannot read {what}: {reason}", location=shown)]) from None
    return decode_text(raw, shown)


def decode_text(raw: bytes, shown: str) -> str:
    """``raw`` decoded as UTF-8 (a leading BOM dropped); ConfigErrors at the first byte that is not text.

    A NUL byte is valid UTF-8 but never text: YAML refuses it with a message that does not say why.
    """
    bom = len(codecs.BOM_UTF8) if raw.startswith(codecs.BOM_UTF8) else 0
    try:
        text = raw[bom:].decode("utf-8")
    except UnicodeDecodeError as exc:
        offset = bom + exc.start
        problem = f"not a UTF-8 text file (byte 0x{raw[offset]:02x} at offset {offset})"
    else:
        nul = raw.find(b"\0")
        if nul < 0:
            return text
        offset, problem = nul, f"not a text file (NUL byte at offset {nul})"
    line_start = raw.rfind(b"\n", 0, offset) + 1
    column = len(raw[line_start:offset].decode("utf-8", errors="replace"))
    pos = (raw.count(b"\n", 0, offset), column)
    raise ConfigErrors([ConfigError(problem, location=_loc(shown, pos))])


def read_yaml(text: str, filename: str, environ: Mapping[str, str] | None = None) -> YamlDocument:
    """Parse ``text`` as the YAML file ``filename``, interpolating ``${VAR}`` from ``environ``.

    Raises:
        ConfigErrors: the text is not valid YAML (one line, with the position).
    """
    raw = _parse_yaml(text, filename)
    tree = _build_tree({} if raw is None else raw, os.environ if environ is None else environ)
    return YamlDocument(filename, tree.data, tree)


def _parse_yaml(text: str, filename: str) -> Any:
    from ruamel.yaml import YAML
    from ruamel.yaml.constructor import DuplicateKeyError
    from ruamel.yaml.error import MarkedYAMLError, YAMLError

    try:
        return YAML(typ="rt").load(text)
    except MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line, col = (mark.line, mark.column) if mark is not None else (0, 0)
        if isinstance(exc, DuplicateKeyError):
            # ruamel's message quotes both values; a value may be a pasted secret.
            key = re.search(r'duplicate key "(.*?)" with value', str(exc.problem))
            problem = f"duplicate key {key.group(1)!r}" if key else "duplicate key"
        else:
            problem = " ".join(p for p in (exc.problem, exc.context and f"({exc.context})") if p)
        raise ConfigErrors([ConfigError(f"invalid YAML: {problem}", location=_loc(filename, (line, col)))]) from None
    except YAMLError as exc:
        raise ConfigErrors([ConfigError(f"invalid YAML: {exc}", location=_loc(filename, (0, 0)))]) from None


def _build_tree(raw: Any, environ: Mapping[str, str]) -> _Tree:
    tree = _Tree(data=None)
    tree.nodes[()] = _Node((0, 0), (0, 0), isinstance(raw, dict | list))
    tree.data = _convert(raw, (), tree, environ)
    return tree


def _convert(value: Any, path: Path_, tree: _Tree, environ: Mapping[str, str]) -> Any:
    """Plain dicts, lists and scalars from ruamel's round-trip types, interpolating strings on the way."""
    if isinstance(value, dict):
        out: dict[Any, Any] = {}
        for key, item in value.items():
            key_plain = str(key) if isinstance(key, str) else key
            child = (*path, key_plain)
            tree.nodes[child] = _Node(
                _lc(value, "key", key, path, tree), _lc(value, "value", key, path, tree), isinstance(item, dict | list)
            )
            out[key_plain] = _convert(item, child, tree, environ)
        return out
    if isinstance(value, list):
        items: list[Any] = []
        for index, item in enumerate(value):
            child = (*path, index)
            pos = _lc(value, "item", index, path, tree)
            tree.nodes[child] = _Node(pos, pos, isinstance(item, dict | list))
            items.append(_convert(item, child, tree, environ))
        return items
    return _scalar(value, path, tree, environ)


def _scalar(value: Any, path: Path_, tree: _Tree, environ: Mapping[str, str]) -> Any:
    if isinstance(value, str):
        try:
            return interpolate(str(value), environ)
        except InterpolationError as exc:
            tree.errors.append((path, tree.nodes[path].value, str(exc)))
            return str(value)
    if isinstance(value, bool):
        return bool(value)
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return float(value)
    if isinstance(value, datetime | date):
        # YAML reads `2024-01-01` as a date; the models take ISO strings (and parse them where they need to).
        return value.isoformat()
    return value


def _lc(container: Any, kind: str, key: Any, path: Path_, tree: _Tree) -> LineCol:
    """Position of a key/value/item; keys merged in through ``<<: *anchor`` have none, so use the parent's."""
    try:
        line, col = getattr(container.lc, kind)(key)
        return int(line), int(col)
    except (AttributeError, KeyError, IndexError, TypeError):
        return tree.nodes[path].key if path in tree.nodes else (0, 0)


# --------------------------------------------------------------------------- errors


def _loc(filename: str, pos: LineCol) -> str:
    return f"{filename}:{pos[0] + 1}:{pos[1] + 1}"


def _dotted(path: Sequence[str | int]) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _did_you_mean(word: object, choices: Iterable[str]) -> str:
    if not isinstance(word, str):
        return ""
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _walk(loc: Sequence[str | int], data: Any) -> tuple[Path_, list[str | int]]:
    """Split a pydantic error location into the path that exists in the data and the parts that do not.

    The parts that do not exist are union tags (``'csv'``, ``'list[str]'``), a missing field's name or ``[key]``.
    """
    path: list[str | int] = []
    rest: list[str | int] = []
    node = data
    for part in loc:
        if _has_child(node, part):
            path.append(part)
            node = node[part]
        else:
            rest.append(part)
    return tuple(path), rest


def _has_child(node: Any, part: str | int) -> bool:
    if isinstance(node, dict):
        return part in node
    return isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node)


def _unwrap(tp: Any) -> Any:
    while get_origin(tp) is Annotated:
        tp = get_args(tp)[0]
    return tp


def _explicit_tag(tp: Any) -> str | None:
    from pydantic import Tag

    if get_origin(tp) is Annotated:
        for meta in get_args(tp)[1:]:
            if isinstance(meta, Tag):
                return meta.tag
    return None


def _tag_of(tp: Any) -> str | None:
    """The tag pydantic puts in error locations for a union member: its Tag, else its type's name."""
    return _explicit_tag(tp) or getattr(_unwrap(tp), "__name__", None)


def _step(tp: Any, part: str | int) -> Any:
    """The type found at ``part`` inside ``tp``, following pydantic's error locations (None if unknown)."""
    from pydantic import BaseModel

    if _explicit_tag(tp) == part:
        # A one-member union collapses to Annotated[Model, Tag(...), ...]: the tag is still in the location.
        return _unwrap(tp)
    tp = _unwrap(tp)
    origin = get_origin(tp)
    if origin is Union or origin is UnionType:
        members = [m for m in get_args(tp) if m is not type(None)]
        for member in members:
            if _tag_of(member) == part:
                return _unwrap(member)
        for member in members:
            found = _step(member, part)
            if found is not None:
                return found
        return None
    if isinstance(tp, type) and issubclass(tp, BaseModel):
        info = tp.model_fields.get(str(part))
        return info.annotation if info is not None else None
    args = get_args(tp)
    if origin is dict and len(args) == 2:
        return args[1]
    if origin in (list, tuple, set, frozenset) and args and isinstance(part, int):
        return args[0]
    return None


def _model_at(root: type[BaseModel], loc: Sequence[str | int]) -> type[BaseModel] | None:
    from pydantic import BaseModel

    tp: Any = root
    for part in loc:
        tp = _step(tp, part)
        if tp is None:
            return None
    tp = _unwrap(tp)
    if get_origin(tp) in (Union, UnionType):
        models = [m for m in get_args(tp) if isinstance(_unwrap(m), type) and issubclass(_unwrap(m), BaseModel)]
        tp = _unwrap(models[0]) if len(models) == 1 else None
    return tp if isinstance(tp, type) and issubclass(tp, BaseModel) else None


def _field_names(model: type[BaseModel] | None) -> list[str]:
    if model is None:
        return []
    return [info.alias or name for name, info in model.model_fields.items()]


@dataclass
class _Translator:
    """Turns pydantic errors into ``ConfigError`` lines that point into the file."""

    tree: _Tree
    model: type[BaseModel]
    specs: Mapping[str, ConnectorSpec]

    def translate(self, err: ErrorDetails) -> tuple[Path_, str, LineCol, str]:
        """(data path, field path, position, message) of one pydantic error."""
        loc = tuple(err["loc"])
        path, rest = _walk(loc, self.tree.data)
        kind = err["type"]
        if kind == "missing":
            name = rest[-1] if rest else ""
            return path, _dotted((*path, name)), self._key_pos(path), "required field missing"
        if kind == "extra_forbidden":
            allowed = _field_names(_model_at(self.model, loc[:-1]))
            return path, _dotted(path), self._key_pos(path), _unknown_field(path[-1] if path else "", allowed)
        if rest and rest[-1] == "[key]":
            return path, _dotted(path), self._key_pos(path), _clean(err)
        if kind in ("union_tag_invalid", "union_tag_not_found"):
            return self._tag_error(err, path)
        return path, _dotted(path), self._pos(path), _clean(err)

    def _tag_error(self, err: ErrorDetails, path: Path_) -> tuple[Path_, str, LineCol, str]:
        ctx = err.get("ctx") or {}
        disc = str(ctx.get("discriminator", "type")).strip("'")
        disc = "type" if disc.endswith("()") else disc  # our callable discriminator reads `type`
        section = path[0] if len(path) == 2 else None
        role = {"sources": "source", "destinations": "destination"}.get(str(section))
        if role is not None:
            expected = sorted(n for n, s in self.specs.items() if getattr(s, f"{role}_config") is not None)
        else:
            expected = re.findall(r"'([^']*)'", str(ctx.get("expected_tags", "")))
        listing = ", ".join(expected) or "none"
        noun = f"installed {role} types" if role else "expected"
        if err["type"] == "union_tag_not_found":
            value = self._value_at(path)
            what = f"missing '{disc}'" if isinstance(value, dict) else f"must be a mapping with a '{disc}'"
            return path, _dotted((*path, disc)), self._key_pos(path), f"{what} ({noun}: {listing})"
        tag = ctx.get("tag")
        field_path = (*path, disc)
        pos = self._pos(field_path) if field_path in self.tree.nodes else self._key_pos(path)
        if role and isinstance(tag, str) and tag in self.specs:
            message = f"connector {tag!r} cannot be a {role} ({noun}: {listing})"
        else:
            unknown = f"unknown {role} type" if role else f"unknown {disc}"
            message = f"{unknown} {tag!r} ({noun}: {listing}){_did_you_mean(tag, expected)}"
        return path, _dotted(field_path), pos, message

    def _value_at(self, path: Path_) -> Any:
        node = self.tree.data
        for part in path:
            node = node[part]
        return node

    def _key_pos(self, path: Path_) -> LineCol:
        return self.tree.nodes[path].key if path in self.tree.nodes else (0, 0)

    def _pos(self, path: Path_) -> LineCol:
        node = self.tree.nodes.get(path)
        if node is None:
            return (0, 0)
        # A mapping or list is pointed at by its key; a scalar by its value.
        return node.key if node.collection else node.value


def _unknown_field(name: object, allowed: Sequence[str]) -> str:
    hint = _did_you_mean(name, allowed)
    if not hint and allowed:
        hint = f" (allowed: {', '.join(allowed)})"
    return f"unknown field{hint}"


_PREFIXES = ("Value error, ", "Assertion failed, ")
_WORDING = (
    ("Input should be a valid dictionary or instance of", "must be a mapping (an instance of"),
    ("Input should be a valid dictionary", "must be a mapping"),
    ("Input should be a valid list", "must be a list"),
    ("Input should be", "must be"),
)


def _clean(err: ErrorDetails) -> str:
    """Pydantic's message in the config's words, with a did-you-mean for a mistyped choice."""
    msg = err["msg"]
    for prefix in _PREFIXES:
        if msg.startswith(prefix):
            msg = msg[len(prefix):]
    for old, new in _WORDING:
        if msg.startswith(old):
            msg = new + msg[len(old):]
            if new.endswith("(an instance of"):
                msg += ")"
            break
    if err["type"] == "literal_error":
        choices = re.findall(r"'([^']*)'", str((err.get("ctx") or {}).get("expected", "")))
        msg += _did_you_mean(err.get("input"), choices)
    return msg


# --------------------------------------------------------------------------- loading


@dataclass(frozen=True)
class LoadedConfig:
    """A validated config and where it came from.

    Args:
        path: the config file (as given, for messages).
        base_dir: the file's folder; relative paths in the config (CSV files, ``file:`` secrets, SQLite) are
            relative to it.
        model: the validated config.
        secret_refs: every secret reference in the config, with the ``file:line:col`` and field path of each use.
    """

    path: Path
    base_dir: Path
    model: HubConfig
    secret_refs: Mapping[str, tuple[tuple[str, str], ...]] = field(default_factory=dict)
    document: YamlDocument | None = field(default=None, repr=False, compare=False)

    def locate(self, field_path: str, *, key: bool = False) -> str:
        """``file:line:col`` of a field path (``sources.x.files.0.path`` or ``sources.x.files[0].path``).

        A path that is not in the file (a default, a missing field) points at its nearest written parent.
        """
        if self.document is None:
            return _loc(str(self.path), (0, 0))
        return self.document.locate(self._path_of(field_path), key=key)

    def place(self, error: ConfigError, *, field_path: str | None = None) -> list[ConfigError]:
        """``error`` (each line of a ConfigErrors) with a position in this file and the loader's field style.

        Connectors raise errors naming a field (``sources.x.files.0.path``) but not where it is written; an
        error that already has a location (a CSV header line) keeps it.

        Args:
            error: the error, or several.
            field_path: the field of errors that name none (the entry they came from).
        """
        items = error.errors if isinstance(error, ConfigErrors) else [error]
        placed: list[ConfigError] = []
        for item in items:
            raw_field = item.field or field_path
            dotted = _dotted(self._path_of(raw_field)) if raw_field else None
            location = item.location or (self.locate(raw_field) if raw_field else _loc(str(self.path), (0, 0)))
            placed.append(ConfigError(item.message, location=location, field=dotted))
        return placed

    def unknown_segments(self, defined: Iterable[str]) -> list[ConfigError]:
        """One error per segment a destination (or a webhook) names that no rule file defines.

        Disabled destinations too: they are validated like the others, only never pushed.
        """
        known = sorted(set(defined))
        errors: list[ConfigError] = []
        for name, entry in self.model.destinations.items():
            names = entry.segments if isinstance(entry.segments, list) else list(entry.segments)
            # A map names the segment by its key; a list by its item.
            keyed = not isinstance(entry.segments, list)
            for index, segment in enumerate(names):
                path: Path_ = ("destinations", name, "segments", segment if keyed else index)
                errors.extend(self._unknown_segment(segment, path, known, key=keyed))
        for name, hook in self.model.push.webhooks.items():
            for index, segment in enumerate(hook.segments or ()):
                errors.extend(self._unknown_segment(segment, ("push", "webhooks", name, "segments", index), known))
        return errors

    def _unknown_segment(self, segment: str, path: Path_, known: Sequence[str], *, key: bool = False
                         ) -> list[ConfigError]:
        if segment in known:
            return []
        message = f"unknown segment {segment!r}: no rule file defines it{_did_you_mean(segment, known)}"
        where = self.document.locate(path, key=key) if self.document else _loc(str(self.path), (0, 0))
        return [ConfigError(message, location=where, field=_dotted(path))]

    def _path_of(self, field_path: str) -> Path_:
        """The data path of a dotted field path, reading a number as a list index where the data has a list."""
        nodes = self.document._tree.nodes if self.document is not None else {}
        path: Path_ = ()
        for part in re.findall(r"[^.\[\]]+", field_path):
            index = (*path, int(part)) if part.isdigit() else None
            path = index if index is not None and index in nodes else (*path, part)
        return path

    def resolve_secret(self, ref: str) -> SecretStr:
        """The value of a secret reference (registered for redaction); ConfigError at the reference's position.

        Raises:
            ConfigError: the reference does not resolve (the message names the variable, file or key, never a value).
        """
        from hub.secrets import resolve_secret

        try:
            return resolve_secret(ref, base_dir=self.base_dir)
        except ConfigError as exc:
            uses = self.secret_refs.get(ref)
            if not uses or exc.location:
                raise
            # Point at an entry that runs: a disabled one sharing the reference is not what needs fixing.
            location, field_path = next((u for u in uses if self._enabled_field(u[1])), uses[0])
            raise ConfigError(exc.message, location=location, field=field_path) from None

    def check_secrets(self, *, include_disabled: bool = False) -> list[ConfigError]:
        """Resolve every referenced secret; one ConfigError per reference that does not resolve.

        Args:
            include_disabled: also resolve references used only by entries with ``enabled: false`` (they never
                run, so by default their secrets need not exist yet).

        Returns:
            The errors, each at the first (enabled) use of its reference.
        """
        from hub.secrets import resolve_secret

        errors: list[ConfigError] = []
        for ref, all_uses in self.secret_refs.items():
            uses = all_uses if include_disabled else tuple(u for u in all_uses if self._enabled_field(u[1]))
            if not uses:
                continue
            try:
                resolve_secret(ref, base_dir=self.base_dir)
            except ConfigError as exc:
                location, field_path = uses[0]
                errors.append(ConfigError(exc.message, location=exc.location or location, field=field_path))
        return errors

    def _enabled_field(self, field_path: str) -> bool:
        """False when ``field_path`` (``sources.NAME.token``) lies in a source or destination that is disabled."""
        section, _, rest = field_path.partition(".")
        if section not in ("sources", "destinations"):
            return True
        entries: Mapping[str, Any] = getattr(self.model, section)
        entry = entries.get(rest.split(".", 1)[0].split("[", 1)[0])
        return entry is None or bool(getattr(entry, "enabled", True))


def default_config_path(environ: Mapping[str, str] | None = None) -> Path:
    """``$HUB_CONFIG`` if set, else ``./config.yaml``."""
    env = os.environ if environ is None else environ
    return Path(env.get(ENV_CONFIG) or DEFAULT_CONFIG)


def load_config(
    path: Path | str | None = None,
    *,
    specs: Mapping[str, ConnectorSpec] | None = None,
    environ: Mapping[str, str] | None = None,
) -> LoadedConfig:
    """Read, interpolate and validate a config file.

    Args:
        path: the file (default: ``$HUB_CONFIG`` or ``./config.yaml``).
        specs: connector specs (default: the installed connectors).
        environ: environment for ``${VAR}`` (default: ``os.environ``).

    Returns:
        The validated config.

    Raises:
        ConfigErrors: the file is missing or unreadable, is not valid YAML, or does not validate; one entry per
            problem, each ``file:line:col: field.path: message``.
    """
    file = Path(path) if path is not None else default_config_path(environ)
    try:
        text = read_text_file(file, str(file))
    except FileNotFoundError:
        raise ConfigErrors(
            [ConfigError(f"config file not found (create one with `hub init {file}`)", location=str(file))]
        ) from None
    return validate_config_text(text, filename=str(file), base_dir=file.resolve().parent, specs=specs,
                                environ=environ)


def validate_config_text(
    text: str,
    *,
    filename: str = DEFAULT_CONFIG,
    base_dir: Path | None = None,
    specs: Mapping[str, ConnectorSpec] | None = None,
    environ: Mapping[str, str] | None = None,
) -> LoadedConfig:
    """Validate config text as if read from ``filename`` (tests, ``hub init`` self-checks, reloads).

    Raises:
        ConfigErrors: every problem found, one line each, in file order.
    """
    from pydantic import ValidationError

    from hub.config.models import build_config_model
    from hub.registry import connectors

    found = connectors() if specs is None else specs
    raw = _parse_yaml(text, filename)
    tree = _build_tree({} if raw is None else raw, os.environ if environ is None else environ)
    if not isinstance(tree.data, dict):
        raise ConfigErrors([ConfigError(
            "the config must be a mapping of sections (version, store, sources, destinations, ...)",
            location=_loc(filename, (0, 0)),
        )])
    # Top-level `x-...` keys hold YAML anchors for reuse (`<<: *crm`), as in docker-compose; they are not config.
    data = {k: v for k, v in tree.data.items() if not (isinstance(k, str) and k.startswith(EXTENSION_PREFIX))}
    if not data:
        # An empty file (or one whose every line is commented out) would pass and then do nothing at all:
        # most often it is the wrong file, or one truncated while being written.
        raise ConfigErrors([ConfigError(EMPTY_CONFIG_MESSAGE, location=_loc(filename, (0, 0)))])
    tree.data = data
    model_cls = build_config_model(found)
    errors = [(path, _dotted(path), pos, msg) for path, pos, msg in tree.errors]
    errors += [(path, _dotted(path), tree.nodes[path].value, msg) for path, msg in _out_of_range(data)]
    model: HubConfig | None = None
    try:
        model = model_cls.model_validate(data)
    except ValidationError as exc:
        translator = _Translator(tree, model_cls, found)
        broken = {path for path, *_ in errors}
        # A value whose interpolation failed also fails validation; its first error says why.
        errors += [e for e in map(translator.translate, exc.errors()) if e[0] not in broken]
    if model is not None:
        errors += _cross_references(model, tree)
    if errors or model is None:
        raise ConfigErrors(_merge(filename, errors))
    return LoadedConfig(
        path=Path(filename),
        base_dir=base_dir or Path.cwd(),
        model=model,
        secret_refs=_secret_refs(model, tree, filename),
        document=YamlDocument(filename, data, tree),
    )


# The largest integer SQLite and PostgreSQL (bigint) store; a larger one fails when it reaches the store.
MAX_INTEGER = 2**63 - 1


def _out_of_range(value: Any, path: Path_ = ()) -> Iterator[tuple[Path_, str]]:
    """Every integer too large for a store column, as (path, message): it would pass here and fail later."""
    if isinstance(value, dict):
        for key, item in value.items():
            yield from _out_of_range(item, (*path, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _out_of_range(item, (*path, index))
    elif isinstance(value, int) and not isinstance(value, bool) and abs(value) > MAX_INTEGER:
        yield path, f"number out of range (at most {MAX_INTEGER})"


def _cross_references(model: HubConfig, tree: _Tree) -> list[tuple[Path_, str, LineCol, str]]:
    """Names one entry gives of another that does not exist (a push would fail on them later)."""
    errors: list[tuple[Path_, str, LineCol, str]] = []
    sources = sorted(model.sources)
    for name, entry in model.destinations.items():
        source = getattr(entry, "source", None)
        if source is not None and source not in model.sources:
            path: Path_ = ("destinations", name, "source")
            known = ", ".join(sources) or "none"
            message = f"no source named {source!r} (sources: {known}){_did_you_mean(source, sources)}"
            node = tree.nodes.get(path)
            errors.append((path, _dotted(path), node.value if node else (0, 0), message))
    return errors


def _merge(filename: str, errors: list[tuple[Path_, str, LineCol, str]]) -> list[ConfigError]:
    """One line per field, in file order; a union's alternatives ("must be a list", "must be a mapping") join."""
    merged: dict[tuple[LineCol, str], list[str]] = {}
    for _, field_path, pos, message in errors:
        messages = merged.setdefault((pos, field_path), [])
        if message not in messages:
            messages.append(message)
    return [
        ConfigError(_join(messages), location=_loc(filename, pos), field=field_path or None)
        for (pos, field_path), messages in sorted(merged.items())
    ]


def _join(messages: list[str]) -> str:
    if len(messages) > 1 and all(m.startswith("must be ") for m in messages):
        return "must be " + " or ".join(m.removeprefix("must be ") for m in messages)
    return " or ".join(messages)


def format_errors(errors: ConfigErrors | Iterable[ConfigError]) -> str:
    """The errors as the CLI prints them: one line each."""
    items = errors.errors if isinstance(errors, ConfigErrors) else list(errors)
    return "\n".join(str(e) for e in items)


# --------------------------------------------------------------------------- secret references


def _secret_refs(model: HubConfig, tree: _Tree, filename: str) -> dict[str, tuple[tuple[str, str], ...]]:
    found: dict[str, list[tuple[str, str]]] = {}
    for path, ref in iter_secret_refs(model):
        node = tree.nodes.get(path)
        pos = node.value if node is not None else (0, 0)
        found.setdefault(ref, []).append((_loc(filename, pos), _dotted(path)))
    return {ref: tuple(uses) for ref, uses in found.items()}


def iter_secret_refs(model: BaseModel, path: Path_ = ()) -> Iterator[tuple[Path_, str]]:
    """Every ``(path, reference)`` held by a :data:`~hub.config.models.SecretRef` field, at any depth."""
    from pydantic import BaseModel

    for name, info in type(model).model_fields.items():
        value = getattr(model, name)
        here = (*path, info.alias or name)
        if _is_secret_field(info.annotation, info.metadata):
            yield from _strings(value, here)
        elif isinstance(value, BaseModel):
            yield from iter_secret_refs(value, here)
        else:
            yield from _nested_models(value, here, iter_secret_refs)


def _nested_models(value: Any, path: Path_, visit: Callable[[Any, Path_], Iterator[tuple[Path_, str]]]
                   ) -> Iterator[tuple[Path_, str]]:
    from pydantic import BaseModel

    if isinstance(value, dict):
        for key, item in value.items():
            if isinstance(item, BaseModel | dict | list):
                yield from (visit(item, (*path, key)) if isinstance(item, BaseModel)
                            else _nested_models(item, (*path, key), visit))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            if isinstance(item, BaseModel):
                yield from visit(item, (*path, index))
            elif isinstance(item, dict | list):
                yield from _nested_models(item, (*path, index), visit)


def _strings(value: Any, path: Path_) -> Iterator[tuple[Path_, str]]:
    if isinstance(value, str):
        yield path, value
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from _strings(item, (*path, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _strings(item, (*path, index))


def _is_secret_field(annotation: Any, metadata: Sequence[Any] = ()) -> bool:
    from hub.config.models import SecretRefMarker

    if any(isinstance(m, SecretRefMarker) for m in metadata):
        return True
    if get_origin(annotation) is Annotated:
        args = get_args(annotation)
        return any(isinstance(m, SecretRefMarker) for m in args[1:]) or _is_secret_field(args[0])
    return any(_is_secret_field(arg) for arg in get_args(annotation))
