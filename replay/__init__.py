"""The operator's tool: rebuild, verify, status, dead letters and trimming of the ledger.

One module per operation: `replay.rebuild.rebuild(...)`, `replay.verify.verify(...)`,
`replay.status.status(...)`, `replay.deadletters.redrive(...)`, `replay.trim.trim(...)`.
Read models plug in through the `Shadow` role (`projections.shadow`), which each
projection class names (`replay.targets.open_target`): PostgreSQL shadow schemas
(`projections.postgres.shadow_schema`), Redis key generations (`projections.redis.generations`).

Depends on `ledger` and `projections`; never writes to the log (a trim only removes what
the archive and every projection already hold).
"""

from __future__ import annotations

from projections.shadow import Comparison, Shadow, Snapshot

from .targets import open_target

Rebuildable = Shadow  # the role's former name

__all__ = ["Comparison", "Rebuildable", "Shadow", "Snapshot", "open_target"]
