"""`memledger demo`: the main job for a newcomer, on the embedded servers by default."""

from __future__ import annotations

import time
from collections.abc import Sequence
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any

import typer
from rich.progress import Progress

from ledger.errors import CommandError, DurabilityError
from memledger.app import App
from memledger.demo import ORGS, demo_commands
from projections.registry import PROJECTIONS, VECTOR_PROJECTIONS

from .analysts import history_table, memories_table, stats_table
from .common import console, settings
from .redis_models import analytics_table, trending_tables

if TYPE_CHECKING:
    from commands import Command
    from ledger.log import Outcome
    from projections import MemoryQuery

DEMO_WINDOW_HOURS = 30 * 24  # the trending window: the demo's events are stamped when first sent
SEND_BATCH = 200


def register(app: typer.Typer) -> None:
    app.command()(demo)


def demo() -> None:
    """Send a realistic stream of commands, project it, and show what an analyst sees.

    On the embedded servers unless MEMLEDGER_REDIS_URL / MEMLEDGER_DATABASE_URL are set; they
    keep running afterwards (`memledger servers status`, `memledger servers stop`).
    """
    with demo_app() as app:
        s = app.settings
        console.print(f"namespace {s.namespace!r}; servers: "
                      f"{'configured' if s.redis_url else 'embedded under ' + str(s.home)}")
        app.migrate()
        send(app, list(demo_commands()))
        unavailable = app.search_unavailable()
        for name in [*PROJECTIONS, *([] if unavailable else VECTOR_PROJECTIONS)]:
            with console.status(f"projecting {name}"):
                stats = app.run_projector(name, until_caught_up=True)
            console.print(f"projection {name}: applied {stats.applied} new events")
        show(app)
        show_search(app, unavailable)


def demo_app() -> App:
    """The App, on a volatile Redis too: the demo says so and continues (its data may be lost)."""
    app = App.open(settings())
    try:
        app.check_ledger()
        return app
    except DurabilityError as e:
        app.close()
        console.print(f"[yellow]demo: {e}.\nThe demo continues with MEMLEDGER_ALLOW_VOLATILE=1: its data may be "
                      "lost on a Redis restart.[/yellow]")
        return App.open(settings().model_copy(update={"allow_volatile": True}))


def send(app: App, commands: Sequence[Command]) -> None:
    counts = {"appended": 0, "duplicate": 0, "rejected": 0}
    with Progress(console=console, transient=True) as progress:
        task = progress.add_task("sending commands", total=len(commands))
        for i in range(0, len(commands), SEND_BATCH):
            for outcome in app.send_many(commands[i:i + SEND_BATCH]):
                counts[kind(outcome)] += 1
            progress.advance(task, len(commands[i:i + SEND_BATCH]))
    console.print(f"sent {len(commands)} commands: {counts['appended']} appended, "
                  f"{counts['duplicate']} already in the ledger (idempotent re-run), {counts['rejected']} rejected")


def kind(outcome: Outcome) -> str:
    if isinstance(outcome, CommandError):
        return "rejected"
    return "duplicate" if outcome.duplicate else "appended"


def show(app: App) -> None:
    from projections import MemoryQuery

    console.print(stats_table({org: app.stats(org) for org in ORGS}))
    query = MemoryQuery("acme", tags=("billing", "pricing"), min_importance=0.5, order="importance", limit=8)
    console.print(memories_table(show_cache(app, query), "acme: billing or pricing, importance >= 0.5"))
    reviewed = app.query(MemoryQuery("acme", agent_id="support-bot", tags=("reviewed",), limit=1)).rows
    if reviewed:
        memory_id = reviewed[0]["memory_id"]
        console.print(history_table(app.history("acme", memory_id), width=70, title=f"History of {memory_id}"))
    show_redis_models(app)


def show_cache(app: App, query: MemoryQuery) -> list[dict[str, Any]]:
    """The same query twice through the Redis query cache (the second is a HIT); its rows."""
    rows: list[dict[str, Any]] = []
    for attempt in ("once", "again"):
        started = time.perf_counter()
        result = app.query(query)
        console.print(f"query cache, {attempt}: cache: {result.cache}, {len(result.rows)} rows in "
                      f"{(time.perf_counter() - started) * 1000:.2f} ms")
        rows = result.rows
    return rows


def show_redis_models(app: App) -> None:
    report = app.trending("acme", hours=DEMO_WINDOW_HOURS, top=5)
    contents = app.memory_contents("acme", ((m.agent_id, m.memory_id) for m in report.memories))
    for table in trending_tables(report, contents):
        console.print(table)
    today = datetime.now(timezone.utc).date()
    console.print(analytics_table(app.analytics("acme", today - timedelta(days=6), today)))



#: A question that shares no word with the memories it should find ("is allergic to peanuts").
DEMO_SEARCH = "which foods could make someone sick"


def show_search(app: App, unavailable: str | None) -> None:
    """Search by meaning next to a word match: the words find nothing, the meaning does."""
    from projections.search import SearchQuery

    if unavailable:
        console.print(unavailable)
        return
    for mode in ("text", "hybrid"):
        hits = app.search(SearchQuery("acme", DEMO_SEARCH, mode, limit=3))
        console.print(f"search {mode} {DEMO_SEARCH!r}: {len(hits)} hits")
        for h in hits:
            console.print(f"  {h.score:.4f}  vector #{h.vector_rank or '-'}  text #{h.text_rank or '-'}  "
                          f"{h.memory['content']}", highlight=False)
