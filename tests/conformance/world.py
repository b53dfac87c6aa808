"""One connector under trial: its emulator served on localhost, a store, a config pointing at both, and ``hub``.

A :class:`World` is built from nothing but the connector's registry entry: the emulator and the sandbox config
entries come from its :class:`~hub.registry.ConnectorSpec`, the rest from its
:class:`~hub.conformance.ConformanceKit`. So a new connector gets every trial of the suite by registering.

The CLI runs either in-process (fast; most trials) or as a real ``python -m hub.cli`` subprocess (what kill -9,
SIGTERM and concurrency trials need). :meth:`World.snapshot` reads the store into plain sets that two runs can
be compared by: raw records with their content hashes, activities, and people as sets of identities (so person
ids, which differ between runs, do not matter).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import httpx
import sqlalchemy as sa

from hub.conformance import ConformanceKit
from hub.registry import ConnectorSpec, connectors
from hub.sandbox.business import Business
from hub.sandbox.control import Sandbox
from hub.sandbox.run import build_sandboxes, sandbox_config, sandbox_secrets
from hub.sandbox.server import SandboxServers
from hub.store import models as m
from hub.store import open_store
from tests.cli_support import hub_env, invoke

SEED = 7
FILE_SOURCE = "files"


def registered() -> dict[str, tuple[ConnectorSpec, ConformanceKit]]:
    """Every installed connector with a conformance kit, by type name."""
    found: dict[str, tuple[ConnectorSpec, ConformanceKit]] = {}
    for name, spec in sorted(connectors().items()):
        if spec.conformance is not None:
            found[name] = (spec, spec.conformance())
    return found


@cache
def business(contacts: int, seed: int = SEED) -> Business:
    """The seeded business (generated once per size: it is immutable)."""
    return Business.generate(contacts, seed)


# ----------------------------------------------------------------------------------------------- the store


@dataclass(frozen=True)
class Snapshot:
    """What a store holds, in terms two runs can be compared by."""

    records: Mapping[tuple[str, str, str], tuple[str, bool]]
    activities: Mapping[tuple[str, str, str], tuple[str, str | None, str | None, bool]]
    people: frozenset[frozenset[tuple[str, str]]]

    def differences(self, other: Snapshot) -> dict[str, int]:
        """Counts of what ``other`` lacks (``lost``), has in excess (``extra``) or has otherwise (``changed``)."""
        out = {"lost": 0, "extra": 0, "changed": 0}
        for mine, theirs in ((self.records, other.records), (self.activities, other.activities)):
            out["lost"] += len(mine.keys() - theirs.keys())
            out["extra"] += len(theirs.keys() - mine.keys())
            out["changed"] += sum(1 for k in mine.keys() & theirs.keys() if mine[k] != theirs[k])
        out["lost"] += len(self.people - other.people)
        out["extra"] += len(other.people - self.people)
        return out

    def ids(self) -> dict[str, set[str]]:
        """Live (not deleted) record ids per object type."""
        out: dict[str, set[str]] = {}
        for (_, kind, external_id), (_, deleted) in self.records.items():
            if not deleted:
                out.setdefault(kind, set()).add(external_id)
        return out


def snapshot(store_url: str) -> Snapshot:
    """Read the store at ``store_url``."""
    store = open_store(store_url)
    try:
        with store.engine.connect() as conn:
            return _read(conn)
    finally:
        store.close()


def _read(conn: sa.Connection) -> Snapshot:
    r, a, i, p = m.raw_record, m.activity, m.identity, m.person
    records = {
        (row.source, row.object_type, row.external_id): (row.content_hash, bool(row.deleted))
        for row in conn.execute(sa.select(r.c.source, r.c.object_type, r.c.external_id, r.c.content_hash,
                                          r.c.deleted))
    }
    activities = {
        (row.source, row.type, row.external_id): (
            row.occurred_at.isoformat(), None if row.amount is None else f"{row.amount:.2f}", row.currency,
            bool(row.deleted),
        )
        for row in conn.execute(sa.select(a.c.source, a.c.type, a.c.external_id, a.c.occurred_at, a.c.amount,
                                          a.c.currency, a.c.deleted))
    }
    canonical = sa.func.coalesce(p.c.merged_into, p.c.id)
    people: dict[int, set[tuple[str, str]]] = {}
    rows = conn.execute(
        sa.select(canonical.label("pid"), i.c.source, i.c.external_id, i.c.email)
        .select_from(i.join(p, p.c.id == i.c.person_id))
    )
    for row in rows:
        people.setdefault(int(row.pid), set()).add((row.source, row.external_id or f"email:{row.email}"))
    return Snapshot(records, activities, frozenset(frozenset(v) for v in people.values()))


# ----------------------------------------------------------------------------------------------- the world


@dataclass
class World:
    """A connector, its served emulator (if it has one), a store and a config; see the module docstring."""

    name: str
    spec: ConnectorSpec
    kit: ConformanceKit
    variant: str
    folder: Path
    store_url: str
    config: Path
    env: dict[str, str]
    source: str
    destination: str | None
    settings: dict[str, Any] = field(default_factory=dict)
    sandbox: Sandbox | None = None
    servers: SandboxServers | None = None
    secrets: dict[str, str] = field(default_factory=dict)

    # -- the CLI

    def invoke(self, *args: str) -> Any:
        """``hub ARGS --config CONFIG`` in-process (a CliRunner result)."""
        return invoke([*args, "--config", str(self.config)], env=self.env)

    def sync(self, *extra: str) -> dict[str, Any]:
        """``hub sync SOURCE --json`` in-process; the source's result (``status``, ``counts``, ...)."""
        result = self.invoke("sync", self.source, "--json", *extra)
        assert result.exit_code in (0, 1, 2), result.output
        try:
            rows = json.loads(result.stdout)
        except ValueError:
            raise AssertionError(f"hub sync printed no JSON (exit {result.exit_code}): {result.output}") from None
        out = dict(rows[0])
        out["exit_code"] = result.exit_code
        out["stderr"] = result.stderr
        return out

    def popen(self, *args: str, log_level: str = "INFO") -> subprocess.Popen[str]:
        """``python -m hub.cli ARGS --config CONFIG`` as a real process (stdout and stderr to files)."""
        env = {**self.env, "HUB_LOG_LEVEL": log_level}
        log = self.folder / f"out-{time.monotonic_ns()}.log"
        with log.open("w", encoding="utf-8") as out:
            proc = subprocess.Popen(
                [sys.executable, "-m", "hub.cli", *args, "--config", str(self.config)],
                cwd=self.folder, env=env, stdout=out, stderr=subprocess.STDOUT, text=True,
            )
        proc.log_path = log  # type: ignore[attr-defined]
        return proc

    # -- the emulator

    def stats(self) -> dict[str, Any]:
        """The sandbox's counters (requests, endpoints, resources, statuses)."""
        assert self.sandbox is not None
        return self.sandbox.stats()

    def requests(self) -> int:
        """API requests the sandbox answered since its counters were last zeroed (none without a sandbox)."""
        return int(self.stats()["requests"]) if self.sandbox is not None else 0

    def snapshot(self) -> Snapshot:
        """The store's content."""
        return snapshot(self.store_url)

    def fresh_store(self, label: str) -> str:
        """Point the config at a new, empty SQLite store; returns its URL (the old one is kept)."""
        return self.use_store(f"sqlite:///{self.folder / f'{label}.db'}")

    def use_store(self, url: str) -> str:
        """Point the config at the store ``url``; returns it."""
        self.store_url = url
        _write_config(self)
        return url

    def close(self) -> None:
        """Stop the sandbox servers."""
        if self.servers is not None:
            self.servers.stop()


def _write_config(world: World, extra: Mapping[str, Any] | None = None) -> None:
    from ruamel.yaml import YAML

    world.settings["store"] = {"url": world.store_url}
    for section, entries in (extra or {}).items():
        if isinstance(world.settings.get(section), dict) and section in ("sources", "destinations"):
            world.settings[section].update(entries)
        else:
            world.settings[section] = dict(entries)
    yaml = YAML(typ="safe", pure=True)
    with world.config.open("w", encoding="utf-8") as f:
        yaml.dump(world.settings, f)


@contextmanager
def open_world(
    name: str,
    folder: Path,
    *,
    variant: str | None = None,
    store_url: str | None = None,
    overrides: Mapping[str, Any] | None = None,
    destination: bool = False,
) -> Iterator[World]:
    """A world for connector ``name`` in ``folder`` (see :class:`World`).

    Args:
        name: the connector type.
        folder: where the config, the store (by default) and the logs go.
        variant: the kit's variant (default: its first).
        store_url: the store (default: a SQLite file in ``folder``).
        overrides: more settings of the source entry.
        destination: also configure the connector's sandbox destination (push trials).
    """
    spec, kit = registered()[name]
    variant = variant or next(iter(kit.variants))
    folder.mkdir(parents=True, exist_ok=True)
    data = business(kit.contacts)
    config: dict[str, Any] = {
        "store": {"url": store_url or f"sqlite:///{folder / 'hub.db'}"},
        "sources": {},
        "destinations": {},
        "segments": {"rules_dir": str(folder / "rules")},
    }
    secrets: dict[str, str] = {}
    sandbox = servers = None
    dest_name: str | None = None
    if spec.emulator is not None:
        sandbox = build_sandboxes(business=data, vendors=[name], speed=kit.speed)[name]
        servers = SandboxServers({name: sandbox})
        servers.start()
        entries = sandbox_config(servers.base_urls, specs={name: spec})
        source_name, entry = next(iter(entries["sources"].items()))
        if destination and entries["destinations"]:
            dest_name, dest_entry = next(iter(entries["destinations"].items()))
            config["destinations"][dest_name] = dest_entry
        secrets = {**sandbox_secrets([name], {name: spec}), **kit.secrets}
    else:
        assert kit.files is not None, f"{name}: a kit without an emulator must say how to write its files"
        source_name, entry = FILE_SOURCE, kit.files(folder, data)
    entry = {**entry, **kit.variants[variant], **(overrides or {})}
    entry.pop("schedule", None)
    config["sources"][source_name] = entry
    config_path = folder / "config.yaml"
    env = hub_env(**{ref.split(":", 1)[1]: value for ref, value in secrets.items() if ref.startswith("env:")})
    env["HUB_LOG_LEVEL"] = "WARNING"
    world = World(name, spec, kit, variant, folder, config["store"]["url"], config_path, env, source_name,
                  dest_name, config, sandbox, servers, secrets)
    _write_config(world)
    try:
        yield world
    finally:
        world.close()


def configure(world: World, **sections: Mapping[str, Any]) -> None:
    """Add or replace top-level config sections (``daemon={...}``) or entries (``sources={name: {...}}``)."""
    _write_config(world, sections)


# ----------------------------------------------------------------------------------------------- triggers


class RequestTrigger:
    """Calls ``action`` when the sandbox sees its ``at``-th request, or the first one whose endpoint starts with
    ``endpoint`` (after ``skip`` such requests), from the sandbox's request listener."""

    def __init__(self, sandbox: Sandbox, action: Callable[[], object], *, at: int | None = None,
                 endpoint: str | None = None, skip: int = 0) -> None:
        self.sandbox = sandbox
        self.action = action
        self.at = at
        self.endpoint = endpoint
        self.skip = skip
        self.seen = 0
        self.fired = threading.Event()
        self._lock = threading.Lock()
        sandbox.add_listener(self)

    def __call__(self, request: httpx.Request, endpoint: str) -> None:
        with self._lock:
            if self.fired.is_set():
                return
            self.seen += 1
            hit = self.at is not None and self.seen >= self.at
            if self.endpoint is not None and endpoint.startswith(self.endpoint):
                if self.skip > 0:
                    self.skip -= 1
                else:
                    hit = True
            if not hit:
                return
            self.fired.set()
        self.action()

    def remove(self) -> None:
        """Stop listening."""
        self.sandbox.remove_listener(self)


def wait_for(condition: Callable[[], bool], timeout: float, message: str) -> None:
    """Poll ``condition`` until it holds; fail with ``message`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.02)
    raise AssertionError(f"{message} (after {timeout} s)")


def runs(store_url: str, kind: str = "sync") -> list[dict[str, Any]]:
    """The run rows of ``kind``, oldest first."""
    store = open_store(store_url)
    try:
        with store.engine.connect() as conn:
            rows = conn.execute(sa.select(m.run).where(m.run.c.kind == kind).order_by(m.run.c.id)).mappings()
            return [dict(row) for row in rows]
    finally:
        store.close()


def stream_states(store_url: str) -> dict[str, Any]:
    """The stored stream states by stream."""
    store = open_store(store_url)
    try:
        with store.engine.connect() as conn:
            rows = conn.execute(sa.select(m.sync_state.c.stream, m.sync_state.c.state))
            return {row.stream: row.state for row in rows}
    finally:
        store.close()


def kill_points(kit: ConformanceKit) -> Sequence[tuple[str, str]]:
    """The kit's labelled kill points, in a stable order."""
    return sorted(kit.kill_points.items())


def secret_values(world: World) -> set[str]:
    """The secrets the world's config references, as the processes resolve them."""
    return {value for value in world.secrets.values() if value}


def pid_alive(pid: int) -> bool:
    """Whether process ``pid`` still runs (not a zombie)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


# ----------------------------------------------------------------------------------------------- parameters


def connectors_with(*needs: str) -> list[Any]:
    """Connector names (as pytest params) whose spec and kit have what a trial needs.

    Needs: ``emulator`` (an API served by a sandbox), ``sink`` (a push side), or the name of a kit field that
    must be set (``broken_record``, ``optional_field``, ``record_path``, ``expiring_tokens``, ...).
    """
    import pytest

    names = []
    for name, (spec, kit) in registered().items():
        served = spec.emulator is not None
        have = {"emulator": served, "sink": served and spec.build_sink is not None}
        if all(have[n] if n in have else getattr(kit, n) is not None for n in needs):
            names.append(pytest.param(name, id=name))
    return names


def variants() -> list[Any]:
    """(connector, variant) pairs of every kit's variants, as pytest params."""
    import pytest

    return [pytest.param(name, variant, id=f"{name}-{variant}")
            for name, (_, kit) in registered().items() for variant in kit.variants]
