"""The agents' surface: `memledger send` appends commands read from a file or stdin.

`memledger session ingest` reads and reports the same way (memledger/cli/sessions.py).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from itertools import islice
from typing import TYPE_CHECKING, Any, Protocol

import typer

from commands import wire
from commands.models import NEW_SUBJECTS, name_new_subject
from ledger.errors import CommandError, InvalidCommand, RateLimited, VersionConflict

from .common import JsonOpt, open_app, print_json

if TYPE_CHECKING:
    from commands import Command
    from ledger.log import Outcome, Receipt
    from memledger.app import App

BATCH_SIZE = 500
EXIT_REJECTED = CommandError.exit_code  # 2: at least one command was not accepted

# Commands that create a subject: its id field, and the prefix of an id made up for it.
# A numbered input line: the command's JSON object, or why it is not one.
Item = tuple[int, dict[str, Any] | InvalidCommand]
SourceArg = typer.Argument("-", metavar="[FILE|-]", help="JSON lines (or one JSON object); '-' or nothing reads stdin.")


class Sender(Protocol):
    """What sends a batch: the App, or a command bus."""

    def send_many(self, commands: Sequence[Command | Mapping[str, Any]]) -> list[Outcome]: ...


def register(app: typer.Typer) -> None:
    """Add the `send` command to `app`."""
    app.command("send")(send)


def send(source: typer.FileBinaryRead = SourceArg, as_json: JsonOpt = False) -> None:
    """Append commands (StoreMemory, UpdateMemory, ...) to the ledger, one result line each.

    Exits 0 when every command was accepted (duplicates included), 2 when any was rejected.
    With --json, one object per command: line, ok, partition, stream_id, subject_version,
    event_ids, duplicate (or error, message); a store or ingest also says the id it created.
    """
    with open_app() as app:
        send_lines(app, app.send_many, source, as_json)


def send_lines(app: App, sender: Callable[[Sequence[Mapping[str, Any]]], list[Outcome]], source: Iterable[bytes],
               as_json: bool, only: str | None = None) -> None:
    """Send every command of `source` with `sender` and print one outcome per command, in input order.

    A line that is not a command (not UTF-8, not JSON, not valid) gets its own error and
    costs no other line anything. `only` names the one command type accepted (its lines
    may then leave out `type`), as `memledger session ingest` does.
    """
    positions, total, rejected = QueuePositions(app), 0, 0
    for batch in batches(read_commands(source, only), BATCH_SIZE):
        for number, command, outcome in send_batch_with(sender, batch):
            total, rejected = total + 1, rejected + isinstance(outcome, CommandError)
            emit(number, outcome, as_json, positions.extra(command, outcome))
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
    # Name a new memory or session here, so the outcome line can say which id it got.
    name_new_subject(value)
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


def send_batch(sender: Sender, batch: Sequence[Item]) -> list[tuple[int, Outcome]]:
    """Send the well-formed commands of `batch` in one round trip; outcomes in input order."""
    return [(number, outcome) for number, _, outcome in send_batch_with(sender.send_many, batch)]


def send_batch_with(sender: Callable[[Sequence[Mapping[str, Any]]], list[Outcome]],
                    batch: Sequence[Item]) -> list[tuple[int, dict[str, Any], Outcome]]:
    """Each line's number, command object ({} when it is not one) and outcome, in input order."""
    commands = [value for _, value in batch if isinstance(value, dict)]
    sent = iter(sender(commands) if commands else [])
    return [(number, {}, value) if isinstance(value, CommandError) else (number, value, next(sent))
            for number, value in batch]


class QueuePositions:
    """Where each ingested session stands in the processing queue (None when that cannot be told,
    e.g. the read-model database is not migrated yet: the session is still in the ledger).

    Sessions sent by one run count as queued in input order: one batch appends them in the
    same millisecond on different partitions, where stream ids alone cannot order them.
    """

    def __init__(self, app: App):
        self.app, self.last = app, -1

    def of(self, receipt: Receipt) -> int | None:
        found = self.app.queue_position(receipt)
        if found is None:
            return None
        self.last = max(found, self.last + 1)
        return self.last

    def extra(self, command: dict[str, Any], outcome: Outcome) -> dict[str, Any]:
        """What an outcome line adds: the id a store or ingest created, an ingest's queue position."""
        if isinstance(outcome, CommandError):
            return {}
        extra = subject_of(command)
        if command.get("type") == "IngestSession":
            extra["queue_position"] = self.of(outcome)
        return extra


# -- output --------------------------------------------------------------------------


def outcome_json(number: int, outcome: Outcome) -> dict[str, Any]:
    """The `--json` form of one command's outcome."""
    if not isinstance(outcome, CommandError):
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
    if not isinstance(outcome, CommandError):
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
