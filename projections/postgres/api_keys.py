"""The API keys read model: one row per key issued (`KeyIssued`), marked when revoked (`KeyRevoked`).

Authentication reads it (memledger/keyring.py): a key is found by its id, which its secret
carries, and checked against the stored hash. The secret itself is never in the ledger or
here. Key ids are unique within an org (the append script refuses a second `IssueKey` of an
id); across orgs nothing enforces it, so the table is keyed by (org, key id) and a lookup
that finds an id in two orgs authenticates neither (see `find_keys`).

Only key events change it; a batch is a handful of statements at most, so each event is
written as it comes, in log order, inside the batch's transaction.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg
from psycopg.rows import dict_row

from ledger.events import KeyIssued, KeyRevoked, RecordedEvent
from ledger.postgres import translated

from .base import PostgresProjection

__all__ = ["ApiKey", "ApiKeysProjection", "StoredKey", "find_keys", "list_keys"]

_ISSUE = """
INSERT INTO api_keys (org_id, key_id, role, agent_id, label, secret_hash, issued_at, issued_by, partition, stream_id)
VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)
"""
_REVOKE = """
UPDATE api_keys SET revoked_at = %s, revoked_by = %s, revoke_reason = %s, partition = %s, stream_id = %s
WHERE org_id = %s AND key_id = %s
"""
_COLUMNS = "key_id, org_id, role, agent_id, label, issued_at, issued_by, revoked_at, revoked_by, revoke_reason"


class ApiKeysProjection(PostgresProjection):
    name = "api_keys"
    version = 1
    tables = ("api_keys",)

    def write(self, cur: psycopg.Cursor, events: Sequence[RecordedEvent]) -> None:
        for r in events:
            e, data, at = r.event, r.event.data, r.position
            if isinstance(data, KeyIssued):
                cur.execute(_ISSUE, (e.org_id, e.subject_id, data.role, data.agent_id, data.label, data.secret_hash,
                                     e.occurred_at, e.actor, at.partition, at.stream_id))
            elif isinstance(data, KeyRevoked):
                cur.execute(_REVOKE, (e.occurred_at, e.actor, data.reason, at.partition, at.stream_id,
                                      e.org_id, e.subject_id))


# -- the query side ------------------------------------------------------------------------


@dataclass(frozen=True)
class ApiKey:
    """A key as operators see it: never its secret, nor the secret's hash."""

    key_id: str
    org_id: str
    role: str
    agent_id: str | None
    label: str | None
    issued_at: datetime
    issued_by: str | None
    revoked_at: datetime | None
    revoked_by: str | None
    revoke_reason: str | None

    @property
    def revoked(self) -> bool:
        return self.revoked_at is not None

    def as_json(self) -> dict[str, Any]:
        return {**self.__dict__, "revoked": self.revoked}


@dataclass(frozen=True)
class StoredKey:
    """A key with the hash its secret must match (for authentication only)."""

    key: ApiKey
    secret_hash: str


def find_keys(conn: psycopg.Connection, key_id: str) -> list[StoredKey]:
    """Every row with this key id: one for a known key (two only if an operator reused an id
    in another org, which the caller must refuse)."""
    with translated(), conn.cursor(row_factory=dict_row) as cur:
        rows = cur.execute(f"SELECT {_COLUMNS}, secret_hash FROM api_keys WHERE key_id = %s LIMIT 2",
                           (key_id,)).fetchall()
    return [StoredKey(ApiKey(**{k: v for k, v in r.items() if k != "secret_hash"}), r["secret_hash"]) for r in rows]


def list_keys(conn: psycopg.Connection, org_id: str | None) -> list[ApiKey]:
    """The keys of `org_id` (of every org when None), oldest first."""
    where, params = ("WHERE org_id = %s", (org_id,)) if org_id is not None else ("", ())
    with translated(), conn.cursor(row_factory=dict_row) as cur:
        rows = cur.execute(f"SELECT {_COLUMNS} FROM api_keys {where} ORDER BY issued_at, org_id, key_id",
                           params).fetchall()
    return [ApiKey(**r) for r in rows]
