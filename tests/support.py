"""Helpers shared by the connector, push and daemon tests (and the push benchmarks)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa

from hub.store import Store
from hub.store import models as m


def set_members(store: Store, segment: str, person_ids: Sequence[int], *, held_out: Sequence[int] = ()) -> None:
    """The open stays of ``segment`` become exactly ``person_ids``, as a segment evaluation would leave them."""
    sm = m.segment_membership
    now = m.utcnow()
    held = set(held_out)
    with store.engine.begin() as conn:
        conn.execute(
            sa.update(sm)
            .where(sm.c.segment == segment, sm.c.exited_at.is_(None), sm.c.person_id.not_in(list(person_ids)))
            .values(exited_at=now)
        )
        open_ = set(
            conn.execute(sa.select(sm.c.person_id).where(sm.c.segment == segment, sm.c.exited_at.is_(None))).scalars()
        )
        rows = [
            {"person_id": p, "segment": segment, "entered_at": now, "exited_at": None, "held_out": p in held}
            for p in person_ids
            if p not in open_
        ]
        if rows:
            conn.execute(sa.insert(sm), rows)
    store.finish_run(store.start_run("segment", "full"), "ok", {})


class FakeTime:
    """A wall clock tests move by hand (emulator record stamps, a source's windows)."""

    def __init__(self) -> None:
        self.now = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)

    def __call__(self) -> float:
        return self.now.timestamp()

    def datetime(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


class Crash(Exception):
    """Stands in for a kill between two committed pages."""


def crash_after(pages: int) -> Callable[[str, Any, Any], None]:
    """A sync progress callback that raises :class:`Crash` once ``pages`` pages are committed."""
    seen = [0]

    def progress(stream: str, page: Any, stats: Any) -> None:
        seen[0] += 1
        if seen[0] == pages:
            raise Crash(f"killed after page {pages}")

    return progress
