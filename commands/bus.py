"""The command bus: validate -> authorize tenant -> rate-limit -> decide -> append (to any `EventLog`)."""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from ledger.codec import encode
from ledger.errors import CommandError, InvalidCommand, RateLimited, SystemOnly, Unauthorized
from ledger.eventlog import Append, EventLog, Outcome, Receipt
from ledger.ids import uuid7, uuid7_str

from .decide import Decision, decide
from .direct import encode_direct
from .models import COMMAND_ADAPTER, COMMANDS_ADAPTER, Command

if TYPE_CHECKING:
    from ledger.ratelimit import RateLimiter


def _utcnow() -> datetime:
    return datetime.now(timezone.utc)


def describe_validation(error: ValidationError, title: str) -> str:
    """One line per failing field, e.g. `StoreMemory.content: String should have at most ...`."""
    return "; ".join(_describe(problem, title) for problem in error.errors(include_url=False))


def _describe(problem: Any, title: str) -> str:
    loc = problem["loc"][1:] if problem["loc"][:1] == (title,) else problem["loc"]
    where = ".".join(str(p) for p in loc)
    message = problem["msg"].removeprefix("Value error, ")
    if problem["type"] == "union_tag_invalid":
        return f"unknown command type {problem['ctx']['tag']!r}; expected one of {problem['ctx']['expected_tags']}"
    if problem["type"] == "union_tag_not_found":
        return 'a command needs a "type" field, e.g. "type": "StoreMemory"'
    if _PATHED.match(message) and (where == "" or message.startswith(where)):
        return f"{title}.{message}"  # ledger.storable names the path itself
    if where == "":
        return f"{title}: {message}"
    if problem["type"].endswith("_type") or problem["type"] in ("literal_error", "string_pattern_mismatch"):
        message += f" (got {_preview(problem.get('input'))})"
    return f"{title}.{where}: {message}"


_PATHED = re.compile(r"^[a-z_]+(\.|\[|:| key )")


def _preview(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def parse(raw: Command | Mapping[str, Any]) -> Command:
    """A command from its model or its JSON form (with a `type` field)."""
    if isinstance(raw, Command):
        return raw
    try:
        command: Command = COMMAND_ADAPTER.validate_python(raw)
        return command
    except ValidationError as e:
        title = str(raw.get("type", "command")) if isinstance(raw, Mapping) else "command"
        raise InvalidCommand(describe_validation(e, title)) from None


def parse_many(raws: Sequence[Command | Mapping[str, Any]]) -> list[Command | InvalidCommand]:
    """`parse` of each, in order, with the JSON forms validated in one call: per command,
    pydantic's call costs more than a list's item. When any of them is invalid, each is
    parsed on its own, so every command gets its own verdict and message."""
    forms = [raw for raw in raws if not isinstance(raw, Command)]
    if not forms:
        return list(raws)  # type: ignore[arg-type]
    try:
        valid = iter(COMMANDS_ADAPTER.validate_python(forms))
    except ValidationError:
        return [_parse_or_error(raw) for raw in raws]
    return [raw if isinstance(raw, Command) else next(valid) for raw in raws]


def _parse_or_error(raw: Command | Mapping[str, Any]) -> Command | InvalidCommand:
    try:
        return parse(raw)
    except InvalidCommand as e:
        return e


#: Commands prepared (decided and encoded) per chunk of a batch: Redis runs one chunk's appends
#: while the next is prepared. A batch of at most this many is one chunk, as before.
CHUNK = 128


class CommandBus:
    """Accepts commands for the ledger.

    Parameters:
        tenant: when set, the only org this bus may write to.
        system: True for the system's own components (workers, the expiry job, an
            operator's retry); only such a bus accepts the internal command types
            (those whose `system_only` is True). An agent's bus rejects them.
    """

    def __init__(self, log: EventLog, limiter: RateLimiter | None = None, tenant: str | None = None,
                 clock: Callable[[], datetime] = _utcnow, system: bool = False):
        self.log, self.limiter, self.tenant, self.clock, self.system = log, limiter, tenant, clock, system

    def send(self, command: Command | Mapping[str, Any]) -> Receipt:
        """Append one command; raises its `CommandError` if it is not accepted."""
        outcome = self.send_many([command])[0]
        if isinstance(outcome, CommandError):
            raise outcome
        return outcome

    def send_many(self, commands: Sequence[Command | Mapping[str, Any]]) -> list[Outcome]:
        """Append many commands in one round trip; one outcome (receipt or error) each.

        A command that is not accepted never costs another one its place: each gets its
        own outcome, in input order.
        """
        outcomes: list[Outcome | None] = [None] * len(commands)
        admitted: list[tuple[int, Command]] = []
        for index, parsed in enumerate(parse_many(commands)):
            try:
                admitted.append((index, self._admit(parsed)))
            except CommandError as e:
                outcomes[index] = e
        admitted = self._rate_limit(admitted, outcomes)
        places: list[int] = []  # the batch index of each append, in the order the log answers them

        def chunks() -> Iterator[list[Append]]:
            # Prepared a chunk at a time, as the log takes them: it sends each chunk's appends
            # before asking for the next (ledger.log.append_chunks), so Python prepares chunk
            # k+1 while Redis runs chunk k. An error here is the command's own outcome: raising
            # would leave the appends already sent unanswered.
            for start in range(0, len(admitted), CHUNK):
                chunk: list[Append] = []
                for index, command in admitted[start:start + CHUNK]:
                    try:
                        chunk.append(self._prepare_one(command))
                    except CommandError as e:
                        outcomes[index] = e
                        continue
                    places.append(index)
                if chunk:
                    yield chunk

        appended = self.log.append_chunks(chunks()) if admitted else []
        for index, outcome in zip(places, appended):
            outcomes[index] = outcome
        return [o for o in outcomes if o is not None]

    def _admit(self, command: Command | InvalidCommand) -> Command:
        if isinstance(command, InvalidCommand):
            raise command
        if command.system_only and not self.system:
            raise SystemOnly(f"{type(command).__name__} is sent only by memory-ledger's own workers and operators, "
                               "never by an agent")
        if self.tenant is not None and command.org_id != self.tenant:
            raise Unauthorized(f"this sender may write to org {self.tenant!r} only, not {command.org_id!r}")
        return command

    def _prepare_one(self, command: Command) -> Append:
        try:
            return self.prepare(command)
        except (TypeError, ValueError) as e:  # orjson's encode errors are TypeErrors
            # Validation should have refused it; if it did not, this command alone fails.
            raise InvalidCommand(f"{type(command).__name__} cannot be encoded as an event: {e}") from e

    def _rate_limit(self, admitted: list[tuple[int, Command]],
                    outcomes: list[Outcome | None]) -> list[tuple[int, Command]]:
        """The commands the org's rate allows (counted before they are prepared). A retry of an
        already accepted command (its idempotency key is known) gets its original receipt even
        when the org is over its rate: it appends nothing, and refusing it would make a client
        retry forever."""
        if self.limiter is None or not admitted:
            return admitted
        grants = self.limiter.take(Counter(command.org_id for _, command in admitted))
        passed: list[tuple[int, Command]] = []
        refused: list[tuple[int, Append]] = []
        used: Counter[str] = Counter()
        for index, command in admitted:
            used[command.org_id] += 1
            if used[command.org_id] <= grants[command.org_id][0]:
                passed.append((index, command))
                continue
            try:
                refused.append((index, self._prepare_one(command)))  # its idempotency key, to look up
            except CommandError as e:
                outcomes[index] = e
        originals = self.log.original_receipts([append for _, append in refused]) if refused else []
        for (index, append), original in zip(refused, originals):
            retry_after = grants[append.org_id][1]
            outcomes[index] = original or RateLimited(
                f"org {append.org_id!r} is over its rate limit; retry in {retry_after:.3f}s", retry_after)
        return passed

    def prepare(self, command: Command) -> Append:
        """Decide and encode a valid command for the log (no I/O); the log picks the partition
        and keeps the subject's state and the idempotency key under keys of its own.

        The commands agents send most are encoded straight from the command (see
        `commands.direct`: the same bytes, without building the event models); the others
        go through `decide()` and `encode()`."""
        event_id = uuid7_str()
        direct = encode_direct(command, self.clock(), event_id)
        if direct is not None:
            return Append(org_id=command.org_id, agent_id=command.agent_id, kind=direct.kind,
                          subject_id=direct.subject_id, mode=direct.mode, event_ids=(event_id,),
                          bodies=(direct.body,), expected_version=command.expected_version,
                          idempotency_key=command.idempotency_key)
        decision: Decision = decide(command, self.clock(), uuid7)
        return Append(
            org_id=command.org_id,
            agent_id=command.agent_id,
            kind=decision.kind,
            subject_id=decision.subject_id,
            mode=decision.mode,
            event_ids=tuple(str(e.event_id) for e in decision.events),
            bodies=tuple(encode(e) for e in decision.events),
            expected_version=command.expected_version,
            idempotency_key=command.idempotency_key,
        )
