"""Config errors: one line each, ``file:line:col: field.path: message``, all of them at once."""

from __future__ import annotations

from pathlib import Path

import pytest

from hub.config import format_errors, load_config
from hub.config.loader import default_config_path, validate_config_text
from hub.errors import ConfigError, ConfigErrors

from . import FAKE_SPECS, FakeCrmSource, error_lines, load

VALID = """\
version: 1
timezone: Europe/Berlin
store:
  url: sqlite:///data/hub.db
logging: {level: debug, format: json}
sources:
  crm:
    type: hubspot
    token: env:HUBSPOT_TOKEN
    schedule: {every: 15m}
    start_date: 2024-01-01
  shop:
    type: shopify
    shop: ${SHOP_NAME:-demo-store}
    token: keyring:audience-hub/shopify
destinations:
  news:
    type: mailchimp
    api_key: file:mailchimp.key
    segments: {champions: "hub:vip"}
"""

ONE_ERROR_CASES = {
    "unknown top-level key, did you mean": (
        "version: 1\nloging:\n  level: INFO\n",
        "hub.yaml:2:1: loging: unknown field (did you mean 'logging'?)",
    ),
    "unknown key in a connector entry, did you mean": (
        "sources:\n  crm:\n    type: hubspot\n    token: env:T\n    pagesize: 5\n",
        "hub.yaml:5:5: sources.crm.pagesize: unknown field (did you mean 'page_size'?)",
    ),
    "unknown key with no close match lists the allowed ones": (
        "store:\n  zzz: 1\n",
        "hub.yaml:2:3: store.zzz: unknown field (allowed: url)",
    ),
    "unknown key in a nested block of a connector": (
        "sources:\n  s:\n    type: shopify\n    shop: x\n    token: env:T\n    options:\n      api_versoin: x\n",
        "hub.yaml:7:7: sources.s.options.api_versoin: unknown field (did you mean 'api_version'?)",
    ),
    "missing required field points at the parent": (
        "sources:\n  crm:\n    type: hubspot\n",
        "hub.yaml:2:3: sources.crm.token: required field missing",
    ),
    "wrong value type points at the value": (
        "sources:\n  crm:\n    type: hubspot\n    token: env:T\n    page_size: lots\n",
        "hub.yaml:5:16: sources.crm.page_size: must be a valid integer, unable to parse string as an integer",
    ),
    "constraint": (
        "sources:\n  crm:\n    type: hubspot\n    token: env:T\n    page_size: 500\n",
        "hub.yaml:5:16: sources.crm.page_size: must be less than or equal to 100",
    ),
    "choice with did you mean": (
        "logging:\n  format: jsn\n",
        "hub.yaml:2:11: logging.format: must be 'human' or 'json' (did you mean 'json'?)",
    ),
    "unknown connector type, did you mean": (
        "sources:\n  crm:\n    type: hubspt\n    token: env:T\n",
        "hub.yaml:3:11: sources.crm.type: unknown source type 'hubspt' "
        "(installed source types: hubspot, shopify) (did you mean 'hubspot'?)",
    ),
    "connector that cannot be a source": (
        "sources:\n  news:\n    type: mailchimp\n",
        "hub.yaml:3:11: sources.news.type: connector 'mailchimp' cannot be a source "
        "(installed source types: hubspot, shopify)",
    ),
    "unknown destination type": (
        "destinations:\n  d:\n    type: mailchimpp\n",
        "hub.yaml:3:11: destinations.d.type: unknown destination type 'mailchimpp' "
        "(installed destination types: mailchimp) (did you mean 'mailchimp'?)",
    ),
    "entry without type": (
        "sources:\n  crm:\n    token: env:T\n",
        "hub.yaml:2:3: sources.crm.type: missing 'type' (installed source types: hubspot, shopify)",
    ),
    "entry that is not a mapping": (
        "sources:\n  crm: hubspot\n",
        "hub.yaml:2:3: sources.crm.type: must be a mapping with a 'type' (installed source types: hubspot, shopify)",
    ),
    "entry name that is not a slug": (
        "sources:\n  My CRM:\n    type: hubspot\n    token: env:T\n",
        "hub.yaml:2:3: sources.My CRM: invalid name 'My CRM': use lowercase letters, digits, '_' and '-', "
        "starting with a letter (at most 63 characters)",
    ),
    "section that is not a mapping": (
        "sources: [crm]\n",
        "hub.yaml:1:1: sources: must be a mapping",
    ),
    "unknown time zone": (
        "timezone: Europe/Berln\n",
        "hub.yaml:1:11: timezone: unknown time zone 'Europe/Berln' (use an IANA name such as Europe/Berlin or UTC)",
    ),
    "model-level rule": (
        "sources:\n  crm:\n    type: hubspot\n    token: env:T\n    schedule: {every: 1h, cron: '0 * * * *'}\n",
        "hub.yaml:5:5: sources.crm.schedule: set exactly one of 'every' or 'cron'",
    ),
    "union of a list or a mapping": (
        "destinations:\n  d:\n    type: mailchimp\n    api_key: env:K\n    segments: 5\n",
        "hub.yaml:5:15: destinations.d.segments: must be a list or a mapping",
    ),
    "an option the connector refuses rather than ignores": (
        "destinations:\n  d:\n    type: mailchimp\n    api_key: env:K\n    create_missing: true\n",
        "hub.yaml:5:21: destinations.d.create_missing: this destination does not create contacts: missing ones are "
        "skipped and counted",
    ),
    "list item": (
        "sources:\n  s:\n    type: shopify\n    shop: x\n    token: env:T\n    fallback_tokens:\n"
        "      - env:A\n      - nope\n",
        "hub.yaml:8:9: sources.s.fallback_tokens[1]: must be a secret reference "
        "(keyring:SERVICE/NAME, env:NAME or file:PATH), not the secret itself",
    ),
    "unsupported version": (
        "version: 2\n",
        "hub.yaml:1:10: version: must be 1",
    ),
    "missing environment variable": (
        "store:\n  url: sqlite:///${DATA_DIR}/hub.db\n",
        "hub.yaml:2:8: store.url: environment variable DATA_DIR is not set (set it, or write ${DATA_DIR:-default})",
    ),
    "malformed interpolation": (
        "store:\n  url: sqlite:///${DATA DIR}/hub.db\n",
        "hub.yaml:2:8: store.url: malformed '${': write ${NAME} or ${NAME:-default}, or $${ for a literal '${'",
    ),
    "YAML syntax error": (
        "version: 1\nstore:\n  url: [sqlite\n",
        "hub.yaml:4:1: invalid YAML: expected ',' or ']', but got '<stream end>' (while parsing a flow sequence)",
    ),
    "YAML mapping error": (
        "version: 1\nstore: url: x\n",
        "hub.yaml:2:11: invalid YAML: mapping values are not allowed here",
    ),
    "duplicate key": (
        "store:\n  url: sqlite:///a.db\n  url: sqlite:///b.db\n",
        "hub.yaml:3:3: invalid YAML: duplicate key 'url'",
    ),
    "top level is not a mapping": (
        "- version: 1\n",
        "hub.yaml:1:1: the config must be a mapping of sections (version, store, sources, destinations, ...)",
    ),
}


@pytest.mark.parametrize(("text", "expected"), ONE_ERROR_CASES.values(), ids=ONE_ERROR_CASES.keys())
def test_each_error_is_one_line_with_position_and_field(text: str, expected: str) -> None:
    assert error_lines(text) == [expected]


def test_every_error_is_reported_at_once_in_file_order() -> None:
    text = """\
version: 1
timezone: Mars/Olympus
logging:
  level: loud
sources:
  crm:
    type: hubspot
    tokn: env:T
  shop:
    type: shopfy
destinations:
  news:
    type: mailchimp
    api_key: ${MISSING}
"""
    lines = error_lines(text)
    assert [line.split(": ")[0:2] for line in lines] == [
        ["hub.yaml:2:11", "timezone"],
        ["hub.yaml:4:10", "logging.level"],
        ["hub.yaml:6:3", "sources.crm.token"],
        ["hub.yaml:8:5", "sources.crm.tokn"],
        ["hub.yaml:10:11", "sources.shop.type"],
        ["hub.yaml:14:14", "destinations.news.api_key"],
    ]
    assert "did you mean 'token'" in lines[3]
    assert "did you mean 'shopify'" in lines[4]
    # The failed interpolation is the one reason given; the follow-on "not a secret reference" is not repeated.
    assert lines[5].endswith("environment variable MISSING is not set (set it, or write ${MISSING:-default})")


def test_pasted_secret_is_never_echoed() -> None:
    secret = "pat-na1-0123456789abcdef"
    lines = error_lines(f"destinations:\n  d:\n    type: mailchimp\n    api_key: {secret}\n")
    assert len(lines) == 1 and "must be a secret reference" in lines[0]
    assert secret not in lines[0]


def test_duplicate_key_error_does_not_echo_values() -> None:
    lines = error_lines("sources:\n  a:\n    type: hubspot\n    token: s3cr3t-one\n    token: s3cr3t-two\n")
    assert lines == ["hub.yaml:5:5: invalid YAML: duplicate key 'token'"]


def test_valid_config_loads() -> None:
    loaded = load(VALID, HUBSPOT_TOKEN="x")
    model = loaded.model
    assert model.timezone == "Europe/Berlin"
    assert (model.logging.level, model.logging.format) == ("DEBUG", "json")
    crm = model.sources["crm"]
    assert isinstance(crm, FakeCrmSource)
    assert crm.start_date == "2024-01-01"  # YAML read it as a date; the model wants the ISO string
    assert model.sources["shop"].model_dump()["shop"] == "demo-store"
    assert model.destinations["news"].segments == {"champions": "hub:vip"}


def test_interpolation_reads_the_environment_and_escapes() -> None:
    loaded = load("store:\n  url: ${URL}\nsegments:\n  rules_dir: $${literal}\n", URL="sqlite:///x.db")
    assert loaded.model.store.url == "sqlite:///x.db"
    assert loaded.model.segments.rules_dir == "${literal}"


def test_interpolated_numbers_are_coerced() -> None:
    text = "sources:\n  crm:\n    type: hubspot\n    token: env:T\n    page_size: ${PAGE:-50}\n"
    crm = load(text).model.sources["crm"]
    assert isinstance(crm, FakeCrmSource) and crm.page_size == 50


def test_empty_sections_are_defaults_but_an_empty_file_is_an_error() -> None:
    for text in ("", "# only comments\n", "{}\n", "null\n", "x-shared: &a {type: csv}\n"):
        assert error_lines(text) == [
            "hub.yaml:1:1: the config is empty: it needs at least one entry under `sources:` (see "
            "config.example.yaml, or write a commented one with `hub init`)"
        ], text
    model = load("sources:\n  # all commented out\ndestinations:\n").model
    assert model.sources == {} and model.destinations == {}


def test_anchors_in_x_sections_and_merge_keys() -> None:
    shared = "x-crm: &crm\n  type: hubspot\n  token: env:T\n"
    loaded = load(shared + "sources:\n  a:\n    <<: *crm\n  b:\n    <<: *crm\n    page_size: 5\n")
    assert sorted(loaded.model.sources) == ["a", "b"]
    # A merged-in key has no position of its own: its errors point at the entry that merges it.
    lines = error_lines("x-bad: &bad\n  tokn: x\nsources:\n  crm:\n    <<: *bad\n    type: hubspot\n")
    assert lines == [
        "hub.yaml:4:3: sources.crm.token: required field missing",
        "hub.yaml:4:3: sources.crm.tokn: unknown field (did you mean 'token'?)",
    ]


def test_no_connectors_installed() -> None:
    with pytest.raises(ConfigErrors) as info:
        validate_config_text("sources:\n  crm:\n    type: hubspot\n", filename="c.yaml", specs={}, environ={})
    assert [str(e) for e in info.value.errors] == [
        "c.yaml:2:3: sources.crm: no connector that can be a source is installed"
    ]


def test_missing_file_names_the_path_and_suggests_init(tmp_path: Path) -> None:
    missing = tmp_path / "nope.yaml"
    with pytest.raises(ConfigErrors) as info:
        load_config(missing, specs=FAKE_SPECS)
    assert format_errors(info.value) == f"{missing}: config file not found (create one with `hub init {missing}`)"


def test_load_config_reads_file_and_sets_base_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = tmp_path / "conf" / "hub.yaml"
    cfg.parent.mkdir()
    cfg.write_text("store:\n  url: ${URL:-sqlite:///hub.db}\n", encoding="utf-8")
    monkeypatch.setenv("HUB_CONFIG", str(cfg))
    monkeypatch.delenv("URL", raising=False)
    loaded = load_config(specs=FAKE_SPECS)
    assert loaded.path == cfg and loaded.base_dir == cfg.parent
    assert loaded.model.store.url == "sqlite:///hub.db"
    cfg.write_text("store:\n  ur: x\n", encoding="utf-8")
    with pytest.raises(ConfigErrors) as info:
        load_config(cfg, specs=FAKE_SPECS)
    assert str(info.value) == f"{cfg}:2:3: store.ur: unknown field (did you mean 'url'?)"


def test_default_path() -> None:
    assert default_config_path({}) == Path("config.yaml")
    assert default_config_path({"HUB_CONFIG": "/etc/hub.yaml"}) == Path("/etc/hub.yaml")


def test_load_config_uses_the_registry_by_default(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import hub.registry

    monkeypatch.setattr(hub.registry, "connectors", lambda: FAKE_SPECS)
    cfg = tmp_path / "config.yaml"
    cfg.write_text("sources:\n  crm: {type: hubspot, token: env:T}\n", encoding="utf-8")
    assert isinstance(load_config(cfg).model.sources["crm"], FakeCrmSource)


def test_secret_errors_point_at_the_reference(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NOT_SET_ANYWHERE", raising=False)
    text = "sources:\n  crm:\n    type: hubspot\n    token: env:NOT_SET_ANYWHERE\n"
    loaded = validate_config_text(text, filename="hub.yaml", base_dir=tmp_path, specs=FAKE_SPECS, environ={})
    assert dict(loaded.secret_refs) == {"env:NOT_SET_ANYWHERE": (("hub.yaml:4:12", "sources.crm.token"),)}
    with pytest.raises(ConfigError) as info:
        loaded.resolve_secret("env:NOT_SET_ANYWHERE")
    assert str(info.value) == (
        "hub.yaml:4:12: sources.crm.token: environment variable NOT_SET_ANYWHERE is not set "
        "(referenced as env:NOT_SET_ANYWHERE)"
    )
    assert [e.field for e in loaded.check_secrets()] == ["sources.crm.token"]
    monkeypatch.setenv("NOT_SET_ANYWHERE", "value-1234")
    assert loaded.resolve_secret("env:NOT_SET_ANYWHERE").get_secret_value() == "value-1234"
    assert loaded.check_secrets() == []


def test_secret_refs_are_found_at_any_depth() -> None:
    text = """\
sources:
  s:
    type: shopify
    shop: x
    token: env:A
    fallback_tokens: [env:B, file:c.key]
destinations:
  d: {type: mailchimp, api_key: env:A}
"""
    refs = load(text).secret_refs
    assert {ref: [f for _, f in uses] for ref, uses in refs.items()} == {
        "env:A": ["sources.s.token", "destinations.d.api_key"],
        "env:B": ["sources.s.fallback_tokens[0]"],
        "file:c.key": ["sources.s.fallback_tokens[1]"],
    }
