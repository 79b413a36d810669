"""The operators' view of the ledger: `memledger log show|tail` and `memledger info`."""

from __future__ import annotations

import heapq
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from itertools import islice
from typing import Annotated, Any

import orjson
import redis
import typer
from rich import box
from rich.table import Table

from ledger import RecordedEvent, RedisEventLog, open_log
from ledger.codec import decode_entry
from ledger.durability import Persistence, read_persistence
from ledger.errors import StoreUnavailable
from ledger.events import PAYLOADS, Payload, stream_id_key
from ledger.partitions import partition_for
from projections.redis.cache import cache_stats

from .common import console, print_json, settings

MAX_SEQ = 2**64 - 1  # the largest sequence part of a stream id
DEFAULT_TAIL = 20
FOLLOW_BLOCK_MS = 2000
PAYLOAD_WIDTH = 48
READ_BATCH = 500

log_app = typer.Typer(no_args_is_help=True, help="Read the ledger: a range of events, its tail, new events live.")

PartitionOpt = Annotated[int | None, typer.Option("--partition", "-p", help="Only this partition.")]
TypeOpt = Annotated[list[str] | None, typer.Option("--type", "-t", help="Only this event type (repeatable).")]
OrgOpt = Annotated[str | None, typer.Option("--org", help="Only this organisation.")]
AgentOpt = Annotated[str | None, typer.Option("--agent", help="Only this agent.")]
SubjectOpt = Annotated[str | None, typer.Option("--subject", help="Only this memory or session id.")]
SinceOpt = Annotated[str | None, typer.Option(
    "--since", help="Appended at or after this ISO 8601 time (UTC when no offset is given).")]
UntilOpt = Annotated[str | None, typer.Option(
    "--until", help="Appended at or before this ISO 8601 time (millisecond precision).")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON object per event.")]


def register(app: typer.Typer) -> None:
    """Add the `log` sub-commands and the top-level `info` command to `app`."""
    app.add_typer(log_app, name="log")
    app.command("info")(info)


# -- filters (pure) ------------------------------------------------------------------


@dataclass(frozen=True)
class EventFilter:
    """Which events to show. Times are those of the log (stream ids), in Unix milliseconds."""

    types: frozenset[str] = frozenset()
    org: str | None = None
    agent: str | None = None
    subject: str | None = None
    since_ms: int | None = None
    until_ms: int | None = None

    def matches(self, record: RecordedEvent) -> bool:
        event, ms = record.event, record.position.key[0]
        return ((not self.types or event.type in self.types)
                and self.org in (None, event.org_id)
                and self.agent in (None, event.agent_id)
                and self.subject in (None, event.subject_id)
                and (self.since_ms is None or ms >= self.since_ms)
                and (self.until_ms is None or ms <= self.until_ms))

    @property
    def after(self) -> str:
        """The exclusive XRANGE start that includes everything from `since_ms` on."""
        if not self.since_ms:
            return "0-0"
        return f"{self.since_ms - 1}-{MAX_SEQ}"

    @property
    def until(self) -> str:
        """The inclusive XRANGE end (a bare millisecond id covers all its sequence numbers)."""
        return "+" if self.until_ms is None else str(self.until_ms)


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


def select_partitions(count: int, partition: int | None, org: str | None, agent: str | None) -> list[int]:
    """The partitions worth reading: one when given or implied by org and agent, else all."""
    if partition is not None:
        if not 0 <= partition < count:
            raise typer.BadParameter(f"partition {partition} does not exist (0..{count - 1})",
                                     param_hint="--partition")
        return [partition]
    if org is not None and agent is not None:
        return [partition_for(org, agent, count)]
    return list(range(count))


# -- reading -------------------------------------------------------------------------


def log_order(record: RecordedEvent) -> tuple[int, int, int]:
    """Stream ids order events across partitions; partitions can share a millisecond, so break ties."""
    ms, seq = record.position.key
    return ms, seq, record.position.partition


def oldest(log: RedisEventLog, partitions: Iterable[int], filt: EventFilter, limit: int) -> list[RecordedEvent]:
    """The first `limit` matching events across `partitions`, oldest first (lazily read)."""
    streams = [islice(filter(filt.matches, log.iter_partition(p, filt.after, filt.until)), limit)
               for p in partitions]
    return list(islice(heapq.merge(*streams, key=log_order), limit))


def read_backwards(log: RedisEventLog, partition: int, end: str, start: str = "-") -> Iterator[RecordedEvent]:
    """A partition's events from `end` (inclusive) back to `start`, newest first."""
    key = log.keys.stream(partition)
    while True:
        try:
            # redis-py types the reply loosely (optional fields); entries are (id, fields) pairs.
            entries: Any = log.client.xrevrange(key, max=end, min=start, count=READ_BATCH)
        except redis.ConnectionError as e:
            raise StoreUnavailable(f"Redis is unreachable: {e}") from e
        yield from (decode_entry(partition, sid, fields) for sid, fields in entries)
        if len(entries) < READ_BATCH:
            return
        last = entries[-1][0]
        end = "(" + (last.decode() if isinstance(last, bytes) else last)


def newest(log: RedisEventLog, heads: dict[int, str], filt: EventFilter, limit: int) -> list[RecordedEvent]:
    """The last `limit` matching events at or before each partition's `heads` id, oldest first."""
    start = "-" if filt.since_ms is None else f"{filt.since_ms}-0"
    streams = [islice(filter(filt.matches, read_backwards(log, p, _earlier(head, filt.until_ms), start)), limit)
               for p, head in heads.items() if head != "0-0"]
    return list(islice(heapq.merge(*streams, key=log_order, reverse=True), limit))[::-1]


def _earlier(head: str, until_ms: int | None) -> str:
    if until_ms is None or stream_id_key(head)[0] <= until_ms:
        return head
    return str(until_ms)


def follow(log: RedisEventLog, cursors: dict[int, str], filt: EventFilter,
           block_ms: int = FOLLOW_BLOCK_MS) -> Iterator[RecordedEvent]:
    """Matching events appended after `cursors`, as they arrive; never ends by itself."""
    cursors = dict(cursors)
    while True:
        for record in log.wait_new(cursors, READ_BATCH, block_ms):
            cursors[record.position.partition] = record.position.stream_id
            if filt.matches(record):
                yield record


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


# -- commands ------------------------------------------------------------------------


@log_app.command("show")
def show(partition: PartitionOpt = None, types: TypeOpt = None, org: OrgOpt = None, agent: AgentOpt = None,
         subject: SubjectOpt = None, since: SinceOpt = None, until: UntilOpt = None,
         limit: Annotated[int, typer.Option("--limit", "-n", min=1, help="At most this many events.")] = 100,
         as_json: JsonOpt = False) -> None:
    """Events oldest first, filtered; --since/--until bound the range read."""
    filt = make_filter(types, org, agent, subject, since, until)
    log = open_log(settings())
    print_records(oldest(log, select_partitions(log.partitions, partition, org, agent), filt, limit), as_json)


@log_app.command("tail")
def tail(partition: PartitionOpt = None, types: TypeOpt = None, org: OrgOpt = None, agent: AgentOpt = None,
         subject: SubjectOpt = None, since: SinceOpt = None, until: UntilOpt = None,
         limit: Annotated[int, typer.Option("--limit", "-n", min=1, help="How many of the newest events.")] = DEFAULT_TAIL,
         follow_: Annotated[bool, typer.Option("--follow", "-f", help="Keep printing new events (Ctrl-C ends).")] = False,
         as_json: JsonOpt = False) -> None:
    """The newest matching events (oldest of them first); --follow keeps printing new ones."""
    if follow_ and until is not None:
        raise typer.BadParameter("--follow shows events as they arrive; it cannot end at --until",
                                 param_hint="--follow")
    filt = make_filter(types, org, agent, subject, since, until)
    log = open_log(settings())
    # Heads are read first and bound both the backward read and the follow cursor, so an
    # event appended meanwhile is printed once: by the follow, not by both or neither.
    heads = {p: log.head(p) or "0-0" for p in select_partitions(log.partitions, partition, org, agent)}
    try:  # Ctrl-C is how a tail ends, whenever it comes (even before the follow starts)
        print_records(newest(log, heads, filt, limit), as_json)
        if follow_:
            for record in follow(log, heads, filt):
                print_live(record, as_json)
    except KeyboardInterrupt:
        return


# -- info ----------------------------------------------------------------------------


def persistence_json(found: Persistence) -> dict[str, Any]:
    return {"appendonly": found.appendonly, "appendfsync": found.appendfsync, "rdb_save": found.rdb_save,
            "durable": found.durable, "description": found.describe()}


def ledger_info(log: RedisEventLog, allow_volatile: bool) -> dict[str, Any]:
    """Namespace, partitions (length and head), Redis version and persistence."""
    server = log.client.info("server")
    return {
        "namespace": log.keys.namespace,
        "partition_count": log.partitions,
        "partitions": [{"partition": p, "length": log.length(p), "head": log.head(p)} for p in range(log.partitions)],
        "redis_version": server.get("redis_version"),
        "persistence": persistence_json(read_persistence(log.client)),
        "allow_volatile": allow_volatile,
        "query_cache": cache_stats(log.client, log.keys.namespace),
    }


def durability_mark(persistence: dict[str, Any], allow_volatile: bool) -> str:
    """A one-line verdict on whether acknowledged events survive a Redis restart."""
    if persistence["durable"]:
        return f"[bold green]durable[/] ({persistence['description']})"
    why = ("allowed by MEMLEDGER_ALLOW_VOLATILE: a restart may lose events" if allow_volatile
           else "commands will be refused until AOF is on")
    return f"[bold red]NOT durable[/] ({persistence['description']}; {why})"


def cache_line(stats: dict[str, int]) -> str:
    """Hits and misses of the query cache (`memledger query memories`), over every org."""
    lookups = stats["hits"] + stats["misses"]
    rate = f", {100 * stats['hits'] / lookups:.1f}% hit rate" if lookups else ""
    return f"{stats['hits']} hits, {stats['misses']} misses{rate}"


def print_info(report: dict[str, Any]) -> None:
    for label, value in (("namespace", report["namespace"]), ("redis", report["redis_version"]),
                         ("persistence", durability_mark(report["persistence"], report["allow_volatile"])),
                         ("query cache", cache_line(report["query_cache"]))):
        console.print(f"{label:<12} {value}", highlight=False, soft_wrap=True)
    table = Table("partition", "events", "head", title=f"{report['partition_count']} partitions")
    for row in report["partitions"]:
        table.add_row(str(row["partition"]), str(row["length"]), row["head"] or "-")
    console.print(table)


def info(as_json: JsonOpt = False) -> None:
    """The ledger at a glance: namespace, partitions, Redis version and persistence."""
    configured = settings()
    # A read-only look loses nothing, so a volatile Redis is reported here rather than refused.
    log = open_log(configured.model_copy(update={"allow_volatile": True}))
    report = ledger_info(log, configured.allow_volatile)
    if as_json:
        print_json(report)
    else:
        print_info(report)
