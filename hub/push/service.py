"""One push to one destination, end to end: reconcile when needed, plan, guard, execute, record the run.

``hub push``, ``hub push --dry-run`` and the daemon all call :func:`push_destination`; a dry run computes the
very same plan (reconciliation included, inside a transaction that is rolled back) and sends nothing.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

import sqlalchemy as sa

from hub.config.models import PushConfig, parse_duration
from hub.contracts import Sink
from hub.push.plan import Guards, Plan, Targeting, build_plan, store_guards
from hub.push.run import PushResult, RetrySettings, execute, reconcile, reconcile_in
from hub.store import Store
from hub.store import models as m

if TYPE_CHECKING:
    import httpx
    from pydantic import SecretStr

    from hub.config.loader import LoadedConfig
    from hub.push.webhooks import DeliveryResult
    from hub.registry import BuildContext


@dataclass(frozen=True)
class PushOptions:
    """How this push runs."""

    dry_run: bool = False
    force: bool = False
    reconcile: bool = False  # read the remote tags back even if the ledger is not new


def retry_settings(config: PushConfig) -> RetrySettings:
    """The configured backoff."""
    return RetrySettings(parse_duration(config.retry.base), parse_duration(config.retry.max), config.retry.max_attempts)


def push_destination(
    store: Store,
    targeting: Targeting,
    sink: Sink,
    config: PushConfig,
    sources: Sequence[str],
    options: PushOptions,
) -> tuple[Plan, PushResult]:
    """Push one destination (or plan it, with ``dry_run``).

    Args:
        store: the open store.
        targeting: what the destination carries.
        sink: the destination's sink.
        config: the ``push`` section.
        sources: the enabled sources (for the guards).
        options: dry run, force, reconcile.

    Returns:
        The plan and what happened (for a dry run: what reconciliation found; nothing is sent).
    """
    started = time.perf_counter()
    result = PushResult(targeting.destination)
    # Never reconciled means a first push here, or a lost database: read what the destination already holds.
    must_reconcile = options.reconcile or _reconcile_due(store, targeting.destination, config)
    restore = config.drift == "restore"
    if options.dry_run:
        plan = _dry_plan(store, targeting, sink, config, sources, options, must_reconcile, restore, result)
        result.seconds = time.perf_counter() - started
        return plan, result
    run_id = store.start_run("push", targeting.destination)
    try:
        if must_reconcile:
            reconcile(store, targeting, sink, restore=restore, result=result)
            _mark_reconciled(store, targeting.destination)
        with store.engine.connect() as conn:
            guards = _guards(conn, config, sources)
            plan = build_plan(conn, targeting, sink, now=m.utcnow(), guards=guards, force=options.force)
        execute(store, plan, sink, retry_settings(config), result)
    except BaseException as exc:
        store.finish_run(run_id, "failed", result.counts(), f"{type(exc).__name__}: {exc}")
        raise
    result.seconds = time.perf_counter() - started
    status = "ok" if not (result.retry or result.failed or result.blocked) else "ok_with_issues"
    store.finish_run(run_id, status, result.counts(), "; ".join(result.guards) or None)
    return plan, result


def _guards(conn: sa.Connection, config: PushConfig, sources: Sequence[str]) -> Guards:
    return store_guards(conn, sources, config.max_removal_share, config.removal_guard_min)


def _dry_plan(
    store: Store,
    targeting: Targeting,
    sink: Sink,
    config: PushConfig,
    sources: Sequence[str],
    options: PushOptions,
    must_reconcile: bool,
    restore: bool,
    result: PushResult,
) -> Plan:
    # The reconcile's ledger writes shape the plan, so they happen inside a transaction that is rolled back.
    with store.write_connection() as conn:
        transaction = conn.begin()
        try:
            if must_reconcile:
                reconcile_in(conn, targeting, sink, restore=restore, result=result)
            plan = build_plan(conn, targeting, sink, now=m.utcnow(), guards=_guards(conn, config, sources),
                              force=options.force)
        finally:
            transaction.rollback()
    result.guards.extend(plan.guards)
    result.blocked = len(plan.blocked)
    for skip in plan.skips:
        result.skipped[skip.reason] += 1
    return plan


# ----------------------------------------------------------------------------------------------- reconcile timing


def _reconcile_due(store: Store, destination: str, config: PushConfig) -> bool:
    last = _last_reconcile(store, destination)
    return last is None or m.utcnow() - last >= parse_duration(config.reconcile_every)


def _last_reconcile(store: Store, destination: str) -> datetime | None:
    r = m.run
    with store.engine.connect() as conn:
        value = conn.execute(
            sa.select(sa.func.max(r.c.finished_at, type_=m.UTCDateTime())).where(
                r.c.kind == "reconcile", r.c.target == destination
            )
        ).scalar_one_or_none()
    return value if isinstance(value, datetime) else None


def _mark_reconciled(store: Store, destination: str) -> None:
    run_id = store.start_run("reconcile", destination)
    store.finish_run(run_id, "ok", {})


def segment_tags_from_rules(rules: object) -> tuple[dict[str, str], dict[str, tuple[str, ...]]]:
    """(segment -> tag, segment -> destinations) from a rule set (duck-typed: the core never imports rules)."""
    tags: dict[str, str] = {}
    destinations: dict[str, tuple[str, ...]] = {}
    for segment in getattr(rules, "segments", ()):
        tags[segment.name] = segment.tag
        destinations[segment.name] = tuple(segment.destinations)
    return tags, destinations


def open_sink(loaded: LoadedConfig, name: str, ctx: BuildContext) -> Sink:
    """The sink of destination ``name``, checked against the rest of the config.

    Raises:
        ConfigError: the destination names an unknown source, or its connector cannot be a destination.
    """
    from hub.errors import ConfigError
    from hub.registry import get_connector

    model = loaded.model
    entry = model.destinations[name]
    if entry.source is not None and entry.source not in model.sources:
        raise ConfigError(f"no source named {entry.source!r}", field=f"destinations.{name}.source")
    spec = get_connector(entry.type)
    if spec.build_sink is None:
        raise ConfigError(f"connector {entry.type!r} cannot be a destination", field=f"destinations.{name}")
    return spec.build_sink(entry, name, ctx)


def push_configured(
    store: Store,
    loaded: LoadedConfig,
    name: str,
    ctx: BuildContext,
    rules: object,
    options: PushOptions,
) -> tuple[Plan, PushResult]:
    """Push (or plan) destination ``name`` of the config with the segments of ``rules``: what ``hub push``, the
    daemon and the demo each do per destination."""
    from hub.push.plan import targeting_for

    model = loaded.model
    tags, rule_destinations = segment_tags_from_rules(rules)
    sources = [n for n, e in model.sources.items() if e.enabled]
    sink = open_sink(loaded, name, ctx)
    try:
        targeting = targeting_for(name, model.destinations[name], tags, rule_destinations)
        return push_destination(store, targeting, sink, model.push, sources, options)
    finally:
        sink.close()


# ----------------------------------------------------------------------------------------------- webhooks


def queue_webhooks(store: Store, config: PushConfig) -> dict[str, int]:
    """Queue the membership changes since the last call for every configured webhook (after an evaluation)."""
    from hub.push.webhooks import queue_events

    return {name: queue_events(store, name, hook) for name, hook in config.webhooks.items()}


def deliver_webhooks(
    store: Store,
    config: PushConfig,
    resolve_secret: Callable[[str], SecretStr],
    transport: httpx.BaseTransport | None = None,
) -> list[DeliveryResult]:
    """Deliver every webhook's due events (retries included)."""
    from hub.http import NO_RETRY, make_client
    from hub.push.webhooks import deliver

    results: list[DeliveryResult] = []
    for name, hook in config.webhooks.items():
        secret = resolve_secret(hook.secret).get_secret_value()
        # The events carry their own retry across runs; one attempt per delivery round is enough here.
        with make_client(hook.url, transport=transport, retry=NO_RETRY) as client:
            results.append(deliver(store, name, hook, secret, client.http, retry_settings(config)))
    return results
