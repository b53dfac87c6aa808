from __future__ import annotations

import logging
from collections.abc import Callable, Iterator

import httpx
import pytest
from pydantic import SecretStr

from hub.errors import ConfigError, HubError, TransientError
from hub.http.auth import BearerAuth
from hub.http.client import HttpClient, make_client
from hub.http.errors import HttpError, NotFoundError
from hub.http.pacer import Pacer, RateLimitHeaders, WindowLimit
from hub.http.retry import NO_RETRY, RetryPolicy
from hub.redact import clear_secrets

TOKEN = "pat-na1-0123456789abcdef"
API_KEY = "mc-key-0123456789abcdef-us21"

Handler = Callable[[httpx.Request], httpx.Response]


@pytest.fixture(autouse=True)
def _forget_secrets() -> Iterator[None]:
    clear_secrets()
    yield
    clear_secrets()


class Sleeps:
    """Records waits instead of sleeping."""

    def __init__(self) -> None:
        self.waits: list[float] = []

    def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)


def scripted(*steps: httpx.Response | Exception) -> tuple[Handler, list[httpx.Request]]:
    """A handler answering with ``steps`` in order; an unmatched extra request fails the test."""
    seen: list[httpx.Request] = []
    queue = list(steps)

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        assert queue, f"unexpected extra request {request.method} {request.url}"
        step = queue.pop(0)
        if isinstance(step, Exception):
            raise step
        return step

    return handler, seen


def client_for(handler: Handler, sleeps: Sleeps, **kw: object) -> HttpClient:
    policy = RetryPolicy(max_attempts=4, initial_wait=1.0, max_wait=8.0, sleep=sleeps, uniform=lambda a, b: b)
    return make_client(
        "https://api.example.com/v3",
        transport=httpx.MockTransport(handler),
        auth=BearerAuth(SecretStr(TOKEN)),
        retry=policy,
        **kw,  # type: ignore[arg-type]
    )


def test_429_retry_after_is_honoured() -> None:
    handler, seen = scripted(
        httpx.Response(429, headers={"Retry-After": "3"}),
        httpx.Response(429, headers={"Retry-After": "5"}),
        httpx.Response(200, json={"ok": True}),
    )
    sleeps = Sleeps()
    client = client_for(handler, sleeps)
    response = client.get("/contacts", params={"limit": 100})
    assert response.json() == {"ok": True}
    assert sleeps.waits == [3.0, 5.0]
    assert len(seen) == 3
    assert str(seen[0].url) == "https://api.example.com/v3/contacts?limit=100"
    assert client.stats()["responses_429"] == 2
    assert client.stats()["retries"] == 2
    assert client.stats()["requests"] == 3


def test_5xx_then_success_uses_growing_backoff() -> None:
    handler, _ = scripted(httpx.Response(503), httpx.Response(502), httpx.Response(500), httpx.Response(200))
    sleeps = Sleeps()
    assert client_for(handler, sleeps).get("/x").status_code == 200
    assert sleeps.waits == [1.0, 2.0, 4.0]  # uniform() returns its upper bound here


def test_backoff_jitter_stays_in_bounds() -> None:
    policy = RetryPolicy(initial_wait=2.0, max_wait=10.0)
    for n in range(1, 8):
        step = min(10.0, 2.0 * 2 ** (n - 1))
        for _ in range(20):
            assert step / 2 <= policy.backoff(n) <= step


def test_transport_errors_are_retried() -> None:
    handler, seen = scripted(
        httpx.ConnectError("connection refused"),
        httpx.ReadTimeout("timed out"),
        httpx.Response(200, json=[]),
    )
    sleeps = Sleeps()
    client = client_for(handler, sleeps)
    assert client.get("/x").json() == []
    assert len(seen) == 3 and len(sleeps.waits) == 2
    assert client.stats()["transport_errors"] == 2


def test_cap_reached_raises_transient_error_not_httpx() -> None:
    handler, seen = scripted(*[httpx.Response(503, headers={"Retry-After": "2"}) for _ in range(4)])
    sleeps = Sleeps()
    with pytest.raises(TransientError) as info:
        client_for(handler, sleeps).get("/x")
    assert info.value.retry_after == 2.0
    assert len(seen) == 4
    assert sleeps.waits == [2.0, 2.0, 2.0]


def test_transport_error_cap_raises_transient_error() -> None:
    handler, _ = scripted(*[httpx.ConnectTimeout("slow") for _ in range(4)])
    with pytest.raises(TransientError) as info:
        client_for(handler, Sleeps()).get("/x")
    assert not isinstance(info.value, httpx.HTTPError)
    assert "ConnectTimeout" in str(info.value)


def test_long_retry_after_gives_up_at_once_for_the_scheduler() -> None:
    handler, seen = scripted(httpx.Response(429, headers={"Retry-After": "86400"}))
    sleeps = Sleeps()
    with pytest.raises(TransientError) as info:
        client_for(handler, sleeps).get("/x")
    assert info.value.retry_after == 86400.0
    assert sleeps.waits == [] and len(seen) == 1


def test_total_wait_cap() -> None:
    handler, seen = scripted(*[httpx.Response(503, headers={"Retry-After": "40"}) for _ in range(3)])
    sleeps = Sleeps()
    policy = RetryPolicy(max_attempts=10, max_total_wait=100.0, sleep=sleeps)
    client = make_client("https://a.example", transport=httpx.MockTransport(handler), retry=policy)
    with pytest.raises(TransientError):
        client.get("/x")
    assert sleeps.waits == [40.0, 40.0]
    assert len(seen) == 3


def test_401_is_config_error_without_retry() -> None:
    handler, seen = scripted(httpx.Response(401, json={"message": "token expired"}))
    sleeps = Sleeps()
    with pytest.raises(ConfigError) as info:
        client_for(handler, sleeps).get("/x")
    assert "401" in str(info.value)
    assert len(seen) == 1 and sleeps.waits == []


def test_404_raises_not_found_unless_allowed() -> None:
    handler, _ = scripted(httpx.Response(404), httpx.Response(404))
    client = client_for(handler, Sleeps())
    with pytest.raises(NotFoundError):
        client.get("/missing")
    assert client.get("/missing", allow_statuses={404}).status_code == 404


def test_400_is_http_error_not_retried() -> None:
    handler, seen = scripted(httpx.Response(400, json={"message": "bad filter"}))
    with pytest.raises(HttpError) as info:
        client_for(handler, Sleeps()).post("/search", json={"filters": []})
    assert info.value.status == 400 and "bad filter" in str(info.value)
    assert len(seen) == 1


def test_no_retry_policy_for_non_idempotent_writes() -> None:
    handler, seen = scripted(httpx.Response(503))
    with pytest.raises(TransientError):
        client_for(handler, Sleeps()).post("/orders", json={}, retry=NO_RETRY)
    assert len(seen) == 1


def test_status_override_turns_a_200_into_a_retried_wait() -> None:
    def override(response: httpx.Response) -> HubError | None:
        if response.status_code == 200 and "THROTTLED" in response.text:
            return TransientError("throttled", retry_after=1.5)
        return None

    handler, _ = scripted(
        httpx.Response(200, json={"errors": [{"extensions": {"code": "THROTTLED"}}]}),
        httpx.Response(200, json={"data": {}}),
    )
    sleeps = Sleeps()
    assert client_for(handler, sleeps, status_override=override).post("/graphql.json").json() == {"data": {}}
    assert sleeps.waits == [1.5]


def test_truncated_json_body_is_retried_when_expected() -> None:
    handler, _ = scripted(
        httpx.Response(200, content=b'{"results": [1, 2'),
        httpx.Response(200, json={"results": [1, 2]}),
    )
    sleeps = Sleeps()
    assert client_for(handler, sleeps).get("/x", expect_json=True).json() == {"results": [1, 2]}
    assert len(sleeps.waits) == 1


def test_no_secret_in_exception_text_or_logs(caplog: pytest.LogCaptureFixture) -> None:
    # The server echoes the credentials back in its error bodies, as some do.
    def handler(request: httpx.Request) -> httpx.Response:
        echoed = f"auth={request.headers['Authorization']} key={request.url.params.get('apikey')}"
        status = 503 if request.url.path.endswith("/flaky") else 401
        return httpx.Response(status, text=echoed)

    caplog.set_level(logging.DEBUG)
    client = client_for(handler, Sleeps())
    errors: list[str] = []
    for path in ("/flaky", "/denied"):
        with pytest.raises(HubError) as info:
            client.get(path, params={"apikey": API_KEY})
        errors.append(str(info.value))
    # Only the hub's own loggers: httpx's "HTTP Request" line is masked by the hub's logging filter (and the
    # daemon's log setup quiets httpx), which this unit test does not install.
    hub_lines = [r.getMessage() for r in caplog.records if r.name.startswith("hub.")]
    text = "\n".join([*errors, *hub_lines])
    assert "Bearer ***" in text or "***" in text
    assert TOKEN not in text
    assert API_KEY not in text
    assert "retrying GET" in text  # the retry warnings are there, sanitized
    assert any(r.levelno == logging.WARNING for r in caplog.records)


def test_one_log_line_per_request(caplog: pytest.LogCaptureFixture) -> None:
    handler, _ = scripted(httpx.Response(200))
    caplog.set_level(logging.INFO, logger="hub.http.client")
    client_for(handler, Sleeps()).get("/contacts", params={"after": "5"})
    lines = [r.getMessage() for r in caplog.records if r.name == "hub.http.client"]
    assert len(lines) == 1
    assert lines[0].startswith("GET https://api.example.com/v3/contacts?after=5 -> 200 (")
    assert lines[0].endswith(" ms)")


def test_429_pauses_the_whole_account_and_headers_feed_the_pacer() -> None:
    now = [0.0]
    pacer = Pacer.single(
        WindowLimit(100, 10), clock=lambda: now[0], sleep=lambda s: now.__setitem__(0, now[0] + s)
    )
    hubspot = RateLimitHeaders(
        remaining="X-HubSpot-RateLimit-Remaining",
        limit="X-HubSpot-RateLimit-Max",
        window_ms="X-HubSpot-RateLimit-Interval-Milliseconds",
        reset_s=None,
    )
    headers = {
        "X-HubSpot-RateLimit-Remaining": "40",
        "X-HubSpot-RateLimit-Max": "190",
        "X-HubSpot-RateLimit-Interval-Milliseconds": "10000",
    }
    handler, _ = scripted(
        httpx.Response(429, headers={"Retry-After": "4"}), httpx.Response(200, headers=headers)
    )
    client = client_for(handler, Sleeps(), pacer=pacer, rate_limit_headers=hubspot)
    client.get("/x")
    snap = pacer.snapshot()["buckets"]["default"]
    assert snap["limit"] == 190.0
    assert snap["used"] == 150.0  # 190 - 40 as the server counts it
    # The retry slept 4 s on the policy's (fake) sleep; the pacer's own clock had not moved, so it was paused.
    assert now[0] == pytest.approx(4.0)


def test_concurrency_slot_is_held_during_the_request() -> None:
    pacer = Pacer.single(WindowLimit(1000, 1), max_concurrent=1)
    inside: list[bool] = []

    def handler(request: httpx.Request) -> httpx.Response:
        # With one slot taken by this request, a second acquire must fail.
        inside.append(pacer._slots is not None and not pacer._slots.acquire(blocking=False))
        return httpx.Response(200)

    client = client_for(handler, Sleeps(), pacer=pacer)
    client.get("/x")
    assert inside == [True]


def test_user_agent_and_timeout_are_set() -> None:
    handler, seen = scripted(httpx.Response(200))
    client = client_for(handler, Sleeps())
    client.get("/x")
    assert seen[0].headers["User-Agent"].startswith("audience-hub/")
    assert client.http.timeout.connect == 10 and client.http.timeout.read == 30


def test_a_rate_limit_storm_with_retry_after_is_waited_out_beyond_max_attempts() -> None:
    storm = [httpx.Response(429, headers={"Retry-After": "1"}) for _ in range(7)]
    handler, seen = scripted(*storm, httpx.Response(200, json={"ok": True}))
    sleeps = Sleeps()
    assert client_for(handler, sleeps).get("/x").json() == {"ok": True}
    assert len(seen) == 8 and sleeps.waits == [1.0] * 7


def test_failures_without_a_named_wait_still_stop_at_max_attempts_even_between_429s() -> None:
    mixed = [httpx.Response(429, headers={"Retry-After": "1"}), httpx.Response(503)] * 4
    handler, seen = scripted(*mixed)
    with pytest.raises(TransientError):
        client_for(handler, Sleeps()).get("/x")
    assert [r.status_code for r in mixed[: len(seen)]].count(503) == 4  # the 4th plain failure ends it
