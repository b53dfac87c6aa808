"""Building sandboxes from connector specs, the sandbox config, and serve_forever."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import httpx
import pytest
from ruamel.yaml import YAML

from hub.errors import ConfigError
from hub.registry import ConnectorSpec
from hub.sandbox.business import Business
from hub.sandbox.emulator import EmulatorContext
from hub.sandbox.run import (
    DEFAULT_SANDBOX_SCHEDULE,
    build_sandboxes,
    emulated_specs,
    sandbox_config,
    serve_forever,
)

from . import ToyEmulator


def entries(name: str) -> Any:
    def make(url: str) -> dict[str, dict[str, Any]]:
        return {
            "sources": {name: {"type": name, "base_url": url}},
            "destinations": {f"{name}_tags": {"type": name, "base_url": url}},
        }

    return make


def toy_spec(name: str) -> ConnectorSpec:
    def factory(ctx: EmulatorContext) -> ToyEmulator:
        emulator = ToyEmulator(ctx)
        emulator.vendor = name
        return emulator

    return ConnectorSpec(name=name, summary="toy", emulator=factory, sandbox_entries=entries(name))


SPECS = {
    "alpha": toy_spec("alpha"),
    "beta": toy_spec("beta"),
    "csv": ConnectorSpec(name="csv", summary="no api"),
}


def test_only_specs_with_an_emulator_get_a_sandbox() -> None:
    assert list(emulated_specs(SPECS)) == ["alpha", "beta"]
    sandboxes = build_sandboxes(50, 1, speed=5, specs=SPECS)
    assert list(sandboxes) == ["alpha", "beta"]
    ctx = sandboxes["alpha"].emulator.ctx  # type: ignore[attr-defined]
    assert ctx.speed == 5 and ctx.clock.speed == 5
    assert ctx.business is sandboxes["beta"].emulator.ctx.business  # type: ignore[attr-defined]
    assert len(ctx.business.people) == 50


def test_vendor_selection_and_unknown_vendor() -> None:
    business = Business.generate(10, seed=2)
    assert list(build_sandboxes(vendors=["beta"], business=business, specs=SPECS)) == ["beta"]
    with pytest.raises(ConfigError, match="csv"):
        build_sandboxes(vendors=["csv"], business=business, specs=SPECS)


def test_sandbox_config_merges_entries() -> None:
    config = sandbox_config({"alpha": "http://127.0.0.1:1", "beta": "http://127.0.0.1:2"}, specs=SPECS)
    assert config["store"] == {"url": "sqlite:///hub.db"}
    # A source its connector proposes no schedule for gets the default one, so `hub run` pulls it too.
    assert config["sources"] == {
        "alpha": {"type": "alpha", "base_url": "http://127.0.0.1:1", "schedule": DEFAULT_SANDBOX_SCHEDULE},
        "beta": {"type": "beta", "base_url": "http://127.0.0.1:2", "schedule": DEFAULT_SANDBOX_SCHEDULE},
    }
    assert set(config["destinations"]) == {"alpha_tags", "beta_tags"}


def test_the_config_out_of_the_installed_connectors_schedules_every_source(tmp_path: Path) -> None:
    from hub.config import load_config
    from hub.daemon.schedule import source_schedule
    from hub.sandbox.run import dump_config, sandbox_secrets

    vendors = list(emulated_specs())
    if not vendors:
        pytest.skip("no installed connector ships an emulator")
    urls = {v: f"http://127.0.0.1:{9000 + i}" for i, v in enumerate(vendors)}
    out = tmp_path / "sandbox.yaml"
    dump_config(sandbox_config(urls), out, sandbox_secrets(urls))
    loaded = load_config(out)
    assert loaded.model.sources, "the sandboxes propose no source"
    assert {n: source_schedule(loaded, n) is not None for n in loaded.model.sources} == {
        n: True for n in loaded.model.sources}


def test_sandbox_config_rejects_clashing_entry_names() -> None:
    clash = {
        "alpha": SPECS["alpha"],
        "gamma": ConnectorSpec(name="gamma", summary="", sandbox_entries=entries("alpha")),
    }
    with pytest.raises(ConfigError, match="alpha"):
        sandbox_config({"alpha": "http://a", "gamma": "http://g"}, specs=clash)


def test_serve_forever_announces_writes_config_and_stops(tmp_path: Path) -> None:
    announced: list[dict[str, str]] = []
    stop = threading.Event()
    out = tmp_path / "sandbox.yaml"
    result: list[list[dict[str, str]]] = []

    def run() -> None:
        result.append(
            serve_forever(
                contacts=20, seed=1, config_out=out, announce=announced.append, stop=stop, specs=SPECS
            )
        )

    thread = threading.Thread(target=run)
    thread.start()
    try:
        for _ in range(100):
            if len(announced) == 2:
                break
            threading.Event().wait(0.05)
        assert [a["vendor"] for a in announced] == ["alpha", "beta"]
        for line in announced:
            assert httpx.post(f"{line['base_url']}/oauth/token").status_code == 200
        config = YAML(typ="safe").load(out.read_text(encoding="utf-8"))
        assert config["sources"]["alpha"]["base_url"] == announced[0]["base_url"]
    finally:
        stop.set()
        thread.join(10)
    assert result == [announced]
    with pytest.raises(httpx.TransportError):
        httpx.post(f"{announced[0]['base_url']}/oauth/token", timeout=1)


def test_serve_forever_without_emulators_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="emulator"):
        serve_forever(specs={"csv": SPECS["csv"]}, block=False)
