"""A query's input that PostgreSQL cannot take is refused as `InvalidQuery`, naming the field.

Never a raw driver error: a NUL or a lone surrogate in any string filter, a limit out of
range, a filter of the wrong type, a text search too large to plan.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from datetime import datetime, timezone
from typing import Any

import pytest
from typer.testing import CliRunner

from commands import StoreMemory, open_bus
from ledger import Settings
from ledger.errors import InvalidQuery
from memledger.cli import app
from memledger.cli.common import settings as cli_settings
from projections import MemoryQuery, MemoryStore, open_memory_store, run_projection
from projections.postgres import migrate
from projections.redis import CachedMemoryStore, open_cached_store

NUL, SURROGATE = "a\x00b", "a\ud800b"
BAD_TEXT = pytest.mark.parametrize("bad", [NUL, SURROGATE], ids=["nul", "surrogate"])


@pytest.fixture
def migrated(settings: Settings) -> Settings:
    migrate.upgrade(settings)
    open_bus(settings).send(StoreMemory(org_id="acme", agent_id="a1", memory_id="m1", content="likes tea",
                                        tags=("food",)))
    run_projection(settings, "memories", until_caught_up=True)
    return settings


@pytest.fixture
def plain(migrated: Settings) -> Iterator[MemoryStore]:
    store = open_memory_store(migrated)
    yield store
    store.close()


@pytest.fixture
def cached(migrated: Settings) -> Iterator[CachedMemoryStore]:
    store = open_cached_store(migrated)
    yield store
    store.close()


def _refused(field: str, run: Callable[[], Any]) -> InvalidQuery:
    with pytest.raises(InvalidQuery, match=rf"\b{field}\b") as refused:
        run()
    return refused.value


@BAD_TEXT
@pytest.mark.parametrize("field", ["org_id", "agent_id", "memory_type", "session_id", "text"])
def test_a_string_filter_postgres_cannot_hold_is_refused(field: str, bad: str, plain: MemoryStore,
                                                         cached: CachedMemoryStore) -> None:
    filters: dict[str, Any] = {"org_id": "acme", field: bad}
    for store in (plain, cached):
        error = _refused(field, lambda: store.query(MemoryQuery(**filters)))
        assert "PostgreSQL" in str(error) or "Unicode" in str(error)
    assert plain.query(MemoryQuery("acme")).rows  # the connection still answers


@BAD_TEXT
def test_a_tag_postgres_cannot_hold_is_refused(bad: str, plain: MemoryStore, cached: CachedMemoryStore) -> None:
    for store in (plain, cached):
        _refused("tags", lambda: store.query(MemoryQuery("acme", tags=("food", bad))))


def test_a_text_search_too_large_to_plan_is_refused(plain: MemoryStore) -> None:
    words = " OR ".join(f"w{i}" for i in range(60_000))  # PostgreSQL: "stack depth limit exceeded"
    _refused("text", lambda: plain.query(MemoryQuery("acme", text=words)))


@pytest.mark.parametrize("limit", [2**70, -1, 0, True, 2.5], ids=["huge", "negative", "zero", "bool", "float"])
def test_a_limit_out_of_range_is_refused(limit: Any, plain: MemoryStore) -> None:
    _refused("limit", lambda: plain.query(MemoryQuery("acme", limit=limit)))


@pytest.mark.parametrize(("field", "value"), [
    ("min_importance", "high"), ("min_importance", float("nan")), ("since", "yesterday"), ("until", 42),
    ("tags", "food"), ("match", "some"), ("order", "random"), ("org_id", None), ("org_id", ""), ("agent_id", 7),
])
def test_a_filter_of_the_wrong_type_or_value_is_refused(field: str, value: Any, plain: MemoryStore) -> None:
    _refused(field, lambda: plain.query(MemoryQuery(**{"org_id": "acme", field: value})))


def test_naive_times_are_taken_as_utc(plain: MemoryStore) -> None:
    naive = MemoryQuery("acme", since=datetime(2020, 1, 1), until=datetime(2200, 1, 1))
    assert naive == MemoryQuery("acme", since=datetime(2020, 1, 1, tzinfo=timezone.utc),
                                until=datetime(2200, 1, 1, tzinfo=timezone.utc))
    assert [r["memory_id"] for r in plain.query(naive).rows] == ["m1"]


@BAD_TEXT
def test_single_memory_reads_refuse_bad_ids(bad: str, plain: MemoryStore) -> None:
    now = datetime.now(timezone.utc)
    _refused("org_id", lambda: plain.get(bad, "m1"))
    _refused("memory_id", lambda: plain.get("acme", bad))
    _refused("agent_id", lambda: plain.get("acme", "m1", bad))
    _refused("memory_id", lambda: plain.history("acme", bad))
    _refused("agent_id", lambda: plain.as_of("acme", bad, now))
    _refused("org_id", lambda: plain.agent_stats(bad))
    _refused("at", lambda: plain.as_of("acme", "a1", "now"))  # type: ignore[arg-type]


def test_a_driver_error_that_slips_past_validation_is_still_translated(plain: MemoryStore) -> None:
    # Given a query whose limit was changed after validation (as a bug elsewhere might)
    q = MemoryQuery("acme")
    object.__setattr__(q, "limit", 2**70)
    # Then the adapter edge turns PostgreSQL's "bigint out of range" into the project's error
    error = _refused("query", lambda: plain.query(q))
    assert "bigint out of range" in str(error)


def test_the_cli_reports_the_field(migrated: Settings) -> None:
    env = {"MEMLEDGER_REDIS_URL": str(migrated.redis_url), "MEMLEDGER_DATABASE_URL": str(migrated.database_url),
           "MEMLEDGER_NAMESPACE": migrated.namespace, "MEMLEDGER_PARTITIONS": str(migrated.partitions),
           "MEMLEDGER_ALLOW_VOLATILE": "1"}
    cli_settings.cache_clear()
    try:
        result = CliRunner().invoke(app, ["query", "memories", "--org", "acme", "--text", NUL],
                                    env={**os.environ, **env})
    finally:
        cli_settings.cache_clear()
    assert isinstance(result.exception, InvalidQuery) and "text" in str(result.exception)
    assert result.exception.exit_code == 2
