"""The Shopify GraphQL Admin client: the only module that knows Shopify's URLs.

Every call goes through :mod:`hub.http` (pacing, retry, logging, error mapping). Shopify-specific parts:

- **Cost pacing.** Each request first takes its *requested* cost from the account's token bucket (the cost the
  same operation asked for last time, else the single-query maximum). Every response's ``extensions.cost`` is
  fed back: ``throttleStatus`` sets the bucket's size, restore rate and current level, so the pacer learns the
  shop's plan and the refund of the unused part of each query.
- **Errors inside a 200.** ``THROTTLED`` is a wait for exactly the points missing (retried by the core);
  ``ACCESS_DENIED`` is a ConfigError naming the missing scope; ``MAX_COST_EXCEEDED`` is a
  :class:`QueryCostError` the caller answers with smaller pages; other GraphQL errors mean the API version
  rejected the query and are ConfigErrors.
- **Signed storage URLs.** Bulk results are downloaded, and bulk-mutation variables uploaded, with a second
  client that carries no access token: those URLs point at a storage host, and their signatures are
  registered as secrets so no log line shows them.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import IO, Any

import httpx
from pydantic import SecretStr

from hub.errors import ConfigError, HubError, TransientError
from hub.http import HeaderTokenAuth, HttpClient, HttpError, Pacer, RetryPolicy, TokenBucket, make_client
from hub.http.errors import describe_request, error_for_response
from hub.redact import redact, register_secret, sanitize_url

from .settings import (
    GRAPHQL_ATTEMPTS,
    INITIAL_BUCKET,
    INITIAL_RESTORE_RATE,
    SHOP_DOMAIN_SUFFIX,
    TOKEN_HEADER,
    UNKNOWN_QUERY_COST,
    VERSION_HEADER,
    graphql_path,
)

logger = logging.getLogger(__name__)

_BODY_KEY = "connectors.shopify.body"
_ESTIMATE_KEY = "connectors.shopify.estimate"
# Query parameters of signed storage URLs that grant access on their own.
_SIGNED_PARAMS = ("x-goog-signature", "x-goog-credential", "signature", "sig", "googleaccessid")
_TRANSIENT_CODES = frozenset({"INTERNAL_SERVER_ERROR", "SERVICE_UNAVAILABLE", "TIMEOUT"})


class QueryCostError(HttpError):
    """The query asked for more points than one query may (``MAX_COST_EXCEEDED``): send smaller pages.

    Args:
        message: what the server said.
        cost: the requested cost it computed.
        max_cost: the single-query limit it enforces.
    """

    def __init__(self, message: str, *, cost: float, max_cost: float) -> None:
        super().__init__(message, status=200)
        self.cost = cost
        self.max_cost = max_cost


@dataclass
class CostStats:
    """What the calls of one client spent, for run reports and the benchmark."""

    calls: int = 0
    throttled: int = 0
    requested: float = 0.0
    actual: float = 0.0
    by_operation: dict[str, int] = field(default_factory=dict)
    last_status: dict[str, float] = field(default_factory=dict)


def base_url(shop: str, override: str | None) -> str:
    """The shop's Admin API root (the config's ``base_url`` wins: a sandbox or a proxy)."""
    return override.rstrip("/") if override else f"https://{shop}{SHOP_DOMAIN_SUFFIX}"


def shared_pacer(shared: dict[str, Any], shop: str) -> Pacer:
    """The shop's pacer, shared by every stream and sink of the shop in this process."""
    pacer = shared.get(f"shopify:{shop}:pacer")
    if not isinstance(pacer, Pacer):
        pacer = Pacer.single(TokenBucket(INITIAL_BUCKET, INITIAL_RESTORE_RATE))
        shared[f"shopify:{shop}:pacer"] = pacer
    return pacer


class ShopifyClient:
    """GraphQL calls to one shop, paced by its cost bucket.

    Args:
        shop: the shop's handle.
        token: the Admin API access token.
        api_version: the API version of every call.
        base: the Admin API root (see :func:`base_url`).
        pacer: the shop's shared pacer.
        transport: an in-process transport (a sandbox) instead of the network.
        retry: the retry policy of GraphQL calls.
    """

    def __init__(
        self,
        shop: str,
        token: SecretStr,
        api_version: str,
        *,
        base: str,
        pacer: Pacer,
        transport: httpx.BaseTransport | None = None,
        retry: RetryPolicy | None = None,
    ) -> None:
        self.shop = shop
        self.api_version = api_version
        self.pacer = pacer
        self.retry = retry or RetryPolicy(max_attempts=GRAPHQL_ATTEMPTS)
        self.stats = CostStats()
        self._path = graphql_path(api_version)
        self._lock = threading.Lock()
        self._requested: dict[str, float] = {}
        self._warned_version = False
        self._api = make_client(
            base,
            auth=HeaderTokenAuth(TOKEN_HEADER, token),
            transport=transport,
            headers={"Accept": "application/json"},
            pacer=pacer,
            retry=self.retry,
            status_override=self._override,
            response_hook=self._observe,
        )
        # Signed storage URLs: no token goes there, and the shop's cost bucket does not apply.
        self._storage = make_client(base, transport=transport, retry=self.retry)

    # ------------------------------------------------------------------ GraphQL

    def graphql(
        self, operation: str, document: str, variables: Mapping[str, Any] | None = None, *, cost_key: str = ""
    ) -> dict[str, Any]:
        """Run one query or mutation and return its ``data`` (see :meth:`execute`)."""
        return self.execute(operation, document, variables, cost_key=cost_key)[0]

    def execute(
        self, operation: str, document: str, variables: Mapping[str, Any] | None = None, *, cost_key: str = ""
    ) -> tuple[dict[str, Any], httpx.Response]:
        """Run one query or mutation; return its ``data`` and the response (for a paginator).

        Args:
            operation: the operation's name (for cost estimates and logs).
            document: the GraphQL document.
            variables: its variables.
            cost_key: distinguishes calls of one operation whose cost differs (page sizes, batch sizes).

        Raises:
            ConfigError: bad token, missing scope, a query the API version rejects, an unknown shop.
            TransientError: THROTTLED or 5xx after the retries ran out.
            QueryCostError: the query asks for more than the single-query limit.
        """
        key = f"{operation}:{cost_key or (variables or {}).get('first', '')}"
        with self._lock:
            estimate = self._requested.get(key, UNKNOWN_QUERY_COST)
        body = {"query": document, "variables": dict(variables or {}), "operationName": operation}
        response = self._api.request(
            "POST", self._path, json=body, cost=estimate, expect_json=True, extensions={_ESTIMATE_KEY: estimate}
        )
        payload = _body(response)
        self._learn(key, operation, payload)
        data = payload.get("data") if isinstance(payload, dict) else None
        if not isinstance(data, dict):
            raise TransientError(f"{describe_request(response)}: {operation}: the answer holds no data")
        return data, response

    def close(self) -> None:
        """Close both HTTP clients."""
        self._api.close()
        self._storage.close()

    @property
    def http(self) -> HttpClient:
        """The GraphQL HTTP client (its counters: requests, retries, ...)."""
        return self._api

    # ------------------------------------------------------------------ storage (signed URLs)

    def download(self, url: str, sink: IO[bytes]) -> int:
        """Stream a bulk operation's JSONL result into ``sink`` (rewound first); return the bytes written.

        Retried like any request; a retry starts the file over.
        """
        _register_signed(url)
        shown = f"GET {sanitize_url(url)}"
        return self.retry.call(lambda: self._download_once(url, sink), describe=shown)

    def upload(self, url: str, parameters: Sequence[Mapping[str, str]], filename: str, content: bytes) -> None:
        """POST a staged upload: the target's form parameters, then the file (as a signed storage form expects)."""
        _register_signed(url)
        for param in parameters:
            if param.get("name", "").lower() in _SIGNED_PARAMS or param.get("name") == "policy":
                register_secret(param.get("value"))
        form = {p["name"]: p["value"] for p in parameters if "name" in p and "value" in p}
        self._storage.request(
            "POST", url, data=form, files={"file": (filename, content, "text/jsonl")}, allow_statuses=()
        )

    def _download_once(self, url: str, sink: IO[bytes]) -> int:
        sink.seek(0)
        sink.truncate()
        written = 0
        try:
            with self._storage.http.stream("GET", url) as response:
                if response.status_code >= 400:
                    response.read()
                    error = error_for_response(response)
                    if error is not None:
                        raise error
                for chunk in response.iter_bytes():
                    sink.write(chunk)
                    written += len(chunk)
        except (httpx.TransportError, httpx.DecodingError) as exc:
            raise TransientError(f"GET {sanitize_url(url)}: {type(exc).__name__}: {redact(str(exc))}") from exc
        sink.flush()
        logger.info("downloaded %d bytes from %s", written, sanitize_url(url.split("?", 1)[0]))
        return written

    # ------------------------------------------------------------------ cost and errors

    def _learn(self, key: str, operation: str, payload: Any) -> None:
        cost = _cost(payload)
        requested = _number(cost.get("requestedQueryCost"))
        actual = _number(cost.get("actualQueryCost"))
        with self._lock:
            self.stats.calls += 1
            self.stats.by_operation[operation] = self.stats.by_operation.get(operation, 0) + 1
            if requested is not None:
                self._requested[key] = requested
                self.stats.requested += requested
            if actual is not None:
                self.stats.actual += actual

    def _observe(self, response: httpx.Response) -> None:
        """Feed ``throttleStatus`` to the pacer (every response, THROTTLED ones included)."""
        version = response.headers.get(VERSION_HEADER)
        if version and version != self.api_version and not self._warned_version:
            self._warned_version = True
            logger.warning(
                "Shopify answered with API version %s instead of %s: the pinned version is no longer supported",
                version,
                self.api_version,
            )
        status = _cost(_body(response)).get("throttleStatus")
        if not isinstance(status, Mapping):
            self._refund(response)
            return
        available = _number(status.get("currentlyAvailable"))
        maximum = _number(status.get("maximumAvailable"))
        rate = _number(status.get("restoreRate"))
        self.pacer.observe(remaining=available, limit=maximum, refill_per_s=rate)
        with self._lock:
            self.stats.last_status = {
                k: v for k, v in (("available", available), ("maximum", maximum), ("rate", rate)) if v is not None
            }

    def _refund(self, response: httpx.Response) -> None:
        """Give back the points taken for a request that cost none (a 5xx, a 401: no cost block came back).

        Otherwise every retry of an outage would wait for points the shop never charged.
        """
        try:
            estimate = response.request.extensions.get(_ESTIMATE_KEY)
        except RuntimeError:  # a response built by hand has no request
            return
        if not isinstance(estimate, int | float) or estimate <= 0:
            return
        bucket = self.pacer.snapshot()["buckets"].get("default") or {}
        tokens = bucket.get("tokens")
        if isinstance(tokens, int | float):
            self.pacer.observe(remaining=tokens + estimate)

    def _override(self, response: httpx.Response) -> HubError | None:
        status = response.status_code
        where = describe_request(response)
        domain = f"{self.shop}{SHOP_DOMAIN_SUFFIX}"
        if status == 401:
            return ConfigError(
                f"{where}: HTTP 401: {domain} rejected the Admin API access token (wrong or revoked token, or the"
                " app was uninstalled)"
            )
        if status == 402:
            return ConfigError(f"{where}: HTTP 402: {domain} is frozen (its bill is unpaid)")
        if status == 404:
            return ConfigError(
                f"{where}: HTTP 404: no shop {domain}, or no API version {self.api_version} (check shop and"
                " api_version)"
            )
        if status == 423:
            return ConfigError(f"{where}: HTTP 423: {domain} is locked")
        if status != 200:
            return None
        payload = _body(response)
        errors = payload.get("errors") if isinstance(payload, dict) else None
        if not errors:
            return None
        return self._graphql_error(where, errors, _cost(payload))

    def _graphql_error(self, where: str, errors: Any, cost: Mapping[str, Any]) -> HubError:
        items = errors if isinstance(errors, list) else [{"message": str(errors)}]
        codes = [_code(e) for e in items]
        message = "; ".join(_message(e) for e in items)[:500]
        if "THROTTLED" in codes:
            with self._lock:
                self.stats.throttled += 1
            return TransientError(f"{where}: THROTTLED: {message}", retry_after=_throttle_wait(cost))
        if "ACCESS_DENIED" in codes:
            scopes = sorted({s for e in items for s in _required_scopes(e)})
            need = f" (needs the {', '.join(scopes)} access scope)" if scopes else ""
            return ConfigError(f"{where}: the app's access token is not allowed to do this{need}: {message}")
        if "MAX_COST_EXCEEDED" in codes:
            ext = _extensions(next((e for e in items if _code(e) == "MAX_COST_EXCEEDED"), {}))
            requested = _number(ext.get("cost")) or _number(cost.get("requestedQueryCost")) or 0.0
            limit = _number(ext.get("maxCost")) or 1000.0
            return QueryCostError(f"{where}: {message}", cost=requested, max_cost=limit)
        if codes and all(c in _TRANSIENT_CODES for c in codes):
            return TransientError(f"{where}: {message}")
        return ConfigError(f"{where}: API version {self.api_version} rejected the query: {message}")


# ---------------------------------------------------------------------------------------------- helpers


def _body(response: httpx.Response) -> Any:
    """The JSON body, parsed once per response (the hook, the override and the caller all read it)."""
    if _BODY_KEY in response.extensions:
        return response.extensions[_BODY_KEY]
    try:
        parsed: Any = response.json()
    except ValueError:
        parsed = None
    response.extensions[_BODY_KEY] = parsed
    return parsed


def _cost(payload: Any) -> Mapping[str, Any]:
    ext = payload.get("extensions") if isinstance(payload, dict) else None
    cost = ext.get("cost") if isinstance(ext, dict) else None
    return cost if isinstance(cost, Mapping) else {}


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def _extensions(error: Any) -> Mapping[str, Any]:
    ext = error.get("extensions") if isinstance(error, dict) else None
    return ext if isinstance(ext, dict) else {}


def _code(error: Any) -> str:
    code = _extensions(error).get("code")
    return str(code) if code else ""


def _message(error: Any) -> str:
    return redact(str(error.get("message", error) if isinstance(error, dict) else error))


def _required_scopes(error: Any) -> Iterator[str]:
    """Scope handles named in an ACCESS_DENIED error (``requiredAccess`` or the message)."""
    ext = error.get("extensions") if isinstance(error, dict) else None
    text = " ".join(
        str(v) for v in ((ext or {}).get("requiredAccess"), error.get("message") if isinstance(error, dict) else None)
    )
    for word in text.replace("`", " ").replace(",", " ").split():
        if word.startswith(("read_", "write_")):
            yield word.strip(".")


def _throttle_wait(cost: Mapping[str, Any]) -> float:
    """Seconds until the bucket holds the requested cost again."""
    status = cost.get("throttleStatus")
    requested = _number(cost.get("requestedQueryCost"))
    if not isinstance(status, Mapping) or requested is None:
        return 1.0
    available = _number(status.get("currentlyAvailable")) or 0.0
    rate = _number(status.get("restoreRate")) or INITIAL_RESTORE_RATE
    return max(requested - available, 0.0) / rate + 0.01


def _register_signed(url: str) -> None:
    for key, value in httpx.URL(url).params.multi_items():
        if key.lower() in _SIGNED_PARAMS:
            register_secret(value)
