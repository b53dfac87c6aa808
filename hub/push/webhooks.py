"""Outgoing webhooks on segment entry and exit, for Zapier, Make or n8n automations.

After an evaluation, :func:`queue_events` turns new membership changes into one ``webhook_event`` row per
(webhook, change): the key is the stay's id and the direction, so re-running never sends an event twice.
:func:`deliver` POSTs the due events as JSON::

    {"event": "segment.entered", "segment": "vip", "at": "2026-12-01T08:00:00+00:00", "held_out": false,
     "person": {"id": 42, "email": "ana@example.com", "ids": {"crm": "1001", "shop": "gid://..."}}}

signed with HMAC-SHA256 of the body under the webhook's secret, hex, in ``X-Hub-Signature-256: sha256=...``
(the GitHub convention the automation tools know), with ``X-Hub-Event`` and ``X-Hub-Delivery`` (the event id)
headers. A failed delivery (transport error or non-2xx) is retried in later runs with the push retry backoff,
and given up after the configured number of attempts.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import httpx
import sqlalchemy as sa
from sqlalchemy.engine import Connection

from hub.config.models import WebhookConfig
from hub.push import ledger
from hub.push.run import RetrySettings
from hub.store import Store
from hub.store import models as m

logger = logging.getLogger(__name__)

SIGNATURE_HEADER = "X-Hub-Signature-256"
# Where each webhook's queueing cursor is kept (the sync state table, under a name no source can have).
_CURSOR_SOURCE = "webhook:"


def sign(secret: str, body: bytes) -> str:
    """The signature header value of ``body``: ``sha256=<hex HMAC-SHA256>``."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


@dataclass
class DeliveryResult:
    """What one delivery round did for one webhook."""

    webhook: str
    delivered: int = 0
    retry: int = 0
    given_up: int = 0
    errors: list[str] = field(default_factory=list)


def queue_events(store: Store, name: str, hook: WebhookConfig, now: datetime | None = None) -> int:
    """Queue the membership changes since this webhook's cursor; returns how many events were added.

    The first call starts the cursor at ``now``: a new webhook receives changes from then on, not the history.
    """
    now = now or m.utcnow()
    with store.transaction() as conn:
        since = _cursor(conn, name)
        if since is None:
            _set_cursor(conn, name, now)
            return 0
        rows = list(_changes(conn, hook, since, now))
        if rows:
            from sqlalchemy.dialects import postgresql, sqlite

            insert = (postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert)(m.webhook_event)
            conn.execute(insert.on_conflict_do_nothing(index_elements=["webhook", "event_key"]),
                         [{"webhook": name, "event_key": key, "payload": payload, "attempts": 0,
                           "next_attempt_at": now, "delivered_at": None, "last_error": None, "created_at": now}
                          for key, payload in rows])
        _set_cursor(conn, name, now)
    return len(rows)


def _changes(
    conn: Connection, hook: WebhookConfig, since: datetime, until: datetime
) -> list[tuple[str, dict[str, Any]]]:
    sm, p = m.segment_membership, m.person
    def lit(at: datetime) -> sa.ColumnElement[Any]:
        return sa.literal(at, m.UTCDateTime())

    out: list[tuple[str, dict[str, Any]]] = []
    for event, column in (("entered", sm.c.entered_at), ("exited", sm.c.exited_at)):
        if event not in hook.events:
            continue
        stmt = (
            sa.select(sm.c.id, sm.c.segment, sm.c.person_id, sm.c.held_out, column, p.c.email)
            .select_from(sm.join(p, p.c.id == sm.c.person_id))
            .where(column > lit(since), column <= lit(until))
            .order_by(column, sm.c.id)
        )
        if hook.segments is not None:
            stmt = stmt.where(sm.c.segment.in_(hook.segments))
        if not hook.include_held_out:
            stmt = stmt.where(sm.c.held_out.is_(False))
        for stay_id, segment, pid, held, at, email in conn.execute(stmt):
            out.append((f"{stay_id}:{event}", {
                "event": f"segment.{event}", "segment": segment, "at": at.isoformat(), "held_out": bool(held),
                "person": {"id": int(pid), "email": email},
            }))
    ids = _person_ids(conn, [int(payload["person"]["id"]) for _, payload in out])
    for _, payload in out:
        payload["person"]["ids"] = ids.get(payload["person"]["id"], {})
    return out


def _person_ids(conn: Connection, people: list[int]) -> dict[int, dict[str, str]]:
    i = m.identity
    out: dict[int, dict[str, str]] = {}
    for start in range(0, len(people), 5_000):
        chunk = sorted(set(people[start : start + 5_000]))
        rows = conn.execute(sa.select(i.c.person_id, i.c.source, i.c.external_id).where(
            i.c.person_id.in_(chunk), i.c.seen.is_(True), i.c.external_id.is_not(None)).order_by(i.c.id))
        for pid, source, external in rows:
            out.setdefault(int(pid), {}).setdefault(str(source), str(external))
    return out


def deliver(
    store: Store,
    name: str,
    hook: WebhookConfig,
    secret: str,
    client: httpx.Client,
    retry: RetrySettings,
    *,
    now_fn: Callable[[], datetime] = m.utcnow,
    limit: int = 1_000,
) -> DeliveryResult:
    """POST this webhook's due events, oldest first; record each outcome (delivered, retry, given up)."""
    result = DeliveryResult(name)
    w = m.webhook_event
    with store.engine.connect() as conn:
        due = conn.execute(
            sa.select(w.c.id, w.c.event_key, w.c.payload, w.c.attempts)
            .where(w.c.webhook == name, w.c.delivered_at.is_(None), w.c.next_attempt_at.is_not(None),
                   w.c.next_attempt_at <= sa.literal(now_fn(), m.UTCDateTime()))
            .order_by(w.c.id)
            .limit(limit)
        ).all()
    for event_id, key, payload, attempts in due:
        error = _post(client, hook.url, secret, int(event_id), payload)
        _record(store, int(event_id), int(attempts), error, retry, now_fn(), result)
        if error:
            logger.warning("webhook %s: event %s not delivered: %s", name, key, error)
    return result


def _post(client: httpx.Client, url: str, secret: str, event_id: int, payload: Mapping[str, Any]) -> str | None:
    body = json.dumps(payload, sort_keys=True, separators=(",", ":")).encode()
    headers = {"Content-Type": "application/json", SIGNATURE_HEADER: sign(secret, body),
               "X-Hub-Event": str(payload.get("event")), "X-Hub-Delivery": str(event_id)}
    try:
        response = client.post(url, content=body, headers=headers)
    except httpx.HTTPError as exc:
        return f"{type(exc).__name__}: {exc}"
    if 200 <= response.status_code < 300:
        return None
    return f"HTTP {response.status_code}"


def _record(store: Store, event_id: int, attempts: int, error: str | None, retry: RetrySettings, now: datetime,
            result: DeliveryResult) -> None:
    w = m.webhook_event
    tries = attempts + 1
    if error is None:
        values: dict[str, Any] = {"delivered_at": now, "attempts": tries, "last_error": None}
        result.delivered += 1
    elif tries >= retry.max_attempts:
        values = {"attempts": tries, "next_attempt_at": None, "last_error": f"gave up: {error}"}
        result.given_up += 1
        result.errors.append(error)
    else:
        values = {"attempts": tries, "next_attempt_at": now + ledger.backoff(tries, retry.base, retry.cap),
                  "last_error": error}
        result.retry += 1
        result.errors.append(error)
    with store.transaction() as conn:
        conn.execute(sa.update(w).where(w.c.id == event_id).values(**values))


def _cursor(conn: Connection, name: str) -> datetime | None:
    s = m.sync_state
    state = conn.execute(sa.select(s.c.state).where(s.c.source == _CURSOR_SOURCE + name, s.c.stream == "events")
                         ).scalar_one_or_none()
    if not state or "since" not in state:
        return None
    return datetime.fromisoformat(str(state["since"]))


def _set_cursor(conn: Connection, name: str, at: datetime) -> None:
    s = m.sync_state
    conn.execute(sa.delete(s).where(s.c.source == _CURSOR_SOURCE + name, s.c.stream == "events"))
    conn.execute(sa.insert(s).values(source=_CURSOR_SOURCE + name, stream="events", state={"since": at.isoformat()},
                                     updated_at=at))
