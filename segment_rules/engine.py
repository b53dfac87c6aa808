"""The segmentation run: features, scores, then segment memberships, all in the store.

:func:`evaluate` does a full run (every person in scope) or an incremental one (``person_ids``: the people
whose data changed since the last run, see :func:`changed_people`). An incremental run recomputes those
people's features and scores with the models of the last full run (frozen RFM edges and BG/NBD parameters, so
everyone's scores stay comparable), and re-evaluates only their memberships. Time-window rules change without
new data, so the daemon also runs a full sweep daily.

Memberships are diffs: a person entering a segment opens a stay (``segment_membership`` with ``entered_at``),
leaving closes it (``exited_at``); nothing changes for people who stay. ``segment_run`` records per segment and
run the size, entries, exits and held-out members. Each step commits in its own transaction, so a crash leaves
the previous memberships in place and the next run recomputes everything it needs.
"""

from __future__ import annotations

import gc
import logging
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

import numpy as np
import sqlalchemy as sa
from sqlalchemy.engine import Connection
from sqlalchemy.sql.elements import ColumnElement

from hub.store import Store
from hub.store import models as m
from hub.store.bulk import Column
from hub.store.bulk import for_dialect as bulk_for

from .aggregate import Accumulator, EventAccumulator, EventWindow, no_jit
from .compile import Compiled, Compiler, pass_windows
from .features import FeatureTable, compute_features, in_scope, read_people
from .quality import (
    MASK_BITS,
    QualitySettings,
    SegmentStats,
    exclusive_gaps,
    is_overlap_warning,
    jaccard_from_masks,
    overlap_warnings,
    overlaps,
    score_warnings,
    size_warnings,
)
from .report import RUN_WIDE
from .ruleset import RuleSet
from .scoring import FeatureArrays, ScoreReport, Scores, ScoringSettings, compute_scores, stored_scores

if TYPE_CHECKING:
    from .churn import CutoffReader

logger = logging.getLogger(__name__)

MODEL_NAMES = ("rfm", "bgnbd", "gamma_gamma", "churn")
_ID_CHUNK = 5_000
_WRITE_ROWS = 20_000  # rows per bulk insert: bounds the Python objects alive at once


@dataclass
class SegmentChange:
    """One segment after a run, with its quality warnings."""

    segment: str
    size: int
    entered: int
    exited: int
    held_out: int
    warnings: list[str] = field(default_factory=list)


@dataclass
class EvaluationResult:
    """What one segmentation run did."""

    run_id: int
    as_of: datetime
    incremental: bool
    people: int
    segments: list[SegmentChange] = field(default_factory=list)
    scores: ScoreReport | None = None
    timings: dict[str, float] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)  # findings about the run as a whole (score bins, groups)

    @property
    def all_warnings(self) -> list[str]:
        """Every finding, each prefixed with its segment where it has one."""
        return [*self.warnings, *(f"{c.segment}: {w}" for c in self.segments for w in c.warnings)]

    def as_dict(self) -> dict[str, Any]:
        """JSON-able view."""
        return {
            "run_id": self.run_id,
            "as_of": self.as_of.isoformat(),
            "incremental": self.incremental,
            "people": self.people,
            "segments": [vars(s) for s in self.segments],
            "warnings": list(self.warnings),
            "scores": self.scores.as_dict() if self.scores else None,
            "timings": {k: round(v, 3) for k, v in self.timings.items()},
        }


def _chunks(ids: Sequence[int]) -> Iterator[Sequence[int]]:
    for start in range(0, len(ids), _ID_CHUNK):
        yield ids[start : start + _ID_CHUNK]


# ----------------------------------------------------------------------------------------------- steps


@dataclass
class _Computed:
    """What the features step hands on: the features at ``as_of`` and, in a full run, the churn cutoffs."""

    features: FeatureTable
    cutoffs: CutoffReader | None
    events: EventAccumulator | None = None  # the rule set's event windows, counted in the same pass


def compute(
    store: Store,
    as_of: datetime,
    settings: ScoringSettings,
    person_ids: Sequence[int] | None,
    windows: Sequence[EventWindow] = (),
) -> _Computed:
    """The features at ``as_of`` (everyone in scope, or ``person_ids``) and, in a full run, the churn cutoffs
    and the counts of the event ``windows``, from one pass over the activities."""
    from .churn import ChurnSettings, CutoffReader

    with store.engine.connect() as conn:
        people = read_people(conn, person_ids)
        cutoffs = events = None
        also: list[Accumulator] = []
        if person_ids is None:
            cutoffs = CutoffReader(
                as_of, ChurnSettings(horizon_days=settings.churn_horizon_days, penalizer=settings.penalizer), people
            )
            also += cutoffs.accumulators.values()
            if windows:
                events = EventAccumulator(as_of, people.person_id, windows)
                also.append(events)
        features = compute_features(conn, as_of, person_ids, people=people, also=also)
    return _Computed(features, cutoffs, events)


def _empty(conn: Connection, table: sa.Table) -> None:
    """Remove every row of ``table`` before a full rewrite.

    On PostgreSQL by TRUNCATE: deleting a million rows leaves as many dead tuples (and a bloated index) for
    every full run, which the next runs then wade through until autovacuum catches up. TRUNCATE holds an
    exclusive lock until the commit, so readers wait for the new rows instead of seeing the old ones.
    SQLite's DELETE without a WHERE clause is already a truncation.
    """
    if conn.dialect.name == "postgresql":
        conn.exec_driver_sql(f"TRUNCATE {conn.dialect.identifier_preparer.quote(table.name)}")
    else:
        conn.execute(sa.delete(table))


def _refresh_statistics(conn: Connection, table: sa.Table) -> None:
    """After a full rewrite, on PostgreSQL: a truncated table has no statistics until autovacuum comes by, and
    the evaluation query that joins it next would be planned for an empty table (nested loops over a million
    rows: a minute instead of seconds)."""
    if conn.dialect.name == "postgresql":
        conn.exec_driver_sql(f"ANALYZE {conn.dialect.identifier_preparer.quote(table.name)}")


def write_features(store: Store, table: FeatureTable, person_ids: Sequence[int] | None = None) -> int:
    """Replace ``person_feature`` (everyone's rows, or those of ``person_ids``) with ``table``; returns the
    number of stored rows."""
    f = m.person_feature
    with store.transaction() as conn:
        bulk = bulk_for(conn.dialect)
        if person_ids is None:
            _empty(conn, f)
        else:
            for chunk in _chunks(person_ids):
                conn.execute(sa.delete(f).where(f.c.person_id.in_(chunk)))
        for start in range(0, len(table), _WRITE_ROWS):
            stop = min(start + _WRITE_ROWS, len(table))
            bulk.insert_columns(conn, f, table.stored(start, stop))
        if person_ids is None:
            _refresh_statistics(conn, f)
        return int(conn.execute(sa.select(sa.func.count()).select_from(f)).scalar_one())


def score(
    store: Store, computed: _Computed, settings: ScoringSettings, person_ids: Sequence[int] | None = None
) -> tuple[Scores, ScoreReport]:
    """Score the people of ``computed`` (with the stored models when ``person_ids`` is given); nothing written."""
    table = computed.features
    report = ScoreReport(as_of=table.as_of)
    models = None if person_ids is None else load_models(store)
    scores = compute_scores(FeatureArrays.from_table(table), settings, report, models)
    _churn_scores(computed, scores, report, models)
    return scores, report


def write_scores(store: Store, scores: Scores, report: ScoreReport, person_ids: Sequence[int] | None = None) -> None:
    """Replace ``person_score`` (everyone's rows, or those of ``person_ids``) with ``scores``; a full run also
    stores the fitted models."""
    s = m.person_score
    with store.transaction() as conn:
        bulk = bulk_for(conn.dialect)
        if person_ids is None:
            _empty(conn, s)
        else:
            for chunk in _chunks(person_ids):
                conn.execute(sa.delete(s).where(s.c.person_id.in_(chunk)))
        scored = m.utcnow()
        for start in range(0, len(scores.person_id), _WRITE_ROWS):
            stop = min(start + _WRITE_ROWS, len(scores.person_id))
            bulk.insert_columns(conn, s, stored_scores(scores, scored, start, stop))
        if person_ids is None:
            _refresh_statistics(conn, s)
            _save_models(conn, report, report.as_of)


def _churn_scores(
    computed: _Computed, scores: Scores, report: ScoreReport, models: Mapping[str, Any] | None
) -> None:
    """Replace the BG/NBD churn baseline in ``scores`` with the chosen churn scorer (model or best baseline).

    A full run fits and checks the scorer out of time on the cutoffs read with the features
    (:func:`segment_rules.churn.fit_churn_arrays`); an incremental run scores with the stored one. Without
    enough data the BG/NBD baseline from :mod:`scoring` stays.
    """
    from .churn import ChurnScorer, cutoff_data, fit_churn_arrays, score_churn

    table = computed.features
    if models is not None:
        stored = models.get("churn")
        if stored is None:
            return
        scorer: Any = ChurnScorer.from_dict(stored)
    else:
        assert computed.cutoffs is not None  # a full run reads them
        reader = computed.cutoffs
        churn = fit_churn_arrays(table.as_of, reader.data(table), reader.settings)
        report.churn = churn.as_dict()
        if churn.scorer is None:
            report.notes.append(f"churn: {churn.reason}" if churn.reason else "churn: no scorer could be fitted")
            return
        scorer = churn.scorer
    ids, probabilities = score_churn(cutoff_data(table, scorer.features), scorer, table.as_of)
    # Both are in person id order: place the probabilities by binary search rather than a dict of every person.
    where = np.searchsorted(scores.person_id, ids)
    found = where < len(scores.person_id)
    found[found] = scores.person_id[where[found]] == ids[found]
    scores.churn_probability[where[found]] = probabilities[found]


def load_models(store: Store) -> dict[str, Any]:
    """The latest stored model of each kind (``to_dict`` data), by name."""
    a = m.model_artifact
    out: dict[str, Any] = {}
    with store.engine.connect() as conn:
        for name in MODEL_NAMES:
            params = conn.execute(
                sa.select(a.c.params).where(a.c.name == name).order_by(a.c.created_at.desc(), a.c.id.desc()).limit(1)
            ).scalar_one_or_none()
            if params is not None:
                out[name] = params
    return out


def _save_models(conn: Connection, report: ScoreReport, as_of: datetime) -> None:
    version = as_of.strftime("%Y%m%dT%H%M%S.%f")
    a = m.model_artifact
    churn = (report.churn or {}).get("scorer")
    for name, params in (("rfm", report.rfm), ("bgnbd", report.bgnbd), ("gamma_gamma", report.gamma_gamma),
                         ("churn", churn)):
        if params is None:
            continue
        conn.execute(sa.delete(a).where(a.c.name == name, a.c.version == version))
        conn.execute(sa.insert(a).values(name=name, version=version, created_at=m.utcnow(), params=params))


def write_memberships(
    store: Store,
    rules: RuleSet,
    as_of: datetime,
    run_id: int,
    person_ids: Sequence[int] | None = None,
    *,
    people: int = 0,
    quality: QualitySettings | None = None,
    counted: EventAccumulator | None = None,
) -> list[SegmentChange]:
    """Evaluate every segment, apply the membership diff and run the quality checks.

    All segments are evaluated in one query into a temporary table (one row per person, bit masks of the
    segments held and held out), so the joined features, scores and event aggregates are computed once, not
    once per segment; the diff against the open stays is then set-based SQL per segment, never Python sets.

    ``counted``: in a full run, the event windows the activity pass counted; their conditions read these counts
    (from temporary tables) instead of aggregating the activities again.

    Returns:
        Per segment: size, entries, exits, held-out members and quality warnings (also stored in segment_run).
    """
    names = [segment.name for segment in rules.segments]
    now = m.utcnow()
    changes: list[SegmentChange] = []
    with store.transaction() as conn:
        _tune_batch(conn)
        previous = _previous_sizes(conn)
        work = _Evaluation(names)
        try:
            tables = work.load_counts(conn, counted) if counted is not None and person_ids is None else {}
            compiled = Compiler(rules, as_of, person_ids, tables).compile()
            work.create(conn, compiled, person_ids)
            full = person_ids is None
            before = _open_sizes(conn) if full else {}
            exited = [
                _apply_segment(conn, work, i, name, now, not full, fresh=full and not before.get(name))
                for i, name in enumerate(names)
            ]
            after = work.sizes(conn) if full else _stay_sizes(conn, names)
            # An incremental run counts its new stays among the few people it evaluated; a full run takes the
            # difference (stays only open by entering and close by leaving), which needs no second pass.
            opened = {} if full else _opened(conn, work, now)
            if full:
                _refresh_statistics(conn, m.segment_membership)  # the next runs plan against these stays
            for name, left, (size, held_out) in zip(names, exited, after, strict=True):
                entered = size - (before.get(name, 0) - left) if full else opened.get(name, 0)
                changes.append(SegmentChange(name, size, entered, left, held_out))
            jaccard = work.overlaps(conn, changes) if person_ids is None else None
            _check_quality(conn, rules, changes, previous, people, quality or QualitySettings(), jaccard)
        finally:
            work.drop(conn)
        conn.execute(
            sa.insert(m.segment_run),
            [
                {"run_id": run_id, "segment": c.segment, "evaluated_at": now, "size": c.size, "entered": c.entered,
                 "exited": c.exited, "held_out": c.held_out, "warnings": c.warnings or None}
                for c in changes
            ],
        )
    return changes


class _Evaluation:
    """The temporary tables of one membership step: every person's segments, and the people evaluated.

    Each person's row holds bit masks, not one flag column per segment: segment ``i`` is bit ``i % MASK_BITS``
    of mask ``m{i // MASK_BITS}``: one narrow row per person to write and to scan once per segment, whatever the
    number of segments. The same bit of ``h{...}`` says the person would be held out of the segment (the holdout
    hash alone, cheaper than testing the rule a second time): a held-out member has the bit in both.
    """

    def __init__(self, names: Sequence[str]) -> None:
        meta = sa.MetaData()
        self.names = list(names)
        self.masks = -(-len(self.names) // MASK_BITS)
        self.table = sa.Table(
            "tmp_segment_eval",
            meta,
            sa.Column("person_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), primary_key=True),
            *(sa.Column(f"m{k}", sa.Integer, nullable=False) for k in range(self.masks)),
            *(sa.Column(f"h{k}", sa.Integer, nullable=False) for k in range(self.masks)),
            prefixes=["TEMPORARY"],
        )
        self.scope = sa.Table(
            "tmp_segment_scope",
            meta,
            sa.Column("person_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), primary_key=True),
            prefixes=["TEMPORARY"],
        )
        self.counts: dict[EventWindow, sa.Table] = {}

    def load_counts(self, conn: Connection, counted: EventAccumulator) -> dict[EventWindow, sa.Table]:
        """A temporary table of (person_id, n, total) per counted event window, filled from ``counted``."""
        bulk = bulk_for(conn.dialect)
        meta = sa.MetaData()
        for k, window in enumerate(counted.windows):
            table = sa.Table(
                f"tmp_segment_event{k}",
                meta,
                sa.Column("person_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), primary_key=True),
                sa.Column("n", sa.BigInteger, nullable=False),
                sa.Column("total", m.Money, nullable=False),
                prefixes=["TEMPORARY"],
            )
            table.drop(conn, checkfirst=True)  # a crashed step on a pooled connection may have left it
            table.create(conn)
            self.counts[window] = table
            ids, n, total = counted.totals(window)
            for start in range(0, len(ids), _WRITE_ROWS):
                part = slice(start, start + _WRITE_ROWS)
                bulk.insert_columns(conn, table, {"person_id": Column(ids[part]), "n": Column(n[part]),
                                                  "total": Column(total[part])})
            if conn.dialect.name == "postgresql":
                conn.exec_driver_sql(f"ANALYZE {table.name}")
        return dict(self.counts)

    def _masks(
        self,
        conditions: Sequence[ColumnElement[bool]],
        exclusive: Sequence[Sequence[tuple[str, ColumnElement[bool]]]] = (),
    ) -> list[ColumnElement[int]]:
        """One bit mask per :data:`MASK_BITS` segments (``conditions`` in :attr:`names` order): the sum of the
        bits of those that hold.

        An ``exclusive`` group (members in group order, each with its own rule) adds one CASE instead of a term
        per member: the bit of its first member whose rule holds (0 where that bit is in another mask). Each
        member's rule is then tested once, where "mine and none of the earlier ones" tests the first of eleven
        RFM tiers eleven times.
        """
        bit = sa.Integer()
        index = {name: i for i, name in enumerate(self.names)}
        grouped = {name for members in exclusive for name, _ in members}
        out: list[ColumnElement[int]] = []
        for start in range(0, len(self.names), MASK_BITS):
            word = range(start, min(start + MASK_BITS, len(self.names)))
            terms = [sa.case((conditions[i], sa.literal(1 << (i - start), bit)), else_=sa.literal(0, bit))
                     for i in word if self.names[i] not in grouped]
            for members in exclusive:
                last = max((k for k, (name, _) in enumerate(members) if index[name] in word), default=None)
                if last is None:
                    continue
                # Members after the last one of this mask cannot set a bit in it; earlier ones of other masks
                # still stop the search (their bit is set in their own mask).
                whens = [(rule, sa.literal(1 << (index[name] - start) if index[name] in word else 0, bit))
                         for name, rule in members[: last + 1]]
                terms.append(sa.case(*whens, else_=sa.literal(0, bit)))
            out.append(sum(terms[1:], terms[0]))
        return out

    def create(self, conn: Connection, compiled: Compiled, person_ids: Sequence[int] | None) -> None:
        for table in (self.table, self.scope):
            table.drop(conn, checkfirst=True)  # a crashed step on a pooled connection may have left them
        self.table.create(conn)
        self.scope.create(conn)
        flags = self._masks([compiled.conditions[name] for name in self.names], compiled.exclusive)
        flags += self._masks([compiled.held_out[name] for name in self.names])
        if person_ids is None:
            select = sa.select(compiled.person_id, *flags).select_from(compiled.source)
            conn.execute(sa.insert(self.table).from_select([c.name for c in self.table.columns], select))
            self._analyze(conn)
            return
        ids = sorted(set(person_ids))
        for chunk in _chunks(ids):
            conn.execute(sa.insert(self.scope), [{"person_id": pid} for pid in chunk])
        select = (
            sa.select(compiled.person_id, *flags)
            .select_from(compiled.source)
            .where(compiled.person_id.in_(sa.select(self.scope.c.person_id)))
        )
        conn.execute(sa.insert(self.table).from_select([c.name for c in self.table.columns], select))
        self._analyze(conn)

    def _analyze(self, conn: Connection) -> None:
        # PostgreSQL never gathers statistics on temporary tables by itself; without them it plans the diff
        # against the open stays as if the tables were tiny (nested loops over a million rows).
        if conn.dialect.name == "postgresql":
            conn.exec_driver_sql(f"ANALYZE {self.table.name}, {self.scope.name}")

    def drop(self, conn: Connection) -> None:
        for table in (self.table, self.scope, *self.counts.values()):
            table.drop(conn, checkfirst=True)

    def _bit(self, prefix: str, i: int) -> ColumnElement[int]:
        """Segment ``i``'s bit, as 0 or 1, of its membership (``m``) or of being a held-out member (``h``)."""
        column: ColumnElement[int] = self.table.c[f"m{i // MASK_BITS}"]
        if prefix == "h":
            column = column.op("&")(self.table.c[f"h{i // MASK_BITS}"])
        return column.op(">>")(sa.literal(i % MASK_BITS, sa.Integer())).op("&")(sa.literal(1, sa.Integer()))

    def member(self, i: int) -> ColumnElement[bool]:
        return self._bit("m", i) == 1

    def held_out(self, i: int) -> ColumnElement[bool]:
        return self._bit("h", i) == 1

    def overlaps(self, conn: Connection, changes: Sequence[SegmentChange]) -> dict[tuple[str, str], float]:
        """Jaccard similarity of every pair with common members, from the evaluation of a full run.

        After a full run the open stays are exactly the evaluated members, so one grouped scan of the temporary
        table (people counted per combination of segments held: its masks) gives what
        :func:`segment_rules.quality.overlaps` computes from the stays.
        """
        if len(self.names) < 2:
            return {}
        masks = [self.table.c[f"m{k}"] for k in range(self.masks)]
        rows = conn.execute(sa.select(*masks, sa.func.count()).group_by(*masks)).all()
        return jaccard_from_masks(rows, self.names, {c.segment: c.size for c in changes})

    def sizes(self, conn: Connection) -> list[tuple[int, int]]:
        """Per segment, members and held-out members as evaluated (after a full run: the open stays)."""
        n = len(self.names)
        if n == 0:  # a rules folder without rules: scores only, and SELECT with no columns is no SQL at all
            return []
        sums = [sa.func.sum(self._bit("m", i)) for i in range(n)] + [sa.func.sum(self._bit("h", i)) for i in range(n)]
        row = conn.execute(sa.select(*sums)).one()
        return [(int(row[i] or 0), int(row[n + i] or 0)) for i in range(n)]


def _tune_batch(conn: Connection) -> None:
    """Settings for this transaction's few large statements, on PostgreSQL: no JIT (see
    :func:`~segment_rules.aggregate.no_jit`), and 64 MB of work_mem, as sorts and hashes of a million rows spill
    to disk at the default 4 MB. Both are SET LOCAL: they end with the transaction.
    """
    no_jit(conn)
    if conn.dialect.name == "postgresql":
        conn.exec_driver_sql("SET LOCAL work_mem = '64MB'")


def _previous_sizes(conn: Connection) -> dict[str, int]:
    r = m.segment_run
    latest = sa.select(sa.func.max(r.c.id)).where(r.c.segment != RUN_WIDE).group_by(r.c.segment).scalar_subquery()
    rows = conn.execute(sa.select(r.c.segment, r.c.size).where(r.c.id.in_(latest)))
    return {str(seg): int(size) for seg, size in rows}


def _previous_overlaps(conn: Connection, names: Sequence[str]) -> dict[str, list[str]] | None:
    """An incremental run's overlap findings: those of each segment's latest run (None when a segment has none).

    A few changed people barely move the Jaccard of segments of thousands, and measuring it means grouping every
    open stay (1.2 s of a 2.8 s re-evaluation at a million people); the full runs measure it again.
    """
    r = m.segment_run
    latest = sa.select(sa.func.max(r.c.id)).where(r.c.segment.in_(list(names))).group_by(r.c.segment)
    rows = conn.execute(sa.select(r.c.segment, r.c.warnings).where(r.c.id.in_(latest.scalar_subquery()))).all()
    if len(rows) < len(set(names)):
        return None
    return {str(seg): [w for w in warnings or () if is_overlap_warning(w)] for seg, warnings in rows}


def _check_quality(
    conn: Connection,
    rules: RuleSet,
    changes: list[SegmentChange],
    previous: Mapping[str, int],
    people: int,
    settings: QualitySettings,
    jaccard: Mapping[tuple[str, str], float] | None = None,
) -> None:
    groups = {s.name: s.group for s in rules.segments}
    stats = [
        SegmentStats(c.segment, c.size, c.entered, c.exited, previous.get(c.segment), groups.get(c.segment))
        for c in changes
    ]
    found = size_warnings(stats, people, settings)
    carried = _previous_overlaps(conn, [c.segment for c in changes]) if jaccard is None else None
    if carried is not None:
        for name, lines in carried.items():
            found.setdefault(name, []).extend(lines)
    else:
        pairs = overlaps(conn, stats) if jaccard is None else jaccard
        for name, lines in overlap_warnings(pairs, stats, settings).items():
            found.setdefault(name, []).extend(lines)
    for change in changes:
        change.warnings = found.get(change.segment, [])


def _apply_segment(
    conn: Connection, work: _Evaluation, i: int, name: str, now: datetime, incremental: bool, *, fresh: bool = False
) -> int:
    """Close the stays of people who left segment ``i``, open stays for those who entered; returns the exits.

    ``fresh``: the segment has no open stay (a first run, a new segment), so every member enters and nobody
    leaves: the stays are inserted without looking for open ones (at a million people, the first run's
    look-ups cost PostgreSQL almost half as much as the inserts).
    """
    sm = m.segment_membership
    e = work.table
    columns = ["person_id", "segment", "entered_at", "exited_at", "held_out"]
    stay = (e.c.person_id, sa.literal(name), sa.literal(now, m.UTCDateTime()), sa.null(), work.held_out(i))
    if fresh:
        conn.execute(sa.insert(sm).from_select(columns, sa.select(*stay).where(work.member(i))))
        return 0
    open_stay = (sm.c.segment == name) & sm.c.exited_at.is_(None)
    # Leaving: an open stay of someone evaluated (everyone, or the scope) who is no longer a member. People in
    # the scope who dropped out of it (merged away, objected) have no evaluation row, so they leave too.
    still = sa.exists().where(e.c.person_id == sm.c.person_id, work.member(i))
    leaving = open_stay & ~still
    if incremental:
        leaving = leaving & sm.c.person_id.in_(sa.select(work.scope.c.person_id))
    exited = conn.execute(sa.update(sm).where(leaving).values(exited_at=now)).rowcount
    # Entering: a member without an open stay.
    staying = sa.exists().where(sm.c.person_id == e.c.person_id, open_stay)
    conn.execute(sa.insert(sm).from_select(columns, sa.select(*stay).where(work.member(i), ~staying)))
    return int(exited)


def _open_sizes(conn: Connection) -> dict[str, int]:
    """Open stays per segment."""
    sm = m.segment_membership
    rows = conn.execute(
        sa.select(sm.c.segment, sa.func.count()).where(sm.c.exited_at.is_(None)).group_by(sm.c.segment)
    )
    return {str(segment): int(n) for segment, n in rows}


def _opened(conn: Connection, work: _Evaluation, now: datetime) -> dict[str, int]:
    """Stays this run opened for the people of an incremental run's scope, per segment (by the person index)."""
    sm = m.segment_membership
    rows = conn.execute(
        sa.select(sm.c.segment, sa.func.count())
        .where(
            sm.c.person_id.in_(sa.select(work.scope.c.person_id)),
            sm.c.entered_at == sa.literal(now, m.UTCDateTime()),
            sm.c.exited_at.is_(None),
        )
        .group_by(sm.c.segment)
    )
    return {str(segment): int(n) for segment, n in rows}


def _stay_sizes(conn: Connection, names: Sequence[str]) -> list[tuple[int, int]]:
    """Per segment of ``names``: open stays and held-out ones among them."""
    sm = m.segment_membership
    held = sa.func.sum(sa.case((sm.c.held_out, 1), else_=0))
    rows = conn.execute(
        sa.select(sm.c.segment, sa.func.count(), held).where(sm.c.exited_at.is_(None)).group_by(sm.c.segment)
    )
    found = {str(segment): (int(n), int(h or 0)) for segment, n, h in rows}
    return [found.get(name, (0, 0)) for name in names]


def changed_people(store: Store, since: datetime) -> list[int]:
    """People in scope whose data changed after ``since`` (new, merged into, new activities, profile edits)."""
    p = m.person
    with store.engine.connect() as conn:
        rows = conn.execute(sa.select(p.c.id).where(p.c.changed_at > sa.literal(since, m.UTCDateTime())))
        return [int(r[0]) for r in rows]


def _scope_ids(store: Store, person_ids: Sequence[int]) -> list[int]:
    """``person_ids`` plus the people they were merged into; only those still in scope get features."""
    p = m.person
    ids = sorted(set(person_ids))
    out: set[int] = set()
    with store.engine.connect() as conn:
        for chunk in _chunks(ids):
            for pid, merged in conn.execute(sa.select(p.c.id, p.c.merged_into).where(p.c.id.in_(chunk))):
                out.add(int(merged if merged is not None else pid))
    return sorted(out)


def _drop_out_of_scope(store: Store, person_ids: Sequence[int] | None) -> None:
    """Remove features and scores of people no longer in scope (merged away, deleted, objecting)."""
    p, f, s = m.person, m.person_feature, m.person_score
    gone = sa.select(p.c.id).where(sa.not_(in_scope(p)))
    if person_ids is not None:
        gone = gone.where(p.c.id.in_(person_ids))
    with store.transaction() as conn:
        ids = [int(r[0]) for r in conn.execute(gone)]
        for chunk in _chunks(ids):
            conn.execute(sa.delete(f).where(f.c.person_id.in_(chunk)))
            conn.execute(sa.delete(s).where(s.c.person_id.in_(chunk)))


def _run_warnings(
    store: Store, rules: RuleSet, scores: ScoreReport | None, person_ids: Sequence[int] | None = None
) -> list[str]:
    out: list[str] = []
    if scores is not None:
        if scores.rfm is not None:
            out.extend(score_warnings(scores.rfm.get("policy") or {}, scores.rfm.get("policy_reasons") or {}))
        out.extend(scores.notes)
    exclusive = {g.name: g.members for g in rules.groups.values() if g.exclusive}
    with store.engine.connect() as conn:
        scoped = None if person_ids is None or len(person_ids) > _ID_CHUNK else person_ids
        for group, doubled in exclusive_gaps(conn, exclusive, scoped).items():
            if doubled:
                out.append(f"group {group}: {doubled} people hold more than one of its segments")
    return out


def _store_run_warnings(store: Store, run_id: int, result: EvaluationResult) -> None:
    with store.transaction() as conn:
        conn.execute(sa.insert(m.segment_run).values(
            run_id=run_id, segment=RUN_WIDE, evaluated_at=m.utcnow(), size=result.people, entered=0, exited=0,
            held_out=0, warnings=result.warnings or None,
        ))


# ----------------------------------------------------------------------------------------------- the run


def evaluate(
    store: Store,
    rules: RuleSet,
    *,
    as_of: datetime | None = None,
    settings: ScoringSettings | None = None,
    quality: QualitySettings | None = None,
    person_ids: Sequence[int] | None = None,
) -> EvaluationResult:
    """Run features, scores and segments (for everyone, or incrementally for ``person_ids``).

    Args:
        store: the open store.
        rules: the checked rule set.
        as_of: the evaluation time (default: now).
        settings: scoring settings (default: :class:`ScoringSettings`).
        quality: quality-check thresholds (default: :class:`QualitySettings`).
        person_ids: only these people (and the people they were merged into) are recomputed.

    Returns:
        Sizes and changes per segment, the scoring report and step timings.
    """
    with _no_cyclic_gc():
        return _evaluate(store, rules, as_of or m.utcnow(), settings or ScoringSettings(), quality, person_ids)


_gc_lock = threading.Lock()
_gc_holders = 0  # runs in progress that turned the cyclic collector off
_gc_was_enabled = False


@contextmanager
def _no_cyclic_gc() -> Iterator[None]:
    """No cyclic garbage collection while a run is in progress (reference counting still frees at once).

    A run makes millions of short-lived tuples (rows read, rows written), and each full collection walks every
    tracked object alive; at a million people those walks took more than half of reading the people and of
    writing their rows. A run makes no reference cycles worth collecting early. The collector is process-wide:
    the first run to start turns it off, the last to end turns it back on (if it was on).
    """
    global _gc_holders, _gc_was_enabled
    with _gc_lock:
        if _gc_holders == 0:
            _gc_was_enabled = gc.isenabled()
            gc.disable()
        _gc_holders += 1
    try:
        yield
    finally:
        with _gc_lock:
            _gc_holders -= 1
            if _gc_holders == 0 and _gc_was_enabled:
                gc.enable()


def _evaluate(
    store: Store,
    rules: RuleSet,
    as_of: datetime,
    settings: ScoringSettings,
    quality: QualitySettings | None,
    person_ids: Sequence[int] | None,
) -> EvaluationResult:
    scope = _scope_ids(store, person_ids) if person_ids is not None else None
    incremental = scope is not None
    run_id = store.start_run("segment", "incremental" if incremental else "full")
    result = EvaluationResult(run_id=run_id, as_of=as_of, incremental=incremental, people=0)
    try:
        started = time.perf_counter()
        _drop_out_of_scope(store, person_ids)
        computed = compute(store, as_of, settings, scope, pass_windows(rules) if scope is None else ())
        result.timings["features"] = time.perf_counter() - started
        started = time.perf_counter()
        # The features are written while the scores are computed from them in memory: the driver lets go of
        # the GIL while the database works, so the two overlap on a second core. PostgreSQL takes the scores
        # at the same time as the features (two tables, two server processes); SQLite has one writer at a time,
        # so there the scores wait for the features' commit.
        concurrent = store.engine.dialect.name == "postgresql"
        with ThreadPoolExecutor(2, thread_name_prefix="hub-scores") as pool:
            written = pool.submit(write_features, store, computed.features, scope)
            scores, result.scores = score(store, computed, settings, scope)
            if not concurrent:
                result.people = written.result()
            pool.submit(write_scores, store, scores, result.scores, scope).result()
            result.people = written.result()
        result.timings["scores"] = time.perf_counter() - started
        started = time.perf_counter()
        exited_scope = sorted(set(person_ids or ()) - set(scope or ()))  # merged away: their stays close
        scope_ids = None if scope is None else sorted(set(scope) | set(exited_scope))
        result.segments = write_memberships(
            store, rules, as_of, run_id, scope_ids, people=result.people, quality=quality, counted=computed.events
        )
        result.timings["segments"] = time.perf_counter() - started
        result.warnings = _run_warnings(store, rules, result.scores, scope_ids)
        _store_run_warnings(store, run_id, result)
    except BaseException as exc:
        store.finish_run(run_id, "failed", {}, f"{type(exc).__name__}: {exc}")
        raise
    counts = {"people": result.people, "segments": len(result.segments)}
    store.finish_run(run_id, "ok", counts, None)
    logger.info("segmentation at %s: %d people, %d segments", as_of.isoformat(), result.people, len(result.segments))
    return result
