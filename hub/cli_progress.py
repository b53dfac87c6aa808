"""Rich rendering for the CLI: sync progress bars, store summary and person explanations."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from hub.errors import ConfigError, HubError
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
) -> list[SyncResult]:
    """Sync each named source in turn, showing one progress line per stream.

    A ConfigError in one source is re-raised (exit 2); another failure is reported and the next source runs.
    """
    console = console or Console(stderr=True)
    results: list[SyncResult] = []
    with Progress(
        SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), TextColumn("{task.fields[info]}"),
        TimeElapsedColumn(), console=console, disable=quiet, transient=False,
    ) as progress:
        for name in names:
            results.append(_sync_one(loaded, store, ctx, name, full, streams, progress, console))
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
) -> SyncResult:
    source = build_source(loaded, name, ctx)
    tasks: dict[str, Any] = {}
    totals: dict[str, list[int]] = {}

    def on_page(stream: str, page: Page, _stats: Any) -> None:
        if stream not in tasks:
            tasks[stream] = progress.add_task(f"{name}/{stream}", total=None, info="")
            totals[stream] = [0, 0]
        totals[stream][0] += len(page.records)
        totals[stream][1] += page.skipped
        rec, skip = totals[stream]
        progress.update(tasks[stream], advance=1, info=f"{rec:,} records, {skip:,} skipped")

    try:
        result = sync_source(store, source, loaded.model.sources[name].type, streams=streams, full=full,
                             progress=on_page)
    except ConfigError:
        raise
    except HubError as exc:
        console.print(f"[red]{name}: failed:[/red] {exc}")
        return SyncResult(source=name, status="failed", error=str(exc))
    finally:
        source.close()
    for task in tasks.values():
        progress.update(task, total=1, completed=1)
    for message in result.errors[:10]:
        console.print(f"[yellow]skipped[/yellow] {message}")
    return result


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
            table.add_row(str(k), f"{v:,}" if isinstance(v, int) else str(v))
        console.print(table)
    runs = data.get("last_runs") or []
    if runs:
        table = Table(title="Last runs", title_justify="left")
        for col in ("kind", "target", "status", "started_at", "finished_at", "error"):
            table.add_column(col)
        for run in runs:
            table.add_row(*(str(run.get(c) or "") for c in ("kind", "target", "status", "started_at",
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


def render_explanation(found: Any, console: Console | None = None) -> None:
    """Print how a person was assembled from sources."""
    console = console or Console()
    data = found.as_dict()
    console.print_json(data=data)
