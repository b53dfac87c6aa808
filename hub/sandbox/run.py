"""Build every installed emulator into a Sandbox, serve them, and write a hub config that points at them.

This is what ``hub sandbox serve`` and ``hub demo`` call. Emulators are found through the connector registry
(:func:`hub.registry.connectors`): every :class:`~hub.registry.ConnectorSpec` with an ``emulator`` gets a
sandbox, all sharing one seeded :class:`~hub.sandbox.business.Business`.
"""

from __future__ import annotations

import io
import logging
import threading
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

from hub.errors import ConfigError
from hub.registry import ConnectorSpec, connectors
from hub.sandbox.business import Business
from hub.sandbox.control import Sandbox
from hub.sandbox.emulator import EmulatorContext, SandboxClock
from hub.sandbox.server import SandboxServers

logger = logging.getLogger(__name__)

# The schedule a sandbox source gets when its connector proposes none: without one, `hub run` on the written
# config would never pull that sandbox (a source without a schedule runs only with `hub sync`).
DEFAULT_SANDBOX_SCHEDULE: dict[str, str] = {"every": "15m"}

Announce = Callable[[dict[str, str]], None]


def emulated_specs(specs: Mapping[str, ConnectorSpec] | None = None) -> dict[str, ConnectorSpec]:
    """The connectors that ship an emulator, by name (from the registry unless ``specs`` is given)."""
    found = connectors() if specs is None else specs
    return {name: spec for name, spec in sorted(found.items()) if spec.emulator is not None}


def build_sandboxes(
    contacts: int = 2000,
    seed: int = 42,
    speed: float = 1.0,
    vendors: Iterable[str] | None = None,
    *,
    business: Business | None = None,
    clock: SandboxClock | None = None,
    specs: Mapping[str, ConnectorSpec] | None = None,
) -> dict[str, Sandbox]:
    """One Sandbox per emulated connector, all on the same seeded business.

    Args:
        contacts: people in the business.
        seed: its seed.
        speed: rate-limit compression (10: a 10-second window lasts 1 s).
        vendors: only these connector types (default: every one with an emulator).
        business: an already generated business to reuse (``contacts`` and ``seed`` are then ignored).
        clock: a clock for every emulator (tests); default a real clock at ``speed``.
        specs: connector specs to use instead of the installed ones (tests).

    Returns:
        Sandboxes by connector type, in name order.

    Raises:
        ConfigError: a requested vendor is unknown or has no emulator.
    """
    available = emulated_specs(specs)
    wanted = list(available) if vendors is None else list(dict.fromkeys(vendors))
    missing = [v for v in wanted if v not in available]
    if missing:
        known = ", ".join(available) or "none installed"
        raise ConfigError(f"no emulator for {', '.join(missing)} (emulated connectors: {known})")
    if business is None:
        business = Business.generate(contacts, seed)
    sandboxes: dict[str, Sandbox] = {}
    for name in wanted:
        factory = available[name].emulator
        assert factory is not None  # filtered by emulated_specs
        ctx = EmulatorContext.create(business, speed=speed, clock=clock, seed=business.seed)
        sandboxes[name] = Sandbox(factory(ctx))
    return sandboxes


def sandbox_config(
    base_urls: Mapping[str, str],
    *,
    store_url: str = "sqlite:///hub.db",
    specs: Mapping[str, ConnectorSpec] | None = None,
) -> dict[str, Any]:
    """A hub config (a YAML-able dict) whose sources and destinations point at the sandboxes.

    Each connector's ``sandbox_entries(base_url)`` gives its ``{"sources": {...}, "destinations": {...}}``; a
    source without a schedule gets :data:`DEFAULT_SANDBOX_SCHEDULE`, so ``hub run`` pulls every sandbox.

    Args:
        base_urls: base URL by connector type.
        store_url: the store URL to write.
        specs: connector specs to use instead of the installed ones (tests).

    Raises:
        ConfigError: two connectors propose an entry of the same name.
    """
    found = connectors() if specs is None else specs
    config: dict[str, Any] = {"store": {"url": store_url}, "sources": {}, "destinations": {}}
    for vendor, url in base_urls.items():
        spec = found.get(vendor)
        if spec is None or spec.sandbox_entries is None:
            continue
        entries = spec.sandbox_entries(url)
        for section in ("sources", "destinations"):
            for name, entry in entries.get(section, {}).items():
                if name in config[section]:
                    raise ConfigError(
                        f"{vendor}: sandbox entry {section}.{name} is also proposed by another connector"
                    )
                if section == "sources" and not entry.get("schedule"):
                    entry = {**entry, "schedule": dict(DEFAULT_SANDBOX_SCHEDULE)}
                config[section][name] = entry
    return config


def dump_config(config: Mapping[str, Any], path: Path, secrets: Mapping[str, str] | None = None) -> None:
    """Write ``config`` as YAML to ``path``, with a header saying where it came from and, for each ``env:NAME``
    reference in ``secrets``, the line that sets it to the value the sandbox accepts."""
    from ruamel.yaml import YAML

    yaml = YAML(typ="safe", pure=True)
    yaml.default_flow_style = False
    buffer = io.StringIO()
    yaml.dump(dict(config), buffer)
    header = "# Written by `hub sandbox serve`: every source and destination points at a local sandbox.\n"
    exports = [f"#   export {ref.split(':', 1)[1]}={value}\n" for ref, value in sorted((secrets or {}).items())
               if ref.startswith("env:")]
    if exports:
        header += "# The sandboxes accept these (public, sandbox-only) credentials:\n" + "".join(exports)
    path.write_text(header + buffer.getvalue(), encoding="utf-8")


def sandbox_secrets(vendors: Iterable[str], specs: Mapping[str, ConnectorSpec] | None = None) -> dict[str, str]:
    """The secret references of the vendors' sandbox entries, each with the value its emulator accepts."""
    found = connectors() if specs is None else specs
    out: dict[str, str] = {}
    for vendor in vendors:
        spec = found.get(vendor)
        if spec is not None:
            out.update(spec.sandbox_secrets)
    return out


def start_sandboxes(
    contacts: int = 2000,
    seed: int = 42,
    speed: float = 1.0,
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    vendors: Iterable[str] | None = None,
    specs: Mapping[str, ConnectorSpec] | None = None,
) -> SandboxServers:
    """Build the sandboxes and start serving them (stop with ``.stop()`` or use as a context manager).

    Raises:
        ConfigError: no emulator is installed, or a requested vendor has none.
    """
    sandboxes = build_sandboxes(contacts, seed, speed, vendors, specs=specs)
    if not sandboxes:
        raise ConfigError("no installed connector ships an emulator: nothing to serve")
    servers = SandboxServers(sandboxes, host=host, port=port)
    servers.start()
    return servers


def serve_forever(
    *,
    contacts: int = 2000,
    seed: int = 42,
    speed: float = 1.0,
    host: str = "127.0.0.1",
    port: int = 0,
    vendors: Iterable[str] | None = None,
    config_out: Path | None = None,
    announce: Announce | None = None,
    block: bool = True,
    stop: threading.Event | None = None,
    specs: Mapping[str, ConnectorSpec] | None = None,
) -> list[dict[str, str]]:
    """Serve every sandbox until interrupted (``hub sandbox serve``).

    Prints nothing itself: ``announce`` is called with one ``{"vendor": ..., "base_url": ...}`` per sandbox
    once all of them listen (the CLI prints them as JSON lines).

    Args:
        contacts, seed, speed, host, port, vendors: see :func:`start_sandboxes`.
        config_out: also write a hub config pointing at the sandboxes here.
        announce: called once per sandbox when serving.
        block: wait until ``stop`` is set or Ctrl-C, then stop the servers; False returns at once and leaves
            them running in daemon threads until the process exits.
        stop: an event that ends the blocking wait (tests, embedding).
        specs: connector specs to use instead of the installed ones (tests).

    Returns:
        The announced lines.
    """
    servers = start_sandboxes(contacts, seed, speed, host=host, port=port, vendors=vendors, specs=specs)
    try:
        lines = [{"vendor": vendor, "base_url": url} for vendor, url in servers.base_urls.items()]
        if config_out is not None:
            dump_config(sandbox_config(servers.base_urls, specs=specs), config_out,
                        sandbox_secrets(servers.base_urls, specs))
        for line in lines:
            logger.info("sandbox %s listening on %s", line["vendor"], line["base_url"])
            if announce is not None:
                announce(line)
        if block:
            wait_for_stop(stop or threading.Event())
    except BaseException:
        servers.stop()
        raise
    if block:
        servers.stop()
    return lines


def wait_for_stop(stop: threading.Event) -> None:
    """Block until ``stop`` is set or Ctrl-C (``hub sandbox serve``, ``hub demo --serve``)."""
    # Event.wait with a timeout keeps the main thread responsive to Ctrl-C.
    try:
        while not stop.wait(0.5):
            pass
    except KeyboardInterrupt:
        logger.info("sandbox servers stopping")
