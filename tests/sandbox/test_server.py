"""The sandbox over real HTTP on 127.0.0.1: vendor paths at the root, control endpoints, faults."""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator

import httpx
import pytest

from hub.sandbox.control import Sandbox
from hub.sandbox.server import SandboxServer, SandboxServers

from . import ToyEmulator, make_sandbox, token


@pytest.fixture
def served() -> Iterator[tuple[str, Sandbox, ToyEmulator]]:
    sandbox, emulator = make_sandbox()
    with SandboxServers({"toy": sandbox}) as servers:
        yield servers.base_urls["toy"], sandbox, emulator


@pytest.fixture
def client(served: tuple[str, Sandbox, ToyEmulator]) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=served[0], timeout=httpx.Timeout(5, connect=2)) as c:
        c.headers["Authorization"] = f"Bearer {token(c)}"
        yield c


def test_vendor_paths_at_the_root_and_pagination(client: httpx.Client) -> None:
    ids: list[int] = []
    after = None
    for _ in range(10):
        page = client.get("/v1/contacts", params={"after": after} if after else None).json()
        ids += [c["id"] for c in page["results"]]
        after = page.get("paging", {}).get("next", {}).get("after")
        if after is None:
            break
    assert ids == [1, 2, 3, 4, 5]


def test_methods_and_bodies_round_trip(client: httpx.Client) -> None:
    payload = {"tags": ["hub:vip"], "ünïcode": "✓"}
    for method in ("POST", "PUT", "PATCH"):
        r = client.request(method, "/v1/echo", json=payload)
        assert r.status_code == 200
        assert r.json() == payload
    assert client.delete("/v1/echo").json() == {"method": "DELETE"}
    head = client.head("/v1/contacts/1")
    assert head.status_code == 200
    assert head.content == b""
    assert int(head.headers["Content-Length"]) > 0


def test_chunked_request_body_is_read(client: httpx.Client) -> None:
    def chunks() -> Iterator[bytes]:
        yield b'{"a": '
        yield b"1}"

    r = client.post("/v1/echo", content=chunks(), headers={"Content-Type": "application/json"})
    assert r.json() == {"a": 1}


def test_keep_alive_reuses_one_connection(served: tuple[str, Sandbox, ToyEmulator]) -> None:
    host, port = served[0].removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=5) as sock:
        request = f"POST /oauth/token HTTP/1.1\r\nHost: {host}\r\nContent-Length: 0\r\n\r\n".encode()
        stream = sock.makefile("rb")
        for _ in range(3):
            sock.sendall(request)
            status = stream.readline()
            assert status.startswith(b"HTTP/1.1 200")
            length = 0
            while (line := stream.readline()) not in (b"\r\n", b""):
                name, _, value = line.decode().partition(":")
                if name.lower() == "content-length":
                    length = int(value)
            assert json.loads(stream.read(length))["access_token"].startswith("tok-")
    assert served[1].stats()["endpoints"]["POST /oauth/token"] == 3


def test_stats_and_faults_over_http(client: httpx.Client) -> None:
    assert client.post("/_sandbox/faults", json={"kind": "429", "retry_after": 2}).status_code == 201
    limited = client.get("/v1/contacts")
    assert limited.status_code == 429
    assert limited.headers["Retry-After"] == "2"
    client.post("/_sandbox/faults", json={"kind": "truncated"})
    with pytest.raises(json.JSONDecodeError):
        client.get("/v1/contacts").json()
    stats = client.get("/_sandbox/stats").json()
    assert stats["rate_limited"] == 1
    assert stats["faults_injected"] == {"429": 1, "truncated": 1}


def test_timeout_fault_times_the_client_out(client: httpx.Client) -> None:
    client.post("/_sandbox/faults", json={"kind": "timeout", "delay": 3})
    started = time.monotonic()
    with pytest.raises(httpx.ReadTimeout):
        client.get("/v1/contacts", timeout=httpx.Timeout(0.3, connect=2))
    assert time.monotonic() - started < 2
    assert client.get("/v1/contacts").status_code == 200  # a fresh connection works


def test_timeout_without_delay_drops_the_connection(client: httpx.Client) -> None:
    client.post("/_sandbox/faults", json={"kind": "timeout"})
    with pytest.raises(httpx.TransportError):
        client.get("/v1/contacts")


def test_several_sandboxes_on_their_own_ports() -> None:
    (a, _), (b, _) = make_sandbox(), make_sandbox()
    with SandboxServers({"one": a, "two": b}) as servers:
        urls = servers.base_urls
        assert urls["one"] != urls["two"]
        for url in urls.values():
            assert httpx.post(f"{url}/oauth/token").status_code == 200
    assert a.stats()["requests"] == b.stats()["requests"] == 1


def test_stop_is_quick_with_a_hung_request_and_idle_keep_alive() -> None:
    sandbox, _ = make_sandbox()
    server = SandboxServer(sandbox)
    url = server.start()
    idle = httpx.Client(base_url=url)
    idle.post("/oauth/token")  # leaves a keep-alive connection open
    sandbox.inject({"kind": "timeout", "delay": 30})
    hung = socket.create_connection(("127.0.0.1", int(url.rsplit(":", 1)[1])))
    hung.sendall(b"GET /v1/contacts HTTP/1.1\r\nHost: x\r\n\r\n")
    time.sleep(0.1)
    started = time.monotonic()
    server.stop()
    assert time.monotonic() - started < 3
    with pytest.raises(httpx.TransportError):
        httpx.get(f"{url}/v1/contacts", timeout=1)
    hung.close()
    idle.close()


def test_a_client_that_goes_away_mid_request_leaves_no_traceback(
    served: tuple[str, Sandbox, ToyEmulator], capfd: pytest.CaptureFixture[str]
) -> None:
    host, port = served[0].removeprefix("http://").split(":")
    for _ in range(3):
        raw = socket.create_connection((host, int(port)))
        raw.sendall(b"GET /v1/contacts HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{")
        raw.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        raw.close()  # a reset, as when the client process is killed
    time.sleep(0.3)
    with httpx.Client(base_url=served[0]) as c:
        assert c.post("/oauth/token").status_code == 200  # still serving
    assert "Traceback" not in capfd.readouterr().err
