"""Sandbox framework tests, and the tiny toy emulator they share (no vendor emulator is needed)."""

from __future__ import annotations

import random
from typing import Any

import httpx

from hub.sandbox.control import Sandbox
from hub.sandbox.emulator import EmulatorContext, SandboxClock
from hub.sandbox.ratelimit import SlidingWindowLimiter, format_seconds


class ToyEmulator:
    """A toy vendor: OAuth tokens, a paged contact list, one record by id, a rate limit.

    - ``POST /oauth/token`` issues a bearer token.
    - ``GET /v1/contacts?after=N`` lists contacts (page of 2), ``GET /v1/contacts/{id}`` one (404 if absent),
      ``POST /v1/echo`` echoes the JSON body. All need a valid token: 401 otherwise, 403 for ``forbidden``.
    - At most ``limit`` API calls per 10 vendor seconds: 429 with Retry-After past it.
    """

    vendor = "toy"

    def __init__(self, ctx: EmulatorContext, *, limit: int = 1000) -> None:
        self.ctx = ctx
        self.limiter = SlidingWindowLimiter(ctx.clock, limit=limit, window_s=10)
        self.expired_calls = 0
        self.mutations: list[tuple[float, float]] = []
        self.reset()

    def reset(self) -> None:
        self.contacts: dict[int, dict[str, Any]] = {
            i: {"id": i, "email": f"person{i}@example.com", "version": 0} for i in range(1, 6)
        }
        self.tokens: set[str] = set()
        self._issued = 0
        self.limiter.reset()

    def expire_tokens(self) -> None:
        self.expired_calls += 1
        self.tokens.clear()

    def mutate(self, fraction: float, delete_fraction: float, rng: random.Random) -> dict[str, int]:
        self.mutations.append((fraction, delete_fraction))
        ids = sorted(self.contacts)
        changed = rng.sample(ids, round(len(ids) * fraction))
        for i in changed:
            self.contacts[i]["version"] += 1
        deleted = rng.sample(ids, round(len(ids) * delete_fraction))
        for i in deleted:
            self.contacts.pop(i, None)
        return {"contacts_changed": len(changed), "contacts_deleted": len(deleted)}

    def handle(self, request: httpx.Request) -> httpx.Response:
        path = request.url.path
        if request.method == "POST" and path == "/oauth/token":
            self._issued += 1
            token = f"tok-{self._issued}"
            self.tokens.add(token)
            return httpx.Response(200, json={"access_token": token, "expires_in": 1800})
        auth = request.headers.get("Authorization", "").removeprefix("Bearer ")
        if auth == "forbidden":
            return httpx.Response(403, json={"error": "missing scope"})
        if auth not in self.tokens:
            return httpx.Response(401, json={"error": "invalid token"})
        decision = self.limiter.hit()
        if not decision.allowed:
            return httpx.Response(429, headers={"Retry-After": format_seconds(decision.retry_after)})
        return self._route(request)

    def _route(self, request: httpx.Request) -> httpx.Response:
        parts = request.url.path.strip("/").split("/")
        if parts == ["v1", "contacts"]:
            after = int(request.url.params.get("after", 0))
            page = [c for i, c in sorted(self.contacts.items()) if i > after][:2]
            body: dict[str, Any] = {"results": page}
            if page and page[-1]["id"] < max(self.contacts):
                body["paging"] = {"next": {"after": str(page[-1]["id"])}}
            return httpx.Response(200, json=body)
        if len(parts) == 3 and parts[:2] == ["v1", "contacts"] and parts[2].isdigit():
            contact = self.contacts.get(int(parts[2]))
            if contact is None:
                return httpx.Response(404, json={"error": "not found"})
            return httpx.Response(200, json=contact)
        if parts == ["v1", "echo"] and request.method in ("POST", "PUT", "PATCH"):
            return httpx.Response(200, content=request.content, headers={"Content-Type": "application/json"})
        if parts == ["v1", "echo"]:
            return httpx.Response(200, json={"method": request.method})
        return httpx.Response(404, json={"error": "no route"})


def make_sandbox(limit: int = 1000, clock: SandboxClock | None = None) -> tuple[Sandbox, ToyEmulator]:
    """A Sandbox around a fresh toy emulator (the business is not needed by the toy)."""
    ctx = EmulatorContext(business=None, clock=clock or SandboxClock())  # type: ignore[arg-type]
    emulator = ToyEmulator(ctx, limit=limit)
    return Sandbox(emulator, sleep=lambda _s: None), emulator


def token(client: httpx.Client) -> str:
    """Get a token from the toy's OAuth endpoint."""
    return str(client.post("/oauth/token").json()["access_token"])
