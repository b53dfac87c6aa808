"""Rich rendering for the CLI: sync progress bars, store summary and person explanations."""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from hub.config.models import parse_duration
from hub.daemon import health
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
        return _failed(console, name, "config_error", exc)
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
        return _failed(console, name, "config_error", exc)
    except HubError as exc:
        return _failed(console, name, "failed", exc)
    finally:
        source.close()
    for task in tasks.values():
        progress.update(task, total=1, completed=1)
    for message in result.errors[:10]:
        console.print(f"[yellow]skipped[/yellow] {escape(redact(message))}", soft_wrap=True)
    return result


def _failed(console: Console, name: str, status: str, exc: HubError) -> SyncResult:
    # Connector text is redacted (it may quote a URL or a vendor's echo of a key) and escaped (a `[...]` in it
    # is not rich markup); one line, to grep.
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
    runs = data.get("last_runs") or []
    pushes = [r for r in runs if r.get("kind") == "push"]
    if pushes:
        table = Table(title="Destinations (last push)", title_justify="left")
        for col in ("destination", "finished", "status", "added", "removed", "retry", "failed", "blocked", "drift",
                    "skipped"):
            text = col in ("destination", "finished", "status", "skipped")
            table.add_column(col, justify="left" if text else "right")
        for run in pushes:
            counts = run.get("counts") or {}
            skipped = ", ".join(f"{n} {k.split(':', 1)[1]}" for k, n in sorted(counts.items())
                                if k.startswith("skipped:")) or str(counts.get("skipped", 0))
            table.add_row(escape(str(run.get("target"))), escape(str(run.get("finished_at") or "")[:19]),
                          escape(str(run.get("status"))),
                          *(f"{int(counts.get(k, 0)):,}" for k in ("added", "removed", "retry", "failed", "blocked",
                                                                    "drift")),
                          escape(skipped))
        console.print(table)
    if runs:
        table = Table(title="Last runs", title_justify="left")
        for col in ("kind", "target", "status", "started_at", "finished_at", "error"):
            table.add_column(col)
        for run in runs:
            table.add_row(*(escape(str(run.get(c) or "")) for c in ("kind", "target", "status", "started_at",
                                                                      "finished_at", "error")))
        console.print(table)


def render_demo_next_steps(config: Path, summary: Any, console: Console | None = None) -> None:
    """Tell the user where to look next after ``hub demo``."""
    console = console or Console()
    example = summary.sample_email or "EMAIL"
    console.print(
        f"\n[bold]Next:[/bold] the demo's config is {config} (edit it, then `hub check --config {config}`).\n"
        f"  hub status --config {config}\n"
        f"  hub explain {example} --config {config}"
    )


def render_demo_summary(summary: Any, overlap: Mapping[int, int], pushes: Sequence[tuple[Any, Any]],
                        stats: Mapping[str, Mapping[str, Any]], console: Console | None = None) -> None:
    """What ``hub demo`` did: records per source, people across tools, tags pushed per destination, API calls."""
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
    known = ", ".join(f"{n:,} in {k} tool{'s' if k > 1 else ''}" for k, n in sorted(overlap.items()))
    console.print(f"[bold]People:[/bold] {data.get('people', 0):,} after identity resolution ({known or 'nobody'})")
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


def render_explanation(found: Any, segments: Sequence[Any] = (), console: Console | None = None) -> None:
    """Print how a person was assembled from sources, then every segment's rule with the person's values."""
    from rich.tree import Tree

    console = console or Console()
    data = found.as_dict()
    console.print_json(data=data)
    if not segments:
        return
    console.print("\n[bold]Segments[/bold] (as of the last evaluation)")
    for seg in segments:
        mark = "[green]member[/green]" if seg.member else "[dim]not a member[/dim]"
        extra = " (held out: never pushed)" if seg.held_out else ""
        group = f" [dim]group {escape(seg.group)}[/dim]" if seg.group else ""
        tree = Tree(f"{escape(seg.segment)}: {mark}{extra}{group}")
        _add_nodes(tree, seg.rule)
        console.print(tree)


def _add_nodes(tree: Any, node: Any) -> None:
    sign = "[green]yes[/green]" if node.holds else "[red]no[/red]"
    value = f" [dim](value: {escape(str(node.value))})[/dim]" if node.value is not None else ""
    branch = tree.add(f"{sign} {escape(node.text)}{value}")
    for child in node.children:
        _add_nodes(branch, child)


def render_segments(result: Any, console: Console | None = None) -> None:
    """Print segment sizes, changes since the last run and quality warnings."""
    console = console or Console()
    table = Table(title=f"Segments at {result.as_of:%Y-%m-%d %H:%M} ({result.people:,} people in scope)",
                  title_justify="left")
    for col, justify in (("segment", "left"), ("size", "right"), ("entered", "right"), ("left", "right"),
                         ("held out", "right"), ("warnings", "left")):
        table.add_column(col, justify=justify)  # type: ignore[arg-type]
    for c in result.segments:
        table.add_row(escape(c.segment), f"{c.size:,}", f"+{c.entered:,}", f"-{c.exited:,}", f"{c.held_out:,}",
                      escape("; ".join(c.warnings)))
    console.print(table)
    for line in result.warnings:
        console.print(f"[yellow]warning[/yellow] {escape(line)}", soft_wrap=True)


def render_clv(report: dict[str, Any], console: Console | None = None) -> None:
    """Print the CLV models' parameters and their holdout check."""
    console = console or Console()
    bg, gg = report["bgnbd"], report["gamma_gamma"]
    params = ", ".join(f"{k}={v:.4g}" for k, v in bg["params"].items())
    console.print(f"BG/NBD ({report['customers']:,} customers to {report['calibration_end'][:10]}): {params}, "
                  f"log-likelihood {bg['log_likelihood']:.1f}")
    console.print("Gamma-Gamma: " + ", ".join(f"{k}={v:.4g}" for k, v in gg["params"].items()))
    table = Table(title=f"Holdout {report['calibration_end'][:10]} to {report['holdout_end'][:10]}",
                  title_justify="left")
    for col in ("", "predicted", "actual", "MAE per customer", "Spearman"):
        table.add_column(col, justify="right")
    for name in ("repeat_purchases", "spend"):
        row = report[name]
        rho = "n/a" if row["spearman"] is None else f"{row['spearman']:.3f}"
        table.add_row(name.replace("_", " "), f"{row['predicted']:,.1f}", f"{row['actual']:,.1f}",
                      f"{row['mae_per_customer']:.3f}", rho)
    console.print(table)


def render_churn(report: dict[str, Any], console: Console | None = None) -> None:
    """Print the churn check: definition, out-of-time metrics of the model and its baselines, the choice."""
    console = console or Console()
    console.print(f"[bold]Churn:[/bold] {escape(report['definition']['text'])}")
    sizes = report["sizes"]
    console.print(f"train: {sizes['train']['customers']:,} customer-cutoffs, test: {sizes['test']['customers']:,} "
                  "customers")
    table = Table(title="Out-of-time check", title_justify="left")
    for col in ("scorer", "ROC-AUC", "PR-AUC", "Brier", "top-decile lift"):
        table.add_column(col, justify="right" if col != "scorer" else "left")
    for name, metrics in report["metrics"].items():
        if metrics is None:
            table.add_row(escape(name), "n/a", "n/a", "n/a", "n/a")
            continue
        cells = [metrics.get(k) for k in ("roc_auc", "pr_auc", "brier", "top_decile_lift")]
        table.add_row(escape(name), *("n/a" if v is None else f"{v:.3f}" for v in cells))
    console.print(table)
    console.print(f"chosen: [bold]{escape(str(report['chosen']))}[/bold]: {escape(str(report['reason']))}")


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


def render_health(connectors: Mapping[str, Any], console: Console | None = None) -> None:
    """Per connector: paused or not, failures in a row, last success, last error, next run."""
    if not connectors:
        return
    console = console or Console()
    table = Table(title="Connectors (daemon)", title_justify="left")
    for col in ("connector", "state", "failures", "last success", "next run", "last error"):
        table.add_column(col)
    for name, h in connectors.items():
        state = "[red]paused[/red]" if h.paused else "ok"
        table.add_row(escape(name), state, str(h.consecutive_failures), _when(h.last_success_at),
                      _when(h.next_run_at), escape(h.paused_reason or h.last_error or ""))
    console.print(table)


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


def _when(value: Any) -> str:
    return value.strftime("%Y-%m-%d %H:%M") if value is not None else ""
