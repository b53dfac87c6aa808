"""No secret value reaches the logs, the database, exception text or ``--json`` output.

A connector that handles its secrets carelessly (it logs them at DEBUG, with request URLs and headers, and
with a traceback quoting its token) runs through the real HTTP core against the toy vendor in-process. The
vendor's error answers quote the request's URL, ``Authorization`` header and API key, as some real APIs do.
Every command the admin runs is then scanned for the values: their stdout and stderr, the log records (as the
test's capture saw them and as the hub's own handler wrote them), the exceptions, and every row and every raw
byte of the SQLite database.
"""

from __future__ import annotations

import json
import logging
import secrets
import sqlite3
import traceback
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import httpx
import keyring
import pytest
from keyring.backends.fail import Keyring as NoKeyring
from pydantic import Field, SecretStr

import hub.registry
from hub.config.loader import LoadedConfig, load_config
from hub.config.models import SecretRef, SourceConfigBase
from hub.contracts import Page, PersonData, Record, Stream
from hub.errors import ConfigError, HubError
from hub.http import NO_RETRY, BearerAuth, HttpClient, NotFoundError, make_client
from hub.redact import MASK, clear_secrets
from hub.registry import BuildContext, ConnectorSpec
from hub.store import open_store
from hub.sync import build_source, sync_source

from .cli_support import all_output, invoke, restored_logging
from .sandbox import make_sandbox

logger = logging.getLogger("connectors.toy")

TOY_URL = "https://toy.invalid"


# --------------------------------------------------------------------------- a careless connector


class ToySourceConfig(SourceConfigBase):
    """A source entry of the toy vendor: a bearer token and an API key sent as a query parameter."""

    type: Literal["toy"]
    token: SecretRef = Field(description="Bearer token")
    api_key: SecretRef = Field(description="API key (sent as ?api_key=)")
    lookup_id: int | None = Field(None, description="Also fetch this contact by id (a missing one fails the run)")
    explode: bool = Field(False, description="Fail with an unexpected error quoting the token when built")
    careless_errors: bool = Field(False, description="Wrap HTTP errors in an error of its own that quotes the key")
    reject_contact: int | None = Field(None, description="Skip this contact, with a message quoting the key")


class ToySource:
    """Contacts from the toy vendor, with every bad secret-handling habit a connector could have."""

    def __init__(self, config: ToySourceConfig, name: str, ctx: BuildContext, transport: httpx.BaseTransport):
        self.name = name
        self.config = config
        token = ctx.resolve_secret(config.token)
        self.api_key = ctx.resolve_secret(config.api_key).get_secret_value()
        # Logged before any request, so only the resolver's registration can mask it.
        logger.debug("%s: token=%s key %s", name, token.get_secret_value(), self.api_key)
        if config.explode:
            raise RuntimeError(f"connector bug while handling token {token.get_secret_value()}")
        self.client: HttpClient = make_client(
            config.base_url or TOY_URL, auth=BearerAuth(token), transport=transport, retry=NO_RETRY,
            log_level=logging.DEBUG,
        )
        try:
            raise ValueError(f"first attempt refused for key {self.api_key}")
        except ValueError:
            logger.debug("%s: ignoring a refused attempt", name, exc_info=True)

    def get(self, path: str, **params: Any) -> httpx.Response:
        response = self.client.get(path, params={**params, "api_key": self.api_key})
        logger.debug("%s: fetched %s with headers %s", self.name, response.request.url, dict(response.request.headers))
        return response

    def streams(self) -> Sequence[Stream]:
        found: list[Stream] = [ContactsStream(self)]
        if self.config.lookup_id is not None:
            found.append(LookupStream(self, self.config.lookup_id))
        return found

    def check(self) -> None:
        self.get("/v1/contacts")

    def close(self) -> None:
        self.client.close()


@dataclass
class ContactsStream:
    source: ToySource
    name: str = "contacts"

    def read(self, state: Mapping[str, Any] | None, *, full: bool = False) -> Iterator[Page]:
        after = 0 if full or not state else int(state.get("after", 0))
        while True:
            body = self.source.get("/v1/contacts", after=after).json()
            rejected = [c for c in body["results"] if c["id"] == self.source.config.reject_contact]
            records = [
                Record("contact", str(c["id"]), c, person=PersonData(email=c["email"]))
                for c in body["results"] if c not in rejected
            ]
            errors = [f"contact {c['id']} rejected for key {self.source.api_key}" for c in rejected]
            nxt = body.get("paging", {}).get("next", {}).get("after")
            after = int(nxt) if nxt is not None else after
            yield Page(records, {"after": after}, skipped=len(rejected), errors=errors)
            if nxt is None:
                return


@dataclass
class LookupStream:
    source: ToySource
    contact_id: int
    name: str = "lookup"

    def read(self, state: Mapping[str, Any] | None, *, full: bool = False) -> Iterator[Page]:
        try:
            contact = self.source.get(f"/v1/contacts/{self.contact_id}").json()
        except HubError as exc:
            logger.warning("%s: lookup failed: %s", self.source.name, exc)
            if not self.source.config.careless_errors:
                raise
            raise HubError(f"lookup of {self.contact_id} with key {self.source.api_key} failed: {exc}") from exc
        yield Page([Record("contact", str(contact["id"]), contact)], None)


@dataclass
class EchoingVendor:
    """The toy vendor, whose error answers quote the request's URL, Authorization header and API key."""

    token: str
    seen_auth: set[str] = field(default_factory=set)
    seen_keys: set[str] = field(default_factory=set)

    def __post_init__(self) -> None:
        self.sandbox, emulator = make_sandbox()
        emulator.tokens.add(self.token)

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.seen_auth.add(request.headers.get("Authorization", ""))
        key = request.url.params.get("api_key", "")
        self.seen_keys.add(key)
        response = self.sandbox(request)
        if response.status_code < 400:
            return response
        return httpx.Response(response.status_code, json={
            "error": json.loads(response.content).get("error", "failed"),
            "request": str(request.url),
            "authorization": request.headers.get("Authorization"),
            "detail": f"the key {key} may not do this",
        })


@dataclass
class Credentials:
    token: str
    revoked_token: str
    api_key: str

    @property
    def values(self) -> tuple[str, ...]:
        return (self.token, self.revoked_token, self.api_key)


def toy_spec(transport: httpx.BaseTransport) -> ConnectorSpec:
    def build(config: ToySourceConfig, name: str, ctx: BuildContext) -> ToySource:
        return ToySource(config, name, ctx, transport)

    return ConnectorSpec("toy", "toy vendor", source_config=ToySourceConfig, build_source=build)


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(autouse=True)
def _isolated() -> Iterator[None]:
    # No keyring: `hub secrets list` must not read whatever the machine's own keyring holds.
    previous = keyring.get_keyring()
    keyring.set_keyring(NoKeyring())
    yield
    keyring.set_keyring(previous)
    clear_secrets()


@pytest.fixture
def creds(monkeypatch: pytest.MonkeyPatch) -> Credentials:
    # Long and random: a match in any output can only be the secret itself.
    found = Credentials(
        token=f"tok_{secrets.token_hex(24)}",
        revoked_token=f"rvk_{secrets.token_hex(24)}",
        api_key=f"key_{secrets.token_urlsafe(32)}",
    )
    monkeypatch.setenv("TOY_TOKEN", found.token)
    monkeypatch.setenv("TOY_REVOKED_TOKEN", found.revoked_token)
    for name in ("HUB_LOG_LEVEL", "HUB_DEBUG", "HUB_CONFIG"):
        monkeypatch.delenv(name, raising=False)
    return found


@pytest.fixture
def vendor(creds: Credentials, monkeypatch: pytest.MonkeyPatch) -> EchoingVendor:
    """The toy vendor, installed as the only connector the hub finds."""
    echoing = EchoingVendor(creds.token)
    spec = toy_spec(httpx.MockTransport(echoing))
    monkeypatch.setattr(hub.registry, "connectors", lambda: {"toy": spec})
    return echoing


CONFIG = """\
version: 1
store: {{url: sqlite:///hub.db}}
logging: {{level: DEBUG, format: {fmt}}}
sources:
  toy:
    type: toy
    token: env:TOY_TOKEN
    api_key: file:toy-api-key
    reject_contact: 3
  toy_broken:
    type: toy
    token: env:TOY_TOKEN
    api_key: file:toy-api-key
    lookup_id: 999
  toy_careless:
    type: toy
    token: env:TOY_TOKEN
    api_key: file:toy-api-key
    lookup_id: 998
    careless_errors: true
  toy_revoked:
    type: toy
    enabled: false
    token: env:TOY_REVOKED_TOKEN
    api_key: file:toy-api-key
"""


def write_config(directory: Path, creds: Credentials, fmt: str = "human", extra: str = "") -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "toy-api-key").write_text(creds.api_key + "\n", encoding="utf-8")
    path = directory / "config.yaml"
    path.write_text(CONFIG.format(fmt=fmt) + extra, encoding="utf-8")
    return path


# --------------------------------------------------------------------------- scanning


def assert_clean(text: str, creds: Credentials, where: str) -> None:
    for value in creds.values:
        assert value not in text, f"a secret value appears in {where}"


def database_rows(db: Path) -> dict[str, list[tuple[Any, ...]]]:
    con = sqlite3.connect(db)
    try:
        tables = [r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
        return {t: con.execute(f'SELECT * FROM "{t}"').fetchall() for t in tables}
    finally:
        con.close()


def database_bytes(db: Path) -> bytes:
    files = [db, *(db.with_name(db.name + suffix) for suffix in ("-wal", "-shm", "-journal"))]
    return b"".join(p.read_bytes() for p in files if p.exists())


def log_text(caplog: pytest.LogCaptureFixture) -> str:
    """Everything the capture holds: its formatted text and each record's message, traceback and stack."""
    parts = [caplog.text]
    for r in caplog.records:
        parts += [r.getMessage(), r.exc_text or "", r.stack_info or ""]
    return "\n".join(parts)


# --------------------------------------------------------------------------- the end-to-end run


@pytest.mark.parametrize("fmt", ["human", "json"])
def test_no_secret_reaches_logs_output_or_database(
    fmt: str, tmp_path: Path, creds: Credentials, vendor: EchoingVendor, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    cfg = write_config(tmp_path, creds, fmt)
    c = str(cfg)
    runs = {
        "check": (invoke(["check", "--config", c]), 0),
        "check --online": (invoke(["check", "--online", "--config", c]), 0),
        "sync": (invoke(["sync", "--config", c]), 1),
        "sync --json --full": (invoke(["sync", "--json", "--full", "--config", c]), 1),
        "sync toy_revoked --json": (invoke(["sync", "toy_revoked", "--json", "--config", c]), 2),
        "status --json": (invoke(["status", "--json", "--config", c]), 0),
        "status": (invoke(["status", "--config", c]), 0),
        "secrets list --json": (invoke(["secrets", "list", "--json", "--config", c]), 0),
        "secrets list": (invoke(["secrets", "list", "--config", c]), 0),
    }
    for name, (result, code) in runs.items():
        assert result.exit_code == code, f"hub {name}: {all_output(result)}"
        # The only tracebacks are the ones the connector logged on purpose.
        assert "Traceback" not in result.stdout, f"hub {name}"
        assert result.stderr.count("Traceback") == result.stderr.count("ignoring a refused attempt"), f"hub {name}"
        assert_clean(all_output(result), creds, f"the output of hub {name}")
    assert_clean(log_text(caplog), creds, "the captured log records")

    # The run really used the secrets, and the lines that would have leaked them were logged, masked.
    assert vendor.seen_auth >= {f"Bearer {creds.token}", f"Bearer {creds.revoked_token}"}
    assert vendor.seen_keys == {creds.api_key}
    handler_output = "\n".join(r.stderr for r, _ in runs.values())
    assert f"token={MASK} key {MASK}" in handler_output
    assert f"api_key={MASK}" in handler_output
    assert f"first attempt refused for key {MASK}" in handler_output  # a traceback, masked
    if fmt == "json":
        # Every log line is one valid JSON object, even where masking met an escaped quote.
        lines = [ln for ln in handler_output.splitlines() if ln.startswith('{"ts"')]
        assert len(lines) > 20
        records = [json.loads(ln) for ln in lines]
        failures = [r["msg"] for r in records if "lookup failed" in r["msg"]]
        assert failures and all(f'"request":"{TOY_URL}/v1/contacts/99' in m for m in failures)

    # --json output: the failed run says why, with the vendor's echo masked.
    synced = {r["source"]: r for r in json.loads(runs["sync --json --full"][0].stdout)}
    assert synced["toy"]["status"] == "ok_with_skips"
    assert synced["toy"]["counts"]["records"] == 4 and synced["toy"]["counts"]["skipped"] == 1
    assert synced["toy"]["errors"] == [f"contact 3 rejected for key {MASK}"]
    assert f"skipped contact 3 rejected for key {MASK}" in runs["sync"][0].stderr
    assert synced["toy_broken"]["status"] == "failed"
    assert "HTTP 404" in synced["toy_broken"]["error"] and MASK in synced["toy_broken"]["error"]
    assert synced["toy_careless"]["error"].startswith(f"lookup of 998 with key {MASK} failed: GET ")
    assert "HTTP 401" in runs["sync toy_revoked --json"][0].stderr
    listed = {row["ref"]: row for row in json.loads(runs["secrets list --json"][0].stdout)}
    assert listed["env:TOY_TOKEN"]["status"] == "ok" and listed["file:toy-api-key"]["status"] == "ok"

    # The database: every row of every table, and every raw byte of the files.
    db = tmp_path / "hub.db"
    raw = database_bytes(db)
    for value in creds.values:
        assert value.encode() not in raw, "a secret value appears in the raw database files"
    rows = database_rows(db)
    assert_clean(repr(rows), creds, "the database rows")
    assert len(rows["raw_record"]) == 14  # five contacts from each source that ran, less the rejected one
    errors = [r for r in json.loads(runs["status --json"][0].stdout)["last_runs"] if r["error"]]
    assert {r["target"] for r in errors} == {"toy_broken", "toy_careless", "toy_revoked"}
    assert all(MASK in r["error"] for r in errors)


def test_errors_raised_through_the_http_core_carry_no_secret(
    tmp_path: Path, creds: Credentials, vendor: EchoingVendor, monkeypatch: pytest.MonkeyPatch
) -> None:
    cfg = write_config(tmp_path, creds)
    loaded = load_config(cfg)
    ctx = BuildContext(resolve_secret=loaded.resolve_secret, base_dir=loaded.base_dir)
    store = open_store(loaded.model.store.url, base_dir=loaded.base_dir)
    try:
        for name, expected in (("toy_broken", NotFoundError), ("toy_revoked", ConfigError)):
            source = build_source(loaded, name, ctx)
            with pytest.raises(expected) as info:
                sync_source(store, source, "toy")
            source.close()
            exc = info.value
            text = "".join(traceback.format_exception(exc)) + repr(exc) + repr(exc.args) + str(vars(exc))
            assert_clean(text, creds, f"the exception of {name}")
            assert MASK in str(exc)
        summary = store.summary().as_dict()
    finally:
        store.close()
    assert_clean(json.dumps(summary), creds, "the store summary")


def test_unexpected_errors_are_redacted_with_and_without_a_traceback(
    tmp_path: Path, creds: Credentials, vendor: EchoingVendor
) -> None:
    cfg = write_config(tmp_path, creds, extra="  toy_bug:\n    type: toy\n    token: env:TOY_TOKEN\n"
                                               "    api_key: file:toy-api-key\n    explode: true\n")
    plain = invoke(["check", "--config", str(cfg)])
    assert plain.exit_code == 1
    assert plain.stderr.splitlines()[-1] == (
        f"error: unexpected RuntimeError: connector bug while handling token {MASK} "
        "(set HUB_DEBUG=1 for a traceback)"
    )
    assert plain.stderr.count("Traceback") == plain.stderr.count("ignoring a refused attempt")
    debug = invoke(["check", "--config", str(cfg)], env={"HUB_DEBUG": "1"})
    assert debug.exit_code == 1
    assert "Traceback (most recent call last)" in debug.stderr
    assert f"RuntimeError: connector bug while handling token {MASK}" in debug.stderr
    for result in (plain, debug):
        assert_clean(all_output(result), creds, "the error output")


def test_a_failed_run_prints_the_vendor_error_redacted_and_literally(
    tmp_path: Path, creds: Credentials, vendor: EchoingVendor
) -> None:
    # The vendor's JSON error holds brackets; they are printed as text, not taken as console markup.
    cfg = write_config(tmp_path, creds)
    result = invoke(["sync", "toy_careless", "--config", str(cfg)])
    assert result.exit_code == 1
    failed = [ln for ln in result.stderr.splitlines() if "toy_careless: failed:" in ln]
    assert len(failed) == 1, result.stderr
    assert failed[0].startswith(f"toy_careless: failed: lookup of 998 with key {MASK} failed: GET ")
    assert f"api_key={MASK}" in failed[0]
    assert f"api_key={MASK}: HTTP 404 Not Found: " in failed[0]
    assert '{"error":"not found"' in failed[0] and f'"detail":"the key {MASK} may not do this"' in failed[0]
    assert_clean(all_output(result), creds, "the sync output")


def test_the_leak_check_notices_a_secret_that_is_not_masked(
    tmp_path: Path, creds: Credentials, vendor: EchoingVendor, monkeypatch: pytest.MonkeyPatch
) -> None:
    # With registration switched off, the connector's debug line shows the token: the scan above must see it.
    import hub.secrets

    monkeypatch.setattr(hub.secrets, "register_secret", lambda value: None)
    monkeypatch.setattr(hub.http.auth, "register_secret", lambda value: None)
    monkeypatch.setattr(hub.http.client, "register_secret", lambda value: None)
    cfg = write_config(tmp_path, creds)
    with restored_logging():
        result = invoke(["check", "--config", str(cfg)])
    assert result.exit_code == 0
    assert creds.token in result.stderr
    with pytest.raises(AssertionError):
        assert_clean(result.stderr, creds, "the log output")


def test_resolved_secrets_are_secretstr(tmp_path: Path, creds: Credentials, vendor: EchoingVendor) -> None:
    loaded: LoadedConfig = load_config(write_config(tmp_path, creds))
    value = loaded.resolve_secret("env:TOY_TOKEN")
    assert isinstance(value, SecretStr)
    assert creds.token not in repr(value) and creds.token not in str(value)
    assert value.get_secret_value() == creds.token
