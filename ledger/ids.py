"""Time-ordered identifiers (UUID version 7, RFC 9562)."""

from __future__ import annotations

import os
import time
import uuid


def uuid7(ms: int | None = None) -> uuid.UUID:
    """A UUIDv7: 48 bits of Unix milliseconds, then random bits; sorts by creation time."""
    ms = time.time_ns() // 1_000_000 if ms is None else ms
    rand = int.from_bytes(os.urandom(10), "big")
    value = (ms & (2**48 - 1)) << 80 | rand & ~(0xF << 76) & ~(0x3 << 62)
    value |= 0x7 << 76 | 0x2 << 62  # version 7, RFC 4122 variant
    return uuid.UUID(int=value)


def new_id(prefix: str) -> str:
    """A readable, sortable id such as `mem_0190f3...`."""
    return f"{prefix}_{uuid7().hex}"
