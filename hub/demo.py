"""``hub demo``: a workspace with the seeded synthetic business, ready to sync, segment, push and explore.

With the vendor emulators installed (HubSpot, Shopify, Mailchimp), the demo serves them on localhost from this
process, all seeded with one business whose people overlap across the three tools, and writes a config whose
sources and destinations point at them, with the sandbox credentials in files beside it (``file:`` references,
as on a server). Without them it falls back to the business's CSV exports. Either way the CLI then runs the
ordinary sync, evaluation and push, so the demo exercises exactly the code paths an admin's own config does.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hub.sandbox.business import Business
from segment_rules.configured import copy_example_rules

if TYPE_CHECKING:
    from hub.config.loader import LoadedConfig
    from hub.registry import ConnectorSpec
    from hub.sandbox.server import SandboxServers

# The vendors the demo serves, and which example segments each destination carries: CRM owners act on value
# tiers, the shop on buying behaviour, the newsletter on win-back and engagement.
DEMO_SEGMENTS: dict[str, list[str]] = {
    "hubspot": ["champions", "loyal", "at-risk", "cant-lose-them", "high-clv"],
    "shopify": ["vip", "frequent-buyers", "new-customers"],
    "mailchimp": ["churn-risk", "lapsed", "engaged-non-buyers", "new-customers"],
}
# Rate-limit windows run this many times faster than the vendors' (a 10-second window lasts 0.1 s), so the demo
# takes seconds (Shopify's cost bucket alone would need minutes at its real restore rate); the pacing logic is
# the same.
DEMO_SPEED = 100.0

DEMO_MARK = "# Written by `hub demo`"
SANDBOX_SERVE_MARK = "# Written by `hub sandbox serve`"  # the header hub.sandbox.run.dump_config writes

SANDBOX_DEMO_HEADER = """\
# Written by `hub demo`: HubSpot, Shopify and Mailchimp sources and destinations pointing at the sandboxes the
# demo served on localhost (they stop when it ends, unless it ran with --serve: then on Ctrl-C; `hub demo` again
# starts over). The sandbox credentials are the files in secrets/.
# Explore the store with `hub status --config {config}`, `hub segment --config {config}`
# and `hub explain EMAIL --config {config}`; the segment rules are the files in segment_rules/.
"""

DEMO_CONFIG = """\
# Written by `hub demo`: a CSV source reading the exports of the seeded synthetic business.
# Explore with `hub status --config {config}`, `hub segment --config {config}` and
# `hub explain EMAIL --config {config}`. The segment rules are the files in segment_rules/.
version: 1
timezone: Europe/Berlin
store:
  url: sqlite:///hub.db
sources:
  shop_exports:
    type: csv
    schedule: {{every: 1h}}
    files:
      - kind: contacts
        path: exports/contacts.csv
        properties: [lifecycle_stage]
      - kind: orders
        path: exports/orders.csv
        attributes: [channel, items, categories]
      - kind: events
        path: exports/events.csv
        attributes: [campaign, category, page_views]
"""


@dataclass(frozen=True)
class DemoWorkspace:
    """Where the demo put its files.

    Args:
        directory: the workspace folder.
        config: its config file.
        exports: the CSV exports by kind.
        business: the generated business (for the summary's "what was generated" line).
    """

    directory: Path
    config: Path
    exports: dict[str, Path]
    business: Business

    @property
    def as_of(self) -> datetime:
        """The business's "today": segments are evaluated at it, so the demo's windows hold data."""
        return self.business.as_of


def prepare_demo(directory: Path, *, contacts: int = 2000, seed: int = 42) -> DemoWorkspace:
    """Write the exports and config of a demo workspace into ``directory`` (created if missing).

    Args:
        directory: the workspace folder; an existing demo there is refreshed in place.
        contacts: people in the seeded business.
        seed: its seed (the same seed gives the same business).

    Returns:
        The workspace's paths.
    """
    directory.mkdir(parents=True, exist_ok=True)
    business = Business.generate(contacts, seed)
    exports = business.write_csv_exports(directory / "exports")
    copy_example_rules(directory / "segment_rules")
    config = directory / "config.yaml"
    config.write_text(DEMO_CONFIG.format(config=config), encoding="utf-8")
    return DemoWorkspace(directory=directory, config=config, exports=exports, business=business)


@dataclass
class SandboxDemo:
    """A demo workspace whose sources and destinations are sandboxes served by this process.

    Args:
        directory: the workspace folder.
        config: its config file.
        business: the seeded business every sandbox serves.
        servers: the running sandbox servers (stop them with :meth:`close`).
        vendors: the vendors served, in config order.
    """

    directory: Path
    config: Path
    business: Business
    servers: SandboxServers
    vendors: list[str] = field(default_factory=list)

    @property
    def as_of(self) -> datetime:
        """The business's "today"."""
        return self.business.as_of

    def stats(self) -> dict[str, dict[str, Any]]:
        """Requests and responses per vendor, as each sandbox counted them."""
        return {vendor: sandbox.stats() for vendor, sandbox in self.servers.sandboxes.items()}

    def close(self) -> None:
        """Stop the sandbox servers."""
        self.servers.stop()


def demo_vendors(specs: Mapping[str, ConnectorSpec] | None = None) -> list[str]:
    """The demo vendors whose emulators are installed."""
    from hub.sandbox.run import emulated_specs

    available = emulated_specs(specs)
    return [v for v in DEMO_SEGMENTS if v in available]


def prepare_sandbox_demo(
    directory: Path,
    *,
    contacts: int = 2000,
    seed: int = 42,
    speed: float = DEMO_SPEED,
    vendors: list[str] | None = None,
    specs: Mapping[str, ConnectorSpec] | None = None,
) -> SandboxDemo:
    """Serve the vendor sandboxes and write a workspace whose config points at them.

    The store starts empty every time: the sandboxes are new, so a ledger of tags pushed to an earlier run's
    sandboxes would be wrong about them.

    Args:
        directory: the workspace folder (created if missing).
        contacts: people in the seeded business.
        seed: its seed.
        speed: rate-limit compression of the sandboxes.
        vendors: which vendors to serve (default: :func:`demo_vendors`).
        specs: connector specs instead of the installed ones (tests).
    """
    from hub.registry import connectors
    from hub.sandbox.run import build_sandboxes, sandbox_config
    from hub.sandbox.server import SandboxServers

    found = connectors() if specs is None else specs
    wanted = vendors if vendors is not None else demo_vendors(specs)
    directory.mkdir(parents=True, exist_ok=True)
    for suffix in ("", "-wal", "-shm"):
        (directory / f"hub.db{suffix}").unlink(missing_ok=True)
    business = Business.generate(contacts, seed)
    servers = SandboxServers(build_sandboxes(business=business, speed=speed, vendors=wanted, specs=specs))
    servers.start()
    try:
        config = sandbox_config(servers.base_urls, specs=specs)
        secrets = _write_secrets(directory / "secrets", [found[v] for v in wanted])
        config = _demo_config(config, wanted, secrets)
        copy_example_rules(directory / "segment_rules")
        path = directory / "config.yaml"
        _dump(config, path, SANDBOX_DEMO_HEADER.format(config=path))
    except BaseException:
        servers.stop()
        raise
    return SandboxDemo(directory=directory, config=path, business=business, servers=servers, vendors=wanted)


def _write_secrets(folder: Path, specs: list[ConnectorSpec]) -> dict[str, str]:
    """Write each sandbox secret to its own owner-only file; return ``env:NAME`` -> ``file:secrets/NAME``."""
    folder.mkdir(parents=True, exist_ok=True)
    refs: dict[str, str] = {}
    for spec in specs:
        for ref, value in spec.sandbox_secrets.items():
            name = ref.split(":", 1)[1].lower().replace("_", "-")
            target = folder / name
            fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                handle.write(value)
            refs[ref] = f"file:{folder.name}/{name}"
    return refs


def _demo_config(config: dict[str, Any], vendors: list[str], secrets: Mapping[str, str]) -> dict[str, Any]:
    """The sandbox config with the demo's choices: segments per destination, record-id addressing, secrets."""
    out: dict[str, Any] = {
        "version": 1,
        "timezone": "Europe/Berlin",
        "store": {"url": "sqlite:///hub.db"},
        "logging": {"level": "WARNING"},  # the demo prints its own summary; raise to INFO to see every request
    }
    source_of: dict[str, str] = {}
    sources: dict[str, Any] = {}
    for name, entry in config["sources"].items():
        sources[name] = _with_secrets(entry, secrets)
        source_of.setdefault(entry["type"], name)
    destinations: dict[str, Any] = {}
    for name, entry in config["destinations"].items():
        vendor = entry["type"]
        if vendor not in vendors:
            continue
        entry = _with_secrets(entry, secrets)
        entry["segments"] = list(DEMO_SEGMENTS.get(vendor, []))
        if vendor in source_of:
            entry.setdefault("source", source_of[vendor])
        destinations[name] = entry
    out["sources"] = sources
    out["destinations"] = destinations
    return out


def _with_secrets(entry: Mapping[str, Any], secrets: Mapping[str, str]) -> dict[str, Any]:
    return {k: secrets.get(v, v) if isinstance(v, str) else v for k, v in entry.items()}


def _dump(config: Mapping[str, Any], path: Path, header: str) -> None:
    import io

    from ruamel.yaml import YAML

    yaml = YAML(typ="safe", pure=True)
    yaml.default_flow_style = False
    yaml.sort_base_mapping_type_on_output = False  # type: ignore[assignment]  # keep the sections in order
    buffer = io.StringIO()
    yaml.dump(dict(config), buffer)
    path.write_text(header + buffer.getvalue(), encoding="utf-8")


_LOOPBACK = ("127.0.0.1", "localhost", "::1", "[::1]")


def sandboxes_down(loaded: LoadedConfig, entries: Iterable[tuple[str, str]]) -> str | None:
    """One line saying the sandboxes a demo (or ``hub sandbox serve``) config points at are not running.

    Only for a config one of them wrote (its header says so), and only for the ``(section, name)`` entries
    given whose ``base_url`` is on this host: a refused connection there means the sandboxes stopped, which
    retrying for seconds cannot fix. None when they answer, or the config is someone's own.
    """
    origin = _written_by(loaded.path)
    if origin is None:
        return None
    model = loaded.model
    urls = []
    for section, name in entries:
        entry = (model.sources if section == "sources" else model.destinations).get(name)
        url = getattr(entry, "base_url", None) if entry is not None and entry.enabled else None
        if isinstance(url, str) and url not in urls:
            urls.append(url)
    dead = [url for url in urls if _refused(url)]
    if not dead:
        return None
    where = ", ".join(dead)
    if origin == "demo":
        return (f"the demo's sandboxes ({where}) are not running: they stop when `hub demo` ends. "
                f"`hub demo --serve --dir {loaded.path.parent}` runs the demo again (a new store) and keeps them "
                "serving until Ctrl-C")
    return (f"the sandboxes this config points at ({where}) are not running: start them with "
            f"`hub sandbox serve --config-out {loaded.path}` (it rewrites this file with their new ports)")


def _written_by(path: Path) -> str | None:
    try:
        with path.open(encoding="utf-8") as handle:
            first = handle.readline()
    except OSError:
        return None
    if first.startswith(DEMO_MARK):
        return "demo"
    return "serve" if first.startswith(SANDBOX_SERVE_MARK) else None


def _refused(url: str) -> bool:
    """Nothing listens at a loopback ``url`` (a quick TCP connect; other hosts are never probed here)."""
    import socket
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    if parts.hostname not in _LOOPBACK or parts.port is None:
        return False
    try:
        with socket.create_connection((parts.hostname, parts.port), timeout=0.5):
            return False
    except OSError:
        return True


def people_by_source_count(store: Any) -> dict[int, int]:
    """How many live people were described by 1, 2, 3, ... sources (the cross-tool overlap identity found)."""
    import sqlalchemy as sa

    from hub.store import models as m

    i, p = m.identity, m.person
    per_person = (
        sa.select(i.c.person_id, sa.func.count(sa.distinct(i.c.source)).label("n"))
        .join(p, p.c.id == i.c.person_id)
        .where(i.c.seen.is_(True), p.c.merged_into.is_(None), p.c.deleted.is_(False))
        .group_by(i.c.person_id)
        .subquery()
    )
    query = sa.select(per_person.c.n, sa.func.count()).group_by(per_person.c.n).order_by(per_person.c.n)
    with store.engine.connect() as conn:
        return {int(n): int(c) for n, c in conn.execute(query)}
