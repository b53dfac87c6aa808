"""The sandbox framework: vendor emulators, their control endpoints, the HTTP server and the seeded business.

- :mod:`hub.sandbox.emulator`: the :class:`Emulator` Protocol and the :class:`EmulatorContext` emulators get.
- :mod:`hub.sandbox.control`: :class:`Sandbox`, an emulator plus ``/_sandbox/...`` control endpoints, stats
  and faults; an httpx handler (``httpx.MockTransport(sandbox)``).
- :mod:`hub.sandbox.server`: :class:`SandboxServers`, real HTTP on localhost, one port per vendor.
- :mod:`hub.sandbox.business`: :class:`Business`, the seeded synthetic business every emulator shares.
- :mod:`hub.sandbox.ratelimit`: limiters emulators reuse (windows, token bucket, concurrency).
- :mod:`hub.sandbox.run`: build every installed emulator, serve them, write a config pointing at them.

Names are imported lazily, so importing this package costs nothing until one is used.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from hub.sandbox.business import Business
    from hub.sandbox.control import Sandbox
    from hub.sandbox.emulator import Emulator, EmulatorContext, SandboxClock
    from hub.sandbox.run import build_sandboxes, sandbox_config, serve_forever
    from hub.sandbox.server import SandboxServers

_EXPORTS = {
    "Business": "hub.sandbox.business",
    "Sandbox": "hub.sandbox.control",
    "Emulator": "hub.sandbox.emulator",
    "EmulatorContext": "hub.sandbox.emulator",
    "SandboxClock": "hub.sandbox.emulator",
    "SandboxServers": "hub.sandbox.server",
    "build_sandboxes": "hub.sandbox.run",
    "sandbox_config": "hub.sandbox.run",
    "serve_forever": "hub.sandbox.run",
}

__all__ = [
    "Business",
    "Emulator",
    "EmulatorContext",
    "Sandbox",
    "SandboxClock",
    "SandboxServers",
    "build_sandboxes",
    "sandbox_config",
    "serve_forever",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
