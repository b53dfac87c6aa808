"""The Sandbox: an emulator plus control endpoints, statistics and fault injection.

:class:`Sandbox` wraps any :class:`~hub.sandbox.emulator.Emulator` by composition and is itself an httpx
handler, so ``httpx.MockTransport(sandbox)`` runs a connector against it in-process and
:mod:`hub.sandbox.server` serves it over HTTP. Every sandbox answers, next to the vendor's paths:

- ``GET /_sandbox/stats``: requests per endpoint (method + path with ids collapsed, or the emulator's own
  ``endpoint_name``) and per concrete resource (the emulator's ``resource_name``: ``contacts`` apart from
  ``deals``), each with its responses per status; responses per status, 429s, auth rejections (401/403),
  injected faults, emulator errors, the most requests seen in flight at once. ``DELETE /_sandbox/stats`` zeroes
  the counters.
- ``POST /_sandbox/reset``: the emulator back to its seeded state; faults and counters cleared.
- ``POST /_sandbox/faults`` with a JSON fault (see :func:`parse_fault`); ``GET`` lists the active faults,
  ``DELETE`` clears them.
- ``POST /_sandbox/mutate`` with ``{"fraction": 0.01, "delete_fraction": 0.001, "seed": 1}``.

Control requests are not counted in the statistics and need no auth.
"""

from __future__ import annotations

import json
import logging
import math
import random
import re
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager, nullcontext
from dataclasses import asdict, dataclass
from typing import Any

import httpx

from hub.sandbox.emulator import Emulator
from hub.sandbox.ratelimit import format_seconds

logger = logging.getLogger(__name__)

CONTROL_PREFIX = "/_sandbox"

_KIND_ALIASES = {
    "repeat": "repeat",
    "echo": "echo",
    "wrong_type": "wrong_type",
    "drop_field": "drop_field",
    "unknown_field": "unknown_field",
    "429": "429",
    "rate_limit": "429",
    "5xx": "5xx",
    "server_error": "5xx",
    "timeout": "timeout",
    "malformed": "malformed",
    "truncated": "truncated",
    "token_expiry": "token_expiry",
    "token_expired": "token_expiry",
    "delay": "delay",
}
FAULT_KINDS = (
    "429", "5xx", "timeout", "malformed", "truncated", "token_expiry", "delay",
    "repeat", "wrong_type", "drop_field", "unknown_field", "echo",
)
# Faults that rewrite a real answer's JSON body (schema drift, a bad record). One that finds nothing to rewrite in
# an answer (no such field, not JSON, an error status) is not spent on it and waits for the next matching answer.
REWRITE_KINDS = frozenset({"wrong_type", "drop_field", "unknown_field"})
UNKNOWN_FIELD = "x_sandbox_unknown_field"
# Marks an answer a ``repeat`` fault served again (it is not the endpoint's latest real answer).
_REPEATED = "sandbox_repeated"
# Resource name of requests an emulator does not name.
OTHER_RESOURCE = "other"

# Path segments that are ids: numbers, UUIDs, hex ids and hashes (Mailchimp list ids and subscriber hashes).
_ID_SEGMENT = re.compile(
    r"^(\d+|[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}|(?=[^/]*\d)[0-9a-fA-F]{8,})$"
)


@dataclass(slots=True)
class Fault:
    """One injected fault, applied to the next ``count`` matching requests.

    Attributes:
        id: assigned by the sandbox.
        kind: one of :data:`FAULT_KINDS`.
        count: how many requests it hits; None until cleared.
        path: only requests whose path starts with this prefix.
        method: only requests with this method.
        skip: let this many matching requests through first (fail the third page, not the first).
        status: the status of 429 and 5xx faults.
        retry_after: ``Retry-After`` seconds of a 429 fault (None: no header).
        delay: seconds a ``timeout`` hangs before failing, or a ``delay`` fault waits before answering.
        processed: a ``timeout`` lets the emulator process the request first (a write that happened although
            the client saw a timeout).
        field: the JSON key a rewrite fault works on: ``wrong_type`` sets it to ``value`` in the first object
            holding it (one bad record), ``drop_field`` removes it from every object (an optional field gone),
            ``unknown_field`` adds it with ``value`` to every object (a field the client has never seen).
        value: the value ``wrong_type`` and ``unknown_field`` write.
        injected: how many requests it has hit so far.

    A ``repeat`` fault answers with the answer of the previous request to the same endpoint (a pagination cursor
    that comes back, a page served twice). An ``echo`` fault answers ``status`` (default 400) with the request's
    URL and headers in the body, as some gateways do: credentials included, which the client must never show.
    """

    id: int
    kind: str
    count: int | None = 1
    path: str | None = None
    method: str | None = None
    skip: int = 0
    status: int = 500
    retry_after: float | None = 1.0
    delay: float = 0.0
    processed: bool = False
    field: str | None = None
    value: Any = None
    injected: int = 0

    def matches(self, request: httpx.Request) -> bool:
        """Whether the fault applies to ``request`` (path prefix and method)."""
        if self.path is not None and not request.url.path.startswith(self.path):
            return False
        return self.method is None or request.method.upper() == self.method.upper()

    @property
    def spent(self) -> bool:
        """True once the fault has hit ``count`` requests."""
        return self.count is not None and self.injected >= self.count

    def as_dict(self) -> dict[str, Any]:
        """The fault as JSON-able data."""
        return asdict(self)


def parse_fault(body: Mapping[str, Any], fault_id: int = 0) -> Fault:
    """Validate a fault request body.

    Fields: ``kind`` (``429``, ``5xx``, ``timeout``, ``malformed``, ``truncated``, ``token_expiry``,
    ``delay``, ``repeat``, ``wrong_type``, ``drop_field``, ``unknown_field``, ``echo``), and optionally
    ``count`` (default 1; null = until cleared), ``path`` (prefix), ``method``, ``skip``, ``status`` (5xx:
    default 500; echo: default 400), ``retry_after`` (429: default 1; null: no header), ``delay`` (seconds),
    ``processed`` (timeout only), ``field`` and ``value`` (the rewrite kinds; ``wrong_type`` and
    ``drop_field`` need ``field``).

    Raises:
        ValueError: with a message for the 400 answer.
    """
    raw_kind = str(body.get("kind", ""))
    kind = _KIND_ALIASES.get(raw_kind.lower())
    if kind is None:
        raise ValueError(f"unknown fault kind {raw_kind!r} (kinds: {', '.join(FAULT_KINDS)})")
    unknown = set(body) - {f for f in Fault.__dataclass_fields__ if f not in ("id", "injected")}
    if unknown:
        raise ValueError(f"unknown fault field(s): {', '.join(sorted(unknown))}")
    count = body.get("count", 1)
    if count is not None and (not isinstance(count, int) or count < 1):
        raise ValueError("count must be a positive integer or null")
    status = int(body.get("status", {"429": 429, "echo": 400}.get(kind, 500)))
    if kind == "5xx" and not 500 <= status <= 599:
        raise ValueError(f"a 5xx fault needs a status in 500..599, got {status}")
    retry_after = body.get("retry_after", 1.0)
    delay = float(body.get("delay", 0.0))
    skip = int(body.get("skip", 0))
    if delay < 0 or skip < 0 or (retry_after is not None and float(retry_after) < 0):
        raise ValueError("delay, skip and retry_after must not be negative")
    field = body.get("field")
    if field is not None and not isinstance(field, str):
        raise ValueError("field must be a string")
    if kind in ("wrong_type", "drop_field") and not field:
        raise ValueError(f"a {kind} fault needs a field (the JSON key to rewrite)")
    if kind == "unknown_field":
        field = field or UNKNOWN_FIELD
    value = body.get("value", "surprise" if kind == "unknown_field" else None)
    return Fault(
        id=fault_id,
        kind=kind,
        count=count,
        path=body.get("path"),
        method=body.get("method"),
        skip=skip,
        status=status,
        retry_after=None if retry_after is None else float(retry_after),
        delay=delay,
        processed=bool(body.get("processed", False)),
        field=field,
        value=value,
    )


@dataclass(frozen=True, slots=True)
class Hang:
    """A request answered by a transport-level failure after ``delay`` seconds (a ``timeout`` fault).

    In-process the sandbox sleeps ``delay`` and raises ``httpx.ReadTimeout``; the HTTP server waits ``delay``
    and closes the connection without an answer, so a client whose read timeout is shorter times out.
    """

    delay: float


def collapse_path(path: str) -> str:
    """The path with id-like segments replaced by ``{id}``: ``/crm/v3/objects/contacts/123`` ->
    ``/crm/v3/objects/contacts/{id}``."""
    return "/".join("{id}" if _ID_SEGMENT.match(seg) else seg for seg in path.split("/"))


def json_response(status: int, data: Any, headers: Mapping[str, str] | None = None) -> httpx.Response:
    """A JSON response (a small helper emulators may reuse)."""
    return httpx.Response(status, json=data, headers=dict(headers or {}))


class Sandbox:
    """An emulator wrapped with control endpoints, statistics and fault injection; an httpx handler.

    Thread-safe: the threaded HTTP server calls it concurrently. Emulator calls are serialised under one
    lock unless the emulator sets ``concurrent = True`` (see :mod:`hub.sandbox.emulator`).

    Args:
        emulator: the vendor emulator.
        sleep: real sleep, for ``delay`` faults and in-process timeouts (injectable in tests).
    """

    def __init__(self, emulator: Emulator, *, sleep: Callable[[float], None] = time.sleep) -> None:
        self.emulator = emulator
        self._sleep = sleep
        self._emulator_lock = threading.RLock()
        self._concurrent = bool(getattr(emulator, "concurrent", False))
        self._state_lock = threading.Lock()
        self._faults: list[Fault] = []
        self._next_fault_id = 1
        self._in_flight = 0
        self._listeners: list[Listener] = []
        self._last_answers: dict[str, httpx.Response] = {}
        self._reset_counters()

    @property
    def vendor(self) -> str:
        """The emulated vendor's connector type."""
        return self.emulator.vendor

    # ------------------------------------------------------------------ handler

    def __call__(self, request: httpx.Request) -> httpx.Response:
        """Answer ``request`` in-process (for ``httpx.MockTransport``).

        Raises:
            httpx.ReadTimeout: when a ``timeout`` fault hits the request.
        """
        result = self.dispatch(request)
        if isinstance(result, Hang):
            if result.delay:
                self._sleep(result.delay)
            raise httpx.ReadTimeout("sandbox fault: timeout", request=request)
        return result

    def dispatch(self, request: httpx.Request) -> httpx.Response | Hang:
        """Answer ``request``: a response, or a :class:`Hang` the caller turns into a transport failure."""
        path = request.url.path
        if path == CONTROL_PREFIX or path.startswith(CONTROL_PREFIX + "/"):
            return self._control(request)
        endpoint = self._endpoint(request)
        for listener in list(self._listeners):
            listener(request, endpoint)
        with self._tracking_in_flight():
            fault = self._take_fault(request)
            result = self._serve(request) if fault is None else self._apply_fault(fault, request, endpoint)
        if isinstance(result, httpx.Response) and not result.extensions.get(_REPEATED):
            with self._state_lock:
                self._last_answers[endpoint] = result
        self._record(request, endpoint, result)
        return result

    def add_listener(self, listener: Listener) -> None:
        """Call ``listener(request, endpoint)`` as each API request arrives, before faults and the emulator.

        For tests and benchmarks that act at a precise point of a run (kill the client at its 40th request,
        expire the tokens mid-run); a listener that injects a fault affects the request it is called for.
        """
        with self._state_lock:
            self._listeners.append(listener)

    def remove_listener(self, listener: Listener) -> None:
        """Stop calling ``listener``."""
        with self._state_lock:
            if listener in self._listeners:
                self._listeners.remove(listener)

    # ------------------------------------------------------------------ in-process control API

    def stats(self) -> dict[str, Any]:
        """The counters, as served by ``GET /_sandbox/stats``."""
        with self._state_lock:
            return {
                "vendor": self.vendor,
                "requests": self._requests,
                "endpoints": dict(sorted(self._endpoints.items())),
                "endpoint_statuses": _nested(self._endpoint_statuses),
                "resources": {
                    name: {"requests": sum(counts.values()), "statuses": dict(sorted(counts.items()))}
                    for name, counts in sorted(self._resource_statuses.items())
                },
                "statuses": dict(sorted(self._statuses.items())),
                "rate_limited": self._statuses.get("429", 0),
                "auth_rejected": self._statuses.get("401", 0) + self._statuses.get("403", 0),
                "faults_injected": dict(sorted(self._faults_injected.items())),
                "emulator_errors": self._emulator_errors,
                "max_in_flight": self._max_in_flight,
            }

    def reset_stats(self) -> None:
        """Zero every counter."""
        with self._state_lock:
            self._reset_counters()

    def reset(self) -> None:
        """Back to the seeded state: the emulator is reset, faults and counters cleared."""
        with self._emulator_call():
            self.emulator.reset()
        with self._state_lock:
            self._faults.clear()
            self._last_answers.clear()
            self._reset_counters()

    def inject(self, fault: Mapping[str, Any]) -> Fault:
        """Inject a fault (see :func:`parse_fault`); ``token_expiry`` expires the tokens at once.

        Raises:
            ValueError: the fault is invalid.
        """
        with self._state_lock:
            parsed = parse_fault(fault, self._next_fault_id)
            self._next_fault_id += 1
        if parsed.kind == "token_expiry":
            with self._emulator_call():
                self.emulator.expire_tokens()
            parsed.injected = 1
            with self._state_lock:
                self._faults_injected["token_expiry"] += 1
            return parsed
        with self._state_lock:
            self._faults.append(parsed)
        return parsed

    def faults(self) -> list[Fault]:
        """The active faults, oldest first."""
        with self._state_lock:
            return list(self._faults)

    def clear_faults(self) -> None:
        """Remove every active fault."""
        with self._state_lock:
            self._faults.clear()

    def mutate(self, fraction: float, delete_fraction: float = 0.0, seed: int = 0) -> dict[str, int]:
        """Have the emulator change ``fraction`` and delete ``delete_fraction`` of its records.

        Raises:
            ValueError: a fraction outside [0, 1].
        """
        for name, value in (("fraction", fraction), ("delete_fraction", delete_fraction)):
            if not 0.0 <= value <= 1.0 or math.isnan(value):
                raise ValueError(f"{name} must be within [0, 1], got {value}")
        with self._emulator_call():
            return dict(self.emulator.mutate(fraction, delete_fraction, random.Random(seed)))

    # ------------------------------------------------------------------ internals

    def _reset_counters(self) -> None:
        self._requests = 0
        self._endpoints: Counter[str] = Counter()
        self._endpoint_statuses: dict[str, Counter[str]] = {}
        self._resource_statuses: dict[str, Counter[str]] = {}
        self._statuses: Counter[str] = Counter()
        self._faults_injected: Counter[str] = Counter()
        self._emulator_errors = 0
        self._max_in_flight = 0

    @contextmanager
    def _tracking_in_flight(self) -> Iterator[None]:
        with self._state_lock:
            self._in_flight += 1
            self._max_in_flight = max(self._max_in_flight, self._in_flight)
        try:
            yield
        finally:
            with self._state_lock:
                self._in_flight -= 1

    def _emulator_call(self) -> threading.RLock | nullcontext[None]:
        return nullcontext() if self._concurrent else self._emulator_lock

    def _serve(self, request: httpx.Request) -> httpx.Response:
        try:
            with self._emulator_call():
                return self.emulator.handle(request)
        except Exception:  # an emulator bug must not kill a server thread; it is logged and counted
            logger.exception("%s emulator failed on %s %s", self.vendor, request.method, request.url.path)
            with self._state_lock:
                self._emulator_errors += 1
            return json_response(500, {"error": "sandbox emulator error (see the sandbox log)"})

    def _give_back(self, fault: Fault) -> None:
        """A rewrite fault that found nothing to rewrite waits for the next matching answer."""
        with self._state_lock:
            fault.injected -= 1
            self._faults_injected[fault.kind] -= 1
            if not self._faults_injected[fault.kind]:
                del self._faults_injected[fault.kind]
            if fault not in self._faults:
                self._faults.insert(0, fault)

    def _take_fault(self, request: httpx.Request) -> Fault | None:
        with self._state_lock:
            for fault in self._faults:
                if not fault.matches(request):
                    continue
                if fault.skip > 0:
                    fault.skip -= 1
                    continue
                fault.injected += 1
                if fault.spent:
                    self._faults.remove(fault)
                self._faults_injected[fault.kind] += 1
                return fault
        return None

    def _apply_fault(self, fault: Fault, request: httpx.Request, endpoint: str) -> httpx.Response | Hang:
        if fault.kind in ("429", "5xx"):
            return self._error(request, fault)
        if fault.kind == "echo":
            # Headers first: clients shorten long error bodies, and the credentials are what this fault is about.
            return json_response(fault.status, {"error": "bad request", "request": {
                "headers": dict(request.headers), "method": request.method, "url": str(request.url)}})
        if fault.kind == "repeat":
            with self._state_lock:
                previous = self._last_answers.get(endpoint)
            if previous is None:  # nothing to repeat yet: this answer is the one a later request gets again
                self._give_back(fault)
                return self._serve(request)
            return httpx.Response(previous.status_code, headers=previous.headers, content=previous.content,
                                  extensions={_REPEATED: True})
        if fault.kind in REWRITE_KINDS:
            response = self._serve(request)
            rewritten = _rewrite(response, fault)
            if rewritten is None:
                self._give_back(fault)
                return response
            return rewritten
        if fault.kind == "timeout":
            if fault.processed:
                self._serve(request)
            return Hang(fault.delay)
        if fault.kind == "delay":
            self._sleep(fault.delay)
            return self._serve(request)
        response = self._serve(request)
        body = _malformed(response.content) if fault.kind == "malformed" else _truncated(response.content)
        headers = {
            k: v
            for k, v in response.headers.items()
            if k.lower() not in ("content-length", "content-encoding")
        }
        return httpx.Response(response.status_code, headers=headers, content=body)

    def _error(self, request: httpx.Request, fault: Fault) -> httpx.Response:
        message = f"sandbox fault: injected {fault.status}"
        hook = getattr(self.emulator, "error_response", None)
        if callable(hook):
            response: httpx.Response = hook(request, fault.status, message)
        else:
            response = json_response(fault.status, {"status": "error", "message": message})
        if fault.status == 429 and fault.retry_after is not None:
            response.headers["Retry-After"] = format_seconds(fault.retry_after)
        return response

    def _endpoint(self, request: httpx.Request) -> str:
        hook = getattr(self.emulator, "endpoint_name", None)
        if callable(hook):
            name = hook(request)
            if name:
                return str(name)
        return f"{request.method} {collapse_path(request.url.path)}"

    def _resource(self, request: httpx.Request) -> str:
        hook = getattr(self.emulator, "resource_name", None)
        if callable(hook):
            name = hook(request)
            if name:
                return str(name)
        return OTHER_RESOURCE

    def _record(self, request: httpx.Request, endpoint: str, result: httpx.Response | Hang) -> None:
        status = "timeout" if isinstance(result, Hang) else str(result.status_code)
        resource = self._resource(request)
        with self._state_lock:
            self._requests += 1
            self._endpoints[endpoint] += 1
            self._endpoint_statuses.setdefault(endpoint, Counter())[status] += 1
            self._resource_statuses.setdefault(resource, Counter())[status] += 1
            self._statuses[status] += 1

    # ------------------------------------------------------------------ control endpoints

    def _control(self, request: httpx.Request) -> httpx.Response:
        route = (request.method.upper(), request.url.path[len(CONTROL_PREFIX) :].rstrip("/"))
        try:
            return self._route(route, request)
        except ValueError as exc:
            return json_response(400, {"error": str(exc)})

    def _route(self, route: tuple[str, str], request: httpx.Request) -> httpx.Response:
        match route:
            case ("GET", "/stats"):
                return json_response(200, self.stats())
            case ("DELETE", "/stats"):
                self.reset_stats()
                return json_response(200, self.stats())
            case ("POST", "/reset"):
                self.reset()
                return json_response(200, {"reset": True})
            case ("GET", "/faults"):
                return json_response(200, {"faults": [f.as_dict() for f in self.faults()]})
            case ("POST", "/faults"):
                return json_response(201, {"fault": self.inject(_json_object(request)).as_dict()})
            case ("DELETE", "/faults"):
                self.clear_faults()
                return json_response(200, {"faults": []})
            case ("POST", "/mutate"):
                return json_response(200, self._mutate(_json_object(request)))
        known = "GET/DELETE /stats, POST /reset, GET/POST/DELETE /faults, POST /mutate"
        return json_response(
            404, {"error": f"no control endpoint {route[0]} {CONTROL_PREFIX}{route[1]} ({known})"}
        )

    def _mutate(self, body: Mapping[str, Any]) -> dict[str, Any]:
        unknown = set(body) - {"fraction", "delete_fraction", "seed"}
        if unknown:
            raise ValueError(f"unknown mutate field(s): {', '.join(sorted(unknown))}")
        try:
            fraction = float(body.get("fraction", 0.01))
            delete_fraction = float(body.get("delete_fraction", 0.0))
            seed = int(body.get("seed", 0))
        except (TypeError, ValueError) as exc:
            raise ValueError(f"fraction, delete_fraction must be numbers and seed an integer: {exc}") from exc
        return {"mutated": self.mutate(fraction, delete_fraction, seed)}


Listener = Callable[[httpx.Request, str], None]
"""Called with each API request and its endpoint name as it arrives (see :meth:`Sandbox.add_listener`)."""


def _nested(counters: Mapping[str, Counter[str]]) -> dict[str, dict[str, int]]:
    return {name: dict(sorted(counts.items())) for name, counts in sorted(counters.items())}


def _rewrite(response: httpx.Response, fault: Fault) -> httpx.Response | None:
    """``response`` with its JSON body rewritten by ``fault``; None when there was nothing to rewrite."""
    if not 200 <= response.status_code < 300:
        return None
    try:
        body = json.loads(response.content)
    except ValueError:
        return None
    assert fault.field is not None  # parse_fault gives every rewrite kind a field
    if not _rewrite_value(body, fault.kind, fault.field, fault.value):
        return None
    headers = {k: v for k, v in response.headers.items() if k.lower() not in ("content-length", "content-encoding")}
    return httpx.Response(response.status_code, headers=headers, content=json.dumps(body).encode())


def _rewrite_value(value: Any, kind: str, field: str, new: Any) -> bool:
    """Rewrite ``value`` in place, depth first; whether anything changed."""
    changed = False
    if isinstance(value, dict):
        if kind == "wrong_type" and field in value:
            value[field] = new
            return True
        if kind == "drop_field" and field in value:
            del value[field]
            changed = True
        children = list(value.values())
        if kind == "unknown_field" and field not in value:
            value[field] = new
            changed = True
    elif isinstance(value, list):
        children = value
    else:
        return False
    for child in children:
        if _rewrite_value(child, kind, field, new):
            changed = True
            if kind == "wrong_type":
                return True
    return changed


def _json_object(request: httpx.Request) -> dict[str, Any]:
    if not request.content.strip():
        return {}
    try:
        data = json.loads(request.content)
    except ValueError as exc:
        raise ValueError(f"the body is not JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise ValueError("the body must be a JSON object")
    return data


def _malformed(body: bytes) -> bytes:
    # Same size and shape as the real answer, but not JSON: what a corrupted payload looks like.
    if b":" in body:
        return body.replace(b":", b"=", 1)
    return b"<html><body>502 Bad Gateway</body></html>"


def _truncated(body: bytes) -> bytes:
    # Cut inside the document, as when a proxy drops the end of a large page; never the complete body.
    return body[: max(len(body) // 2, 1)] if len(body) > 1 else b"{"
