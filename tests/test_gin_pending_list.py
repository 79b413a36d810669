"""GIN indexes that projectors write a row at a time keep a small pending list.

With PostgreSQL's default (`fastupdate` on, a 4 MB pending list), new entries wait unsorted
until the list is full, and every query using the index reads all of it: on 100k memories
the bench's slowest queries took 10-11 ms, 3.6 ms with the list merged (migration 0008).
"""

from __future__ import annotations

from typing import Any

from commands import open_bus
from ledger import Settings
from ledger.postgres import connect
from memledger.bench.projections_bench import fill_memories
from projections import run_projection
from projections.postgres import migrate
from replay.rebuild import rebuild

from vector_server import pgvector_url, vector_settings  # noqa: F401 - fixtures
from workload import send_all, workload

ROWS = 20_000

GIN_INDEXES = """
SELECT c.relname, coalesce(c.reloptions, '{}') FROM pg_class c JOIN pg_am am ON am.oid = c.relam
WHERE c.relnamespace = %s::regnamespace AND am.amname = 'gin' ORDER BY 1
"""


def _gin_options(conn: Any, schema: str) -> dict[str, list[str]]:
    return {name: options for name, options in conn.execute(GIN_INDEXES, (schema,)).fetchall()}


def _small(options: list[str]) -> bool:
    settings = dict(o.split("=", 1) for o in options)
    return settings.get("fastupdate") == "off" or int(settings.get("gin_pending_list_limit", "4096")) <= 256


def test_every_gin_index_of_the_read_models_keeps_a_small_pending_list(settings: Settings) -> None:
    migrate.upgrade(settings)
    with connect(settings, autocommit=True) as conn:
        found = _gin_options(conn, settings.db_schema)
    assert {"memories_tags", "memories_search"} <= set(found)
    assert {name for name, options in found.items() if not _small(options)} == set()


def test_the_search_models_gin_indexes_too(vector_settings: Settings) -> None:
    # Given a namespace migrated where pgvector is installed (the search read model exists)
    migrate.upgrade(vector_settings)
    with connect(vector_settings, autocommit=True) as conn:
        found = _gin_options(conn, vector_settings.db_schema)
    # Then its GIN indexes keep a small pending list as well as the memories ones
    assert {"memory_search_text", "memory_search_tags", "memories_tags"} <= set(found)
    assert {name for name, options in found.items() if not _small(options)} == set()


def test_a_query_on_tags_or_words_reads_a_few_pages_of_the_index_after_many_inserts(settings: Settings) -> None:
    # Given 20,000 memories inserted into the read model (new GIN entries go to the pending list)
    migrate.upgrade(settings)
    with connect(settings, autocommit=True) as conn:
        fill_memories(conn, settings.db_schema, ROWS)
        conn.execute(f'SET search_path = "{settings.db_schema}"')
        conn.execute("SET enable_seqscan = off")
        for condition in ("tags @> '{health}'", "search @@ 'peanut'::tsquery"):
            # When one tag or one word is looked up through its GIN index
            [row] = conn.execute("EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) "
                                 f"SELECT count(*) FROM memories WHERE {condition}").fetchall()
            node = row[0][0]["Plan"]
            while node["Node Type"] != "Bitmap Index Scan":
                node = node["Plans"][0]
            # Then it finds a fifth or a sixth of the rows, reading a few dozen pages at most
            # (97 for the tags and 236 for the words with a 4 MB pending list; 35 and 14 now)
            assert node["Actual Rows"] > ROWS // 8
            pages = node["Shared Hit Blocks"] + node.get("Shared Read Blocks", 0)
            assert pages <= 50, (condition, pages)


def test_a_rebuilt_memories_model_keeps_the_setting(settings: Settings) -> None:
    # Given a memories model rebuilt on a shadow (its indexes dropped and built again) and swapped in
    migrate.upgrade(settings)
    send_all(open_bus(settings), workload(200, seed=7))
    run_projection(settings, "archive", until_caught_up=True)
    assert rebuild(settings, "memories").swapped
    # Then its GIN indexes still keep a small pending list
    with connect(settings, autocommit=True) as conn:
        found = _gin_options(conn, settings.db_schema)
    assert {"memories_tags", "memories_search"} <= set(found)
    assert all(_small(options) for options in found.values()), found
