"""The operators' view of the ledger: `memledger log show|tail` and `memledger info`."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Annotated, Any

import orjson
import typer
from rich import box
from rich.table import Table

from ledger.events import PAYLOADS, Payload
from memledger.log_reader import EventFilter

from .common import console, group, open_app, print_json, settings

if TYPE_CHECKING:
    from ledger import RecordedEvent
    from memledger.views import LedgerInfo

DEFAULT_TAIL = 20
PAYLOAD_WIDTH = 48

log_app = group("Read the ledger: a range of events, its tail, new events live.")


def _partition(value: int | None) -> int | None:
    if value is not None and not 0 <= value < settings().partitions:
        raise typer.BadParameter(f"partition {value} does not exist (0..{settings().partitions - 1})")
    return value


PartitionOpt = Annotated[int | None, typer.Option("--partition", callback=_partition, help="Only this partition.")]
TypeOpt = Annotated[list[str] | None, typer.Option("--type", "-t", help="Only this event type (repeatable).")]
OrgOpt = Annotated[str | None, typer.Option("--org", help="Only this organisation.")]
AgentOpt = Annotated[str | None, typer.Option("--agent", help="Only this agent.")]
SubjectOpt = Annotated[str | None, typer.Option("--subject", help="Only this memory or session id.")]
SinceOpt = Annotated[str | None, typer.Option(
    "--since", help="Appended at or after this ISO 8601 time (UTC when no offset is given).")]
UntilOpt = Annotated[str | None, typer.Option(
    "--until", help="Appended at or before this ISO 8601 time (millisecond precision).")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON object per event.")]
FollowOpt = Annotated[bool, typer.Option("--follow", "-f", help="Keep printing new events (Ctrl-C ends).")]


def register(app: typer.Typer) -> None:
    """Add the `log` sub-commands and the top-level `info` command to `app`."""
    app.add_typer(log_app, name="log")
    app.command("info")(info)


# -- options -> filter -----------------------------------------------------------------------


def parse_time(value: str | None, option: str) -> int | None:
    """An ISO 8601 time as Unix milliseconds; a time without offset is taken as UTC."""
    if value is None:
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise typer.BadParameter(
            f"{value!r} is not an ISO 8601 time; use e.g. 2026-01-31T12:00:00Z", param_hint=option) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return int(moment.timestamp() * 1000)


def make_filter(types: list[str] | None, org: str | None, agent: str | None, subject: str | None,
                since: str | None, until: str | None) -> EventFilter:
    """The filter the options describe, or a usage error naming the bad option."""
    unknown = sorted(set(types or ()) - PAYLOADS.keys())
    if unknown:
        raise typer.BadParameter(
            f"unknown event type {', '.join(unknown)}; known: {', '.join(sorted(PAYLOADS))}", param_hint="--type")
    return EventFilter(frozenset(types or ()), org, agent, subject,
                       parse_time(since, "--since"), parse_time(until, "--until"))


# -- commands ------------------------------------------------------------------------


@log_app.command("show")
def show(partition: PartitionOpt = None, types: TypeOpt = None, org: OrgOpt = None, agent: AgentOpt = None,
         subject: SubjectOpt = None, since: SinceOpt = None, until: UntilOpt = None,
         limit: Annotated[int, typer.Option("--limit", "-n", min=1, help="At most this many events.")] = 100,
         as_json: JsonOpt = False) -> None:
    """Events oldest first, filtered; --since/--until bound the range read."""
    filt = make_filter(types, org, agent, subject, since, until)
    with open_app() as app:
        print_records(app.events(filt, partition, limit), as_json)


@log_app.command("tail")
def tail(partition: PartitionOpt = None, types: TypeOpt = None, org: OrgOpt = None, agent: AgentOpt = None,
         subject: SubjectOpt = None, since: SinceOpt = None, until: UntilOpt = None,
         limit: Annotated[int, typer.Option("--limit", "-n", min=1, help="How many of the newest.")] = DEFAULT_TAIL,
         follow_: FollowOpt = False, as_json: JsonOpt = False) -> None:
    """The newest matching events (oldest of them first); --follow keeps printing new ones."""
    if follow_ and until is not None:
        raise typer.BadParameter("--follow shows events as they arrive; it cannot end at --until",
                                 param_hint="--follow")
    filt = make_filter(types, org, agent, subject, since, until)
    with open_app() as app:
        # Heads are read first and bound both the backward read and the follow cursor, so an
        # event appended meanwhile is printed once: by the follow, not by both or neither.
        heads = app.heads(filt, partition)
        try:  # Ctrl-C is how a tail ends, whenever it comes (even before the follow starts)
            print_records(app.tail(filt, heads, limit), as_json)
            for record in app.follow(filt, heads) if follow_ else ():
                print_live(record, as_json)
        except KeyboardInterrupt:
            return


def info(as_json: Annotated[bool, typer.Option("--json", help="Print it as one JSON object.")] = False) -> None:
    """The ledger at a glance, on one screen:

    \b
    namespace    the Redis key prefix and PostgreSQL schema (MEMLEDGER_NAMESPACE)
    redis        the server version
    persistence  durable or NOT durable: whether acknowledged events survive a Redis restart
                 (AOF and its fsync policy), and whether commands are refused until it is on
    query cache  hits, misses and hit rate of `query memories`, over every org
    session cache  working memory's recent messages: hit rate, sessions cached, memory used
    then a table: per partition, the events in its stream and the id of its newest event.

    --json prints the same as one object: namespace, partition_count, partitions [{partition,
    length, head}], redis_version, persistence {appendonly, appendfsync, rdb_save, durable,
    description}, allow_volatile, query_cache {hits, misses, orgs}, session_cache {hits,
    misses, hit_rate, sessions_cached, memory_bytes} (or {error} when Redis does not answer).
    """
    with open_app() as app:
        report = app.info()
    if as_json:
        print_json(report.as_json())
    else:
        print_info(report)


# -- formatting (pure) ---------------------------------------------------------------


def short_payload(payload: Payload, width: int = PAYLOAD_WIDTH) -> str:
    """The payload as compact JSON, cut to `width` characters."""
    text = orjson.dumps(payload.model_dump(mode="json", exclude_none=True)).decode()
    return text if len(text) <= width else text[:width - 1] + "…"


def record_json(record: RecordedEvent) -> dict[str, Any]:
    """An event with its position, as one flat JSON object."""
    return {"partition": record.position.partition, "stream_id": record.position.stream_id,
            **record.event.model_dump(mode="json")}


def record_row(record: RecordedEvent) -> tuple[str, ...]:
    """The table cells of one event."""
    event = record.event
    return (f"p{record.position.partition}/{record.position.stream_id}",
            event.occurred_at.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M:%S"),
            event.type, f"{event.org_id}/{event.agent_id}/{event.subject_id}",
            str(event.subject_version), short_payload(event.data))


def events_table(records: Iterable[RecordedEvent]) -> Table:
    table = Table(box=box.SIMPLE_HEAD, pad_edge=False)
    # Positions, times and types are useless when cut; subjects and payload excerpts fold.
    for name in ("position", "time (UTC)", "type"):
        table.add_column(name, no_wrap=True)
    table.add_column("org/agent/subject", overflow="fold")
    table.add_column("v", justify="right", no_wrap=True)
    table.add_column("payload", overflow="fold")
    for record in records:
        table.add_row(*record_row(record))
    return table


def print_records(records: list[RecordedEvent], as_json: bool) -> None:
    if as_json:
        for record in records:
            print_json(record_json(record))
    elif records:
        console.print(events_table(records))
    else:
        console.print("no matching events", style="dim")


def print_live(record: RecordedEvent, as_json: bool) -> None:
    if as_json:
        print_json(record_json(record))
    else:
        console.print("  ".join(record_row(record)), highlight=False, markup=False)


def durability_mark(report: LedgerInfo) -> str:
    """A one-line verdict on whether acknowledged events survive a Redis restart."""
    found = report.persistence
    if found.durable:
        return f"[bold green]durable[/] ({found.describe()})"
    why = ("allowed by MEMLEDGER_ALLOW_VOLATILE: a restart may lose events" if report.allow_volatile
           else "commands will be refused until AOF is on")
    return f"[bold red]NOT durable[/] ({found.describe()}; {why})"


def cache_line(stats: dict[str, int]) -> str:
    """Hits and misses of the query cache (`memledger query memories`), over every org."""
    lookups = stats["hits"] + stats["misses"]
    rate = f", {100 * stats['hits'] / lookups:.1f}% hit rate" if lookups else ""
    return f"{stats['hits']} hits, {stats['misses']} misses{rate}"


def session_cache_line(stats: dict[str, Any] | None) -> str:
    """Working memory's recent-messages cache: hit rate, sessions cached, memory used."""
    if not stats or "error" in stats:
        return f"unknown ({(stats or {}).get('error', 'not read')})"
    return (f"{cache_line(stats)}, {stats['sessions_cached']} sessions cached, "
            f"{stats['memory_bytes'] / 1024:.1f} KiB")


def print_info(report: LedgerInfo) -> None:
    for label, value in (("namespace", report.namespace), ("redis", report.redis_version),
                         ("persistence", durability_mark(report)),
                         ("query cache", cache_line(report.query_cache)),
                         ("session cache", session_cache_line(report.session_cache))):
        console.print(f"{label:<12} {value}", highlight=False, soft_wrap=True)
    table = Table("partition", "events", "head", title=f"{len(report.partitions)} partitions")
    for row in report.partitions:
        table.add_row(str(row.partition), str(row.length), row.head or "-")
    console.print(table)
