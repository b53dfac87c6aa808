"""Runs a source's streams into the store, one committed page at a time.

Each page and the stream state after it are committed together by the store, so a crash or a kill at any
instant resumes from the last committed page with nothing lost or doubled. A stop request (SIGTERM under the
daemon) is honoured between pages.
"""

from __future__ import annotations

import logging
import threading
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from contextlib import nullcontext
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from hub.errors import ConfigError, HubError, Stopped, TransientError
from hub.redact import redact
from hub.stop import stop_scope

if TYPE_CHECKING:
    from hub.config import LoadedConfig
    from hub.contracts import Page, Source, Stream
    from hub.registry import BuildContext
    from hub.store import Store

logger = logging.getLogger(__name__)

# A run report keeps only the first few bad-record messages: a broken export can have millions.
MAX_ERROR_SAMPLES = 50

ProgressFn = Callable[[str, "Page", Any], None]


@dataclass
class StreamResult:
    """Totals of one stream in one run."""

    stream: str
    pages: int = 0
    counts: Counter[str] = field(default_factory=Counter)


@dataclass
class SyncResult:
    """What one sync of a source did."""

    source: str
    run_id: int | None = None
    status: str = "ok"
    streams: list[StreamResult] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    error: str | None = None
    stopped: bool = False

    @property
    def counts(self) -> Counter[str]:
        total: Counter[str] = Counter()
        for s in self.streams:
            total.update(s.counts)
        return total

    def as_dict(self) -> dict[str, Any]:
        """A JSON-able view, for ``hub sync --json``."""
        return {
            "source": self.source,
            "run_id": self.run_id,
            "status": self.status,
            "stopped": self.stopped,
            "error": self.error,
            "counts": dict(self.counts),
            "streams": {s.stream: {"pages": s.pages, **s.counts} for s in self.streams},
            "errors": self.errors,
        }


def build_source(config: LoadedConfig, name: str, ctx: BuildContext) -> Source:
    """Build the configured source ``name`` through its connector spec."""
    from hub.registry import get_connector

    entry = config.model.sources.get(name)
    if entry is None:
        known = ", ".join(sorted(config.model.sources)) or "none"
        raise ConfigError(f"no source named {name!r} in the config (sources: {known})")
    spec = get_connector(entry.type)
    if spec.build_source is None:
        raise ConfigError(f"connector {entry.type!r} cannot be a source")
    return spec.build_source(entry, name, ctx)


def sync_source(
    store: Store,
    source: Source,
    source_type: str,
    *,
    streams: Iterable[str] | None = None,
    full: bool = False,
    progress: ProgressFn | None = None,
    stop: threading.Event | None = None,
) -> SyncResult:
    """Pull every selected stream of ``source`` into ``store``.

    Args:
        store: the open store.
        source: the built source.
        source_type: its connector type (recorded with raw records).
        streams: names of the streams to run (all when None).
        full: ignore stored cursors and read everything again (records are upserted, never doubled).
        progress: called after each committed page with (stream name, page, page stats).
        stop: when set, the run ends cleanly after the current page.

    Returns:
        The run's totals; ``status`` is ``stopped`` when ``stop`` ended it early. ConfigError and other failures
        are recorded in the run row and re-raised.
    """
    result = SyncResult(source=source.name)
    result.run_id = store.start_run("sync", source.name)
    wanted = set(streams) if streams is not None else None
    try:
        with stop_scope(stop) if stop is not None else nullcontext():
            for stream in _select(source.streams(), wanted):
                if stop is not None and stop.is_set():
                    result.stopped = True
                    break
                _sync_stream(store, source, source_type, stream, full, progress, stop, result)
                if result.stopped:
                    break
    except Stopped:
        # A wait inside a page saw the stop: that page is given up, the ones before it are committed.
        result.stopped = True
    except BaseException as exc:
        result.status = "failed"
        result.error = redact(f"{type(exc).__name__}: {exc}") if not isinstance(exc, HubError) else redact(str(exc))
        store.finish_run(result.run_id, _status_for(exc), dict(result.counts), result.error)
        raise
    if result.stopped:
        result.status = "stopped"
        logger.info("%s: stopped on request after its last committed page; the next run resumes there",
                    source.name)
    elif result.counts.get("skipped"):
        result.status = "ok_with_skips"
    store.finish_run(result.run_id, result.status, dict(result.counts), None)
    return result


def _select(all_streams: Sequence[Stream], wanted: set[str] | None) -> list[Stream]:
    if wanted is None:
        return list(all_streams)
    names = {s.name for s in all_streams}
    unknown = wanted - names
    if unknown:
        raise ConfigError(f"unknown stream(s) {', '.join(sorted(unknown))} (streams: {', '.join(sorted(names))})")
    return [s for s in all_streams if s.name in wanted]


def _sync_stream(
    store: Store,
    source: Source,
    source_type: str,
    stream: Stream,
    full: bool,
    progress: ProgressFn | None,
    stop: threading.Event | None,
    result: SyncResult,
) -> None:
    if full:
        store.reset_state(source.name, stream.name)
    state = store.get_state(source.name, stream.name)
    out = StreamResult(stream=stream.name)
    result.streams.append(out)  # before the first page: a stop or failure mid-stream keeps what was committed
    for page in stream.read(state, full=full):
        stats = store.commit_page(source.name, source_type, stream.name, page)
        out.pages += 1
        out.counts["records"] += len(page.records)
        out.counts["skipped"] += page.skipped
        out.counts.update(_stat_counts(stats))
        for message in map(redact, page.errors):  # a bad row may quote a credential pasted into a file
            if len(result.errors) < MAX_ERROR_SAMPLES:
                result.errors.append(message)
            logger.warning("%s/%s: skipped: %s", source.name, stream.name, message)
        if progress is not None:
            progress(stream.name, page, stats)
        if stop is not None and stop.is_set():
            result.stopped = True
            break
    logger.info(
        "%s/%s: %d pages, %d records, %d skipped",
        source.name, stream.name, out.pages, out.counts["records"], out.counts["skipped"],
    )


def _stat_counts(stats: Any) -> dict[str, int]:
    """Integer fields of the store's page stats, whatever their dataclass looks like."""
    fields = getattr(stats, "__dataclass_fields__", None)
    if fields is None:
        return {}
    return {name: int(getattr(stats, name)) for name in fields if isinstance(getattr(stats, name), int)}


def _status_for(exc: BaseException) -> str:
    if isinstance(exc, ConfigError):
        return "config_error"
    if isinstance(exc, TransientError):
        return "transient_error"
    if isinstance(exc, KeyboardInterrupt):
        return "interrupted"
    return "failed"
