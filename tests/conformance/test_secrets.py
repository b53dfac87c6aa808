"""The credentials of a run (the configured secrets and every token the emulator saw on the wire, OAuth access
tokens included) never appear in the store (its WAL included), the logs at DEBUG, ``--json`` output or error
messages, even when the vendor echoes the request back."""

from __future__ import annotations

import base64
import sqlite3
from pathlib import Path

import httpx
import pytest

from tests.conformance.trials import output
from tests.conformance.world import World, connectors_with, open_world, registered

CREDENTIAL_HEADERS = ("authorization", "x-shopify-access-token", "x-api-key", "api-key")


def wire_credentials(request: httpx.Request, found: set[str]) -> None:
    """Every credential a request carries: header values (and a Basic pair's parts) and key-like parameters."""
    for name in CREDENTIAL_HEADERS:
        value = request.headers.get(name)
        if not value:
            continue
        scheme, _, credential = value.partition(" ")
        credential = credential or scheme
        found.add(credential)
        if scheme.lower() == "basic":  # the user name part is no secret (Mailchimp takes any string there)
            found.add(base64.b64decode(credential).decode().partition(":")[2])
    for key, value in request.url.params.multi_items():
        if any(word in key.lower() for word in ("key", "token", "secret")):
            found.add(value)
    if request.url.path.endswith("/token") and request.content:
        found.update(v for k, v in httpx.QueryParams(request.content.decode()).multi_items()
                     if "secret" in k or "token" in k)


def _variant(connector: str) -> str | None:
    return registered()[connector][1].expiring_tokens


@pytest.mark.parametrize("connector", connectors_with("emulator"))
def test_no_credential_of_a_run_reaches_the_store_logs_json_or_errors(connector: str, tmp_path: Path) -> None:
    with open_world(connector, tmp_path, variant=_variant(connector)) as world:
        assert world.sandbox is not None
        seen: set[str] = set()
        world.sandbox.add_listener(lambda request, _endpoint: wire_credentials(request, seen))
        db = Path(world.store_url.removeprefix("sqlite:///"))
        outputs = _runs(world, db)
        secrets = {s for s in seen | set(world.secrets.values()) if len(s) >= 8}
        assert secrets, "the run sent no credential at all"
        assert any(s not in world.secrets.values() for s in seen) or not world.kit.expiring_tokens
        assert any(where.endswith("-wal") for where, _ in outputs)  # the write-ahead log is read too
        for where, text in outputs:
            leaked = [s[:6] + "..." for s in secrets if s in text]
            assert not leaked, f"{where} holds credentials {leaked}"


def _runs(world: World, db: Path) -> list[tuple[str, str]]:
    """A sync and a status with --json at DEBUG, then a sync whose answers echo the request; their outputs.

    A connection stays open meanwhile, so SQLite keeps its write-ahead log on disk to be read afterwards.
    """
    outputs = []
    first = world.popen("sync", world.source, "--json", log_level="DEBUG")
    assert first.wait(timeout=120) == 0, output(first)[-3000:]
    keep = sqlite3.connect(db, isolation_level=None)
    keep.execute("BEGIN")
    keep.execute("SELECT count(*) FROM raw_record").fetchone()  # a read transaction: the log stays on disk
    try:
        for args in (("sync", world.source, "--json", "--full"), ("status", "--json")):
            proc = world.popen(*args, log_level="DEBUG")
            assert proc.wait(timeout=120) == 0, output(proc)[-3000:]
            outputs.append((" ".join(args), output(proc)))
        assert world.sandbox is not None and world.kit.record_path is not None
        world.sandbox.inject({"kind": "echo", "path": world.kit.record_path, "count": None})
        echoed = world.popen("sync", world.source, "--json", "--full", log_level="DEBUG")
        assert echoed.wait(timeout=120) != 0
        text = output(echoed)
        assert "bad request" in text and "***" in text, text[-3000:]  # the echo is shown, its credentials masked
        outputs.append(("a sync whose answers echo the request", text))
        assert world.sandbox.stats()["faults_injected"].get("echo")
        world.sandbox.clear_faults()
        for path in (db, db.with_name(db.name + "-wal"), db.with_name(db.name + "-shm")):
            if path.exists():
                outputs.append((str(path), path.read_bytes().decode("latin-1")))
    finally:
        keep.close()
    outputs.append(("the first sync", output(first)))
    return outputs
