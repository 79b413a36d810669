"""The command bus: validate -> authorize tenant -> rate-limit -> decide -> append."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timezone
from typing import Any

from pydantic import ValidationError

from ledger.codec import encode
from ledger.errors import CommandError, InvalidCommand, RateLimited
from ledger.ids import uuid7
from ledger.log import Append, Outcome, Receipt, RedisEventLog
from ledger.partitions import partition_for
from ledger.ratelimit import RateLimiter

from .decide import Decision, decide
from .models import COMMAND_ADAPTER, Command


class Unauthorized(CommandError):
    """The command names an organisation the sender may not write to."""

    code = "unauthorized"


def _utcnow() -> datetime:
    return datetime.now(timezone.utc)


def describe_validation(error: ValidationError, title: str) -> str:
    """One line per failing field, e.g. `StoreMemory.content: String should have at most ...`."""
    lines = []
    for problem in error.errors():
        loc = problem["loc"][1:] if problem["loc"][:1] == (title,) else problem["loc"]
        where = ".".join(str(p) for p in loc) or "(command)"
        message = problem["msg"].removeprefix("Value error, ")
        lines.append(f"{title}.{where}: {message}")
    return "; ".join(lines)


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


class CommandBus:
    """Accepts commands for the ledger. `tenant`, when set, is the only org it may write to."""

    def __init__(self, log: RedisEventLog, limiter: RateLimiter | None = None, tenant: str | None = None,
                 clock: Callable[[], datetime] = _utcnow):
        self.log, self.limiter, self.tenant, self.clock = log, limiter, tenant, clock

    def send(self, command: Command | Mapping[str, Any]) -> Receipt:
        """Append one command; raises its `CommandError` if it is not accepted."""
        outcome = self.send_many([command])[0]
        if isinstance(outcome, CommandError):
            raise outcome
        return outcome

    def send_many(self, commands: Sequence[Command | Mapping[str, Any]]) -> list[Outcome]:
        """Append many commands in one round trip; one outcome (receipt or error) each."""
        outcomes: list[Outcome | None] = [None] * len(commands)
        accepted: list[tuple[int, Command]] = []
        for index, raw in enumerate(commands):
            try:
                accepted.append((index, self._admit(raw)))
            except CommandError as e:
                outcomes[index] = e
        accepted = self._rate_limit(accepted, outcomes)
        appends = [self.prepare(command) for _, command in accepted]
        for (index, _), outcome in zip(accepted, self.log.append_many(appends) if appends else []):
            outcomes[index] = outcome
        return [o for o in outcomes if o is not None]

    def _admit(self, raw: Command | Mapping[str, Any]) -> Command:
        command = parse(raw)
        if self.tenant is not None and command.org_id != self.tenant:
            raise Unauthorized(f"this sender may write to org {self.tenant!r} only, not {command.org_id!r}")
        return command

    def _rate_limit(self, accepted: list[tuple[int, Command]], outcomes: list[Outcome | None]) -> list[tuple[int, Command]]:
        if self.limiter is None or not accepted:
            return accepted
        grants = self.limiter.take(Counter(c.org_id for _, c in accepted))
        passed: list[tuple[int, Command]] = []
        used: Counter[str] = Counter()
        for index, command in accepted:
            granted, retry_after = grants[command.org_id]
            used[command.org_id] += 1
            if used[command.org_id] <= granted:
                passed.append((index, command))
            else:
                outcomes[index] = RateLimited(
                    f"org {command.org_id!r} is over its rate limit; retry in {retry_after:.3f}s", retry_after)
        return passed

    def prepare(self, command: Command) -> Append:
        """Decide and encode a valid command for the append script (no I/O)."""
        decision: Decision = decide(command, self.clock(), uuid7)
        partition = partition_for(command.org_id, command.agent_id, self.log.partitions)
        idem = None
        if command.idempotency_key is not None:
            idem = self.log.keys.idempotency(partition, command.org_id, command.agent_id, command.idempotency_key)
        return Append(
            partition=partition,
            subject_field=f"{decision.kind}/{command.org_id}/{command.agent_id}/{decision.subject_id}",
            expected_version=-1 if command.expected_version is None else command.expected_version,
            mode=decision.mode,
            idempotency_key=idem,
            event_ids=tuple(str(e.event_id) for e in decision.events),
            bodies=tuple(encode(e) for e in decision.events),
        )
