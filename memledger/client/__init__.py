"""The Python client of the HTTP API: `Client` (sync) and `AsyncClient`, over httpx.

    from memledger.client import Client

    with Client("http://127.0.0.1:8080", "mlk_key_..._...") as ml:
        receipt = ml.store("Dana prefers morning meetings", agent_id="support-bot", tags=["scheduling"])
        page = ml.query(tags=["scheduling"])        # waits until the store above is readable

Both mirror what an agent does with `memledger.app.App`: the same operations, typed results
(memledger/client/results.py) and the same errors (ledger/errors.py), decoded from the server's
problem documents: `except VersionConflict as e: e.current_version` works alike in-process and
over HTTP. A server that cannot be reached is `StoreUnavailable`, as Redis down is in-process.

Read-your-writes: a client remembers its last write's consistency token and sends it as
`consistent_with` on its next reads, so they wait (bounded, server side) until that write is
readable. `read_your_writes=False` turns that off; a read's own `consistent_with` wins.

Live events: `events()` iterates GET /v1/events and, when the connection drops, reconnects
with the last event's id (`Last-Event-ID`): nothing is lost or repeated across reconnections.

Layout: `calls.py` builds each request once for both clients, `sync.py` and `aio.py` send them,
`results.py` holds the typed answers and turns problem documents into errors.
"""

from __future__ import annotations

from .aio import AsyncClient
from .results import (
    Analytics,
    HealthReport,
    HistoryEntry,
    LiveEvent,
    Memory,
    MemoryPage,
    MessageReceipt,
    RecentMessages,
    SessionReceipt,
    SessionView,
    Trending,
    WriteReceipt,
)
from .sync import Client

__all__ = ["Analytics", "AsyncClient", "Client", "HealthReport", "HistoryEntry", "LiveEvent", "Memory",
           "MemoryPage", "MessageReceipt", "RecentMessages", "SessionReceipt", "SessionView", "Trending",
           "WriteReceipt"]
