"""The agents' surface: `memledger send` appends commands read from a file or stdin."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from itertools import islice
from typing import Any

import psycopg
import typer

from commands import CommandBus, open_bus, wire
from ledger.connections import database_url
from ledger.errors import CommandError, InvalidCommand, LedgerError, RateLimited, VersionConflict
from ledger.ids import new_id
from ledger.log import Outcome, Receipt

from projections.postgres.base import connect

from .common import print_json, settings

BATCH_SIZE = 500
EXIT_REJECTED = CommandError.exit_code  # 2: at least one command was not accepted

# Commands that create a subject: its id field, and the prefix of an id made up for it.
NEW_SUBJECTS = {"StoreMemory": ("memory_id", "mem"), "IngestSession": ("session_id", "ses")}
# A numbered input line: the command's JSON object, or why it is not one.
Item = tuple[int, dict[str, Any] | InvalidCommand]


def register(app: typer.Typer) -> None:
    """Add the `send` command to `app`."""
    app.command("send")(send)


def send(
    source: typer.FileBinaryRead = typer.Argument(
        "-", metavar="[FILE|-]", help="JSON lines (or one JSON object); '-' or nothing reads stdin."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object per command."),
) -> None:
    """Append commands (StoreMemory, UpdateMemory, ...) to the ledger, one result line each.

    Exits 0 when every command was accepted (duplicates included), 2 when any was rejected.
    """
    send_lines(source, as_json)


def send_lines(source: Iterable[bytes], as_json: bool, only: str | None = None) -> None:
    """Send every command of `source` and print one outcome per command, in input order.

    A line that is not a command (not UTF-8, not JSON, not valid) gets its own error and
    costs no other line anything. `only` names the one command type accepted (its lines
    may then leave out `type`), as `memledger session ingest` does.
    """
    bus = open_bus(settings())
    positions = QueuePositions(bus)
    total = rejected = 0
    try:
        for batch in batches(read_commands(source, only), BATCH_SIZE):
            sent = {number: value for number, value in batch if isinstance(value, dict)}
            for number, outcome in send_batch(bus, batch):
                total, rejected = total + 1, rejected + isinstance(outcome, CommandError)
                extra = {}
                if isinstance(outcome, Receipt):
                    extra = subject_of(sent[number])
                    if sent[number].get("type") == "IngestSession":
                        extra["queue_position"] = positions.of(outcome)
                emit(number, outcome, as_json, extra)
    finally:
        positions.close()
    if not as_json:
        typer.echo(f"{total - rejected} accepted, {rejected} rejected", err=True)
    if rejected:
        raise typer.Exit(EXIT_REJECTED)


# -- input ---------------------------------------------------------------------------


def parse_line(number: int, data: bytes, only: str | None = None) -> Item:
    """One input line as a command object, or an `invalid` error saying why not."""
    try:
        value = wire.loads(data)
    except InvalidCommand as e:
        return number, e
    if not isinstance(value, dict):
        return number, InvalidCommand(
            f"expected a JSON object with a `type` field, got a JSON {type(value).__name__}")
    if only is not None:
        value.setdefault("type", only)
        if value["type"] != only:
            return number, InvalidCommand(f"expected an {only}, got a {value['type']!r}")
    if value.get("type") in NEW_SUBJECTS:
        # Name a new memory or session here, so the outcome line can say which id it got.
        field, prefix = NEW_SUBJECTS[value["type"]]
        value.setdefault(field, new_id(prefix))
    return number, value


def subject_of(command: dict[str, Any]) -> dict[str, Any]:
    """The id of the memory or session a store or ingest created, for its outcome line."""
    field = NEW_SUBJECTS.get(str(command.get("type")), ("", ""))[0]
    return {field: command[field]} if field in command else {}


def read_commands(lines: Iterable[bytes], only: str | None = None) -> Iterator[Item]:
    """Commands from JSON lines, or from a single JSON object spread over several lines.

    Lines are read lazily, so a long stream starts appending before it ends; only a
    first line that is not JSON on its own makes us read the rest to try it as one object.
    """
    numbered: Iterator[tuple[int, bytes]] = ((n, data) for n, data in enumerate(lines, 1) if data.strip())
    first = next(numbered, None)
    if first is None:
        return
    item = parse_line(*first, only)
    if isinstance(item[1], InvalidCommand) and first[1].lstrip().startswith(b"{"):
        rest = list(numbered)
        whole = parse_line(first[0], first[1] + b"".join(data for _, data in rest), only)
        if not isinstance(whole[1], InvalidCommand):
            yield whole
            return
        numbered = iter(rest)
    yield item
    yield from (parse_line(n, data, only) for n, data in numbered)


def batches(items: Iterable[Item], size: int) -> Iterator[list[Item]]:
    """Consecutive chunks of at most `size` items."""
    iterator = iter(items)
    while chunk := list(islice(iterator, size)):
        yield chunk


# -- sending -------------------------------------------------------------------------


def send_batch(bus: CommandBus, batch: Sequence[Item]) -> list[tuple[int, Outcome]]:
    """Send the well-formed commands of `batch` in one round trip; outcomes in input order."""
    commands = [value for _, value in batch if isinstance(value, dict)]
    sent = iter(bus.send_many(commands) if commands else [])
    return [(number, value if isinstance(value, CommandError) else next(sent)) for number, value in batch]


# -- output --------------------------------------------------------------------------


def outcome_json(number: int, outcome: Outcome) -> dict[str, Any]:
    """The `--json` form of one command's outcome."""
    if isinstance(outcome, Receipt):
        return {"line": number, "ok": True, "partition": outcome.partition, "stream_id": outcome.stream_id,
                "subject_version": outcome.subject_version, "event_ids": list(outcome.event_ids),
                "duplicate": outcome.duplicate}
    out: dict[str, Any] = {"line": number, "ok": False, "error": outcome.code, "message": str(outcome)}
    if isinstance(outcome, VersionConflict):
        out["current_version"] = outcome.current_version
    if isinstance(outcome, RateLimited):
        out["retry_after"] = outcome.retry_after
    return out


def outcome_text(number: int, outcome: Outcome) -> str:
    """The human form of one command's outcome, on one line."""
    if isinstance(outcome, Receipt):
        dup = " (duplicate: the original receipt)" if outcome.duplicate else ""
        return (f"line {number}: ok p{outcome.partition} {outcome.stream_id} "
                f"v{outcome.subject_version} events={','.join(outcome.event_ids)}{dup}")
    return f"line {number}: {outcome.code}: {outcome}"


def emit(number: int, outcome: Outcome, as_json: bool, extra: dict[str, Any] | None = None) -> None:
    extra = extra or {}
    if as_json:
        print_json({**outcome_json(number, outcome), **extra})
    else:
        typer.echo(outcome_text(number, outcome) + "".join(f" {k}={v}" for k, v in extra.items()))


class QueuePositions:
    """Where an ingested session stands in the processing queue (None when that cannot be told,
    e.g. the read-model database is not migrated yet: the session is still in the ledger).

    Sessions sent by one run count as queued in input order: one batch appends them in the
    same millisecond on different partitions, where stream ids alone cannot order them.
    """

    def __init__(self, bus: CommandBus):
        self.bus, self.broken = bus, False
        self.queue: Any = None
        self.conn: psycopg.Connection[Any] | None = None
        self.last = -1

    def of(self, receipt: Receipt) -> int | None:
        if self.broken:
            return None
        try:
            if self.queue is None:
                from workers.ingest import SessionQueue

                self.conn = connect(database_url(settings()), settings().db_schema, autocommit=True)
                self.queue = SessionQueue(self.bus, self.conn)
            self.last = max(int(self.queue.position(receipt)), self.last + 1)
            return self.last
        except (psycopg.Error, LedgerError):
            self.broken = True
            return None

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
