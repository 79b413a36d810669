"""Content digests of read-model tables, for crash tests, verify and determinism checks."""

from __future__ import annotations

import hashlib

import psycopg

# Derived by PostgreSQL from another column (content): adds nothing to a digest.
VOLATILE = {"search"}


def table_digest(conn: psycopg.Connection, table: str) -> tuple[int, str]:
    """(row count, sha256 of every row in primary-key order) of `table` in the current schema."""
    key = conn.execute(
        "SELECT array_agg(a.attname ORDER BY array_position(i.indkey, a.attnum)) FROM pg_index i"
        " JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey)"
        " WHERE i.indrelid = %s::regclass AND i.indisprimary", (table,)).fetchone()
    columns = [r[0] for r in conn.execute(
        "SELECT attname FROM pg_attribute WHERE attrelid = %s::regclass AND attnum > 0 AND NOT attisdropped"
        " ORDER BY attnum", (table,)).fetchall() if r[0] not in VOLATILE]
    order = ", ".join(key[0]) if key and key[0] else ", ".join(columns)
    digest, count = hashlib.sha256(), 0
    with conn.cursor() as cur:
        cur.execute(f"SELECT {', '.join(columns)} FROM {table} ORDER BY {order}")
        for row in cur:
            digest.update(repr(row).encode())
            count += 1
    return count, digest.hexdigest()


def digests(conn: psycopg.Connection, tables: tuple[str, ...]) -> dict[str, tuple[int, str]]:
    return {t: table_digest(conn, t) for t in tables}
