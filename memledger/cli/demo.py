"""`memledger demo`: the main job for a newcomer, on the embedded servers by default."""

from __future__ import annotations

import time
from datetime import datetime, timedelta, timezone

import typer
from rich.progress import Progress
from rich.table import Table

from commands import open_bus
from ledger import Settings, open_log
from ledger.connections import connect_redis
from ledger.errors import CommandError, DurabilityError
from ledger.log import Receipt
from memledger.demo import demo_commands
from projections import PROJECTIONS, MemoryQuery, MemoryStore, open_memory_store, run_projection
from projections.postgres import migrate as migrations
from projections.redis import Analytics, Trending, open_cached_store

from .analysts import memories_table
from .common import console, settings
from .redis_models import analytics_table, memory_contents, trending_tables


DEMO_WINDOW_HOURS = 30 * 24  # the trending window: the demo's events are stamped when first sent


def _demo_settings() -> Settings:
    try:
        open_log(settings())
        return settings()
    except DurabilityError as e:
        console.print(f"[yellow]demo: {e}.\nThe demo continues with MEMLEDGER_ALLOW_VOLATILE=1: its data may be lost "
                      "on a Redis restart.[/yellow]")
        return settings().model_copy(update={"allow_volatile": True})


def _send(s: Settings) -> None:
    commands = list(demo_commands())
    bus = open_bus(s)
    counts = {"appended": 0, "duplicate": 0, "rejected": 0}
    with Progress(console=console, transient=True) as progress:
        task = progress.add_task("sending commands", total=len(commands))
        for i in range(0, len(commands), 200):
            for outcome in bus.send_many(commands[i:i + 200]):
                kind = "rejected" if isinstance(outcome, CommandError) else (
                    "duplicate" if isinstance(outcome, Receipt) and outcome.duplicate else "appended")
                counts[kind] += 1
            progress.advance(task, len(commands[i:i + 200]))
    console.print(f"sent {len(commands)} commands: {counts['appended']} appended, "
                  f"{counts['duplicate']} already in the ledger (idempotent re-run), {counts['rejected']} rejected")


def _project(s: Settings) -> None:
    for name in PROJECTIONS:
        with console.status(f"projecting {name}"):
            stats = run_projection(s, name, until_caught_up=True)
        console.print(f"projection {name}: applied {stats.applied} new events")


def _show(s: Settings) -> None:
    store = open_memory_store(s)
    stats = Table("org", "agent", "live memories", "stored", "updated", "forgotten", "recalls", "sessions",
                  title="Memories per agent")
    for org in ("acme", "globex", "initech"):
        for r in store.agent_stats(org):
            stats.add_row(org, r["agent_id"], str(r["live_memories"]), str(r["stored"]), str(r["updated"]),
                          str(r["forgotten"]), str(r["recalls"]), str(r["sessions"]))
    console.print(stats)
    q = MemoryQuery("acme", tags=("billing", "pricing"), min_importance=0.5, order="importance", limit=8)
    console.print(memories_table(store.query(q).rows, "acme: billing or pricing, importance >= 0.5"))
    _show_cache(s, q)
    reviewed = store.query(MemoryQuery("acme", agent_id="support-bot", tags=("reviewed",), limit=1)).rows
    if reviewed:
        memory_id = reviewed[0]["memory_id"]
        history = Table("version", "type", "change", title=f"History of {memory_id}")
        for h in store.history("acme", memory_id):
            history.add_row(str(h.event.subject_version), h.event.type,
                            str(h.event.data.model_dump(exclude_defaults=True))[:70])
        console.print(history)
    _show_redis_models(s, store)
    store.close()


def _show_cache(s: Settings, q: MemoryQuery) -> None:
    """The same query twice through the Redis query cache: the second is a HIT."""
    store = open_cached_store(s)
    for attempt in ("once", "again"):
        started = time.perf_counter()
        result = store.query(q)
        console.print(f"query cache, {attempt}: cache: {result.cache}, {len(result.rows)} rows in "
                      f"{(time.perf_counter() - started) * 1000:.2f} ms")
    store.close()


def _show_redis_models(s: Settings, store: MemoryStore) -> None:
    client = connect_redis(s)
    report = Trending(client, s.namespace, s.partitions).top("acme", hours=DEMO_WINDOW_HOURS, top=5)
    for table in trending_tables(report, memory_contents(store, report)):
        console.print(table)
    today = datetime.now(timezone.utc).date()
    console.print(analytics_table(Analytics(client, s.namespace, s.partitions).report("acme", today - timedelta(days=6), today)))
    client.close()


def demo() -> None:
    """Send a realistic stream of commands, project it, and show what an analyst sees."""
    s = _demo_settings()
    console.print(f"namespace {s.namespace!r}; servers: {'configured' if s.redis_url else 'embedded under ' + str(s.home)}")
    migrations.upgrade(s)
    _send(s)
    _project(s)
    _show(s)


def register(app: typer.Typer) -> None:
    app.command()(demo)
