"""Finds connectors through the ``hub.connectors`` entry-point group.

A connector package exposes one :class:`ConnectorSpec`. The core only ever sees the spec, so third parties can
ship their own connector as a separate distribution and the core never imports a vendor module by name.
Loading is lazy: ``hub --help`` does not import any connector.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import cache
from importlib import import_module
from importlib.metadata import entry_points
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import SecretStr

from hub.errors import ConfigError

if TYPE_CHECKING:
    import httpx

    from hub.config.models import DestinationConfigBase, SourceConfigBase
    from hub.conformance import ConformanceKit
    from hub.contracts import Sink, Source
    from hub.sandbox.emulator import Emulator, EmulatorContext

logger = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "hub.connectors"


@dataclass
class BuildContext:
    """What a connector needs from the core to build a source or sink.

    Args:
        resolve_secret: turns a secret reference (``env:NAME``, ``keyring:SERVICE/NAME``, ``file:PATH``) into
            its value; the value is registered for redaction before it is returned.
        base_dir: the config file's folder; relative paths in the config are relative to it.
        transports: per connector type, an in-process transport (a sandbox emulator) used instead of the network.
        shared: per-account objects shared by every stream of an account (pacers, token caches), keyed by the
            connector as it likes.
    """

    resolve_secret: Callable[[str], SecretStr]
    base_dir: Path = field(default_factory=Path.cwd)
    transports: Mapping[str, httpx.BaseTransport] = field(default_factory=dict)
    shared: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class ConnectorSpec:
    """Everything the core knows about one connector type.

    Args:
        name: the connector type, as written in ``type:`` in the config.
        summary: one line for ``hub --help``-style listings.
        source_config: the pydantic model of a source entry of this type, or None if it cannot be a source.
        build_source: builds a Source from a validated source entry.
        destination_config: the pydantic model of a destination entry, or None if it cannot be a destination.
        build_sink: builds a Sink from a validated destination entry.
        emulator: builds the vendor emulator from the seeded sandbox business, or None (no API to emulate).
        sandbox_entries: given the emulator's base URL, the config entries (``{"sources": {...},
            "destinations": {...}}``) that point the hub at it, for ``hub sandbox serve --config-out``.
        sandbox_secrets: the secret references those entries use (``env:NAME``), each with the value the
            emulator accepts, so ``hub sandbox serve`` can tell them and ``hub demo`` can write them to files.
        conformance: gives the connector's :class:`~hub.conformance.ConformanceKit`; with it, the shared
            conformance suite runs every one of its trials on this connector.
        check_local: the checks of a validated entry (source or destination) that need no network, such as
            the local files it names; the offline ``hub check`` runs it on every enabled entry, so a config
            that would fail on its first run fails there. Raises ConfigError(s) naming the field.
    """

    name: str
    summary: str
    source_config: type[SourceConfigBase] | None = None
    build_source: Callable[[Any, str, BuildContext], Source] | None = None
    destination_config: type[DestinationConfigBase] | None = None
    build_sink: Callable[[Any, str, BuildContext], Sink] | None = None
    emulator: Callable[[EmulatorContext], Emulator] | None = None
    sandbox_entries: Callable[[str], dict[str, dict[str, Any]]] | None = None
    sandbox_secrets: Mapping[str, str] = field(default_factory=dict)
    conformance: Callable[[], ConformanceKit] | None = None
    check_local: Callable[[Any, str, BuildContext], None] | None = None


def lazy(target: str) -> Callable[..., Any]:
    """A callable that imports ``"package.module:name"`` when first called, then calls ``name``.

    Connectors use it for the parts of their spec that need heavy modules (client, streams, sink, emulator),
    so loading the registry imports nothing but their config models::

        build_source=lazy(f"{__name__}.source:HubSpotSource")
    """
    module_name, _, attr = target.partition(":")
    if not module_name or not attr:
        raise ValueError(f"lazy() takes 'package.module:name', not {target!r}")

    def call(*args: Any, **kwargs: Any) -> Any:
        return getattr(import_module(module_name), attr)(*args, **kwargs)

    call.__qualname__ = call.__name__ = attr
    call.__doc__ = f"Imports {module_name} and calls its {attr}."
    return call


@cache
def connectors() -> dict[str, ConnectorSpec]:
    """All installed connectors by type name, loaded from the entry-point group (cached)."""
    found: dict[str, ConnectorSpec] = {}
    for ep in sorted(entry_points(group=ENTRY_POINT_GROUP), key=lambda e: e.name):
        try:
            spec = ep.load()
        except Exception as exc:  # a broken third-party connector must not take the hub down
            logger.error("connector %r could not be loaded: %s", ep.name, exc)
            continue
        if not isinstance(spec, ConnectorSpec):
            logger.error("entry point %r is not a ConnectorSpec; ignored", ep.name)
            continue
        found[spec.name] = spec
    return found


def get_connector(name: str) -> ConnectorSpec:
    """The connector of type ``name``; ConfigError naming the installed ones if it is unknown."""
    specs = connectors()
    if name not in specs:
        known = ", ".join(sorted(specs)) or "none"
        raise ConfigError(f"unknown connector type {name!r} (installed: {known})")
    return specs[name]
