"""Analysts' commands over the Redis read models: trending, analytics, feed, watch."""

from __future__ import annotations

import re
import threading
from datetime import date, datetime
from collections.abc import Iterable
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.table import Table

from ledger.errors import InvalidQuery

from .common import JsonOpt, OrgOpt, console, open_app, print_json, utc

if TYPE_CHECKING:
    from memledger.app import App
    from projections.redis import AnalyticsReport, TrendingReport

WINDOW = re.compile(r"^(\d+)([hd])$")


def register(app: typer.Typer) -> None:
    app.command()(trending)
    app.command()(analytics)
    app.command()(feed)
    app.command()(watch)


def parse_window(value: str) -> int:
    """A window such as `24h` or `7d`, in hours."""
    found = WINDOW.match(value.strip().lower())
    if not found or int(found[1]) == 0:
        raise typer.BadParameter(f"{value!r} is not a window; use hours or days, e.g. 24h or 7d", param_hint="--window")
    return int(found[1]) * (24 if found[2] == "d" else 1)


def parse_day(value: str | None, option: str, default: date | None) -> date | None:
    if value is None:
        return default
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise typer.BadParameter(f"{value!r} is not a date; use YYYY-MM-DD", param_hint=option) from None


# -- trending ------------------------------------------------------------------------------


def trending(
    org: OrgOpt, as_json: JsonOpt = False,
    window: Annotated[str, typer.Option("--window", help="Hours or days back, e.g. 24h or 7d.")] = "24h",
    top: Annotated[int, typer.Option("--top", min=1, max=1000)] = 10,
    until: Annotated[datetime | None, typer.Option("--until", help="End of the window (default: now).")] = None,
) -> None:
    """Trending tags and most-recalled memories of an org over a time window."""
    hours = parse_window(window)
    with open_app() as app:
        try:
            report = app.trending(org, hours, top, utc(until))
        except InvalidQuery as e:
            raise typer.BadParameter(str(e), param_hint="--window") from None
        if as_json:
            print_json(report.as_json())
            return
        print_trending(app, report)


def print_trending(app: App, report: TrendingReport) -> None:
    contents = app.memory_contents(report.org_id, ((m.agent_id, m.memory_id) for m in report.memories))
    for table in trending_tables(report, contents):
        console.print(table)


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


# -- analytics -----------------------------------------------------------------------------


def analytics(
    org: OrgOpt, as_json: JsonOpt = False,
    since: Annotated[str | None, typer.Option("--since", metavar="YYYY-MM-DD",
                                              help="First day (default: 6 days before --until).")] = None,
    until: Annotated[str | None, typer.Option("--until", metavar="YYYY-MM-DD",
                                              help="Last day (default: today, UTC).")] = None,
    first: Annotated[str | None, typer.Option("--from", hidden=True, help="Old name of --since.")] = None,
    last: Annotated[str | None, typer.Option("--to", hidden=True, help="Old name of --until.")] = None,
) -> None:
    """Events per type, unique agents and unique users of an org, per day and over the range."""
    start, end = parse_day(since or first, "--since", None), parse_day(until or last, "--until", None)
    with open_app() as app:
        try:
            report = app.analytics(org, start, end)
        except InvalidQuery as e:
            raise typer.BadParameter(str(e), param_hint="--since") from None
    if as_json:
        print_json(report.as_json())
    else:
        console.print(analytics_table(report))


def analytics_table(report: AnalyticsReport) -> Table:
    table = Table("day", "events", "by type", "agents", "users",
                  title=f"Activity of {report.org_id}, {report.first} to {report.last} (agents and users: HyperLogLog)")
    for d in report.days:
        kinds = ", ".join(f"{t} {n}" for t, n in sorted(d.events.items(), key=lambda x: -x[1]))
        table.add_row(d.day.isoformat(), str(d.total), kinds, str(d.agents), str(d.users))
    table.add_section()
    table.add_row("range", str(sum(report.events.values())), "", str(report.agents), str(report.users))
    return table


# -- feed and watch ------------------------------------------------------------------------


def feed(
    org: OrgOpt, agent: Annotated[str, typer.Option("--agent", help="Agent.")], as_json: JsonOpt = False,
    limit: Annotated[int, typer.Option("--limit", "-n", min=1, max=10_000)] = 20,
) -> None:
    """An agent's recent activity, newest first (the feed keeps the last MEMLEDGER_FEED_LENGTH)."""
    with open_app() as app:
        entries = app.feed(org, agent, limit)
    if as_json:
        print_json(entries)
    else:
        console.print(feed_table(org, agent, entries))


def feed_table(org: str, agent: str, entries: list[dict[str, Any]]) -> Table:
    table = Table("time (UTC)", "type", "subject", "summary", title=f"Recent activity of {org}/{agent}")
    for e in entries:
        table.add_row(e["at"][:19].replace("T", " "), e["type"], e["subject"], e["summary"])
    return table


def watch(
    org: OrgOpt, as_json: Annotated[bool, typer.Option("--json", help="One JSON object per event.")] = False,
    count: Annotated[int | None, typer.Option("--count", min=1, help="Stop after this many events.")] = None,
) -> None:
    """Show an org's events live, as the activity projector applies them (Ctrl-C stops)."""
    if not as_json:
        console.print(f"watching {org} (events appear as `memledger up` projects them; Ctrl-C stops)", style="dim")
    stop = threading.Event()
    with open_app() as app:
        try:
            print_events(app.watch(org, stop), as_json, count, stop)
        except KeyboardInterrupt:
            return


def print_events(events: Iterable[dict[str, Any]], as_json: bool, count: int | None, stop: threading.Event) -> None:
    for seen, event in enumerate(events, 1):
        if as_json:
            print_json(event)
        else:
            console.print(f"{event['at'][:19].replace('T', ' ')}  {event['type']:<22} "
                          f"{event['agent']}/{event['subject']}  {event['summary']}", highlight=False, markup=False)
        if count is not None and seen >= count:
            stop.set()
