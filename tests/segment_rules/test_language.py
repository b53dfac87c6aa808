"""The rule language: what parses into which tree, and every mistake as one ``file:line:col`` line."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hub.errors import ConfigErrors
from segment_rules.fields import FieldType
from segment_rules.language import (
    MAX_WINDOW_DAYS,
    All,
    AnyOf,
    Compare,
    Event,
    Not,
    Op,
    SegmentRef,
    normalize_event_type,
    parse_window,
)
from segment_rules.ruleset import DEFAULT_PROTECTED, load_rules

PACKAGED_RULES = Path(__file__).resolve().parents[2] / "segment_rules"


def write(folder: Path, name: str, text: str) -> Path:
    path = folder / name
    path.write_text(text, encoding="utf-8")
    return path


def errors_of(folder: Path) -> list[str]:
    with pytest.raises(ConfigErrors) as info:
        load_rules(folder, display_base=folder)
    return [str(e) for e in info.value.errors]


def evaluation_order(folder: Path) -> list[str]:
    """The segment names of a folder that loads, in evaluation order."""
    return [s.name for s in load_rules(folder, display_base=folder).segments]


def test_a_segment_file_parses_into_its_tree(tmp_path: Path) -> None:
    write(tmp_path, "vip.yaml", """\
segment: vip
description: Big spenders
destinations: [crm-tags, news]
holdout: 10
rule:
  all:
    - spend_365d: {gte: 1000, lt: 1e6}
    - consent: [granted, unknown]
    - lifecycle_stage: customer
    - not: {segment: lapsed}
    - event: Email Open
      within: 60d
      count: 0
    - event: order
      where: {channel: online, amount: {gt: 20}}
      after: 2024-01-01
      sum: {between: [100, 500]}
""")
    write(tmp_path, "lapsed.yaml", "segment: lapsed\nrule: {last_order_at: {older_than: 365d}}\n")
    rules = load_rules(tmp_path)
    assert rules.names == ["lapsed", "vip"]  # a segment follows the segments it refers to
    vip = rules.segment("vip")
    assert (vip.tag, vip.destinations, vip.holdout, vip.group) == ("vip", ("crm-tags", "news"), 10.0, None)
    assert vip.rule == All((
        All((
            Compare("spend_365d", FieldType.NUMBER, Op.GTE, 1000.0),
            Compare("spend_365d", FieldType.NUMBER, Op.LT, 1e6),
        )),
        Compare("consent", FieldType.STRING, Op.IN, ("granted", "unknown")),
        Compare("lifecycle_stage", FieldType.STRING, Op.EQ, "customer"),
        Not(SegmentRef("lapsed")),
        Event("email_open", (), timedelta(days=60), None, None, "count", Op.EQ, 0.0),
        Event(
            "order",
            (Compare("channel", FieldType.ANY, Op.EQ, "online"), Compare("amount", FieldType.NUMBER, Op.GT, 20.0)),
            None, datetime(2024, 1, 1, tzinfo=UTC), None, "sum", Op.BETWEEN, (100.0, 500.0),
        ),
    ))  # fmt: skip
    assert rules.segment("lapsed").rule == Compare("last_order_at", FieldType.DATETIME, Op.OLDER_THAN, timedelta(365))
    assert vip.at == "vip.yaml:1:1" or vip.at.endswith("vip.yaml:1:1")


def test_a_group_file_defines_its_members_in_order(tmp_path: Path) -> None:
    write(tmp_path, "tiers.yaml", """\
group: tiers
exclusive: true
holdout: 5
segments:
  - {name: gold, rule: {monetary: {gte: 1000}}, holdout: 0}
  - {name: silver, tag: tier-silver, rule: {monetary: {gte: 100}}}
  - {name: rest, rule: {all: []}}
""")
    rules = load_rules(tmp_path)
    assert rules.names == ["gold", "silver", "rest"]
    assert rules.groups["tiers"].members == ("gold", "silver", "rest") and rules.groups["tiers"].exclusive
    assert [(s.tag, s.holdout, s.group) for s in rules.segments] == [
        ("gold", 0.0, "tiers"), ("tier-silver", 5.0, "tiers"), ("rest", 5.0, "tiers")
    ]
    assert rules.segment("rest").rule == All(())


def test_error_lines_name_file_line_column_and_field(tmp_path: Path) -> None:
    write(tmp_path, "a.yaml", """\
segment: vip
tagg: vip
holdout: 80
rule:
  all:
    - spend_356d: {gte: 1000}
    - recency_days: {lte: "90"}
    - consent: {gt: 3}
    - orders: {atleast: 2}
    - first_order_at: {within: 3 months}
    - email: {contains: 5}
    - event: order
      within: 365x
      count: {gte: -1}
    - properties.Gender: female
    - any: {orders: 1}
    - not: [orders: 1]
    - {all: [], any: []}
    - segment: Bad Name
""")
    write(tmp_path, "b.yaml", "segment: other\nrule:\n  segment: vipp\n")
    write(tmp_path, "c.yaml", "segment: broken\nrule: {orders: {gte: 1}\n")
    lines = errors_of(tmp_path)
    expected = {
        "a.yaml:2:1: tagg: unknown field (did you mean 'tag'?)",
        "a.yaml:3:10: holdout: must be a percentage from 0 to 50",
        "a.yaml:6:7: rule.all[0].spend_356d: unknown field (did you mean 'spend_365d'?)",
        "a.yaml:7:27: rule.all[1].recency_days.lte: 'recency_days' is a number: compare it with a number, not '90'",
        "a.yaml:8:21: rule.all[2].consent.gt: comparisons need a number or time field; 'consent' is a string",
        "a.yaml:9:16: rule.all[3].orders.atleast: unknown operator",
        "a.yaml:10:32: rule.all[4].first_order_at.within: must be a duration such as 30d, 12w or 6h, not '3 months'",
        "a.yaml:11:25: rule.all[5].email.contains: contains takes a text",
        "a.yaml:13:15: rule.all[6].within: must be a duration such as 30d, 12w or 6h, not '365x'",
        "a.yaml:14:20: rule.all[6].count.gte: a count is never negative",
        "a.yaml:15:26: rule.all[7].properties.Gender: 'properties.Gender' is a protected attribute: segments may not "
        "use it unless the segment lists it under allow_protected with a reason",
        "a.yaml:16:7: rule.all[8].any: `any` takes a list of conditions",
        "a.yaml:17:7: rule.all[9].not: a condition must be a mapping: FIELD: {OP: VALUE}, all, any, not, event or "
        "segment",
        "a.yaml:18:7: rule.all[10]: `all` must be alone in its mapping; put the rest in an `all:` list",
        "a.yaml:19:16: rule.all[11].segment: must be the name of a segment",
        "b.yaml:3:12: rule.segment: unknown segment 'vipp' (did you mean 'vip'?)",
    }
    yaml_error = [line for line in lines if line.startswith("c.yaml:")]
    assert len(yaml_error) == 1 and "invalid YAML" in yaml_error[0]
    assert set(lines) - set(yaml_error) == expected
    assert len(lines) == len(expected) + 1  # nothing reported twice


def test_protected_attributes_need_a_reason(tmp_path: Path) -> None:
    write(tmp_path, "a.yaml", """\
segment: seniors-offer
allow_protected:
  - {field: properties.age, reason: Pension-age discount required by the shop's terms}
rule: {properties.age: {gte: 65}}
""")
    rules = load_rules(tmp_path)
    assert rules.segment("seniors-offer").allow_protected[0].field == "properties.age"
    write(tmp_path, "a.yaml", "segment: x\nallow_protected: [{field: properties.age, reason: ok}]\n"
                              "rule: {properties.age: {gte: 65}}\n")
    assert any("give a reason of at least a few words" in line for line in errors_of(tmp_path))
    # Without an allow_protected entry the same rule is refused, whatever the case of the name.
    write(tmp_path, "a.yaml", "segment: x\nrule: {properties.AGE: {gte: 65}}\n")
    assert any("protected attribute" in line for line in errors_of(tmp_path))
    assert "age" in DEFAULT_PROTECTED and "religion" in DEFAULT_PROTECTED


def test_reference_cycles_and_duplicates(tmp_path: Path) -> None:
    write(tmp_path, "a.yaml", "segment: a\nrule: {segment: b}\n")
    write(tmp_path, "b.yaml", "segment: b\nrule: {any: [{segment: c}, {orders: 1}]}\n")
    write(tmp_path, "c.yaml", "segment: c\nrule: {not: {segment: a}}\n")
    write(tmp_path, "d.yaml", "segment: d\nrule: {segment: d}\n")
    write(tmp_path, "e.yaml", "segment: a\nrule: {orders: 1}\n")
    lines = errors_of(tmp_path)
    assert "d.yaml:2:17: rule.segment: a segment cannot refer to itself" in lines
    assert "e.yaml:1:1: segment 'a' is also defined at a.yaml:1:1" in [line.replace(str(tmp_path) + "/", "")
                                                                        for line in lines]
    cycles = [line for line in lines if "cycle" in line]
    assert cycles == ["a.yaml:2:17: rule.segment: segment references form a cycle: a -> b -> c -> a"]


TIERS = """group: tiers
exclusive: {exclusive}
segments:
  - name: gold
    tag: gold
    rule: {{all: [{{segment: {gold_ref}}}, {{orders: {{gte: 5}}}}]}}
  - name: silver
    tag: silver
    rule: {{any: [{{segment: {silver_ref}}}, {{orders: {{gte: 2}}}}]}}
  - name: bronze
    tag: bronze
    rule: {{orders: {{gte: 1}}}}
"""


def test_an_exclusive_group_member_may_refer_to_earlier_members_only(tmp_path: Path) -> None:
    """A member holds only where no earlier member's rule does: a reference from an earlier member to a later
    one makes its rule depend on itself, reported as a cycle at the reference."""
    write(tmp_path, "tiers.yaml", TIERS.format(exclusive="true", gold_ref="silver", silver_ref="bronze"))
    assert errors_of(tmp_path) == [  # one line per offending reference
        "tiers.yaml:6:28: segments[0].rule.all[0].segment: segment references form a cycle: gold -> silver -> gold "
        "(silver comes after gold in the exclusive group 'tiers')",
        "tiers.yaml:9:28: segments[1].rule.any[0].segment: segment references form a cycle: silver -> bronze -> "
        "silver (bronze comes after silver in the exclusive group 'tiers')",
    ]
    # Through a segment outside the group (read first, as files are read in name order): the line is at a
    # reference of the loop.
    write(tmp_path, "tiers.yaml", TIERS.format(exclusive="true", gold_ref="outside", silver_ref="bronze"))
    write(tmp_path, "outside.yaml", "segment: outside\nrule: {segment: bronze}\n")
    assert [line for line in errors_of(tmp_path) if "gold" in line] == [
        "outside.yaml:2:17: rule.segment: segment references form a cycle: outside -> bronze -> gold -> outside "
        "(bronze comes after gold in the exclusive group 'tiers')"
    ]
    (tmp_path / "outside.yaml").unlink()
    # Later members referring to earlier ones, or any references in a group that is not exclusive, are fine,
    # and members are evaluated in group order.
    write(tmp_path, "base.yaml", "segment: base\nrule: {orders: {gte: 1}}\n")
    write(tmp_path, "tiers.yaml", TIERS.format(exclusive="true", gold_ref="base", silver_ref="gold"))
    assert evaluation_order(tmp_path) == ["base", "gold", "silver", "bronze"]
    write(tmp_path, "tiers.yaml", TIERS.format(exclusive="false", gold_ref="silver", silver_ref="bronze"))
    assert evaluation_order(tmp_path) == ["base", "bronze", "silver", "gold"]


def test_a_reference_to_a_broken_segment_is_not_reported_as_unknown(tmp_path: Path) -> None:
    write(tmp_path, "a.yaml", "segment: a\nrule: {orderz: 1}\n")
    write(tmp_path, "b.yaml", "segment: b\nrule: {segment: a}\n")
    assert errors_of(tmp_path) == ["a.yaml:2:8: rule.orderz: unknown field (did you mean 'orders'?)"]


def test_the_packaged_rule_files_load() -> None:
    rules = load_rules(PACKAGED_RULES)
    names = set(rules.names)
    for expected in ("champions", "loyal", "at-risk", "cant-lose-them", "hibernating", "new-customers-30d",
                     "high-clv", "churn-risk", "lapsed", "frequent-buyers", "engaged-non-buyers", "vip"):
        assert expected in names
    assert rules.groups["rfm"].exclusive


@given(st.integers(min_value=0, max_value=10_000), st.sampled_from(["d", "w", "h", "m"]))
def test_windows_parse_to_their_length(n: int, unit: str) -> None:
    seconds = {"d": 86_400, "w": 604_800, "h": 3_600, "m": 60}[unit]
    if n * seconds > MAX_WINDOW_DAYS * 86_400:
        with pytest.raises(ValueError, match="out of range"):
            parse_window(f"{n}{unit}")
        return
    assert parse_window(f"{n}{unit}") == timedelta(seconds=n * seconds)


@given(st.text(alphabet=" -_abcXYZ", min_size=1, max_size=12).filter(lambda s: s.strip(" -_")))
def test_event_type_normalization_is_idempotent(raw: str) -> None:
    once = normalize_event_type(raw)
    assert normalize_event_type(once) == once
    assert once == once.lower() and " " not in once and "-" not in once


def test_shorthands_mean_eq_and_in() -> None:
    # `FIELD: VALUE` is equality and `FIELD: [A, B]` membership; an empty `any` is false, an empty `all` true.
    from segment_rules.language import Parser

    parser = Parser(lambda path: "x.yaml:1:1")
    assert parser.node({"orders": 2}, ()) == Compare("orders", FieldType.INTEGER, Op.EQ, 2.0)
    assert parser.node({"consent": ["granted"]}, ()) == Compare("consent", FieldType.STRING, Op.IN, ("granted",))
    assert parser.node({"any": []}, ()) == AnyOf(())
    assert parser.errors == []
