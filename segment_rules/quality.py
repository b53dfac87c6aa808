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
from typing import Any

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


OVERLAP_WARNING = "overlaps "  # how every overlap finding starts (an incremental run carries them over)
MASK_BITS = 30  # segments per bit mask column: a mask stays a positive 32-bit integer on every backend


def overlaps(conn: Connection, stats: Sequence[SegmentStats]) -> dict[tuple[str, str], float]:
    """Jaccard similarity of every pair of segments with common members (from the open stays).

    Each person's open stays become bit masks (one bit per segment), the people are counted per distinct mask
    combination, and :func:`jaccard_from_masks` turns those few rows into pair counts: two grouped passes
    over the stays, where a self-join of the stays grows with the square of the segments a person holds.
    """
    names = [s.name for s in stats]
    if len(names) < 2:
        return {}
    sm = m.segment_membership
    bit = sa.Integer()
    masks = []
    for start in range(0, len(names), MASK_BITS):
        group = names[start : start + MASK_BITS]
        value = sa.case(*((sm.c.segment == name, 1 << k) for k, name in enumerate(group)), else_=0)
        masks.append(sa.func.sum(sa.cast(value, bit)).label(f"mask{start // MASK_BITS}"))
    per_person = (
        sa.select(*masks)
        .where(sm.c.exited_at.is_(None), sm.c.segment.in_(names))
        .group_by(sm.c.person_id)
        .subquery("per_person")
    )
    columns = [per_person.c[f"mask{k}"] for k in range(len(masks))]
    rows = conn.execute(sa.select(*columns, sa.func.count()).group_by(*columns)).all()
    return jaccard_from_masks(rows, names, {s.name: s.size for s in stats})


def jaccard_from_masks(
    rows: Sequence[Sequence[Any]], names: Sequence[str], sizes: Mapping[str, int]
) -> dict[tuple[str, str], float]:
    """Jaccard of every pair with common members, from ``(mask0, mask1, ..., people)`` rows.

    Bit ``i % MASK_BITS`` of mask ``i // MASK_BITS`` says the people of the row hold ``names[i]``; the pair
    counts are one matrix product over the rows.
    """
    import numpy as np

    n = len(names)
    if not rows or n < 2:
        return {}
    combos = np.array([r[:-1] for r in rows], dtype=np.int64)
    weight = np.array([r[-1] for r in rows], dtype=np.float64)
    bits = np.zeros((len(rows), n))
    for i in range(n):
        bits[:, i] = (combos[:, i // MASK_BITS] >> (i % MASK_BITS)) & 1
    common = bits.T @ (bits * weight[:, None])
    out: dict[tuple[str, str], float] = {}
    for i in range(n):
        for j in range(n):
            left, right = names[i], names[j]
            shared = int(common[i, j] + 0.5)  # exact counts, summed as floats
            if left < right and shared:
                union = sizes[left] + sizes[right] - shared
                out[(left, right)] = shared / union if union else 0.0
    return out


def overlap_warnings(
    jaccard: Mapping[tuple[str, str], float], stats: Sequence[SegmentStats], settings: QualitySettings
) -> dict[str, list[str]]:
    """Near-duplicate pairs; members of one exclusive group never overlap, and a reference is not a duplicate."""
    group = {s.name: s.group for s in stats}
    out: dict[str, list[str]] = {}
    for (left, right), value in sorted(jaccard.items()):
        if value > settings.max_overlap and not (group.get(left) and group.get(left) == group.get(right)):
            finding = f": Jaccard {value:.2f} (more than {settings.max_overlap:.2f}), near-duplicates"
            out.setdefault(left, []).append(OVERLAP_WARNING + right + finding)
            out.setdefault(right, []).append(OVERLAP_WARNING + left + finding)
    return out


def is_overlap_warning(text: str) -> bool:
    """Whether a stored warning is one that :func:`overlap_warnings` makes."""
    return text.startswith(OVERLAP_WARNING)


def score_warnings(policy: Mapping[str, str], policy_reasons: Mapping[str, str]) -> list[str]:
    """Degenerate RFM bins: the dimensions where quintiles fell back to fixed bins on their own, and why.

    Fixed bins the config asked for are not a finding.
    """
    return [
        f"RFM {dimension} uses fixed bins: {policy_reasons.get(dimension, '')}"
        for dimension, used in policy.items()
        if used == "fixed" and policy_reasons.get(dimension) != "fixed bins requested"
    ]


def exclusive_gaps(
    conn: Connection, groups: Mapping[str, Sequence[str]], person_ids: Sequence[int] | None = None
) -> dict[str, int]:
    """For each exclusive group, how many people hold more than one of its members (should be none).

    ``person_ids``: only among these people (an incremental run checks the people it re-evaluated; the daily
    full run checks everyone).
    """
    sm = m.segment_membership
    out: dict[str, int] = {}
    for name, members in groups.items():
        where = [sm.c.segment.in_(list(members)), sm.c.exited_at.is_(None)]
        if person_ids is not None:
            where.append(sm.c.person_id.in_(list(person_ids)))
        doubled = (
            sa.select(sm.c.person_id)
            .where(*where)
            .group_by(sm.c.person_id)
            .having(sa.func.count() > 1)
            .subquery()
        )
        out[name] = int(conn.execute(sa.select(sa.func.count()).select_from(doubled)).scalar_one())
    return out
