from __future__ import annotations

import base64
import logging
import threading
import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qs

import httpx
import pytest
from pydantic import SecretStr

from hub.errors import ConfigError, HubError
from hub.http.auth import (
    BasicAuth,
    BearerAuth,
    HeaderTokenAuth,
    OAuth2RefreshAuth,
    OAuthToken,
    query_token_request,
)
from hub.http.client import HttpClient, make_client
from hub.http.retry import RetryPolicy
from hub.redact import clear_secrets, redact

TOKEN_URL = "https://api.example.com/oauth/v1/token"
CLIENT_SECRET = "client-secret-value-123"
REFRESH = "refresh-token-value-456"


@pytest.fixture(autouse=True)
def _forget_secrets() -> Iterator[None]:
    clear_secrets()
    yield
    clear_secrets()


class Clock:
    def __init__(self, now: float = 1_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


class OAuthServer:
    """A token endpoint plus an API that accepts only the latest access token."""

    def __init__(self, *, expires_in: int = 1800, rotate: bool = False, delay: float = 0.0) -> None:
        self.issued = 0
        self.valid: set[str] = set()
        self.expires_in = expires_in
        self.rotate = rotate
        self.delay = delay
        self.refresh_token = REFRESH
        self.token_requests: list[httpx.Request] = []
        self.api_auth: list[str] = []
        self._lock = threading.Lock()

    def __call__(self, request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/token"):
            return self._token(request)
        auth = request.headers.get("Authorization", "")
        self.api_auth.append(auth)
        if auth.split(" ", 1)[-1] not in self.valid:
            return httpx.Response(401, json={"message": f"bad token {auth}"})
        return httpx.Response(200, json={"ok": True})

    def _token(self, request: httpx.Request) -> httpx.Response:
        self.token_requests.append(request)
        time.sleep(self.delay)  # widen the race window in the concurrency test
        fields = parse_qs(request.content.decode()) or parse_qs(request.url.query.decode())
        if fields.get("refresh_token") != [self.refresh_token]:
            return httpx.Response(400, json={"error": "invalid_grant", "error_description": "unknown token"})
        with self._lock:
            self.issued += 1
            token = f"access-token-{self.issued:04d}"
            self.valid = {token}
        body: dict[str, Any] = {"access_token": token, "expires_in": self.expires_in, "token_type": "bearer"}
        if self.rotate:
            self.refresh_token = f"rotated-refresh-{self.issued:04d}"
            body["refresh_token"] = self.refresh_token
        return httpx.Response(200, json=body)


def oauth(clock: Clock, **kw: Any) -> OAuth2RefreshAuth:
    return OAuth2RefreshAuth(
        TOKEN_URL, "client-id", SecretStr(CLIENT_SECRET), SecretStr(REFRESH), clock=clock, **kw
    )


def client(server: Any, auth: httpx.Auth) -> HttpClient:
    return make_client(
        "https://api.example.com",
        auth=auth,
        transport=httpx.MockTransport(server),
        retry=RetryPolicy(sleep=lambda s: None),
    )


def test_static_auths_set_their_headers_and_register_the_secret() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200)

    for auth in (
        BearerAuth(SecretStr("pat-abcdef")),
        BasicAuth("anystring", SecretStr("key-abcdef-us21")),
        HeaderTokenAuth("X-Shopify-Access-Token", SecretStr("shpat_abcdef")),
    ):
        client(handler, auth).get("/x")
    assert seen[0].headers["Authorization"] == "Bearer pat-abcdef"
    basic = base64.b64decode(seen[1].headers["Authorization"].split()[1]).decode()
    assert basic == "anystring:key-abcdef-us21"
    assert seen[2].headers["X-Shopify-Access-Token"] == "shpat_abcdef"
    assert redact("pat-abcdef key-abcdef-us21 shpat_abcdef") == "*** *** ***"
    assert redact(seen[1].headers["Authorization"].split()[1]) == "***"


def test_first_request_fetches_a_token_with_the_form_shape() -> None:
    server = OAuthServer()
    auth = oauth(Clock())
    assert client(server, auth).get("/crm").json() == {"ok": True}
    (token_request,) = server.token_requests
    assert token_request.method == "POST"
    assert token_request.headers["Content-Type"] == "application/x-www-form-urlencoded"
    fields = parse_qs(token_request.content.decode())
    assert fields["grant_type"] == ["refresh_token"] and fields["client_id"] == ["client-id"]
    assert server.api_auth == ["Bearer access-token-0001"]


def test_refreshes_ahead_of_expiry_with_a_60_second_margin() -> None:
    server = OAuthServer(expires_in=1800)
    clock = Clock()
    http = client(server, oauth(clock))
    http.get("/a")
    clock.now += 1800 - 61
    http.get("/b")
    assert server.issued == 1  # still more than 60 s left
    clock.now += 2
    http.get("/c")
    assert server.issued == 2  # inside the margin: refreshed before the request, no 401 seen
    assert all(not a.endswith("0001") for a in server.api_auth[2:])
    assert len(server.api_auth) == 3


def test_one_refresh_and_retry_on_401() -> None:
    server = OAuthServer()
    clock = Clock()
    auth = oauth(clock, access_token=SecretStr("revoked-early-token"), expires_at=clock.now + 3600)
    http = client(server, auth)
    assert http.get("/x").status_code == 200
    assert server.api_auth == ["Bearer revoked-early-token", "Bearer access-token-0001"]
    assert server.issued == 1


def test_a_second_401_is_a_config_error_not_a_loop() -> None:
    server = OAuthServer()

    def always_401(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/token"):
            return server(request)
        return httpx.Response(401)

    with pytest.raises(ConfigError):
        client(always_401, oauth(Clock())).get("/x")
    assert server.issued == 2  # the first token, then exactly one refresh on the 401


def test_concurrent_threads_refresh_once() -> None:
    server = OAuthServer(delay=0.05)
    auth = oauth(Clock())
    http = client(server, auth)
    barrier = threading.Barrier(8)
    results: list[int] = []

    def stream() -> None:
        barrier.wait()
        results.append(http.get("/x").status_code)

    workers = [threading.Thread(target=stream) for _ in range(8)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(5)
    assert results == [200] * 8
    assert len(server.token_requests) == 1
    assert auth.refreshes == 1


def test_invalid_grant_is_a_config_error_without_secrets(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    server = OAuthServer()
    server.refresh_token = "something-else"
    with pytest.raises(ConfigError) as info:
        client(server, oauth(Clock())).get("/x")
    message = str(info.value)
    assert "invalid_grant" in message and "re-authorise" in message
    hub_logs = "\n".join(r.getMessage() for r in caplog.records if r.name.startswith("hub."))
    for secret in (CLIENT_SECRET, REFRESH):
        assert secret not in message
        assert secret not in hub_logs


def test_token_endpoint_outage_is_retried() -> None:
    server = OAuthServer()
    calls = {"n": 0}

    def flaky(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/token"):
            calls["n"] += 1
            if calls["n"] == 1:
                return httpx.Response(503)
        return server(request)

    assert client(flaky, oauth(Clock())).get("/x").status_code == 200
    assert calls["n"] == 2


def test_zoho_shape_query_params_scheme_and_200_error() -> None:
    server = OAuthServer()
    auth = oauth(Clock(), build_token_request=query_token_request, scheme="Zoho-oauthtoken")
    client(server, auth).get("/crm/v8/Contacts")
    (token_request,) = server.token_requests
    assert parse_qs(token_request.url.query.decode())["grant_type"] == ["refresh_token"]
    assert server.api_auth == ["Zoho-oauthtoken access-token-0001"]

    def zoho_says_no(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json={"error": "invalid_code"})

    with pytest.raises(ConfigError, match="invalid_code"):
        client(zoho_says_no, oauth(Clock(), build_token_request=query_token_request)).get("/x")


def test_rotated_refresh_token_is_persisted_and_used() -> None:
    server = OAuthServer(rotate=True, expires_in=100)
    clock = Clock()
    rotated: list[str] = []
    tokens: list[OAuthToken] = []
    auth = oauth(clock, on_rotate=lambda t: rotated.append(t.get_secret_value()), on_token=tokens.append)
    http = client(server, auth)
    http.get("/a")
    clock.now += 100
    http.get("/b")  # refreshes with the rotated token; the server would reject the old one
    assert rotated == ["rotated-refresh-0001", "rotated-refresh-0002"]
    assert [t.extra.get("token_type") for t in tokens] == ["bearer", "bearer"]
    assert all("access_token" not in t.extra and "refresh_token" not in t.extra for t in tokens)
    assert redact("rotated-refresh-0001 access-token-0002") == "*** ***"


def test_no_token_reaches_error_text() -> None:
    server = OAuthServer()

    def echo_403(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/token"):
            return server(request)
        return httpx.Response(403, text=f"scope missing for {request.headers['Authorization']}")

    with pytest.raises(HubError) as info:
        client(echo_403, oauth(Clock())).get("/x")
    assert "access-token-0001" not in str(info.value)
    assert "scope" in str(info.value)


def test_a_token_answer_that_arrives_as_a_stream_is_read() -> None:
    # Over a real connection httpx hands the auth flow an unread (streamed) response; MockTransport answers are
    # read already, which once hid that the refresh never read the token answer.
    server = OAuthServer()

    def streaming(request: httpx.Request) -> httpx.Response:
        answer = server(request)
        return httpx.Response(answer.status_code, headers=answer.headers, stream=httpx.ByteStream(answer.content))

    assert client(streaming, oauth(Clock())).get("/crm").json() == {"ok": True}
    assert server.api_auth == ["Bearer access-token-0001"]
