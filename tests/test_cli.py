"""The ``hub`` command line: exit codes, ``--config``, config errors, init, check, schema, status, demo, help."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path
from typing import Any, Literal

import jsonschema
import pytest
from pydantic import Field
from ruamel.yaml import YAML

import hub.registry
from hub.config.models import DestinationConfigBase, SecretRef, SourceConfigBase
from hub.contracts import Page, Stream
from hub.errors import TransientError
from hub.redact import clear_secrets
from hub.registry import BuildContext, ConnectorSpec

from .cli_support import ROOT, all_output, hub_env, invoke, run_hub
from .config import FAKE_SPECS

EXAMPLE = ROOT / "config.example.yaml"


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[None]:
    for name in ("HUB_CONFIG", "HUB_LOG_LEVEL", "HUB_DEBUG"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)
    yield
    clear_secrets()


def no_traceback(result: Any) -> None:
    assert "Traceback" not in all_output(result)


# --------------------------------------------------------------------------- small connectors with builders


class FlakyConfig(SourceConfigBase):
    type: Literal["flaky"]
    token: SecretRef
    down: bool = Field(False, description="The vendor answers every call with a server error")


@dataclass
class FlakyStream:
    down: bool
    name: str = "things"

    def read(self, state: Any, *, full: bool = False) -> Iterator[Page]:
        if self.down:
            raise TransientError("vendor answered HTTP 503 Service Unavailable")
        yield Page([], {"done": True})


class FlakySource:
    def __init__(self, config: FlakyConfig, name: str, ctx: BuildContext) -> None:
        self.name = name
        ctx.resolve_secret(config.token)
        self.down = config.down

    def streams(self) -> Sequence[Stream]:
        return [FlakyStream(self.down)]

    def check(self) -> None:
        if self.down:
            raise TransientError("vendor answered HTTP 503 Service Unavailable")

    def close(self) -> None:
        pass


class TaggerConfig(DestinationConfigBase):
    type: Literal["tagger"]
    api_key: SecretRef


FLAKY = ConnectorSpec("flaky", "a source that may be down", source_config=FlakyConfig, build_source=FlakySource)
TAGGER = ConnectorSpec("tagger", "a destination (it cannot push yet)", destination_config=TaggerConfig)


@pytest.fixture
def flaky(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(hub.registry, "connectors", lambda: {"flaky": FLAKY, "tagger": TAGGER})


@pytest.fixture
def fake_specs(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(hub.registry, "connectors", lambda: FAKE_SPECS)


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


# --------------------------------------------------------------------------- config errors


BAD = """\
version: 1
loging:
  level: INFO
timezone: Europe/Berln
sources:
  crm:
    type: hubspot
    token: env:CRM_TOKEN
    page_size: lots
  shop:
    type: shopfy
    shop: x
destinations:
  news:
    type: mailchimp
    api_key: sk_live_4eC39HqLyjWDarjtT1zdp7dc
"""


def test_every_config_error_at_once_one_line_each(fake_specs: None) -> None:
    write(Path("bad.yaml"), BAD)
    result = invoke(["check", "--config", "bad.yaml"])
    assert result.exit_code == 2
    assert result.stdout == ""
    assert result.stderr.splitlines() == [
        "bad.yaml:2:1: loging: unknown field (did you mean 'logging'?)",
        "bad.yaml:4:11: timezone: unknown time zone 'Europe/Berln' (use an IANA name such as Europe/Berlin or UTC)",
        "bad.yaml:9:16: sources.crm.page_size: must be a valid integer, unable to parse string as an integer",
        "bad.yaml:11:11: sources.shop.type: unknown source type 'shopfy' (installed source types: hubspot, shopify)"
        " (did you mean 'shopify'?)",
        "bad.yaml:16:14: destinations.news.api_key: must be a secret reference (keyring:SERVICE/NAME, env:NAME or "
        "file:PATH), not the secret itself",
    ]
    assert "sk_live_4eC39HqLyjWDarjtT1zdp7dc" not in result.stderr
    no_traceback(result)


@pytest.mark.parametrize(
    ("text", "line"),
    [
        ("sources:\n  crm:\n    type: hubspot\n   token: env:CRM_TOKEN\n",
         "syntax.yaml:4:4: invalid YAML: expected <block end>, but found '<block mapping start>' "
         "(while parsing a block mapping)"),
        ("sources:\n  crm:\n    type: hubspot\n    token: env:CRM_TOKEN\n    token: sk_live_4eC39HqLyjWDarjtT1zd\n",
         "syntax.yaml:5:5: invalid YAML: duplicate key 'token'"),
        ("- just\n- a list\n",
         "syntax.yaml:1:1: the config must be a mapping of sections (version, store, sources, destinations, ...)"),
    ],
)
def test_a_file_that_is_not_a_config_is_one_line(text: str, line: str, fake_specs: None) -> None:
    write(Path("syntax.yaml"), text)
    result = invoke(["check", "--config", "syntax.yaml"])
    assert result.exit_code == 2
    assert result.stderr.splitlines() == [line]
    assert "sk_live" not in result.stderr
    no_traceback(result)


def test_config_errors_in_a_real_process_with_the_installed_connectors(tmp_path: Path) -> None:
    from hub.registry import connectors

    installed = ", ".join(sorted(n for n, spec in connectors().items() if spec.source_config is not None))
    write(tmp_path / "bad.yaml", "version: 2\nsources:\n  crm: {type: salesforce, token: env:T}\n")
    done = run_hub(["check", "--config", "bad.yaml"], cwd=tmp_path)
    assert done.returncode == 2
    assert done.stderr.splitlines() == [
        "bad.yaml:1:10: version: must be 1",
        f"bad.yaml:3:15: sources.crm.type: unknown source type 'salesforce' (installed source types: {installed})",
    ]
    assert "csv" in installed  # the entry points of this very checkout are what the process found
    assert done.stdout == ""
    assert "Traceback" not in done.stderr


def test_every_command_reports_config_errors_alike(fake_specs: None) -> None:
    write(Path("bad.yaml"), BAD)
    expected = invoke(["check", "--config", "bad.yaml"]).stderr
    for args in (["sync"], ["status", "--json"], ["explain", "x@example.com"], ["secrets", "list"],
                 ["db", "upgrade"]):
        result = invoke([*args, "--config", "bad.yaml"])
        assert result.exit_code == 2, args
        assert result.stderr == expected, args
        assert not Path("hub.db").exists()


# --------------------------------------------------------------------------- exit codes and --config


def test_exit_codes_ok_failed_and_usage(flaky: None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FLAKY_TOKEN", "flaky-token-value")
    write(Path("config.yaml"), "sources:\n  up: {type: flaky, token: env:FLAKY_TOKEN}\n"
                               "  down: {type: flaky, token: env:FLAKY_TOKEN, down: true}\n")
    ok = invoke(["sync", "up"])
    assert ok.exit_code == 0, all_output(ok)
    failed = invoke(["sync", "--json"])
    assert failed.exit_code == 1
    assert [(r["source"], r["status"]) for r in json.loads(failed.stdout)] == [("up", "ok"), ("down", "failed")]
    online = invoke(["check", "--online"])
    assert online.exit_code == 1
    assert "source up: ok" in online.stdout
    assert "source down: vendor answered HTTP 503 Service Unavailable" in online.stderr
    for args in (["sync", "--bogus"], ["no-such-command"], ["sync", "nosuch"], ["status", "--config", "nope.yaml"]):
        usage = invoke(args)
        assert usage.exit_code == 2, args
        no_traceback(usage)
    assert invoke(["sync", "nosuch"]).stderr == "error: no source named 'nosuch' in the config (sources: down, up)\n"


def test_a_source_with_bad_credentials_stops_alone(flaky: None, monkeypatch: pytest.MonkeyPatch) -> None:
    # One source's secret is missing: that source reports a config error, the others still sync, exit 2.
    monkeypatch.setenv("FLAKY_TOKEN", "flaky-token-value")
    monkeypatch.delenv("MISSING_TOKEN", raising=False)
    write(Path("config.yaml"), "sources:\n  broken: {type: flaky, token: env:MISSING_TOKEN}\n"
                               "  up: {type: flaky, token: env:FLAKY_TOKEN}\n")
    result = invoke(["sync", "--json"])
    assert result.exit_code == 2, all_output(result)
    assert [(r["source"], r["status"]) for r in json.loads(result.stdout)] == [("broken", "config_error"), ("up", "ok")]
    # Placed in the config as `hub check` places it: the token's own line and column.
    assert result.stderr.splitlines()[0] == ("config.yaml:2:32: sources.broken.token: environment variable "
                                             "MISSING_TOKEN is not set (referenced as env:MISSING_TOKEN)")
    no_traceback(result)


def test_the_config_comes_from_the_option_then_hub_config_then_the_current_folder(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    write(Path("config.yaml"), "version: 1\n")
    write(Path("other.yaml"), "version: 1\ntimezone: Europe/Berlin\n")
    write(Path("third.yaml"), "version: 1\n")
    assert invoke(["check"]).stdout == "config.yaml: ok (0 sources, 0 destinations)\n"
    monkeypatch.setenv("HUB_CONFIG", "other.yaml")
    assert invoke(["check"]).stdout == "other.yaml: ok (0 sources, 0 destinations)\n"
    assert invoke(["check", "--config", "third.yaml"]).stdout == "third.yaml: ok (0 sources, 0 destinations)\n"
    assert invoke(["check", "-c", "third.yaml"]).stdout == "third.yaml: ok (0 sources, 0 destinations)\n"


def test_a_missing_config_is_one_line_naming_the_file() -> None:
    result = invoke(["check"])
    assert result.exit_code == 2
    assert result.stderr == "config.yaml: config file not found (create one with `hub init config.yaml`)\n"


# Commands that work without a config file.
NO_CONFIG_COMMANDS = {"init", "demo", "config schema", "secrets set", "secrets delete", "sandbox serve"}


def _leaf_commands() -> dict[str, Any]:
    import typer.main

    found: dict[str, Any] = {}

    def walk(command: Any, prefix: str) -> None:
        children = getattr(command, "commands", None)
        if children is None:
            found[prefix] = command
            return
        for name, child in children.items():
            walk(child, f"{prefix} {name}".strip())

    from hub.cli import app

    walk(typer.main.get_command(app), "")
    return found


def test_every_command_that_reads_a_config_takes_config() -> None:
    commands = _leaf_commands()
    assert set(commands) >= NO_CONFIG_COMMANDS
    reading = {name for name in commands if name not in NO_CONFIG_COMMANDS}
    assert reading >= {"check", "sync", "status", "explain", "secrets list", "db upgrade"}
    for name in sorted(reading):
        options = {opt for param in commands[name].params for opt in getattr(param, "opts", [])}
        assert {"--config", "-c"} <= options, name


@pytest.mark.parametrize(
    "args", [["check"], ["sync"], ["status"], ["explain", "x@example.com"], ["secrets", "list"], ["db", "upgrade"]]
)
def test_every_config_command_honours_config(args: list[str]) -> None:
    result = invoke([*args, "--config", "elsewhere/missing.yaml"])
    assert result.exit_code == 2
    assert result.stderr == (
        "elsewhere/missing.yaml: config file not found (create one with `hub init elsewhere/missing.yaml`)\n"
    )


def test_an_invalid_log_level_from_the_environment_is_a_usage_error() -> None:
    write(Path("config.yaml"), "version: 1\n")
    result = invoke(["check"], env={"HUB_LOG_LEVEL": "LOUD"})
    assert result.exit_code == 2
    assert result.stderr == (
        "error: invalid log level 'LOUD' (use DEBUG, INFO, WARNING, ERROR or CRITICAL)\n"
    )


# --------------------------------------------------------------------------- check resolves secrets


def test_check_resolves_the_secrets_of_sources_and_destinations(flaky: None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("FLAKY_TOKEN", raising=False)
    monkeypatch.delenv("DISABLED_TOKEN", raising=False)
    write(Path("config.yaml"), """\
sources:
  old: {type: flaky, enabled: false, token: env:FLAKY_TOKEN}
  up: {type: flaky, token: env:FLAKY_TOKEN}
  off: {type: flaky, enabled: false, token: env:DISABLED_TOKEN}
destinations:
  tags: {type: tagger, api_key: file:tagger.key}
""")
    result = invoke(["check"])
    assert result.exit_code == 2
    # One line per problem, at the enabled entry that needs it (not the disabled one written first).
    assert result.stderr.splitlines() == [
        "config.yaml:3:28: sources.up.token: environment variable FLAKY_TOKEN is not set "
        "(referenced as env:FLAKY_TOKEN)",
        f"config.yaml:6:33: destinations.tags.api_key: cannot read secret file {Path.cwd() / 'tagger.key'} "
        "(file:tagger.key): No such file or directory",
    ]
    monkeypatch.setenv("FLAKY_TOKEN", "flaky-token-value")
    write(Path("tagger.key"), "tagger-key-value\n")
    fixed = invoke(["check"])
    assert fixed.exit_code == 0, all_output(fixed)
    assert fixed.stdout == "config.yaml: ok (3 sources, 1 destinations)\n"


# --------------------------------------------------------------------------- init, example, schema


def test_the_packaged_example_is_the_documented_one() -> None:
    assert files("hub.config").joinpath("example.yaml").read_text(encoding="utf-8") == EXAMPLE.read_text(
        encoding="utf-8"
    )


def test_init_writes_a_commented_config_that_check_explains(tmp_path: Path) -> None:
    Path("conf").mkdir()
    result = invoke(["init", "conf/hub.yaml"])
    assert result.exit_code == 0, all_output(result)
    written = tmp_path / "conf" / "hub.yaml"
    text = written.read_text(encoding="utf-8")
    assert text == EXAMPLE.read_text(encoding="utf-8")
    assert sum(line.lstrip().startswith("#") for line in text.splitlines()) > 50
    shipped = sorted(p.name for p in (ROOT / "segment_rules").glob("*.yaml"))
    assert result.stdout == (
        "wrote conf/hub.yaml: edit it, then run `hub check --config conf/hub.yaml`\n"
        f"wrote {len(shipped)} example segment rule files to conf/segment_rules\n"
    )
    assert sorted(p.name for p in (tmp_path / "conf" / "segment_rules").iterdir()) == shipped
    # The example's CSV exports are the user's to provide: check names each file, where the config wants it.
    missing = invoke(["check", "--config", "conf/hub.yaml"])
    assert missing.exit_code == 2, all_output(missing)
    exports = tmp_path / "conf" / "exports"
    lines = text.splitlines()

    def at(needle: str) -> str:
        row = next(i for i, line in enumerate(lines) if needle in line)
        return f"conf/hub.yaml:{row + 1}:{lines[row].index(needle) + 7}"

    assert missing.stderr.splitlines() == [
        f"{at('path: exports/contacts.csv')}: sources.shop_exports.files[0].path: file not found: "
        f"{exports / 'contacts.csv'}",
        f"{at('path: exports/orders*.csv')}: sources.shop_exports.files[1].path: no file matches "
        f"'{exports / 'orders*.csv'}' (set allow_empty: true if that is normal)",
        f"{at('path: exports/events.csv')}: sources.shop_exports.files[2].path: file not found: "
        f"{exports / 'events.csv'}",
    ]
    exports.mkdir()
    write(exports / "contacts.csv", "id,email,first_name,last_name,consent,lifecycle_stage\n")
    write(exports / "orders-1.csv", "id,customer_id,email,occurred_at,amount,currency,status,channel,categories\n")
    write(exports / "events.csv", "id,customer_id,email,type,occurred_at,campaign,category,page_views\n")
    checked = invoke(["check", "--config", "conf/hub.yaml"])
    assert checked.exit_code == 0, all_output(checked)
    assert checked.stdout == "conf/hub.yaml: ok (4 sources, 3 destinations)\n"

    again = invoke(["init", "conf/hub.yaml"])
    assert again.exit_code == 2
    assert again.stderr == "error: conf/hub.yaml exists (use --force to overwrite)\n"
    written.write_text("# mine\n", encoding="utf-8")
    assert invoke(["init", "conf/hub.yaml", "--force"]).exit_code == 0
    assert written.read_text(encoding="utf-8") == EXAMPLE.read_text(encoding="utf-8")


def test_the_example_config_passes_an_offline_check_but_for_its_csv_files() -> None:
    # The CSV exports it names do not exist next to it; everything else is valid.
    result = invoke(["check", "--config", str(EXAMPLE)])
    assert result.exit_code == 2, all_output(result)
    fields = [line.split(": ")[1] for line in result.stderr.splitlines()]
    assert fields == [f"sources.shop_exports.files[{i}].path" for i in range(3)], result.stderr
    assert result.stdout == ""


def _schema() -> dict[str, Any]:
    result = invoke(["config", "schema"])
    assert result.exit_code == 0, all_output(result)
    schema: dict[str, Any] = json.loads(result.stdout)
    return schema


def test_config_schema_is_a_valid_draft_2020_12_schema_the_example_satisfies() -> None:
    schema = _schema()
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    jsonschema.Draft202012Validator.check_schema(schema)
    validator = jsonschema.Draft202012Validator(schema)
    example = YAML(typ="safe").load(EXAMPLE.read_text(encoding="utf-8"))
    assert [e.message for e in validator.iter_errors(example)] == []
    csv_entry = schema["$defs"]["CsvSourceConfig"]
    assert csv_entry["properties"]["type"]["const"] == "csv"
    assert "description" in csv_entry["properties"]["page_size"]


@pytest.mark.parametrize(
    "change",
    [
        {"loging": {"level": "INFO"}},
        {"version": 2},
        {"sources": {"Bad Name": {"type": "csv", "files": []}}},
        {"sources": {"shop": {"type": "salesforce"}}},
        {"store": {"url": 5}},
    ],
)
def test_config_schema_rejects_what_check_rejects(change: dict[str, Any]) -> None:
    validator = jsonschema.Draft202012Validator(_schema())
    example = YAML(typ="safe").load(EXAMPLE.read_text(encoding="utf-8"))
    example.update(change)
    assert list(validator.iter_errors(example))
    write(Path("changed.yaml"), json.dumps(example))
    assert invoke(["check", "--config", "changed.yaml"]).exit_code == 2


# --------------------------------------------------------------------------- status and demo


def test_status_json_on_a_fresh_store() -> None:
    write(Path("config.yaml"), "version: 1\nstore: {url: sqlite:///data.db}\n")
    result = invoke(["status", "--json"])
    assert result.exit_code == 0, all_output(result)
    summary = json.loads(result.stdout)
    assert summary["people"] == 0 and summary["merged"] == 0
    assert summary["raw_records"] == {} and summary["activities"] == {} and summary["identities"] == {}
    assert summary["last_runs"] == [] and summary["sample_email"] is None
    assert Path("data.db").exists()
    assert "alembic" not in result.stderr  # migration chatter stays below the default level


def test_demo_leaves_a_workspace_that_status_reads(tmp_path: Path) -> None:
    result = invoke(["demo", "--csv", "--dir", "demo", "--contacts", "200"])
    assert result.exit_code == 0, all_output(result)
    config = tmp_path / "demo" / "config.yaml"
    assert config.exists() and (tmp_path / "demo" / "hub.db").exists()
    assert f"hub status --config {Path('demo') / 'config.yaml'}" in result.stdout
    # A fresh process reads what the demo left behind.
    done = run_hub(["status", "--json", "--config", str(config)], cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)
    assert 0 < summary["people"] <= 200
    assert summary["identities"] == {"shop_exports": 200}
    assert summary["activities"].get("order", 0) > 0
    assert {(r["kind"], r["target"], r["status"]) for r in summary["last_runs"]} == {
        ("sync", "shop_exports", "ok"), ("segment", "full", "ok")
    }
    assert summary["sample_email"]


# --------------------------------------------------------------------------- help stays light


HEAVY = ("sqlalchemy", "alembic", "numpy", "scipy", "sklearn", "apscheduler", "httpx", "keyring", "ruamel",
         "rich.progress", "connectors", "hub.store", "hub.sync", "hub.http", "hub.config.loader", "hub.sandbox",
         "hub.secrets", "segment_rules")
# typer validates a subcommand's parameters with pydantic, so only the top-level help can do without it.
TOP_LEVEL_ONLY = ("pydantic", "pydantic_core")

# Runs `hub ARGS` in a fresh interpreter, then writes the exit code and every module it imported to a file.
PROBE = """\
import json, sys
out, args = sys.argv[1], json.loads(sys.argv[2])
sys.argv = ["hub", *args]
import hub.cli
try:
    hub.cli.main()
    code = 0
except SystemExit as exc:
    code = exc.code
with open(out, "w") as fh:
    json.dump({"code": code, "modules": sorted(sys.modules)}, fh)
"""


@pytest.mark.parametrize(
    ("args", "heavy"),
    [
        (["--help"], HEAVY + TOP_LEVEL_ONLY),
        (["secrets", "--help"], HEAVY),
        (["sync", "--help"], HEAVY),
        (["config", "--help"], HEAVY),
    ],
)
def test_help_does_not_import_heavy_modules(args: list[str], heavy: tuple[str, ...], tmp_path: Path) -> None:
    import subprocess

    out = tmp_path / "probe.json"
    proc = subprocess.run(
        [sys.executable, "-c", PROBE, str(out), json.dumps(args)],
        cwd=tmp_path, env=hub_env(), capture_output=True, text=True, timeout=120, check=False,
    )
    assert proc.returncode == 0, proc.stderr
    probe = json.loads(out.read_text(encoding="utf-8"))
    assert probe["code"] == 0
    assert "Usage" in proc.stdout
    loaded = [m for m in probe["modules"] if any(m == h or m.startswith(h + ".") for h in heavy)]
    assert loaded == []
    assert "hub.cli" in probe["modules"]  # the probe did run the CLI


def test_help_lists_the_commands() -> None:
    result = invoke(["--help"])
    assert result.exit_code == 0
    for command in ("init", "check", "sync", "status", "explain", "demo", "secrets", "config", "db", "sandbox"):
        assert command in result.stdout
