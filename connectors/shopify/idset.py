"""A compact, JSON-safe encoding of a set of Shopify ids, for the deletion check's stream state.

Numeric ids are sorted, delta-encoded as LEB128 varints, deflated and base64-encoded: about two bytes per
customer for realistic id gaps, so the state of a 20,000-customer shop stays near 40 KB.
"""

from __future__ import annotations

import base64
import zlib
from collections.abc import Iterable


def encode(ids: Iterable[int]) -> str:
    """The set ``ids`` (non-negative integers) as text."""
    out = bytearray()
    previous = 0
    for value in sorted(set(ids)):
        if value < 0:
            raise ValueError(f"ids must not be negative, got {value}")
        delta = value - previous
        previous = value
        while True:
            byte = delta & 0x7F
            delta >>= 7
            if delta:
                out.append(byte | 0x80)
            else:
                out.append(byte)
                break
    return base64.b64encode(zlib.compress(bytes(out), 9)).decode("ascii")


def decode(text: str) -> set[int]:
    """The set :func:`encode` wrote.

    Raises:
        ValueError: the text is not such an encoding.
    """
    try:
        raw = zlib.decompress(base64.b64decode(text.encode("ascii"), validate=True))
    except (ValueError, zlib.error) as exc:
        raise ValueError(f"not an encoded id set: {exc}") from exc
    ids: set[int] = set()
    value = shift = current = 0
    for byte in raw:
        current |= (byte & 0x7F) << shift
        if byte & 0x80:
            shift += 7
            continue
        value += current
        ids.add(value)
        current = shift = 0
    if shift:
        raise ValueError("not an encoded id set: truncated varint")
    return ids


def numeric_id(gid: str) -> int | None:
    """``123`` from ``gid://shopify/Customer/123`` (None when the id is not of that form)."""
    tail = gid.rsplit("/", 1)[-1]
    return int(tail) if tail.isdigit() else None
