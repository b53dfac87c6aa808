"""The Sandbox wrapper in-process: stats, faults, reset and mutate through httpx.MockTransport."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator

import httpx
import pytest

from hub.sandbox.control import Sandbox, collapse_path
from hub.sandbox.emulator import Emulator, SandboxClock

from . import ToyEmulator, make_sandbox, token


@pytest.fixture
def toy() -> tuple[Sandbox, ToyEmulator]:
    return make_sandbox()


@pytest.fixture
def client(toy: tuple[Sandbox, ToyEmulator]) -> Iterator[httpx.Client]:
    with httpx.Client(transport=httpx.MockTransport(toy[0]), base_url="https://api.toy.test") as c:
        yield c


def authed(client: httpx.Client) -> httpx.Client:
    client.headers["Authorization"] = f"Bearer {token(client)}"
    return client


def test_toy_satisfies_the_protocol(toy: tuple[Sandbox, ToyEmulator]) -> None:
    assert isinstance(toy[1], Emulator)
    assert toy[0].vendor == "toy"


def test_stats_count_endpoints_statuses_and_auth_rejections(client: httpx.Client) -> None:
    assert client.get("/v1/contacts").status_code == 401
    client.headers["Authorization"] = "Bearer forbidden"
    assert client.get("/v1/contacts").status_code == 403
    authed(client)
    assert client.get("/v1/contacts/3").status_code == 200
    assert client.get("/v1/contacts/99").status_code == 404
    stats = client.get("/_sandbox/stats").json()
    assert stats["endpoints"] == {
        "GET /v1/contacts": 2,
        "GET /v1/contacts/{id}": 2,
        "POST /oauth/token": 1,
    }
    assert stats["statuses"] == {"200": 2, "401": 1, "403": 1, "404": 1}
    assert stats["auth_rejected"] == 2
    assert stats["rate_limited"] == 0
    assert stats["requests"] == 5  # control requests are not counted
    assert stats["emulator_errors"] == 0


def test_emulator_rate_limit_shows_as_429s_in_stats() -> None:
    sandbox, _ = make_sandbox(limit=2)
    with httpx.Client(transport=httpx.MockTransport(sandbox), base_url="https://t") as client:
        authed(client)
        statuses = [client.get("/v1/contacts").status_code for _ in range(4)]
        assert statuses == [200, 200, 429, 429]
    assert sandbox.stats()["rate_limited"] == 2


def test_collapse_path_keeps_words_and_versions() -> None:
    assert collapse_path("/crm/v3/objects/contacts/123") == "/crm/v3/objects/contacts/{id}"
    assert collapse_path("/admin/api/2025-01/graphql.json") == "/admin/api/2025-01/graphql.json"
    assert collapse_path("/3.0/lists/57afe96172/members/9d4b4a1e8a8f0d6f1e2c3b4a5d6e7f80") == (
        "/3.0/lists/{id}/members/{id}"
    )
    assert collapse_path("/lists/deadline/batch") == "/lists/deadline/batch"


def test_429_fault_has_retry_after_and_expires_after_count(client: httpx.Client) -> None:
    authed(client)
    r = client.post("/_sandbox/faults", json={"kind": "429", "count": 2, "retry_after": 1.5})
    assert r.status_code == 201
    first, second, third = (client.get("/v1/contacts") for _ in range(3))
    assert (first.status_code, second.status_code, third.status_code) == (429, 429, 200)
    assert first.headers["Retry-After"] == "1.5"
    stats = client.get("/_sandbox/stats").json()
    assert stats["faults_injected"] == {"429": 2}
    assert stats["rate_limited"] == 2
    assert client.get("/_sandbox/faults").json() == {"faults": []}


@pytest.mark.parametrize("status", [500, 502, 503])
def test_5xx_fault_uses_the_status(client: httpx.Client, status: int) -> None:
    authed(client)
    client.post("/_sandbox/faults", json={"kind": "5xx", "status": status})
    assert client.get("/v1/contacts").status_code == status
    assert client.get("/v1/contacts").status_code == 200


def test_error_response_hook_shapes_injected_errors(toy: tuple[Sandbox, ToyEmulator]) -> None:
    sandbox, emulator = toy

    def vendor_error(request: httpx.Request, status: int, message: str) -> httpx.Response:
        return httpx.Response(status, json={"category": "RATE_LIMITS"})

    emulator.error_response = vendor_error  # type: ignore[attr-defined]
    sandbox.inject({"kind": "429"})
    response = sandbox(httpx.Request("GET", "https://t/v1/contacts"))
    assert response.json() == {"category": "RATE_LIMITS"}
    assert response.headers["Retry-After"] == "1"


def test_timeout_fault_raises_read_timeout_in_process(client: httpx.Client) -> None:
    authed(client)
    client.post("/_sandbox/faults", json={"kind": "timeout"})
    with pytest.raises(httpx.ReadTimeout):
        client.get("/v1/contacts")
    assert client.get("/v1/contacts").status_code == 200
    assert client.get("/_sandbox/stats").json()["statuses"]["timeout"] == 1


def test_processed_timeout_applies_the_write(toy: tuple[Sandbox, ToyEmulator], client: httpx.Client) -> None:
    client.post("/_sandbox/faults", json={"kind": "timeout", "processed": True, "path": "/oauth"})
    with pytest.raises(httpx.ReadTimeout):
        client.post("/oauth/token")
    assert toy[1].tokens == {"tok-1"}  # the server issued it although the client never saw it


@pytest.mark.parametrize("kind", ["malformed", "truncated"])
def test_corrupt_body_faults_fail_json_decoding(client: httpx.Client, kind: str) -> None:
    authed(client)
    good = client.get("/v1/contacts").content
    client.post("/_sandbox/faults", json={"kind": kind})
    bad = client.get("/v1/contacts")
    assert bad.status_code == 200
    assert bad.content != good
    with pytest.raises(json.JSONDecodeError):
        bad.json()
    assert client.get("/v1/contacts").json()["results"]


def test_token_expiry_fault_calls_the_hook(toy: tuple[Sandbox, ToyEmulator], client: httpx.Client) -> None:
    authed(client)
    assert client.get("/v1/contacts").status_code == 200
    r = client.post("/_sandbox/faults", json={"kind": "token_expiry"})
    assert r.json()["fault"]["kind"] == "token_expiry"
    assert toy[1].expired_calls == 1
    assert client.get("/v1/contacts").status_code == 401
    assert client.get("/_sandbox/stats").json()["faults_injected"] == {"token_expiry": 1}


def test_fault_path_method_and_skip_filters(client: httpx.Client) -> None:
    authed(client)
    client.post("/_sandbox/faults", json={"kind": "5xx", "path": "/v1/contacts/", "method": "GET", "skip": 1})
    assert client.get("/v1/contacts").status_code == 200  # path prefix does not match
    assert client.post("/v1/echo", json={}).status_code == 200
    assert client.get("/v1/contacts/1").status_code == 200  # skipped
    assert client.get("/v1/contacts/2").status_code == 500
    assert client.get("/v1/contacts/2").status_code == 200


def test_unlimited_fault_until_cleared(client: httpx.Client) -> None:
    authed(client)
    client.post("/_sandbox/faults", json={"kind": "5xx", "count": None})
    assert [client.get("/v1/contacts").status_code for _ in range(3)] == [500, 500, 500]
    assert client.delete("/_sandbox/faults").status_code == 200
    assert client.get("/v1/contacts").status_code == 200


def test_delay_fault_sleeps_then_answers() -> None:
    slept: list[float] = []
    sandbox, _ = make_sandbox()
    sandbox._sleep = slept.append
    sandbox.inject({"kind": "delay", "delay": 0.25, "path": "/oauth"})
    assert sandbox(httpx.Request("POST", "https://t/oauth/token")).status_code == 200
    assert slept == [0.25]


@pytest.mark.parametrize(
    "body",
    [
        {"kind": "flood"},
        {"kind": "5xx", "status": 404},
        {"kind": "429", "count": 0},
        {"kind": "429", "oops": 1},
    ],
)
def test_bad_fault_is_a_400(client: httpx.Client, body: dict[str, object]) -> None:
    r = client.post("/_sandbox/faults", json=body)
    assert r.status_code == 400
    assert "error" in r.json()


def test_reset_restores_seeded_state_and_clears_stats(
    toy: tuple[Sandbox, ToyEmulator], client: httpx.Client
) -> None:
    authed(client)
    client.post("/_sandbox/mutate", json={"fraction": 0, "delete_fraction": 1.0, "seed": 3})
    assert client.get("/v1/contacts").json()["results"] == []
    client.post("/_sandbox/faults", json={"kind": "429", "count": None})
    assert client.post("/_sandbox/reset").json() == {"reset": True}
    assert client.get("/_sandbox/stats").json()["requests"] == 0
    assert client.get("/_sandbox/faults").json() == {"faults": []}
    assert client.get("/v1/contacts").status_code == 401  # tokens are gone with the reset
    authed(client)
    assert len(client.get("/v1/contacts").json()["results"]) == 2


def test_mutate_passes_fractions_and_a_seeded_rng(
    toy: tuple[Sandbox, ToyEmulator], client: httpx.Client
) -> None:
    r = client.post("/_sandbox/mutate", json={"fraction": 0.4, "delete_fraction": 0.2, "seed": 7})
    assert r.json() == {"mutated": {"contacts_changed": 2, "contacts_deleted": 1}}
    assert toy[1].mutations == [(0.4, 0.2)]
    versions = {i: c["version"] for i, c in toy[1].contacts.items()}
    other, other_toy = make_sandbox()
    other.mutate(0.4, 0.2, seed=7)
    assert {i: c["version"] for i, c in other_toy.contacts.items()} == versions  # same seed, same records


@pytest.mark.parametrize("body", [{"fraction": 1.5}, {"fraction": -0.1}, {"fraction": "x"}, {"frac": 0.1}])
def test_bad_mutate_is_a_400(client: httpx.Client, body: dict[str, object]) -> None:
    assert client.post("/_sandbox/mutate", json=body).status_code == 400


def test_unknown_control_endpoint_and_bad_json(client: httpx.Client) -> None:
    assert client.get("/_sandbox/nope").status_code == 404
    r = client.post("/_sandbox/faults", content=b"{not json")
    assert r.status_code == 400


def test_stats_can_be_zeroed(client: httpx.Client) -> None:
    client.get("/v1/contacts")
    assert client.delete("/_sandbox/stats").json()["requests"] == 0


def test_emulator_exception_becomes_a_counted_500(toy: tuple[Sandbox, ToyEmulator]) -> None:
    sandbox, emulator = toy

    def boom(request: httpx.Request) -> httpx.Response:
        raise RuntimeError("bug")

    emulator.handle = boom  # type: ignore[method-assign]
    assert sandbox(httpx.Request("GET", "https://t/x")).status_code == 500
    assert sandbox.stats()["emulator_errors"] == 1


def test_endpoint_name_hook_overrides_the_path(toy: tuple[Sandbox, ToyEmulator]) -> None:
    sandbox, emulator = toy
    emulator.endpoint_name = lambda request: "graphql:customers"  # type: ignore[attr-defined]
    sandbox(httpx.Request("POST", "https://t/oauth/token"))
    assert sandbox.stats()["endpoints"] == {"graphql:customers": 1}


def test_concurrent_calls_are_all_counted() -> None:
    sandbox, _ = make_sandbox(clock=SandboxClock())
    errors: list[BaseException] = []

    def worker() -> None:
        try:
            for _ in range(50):
                sandbox(httpx.Request("POST", "https://t/oauth/token"))
        except BaseException as exc:  # pragma: no cover - surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    stats = sandbox.stats()
    assert stats["requests"] == 400
    assert stats["statuses"] == {"200": 400}
    assert sandbox.emulator.tokens == {f"tok-{i}" for i in range(1, 401)}  # type: ignore[attr-defined]


def test_stats_by_resource_and_by_endpoint_carry_their_statuses(toy: tuple[Sandbox, ToyEmulator],
                                                                client: httpx.Client) -> None:
    sandbox, emulator = toy
    emulator.resource_name = lambda r: "tokens" if r.url.path == "/oauth/token" else None  # type: ignore[attr-defined]
    authed(client)
    client.get("/v1/contacts/3")
    client.get("/v1/contacts/99")
    stats = sandbox.stats()
    assert stats["resources"] == {
        "other": {"requests": 2, "statuses": {"200": 1, "404": 1}},
        "tokens": {"requests": 1, "statuses": {"200": 1}},
    }
    assert stats["endpoint_statuses"]["GET /v1/contacts/{id}"] == {"200": 1, "404": 1}
    assert sum(r["requests"] for r in stats["resources"].values()) == stats["requests"]


def test_a_listener_sees_each_request_as_it_arrives_and_can_inject_a_fault_for_it(
    toy: tuple[Sandbox, ToyEmulator], client: httpx.Client
) -> None:
    sandbox, _ = toy
    seen: list[str] = []

    def listener(request: httpx.Request, endpoint: str) -> None:
        seen.append(endpoint)
        if len(seen) == 3:
            sandbox.inject({"kind": "5xx", "status": 503})

    sandbox.add_listener(listener)
    authed(client)
    statuses = [client.get("/v1/contacts").status_code for _ in range(3)]
    sandbox.remove_listener(listener)
    client.get("/v1/contacts")
    assert seen == ["POST /oauth/token"] + ["GET /v1/contacts"] * 3  # not the one after removal
    assert statuses == [200, 503, 200]


def test_repeat_serves_the_previous_answer_of_the_endpoint_again(client: httpx.Client) -> None:
    authed(client)
    client.post("/_sandbox/faults", json={"kind": "repeat", "path": "/v1/contacts"})
    first = client.get("/v1/contacts").json()  # nothing to repeat yet: the fault waits
    second = client.get("/v1/contacts", params={"after": first["paging"]["next"]["after"]}).json()
    assert second == first  # the same page and the same cursor again
    third = client.get("/v1/contacts", params={"after": first["paging"]["next"]["after"]}).json()
    assert third != first
    assert client.get("/_sandbox/stats").json()["faults_injected"] == {"repeat": 1}


def test_wrong_type_rewrites_one_record_only(client: httpx.Client) -> None:
    authed(client)
    client.post("/_sandbox/faults", json={"kind": "wrong_type", "field": "email", "value": 12345})
    results = client.get("/v1/contacts").json()["results"]
    assert [r["email"] for r in results] == [12345, "person2@example.com"]
    assert client.get("/v1/contacts").json()["results"][0]["email"] == "person1@example.com"


def test_drop_and_unknown_field_rewrite_every_object(client: httpx.Client) -> None:
    authed(client)
    client.post("/_sandbox/faults", json={"kind": "drop_field", "field": "version"})
    client.post("/_sandbox/faults", json={"kind": "unknown_field", "value": [1, 2]})
    dropped = client.get("/v1/contacts").json()
    assert all("version" not in r for r in dropped["results"])
    drifted = client.get("/v1/contacts").json()
    assert drifted["x_sandbox_unknown_field"] == [1, 2]
    assert all(r["x_sandbox_unknown_field"] == [1, 2] and "version" in r for r in drifted["results"])


def test_a_rewrite_that_finds_nothing_waits_for_an_answer_it_can_rewrite(client: httpx.Client) -> None:
    client.post("/_sandbox/faults", json={"kind": "wrong_type", "field": "email", "value": None})
    authed(client)  # the token answer has no email: not spent on it
    assert client.get("/v1/contacts/99").status_code == 404  # an error answer is never rewritten
    assert client.get("/v1/contacts").json()["results"][0]["email"] is None
    assert client.get("/_sandbox/faults").json() == {"faults": []}


@pytest.mark.parametrize("body", [{"kind": "wrong_type"}, {"kind": "drop_field"}, {"kind": "drop_field", "field": 3}])
def test_rewrite_faults_need_a_field(client: httpx.Client, body: dict[str, object]) -> None:
    assert client.post("/_sandbox/faults", json=body).status_code == 400


def test_echo_answers_with_the_request_headers_credentials_included(client: httpx.Client) -> None:
    authed(client)
    client.post("/_sandbox/faults", json={"kind": "echo", "status": 422})
    echoed = client.get("/v1/contacts")
    assert echoed.status_code == 422
    assert echoed.json()["request"]["headers"]["authorization"] == client.headers["Authorization"]
