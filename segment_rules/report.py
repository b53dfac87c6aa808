"""What the CLI reads back from the store about segmentation: the last evaluation, its warnings, suggestions."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import sqlalchemy as sa

from hub.store import Store
from hub.store import models as m

# The features cluster suggestions are fitted on: purchase behaviour plus engagement, all in the catalog.
SUGGESTION_FEATURES = ("recency_days", "orders", "aov", "tenure_days", "email_opens_90d", "sessions_90d")
# ``segment_run`` rows under this name hold the findings about a run as a whole (score bins, group overlaps).
RUN_WIDE = "*"


def last_as_of(store: Store) -> datetime | None:
    """The ``as_of`` of the stored features (the last evaluation), or None before the first one."""
    f = m.person_feature
    with store.engine.connect() as conn:
        value = conn.execute(sa.select(sa.func.max(f.c.as_of, type_=m.UTCDateTime()))).scalar_one_or_none()
    return value if isinstance(value, datetime) else None


def latest_warnings(store: Store) -> list[str]:
    """The quality warnings of the latest segment evaluation, ``segment: warning`` each."""
    r = m.segment_run
    with store.engine.connect() as conn:
        run_id = conn.execute(sa.select(sa.func.max(r.c.run_id))).scalar_one_or_none()
        if run_id is None:
            return []
        rows = conn.execute(sa.select(r.c.segment, r.c.warnings).where(r.c.run_id == run_id).order_by(r.c.id))
        return [
            (line if segment == RUN_WIDE else f"{segment}: {line}")
            for segment, warnings in rows
            for line in (warnings or [])
        ]


def latest_sizes(store: Store) -> dict[str, dict[str, int]]:
    """Per segment, the size, entries and exits of its latest evaluation."""
    r = m.segment_run
    with store.engine.connect() as conn:
        latest = sa.select(sa.func.max(r.c.id)).where(r.c.segment != RUN_WIDE).group_by(r.c.segment).scalar_subquery()
        rows = conn.execute(
            sa.select(r.c.segment, r.c.size, r.c.entered, r.c.exited).where(r.c.id.in_(latest)).order_by(r.c.segment)
        )
        return {str(s): {"size": int(n), "entered": int(e), "exited": int(x)} for s, n, e, x in rows}


def changed_since_last_run(store: Store) -> list[int] | None:
    """People whose data changed since the last successful evaluation started; None when there was none."""
    run, p = m.run, m.person
    with store.engine.connect() as conn:
        started = conn.execute(
            sa.select(sa.func.max(run.c.started_at, type_=m.UTCDateTime())).where(
                run.c.kind == "segment", run.c.status == "ok"
            )
        ).scalar_one_or_none()
        if started is None:
            return None
        rows = conn.execute(sa.select(p.c.id).where(p.c.changed_at >= sa.literal(started, m.UTCDateTime())))
        return [int(r[0]) for r in rows]


def suggest(store: Store, as_of: datetime, folder: Path, *, overwrite: bool = False) -> tuple[list[Path], list[str]]:
    """Cluster the people in scope on :data:`SUGGESTION_FEATURES` and write candidate rule files to ``folder``.

    Returns:
        The written files and one line per cluster (its profile, size and share).
    """
    from .clusters import ClusterSuggester, suggest_rule_files
    from .features import feature_matrix

    with store.engine.connect() as conn:
        _, x = feature_matrix(conn, as_of, SUGGESTION_FEATURES)
    suggester = ClusterSuggester(random_state=0).fit(x, SUGGESTION_FEATURES)
    written = suggest_rule_files(suggester, folder, overwrite=overwrite)
    lines = [
        f"cluster {i + 1}: {profile} ({int(size):,} people, {share:.0%})"
        for i, (profile, size, share) in enumerate(
            zip(suggester.profiles_, suggester.sizes_, suggester.shares_, strict=True)
        )
    ]
    return written, [suggester.selection_, *lines]
