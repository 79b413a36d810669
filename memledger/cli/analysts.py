"""Analysts' commands: query memories, memory show (with history or as of a time)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import typer
from rich.table import Table

from projections import MemoryQuery, NotFound, open_memory_store
from projections.redis import open_cached_store

from .common import console, print_json, settings

query_app = typer.Typer(no_args_is_help=True, help="Query the read models.")
memory_app = typer.Typer(no_args_is_help=True, help="One memory.")


def memories_table(rows: list[dict[str, Any]], title: str = "") -> Table:
    table = Table(title=title)
    table.add_column("memory", no_wrap=True)
    table.add_column("agent", no_wrap=True)
    table.add_column("imp.", justify="right")
    table.add_column("tags")
    table.add_column("content", ratio=1)
    for r in rows:
        table.add_row(r["memory_id"], r["agent_id"], f"{r['importance']:.2f}", ", ".join(r["tags"]), r["content"])
    return table


@query_app.command("memories")
def query_memories(
    org: str = typer.Option(..., "--org", help="Organisation (every query is scoped to one)."),
    agent: str | None = typer.Option(None, "--agent"),
    tag: list[str] = typer.Option([], "--tag", help="Repeat for several tags."),
    all_tags: bool = typer.Option(False, "--all-tags", help="Require every --tag (default: any of them)."),
    any_tag: bool = typer.Option(False, "--any-tag", help="Match any --tag (the default)."),
    min_importance: float | None = typer.Option(None, "--min-importance", min=0.0, max=1.0),
    since: datetime | None = typer.Option(None, "--since"),
    until: datetime | None = typer.Option(None, "--until"),
    text: str | None = typer.Option(None, "--text", help="Full-text search on content."),
    order: str = typer.Option("recent", "--order", help="recent | importance"),
    limit: int = typer.Option(20, "--limit", min=1, max=1000),
    as_of: datetime | None = typer.Option(None, "--as-of", help="What --agent knew at this time (from history)."),
    json: bool = typer.Option(False, "--json"),
) -> None:
    """Memories of an org, filtered and ordered."""
    if all_tags and any_tag:
        raise typer.BadParameter("give --any-tag or --all-tags, not both")
    if order not in ("recent", "importance"):
        raise typer.BadParameter("--order is recent or importance")
    q = MemoryQuery(org, agent, tuple(t.lower() for t in tag), "all" if all_tags else "any", min_importance,
                    since, until, text, order=order, limit=limit)  # type: ignore[arg-type]
    if as_of is not None and agent is None:
        raise typer.BadParameter("--as-of needs --agent")
    store = open_cached_store(settings())  # repeated queries are served from the Redis cache
    try:
        if as_of is not None and agent is not None:
            rows, cache = store.as_of(org, agent, as_of, q), "BYPASS"
        else:
            result = store.query(q)
            rows, cache = result.rows, result.cache
    finally:
        store.close()
    if json:
        print_json({"cache": cache, "rows": rows})
    else:
        console.print(memories_table(rows, f"{len(rows)} memories of {org} (cache: {cache})"))


@memory_app.command("show")
def memory_show(
    memory_id: str,
    org: str = typer.Option(..., "--org"),
    agent: str | None = typer.Option(None, "--agent"),
    history: bool = typer.Option(False, "--history", help="Also list every event of the memory."),
    json: bool = typer.Option(False, "--json"),
) -> None:
    """One memory's current state (and its history)."""
    store = open_memory_store(settings())
    try:
        events = store.history(org, memory_id) if history else []
        try:
            row: dict[str, Any] | None = store.get(org, memory_id, agent)
        except NotFound:
            if not events:
                raise
            row = None  # forgotten or expired: the history still tells its story
    finally:
        store.close()
    if json:
        print_json({"memory": row, "history": [
            {"partition": h.partition, "stream_id": h.stream_id, **h.event.model_dump(mode="json")} for h in events]})
        return
    if row is not None:
        console.print(memories_table([row]))
    if history:
        table = Table("position", "version", "time", "type", "change")
        for h in events:
            e = h.event
            table.add_row(f"{h.partition}/{h.stream_id}", str(e.subject_version), f"{e.occurred_at:%Y-%m-%d %H:%M:%S}",
                          e.type, str(e.data.model_dump(exclude_defaults=True))[:80])
        console.print(table)


def register(app: typer.Typer) -> None:
    app.add_typer(query_app, name="query")
    app.add_typer(memory_app, name="memory")
