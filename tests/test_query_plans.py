"""What PostgreSQL does for the analysts' queries: a query naming an agent walks that agent's
rows in the order asked and stops at its limit, instead of intersecting bitmaps of indexes that
hold every org's rows (whose cost grows with the table, not the answer; docs/benchmarks.md)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from ledger import Settings
from ledger.connections import database_url
from ledger.postgres import connect
from memledger.bench.projections_bench import fill_memories
from memledger.bench.scaling import explain, pages_read, plan_buffers, query_plan
from projections import MemoryQuery
from projections.hierarchy import HierarchyQuery
from projections.postgres import migrate
from projections.postgres.hierarchy_reads import hierarchy
from projections.postgres.memory_store import MemoryStore
from projections.postgres.search_reads import SearchStore

ROWS = 50_000


@pytest.fixture
def store(settings: Settings) -> Iterator[MemoryStore]:
    migrate.upgrade(settings)
    with connect(settings, autocommit=True) as conn:
        fill_memories(conn, settings.db_schema, ROWS)
    store = MemoryStore(database_url(settings), settings.db_schema)
    yield store
    store.close()


def scans(node: dict[str, Any]) -> list[tuple[str, str | None]]:
    found = [(node["Node Type"], node.get("Index Name"))] if "Scan" in node["Node Type"] else []
    return found + [s for child in node.get("Plans", []) for s in scans(child)]


@pytest.mark.parametrize("q, index", [
    (MemoryQuery("org1", agent_id="agent3", tags=("billing",), min_importance=0.5, order="importance"),
     "memories_agent_importance"),
    (MemoryQuery("org1", agent_id="agent3", tags=("billing",), order="recent"), "memories_agent_recent"),
    (MemoryQuery("org1", agent_id="agent3", text="tea", order="recent"), "memories_agent_recent"),
], ids=["tag-by-importance", "tag-by-recency", "word-by-recency"])
def test_a_query_for_one_agent_walks_its_rows_in_order(store: MemoryStore, q: MemoryQuery, index: str) -> None:
    # Then the plan walks that agent's index in the order asked, and nothing else
    assert scans(query_plan(store, q)) == [("Index Scan", index)]
    # And the answer is the one the filters define
    rows = store.query(q).rows
    assert len(rows) == 20 and all(r["org_id"] == "org1" and r["agent_id"] == "agent3" for r in rows)
    assert all(set(q.tags) <= set(r["tags"]) and (q.text or "") in r["content"] for r in rows)


@pytest.mark.parametrize("agent", [None, "agent3"], ids=["org", "agent"])
def test_a_query_by_importance_stops_at_its_limit_when_importances_are_few(store: MemoryStore,
                                                                          agent: str | None) -> None:
    # Given memories with three importances, as agents write them (0.5, 0.8, 1.0): each value is
    # shared by a third of an org's rows
    store.conn.execute("UPDATE memories SET importance = (ARRAY[0.5, 0.8, 1.0])[1 + (hashtext(memory_id) & 65535) % 3]")
    store.conn.execute("ANALYZE memories")
    # When an org's or an agent's 20 most important memories are asked for, newest first among equals
    q = MemoryQuery("org1", agent_id=agent, order="importance")
    rows = store.query(q).rows
    # Then the answer is the newest of the highest importance
    assert [r["importance"] for r in rows] == [1.0] * 20
    assert [r["updated_at"] for r in rows] == sorted((r["updated_at"] for r in rows), reverse=True)
    # And it read about a page per row, not the thousands of rows of importance 1.0 (an index
    # ending at importance made PostgreSQL sort them all first)
    assert pages_read(store, q) <= 100


@pytest.mark.parametrize("q", [
    HierarchyQuery("org1"), HierarchyQuery("org1", agent_id="agent3"), HierarchyQuery("org1", levels=("summary",)),
], ids=["all-levels", "one-agent", "summaries"])
def test_the_hierarchy_walks_each_level_newest_first_and_stops(store: MemoryStore, q: HierarchyQuery) -> None:
    # Given a few summaries among the 50,000 memories (one per processed session, in real data)
    store.conn.execute("UPDATE memories SET memory_type = 'summary', session_id = 's' || memory_id"
                       " WHERE (hashtext(memory_id) & 1023) = 0")
    store.conn.execute("ANALYZE memories")
    # When the hierarchy of an org (or of one of its agents, or its summaries alone) is asked for
    nodes = hierarchy(store.conn, q)
    # Then it is the newest nodes first
    summaries = store.conn.execute("SELECT count(*) AS n FROM memories WHERE org_id = 'org1'"
                                   " AND memory_type = 'summary'").fetchone()
    assert summaries and 5 <= summaries["n"] < 100
    assert len(nodes) == (100 if q.levels != ("summary",) else summaries["n"])
    assert [n["at"] for n in nodes] == sorted((n["at"] for n in nodes), reverse=True)
    assert all(n["agent_id"] == q.agent_id for n in nodes if q.agent_id)
    # And each level read about a page per row it returned, not every memory of the org
    # (a sort of the levels' union read them all: over 2,000 pages here)
    assert sum(plan_buffers(explain(store, *q.sql(), run=True))) <= 400


def test_a_query_run_many_times_is_planned_with_its_own_values_every_time(settings: Settings,
                                                                          store: MemoryStore) -> None:
    # Given one query shape run 12 times with other values (psycopg prepares it after 5; PostgreSQL
    # would then switch to one generic plan, chosen without knowing how rare a value is)
    for i in range(12):
        store.query(MemoryQuery(f"org{i % 4}", agent_id=f"agent{i % 6}", tags=(("billing", "work")[i % 2],),
                                min_importance=0.5, text=("tea", "billing")[i % 3 // 2], order="recent"))
    # Then it was prepared, and every execution got a plan of its own values
    prepared = store.conn.execute("SELECT generic_plans, custom_plans FROM pg_prepared_statements"
                                  " WHERE statement LIKE '%FROM memories%'").fetchall()
    assert prepared and all(p["generic_plans"] == 0 and p["custom_plans"] >= 7 for p in prepared)
    # And so does every connection that answers queries (the search read model's too)
    search = SearchStore(settings)
    try:
        for conn in (store.conn, search.conn):
            assert conn.execute("SHOW plan_cache_mode").fetchone() in ({"plan_cache_mode": "force_custom_plan"},
                                                                     ("force_custom_plan",))
            # (4.0, PostgreSQL's default, models spinning disks: at 1M memories it chose bitmaps over
            # every org's rows where a walk of one agent's rows in order reads a tenth of the pages)
            assert conn.execute("SHOW random_page_cost").fetchone() in ({"random_page_cost": "1.1"}, ("1.1",))
    finally:
        search.close()


@pytest.mark.parametrize("plan_cache_mode", ["force_custom_plan", "force_generic_plan"])
def test_the_projectors_look_ups_by_key_use_the_key_on_a_table_never_analyzed(settings: Settings,
                                                                             plan_cache_mode: str) -> None:
    # Given a new namespace's memories table, filled faster than autovacuum analyzes it
    migrate.upgrade(settings)
    with connect(settings, autocommit=True) as conn:
        conn.execute("INSERT INTO memories (org_id, agent_id, memory_id, content, memory_type, tags, importance,"
                     " metadata, created_at, updated_at, version, recall_count)"
                     " SELECT 'org' || g % 4, 'agent' || g % 6, 'm' || g, 'note', 'note', '{}', 0.5, '{}', now(),"
                     " now(), 1, 0 FROM generate_series(1, 5000) AS g")
        # When the memories projection looks rows up by key (as prepared statements are planned, too)
        conn.execute(f"SET plan_cache_mode = {plan_cache_mode}")
        conn.execute("PREPARE look_up(text[], text[], text[]) AS SELECT * FROM memories"
                     " WHERE (org_id, agent_id, memory_id) IN (SELECT * FROM unnest($1, $2, $3))")
        [row] = conn.execute("EXPLAIN (FORMAT JSON) EXECUTE look_up('{org1}', '{agent1}', '{m1}')").fetchall()
    # Then the primary key finds them (an index of the analysts' per-agent orders would read every
    # row of the agent for each)
    assert [index for _, index in scans(row[0][0]["Plan"]) if index] == ["memories_pkey"]
