"""Analysts' commands over PostgreSQL: query memories, query hierarchy, memory show, stats."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.table import Table

from .common import AgentOpt, JsonOpt, OrgOpt, SinceOpt, UntilOpt, console, group, open_app, print_json, utc

if TYPE_CHECKING:
    from projections import MemoryQuery
    from projections.hierarchy import Level
    from projections.history import HistoryEntry

query_app = group("Query the read models.")
memory_app = group("One memory.")

TagOpt = Annotated[list[str] | None, typer.Option("--tag", help="Repeat for several tags.")]
AsOfOpt = Annotated[datetime | None, typer.Option("--as-of", help="As it stood at this time (from history).")]
LEVELS: tuple[Level, ...] = ("raw", "summary", "discrete")


def register(app: typer.Typer) -> None:
    app.add_typer(query_app, name="query")
    app.add_typer(memory_app, name="memory")
    app.command("stats")(stats)


@query_app.command("memories")
def query_memories(
    org: OrgOpt, agent: AgentOpt = None, tag: TagOpt = None, since: SinceOpt = None, until: UntilOpt = None,
    all_tags: Annotated[bool, typer.Option("--all-tags", help="Require every --tag (default: any).")] = False,
    any_tag: Annotated[bool, typer.Option("--any-tag", help="Match any --tag (the default).")] = False,
    min_importance: Annotated[float | None, typer.Option("--min-importance", min=0.0, max=1.0)] = None,
    text: Annotated[str | None, typer.Option("--text", help="Full-text search on content.")] = None,
    order: Annotated[str, typer.Option("--order", help="recent | importance")] = "recent",
    limit: Annotated[int, typer.Option("--limit", "-n", min=1, max=1000)] = 20,
    as_of: Annotated[datetime | None, typer.Option("--as-of", help="What --agent knew at this time.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Memories of an org, filtered and ordered; repeated queries are answered by the Redis cache."""
    query = memory_query(org, agent, tag or [], all_tags, any_tag, min_importance, since, until, text, order, limit)
    with open_app() as app:
        if as_of is not None:
            rows, cache = app.as_of(org, agent, as_of, query), "BYPASS"
        else:
            result = app.query(query)
            rows, cache = result.rows, result.cache
    if as_json:
        print_json({"cache": cache, "rows": rows})
    else:
        console.print(memories_table(rows, f"{len(rows)} memories of {org} (cache: {cache})"))


def memory_query(org: str, agent: str | None, tags: list[str], all_tags: bool, any_tag: bool,
                 min_importance: float | None, since: datetime | None, until: datetime | None, text: str | None,
                 order: str, limit: int) -> MemoryQuery:
    """The `MemoryQuery` the options describe, or a usage error naming the option."""
    from projections import MemoryQuery

    if all_tags and any_tag:
        raise typer.BadParameter("give --any-tag or --all-tags, not both")
    if order not in ("recent", "importance"):
        raise typer.BadParameter("--order is recent or importance")
    return MemoryQuery(org, agent, tuple(t.lower() for t in tags), "all" if all_tags else "any", min_importance,
                       since, until, text, order=order, limit=limit)  # type: ignore[arg-type]


@query_app.command("hierarchy")
def query_hierarchy(
    org: OrgOpt, agent: AgentOpt = None, since: SinceOpt = None, until: UntilOpt = None,
    session: Annotated[str | None, typer.Option("--session", help="Only this session.")] = None,
    level: Annotated[list[str] | None, typer.Option(
        "--level", help="raw | summary | discrete (repeatable; default all).")] = None,
    limit: Annotated[int, typer.Option("--limit", "-n", min=1, max=10_000)] = 100,
    as_json: JsonOpt = False,
) -> None:
    """The memory hierarchy: sessions (raw), their summaries, the discrete memories under them."""
    from projections.hierarchy import HierarchyQuery

    query = HierarchyQuery(org, levels(level or []), session, agent, utc(since), utc(until), limit)
    with open_app() as app:
        rows = app.hierarchy(query)
    if as_json:
        print_json({"rows": rows})
    else:
        console.print(hierarchy_table(rows, f"{len(rows)} nodes of {org}"))


def levels(given: list[str]) -> tuple[Level, ...]:
    unknown = [x for x in given if x not in LEVELS]
    if unknown:
        raise typer.BadParameter(f"--level is one of {', '.join(LEVELS)}, not {', '.join(unknown)}")
    return tuple(x for x in LEVELS if x in given) or LEVELS


@memory_app.command("show")
def memory_show(
    memory_id: str, org: OrgOpt, agent: AgentOpt = None, as_of: AsOfOpt = None, as_json: JsonOpt = False,
    history: Annotated[bool, typer.Option("--history", help="Also list every event of the memory.")] = False,
) -> None:
    """One memory's current state (or, with --as-of, as it stood then) and, with --history, its events."""
    with open_app() as app:
        view = app.memory(org, memory_id, agent, history, as_of)
    if as_json:
        print_json(view.as_json())
        return
    if view.memory is not None:
        console.print(memories_table([view.memory]))
    if history:
        console.print(history_table(view.history))


def stats(org: OrgOpt, as_json: JsonOpt = False) -> None:
    """An org in numbers: per agent (live memories, stored, updated, forgotten, expired, recalls,
    sessions), live memories per tag, and the hierarchy (sessions, summaries, extracted, direct)."""
    with open_app() as app:
        report = app.stats_report(org)
    if as_json:
        print_json(report.as_json())
        return
    console.print(stats_table({org: report.agents}))
    console.print(counts_table("Live memories per tag", "tag", [(r["tag"], r["memories"]) for r in report.tags[:20]]))
    h = report.hierarchy
    console.print(counts_table("Hierarchy", "level", [
        *((f"sessions {status}", n) for status, n in sorted(h["sessions"].items())),
        ("messages", h["messages"]), ("summaries", h["summaries"]), ("extracted memories", h["extracted"]),
        ("memories stored directly", h["direct"])]))


# -- rendering -------------------------------------------------------------------------------


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


def history_table(entries: Sequence[HistoryEntry], width: int = 80, title: str = "") -> Table:
    table = Table("position", "version", "time", "type", "change", title=title)
    for h in entries:
        e = h.event
        table.add_row(f"{h.partition}/{h.stream_id}", str(e.subject_version), f"{e.occurred_at:%Y-%m-%d %H:%M:%S}",
                      e.type, str(e.data.model_dump(exclude_defaults=True))[:width])
    return table


def stats_table(by_org: dict[str, list[dict[str, Any]]]) -> Table:
    table = Table("org", "agent", "live memories", "stored", "updated", "forgotten", "expired", "recalls", "sessions",
                  title="Memories per agent")
    for org, rows in by_org.items():
        for r in rows:
            table.add_row(org, r["agent_id"], *(str(r[k]) for k in ("live_memories", "stored", "updated", "forgotten",
                                                                      "expired", "recalls", "sessions")))
    return table


def counts_table(title: str, what: str, counts: Sequence[tuple[str, int]]) -> Table:
    table = Table(what, "count", title=title)
    for name, n in counts:
        table.add_row(name, str(n))
    return table


def hierarchy_table(rows: list[dict[str, Any]], title: str) -> Table:
    table = Table("level", "id", "parent", "session", "type", "time", "content", title=title)
    for r in rows:
        table.add_row(r["level"], r["node_id"], r["parent_id"] or "", r["session_id"] or "", r["memory_type"],
                      f"{r['at']:%Y-%m-%d %H:%M:%S}", _content(r))
    return table


def _content(row: dict[str, Any], width: int = 120) -> str:
    if row["level"] != "raw":
        text = str(row["content"])
        return text if len(text) <= width else text[: width - 1] + "…"
    if row["transcript"] is None:
        return f"[transcript purged] {row['status']}"
    return f"{len(row['transcript'])} messages, {row['status']}"
