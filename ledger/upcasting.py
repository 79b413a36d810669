"""Upcasters: each turns one payload version into the next, on every read path."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .errors import EventError
from .events import PAYLOADS

Data = dict[str, Any]
Upcaster = Callable[[Data], Data]

UPCASTERS: dict[tuple[str, int], Upcaster] = {}


def upcaster(event_type: str, from_version: int) -> Callable[[Upcaster], Upcaster]:
    """Register a function that turns `event_type` payloads of `from_version` into the next."""

    def register(fn: Upcaster) -> Upcaster:
        UPCASTERS[(event_type, from_version)] = fn
        return fn

    return register


@upcaster("MemoryStored", 1)
def _memory_stored_v1_to_v2(data: Data) -> Data:
    # v1 called the content `text` and scored importance as an integer 0..10.
    out = {k: v for k, v in data.items() if k not in ("text", "importance")}
    out["content"] = data["text"]
    out["importance"] = round(float(data.get("importance", 5)) / 10.0, 4)
    out.setdefault("memory_type", "note")
    return out


def upcast(event_type: str, version: int, data: Data) -> Data:
    """Bring `data` from `version` up to the current schema version of `event_type`."""
    try:
        current = PAYLOADS[event_type].schema_version
    except KeyError:
        raise EventError(f"unknown event type {event_type!r}: not in the registered set") from None
    if version > current:
        raise EventError(
            f"{event_type} v{version} is newer than this code knows (v{current}); upgrade memory-ledger"
        )
    while version < current:
        step = UPCASTERS.get((event_type, version))
        if step is None:
            raise EventError(f"no upcaster registered for {event_type} v{version} -> v{version + 1}")
        data = step(data)
        version += 1
    return data
