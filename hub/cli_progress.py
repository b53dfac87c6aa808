"""Rich rendering for the CLI: sync progress bars, store summary and person explanations."""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping, Sequence
from datetime import datetime, tzinfo
from pathlib import Path
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

from rich import box
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from hub.config.models import parse_duration
from hub.daemon import health
from hub.daemon.status import ConnectorStatus, local_time
from hub.errors import ConfigError, HubError
from hub.locks import connector_lock
from hub.redact import redact
from hub.stop import stop_scope
from hub.sync import SyncResult, build_source, sync_source

if TYPE_CHECKING:
    from hub.config import LoadedConfig
    from hub.contracts import Page
    from hub.registry import BuildContext
    from hub.store import Store

logger = logging.getLogger(__name__)


def sync_with_progress(
    loaded: LoadedConfig,
    store: Store,
    ctx: BuildContext,
    names: Sequence[str],
    *,
    full: bool = False,
    streams: Sequence[str] | None = None,
    quiet: bool = False,
    console: Console | None = None,
    stop: threading.Event | None = None,
) -> list[SyncResult]:
    """Sync each named source in turn, showing one progress line per stream.

    A failing source (a ConfigError such as revoked credentials, or a run failure) is reported on one line and
    the next source runs; its result says how it ended (``config_error`` or ``failed``). Once ``stop`` is set
    the running source ends after its page in flight (``stopped``) and no further source starts.
    """
    console = console or Console(stderr=True)
    unknown = [n for n in names if n not in loaded.model.sources]
    if unknown:
        # Before the progress display starts, so the error is the only thing printed.
        known = ", ".join(sorted(loaded.model.sources)) or "none"
        raise ConfigError(f"no source named {unknown[0]!r} in the config (sources: {known})")
    from hub.demo import sandboxes_down

    # A demo's sandboxes that stopped would cost each source seconds of retries and end in a raw ConnectError.
    down = sandboxes_down(loaded, [("sources", n) for n in names])
    if down is not None:
        raise HubError(down)
    results: list[SyncResult] = []
    with Progress(
        SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), TextColumn("{task.fields[info]}"),
        TimeElapsedColumn(), console=console, disable=quiet, transient=False,
    ) as progress:
        for name in names:
            if stop is not None and stop.is_set():
                break
            with stop_scope(stop):
                results.append(_sync_one(loaded, store, ctx, name, full, streams, progress, console, stop))
    return results


def _sync_one(
    loaded: LoadedConfig,
    store: Store,
    ctx: BuildContext,
    name: str,
    full: bool,
    streams: Sequence[str] | None,
    progress: Progress,
    console: Console,
    stop: threading.Event | None,
) -> SyncResult:
    try:
        source = build_source(loaded, name, ctx)
    except ConfigError as exc:
        return _failed(console, name, "config_error", exc, loaded)
    tasks: dict[str, Any] = {}
    totals: dict[str, list[int]] = {}

    lock_box: list[Any] = []

    def on_page(stream: str, page: Page, _stats: Any) -> None:
        for lock in lock_box:
            lock.renew()
        if stream not in tasks:
            tasks[stream] = progress.add_task(f"{name}/{stream}", total=None, info="")
            totals[stream] = [0, 0]
        totals[stream][0] += len(page.records)
        totals[stream][1] += page.skipped
        rec, skip = totals[stream]
        progress.update(tasks[stream], advance=1, info=f"{rec:,} records, {skip:,} skipped")

    try:
        # The daemon and other `hub sync`s never run this source at the same time (a lock in the store).
        with connector_lock(store, f"sync:{name}", ttl=parse_duration(loaded.model.daemon.lock_ttl)) as lock:
            lock_box.append(lock)
            result = sync_source(store, source, loaded.model.sources[name].type, streams=streams, full=full,
                                 progress=on_page, stop=stop)
        if result.status != "failed":
            health.record_success(store, health.key("source", name))  # a good run by hand lifts a pause
    except ConfigError as exc:
        # Bad credentials or scope stop this source only; the others still run.
        return _failed(console, name, "config_error", exc, loaded)
    except HubError as exc:
        return _failed(console, name, "failed", exc)
    finally:
        source.close()
    for task in tasks.values():
        progress.update(task, total=1, completed=1)
    for message in result.errors[:10]:
        console.print(f"[yellow]skipped[/yellow] {escape(redact(message))}", soft_wrap=True)
    return result


def _failed(
    console: Console, name: str, status: str, exc: HubError, loaded: LoadedConfig | None = None
) -> SyncResult:
    # Connector text is redacted (it may quote a URL or a vendor's echo of a key) and escaped (a `[...]` in it
    # is not rich markup); one line per problem, to grep. A config error is placed in the config file as
    # `hub check` places it (file:line:col: field: message).
    if status == "config_error" and loaded is not None and isinstance(exc, ConfigError):
        lines = [redact(str(e)) for e in loaded.place(exc, field_path=f"sources.{name}")]
        for line in lines:
            console.print(f"[red]{escape(line)}[/red]", soft_wrap=True)
        return SyncResult(source=name, status=status, error="; ".join(lines))
    error = redact(str(exc))
    label = "config error" if status == "config_error" else "failed"
    console.print(f"[red]{escape(name)}: {label}:[/red] {escape(error)}", soft_wrap=True)
    return SyncResult(source=name, status=status, error=error)


def render_summary(summary: Any, console: Console | None = None) -> None:
    """Print the store summary as tables."""
    console = console or Console()
    data = summary.as_dict()
    console.print(f"[bold]People:[/bold] {data.get('people', 0):,} (merged: {data.get('merged', 0):,})")
    for title, key in (("Records", "raw_records"), ("Activities", "activities"), ("Identities", "identities")):
        rows = data.get(key) or {}
        if not rows:
            continue
        table = Table(title=title, title_justify="left")
        table.add_column("what")
        table.add_column("count", justify="right")
        for k, v in sorted(rows.items()):
            table.add_row(escape(str(k)), f"{v:,}" if isinstance(v, int) else escape(str(v)))
        console.print(table)


def render_demo_next_steps(config: Path, summary: Any, console: Console | None = None, *,
                           as_of: datetime | None = None, serving: Mapping[str, str] | None = None,
                           sandboxed: bool = True) -> None:
    """Tell the user where to look next after ``hub demo`` (and, with --serve, what the sandboxes allow)."""
    console = console or Console()
    example = escape(summary.sample_email or "EMAIL")
    c = escape(str(config))
    lines = [f"\n[bold]Next:[/bold] the demo's config is {c} (edit it, then `hub check --config {c}`).",
             f"  hub status --config {c}", f"  hub explain {example} --config {c}"]
    if as_of is not None:
        lines.append(f"  hub segment --as-of {as_of:%Y-%m-%d} --config {c}")
    if serving:
        lines += [f"  hub push --dry-run --config {c}", f"  hub run --config {c}",
                  "[bold]Sandboxes serving until Ctrl-C:[/bold] "
                  + escape(", ".join(f"{vendor} {url}" for vendor, url in serving.items()))]
    elif sandboxed:
        lines.append("The sandboxes stopped with the demo: `hub demo --serve` keeps them running until Ctrl-C, for "
                     "`hub push`, `hub sync` and `hub run` on this config.")
    console.print("\n".join(lines))


def render_demo_pulled(summary: Any, overlap: Mapping[int, int] | None = None, console: Console | None = None
                       ) -> None:
    """What ``hub demo`` pulled: records per source, and people found across the tools."""
    console = console or Console()
    data = summary.as_dict()
    pulled = Table(title="Pulled", title_justify="left")
    for col in ("source", "records", "of which"):
        pulled.add_column(col, justify="right" if col == "records" else "left")
    by_source: dict[str, dict[str, int]] = {}
    for key, n in (data.get("raw_records") or {}).items():
        source, _, kind = str(key).partition("/")
        by_source.setdefault(source, {})[kind] = n
    for source, kinds in sorted(by_source.items()):
        detail = ", ".join(f"{n:,} {kind}" for kind, n in sorted(kinds.items()))
        pulled.add_row(escape(source), f"{sum(kinds.values()):,}", escape(detail))
    console.print(pulled)
    if overlap is None:
        console.print(f"[bold]People:[/bold] {data.get('people', 0):,} after identity resolution")
        return
    known = ", ".join(f"{n:,} in {k} tool{'s' if k > 1 else ''}" for k, n in sorted(overlap.items()))
    console.print(f"[bold]People:[/bold] {data.get('people', 0):,} after identity resolution ({known or 'nobody'})")


def render_demo_pushed(pushes: Sequence[tuple[Any, Any]], stats: Mapping[str, Mapping[str, Any]],
                       console: Console | None = None) -> None:
    """What ``hub demo`` pushed: tags per destination, and the API calls the sandboxes counted."""
    console = console or Console()
    pushed = Table(title="Tags pushed", title_justify="left")
    for col in ("destination", "tags", "added", "removed", "skipped"):
        pushed.add_column(col, justify="left" if col in ("destination", "skipped") else "right")
    for plan, result in pushes:
        skipped = ", ".join(f"{n:,} {reason}" for reason, n in sorted(result.skipped.items())) or "0"
        pushed.add_row(escape(plan.destination), f"{len(plan.by_tag()):,}", f"+{result.added:,}",
                       f"-{result.removed:,}", escape(skipped))
    console.print(pushed)
    calls = ", ".join(f"{vendor} {s.get('requests', 0):,} ({s.get('rate_limited', 0)} x 429)"
                      for vendor, s in stats.items())
    console.print(f"[bold]Sandbox API requests:[/bold] {calls}")


def render_explanation(found: Any, segments: Sequence[Any] = (), console: Console | None = None, *,
                       as_of: datetime | None = None) -> None:
    """Print how a person was assembled from sources, then every segment's rule with the person's values."""
    from rich.tree import Tree

    console = console or Console()
    _render_person(found, console)
    if not segments:
        return
    when = f"as of {as_of:%Y-%m-%d %H:%M} UTC, " if as_of is not None else ""
    console.print(f"\n[bold]Segments[/bold] ({when}the last evaluation)")
    for seg in segments:
        mark = "[green]member[/green]" if seg.member else "[dim]not a member[/dim]"
        extra = " (held out: never pushed)" if seg.held_out else ""
        group = f" [dim]group {escape(seg.group)}[/dim]" if seg.group else ""
        tree = Tree(f"{escape(seg.segment)}: {mark}{extra}{group}")
        _add_nodes(tree, seg.rule)
        console.print(tree)


def _render_person(found: Any, console: Console) -> None:
    """The person's row, profiles per source, merges and activity counts, a line each."""
    name = " ".join(p for p in (found.first_name, found.last_name) if p)
    who = f"{name} <{found.email}>" if name and found.email else name or found.email or "(no name or email)"
    deleted = ", [red]deleted[/red]" if found.deleted else ""
    console.print(f"[bold]{escape(who)}[/bold] (person {found.person_id}, consent {escape(found.consent)}{deleted})")
    if found.merged_ids:
        console.print(f"  merged from persons {', '.join(str(i) for i in found.merged_ids)}")
    grid = Table.grid(padding=(0, 2))
    for _ in range(4):
        grid.add_column(overflow="fold")
    for i in found.identities:
        state = "deleted" if i.deleted else "seen" if i.seen else "key only"
        grid.add_row(escape(i.source), escape(str(i.external_id or "")), escape(i.email_seen or ""),
                     escape(f"{i.consent}, {state}"))
    console.print("[bold]Profiles[/bold]")
    console.print(grid)
    for merge in found.merges:
        console.print(f"merge: person {merge.loser_id} into {merge.winner_id}: {escape(merge.reason)}")
    activities = ", ".join(f"{n:,} {kind}" for kind, n in sorted(found.activities.items())) or "none"
    console.print(f"[bold]Activities:[/bold] {escape(activities)}")


def _add_nodes(tree: Any, node: Any) -> None:
    sign = "[green]yes[/green]" if node.holds else "[red]no[/red] "
    branch = tree.add(f"{sign} {escape(node.reading or node.text)}")
    for child in node.children:
        _add_nodes(branch, child)


def render_demo_as_of(as_of: datetime, config: Path, console: Console | None = None) -> None:
    """Why the demo's segment sizes differ from a plain ``hub segment`` run afterwards, and how to get them."""
    console = console or Console()
    day = f"{as_of:%Y-%m-%d}"
    console.print(
        f"The demo's synthetic business is dated {day} (its orders and emails end there), so the demo evaluates "
        f"segments as of {day}. A plain `hub segment` evaluates as of now, and time windows (\"no order in 365 "
        f"days\") move the sizes; `hub segment --as-of {day} --config {escape(str(config))}` reproduces these."
    )


def render_segments(result: Any, console: Console | None = None, *, now: bool = False) -> None:
    """Print when segments were evaluated, their sizes, changes since the last run and quality warnings."""
    console = console or Console()
    render_evaluated(result.as_of, console, now=now)
    table = Table(title=f"Segments ({result.people:,} people in scope)", title_justify="left")
    for col, justify in (("segment", "left"), ("size", "right"), ("entered", "right"), ("left", "right"),
                         ("held out", "right"), ("warnings", "left")):
        table.add_column(col, justify=justify)  # type: ignore[arg-type]
    for c in result.segments:
        table.add_row(escape(c.segment), f"{c.size:,}", f"+{c.entered:,}", f"-{c.exited:,}", f"{c.held_out:,}",
                      escape("; ".join(c.warnings)))
    console.print(table)
    for line in result.warnings:
        console.print(f"[yellow]warning[/yellow] {escape(line)}")


def render_clv(report: dict[str, Any], console: Console | None = None) -> None:
    """Print the CLV models' parameters, the penalizer choice and the holdout check against the baselines."""
    console = console or Console()
    bg, gg = report["bgnbd"], report["gamma_gamma"]
    params = ", ".join(f"{k}={v:.4g}" for k, v in bg["params"].items())
    console.print(f"BG/NBD ({report['customers']:,} customers to {report['calibration_end'][:10]}): {params}, "
                  f"log-likelihood {bg['log_likelihood']:.1f}")
    console.print("Gamma-Gamma: " + ", ".join(f"{k}={v:.4g}" for k, v in gg["params"].items()))
    console.print(f"penalizer: {escape(report['penalizer']['reason'])}")
    from rich import box

    table = Table(title=f"Holdout {report['calibration_end'][:10]} to {report['holdout_end'][:10]}",
                  title_justify="left", box=box.SIMPLE_HEAD)
    for col in ("forecast", "predicted", "actual", "MAE", "RMSE", "Spearman", "top 10%"):
        table.add_column(col, justify="right" if col != "forecast" else "left")

    def row(label: str, measures: dict[str, Any]) -> None:
        def fmt(value: float | None, spec: str) -> str:
            return "n/a" if value is None else format(value, spec)

        table.add_row(label, f"{measures['predicted']:,.0f}", f"{measures['actual']:,.0f}",
                      fmt(measures["mae_per_customer"], ".2f"), fmt(measures["rmse_per_customer"], ".2f"),
                      fmt(measures["spearman"], ".3f"), fmt(measures["top_decile_share"], ".0%"))

    row("purchases", report["repeat_purchases"])
    row("spend", report["spend"])
    words = {"simple_formula": "spend, formula", "zero": "spend, zero"}
    for name, measures in report["spend_baselines"].items():
        row(words.get(name, name), measures)
    console.print(table)
    console.print("formula: average order value x orders per year x the holdout; zero: nothing for anyone; "
                  "top 10%: share of the actual total bought by the 10% the forecast ranks highest")
    console.print(escape(report["verdict"]))


def render_churn(report: dict[str, Any], console: Console | None = None) -> None:
    """Print the churn check: definition, out-of-time metrics of the model and its baselines, the choice."""
    console = console or Console()
    console.print(f"[bold]Churn:[/bold] {escape(report['definition']['text'])}")
    sizes = report["sizes"]
    console.print(f"train: {sizes['train']['customers']:,} customer-cutoffs, test: {sizes['test']['customers']:,} "
                  "customers")
    if report.get("candidate"):
        tried = ", ".join(f"{k} {'n/a' if v is None else f'{v:.3f}'}" for k, v in report["cross_validation"].items())
        console.print(f"model: {escape(report['candidate'])}" + (f" (cross-validated AUC: {escape(tried)})"
                                                                 if tried else ""))
    table = Table(title="Out-of-time check", title_justify="left")
    for col in ("scorer", "ROC-AUC", "PR-AUC", "Brier", "calib. err.", "top-decile lift"):
        table.add_column(col, justify="right" if col != "scorer" else "left")
    for name, metrics in report["metrics"].items():
        if metrics is None:
            table.add_row(escape(name), "n/a", "n/a", "n/a", "n/a", "n/a")
            continue
        cells = [metrics.get(k) for k in ("roc_auc", "pr_auc", "brier", "calibration_error", "top_decile_lift")]
        table.add_row(escape(name), *("n/a" if v is None else f"{v:.3f}" for v in cells))
    console.print(table)
    comparison = report.get("comparison")
    if comparison and comparison.get("p_value") is not None:
        console.print(f"model vs {escape(comparison['baseline'])}: AUC {comparison['auc_difference']:+.4f} "
                      f"(standard error {comparison['standard_error']:.4f}, one-sided p = {comparison['p_value']:.3f})")
    console.print(f"chosen: [bold]{escape(str(report['chosen']))}[/bold]: {escape(str(report['reason']))}")


def render_churn_horizons(reports: Sequence[dict[str, Any]], console: Console | None = None) -> None:
    """One row per horizon: the out-of-time ROC-AUC of every scorer and the choice."""
    console = console or Console()
    names = list(dict.fromkeys(name for r in reports for name in r["metrics"]))
    table = Table(title="Out-of-time ROC-AUC by horizon", title_justify="left")
    table.add_column("days", justify="right")
    for name in names:
        table.add_column(name.replace("_", " "), justify="right")
    table.add_column("chosen")
    for r in reports:
        cells = []
        for name in names:
            metrics = r["metrics"].get(name)
            cells.append("n/a" if not metrics or metrics.get("roc_auc") is None else f"{metrics['roc_auc']:.3f}")
        table.add_row(str(r["definition"]["horizon_days"]), *cells, escape(str(r["chosen"])))
    console.print(table)


def render_push(outcomes: Sequence[tuple[Any, Any]], *, dry_run: bool, console: Console | None = None) -> None:
    """Per destination and tag: additions, removals, blocked removals, skips by reason, sample people."""
    console = console or Console()
    for plan, result in outcomes:
        verb = "would change" if dry_run else "changed"
        table = Table(title=f"{plan.destination}: {verb}", title_justify="left")
        for col in ("tag", "members", "add", "remove", "blocked", "skipped", "samples"):
            table.add_column(col, justify="left" if col in ("tag", "skipped", "samples") else "right")
        for tag, row in plan.by_tag().items():
            skipped = ", ".join(f"{n} {reason}" for reason, n in sorted(row["skipped"].items()))
            samples = "; ".join(f"{kind}: {', '.join(people)}" for kind, people in row["samples"].items())
            table.add_row(escape(tag), f"{row['members']:,}", f"+{row['add']:,}", f"-{row['remove']:,}",
                          f"{row['blocked']:,}", escape(skipped), escape(samples))
        console.print(table)
        if not plan.by_tag():
            console.print(f"{escape(plan.destination)}: nothing to change")
        if not dry_run:
            console.print(f"{escape(plan.destination)}: {result.added:,} added, {result.removed:,} removed, "
                          f"{result.retry:,} to retry, {result.failed:,} failed, {sum(result.skipped.values()):,} "
                          f"skipped, {result.drift:,} drifted, {result.adopted:,} adopted")
        for line in result.guards:
            console.print(f"[yellow]guard[/yellow] {escape(line)}", soft_wrap=True)


def render_connectors(statuses: Sequence[ConnectorStatus], timezone: str, console: Console | None = None) -> None:
    """One row per connector: name, kind, state, last run, next run, records (fits 80 columns)."""
    if not statuses:
        return
    console = console or Console()
    tz = ZoneInfo(timezone)
    table = Table(title=f"Connectors (times in {escape(timezone)})", title_justify="left", box=box.SIMPLE_HEAD,
                  show_edge=False, pad_edge=False)
    for col in ("name", "kind", "state", "last run", "next run", "records"):
        # min_width: a header is never cut to "na…"; the name column folds a long name instead.
        table.add_column(col, min_width=len(col), justify="right" if col == "records" else "left",
                         overflow="fold", no_wrap=col != "name")
    for row in statuses:
        table.add_row(escape(row.name), row.kind, _state_markup(row.state), _short(row.last_run_at, tz),
                      _short(row.next_run, tz) if row.next_run is not None and not row.next_text else row.next_text,
                      escape(row.records))
    console.print(table)


def render_connector_detail(row: ConnectorStatus, timezone: str, console: Console | None = None) -> None:
    """Everything ``hub status`` knows about one connector, one labelled line each (long text wraps at words)."""
    from rich.padding import Padding

    console = console or Console()
    tz = ZoneInfo(timezone)
    console.print(f"[bold]{escape(row.name)}[/bold] ({row.kind}, {escape(row.type)}): {_state_markup(row.state)}")
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="dim", no_wrap=True)
    grid.add_column(overflow="fold")
    next_run = row.next_text or local_time(row.next_run, tz)
    grid.add_row("next run", escape(f"{next_run} ({timezone})" if not row.next_text else next_run))
    for label, text in row.details:
        grid.add_row(escape(label), escape(redact(text)))
    console.print(Padding(grid, (0, 0, 0, 2), expand=False))


def _state_markup(state: str) -> str:
    colour = {"paused": "red", "failed": "red", "interrupted": "yellow", "stopped": "yellow"}.get(state)
    return f"[{colour}]{state}[/{colour}]" if colour else state


def _short(value: datetime | None, tz: tzinfo) -> str:
    """A time in a few columns: ``12-07 14:53`` this year, else the date."""
    if value is None:
        return ""
    here = value.astimezone(tz)
    return here.strftime("%m-%d %H:%M" if here.year == datetime.now(tz).year else "%Y-%m-%d")


def render_evaluated(as_of: datetime | None, console: Console | None = None, *, now: bool = False) -> None:
    """The line saying when segments were evaluated (sizes depend on it: time windows move)."""
    console = console or Console()
    if as_of is None:
        console.print("segments: not evaluated yet (`hub segment`)")
        return
    console.print(f"segments evaluated as of {as_of:%Y-%m-%d %H:%M} UTC{' (now)' if now else ''}")


def render_segment_sizes(sizes: Mapping[str, Any], console: Console | None = None) -> None:
    """Per segment: members after the last evaluation, and the change it brought."""
    if not sizes:
        return
    console = console or Console()
    table = Table(title="Segments (last evaluation)", title_justify="left")
    for col, justify in (("segment", "left"), ("members", "right"), ("entered", "right"), ("left", "right")):
        table.add_column(col, justify=justify)  # type: ignore[arg-type]
    for name, row in sizes.items():
        table.add_row(escape(name), f"{row['size']:,}", f"+{row['entered']:,}", f"-{row['exited']:,}")
    console.print(table)


