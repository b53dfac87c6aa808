"""Quality checks on every evaluation: segments too small or empty, too many, near-duplicates, degenerate score
bins, unstable membership.

Each finding is one line naming the segment, what is wrong and the threshold it crossed. ``hub segment`` shows
them; ``hub check --strict`` fails on them. The thresholds are config (``segments.quality``); the defaults come
from what the segmentation research measured on real shops (a 12-member "can't lose them" segment and two
empty ones from the textbook RFM table on CDNOW; tie policies relabelling a fifth of customers).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from hub.store import models as m


@dataclass(frozen=True)
class QualitySettings:
    """Thresholds of the quality checks.

    Args:
        min_size: a segment with fewer members is too small to act on (and to measure).
        min_share: nor with a smaller share of the people in scope.
        max_segments: more active (non-empty) segments than this is more than a small team can use.
        max_overlap: two segments outside an exclusive group whose Jaccard similarity exceeds this are
            near-duplicates.
        max_churn: entries plus exits above this share of the previous size flag an unstable segment.
    """

    min_size: int = 20
    min_share: float = 0.01
    max_segments: int = 30
    max_overlap: float = 0.8
    max_churn: float = 0.5


@dataclass(frozen=True)
class SegmentStats:
    """The numbers the checks need about one segment."""

    name: str
    size: int
    entered: int
    exited: int
    previous_size: int | None  # None on the first evaluation
    group: str | None = None
    exclusive: bool = False


def size_warnings(stats: Sequence[SegmentStats], people: int, settings: QualitySettings) -> dict[str, list[str]]:
    """Empty, too small and unstable segments; too many segments (reported on each active one)."""
    out: dict[str, list[str]] = {s.name: [] for s in stats}
    for s in stats:
        if s.size == 0:
            out[s.name].append("empty: no one matches the rule")
            continue
        if s.size < settings.min_size:
            out[s.name].append(f"too small: {s.size} members (fewer than {settings.min_size})")
        elif people and s.size / people < settings.min_share:
            out[s.name].append(
                f"too small: {s.size / people:.1%} of {people:,} people (less than {settings.min_share:.0%})"
            )
        if s.previous_size:
            moved = (s.entered + s.exited) / s.previous_size
            if moved > settings.max_churn:
                out[s.name].append(
                    f"unstable: {s.entered} entered and {s.exited} left since the last run "
                    f"({moved:.0%} of its previous {s.previous_size}; more than {settings.max_churn:.0%})"
                )
    active = [s for s in stats if s.size > 0]
    if len(active) > settings.max_segments:
        for s in active:
            out[s.name].append(f"too many segments: {len(active)} are active (more than {settings.max_segments})")
    return out


def overlaps(conn: Connection, stats: Sequence[SegmentStats]) -> dict[tuple[str, str], float]:
    """Jaccard similarity of every pair of segments with common members (from the open stays)."""
    sm = m.segment_membership
    a, b = sm.alias("a"), sm.alias("b")
    rows = conn.execute(
        sa.select(a.c.segment, b.c.segment, sa.func.count())
        .select_from(a.join(b, (a.c.person_id == b.c.person_id) & (a.c.segment < b.c.segment)))
        .where(a.c.exited_at.is_(None), b.c.exited_at.is_(None))
        .group_by(a.c.segment, b.c.segment)
    )
    sizes = {s.name: s.size for s in stats}
    out: dict[tuple[str, str], float] = {}
    for left, right, common in rows:
        if left in sizes and right in sizes:
            union = sizes[left] + sizes[right] - int(common)
            out[(str(left), str(right))] = int(common) / union if union else 0.0
    return out


def overlap_warnings(
    jaccard: Mapping[tuple[str, str], float], stats: Sequence[SegmentStats], settings: QualitySettings
) -> dict[str, list[str]]:
    """Near-duplicate pairs; members of one exclusive group never overlap, and a reference is not a duplicate."""
    group = {s.name: s.group for s in stats}
    out: dict[str, list[str]] = {}
    for (left, right), value in sorted(jaccard.items()):
        if value > settings.max_overlap and not (group.get(left) and group.get(left) == group.get(right)):
            message = f"overlaps {{other}}: Jaccard {value:.2f} (more than {settings.max_overlap:.2f}), near-duplicates"
            out.setdefault(left, []).append(message.format(other=right))
            out.setdefault(right, []).append(message.format(other=left))
    return out


def score_warnings(policy: Mapping[str, str], policy_reasons: Mapping[str, str]) -> list[str]:
    """Degenerate RFM bins: the dimensions where quintiles fell back to fixed bins on their own, and why.

    Fixed bins the config asked for are not a finding.
    """
    return [
        f"RFM {dimension} uses fixed bins: {policy_reasons.get(dimension, '')}"
        for dimension, used in policy.items()
        if used == "fixed" and policy_reasons.get(dimension) != "fixed bins requested"
    ]


def exclusive_gaps(conn: Connection, groups: Mapping[str, Sequence[str]]) -> dict[str, int]:
    """For each exclusive group, how many people hold more than one of its members (should be none)."""
    sm = m.segment_membership
    out: dict[str, int] = {}
    for name, members in groups.items():
        doubled = (
            sa.select(sm.c.person_id)
            .where(sm.c.segment.in_(list(members)), sm.c.exited_at.is_(None))
            .group_by(sm.c.person_id)
            .having(sa.func.count() > 1)
            .subquery()
        )
        out[name] = int(conn.execute(sa.select(sa.func.count()).select_from(doubled)).scalar_one())
    return out
