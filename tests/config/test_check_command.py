"""`hub check` beyond the corpus: connector checks placed in the config, `--online`, and how file names print."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Literal

import pytest

import hub.registry
from hub.config.models import SecretRef, SourceConfigBase
from hub.contracts import Stream
from hub.errors import ConfigError, ConfigErrors
from hub.redact import clear_secrets
from hub.registry import BuildContext, ConnectorSpec

from ..cli_support import all_output, invoke


class FilesConfig(SourceConfigBase):
    type: Literal["files"]
    token: SecretRef
    paths: list[str]


class FilesSource:
    """A source whose connection test fails on a field of a list item and on the entry as a whole."""

    def __init__(self, config: FilesConfig, name: str, ctx: BuildContext) -> None:
        self.name = name
        ctx.resolve_secret(config.token)

    def streams(self) -> Sequence[Stream]:
        return []

    def check(self) -> None:
        raise ConfigErrors([
            ConfigError("the server refused this path", field=f"sources.{self.name}.paths.1"),
            ConfigError("the token lacks the files.read scope"),
        ])

    def close(self) -> None:
        pass


def _local(config: FilesConfig, name: str, ctx: BuildContext) -> None:
    missing = [i for i, p in enumerate(config.paths) if not (ctx.base_dir / p).exists()]
    if missing:
        raise ConfigErrors([ConfigError("no such file", field=f"sources.{name}.paths.{i}") for i in missing])


FILES = ConnectorSpec("files", "files on a server", source_config=FilesConfig, build_source=FilesSource,
                      check_local=_local)

CONFIG = """\
sources:
  remote:
    type: files
    token: env:FILES_TOKEN
    paths: [a.txt, b.txt]
"""


@pytest.fixture(autouse=True)
def _workspace(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for name in ("HUB_CONFIG", "HUB_LOG_LEVEL", "HUB_DEBUG"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("FILES_TOKEN", "files-token-value")
    monkeypatch.chdir(tmp_path)
    yield
    clear_secrets()


@pytest.fixture
def files_connector(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(hub.registry, "connectors", lambda: {"files": FILES})


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def test_offline_check_runs_the_connectors_local_checks_at_the_fields_position(files_connector: None) -> None:
    write(Path("config.yaml"), CONFIG)
    write(Path("a.txt"), "a\n")
    result = invoke(["check"])
    assert result.exit_code == 2, all_output(result)
    assert result.stderr.splitlines() == ["config.yaml:5:20: sources.remote.paths[1]: no such file"]


def test_online_errors_have_one_prefix_and_the_fields_position(files_connector: None) -> None:
    write(Path("config.yaml"), CONFIG)
    write(Path("a.txt"), "a\n")
    write(Path("b.txt"), "b\n")
    assert invoke(["check"]).exit_code == 0
    result = invoke(["check", "--online"])
    assert result.exit_code == 2, all_output(result)
    assert result.stderr.splitlines() == [
        "config.yaml:5:20: sources.remote.paths[1]: the server refused this path",
        # An error naming no field is the entry's: it points at the entry's name.
        "config.yaml:2:3: sources.remote: the token lacks the files.read scope",
    ]
    assert "Traceback" not in all_output(result)


def test_online_skips_an_entry_whose_local_checks_fail(files_connector: None) -> None:
    write(Path("config.yaml"), CONFIG)
    result = invoke(["check", "--online"])
    assert result.exit_code == 2
    assert result.stderr.splitlines() == [
        "config.yaml:5:13: sources.remote.paths[0]: no such file",
        "config.yaml:5:20: sources.remote.paths[1]: no such file",
    ]


RULE = "segment: broken\nrule: {orderz: {gte: 1}}\n"
CSV_CONFIG = "sources:\n  shop: {type: csv, files: [{kind: contacts, path: c.csv}]}\n"


def test_rule_files_print_relative_to_the_current_folder(tmp_path: Path) -> None:
    write(tmp_path / "conf" / "hub.yaml", CSV_CONFIG)
    write(tmp_path / "conf" / "c.csv", "id,email\n")
    write(tmp_path / "conf" / "segment_rules" / "broken.yaml", RULE)
    line = ": rule.orderz: unknown field (did you mean 'orders'?)"
    result = invoke(["check", "--config", "conf/hub.yaml"])
    assert result.exit_code == 2
    assert result.stderr.splitlines() == [f"conf/segment_rules/broken.yaml:2:8{line}"]


def test_rule_files_outside_the_current_folder_print_absolute(tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                                                               ) -> None:
    write(tmp_path / "conf" / "hub.yaml", CSV_CONFIG)
    write(tmp_path / "conf" / "c.csv", "id,email\n")
    write(tmp_path / "conf" / "segment_rules" / "broken.yaml", RULE)
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")
    result = invoke(["check", "--config", "../conf/hub.yaml"])
    assert result.exit_code == 2
    rule_file = tmp_path / "conf" / "segment_rules" / "broken.yaml"
    assert result.stderr.splitlines() == [f"{rule_file}:2:8: rule.orderz: unknown field (did you mean 'orders'?)"]


def test_a_folder_given_as_the_config_is_one_line() -> None:
    Path("conf.yaml").mkdir()
    result = invoke(["check", "--config", "conf.yaml"])
    assert result.exit_code == 2
    assert result.stderr.splitlines() == ["conf.yaml: cannot read config file: Is a directory"]


def test_a_disabled_source_is_validated_but_its_files_are_not_needed_yet() -> None:
    write(Path("config.yaml"),
          "sources:\n  shop: {type: csv, enabled: false, files: [{kind: contacts, path: c.csv}]}\n")
    result = invoke(["check"])
    assert result.exit_code == 0, all_output(result)


def test_a_missing_rules_folder_is_fine_until_the_config_asks_for_segments(tmp_path: Path) -> None:
    write(Path("c.csv"), "id,email\n")
    write(Path("config.yaml"), CSV_CONFIG)
    assert invoke(["check"]).exit_code == 0  # no rules yet: the store still syncs
    write(Path("config.yaml"), CSV_CONFIG + "destinations:\n  news: {type: mailchimp, enabled: false, "
                                            "api_key: env:K, list_id: a1, segments: [vip]}\n")
    result = invoke(["check"])
    assert result.exit_code == 2
    # One line for the cause, not one per segment the destination names.
    assert result.stderr.splitlines() == [
        "config.yaml:1:1: segments.rules_dir: segment rules folder segment_rules does not exist"
    ]
