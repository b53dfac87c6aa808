"""Prometheus metrics of the daemon, in a registry of its own (no process-global state at import)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest


@dataclass
class Metrics:
    """The counters and gauges ``/metrics`` exposes."""

    registry: CollectorRegistry = field(default_factory=CollectorRegistry)

    def __post_init__(self) -> None:
        r = self.registry
        self.runs = Counter("hub_runs", "Pipeline runs by kind, target and outcome", ["kind", "target", "status"],
                            registry=r)
        self.records = Counter("hub_records", "Records pulled, by source", ["source"], registry=r)
        self.skipped = Counter("hub_records_skipped", "Bad records skipped, by source", ["source"], registry=r)
        self.api_requests = Counter("hub_api_requests", "Vendor API requests, by connector", ["connector"],
                                    registry=r)
        self.api_429 = Counter("hub_api_throttled", "Vendor answers saying slow down (429), by connector",
                               ["connector"], registry=r)
        self.push = Counter("hub_push_outcomes", "Tag changes by destination and outcome", ["destination", "outcome"],
                            registry=r)
        self.duration = Histogram("hub_run_duration_seconds", "Run durations", ["kind", "target"], registry=r,
                                  buckets=(0.1, 0.5, 1, 5, 15, 60, 300, 900, 3600))
        self.paused = Gauge("hub_connector_paused", "1 while a connector is paused", ["name"], registry=r)
        self.segment_size = Gauge("hub_segment_members", "Members per segment after the last evaluation",
                                  ["segment"], registry=r)

    def http_stats(self, connector: str, stats: Mapping[str, int]) -> None:
        """Add a finished run's HTTP client counters (``requests``, ``responses_429``)."""
        self.api_requests.labels(connector).inc(stats.get("requests", 0))
        self.api_429.labels(connector).inc(stats.get("responses_429", 0))

    def render(self) -> bytes:
        """The Prometheus text exposition."""
        return bytes(generate_latest(self.registry))
