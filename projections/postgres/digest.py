"""Content digests of read-model tables, for crash tests, verify and determinism checks.

Two kinds: `table_digest` hashes every row in primary-key order (exact, sorts the table);
`sum_digest` hashes each row's text form with md5 and adds up the first 60 bits:
order-independent, one scan in the server, no sort of a large table (verify, `digest()`).
Both leave out the columns PostgreSQL derives from others (`VOLATILE`).
"""

from __future__ import annotations

import hashlib

import psycopg

# Derived by PostgreSQL from another column (content): adds nothing to a digest.
VOLATILE = {"search"}
_SUM = "SELECT count(*), coalesce(sum(('x' || substr(md5(ROW({})::text), 1, 15))::bit(60)::bigint), 0) FROM {} t"


def quote(*parts: str) -> str:
    """A schema-qualified identifier, quoted: quote("ml", "memories") -> '"ml"."memories"'."""
    return ".".join('"' + p.replace('"', '""') + '"' for p in parts)


def sum_digest(conn: psycopg.Connection, schema: str, table: str) -> str:
    """"rows:sum" of `schema`.`table`: equal tables, equal digests, whatever their row order."""
    columns = [quote(str(r[0])) for r in conn.execute(
        "SELECT attname FROM pg_attribute WHERE attrelid = to_regclass(%s) AND attnum > 0 AND NOT attisdropped"
        " ORDER BY attnum", (quote(schema, table),)).fetchall() if r[0] not in VOLATILE]
    row = conn.execute(_SUM.format(", ".join(f"t.{c}" for c in columns), quote(schema, table))).fetchone()
    return f"{row[0]}:{row[1]}" if row else "0:0"


def primary_key(conn: psycopg.Connection, schema: str, table: str) -> list[str]:
    """The quoted primary-key columns of `schema`.`table`, in key order."""
    rows = conn.execute(
        "SELECT a.attname FROM pg_index i JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey)"
        " WHERE i.indrelid = to_regclass(%s) AND i.indisprimary ORDER BY array_position(i.indkey, a.attnum)",
        (quote(schema, table),)).fetchall()
    return [quote(str(r[0])) for r in rows]


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
