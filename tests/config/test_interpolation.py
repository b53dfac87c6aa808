"""``${VAR}`` interpolation: properties over generated templates and environments."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hub.config.loader import InterpolationError, escape, interpolate

NAMES = st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,8}", fullmatch=True)
# Literal text around references: anything, including '$', '{' and '}', which escape() must protect.
TEXT = st.text(alphabet=st.sampled_from("ab ${}:-_/\\\n"), max_size=12)
VALUES = st.text(max_size=10)


@given(TEXT)
def test_escaped_text_comes_back_unchanged(text: str) -> None:
    assert interpolate(escape(text), {}) == text


@given(st.text(max_size=30).filter(lambda t: "$" not in t))
def test_text_without_dollar_is_untouched(text: str) -> None:
    assert interpolate(text, {"A": "x"}) == text


@given(
    st.lists(
        st.tuples(TEXT, NAMES, st.one_of(st.none(), st.text(alphabet="xyz/:-", max_size=5))), max_size=4
    ),
    st.dictionaries(NAMES, VALUES, max_size=6),
)
def test_template_substitutes_each_reference(
    parts: list[tuple[str, str, str | None]], env: dict[str, str]
) -> None:
    template = ""
    expected = ""
    for literal, name, default in parts:
        template += escape(literal)
        expected += literal
        if default is None:
            template += f"${{{name}}}"
            expected += env.get(name, "\0missing")
        else:
            template += f"${{{name}:-{default}}}"
            expected += env.get(name) or default
    if "\0missing" in expected:
        with pytest.raises(InterpolationError, match="is not set"):
            interpolate(template, env)
    else:
        assert interpolate(template, env) == expected


@given(NAMES, VALUES)
def test_substituted_values_are_not_interpolated_again(name: str, value: str) -> None:
    # A value containing "${OTHER}" must stay as is: the environment is data, not a template.
    assert interpolate(f"${{{name}}}", {name: value + "${OTHER}"}) == value + "${OTHER}"


@pytest.mark.parametrize("text", ["${", "${A", "${1A}", "${A B}", "x ${} y", "${A:default}"])
def test_malformed_references_are_errors(text: str) -> None:
    with pytest.raises(InterpolationError, match="malformed"):
        interpolate(text, {"A": "1"})


def test_empty_variable_takes_the_default_but_counts_as_set_without_one() -> None:
    assert interpolate("${A:-d}", {"A": ""}) == "d"
    assert interpolate("${A}", {"A": ""}) == ""
    assert interpolate("$A and $$ and $", {}) == "$A and $ and $"
    assert interpolate("$$${A}", {"A": "x"}) == "$x"
