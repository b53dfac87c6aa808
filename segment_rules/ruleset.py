"""Loading the rule files of a folder into one checked :class:`RuleSet`.

Each ``*.yaml`` file is parsed on its own (:mod:`segment_rules.language`); then the set is checked as a whole:
names are unique, every ``segment:`` reference names a segment, and references have no cycle. Segments are
ordered so that every segment comes after the segments it refers to, which is the order they are evaluated in.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from itertools import pairwise
from pathlib import Path

from hub.errors import ConfigError, ConfigErrors

from .language import GroupDef, Parser, SegmentDef, SegmentRef, did_you_mean, references

# Attributes segment rules may not use without an explicit, reasoned `allow_protected` entry (special
# categories of personal data, and attributes that invite unfair treatment). Matched against field names and
# `properties.NAME` names, case-insensitively.
DEFAULT_PROTECTED = frozenset(
    {
        "gender", "sex", "age", "birthday", "birth_date", "date_of_birth", "dob", "ethnicity", "race", "religion",
        "health", "disability", "pregnancy", "sexual_orientation", "political_opinion", "union_membership",
        "nationality", "marital_status", "genetic", "biometric",
    }
)  # fmt: skip


@dataclass(frozen=True)
class RuleSet:
    """Every segment and group of a rules folder, checked, in evaluation order.

    Args:
        segments: dependencies first (a segment follows every segment its rule refers to); within that, the
            files' order, so groups stay together.
        groups: the groups, by name.
        files: the rule files read, in order.
    """

    segments: tuple[SegmentDef, ...]
    groups: Mapping[str, GroupDef]
    files: tuple[Path, ...]

    def segment(self, name: str) -> SegmentDef:
        """The segment called ``name`` (KeyError if there is none)."""
        for segment in self.segments:
            if segment.name == name:
                return segment
        raise KeyError(name)

    @property
    def names(self) -> list[str]:
        """Segment names in evaluation order."""
        return [s.name for s in self.segments]


class RuleErrors(ConfigErrors):
    """The problems of a rules folder, and every segment name its files define (valid or not).

    With the names, a caller can check references from elsewhere (a destination's ``segments``) without
    reporting a segment as unknown when its file only has an error.
    """

    def __init__(self, errors: list[ConfigError], defined: Iterable[str]) -> None:
        super().__init__(errors)
        self.defined = frozenset(defined)


def rule_files(folder: Path) -> list[Path]:
    """The rule files of ``folder`` (``*.yaml`` and ``*.yml``, in name order)."""
    return sorted(p for p in folder.iterdir() if p.suffix in (".yaml", ".yml") and p.is_file())


def load_rules(
    folder: Path, *, protected: Iterable[str] = DEFAULT_PROTECTED, display_base: Path | None = None
) -> RuleSet:
    """Read and check every rule file in ``folder``.

    Args:
        folder: the rules folder.
        protected: attribute names rules may not use without ``allow_protected``.
        display_base: file names in messages are relative to this folder when possible (default: relative to
            the current folder when inside it, else absolute, as config file names print).

    Raises:
        RuleErrors: every problem found, one ``file:line:col: field: message`` line each.
    """
    from hub.config.loader import read_text_file, read_yaml

    if not folder.is_dir():
        raise RuleErrors([ConfigError(f"segment rules folder {_shown(folder, None)} does not exist",
                                      field="segments.rules_dir")], ())
    blocked = frozenset(p.lower() for p in protected)
    errors: list[ConfigError] = []
    segments: list[SegmentDef] = []
    groups: dict[str, GroupDef] = {}
    defined: set[str] = set()
    files = rule_files(folder)
    for path in files:
        shown = _shown(path, display_base)
        try:
            doc = read_yaml(read_text_file(path, shown, what="rule file"), shown)
        except ConfigErrors as exc:
            errors.extend(exc.errors)
            continue
        except OSError as exc:  # removed since the folder was listed
            errors.append(ConfigError(f"cannot read rule file: {exc.strerror or exc}", location=shown))
            continue
        errors.extend(doc.interpolation_errors)
        parser = Parser(doc.locate, blocked)
        found, found_groups = parser.parse_file(doc.data)
        errors.extend(parser.errors)
        defined.update(parser.defined)
        segments.extend(found)
        for group in found_groups:
            if group.name in groups:
                errors.append(ConfigError(f"group {group.name!r} is also defined at {groups[group.name].at}",
                                          location=group.at, field="group"))
            groups[group.name] = group
    segments = _unique(segments, errors)
    ordered = _ordered(segments, defined, errors, groups)
    if errors:
        raise RuleErrors(errors, defined)
    return RuleSet(tuple(ordered), groups, tuple(files))


def _shown(path: Path, base: Path | None) -> str:
    from hub.config.loader import display_path

    if base is not None:
        try:
            return str(path.relative_to(base))
        except ValueError:
            pass
    return display_path(path)


def _unique(segments: list[SegmentDef], errors: list[ConfigError]) -> list[SegmentDef]:
    seen: dict[str, SegmentDef] = {}
    for segment in segments:
        if segment.name in seen:
            errors.append(
                ConfigError(f"segment {segment.name!r} is also defined at {seen[segment.name].at}", location=segment.at)
            )
            continue
        seen[segment.name] = segment
    return list(seen.values())


def _ordered(
    segments: list[SegmentDef], defined: set[str], errors: list[ConfigError], groups: Mapping[str, GroupDef]
) -> list[SegmentDef]:
    """Dependencies first; unknown references and cycles become errors.

    ``defined`` holds every name a file defines, including segments that failed to parse: a reference to one
    of those is not reported again (its own errors say what is wrong). A member of an exclusive group depends
    on the group's earlier members as on references (it holds only where none of their rules do), so a
    reference from an earlier member to a later one is a cycle too.
    """
    by_name = {s.name: s for s in segments}
    earlier = _earlier_members(groups, by_name)
    deps: dict[str, list[str]] = {}
    for segment in segments:
        names: list[str] = list(earlier.get(segment.name, {}))
        for ref in references(segment.rule):
            if ref.name not in defined:
                hint = did_you_mean(ref.name, sorted(defined))
                errors.append(ConfigError(f"unknown segment {ref.name!r}{hint}", location=ref.at, field=ref.path))
            elif ref.name == segment.name:
                errors.append(ConfigError("a segment cannot refer to itself", location=ref.at, field=ref.path))
            elif ref.name in by_name:
                names.append(ref.name)
        deps[segment.name] = names
    order: list[SegmentDef] = []
    state: dict[str, str] = {}  # "visiting" or "done"
    reported: set[tuple[str | None, str | None]] = set()

    def visit(name: str, trail: list[str]) -> None:
        if state.get(name) == "done":
            return
        if state.get(name) == "visiting":
            error = _cycle_error([*trail[trail.index(name):], name], by_name, earlier)
            if (error.location, error.field) not in reported:  # one line per reference, whatever loops pass it
                reported.add((error.location, error.field))
                errors.append(error)
            return
        state[name] = "visiting"
        for dep in deps[name]:
            visit(dep, [*trail, name])
        state[name] = "done"
        order.append(by_name[name])

    for segment in segments:
        visit(segment.name, [])
    return order


def _earlier_members(groups: Mapping[str, GroupDef], by_name: Mapping[str, SegmentDef]) -> dict[str, dict[str, str]]:
    """For each member of an exclusive group, the group's earlier members (and the group's name)."""
    out: dict[str, dict[str, str]] = {}
    for group in groups.values():
        if not group.exclusive:
            continue
        members = [name for name in group.members if name in by_name]
        for k, name in enumerate(members):
            out.setdefault(name, {}).update(dict.fromkeys(members[:k], group.name))
    return out


def _cycle_error(
    cycle: list[str], by_name: Mapping[str, SegmentDef], earlier: Mapping[str, Mapping[str, str]]
) -> ConfigError:
    """One line for a cycle (its first name repeated at the end), at a reference of it.

    A cycle holds at least one reference (an exclusive group's order alone runs one way), so the line starts
    there; the group dependencies it goes through are named after it.
    """
    steps = list(pairwise(cycle))

    def reference(step: tuple[str, str]) -> SegmentRef | None:
        return next((r for r in references(by_name[step[0]].rule) if r.name == step[1]), None)

    start = next(k for k, step in enumerate(steps) if reference(step) is not None)
    steps = steps[start:] + steps[:start]
    ref = reference(steps[0])
    assert ref is not None  # the step found above
    names = [a for a, _ in steps] + [steps[0][0]]
    implied = [f"{a} comes after {b} in the exclusive group {earlier[a][b]!r}"
               for a, b in steps if reference((a, b)) is None]
    why = f" ({'; '.join(implied)})" if implied else ""
    return ConfigError(f"segment references form a cycle: {' -> '.join(names)}{why}", location=ref.at,
                       field=ref.path)
