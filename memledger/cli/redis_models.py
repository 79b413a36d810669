"""Analysts' commands over the Redis read models: trending, analytics, feed, watch."""

from __future__ import annotations

import re
import threading
from datetime import date, datetime, timedelta, timezone
from typing import Any

import typer
from rich.table import Table

from ledger.connections import connect_redis
from ledger.errors import LedgerError
from projections import MemoryStore, NotFound, open_memory_store
from projections.redis import ActivityFeed, Analytics, AnalyticsReport, Trending, TrendingReport, watch as watch_org

from .common import console, print_json, settings

WINDOW = re.compile(r"^(\d+)([hd])$")


def parse_window(value: str) -> int:
    """A window such as `24h` or `7d`, in hours."""
    found = WINDOW.match(value.strip().lower())
    if not found or int(found[1]) == 0:
        raise typer.BadParameter(f"{value!r} is not a window; use hours or days, e.g. 24h or 7d", param_hint="--window")
    return int(found[1]) * (24 if found[2] == "d" else 1)


def parse_day(value: str | None, option: str, default: date) -> date:
    if value is None:
        return default
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise typer.BadParameter(f"{value!r} is not a date; use YYYY-MM-DD", param_hint=option) from None


# -- trending ------------------------------------------------------------------------------


def memory_contents(store: MemoryStore, report: TrendingReport) -> dict[tuple[str, str], str]:
    """The ranked memories' content, from the PostgreSQL read model."""
    found: dict[tuple[str, str], str] = {}
    for m in report.memories:
        try:
            found[(m.agent_id, m.memory_id)] = store.get(report.org_id, m.memory_id, m.agent_id)["content"]
        except NotFound:
            pass  # forgotten since: the ranking is eventually consistent with the memories table
    return found


def _span(report: TrendingReport) -> str:
    hours = report.hours
    return f"last {hours // 24} days" if hours % 24 == 0 and hours > 24 else f"last {hours}h"


def trending_tables(report: TrendingReport, contents: dict[tuple[str, str], str]) -> tuple[Table, Table]:
    caption = f"window ends {report.until:%Y-%m-%d %H:%M} UTC"
    tags = Table("tag", "score", title=f"Trending tags in {report.org_id} ({_span(report)})")
    for tag, score in report.tags:
        tags.add_row(tag, str(score))
    memories = Table("agent", "memory", "recalls", "content", caption=caption,
                     title=f"Most recalled memories in {report.org_id} ({_span(report)})")
    for m in report.memories:
        memories.add_row(m.agent_id, m.memory_id, str(m.score), contents.get((m.agent_id, m.memory_id), ""))
    return tags, memories


def trending(
    org: str = typer.Option(..., "--org", help="Organisation."),
    window: str = typer.Option("24h", "--window", help="Hours or days back, e.g. 24h or 7d."),
    top: int = typer.Option(10, "--top", min=1, max=1000),
    until: datetime | None = typer.Option(None, "--until", help="End of the window (default: now)."),
    json: bool = typer.Option(False, "--json"),
) -> None:
    """Trending tags and most-recalled memories of an org over a time window."""
    end = until.replace(tzinfo=until.tzinfo or timezone.utc) if until else None
    s, hours = settings(), parse_window(window)
    try:
        with connect_redis(s) as client:
            report = Trending(client, s.namespace, s.partitions).top(org, hours, top, end)
    except ValueError as e:
        raise typer.BadParameter(str(e), param_hint="--window") from None
    if json:
        print_json(report.as_json())
        return
    try:
        store = open_memory_store(s)
    except LedgerError:
        contents = {}  # the ranking still shows, by id
    else:
        contents = memory_contents(store, report)
        store.close()
    for table in trending_tables(report, contents):
        console.print(table)


# -- analytics -----------------------------------------------------------------------------


def analytics_table(report: AnalyticsReport) -> Table:
    table = Table("day", "events", "by type", "agents", "users",
                  title=f"Activity of {report.org_id}, {report.first} to {report.last} (agents and users: HyperLogLog)")
    for d in report.days:
        kinds = ", ".join(f"{t} {n}" for t, n in sorted(d.events.items(), key=lambda x: -x[1]))
        table.add_row(d.day.isoformat(), str(d.total), kinds, str(d.agents), str(d.users))
    table.add_section()
    table.add_row("range", str(sum(report.events.values())), "", str(report.agents), str(report.users))
    return table


def analytics(
    org: str = typer.Option(..., "--org", help="Organisation."),
    first: str | None = typer.Option(None, "--from", help="First day, YYYY-MM-DD (default: 6 days before --to)."),
    last: str | None = typer.Option(None, "--to", help="Last day, YYYY-MM-DD (default: today, UTC)."),
    json: bool = typer.Option(False, "--json"),
) -> None:
    """Events per type, unique agents and unique users of an org, per day and over the range."""
    to = parse_day(last, "--to", datetime.now(timezone.utc).date())
    since = parse_day(first, "--from", to - timedelta(days=6))
    s = settings()
    try:
        with connect_redis(s) as client:
            report = Analytics(client, s.namespace, s.partitions).report(org, since, to)
    except ValueError as e:
        raise typer.BadParameter(str(e), param_hint="--from") from None
    if json:
        print_json(report.as_json())
    else:
        console.print(analytics_table(report))


# -- feed and watch ------------------------------------------------------------------------


def feed_table(org: str, agent: str, entries: list[dict[str, Any]]) -> Table:
    table = Table("time (UTC)", "type", "subject", "summary", title=f"Recent activity of {org}/{agent}")
    for e in entries:
        table.add_row(e["at"][:19].replace("T", " "), e["type"], e["subject"], e["summary"])
    return table


def feed(
    org: str = typer.Option(..., "--org", help="Organisation."),
    agent: str = typer.Option(..., "--agent", help="Agent."),
    limit: int = typer.Option(20, "--limit", "-n", min=1, max=10_000),
    json: bool = typer.Option(False, "--json"),
) -> None:
    """An agent's recent activity, newest first (the feed keeps the last MEMLEDGER_FEED_LENGTH)."""
    s = settings()
    with connect_redis(s) as client:
        entries = ActivityFeed(client, s.namespace, s.partitions).recent(org, agent, limit)
    if json:
        print_json(entries)
    else:
        console.print(feed_table(org, agent, entries))


def print_event(event: dict[str, Any], as_json: bool) -> None:
    if as_json:
        print_json(event)
    else:
        console.print(f"{event['at'][:19].replace('T', ' ')}  {event['type']:<22} "
                      f"{event['agent']}/{event['subject']}  {event['summary']}", highlight=False, markup=False)


def watch(
    org: str = typer.Option(..., "--org", help="Organisation."),
    count: int | None = typer.Option(None, "--count", min=1, help="Stop after this many events."),
    json: bool = typer.Option(False, "--json", help="One JSON object per event."),
) -> None:
    """Show an org's events live, as the activity projector applies them (Ctrl-C stops)."""
    s = settings()
    stop = threading.Event()
    seen = 0
    if not json:
        console.print(f"watching {org} (events appear as `memledger up` projects them; Ctrl-C stops)", style="dim")
    try:
        with connect_redis(s) as client:
            for event in watch_org(client, s.namespace, org, stop):
                print_event(event, json)
                seen += 1
                if count is not None and seen >= count:
                    stop.set()
    except KeyboardInterrupt:
        return


def register(app: typer.Typer) -> None:
    app.command()(trending)
    app.command()(analytics)
    app.command()(feed)
    app.command()(watch)
