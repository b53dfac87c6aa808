"""Segment webhooks: one signed event per membership change, retried with backoff, never sent twice."""

from __future__ import annotations

import hashlib
import hmac
import json
from datetime import timedelta

import httpx
import sqlalchemy as sa

from hub.config.models import WebhookConfig
from hub.push.run import RetrySettings
from hub.push.webhooks import SIGNATURE_HEADER, deliver, queue_events, sign
from hub.store import Store
from hub.store import models as m

from ..support import set_members
from .test_push import people

SECRET = "whsec-test-4f1c9e2a7b"
RETRY = RetrySettings(timedelta(minutes=5), timedelta(hours=1), max_attempts=3)


class Receiver:
    """An automation tool's endpoint: checks the signature, can be made to fail."""

    def __init__(self) -> None:
        self.events: list[dict[str, object]] = []
        self.fail_with: int | None = None

    def __call__(self, request: httpx.Request) -> httpx.Response:
        expected = "sha256=" + hmac.new(SECRET.encode(), request.content, hashlib.sha256).hexdigest()
        if request.headers[SIGNATURE_HEADER] != expected:
            return httpx.Response(401)
        if self.fail_with is not None:
            return httpx.Response(self.fail_with)
        self.events.append(json.loads(request.content))
        return httpx.Response(200)


HOOK = WebhookConfig(url="https://hooks.example/catch", secret="env:WEBHOOK_SECRET", segments=["vip"])


def test_entries_and_exits_are_sent_once_each_signed(store: Store) -> None:
    ids = people(store, 3)
    assert queue_events(store, "zap", HOOK) == 0  # a new webhook starts now: no history
    set_members(store, "vip", ids[:2])
    set_members(store, "other", ids)  # not subscribed by this webhook
    assert queue_events(store, "zap", HOOK) == 2
    assert queue_events(store, "zap", HOOK) == 0  # nothing new since
    receiver = Receiver()
    with httpx.Client(transport=httpx.MockTransport(receiver)) as client:
        result = deliver(store, "zap", HOOK, SECRET, client, RETRY)
        assert result.delivered == 2
        set_members(store, "vip", ids[1:])  # ids[0] leaves, ids[2] enters
        queue_events(store, "zap", HOOK)
        deliver(store, "zap", HOOK, SECRET, client, RETRY)
        assert deliver(store, "zap", HOOK, SECRET, client, RETRY).delivered == 0  # delivered ones are done
    got = [(e["event"], e["person"]["id"]) for e in receiver.events]  # type: ignore[index]
    assert sorted(got[:2]) == sorted([("segment.entered", ids[0]), ("segment.entered", ids[1])])
    assert sorted(got[2:]) == sorted([("segment.exited", ids[0]), ("segment.entered", ids[2])])
    crm_id = {pid: f"c{i}" for i, pid in enumerate(ids)}
    for event in receiver.events:
        person = event["person"]
        assert event["segment"] == "vip"
        assert person["ids"] == {"crm": crm_id[person["id"]]}  # type: ignore[index]
        assert person["email"] == f"p{crm_id[person['id']][1:]}@x.example"  # type: ignore[index]


def test_a_failing_endpoint_is_retried_with_backoff_then_given_up(store: Store) -> None:
    ids = people(store, 1)
    queue_events(store, "zap", HOOK)
    set_members(store, "vip", ids)
    queue_events(store, "zap", HOOK)
    receiver = Receiver()
    receiver.fail_with = 503
    clock = [m.utcnow()]
    with httpx.Client(transport=httpx.MockTransport(receiver)) as client:
        first = deliver(store, "zap", HOOK, SECRET, client, RETRY, now_fn=lambda: clock[0])
        assert (first.delivered, first.retry) == (0, 1) and first.errors == ["HTTP 503"]
        # Not due again before the backoff has passed.
        assert deliver(store, "zap", HOOK, SECRET, client, RETRY, now_fn=lambda: clock[0]).retry == 0
        clock[0] += timedelta(minutes=6)
        assert deliver(store, "zap", HOOK, SECRET, client, RETRY, now_fn=lambda: clock[0]).retry == 1
        clock[0] += timedelta(minutes=11)
        gave_up = deliver(store, "zap", HOOK, SECRET, client, RETRY, now_fn=lambda: clock[0])
        assert gave_up.given_up == 1
        receiver.fail_with = None
        clock[0] += timedelta(days=1)
        assert deliver(store, "zap", HOOK, SECRET, client, RETRY, now_fn=lambda: clock[0]).delivered == 0
    with store.engine.connect() as conn:
        row = conn.execute(sa.select(m.webhook_event.c.attempts, m.webhook_event.c.last_error)).one()
    assert tuple(row) == (3, "gave up: HTTP 503")


def test_held_out_members_are_not_sent_unless_asked(store: Store) -> None:
    ids = people(store, 2)
    both = WebhookConfig(url="https://hooks.example/a", secret="env:S", include_held_out=True)
    queue_events(store, "plain", HOOK)
    queue_events(store, "all", both)
    set_members(store, "vip", ids, held_out=[ids[1]])
    assert queue_events(store, "plain", HOOK) == 1
    assert queue_events(store, "all", both) == 2


def test_the_signature_is_hmac_sha256_of_the_body() -> None:
    body = b'{"event":"segment.entered"}'
    assert sign("k", body) == "sha256=" + hmac.new(b"k", body, hashlib.sha256).hexdigest()
    assert sign("k", body) != sign("other", body)
