"""The ``hub`` command line.

Heavy modules (SQLAlchemy, rich, connectors) are imported inside the commands, so ``hub --help`` stays fast.
Exit codes: 0 ok, 1 the run failed, 2 usage or config error.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from hub.cli_export import export_app
from hub.cli_options import EXIT_FAILED, EXIT_USAGE, ConfigOpt, JsonOpt, _err, handle_errors

if TYPE_CHECKING:
    from collections.abc import Sequence

    from hub.config import LoadedConfig
    from hub.registry import BuildContext
    from hub.store import Store
    from hub.sync import SyncResult


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
model_app = typer.Typer(help="The scoring models, fitted on this store's data.", no_args_is_help=True)
suggest_app = typer.Typer(help="Suggestions for a human to review.", no_args_is_help=True)
app.add_typer(sandbox_app, name="sandbox")
app.add_typer(config_app, name="config")
app.add_typer(secrets_app, name="secrets")
app.add_typer(db_app, name="db")
app.add_typer(model_app, name="model")
app.add_typer(suggest_app, name="suggest")
app.add_typer(export_app, name="export")


logger = logging.getLogger("hub")




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
    from hub.locks import close_dead_runs
    from hub.store import open_store

    store = open_store(loaded.model.store.url, base_dir=loaded.base_dir)
    try:
        close_dead_runs(store)  # a run a kill left "running" is shown as interrupted from now on
        yield store
    finally:
        store.close()


def _print_json(data: Any) -> None:
    from hub.redact import redact_data

    # Redacted before serialising, so masking can never break the JSON (see redact_data).
    sys.stdout.write(json.dumps(redact_data(data), indent=2, sort_keys=True) + "\n")


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
    from segment_rules.configured import copy_example_rules

    text = files("hub.config").joinpath("example.yaml").read_text(encoding="utf-8")
    path.write_text(text, encoding="utf-8")
    rules = copy_example_rules(path.parent / "segment_rules")
    sys.stdout.write(f"wrote {path}: edit it, then run `hub check --config {path}`\n")
    if rules:
        sys.stdout.write(f"wrote {len(rules)} example segment rule files to {path.parent / 'segment_rules'}\n")


@app.command()
@handle_errors
def check(
    config: ConfigOpt = None,
    online: Annotated[bool, typer.Option("--online", help="Also test each connection.")] = False,
    strict: Annotated[
        bool, typer.Option("--strict", help="Also fail on the quality warnings of the latest segment evaluation.")
    ] = False,
) -> None:
    """Validate the config, the segment rules and every secret of the enabled entries.

    With --online, also test each connection; with --strict, also fail on segment quality warnings.
    """
    from hub.errors import ConfigError, ConfigErrors, HubError
    from hub.store.engine import resolve_url

    loaded = _load(config)
    ctx = _context(loaded)
    errors = loaded.check_secrets()
    try:
        resolve_url(loaded.model.store.url, loaded.base_dir)  # parses the URL; opens nothing
    except ConfigError as exc:
        errors.extend(loaded.place(exc, field_path="store.url"))
    errors.extend(_rule_errors(loaded))
    if online and not errors:
        _require_sandboxes(loaded, _enabled_entries(loaded))  # a stopped demo: one line, not 15 s of retries
    failures = 0
    for kind, name in _enabled_entries(loaded):
        try:
            found = _check_entry(loaded, ctx, kind, name, online)
        except ConfigError as exc:
            found = loaded.place(exc, field_path=f"{kind}.{name}")
        except HubError as exc:
            failures += 1
            _err(f"{kind.rstrip('s')} {name}: {exc}")
            continue
        seen = {str(e) for e in errors}
        errors.extend(e for e in found if str(e) not in seen)  # a secret already reported by check_secrets
    if errors:
        raise ConfigErrors(errors)
    model = loaded.model
    sys.stdout.write(
        f"{loaded.path}: ok ({len(model.sources)} sources, {len(model.destinations)} destinations)\n"
    )
    if strict:
        failures += _strict_findings(loaded)
    if failures:
        raise typer.Exit(EXIT_FAILED)


def _rule_errors(loaded: LoadedConfig) -> list[Any]:
    """The rule files' errors, then the segments the config names that no rule file defines."""
    from hub.config.loader import display_path
    from hub.errors import ConfigError
    from segment_rules.configured import load_configured_rules, rules_folder
    from segment_rules.ruleset import RuleErrors

    folder = rules_folder(loaded)
    segments = loaded.model.segments
    named = any(entry.segments for entry in loaded.model.destinations.values()) or any(
        hook.segments for hook in loaded.model.push.webhooks.values())
    if not folder.exists() and "rules_dir" not in segments.model_fields_set and not named:
        return []  # no rules yet and none asked for: nothing to check (the store still syncs)
    if not folder.is_dir():
        problem = "is not a folder" if folder.exists() else "does not exist"
        # Only once: every segment a destination names would be unknown too, for this one reason.
        return [ConfigError(f"segment rules folder {display_path(folder)} {problem}",
                            location=loaded.locate("segments.rules_dir"), field="segments.rules_dir")]
    try:
        rules = load_configured_rules(loaded)
    except RuleErrors as exc:
        return [*exc.errors, *loaded.unknown_segments(exc.defined)]
    return loaded.unknown_segments(rules.names)


def _strict_findings(loaded: LoadedConfig) -> int:
    """Print the latest evaluation's quality warnings; their number."""
    from segment_rules.report import latest_warnings

    with _store(loaded) as store:
        warnings = latest_warnings(store)
    for line in warnings:
        _err(f"segment quality: {line}")
    return len(warnings)


def _enabled_entries(loaded: LoadedConfig) -> list[tuple[str, str]]:
    model = loaded.model
    return [("sources", n) for n, e in model.sources.items() if e.enabled] + [
        ("destinations", n) for n, e in model.destinations.items() if e.enabled
    ]


def _check_entry(loaded: LoadedConfig, ctx: BuildContext, kind: str, name: str, online: bool) -> list[Any]:
    """Run a source's or destination's offline checks (the local files it names), build it (which resolves
    its secrets) and, with ``online``, test its connection.

    Returns:
        The config errors, each placed in the config. An entry whose offline checks fail is not tested online
        (the test would only fail on the same problem). Other errors (a vendor that is down) are raised.
    """
    from hub.errors import ConfigError
    from hub.registry import get_connector
    from hub.sync import build_source

    entry = (loaded.model.sources if kind == "sources" else loaded.model.destinations)[name]
    spec = get_connector(entry.type)
    errors: list[ConfigError] = []
    if spec.check_local is not None:
        try:
            spec.check_local(entry, name, ctx)
        except ConfigError as exc:
            errors = loaded.place(exc, field_path=f"{kind}.{name}")
    online = online and not errors
    try:
        if kind == "sources":
            source = build_source(loaded, name, ctx)
            try:
                if online:
                    source.check()
                    sys.stdout.write(f"source {name}: ok\n")
            finally:
                source.close()
        elif spec.build_sink is not None:  # else validated and its secrets resolved: nothing to build yet
            sink = spec.build_sink(entry, name, ctx)
            try:
                probe = getattr(sink, "check", None)
                if online and callable(probe):
                    probe()
                    sys.stdout.write(f"destination {name}: ok\n")
            finally:
                sink.close()
    except ConfigError as exc:
        errors.extend(loaded.place(exc, field_path=f"{kind}.{name}"))
    return errors


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
    from hub.secrets import require_keyring, set_secret

    # Before the prompt: without a keyring backend, asking for the value first would only waste it.
    require_keyring()
    value = typer.prompt(f"value for {name}", hide_input=True, confirmation_prompt=True)
    set_secret(name, value)
    sys.stdout.write(f"stored {name}; reference it as keyring:audience-hub/{name}\n")


@secrets_app.command("list")
@handle_errors
def secrets_list(config: ConfigOpt = None, as_json: JsonOpt = False) -> None:
    """List secret names (stored in the keyring, or referenced by the config) and whether each resolves."""
    from hub.config.loader import ENV_CONFIG, default_config_path
    from hub.secrets import list_secret_names

    # An explicit --config or $HUB_CONFIG must exist; the implicit ./config.yaml is optional here, so that
    # `hub secrets list` also works before there is a config.
    explicit = config is not None or bool(os.environ.get(ENV_CONFIG))
    cfg_path = config if config is not None else default_config_path()
    loaded = _load(cfg_path) if explicit or cfg_path.exists() else None
    rows = list_secret_names(loaded)
    if as_json:
        _print_json(rows)
        return
    from hub.redact import redact

    for row in rows:
        used = f"\t(used by {row['used_by']})" if row.get("used_by") else ""
        sys.stdout.write(redact(f"{row['name']}\t{row.get('status', '')}{used}") + "\n")


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
    from hub.errors import ConfigError
    from hub.stop import stop_on_signals

    loaded = _load(config)
    if source is not None and source not in loaded.model.sources:
        known = ", ".join(sorted(loaded.model.sources)) or "none"
        raise ConfigError(f"no source named {source!r} in the config (sources: {known})")
    names = [source] if source else [n for n, e in loaded.model.sources.items() if e.enabled]
    with _store(loaded) as store, stop_on_signals(restore=False) as stop:
        results = sync_with_progress(loaded, store, _context(loaded), names, full=full, streams=stream,
                                     quiet=as_json, stop=stop)
    if as_json:
        _print_json([r.as_dict() for r in results])
    _exit_for(results)


def _exit_for(results: Sequence[SyncResult]) -> None:
    """Exit 2 when a source had a config error, 1 when one failed, else return (exit 0)."""
    if any(r.status == "config_error" for r in results):
        raise typer.Exit(EXIT_USAGE)
    if any(r.status == "failed" for r in results):
        raise typer.Exit(EXIT_FAILED)


@app.command()
@handle_errors
def status(
    name: Annotated[str | None, typer.Argument(help="Only this source or destination, in detail.")] = None,
    config: ConfigOpt = None,
    verbose: Annotated[
        bool, typer.Option("--verbose", "-v", help="Also the store's contents and every connector in detail.")
    ] = False,
    as_json: JsonOpt = False,
) -> None:
    """Per source and destination: state, last run, next run, records; the store and the segments.

    A compact view by default; `hub status NAME` or --verbose adds schedules, failures, errors and skip reasons.
    """
    from hub.cli_progress import (
        render_connector_detail,
        render_connectors,
        render_evaluated,
        render_segment_sizes,
        render_summary,
    )
    from hub.daemon import health
    from hub.daemon.status import connector_statuses, find
    from hub.errors import ConfigError
    from segment_rules.report import last_as_of, latest_sizes

    loaded = _load(config)
    with _store(loaded) as store:
        summary = store.summary()
        connectors = health.read_all(store)
        statuses = connector_statuses(loaded, store, summary)
        sizes = latest_sizes(store)
        as_of = last_as_of(store)
    timezone = loaded.model.timezone
    if name is not None:
        row = find(statuses, name)
        if row is None:
            known = ", ".join(s.name for s in statuses) or "none"
            raise ConfigError(f"no source or destination named {name!r} in the config (connectors: {known})")
        if as_json:
            _print_json(row.as_dict())
        else:
            render_connector_detail(row, timezone)
        return
    if as_json:
        _print_json({**summary.as_dict(), "connectors": {k: v.as_dict() for k, v in connectors.items()},
                     "sources": [s.as_dict() for s in statuses if s.kind == "source"],
                     "destinations": [s.as_dict() for s in statuses if s.kind == "destination"],
                     "segments_as_of": as_of.isoformat() if as_of else None, "segments": sizes})
        return
    if verbose:
        render_summary(summary)
    else:
        sys.stdout.write(f"People: {summary.people:,} (merged: {summary.merged:,})\n")
    render_connectors(statuses, timezone)
    if verbose:
        for row in statuses:
            sys.stdout.write("\n")
            render_connector_detail(row, timezone)
        sys.stdout.write("\n")
    render_evaluated(as_of)
    render_segment_sizes(sizes)
    if not verbose:
        sys.stdout.write("details: `hub status NAME` (one connector) or `hub status --verbose`\n")


@app.command()
@handle_errors
def explain(
    who: Annotated[str, typer.Argument(help="An email address or person id.")],
    config: ConfigOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Show how a person was assembled (profiles per source, merges, activities) and why they are in each segment.

    Text by default: every segment's rule as a tree, each condition with the person's value; --json for scripts.
    """
    from hub.cli_progress import render_explanation

    loaded = _load(config)
    with _store(loaded) as store:
        found = store.explain_person(who)
        if found is None:
            _err(f"no person matches {who!r}")
            raise typer.Exit(EXIT_FAILED)
        as_of, segments = _explain_segments(loaded, store, found.person_id)
    if as_json:
        _print_json({**found.as_dict(), "segments_as_of": as_of.isoformat() if as_of else None,
                     "segments": [s.as_dict() for s in segments]})
        return
    render_explanation(found, segments, as_of=as_of)


def _explain_segments(loaded: LoadedConfig, store: Store, person_id: int) -> tuple[Any, list[Any]]:
    """When the segments were last evaluated, and each one's rule for the person at that time."""
    from segment_rules.configured import load_configured_rules, rules_folder
    from segment_rules.explain import explain_segments
    from segment_rules.report import last_as_of

    as_of = last_as_of(store)
    if as_of is None or not rules_folder(loaded).exists():
        return as_of, []  # never evaluated: there is nothing to explain yet
    return as_of, explain_segments(store, load_configured_rules(loaded), person_id, as_of)


# --------------------------------------------------------------------------- segments and models


AsOfOpt = Annotated[
    str | None, typer.Option("--as-of", help="Evaluate at this ISO date or time (default: now).", show_default=False)
]


def _as_of(value: str | None) -> Any:
    from hub.errors import ConfigError
    from segment_rules.language import parse_when

    if value is None:
        from hub.store.models import utcnow

        return utcnow()
    try:
        return parse_when(value)
    except ValueError as exc:
        raise ConfigError(str(exc), field="--as-of") from None


@app.command()
@handle_errors
def segment(
    config: ConfigOpt = None,
    as_json: JsonOpt = False,
    as_of: AsOfOpt = None,
    changed: Annotated[
        bool, typer.Option("--changed", help="Only re-evaluate the people whose data changed since the last run.")
    ] = False,
) -> None:
    """Compute features, scores and segments; show sizes, changes since the last run and quality warnings."""
    from hub.cli_progress import render_segments
    from segment_rules.configured import evaluate_configured

    loaded = _load(config)
    when = _as_of(as_of)
    with _store(loaded) as store:
        result = evaluate_configured(store, loaded, as_of=when, changed_only=changed)
    if result is None:
        if as_json:
            _print_json({"incremental": True, "people": 0, "segments": []})
        else:
            sys.stdout.write("nobody's data changed since the last evaluation: nothing to re-evaluate\n")
        return
    if as_json:
        _print_json(result.as_dict())
        return
    render_segments(result, now=as_of is None)


@app.command()
@handle_errors
def run(
    config: ConfigOpt = None,
    http: Annotated[
        str | None, typer.Option("--http", help="Serve /healthz and /metrics on HOST:PORT (e.g. 127.0.0.1:9108).")
    ] = None,
    log_format: Annotated[
        str | None, typer.Option("--log-format", help="human or json (default: the config's logging.format).")
    ] = None,
) -> None:
    """Run the daemon: scheduled pulls, then segments and pushes; stops cleanly on SIGTERM."""
    from hub.config.loader import default_config_path
    from hub.daemon.service import Daemon, parse_http
    from hub.errors import ConfigError
    from hub.logsetup import setup_logging

    loaded = _load(config)
    if log_format is not None:
        setup_logging(os.environ.get("HUB_LOG_LEVEL", loaded.model.logging.level), log_format)
    try:
        address = parse_http(http) if http else None
    except ValueError as exc:
        raise ConfigError(str(exc), field="--http") from None
    path = config or default_config_path()
    from hub.demo import sandboxes_down

    problem = sandboxes_down(loaded, [("sources", n) for n in loaded.model.sources])
    if problem is not None:  # a warning only: the daemon retries on schedule, and they may be started later
        _err(f"warning: {problem}")
    with _store(loaded) as store:
        Daemon(path, loaded, store, _context, http=address).run()


@app.command()
@handle_errors
def resume(
    name: Annotated[str, typer.Argument(help="The paused source (or destination) to run again.")],
    config: ConfigOpt = None,
) -> None:
    """Lift the pause of a source or destination the daemon paused after repeated failures."""
    from hub.daemon import health
    from hub.errors import ConfigError

    loaded = _load(config)
    model = loaded.model
    kind = "source" if name in model.sources else "destination" if name in model.destinations else None
    if kind is None:
        raise ConfigError(f"no source or destination named {name!r} in the config")
    with _store(loaded) as store:
        lifted = health.resume(store, health.key(kind, name))
    sys.stdout.write(f"{kind} {name}: {'resumed' if lifted else 'was not paused'}\n")


@app.command()
@handle_errors
def push(
    destination: Annotated[str | None, typer.Argument(help="Destination name (default: every enabled one).")] = None,
    config: ConfigOpt = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Show what would change; send nothing.")] = False,
    force: Annotated[bool, typer.Option("--force", help="Push removals the safety guards hold back.")] = False,
    reconcile: Annotated[
        bool, typer.Option("--reconcile", help="Read the destination's hub tags back first (detects drift).")
    ] = False,
    as_json: JsonOpt = False,
) -> None:
    """Write segment tags to the destinations: only additions and removals, with guards and a ledger."""
    from hub.cli_progress import render_push
    from hub.errors import ConfigError
    from hub.push.service import PushOptions, deliver_webhooks, push_configured
    from segment_rules.configured import load_configured_rules

    loaded = _load(config)
    model = loaded.model
    if destination is not None and destination not in model.destinations:
        known = ", ".join(sorted(model.destinations)) or "none"
        raise ConfigError(f"no destination named {destination!r} in the config (destinations: {known})")
    names = [destination] if destination else [n for n, e in model.destinations.items() if e.enabled]
    _require_sandboxes(loaded, [("destinations", n) for n in names])
    rules = load_configured_rules(loaded)
    options = PushOptions(dry_run=dry_run, force=force, reconcile=reconcile)
    ctx = _context(loaded)
    with _store(loaded) as store:
        outcomes = [push_configured(store, loaded, name, ctx, rules, options) for name in names]
        deliveries = [] if dry_run else deliver_webhooks(store, model.push, loaded.resolve_secret)
    if as_json:
        _print_json({"destinations": [{"plan": plan.as_dict(), "result": result.as_dict(), "dry_run": dry_run}
                                      for plan, result in outcomes],
                     "webhooks": [vars(d) for d in deliveries]})
    else:
        render_push(outcomes, dry_run=dry_run)
        for d in deliveries:
            sys.stdout.write(f"webhook {d.webhook}: {d.delivered} delivered, {d.retry} to retry, "
                             f"{d.given_up} given up\n")
    if any(result.blocked or result.failed for _, result in outcomes) and not dry_run:
        raise typer.Exit(EXIT_FAILED)


def _require_sandboxes(loaded: LoadedConfig, entries: list[tuple[str, str]]) -> None:
    """Fail at once, in one line, when a demo or sandbox config's sandboxes are gone (not after 15 s of retries)."""
    from hub.demo import sandboxes_down
    from hub.errors import HubError

    problem = sandboxes_down(loaded, entries)
    if problem is not None:
        raise HubError(problem)


def _penalizer(value: str | None, configured: float | str) -> float | str:
    """``--penalizer``: ``auto`` or a non-negative number; the config's value without it."""
    if value is None:
        return configured
    if value == "auto":
        return value
    try:
        number = float(value)
    except ValueError:
        number = -1.0
    if not 0 <= number <= 10:
        from hub.errors import ConfigError

        raise ConfigError(f"--penalizer must be auto or a number from 0 to 10, not {value!r}")
    return number


@model_app.command("clv")
@handle_errors
def model_clv(
    config: ConfigOpt = None,
    as_json: JsonOpt = False,
    as_of: AsOfOpt = None,
    holdout_days: Annotated[int, typer.Option(help="Days held out to check the forecast against.")] = 180,
    penalizer: Annotated[
        str | None,
        typer.Option(help="auto (maximum likelihood unless held-out data favour a penalty) or a number; "
                          "default: segments.scoring.penalizer"),
    ] = None,
) -> None:
    """Fit BG/NBD x Gamma-Gamma on this store and check the forecast on a holdout period, against the simple
    formula and predicting zero."""
    from hub.errors import HubError
    from segment_rules.btyd import ConvergenceError
    from segment_rules.configured import scoring_settings
    from segment_rules.scoring import clv_backtest

    loaded = _load(config)
    when = _as_of(as_of)
    chosen = _penalizer(penalizer, scoring_settings(loaded).penalizer)
    with _store(loaded) as store, store.engine.connect() as conn:
        try:
            report = clv_backtest(conn, when, holdout_days, chosen)
        except (ValueError, ConvergenceError) as exc:
            raise HubError(f"cannot fit the CLV models on this store: {exc}") from None
    if as_json:
        _print_json(report)
        return
    from hub.cli_progress import render_clv

    render_clv(report)


@model_app.command("churn")
@handle_errors
def model_churn(
    config: ConfigOpt = None,
    as_json: JsonOpt = False,
    as_of: AsOfOpt = None,
    horizon: Annotated[
        list[int] | None,
        typer.Option(min=7, max=730, help="Churn horizon in days (repeat for several, e.g. --horizon 30 "
                                          "--horizon 90); default: segments.scoring.churn_horizon_days"),
    ] = None,
) -> None:
    """Train the churn model on past cutoffs and compare it out of time with its baselines."""
    from segment_rules.churn import ChurnSettings, fit_churn
    from segment_rules.configured import scoring_settings

    loaded = _load(config)
    when = _as_of(as_of)
    settings = scoring_settings(loaded)
    horizons = horizon or [settings.churn_horizon_days]
    with _store(loaded) as store, store.engine.connect() as conn:
        reports = [
            fit_churn(conn, when, ChurnSettings(horizon_days=h, penalizer=settings.penalizer)).as_dict()
            for h in horizons
        ]
    if as_json:
        _print_json(reports[0] if len(reports) == 1 else reports)
        return
    from hub.cli_progress import render_churn, render_churn_horizons

    if len(reports) > 1:
        render_churn_horizons(reports)
        return
    render_churn(reports[0])


@suggest_app.command("segments")
@handle_errors
def suggest_segments(
    config: ConfigOpt = None,
    out: Annotated[Path | None, typer.Option("--out", help="Folder for the candidate rule files.")] = None,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace earlier suggestions.")] = False,
    as_of: AsOfOpt = None,
) -> None:
    """Cluster the customers and write candidate rule files for a human to review (nothing is pushed)."""
    from hub.errors import ConfigError, HubError
    from segment_rules.report import suggest

    loaded = _load(config)
    folder = out or loaded.base_dir / "segment_suggestions"
    with _store(loaded) as store:
        try:
            written, profiles = suggest(store, _as_of(as_of), folder, overwrite=overwrite)
        except FileExistsError as exc:
            raise ConfigError(f"{exc} (pass --overwrite to replace earlier suggestions)") from None
        except ValueError as exc:
            raise HubError(f"no cluster suggestion for this store: {exc}") from None
    for line in profiles:
        sys.stdout.write(line + "\n")
    sys.stdout.write(
        f"wrote {len(written)} candidate rule files to {folder}: review them, then move the ones you adopt into "
        "the rules folder\n"
    )


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
    csv_only: Annotated[
        bool, typer.Option("--csv", help="Load the business's CSV exports instead of serving vendor sandboxes.")
    ] = False,
    serve: Annotated[
        bool, typer.Option("--serve", help="Keep the sandboxes running after the demo, until Ctrl-C.")
    ] = False,
) -> None:
    """Serve sandboxed HubSpot, Shopify and Mailchimp with a seeded business, then pull, segment and push.

    The sandboxes stop when the demo ends; with --serve they keep serving until Ctrl-C, so `hub push`, `hub sync`
    and `hub run` work on the demo's config meanwhile.
    """
    from hub.demo import demo_vendors
    from hub.errors import ConfigError

    vendors = [] if csv_only else demo_vendors()
    if vendors:
        _sandbox_demo(directory, contacts, seed, vendors, serve=serve)
    elif serve:
        raise ConfigError("--serve keeps the vendor sandboxes running; the CSV demo has none"
                          + ("" if csv_only else " (no connector with an emulator is installed)"))
    else:
        _csv_demo(directory, contacts, seed)


def _sandbox_demo(directory: Path, contacts: int, seed: int, vendors: list[str], *, serve: bool = False) -> None:
    from hub.cli_progress import (
        render_demo_as_of,
        render_demo_next_steps,
        render_demo_pulled,
        render_demo_pushed,
        render_segments,
        sync_with_progress,
    )
    from hub.demo import people_by_source_count, prepare_sandbox_demo
    from hub.errors import HubError
    from hub.push.service import PushOptions, push_configured
    from hub.sandbox.run import wait_for_stop
    from segment_rules.configured import evaluate_configured, load_configured_rules

    workspace = prepare_sandbox_demo(directory, contacts=contacts, seed=seed, vendors=vendors)
    failed: list[str] = []
    pushes = []
    try:
        loaded = _load(workspace.config)
        ctx = _context(loaded)
        with _store(loaded) as store:
            # Printed in the order things happen: what was pulled, the segments computed from it, the push.
            results = sync_with_progress(loaded, store, ctx, list(loaded.model.sources))
            render_demo_pulled(store.summary(), people_by_source_count(store))
            rules = load_configured_rules(loaded)
            evaluation = evaluate_configured(store, loaded, as_of=workspace.as_of, rules=rules)
            assert evaluation is not None  # a full evaluation always runs
            render_segments(evaluation)
            render_demo_as_of(workspace.as_of, workspace.config)
            for name in loaded.model.destinations:
                try:
                    pushes.append(push_configured(store, loaded, name, ctx, rules, PushOptions()))
                except HubError as exc:  # one destination failing must not hide what the others did
                    failed.append(f"{name}: {exc}")
            summary = store.summary()
        render_demo_pushed(pushes, workspace.stats())
        for line in failed:
            sys.stderr.write(f"push failed: {line}\n")
        render_demo_next_steps(workspace.config, summary, as_of=workspace.as_of,
                               serving=workspace.servers.base_urls if serve else None)
        if serve:
            from hub.stop import stop_on_signals

            sys.stdout.flush()
            with stop_on_signals(restore=False) as stop:  # Ctrl-C or SIGTERM stops the sandboxes cleanly
                wait_for_stop(stop)
    finally:
        workspace.close()
    _exit_for(results)
    if failed:
        raise typer.Exit(EXIT_FAILED)


def _csv_demo(directory: Path, contacts: int, seed: int) -> None:
    from hub.cli_progress import (
        render_demo_as_of,
        render_demo_next_steps,
        render_demo_pulled,
        render_segments,
        sync_with_progress,
    )
    from hub.demo import prepare_demo
    from segment_rules.configured import evaluate_configured

    workspace = prepare_demo(directory, contacts=contacts, seed=seed)
    loaded = _load(workspace.config)
    names = list(loaded.model.sources)
    with _store(loaded) as store:
        results = sync_with_progress(loaded, store, _context(loaded), names)
        summary = store.summary()
        render_demo_pulled(summary)
        evaluation = evaluate_configured(store, loaded, as_of=workspace.as_of)
        assert evaluation is not None  # a full evaluation always runs
    render_segments(evaluation)
    render_demo_as_of(workspace.as_of, workspace.config)
    render_demo_next_steps(workspace.config, summary, as_of=workspace.as_of, sandboxed=False)
    _exit_for(results)


def main() -> None:
    """Console entry point."""
    app()


if __name__ == "__main__":
    main()
