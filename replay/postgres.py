"""The former home of the PostgreSQL rebuild target, kept for callers of these names.

The shadow schema and its swap live in `projections.postgres.shadow_schema` now (with the store
they belong to), the advisory locks in `ledger.postgres`.
"""

from __future__ import annotations

from ledger.postgres import advisory_locks
from projections.postgres.shadow_schema import PostgresShadow, shadow_schema

__all__ = ["PostgresShadow", "advisory_locks", "shadow_schema"]
