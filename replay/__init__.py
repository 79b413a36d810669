"""The operator's tool: rebuild, verify, status, dead letters and trimming of the ledger.

One module per operation: `replay.rebuild.rebuild(...)`, `replay.verify.verify(...)`,
`replay.status.status(...)`, `replay.deadletters.redrive(...)`, `replay.trim.trim(...)`.
Read models plug in through the `Rebuildable` role (`replay.target`), implemented by
`replay.postgres` (shadow schemas) and `replay.redis` (key generations).

Depends on `ledger` and `projections`; never writes to the log (a trim only removes what
the archive and every projection already hold).
"""

from __future__ import annotations

from .target import Comparison, Rebuildable, Snapshot
from .targets import open_target

__all__ = ["Comparison", "Rebuildable", "Snapshot", "open_target"]
