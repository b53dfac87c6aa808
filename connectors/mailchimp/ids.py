"""How Mailchimp names members, and how the hub names Mailchimp records.

A member's ``id`` is its *subscriber hash*: the MD5 of the lowercased email address. The same person in two
audiences has the same hash, so the hub's record id (and the sink's remote id) is ``{list_id}:{hash}``.
"""

from __future__ import annotations

import hashlib
import re

_HASH_RE = re.compile(r"^[0-9a-f]{32}$")


def subscriber_hash(email: str) -> str:
    """Mailchimp's id of the member with ``email``: MD5 of the trimmed, lowercased address."""
    return hashlib.md5(email.strip().lower().encode("utf-8"), usedforsecurity=False).hexdigest()


def is_subscriber_hash(value: str) -> bool:
    """Whether ``value`` looks like a subscriber hash (32 lowercase hex digits)."""
    return bool(_HASH_RE.match(value))


def member_key(list_id: str, member_id: str) -> str:
    """The hub's id of a member record: ``{list_id}:{subscriber hash}``."""
    return f"{list_id}:{member_id}"


def split_member_key(key: str) -> tuple[str | None, str]:
    """``(list_id, hash)`` of a member key; a bare hash gives ``(None, hash)``."""
    list_id, sep, member_id = key.rpartition(":")
    return (list_id, member_id) if sep else (None, key)
