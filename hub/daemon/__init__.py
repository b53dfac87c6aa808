"""The daemon behind ``hub run``: scheduled pull -> segments -> push, with a breaker per connector, locks across
processes, clean stops, config reload, and a health and metrics endpoint.

- :mod:`hub.daemon.pipeline`: the jobs (a source's sync, then segments for the changed people, then push; the
  daily sweep).
- :mod:`hub.daemon.health`: the failure breaker and heartbeat rows ``hub status`` and ``/healthz`` read.
- :mod:`hub.daemon.service`: the scheduler, signals, reload and the HTTP endpoint.
- :mod:`hub.daemon.metrics`: the Prometheus metrics.
"""
