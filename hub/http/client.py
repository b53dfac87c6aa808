"""The HTTP client every connector uses: httpx with explicit timeouts, pacing, retry, logging, error mapping.

Build one per connector run with :func:`make_client` and call :meth:`HttpClient.request`. Each attempt waits
for the account's pacer, sends, logs one line (method, sanitized URL, status, elapsed ms), feeds the pacer the
vendor's rate-limit headers, and maps the status through :mod:`hub.http.errors`. Transient failures are
retried by the :class:`~hub.http.retry.RetryPolicy`; what finally escapes is a ConfigError, TransientError,
NotFoundError or HttpError, never a raw httpx exception.
"""

from __future__ import annotations

import contextlib
import json
import logging
import threading
import time
from collections import Counter
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from contextvars import ContextVar
from types import TracebackType
from typing import Any

import httpx

from hub import __version__
from hub.errors import TransientError
from hub.http.errors import HttpError, StatusOverride, error_for_response
from hub.http.pacer import Pacer, RateLimitHeaders
from hub.http.retry import RetryPolicy
from hub.redact import SENSITIVE_HEADERS, SENSITIVE_PARAMS, redact, register_secret, sanitize_url
from hub.stop import current as current_stop

logger = logging.getLogger(__name__)

# Counters per job (a sync of one source, a push to one destination), for the daemon's metrics. A client joins
# the scope active where it is built, so requests its worker threads send count there too.
_SCOPE: ContextVar[str | None] = ContextVar("hub_http_scope", default=None)
_scope_lock = threading.Lock()
_scope_counters: dict[str, Counter[str]] = {}


@contextlib.contextmanager
def counting_scope(name: str) -> Iterator[None]:
    """Count the requests of every client built inside this block under ``name`` (see :func:`scope_stats`)."""
    with _scope_lock:
        _scope_counters[name] = Counter()
    token = _SCOPE.set(name)
    try:
        yield
    finally:
        _SCOPE.reset(token)


def scope_stats(name: str) -> dict[str, int]:
    """The counters (requests, retries, responses_429, ...) of the last :func:`counting_scope` named ``name``."""
    with _scope_lock:
        return dict(_scope_counters.get(name, Counter()))

DEFAULT_TIMEOUT = httpx.Timeout(30, connect=10)
DEFAULT_USER_AGENT = f"audience-hub/{__version__}"

ResponseHook = Callable[[httpx.Response], None]
"""Called with every response before error mapping (e.g. to feed a GraphQL cost block to the pacer)."""

COUNTERS = ("requests", "retries", "responses_429", "responses_5xx", "transport_errors", "errors")


class HttpClient:
    """A thin wrapper over ``httpx.Client`` adding retry, pacing, logging, counters and error mapping.

    Args:
        http: the configured httpx client (see :func:`make_client`).
        pacer: the account's pacer, shared with the other streams of the account.
        retry: the default retry policy.
        status_override: the connector's status-mapping hook, consulted before the table.
        rate_limit_headers: which headers carry the vendor's rate-limit numbers, fed to ``pacer``.
        response_hook: called with every response, before error mapping.
        log_level: level of the per-request log line.
    """

    def __init__(
        self,
        http: httpx.Client,
        *,
        pacer: Pacer | None = None,
        retry: RetryPolicy = RetryPolicy(),
        status_override: StatusOverride | None = None,
        rate_limit_headers: RateLimitHeaders | None = None,
        response_hook: ResponseHook | None = None,
        log_level: int = logging.INFO,
    ) -> None:
        self._http = http
        self.pacer = pacer
        self.retry = retry
        self._override = status_override
        self._rate_headers = rate_limit_headers
        self._hook = response_hook
        self._log_level = log_level
        self._lock = threading.Lock()
        self._counters = dict.fromkeys(COUNTERS, 0)
        self._scope = _SCOPE.get()
        # A stop (SIGTERM) ends this client's pacing and retry waits, in whatever thread they run.
        self._stop = current_stop()

    @property
    def http(self) -> httpx.Client:
        """The underlying httpx client (for streaming downloads and the like; no retry or pacing there)."""
        return self._http

    def request(
        self,
        method: str,
        url: str,
        *,
        allow_statuses: Collection[int] = (),
        cost: float = 1.0,
        buckets: Sequence[str] | None = None,
        retry: RetryPolicy | None = None,
        expect_json: bool = False,
        **kwargs: Any,
    ) -> httpx.Response:
        """Send a request with pacing, retry and error mapping; return the (read) response.

        Args:
            method: the HTTP method.
            url: a path relative to the base URL, or an absolute URL.
            allow_statuses: error statuses returned instead of raised (e.g. ``{404}``).
            cost: what the request spends from the pacer (GraphQL: the estimated query cost).
            buckets: the pacer buckets to draw from (default: the pacer's default buckets).
            retry: a policy for this request only (``NO_RETRY`` for a non-idempotent write).
            expect_json: treat a body that is not valid JSON as transient (a truncated body) and retry.
            **kwargs: passed to ``httpx.Client.build_request`` (params, json, data, content, headers,
                timeout).

        Returns:
            The response, body read.

        Raises:
            ConfigError: 401/403 or what the override maps to it.
            TransientError: 429/5xx/transport errors after the retries ran out.
            NotFoundError: 404, unless allowed.
            HttpError: other 4xx.
        """
        # The attempt records the sanitized full URL here, for the retry log line.
        shown = [f"{method.upper()} {sanitize_url(url)}"]
        policy = retry or self.retry
        return policy.call(
            lambda: self._attempt(method, url, kwargs, allow_statuses, cost, buckets, expect_json, shown),
            describe=lambda: shown[0],
            on_retry=lambda: self._count("retries"),
            stop=self._stop,
        )

    def get(self, url: str, **kwargs: Any) -> httpx.Response:
        """:meth:`request` with GET."""
        return self.request("GET", url, **kwargs)

    def post(self, url: str, **kwargs: Any) -> httpx.Response:
        """:meth:`request` with POST."""
        return self.request("POST", url, **kwargs)

    def stats(self) -> dict[str, int]:
        """A copy of the counters (requests, retries, responses_429, ...), for metrics."""
        with self._lock:
            return dict(self._counters)

    def close(self) -> None:
        """Close the underlying httpx client."""
        self._http.close()

    def __enter__(self) -> HttpClient:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def _attempt(
        self,
        method: str,
        url: str,
        kwargs: Mapping[str, Any],
        allow: Collection[int],
        cost: float,
        buckets: Sequence[str] | None,
        expect_json: bool,
        shown_out: list[str],
    ) -> httpx.Response:
        # Built afresh per attempt: a request body stream cannot be replayed.
        request = self._http.build_request(method, url, **kwargs)
        shown = f"{request.method} {sanitize_url(str(request.url))}"
        shown_out[0] = shown
        _register_credentials(request)
        response = self._send(request, shown, cost, buckets)
        self._after_response(response)
        error = error_for_response(response, override=self._override, allow=allow)
        if error is None and expect_json and not _is_json(response):
            error = TransientError(
                f"{shown}: HTTP {response.status_code} with a malformed or truncated JSON body"
            )
        if error is None:
            return response
        self._count("errors")
        if isinstance(error, TransientError) and response.status_code == 429 and self.pacer is not None:
            # Every stream of the account must hold off, not only this one.
            self.pacer.pause(error.retry_after if error.retry_after is not None else self.retry.initial_wait)
        raise error

    def _send(
        self, request: httpx.Request, shown: str, cost: float, buckets: Sequence[str] | None
    ) -> httpx.Response:
        pacer = self.pacer
        with pacer.slot() if pacer is not None else _NULL_SLOT:
            if pacer is not None:
                pacer.acquire(cost, buckets, stop=self._stop)
            self._count("requests")
            start = time.perf_counter()
            try:
                response = self._http.send(request)
            except (httpx.TransportError, httpx.DecodingError) as exc:
                self._count("transport_errors")
                logger.log(self._log_level, "%s -> %s (%.0f ms)", shown, type(exc).__name__, _ms(start))
                raise TransientError(f"{shown}: {type(exc).__name__}: {redact(str(exc))}") from exc
            except httpx.HTTPError as exc:
                raise HttpError(f"{shown}: {type(exc).__name__}: {redact(str(exc))}") from exc
        logger.log(self._log_level, "%s -> %d (%.0f ms)", shown, response.status_code, _ms(start))
        return response

    def _after_response(self, response: httpx.Response) -> None:
        if response.status_code == 429:
            self._count("responses_429")
        elif response.status_code >= 500:
            self._count("responses_5xx")
        if self.pacer is not None and self._rate_headers is not None:
            self.pacer.update_from_headers(response.headers, self._rate_headers)
        if self._hook is not None:
            self._hook(response)

    def _count(self, name: str) -> None:
        with self._lock:
            self._counters[name] += 1
        if self._scope is not None:
            with _scope_lock:
                _scope_counters[self._scope][name] += 1


class _NullSlot:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None


_NULL_SLOT = _NullSlot()


def make_client(
    base_url: str,
    *,
    auth: httpx.Auth | None = None,
    timeout: httpx.Timeout = DEFAULT_TIMEOUT,
    transport: httpx.BaseTransport | None = None,
    headers: Mapping[str, str] | None = None,
    pacer: Pacer | None = None,
    retry: RetryPolicy = RetryPolicy(),
    status_override: StatusOverride | None = None,
    rate_limit_headers: RateLimitHeaders | None = None,
    response_hook: ResponseHook | None = None,
    user_agent: str = DEFAULT_USER_AGENT,
    log_level: int = logging.INFO,
) -> HttpClient:
    """Build the client for one connector run.

    Args:
        base_url: the vendor API root (or the config's ``base_url`` override: a sandbox, a proxy).
        auth: one of :mod:`hub.http.auth`'s ``httpx.Auth`` classes.
        timeout: explicit timeouts; never unbounded.
        transport: an ``httpx.MockTransport`` (tests, in-process sandbox) instead of the network.
        headers: default headers for every request.
        pacer: the account's shared pacer.
        retry: the retry policy.
        status_override: the connector's status-mapping hook.
        rate_limit_headers: the vendor's rate-limit header names, fed to ``pacer``.
        response_hook: called with every response before error mapping.
        user_agent: the ``User-Agent`` header.
        log_level: level of the per-request log line.

    Returns:
        The client; close it (or use it as a context manager) when the run ends.
    """
    all_headers = {"User-Agent": user_agent, **(headers or {})}
    http = httpx.Client(
        base_url=base_url,
        auth=auth,
        timeout=timeout,
        transport=transport,
        headers=all_headers,
        # Redirects are not followed: a redirect to another host is a misconfigured base_url, not something to
        # chase with credentials attached.
        follow_redirects=False,
    )
    return HttpClient(
        http,
        pacer=pacer,
        retry=retry,
        status_override=status_override,
        rate_limit_headers=rate_limit_headers,
        response_hook=response_hook,
        log_level=log_level,
    )


def _register_credentials(request: httpx.Request) -> None:
    """Register credentials a connector put in a query parameter or header, so an echo of them is masked.

    Resolved secrets are registered already; this also covers values that reach the request another way.
    """
    for key, value in request.url.params.multi_items():
        if key.lower() in SENSITIVE_PARAMS:
            register_secret(value)
    for key, value in request.headers.items():
        if key.lower() in SENSITIVE_HEADERS:
            register_secret(value.split(" ", 1)[-1])  # without a "Bearer " style scheme word


def _ms(start: float) -> float:
    return (time.perf_counter() - start) * 1000.0


def _is_json(response: httpx.Response) -> bool:
    if response.status_code == 204:
        return True
    try:
        json.loads(response.content)
    except ValueError:
        return False
    return True
