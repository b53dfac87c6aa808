"""The ``hub`` command line.

Heavy modules (SQLAlchemy, rich, connectors) are imported inside the commands, so ``hub --help`` stays fast.
Exit codes: 0 ok, 1 the run failed, 2 usage or config error.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer

if TYPE_CHECKING:
    from hub.config import LoadedConfig
    from hub.registry import BuildContext
    from hub.store import Store

EXIT_FAILED = 1
EXIT_USAGE = 2

app = typer.Typer(
    name="hub",
    help="Audience Hub: pull contacts and activity into one store, segment them, push tags back.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
sandbox_app = typer.Typer(help="Local emulators of the vendor APIs.", no_args_is_help=True)
config_app = typer.Typer(help="Config file tools.", no_args_is_help=True)
secrets_app = typer.Typer(help="Secrets in the OS keyring (names only are ever shown).", no_args_is_help=True)
db_app = typer.Typer(help="Store maintenance.", no_args_is_help=True)
app.add_typer(sandbox_app, name="sandbox")
app.add_typer(config_app, name="config")
app.add_typer(secrets_app, name="secrets")
app.add_typer(db_app, name="db")

ConfigOpt = Annotated[
    Path | None,
    typer.Option(
        "--config",
        "-c",
        help="Config file (default: $HUB_CONFIG or ./config.yaml).",
        show_default=False,
    ),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Machine-readable output.")]

F = TypeVar("F", bound=Callable[..., Any])
logger = logging.getLogger("hub")


def _err(line: str) -> None:
    from hub.redact import redact

    sys.stderr.write(redact(line) + "\n")


def handle_errors(fn: F) -> F:
    """Turn the hub's errors into one clean line per problem and the documented exit codes."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        from hub.errors import ConfigError, ConfigErrors, HubError

        try:
            return fn(*args, **kwargs)
        except ConfigErrors as exc:
            for e in exc.errors:
                _err(str(e))
            raise typer.Exit(EXIT_USAGE) from None
        except ConfigError as exc:
            _err(f"error: {exc}")
            raise typer.Exit(EXIT_USAGE) from None
        except HubError as exc:
            _err(f"error: {exc}")
            raise typer.Exit(EXIT_FAILED) from None
        except KeyboardInterrupt:
            _err("interrupted")
            raise typer.Exit(130) from None
        except (typer.Exit, typer.Abort, SystemExit):
            raise
        except Exception as exc:
            if os.environ.get("HUB_DEBUG"):
                raise
            _err(f"error: unexpected {type(exc).__name__}: {exc} (set HUB_DEBUG=1 for a traceback)")
            raise typer.Exit(EXIT_FAILED) from None

    return wrapper  # type: ignore[return-value]


def _load(config: Path | None) -> LoadedConfig:
    from hub.config import load_config
    from hub.logsetup import setup_logging

    loaded = load_config(config)
    log = loaded.model.logging
    setup_logging(os.environ.get("HUB_LOG_LEVEL", log.level), log.format)
    return loaded


def _context(loaded: LoadedConfig) -> BuildContext:
    from hub.registry import BuildContext

    return BuildContext(resolve_secret=loaded.resolve_secret, base_dir=loaded.base_dir)


@contextmanager
def _store(loaded: LoadedConfig) -> Iterator[Store]:
    from hub.store import open_store

    store = open_store(loaded.model.store.url, base_dir=loaded.base_dir)
    try:
        yield store
    finally:
        store.close()


def _print_json(data: Any) -> None:
    from hub.redact import redact

    sys.stdout.write(redact(json.dumps(data, indent=2, default=str, sort_keys=True)) + "\n")


# --------------------------------------------------------------------------- init / check / config


@app.command()
@handle_errors
def init(
    path: Annotated[Path, typer.Argument(help="Where to write the config.")] = Path("config.yaml"),
    force: Annotated[bool, typer.Option("--force", help="Overwrite an existing file.")] = False,
) -> None:
    """Write a commented starter config."""
    from importlib.resources import files

    if path.exists() and not force:
        _err(f"error: {path} exists (use --force to overwrite)")
        raise typer.Exit(EXIT_USAGE)
    text = files("hub.config").joinpath("example.yaml").read_text(encoding="utf-8")
    path.write_text(text, encoding="utf-8")
    sys.stdout.write(f"wrote {path}: edit it, then run `hub check --config {path}`\n")


@app.command()
@handle_errors
def check(
    config: ConfigOpt = None,
    online: Annotated[bool, typer.Option("--online", help="Also test each connection.")] = False,
) -> None:
    """Validate the config (and secrets); with --online, test every connection."""
    from hub.errors import ConfigError, ConfigErrors, HubError
    from hub.sync import build_source

    loaded = _load(config)
    ctx = _context(loaded)
    errors: list[ConfigError] = []
    failures = 0
    for name, entry in loaded.model.sources.items():
        if not entry.enabled:
            continue
        try:
            source = build_source(loaded, name, ctx)
            if online:
                source.check()
                sys.stdout.write(f"source {name}: ok\n")
            source.close()
        except ConfigError as exc:
            errors.append(ConfigError(exc.message, location=exc.location or str(loaded.path), field=f"sources.{name}"))
        except HubError as exc:
            failures += 1
            _err(f"source {name}: {exc}")
    if errors:
        raise ConfigErrors(errors)
    model = loaded.model
    sys.stdout.write(
        f"{loaded.path}: ok ({len(model.sources)} sources, {len(model.destinations)} destinations)\n"
    )
    if failures:
        raise typer.Exit(EXIT_FAILED)


@config_app.command("schema")
@handle_errors
def config_schema() -> None:
    """Print the JSON Schema of config files (for editor validation and completion)."""
    from hub.config.schema import config_json_schema

    sys.stdout.write(json.dumps(config_json_schema(), indent=2) + "\n")


# --------------------------------------------------------------------------- secrets


@secrets_app.command("set")
@handle_errors
def secrets_set(
    name: Annotated[str, typer.Argument(help="Secret name; reference it as keyring:audience-hub/NAME.")],
) -> None:
    """Store a secret in the OS keyring (prompted, not echoed)."""
    from hub.secrets import set_secret

    value = typer.prompt(f"value for {name}", hide_input=True, confirmation_prompt=True)
    set_secret(name, value)
    sys.stdout.write(f"stored {name}; reference it as keyring:audience-hub/{name}\n")


@secrets_app.command("list")
@handle_errors
def secrets_list(config: ConfigOpt = None, as_json: JsonOpt = False) -> None:
    """List secret names (stored in the keyring, or referenced by the config) and whether each resolves."""
    from hub.secrets import list_secret_names

    cfg_path = config or Path(os.environ.get("HUB_CONFIG", "config.yaml"))
    loaded = _load(cfg_path) if cfg_path.exists() else None
    rows = list_secret_names(loaded)
    if as_json:
        _print_json(rows)
        return
    for row in rows:
        sys.stdout.write(f"{row['name']}\t{row.get('status', '')}\n")


@secrets_app.command("delete")
@handle_errors
def secrets_delete(name: str) -> None:
    """Delete a secret from the OS keyring."""
    from hub.secrets import delete_secret

    delete_secret(name)
    sys.stdout.write(f"deleted {name}\n")


# --------------------------------------------------------------------------- store


@db_app.command("upgrade")
@handle_errors
def db_upgrade(config: ConfigOpt = None) -> None:
    """Apply pending store migrations."""
    from hub.store import open_store

    loaded = _load(config)
    store = open_store(loaded.model.store.url, base_dir=loaded.base_dir, upgrade=True)
    try:
        sys.stdout.write(f"store at revision {store.current_revision()}\n")
    finally:
        store.close()


# --------------------------------------------------------------------------- sync / status


@app.command()
@handle_errors
def sync(
    source: Annotated[str | None, typer.Argument(help="Source name (default: every enabled source).")] = None,
    config: ConfigOpt = None,
    full: Annotated[bool, typer.Option("--full", help="Ignore cursors and re-read everything.")] = False,
    stream: Annotated[list[str] | None, typer.Option("--stream", help="Only these streams.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Pull sources into the store, with progress."""
    from hub.cli_progress import sync_with_progress

    loaded = _load(config)
    names = [source] if source else [n for n, e in loaded.model.sources.items() if e.enabled]
    with _store(loaded) as store:
        results = sync_with_progress(loaded, store, _context(loaded), names, full=full, streams=stream,
                                     quiet=as_json)
    if as_json:
        _print_json([r.as_dict() for r in results])
    if any(r.status == "failed" for r in results):
        raise typer.Exit(EXIT_FAILED)


@app.command()
@handle_errors
def status(config: ConfigOpt = None, as_json: JsonOpt = False) -> None:
    """What is in the store and how the last runs went."""
    from hub.cli_progress import render_summary

    loaded = _load(config)
    with _store(loaded) as store:
        summary = store.summary()
    if as_json:
        _print_json(summary.as_dict())
        return
    render_summary(summary)


@app.command()
@handle_errors
def explain(
    who: Annotated[str, typer.Argument(help="An email address or person id.")],
    config: ConfigOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Show how a person was assembled: identities per source, merges and why, activity counts."""
    from hub.cli_progress import render_explanation

    loaded = _load(config)
    with _store(loaded) as store:
        found = store.explain_person(who)
    if found is None:
        _err(f"no person matches {who!r}")
        raise typer.Exit(EXIT_FAILED)
    if as_json:
        _print_json(found.as_dict())
        return
    render_explanation(found)


# --------------------------------------------------------------------------- sandbox / demo


@sandbox_app.command("serve")
@handle_errors
def sandbox_serve(
    contacts: Annotated[int, typer.Option(help="People in the seeded business.")] = 2000,
    seed: Annotated[int, typer.Option(help="Seed of the synthetic business.")] = 42,
    speed: Annotated[float, typer.Option(help="Compress the vendors' rate-limit windows by this factor.")] = 1.0,
    host: Annotated[str, typer.Option(help="Interface to bind (keep it on loopback).")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="First port (0: any free ports).")] = 0,
    vendor: Annotated[list[str] | None, typer.Option(help="Only these vendors.")] = None,
    config_out: Annotated[
        Path | None, typer.Option("--config-out", help="Write a hub config for the sandboxes.")
    ] = None,
) -> None:
    """Serve the vendor emulators over HTTP on localhost, one port per vendor."""
    from hub.sandbox.run import serve_forever

    def announce(line: dict[str, Any]) -> None:
        sys.stdout.write(json.dumps(line) + "\n")
        sys.stdout.flush()

    serve_forever(
        contacts=contacts, seed=seed, speed=speed, host=host, port=port, vendors=vendor,
        config_out=config_out, announce=announce,
    )


@app.command()
@handle_errors
def demo(
    directory: Annotated[Path, typer.Option("--dir", help="Where the demo config and database go.")] = Path(
        "hub-demo"
    ),
    contacts: Annotated[int, typer.Option(help="People in the seeded business.")] = 2000,
    seed: Annotated[int, typer.Option(help="Seed of the synthetic business.")] = 42,
) -> None:
    """Load a seeded synthetic business into a fresh store and show what the hub made of it."""
    from hub.cli_progress import render_demo_next_steps, render_summary, sync_with_progress
    from hub.demo import prepare_demo

    workspace = prepare_demo(directory, contacts=contacts, seed=seed)
    loaded = _load(workspace.config)
    names = list(loaded.model.sources)
    with _store(loaded) as store:
        results = sync_with_progress(loaded, store, _context(loaded), names)
        summary = store.summary()
    render_summary(summary)
    render_demo_next_steps(workspace.config, summary)
    if any(r.status == "failed" for r in results):
        raise typer.Exit(EXIT_FAILED)


def main() -> None:
    """Console entry point."""
    app()


if __name__ == "__main__":
    main()
