"""Time-ordered identifiers (UUID version 7, RFC 9562)."""

from __future__ import annotations

import os
import time
import uuid

__all__ = ["new_id", "uuid7", "uuid7_str"]

_MS = 2**48 - 1
_RANDOM = (2**80 - 1) & ~(0xF << 76) & ~(0x3 << 62)  # the random bits the version and variant leave
_MARKS = 0x7 << 76 | 0x2 << 62  # version 7, RFC 4122 variant


def _value(ms: int | None) -> int:
    """48 bits of Unix milliseconds, then random bits, with the version and variant set."""
    ms = time.time_ns() // 1_000_000 if ms is None else ms
    return (ms & _MS) << 80 | int.from_bytes(os.urandom(10), "big") & _RANDOM | _MARKS


def uuid7(ms: int | None = None) -> uuid.UUID:
    """A UUIDv7: 48 bits of Unix milliseconds, then random bits; sorts by creation time."""
    return uuid.UUID(int=_value(ms))


def uuid7_str(ms: int | None = None) -> str:
    """`str(uuid7(ms))` without building the UUID object (the command path makes one per event)."""
    h = f"{_value(ms):032x}"
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def new_id(prefix: str) -> str:
    """A readable, sortable id such as `mem_0190f3...`."""
    return f"{prefix}_{_value(None):032x}"
