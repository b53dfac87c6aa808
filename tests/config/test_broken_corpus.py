"""A corpus of broken config and rule files: `hub check` reports each problem on one line, with exit code 2.

Each case is one file under ``broken/config/`` (checked as the config) or ``broken/rules/`` (a rule file in the
rules folder of a valid config). Its expected lines are the file's ``# expect: ...`` lines, or, for a file that
cannot hold a comment (empty, binary), the lines of ``NAME.expect`` beside it. An expected line is the exact
message, with ``{cwd}`` standing for the folder the check runs in, or ``re:`` and a regular expression the whole
line must match. To grow the corpus, add a file.

Every case runs in a fresh folder holding a valid rule file (``segment_rules/base.yaml``, segment ``base``)
and a CSV export (``exports/contacts.csv``) that cases may name; ``CORPUS_TOKEN`` is set, nothing else is.
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from hub.redact import clear_secrets

from ..cli_support import all_output, invoke

CORPUS = Path(__file__).parent / "broken"
EXPECT = "# expect: "
SIDECAR = ".expect"
BASE_RULE = "segment: base\ndescription: Everyone who ordered\nrule: {orders: {gte: 1}}\n"
BASE_CONFIG = "sources:\n  shop: {type: csv, files: [{kind: contacts, path: exports/contacts.csv}]}\n"
CONTACTS = "id,email,first_name\n1,ada@example.com,Ada\n"


def _cases(kind: str) -> list[Path]:
    return sorted(p for p in (CORPUS / kind).iterdir() if p.is_file() and not p.name.endswith(SIDECAR))


def expected_lines(case: Path) -> list[str]:
    """The lines ``hub check`` must print for ``case``: its sidecar's, else its ``# expect:`` lines."""
    sidecar = case.with_name(case.name + SIDECAR)
    if sidecar.exists():
        return sidecar.read_text(encoding="utf-8").splitlines()
    text = case.read_text(encoding="utf-8")
    return [line.removeprefix(EXPECT) for line in text.splitlines() if line.startswith(EXPECT)]


def matches(line: str, expected: str, cwd: Path) -> bool:
    if expected.startswith("re:"):
        return re.fullmatch(expected.removeprefix("re:"), line) is not None
    return line == expected.replace("{cwd}", str(cwd))


@pytest.fixture
def workspace(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    for name in ("HUB_CONFIG", "HUB_LOG_LEVEL", "HUB_DEBUG", "CORPUS_UNSET_TOKEN", "CORPUS_EXPORTS"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("CORPUS_TOKEN", "corpus-token-value")
    monkeypatch.chdir(tmp_path)
    (tmp_path / "segment_rules").mkdir()
    (tmp_path / "segment_rules" / "base.yaml").write_text(BASE_RULE, encoding="utf-8")
    (tmp_path / "exports").mkdir()
    (tmp_path / "exports" / "contacts.csv").write_text(CONTACTS, encoding="utf-8")
    yield tmp_path
    clear_secrets()


def _assert_reports(args: list[str], case: Path, cwd: Path) -> None:
    expected = expected_lines(case)
    assert expected and "TODO" not in expected, f"{case.name}: no expected lines"
    result = invoke(args)
    output = all_output(result)
    assert "Traceback" not in output
    assert result.exit_code == 2, output
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    # One line per problem: as many lines as expected, each the expected one.
    assert len(lines) == len(expected), output
    for line, want in zip(lines, expected, strict=True):
        assert matches(line, want, cwd), f"{case.name}:\n  got:  {line}\n  want: {want}"


@pytest.mark.parametrize("case", _cases("config"), ids=lambda p: p.stem)
def test_a_broken_config_is_one_line_per_problem(case: Path, workspace: Path) -> None:
    shutil.copyfile(case, workspace / case.name)
    _assert_reports(["check", "--config", case.name], case, workspace)


@pytest.mark.parametrize("case", _cases("rules"), ids=lambda p: p.stem)
def test_a_broken_rule_file_is_one_line_per_problem(case: Path, workspace: Path) -> None:
    (workspace / "config.yaml").write_text(BASE_CONFIG, encoding="utf-8")
    shutil.copyfile(case, workspace / "segment_rules" / case.name)
    _assert_reports(["check", "--config", "config.yaml"], case, workspace)


def test_the_corpus_workspace_itself_checks_ok(workspace: Path) -> None:
    (workspace / "config.yaml").write_text(BASE_CONFIG, encoding="utf-8")
    result = invoke(["check", "--config", "config.yaml"])
    assert result.exit_code == 0, all_output(result)
    assert result.stdout == "config.yaml: ok (1 sources, 0 destinations)\n"


def test_the_corpus_covers_enough_cases() -> None:
    assert len(_cases("config")) + len(_cases("rules")) >= 30
