"""The command bus gate: rate limits per org, tenant authorization, sessions end to end."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest

from commands import CommandBus, Unauthorized, open_bus
from ledger import Receipt, Settings, open_log
from ledger.errors import RateLimited, SubjectExists
from ledger.events import Message, SessionIngested


@pytest.fixture
def bus(settings: Settings) -> Iterator[CommandBus]:
    bus = open_bus(settings)
    yield bus
    bus.log.client.close()


def store(org: str, memory_id: str) -> dict[str, Any]:
    return {"type": "StoreMemory", "org_id": org, "agent_id": "a1", "memory_id": memory_id, "content": "x"}


def stored_ids(bus: CommandBus) -> list[str]:
    return [r.event.subject_id for p in range(bus.log.partitions) for r in bus.log.iter_partition(p)]


# -- rate limiting -------------------------------------------------------------------------


def test_an_org_over_its_rate_is_limited_and_others_are_not(settings: Settings) -> None:
    # Given a bucket of 5 commands refilled at 5 per second
    bus = open_bus(settings.model_copy(update={"rate_per_second": 5, "rate_burst": 5}))

    # When acme sends 20 at once, alongside 3 from globex
    batch = [store("acme", f"m{i}") for i in range(20)] + [store("globex", f"g{i}") for i in range(3)]
    outcomes = bus.send_many(batch)

    # Then acme's first 5 pass and the rest are told when to retry; globex is untouched
    assert [type(o) for o in outcomes] == [Receipt] * 5 + [RateLimited] * 15 + [Receipt] * 3
    limited = [o for o in outcomes if isinstance(o, RateLimited)]
    assert all(0 < o.retry_after <= 1 for o in limited)
    assert "org 'acme' is over its rate limit" in str(limited[0])
    assert sorted(stored_ids(bus)) == sorted([f"m{i}" for i in range(5)] + ["g0", "g1", "g2"])


def test_the_bucket_refills_over_time(settings: Settings) -> None:
    bus = open_bus(settings.model_copy(update={"rate_per_second": 50, "rate_burst": 2}))
    first = bus.send_many([store("acme", f"m{i}") for i in range(3)])
    assert isinstance(first[2], RateLimited)

    time.sleep(first[2].retry_after + 0.01)

    assert isinstance(bus.send_many([store("acme", "m2")])[0], Receipt)


# -- tenants -------------------------------------------------------------------------------


def test_a_tenant_bus_writes_only_to_its_own_org(settings: Settings) -> None:
    bus = CommandBus(open_log(settings), tenant="acme")

    outcomes = bus.send_many([store("acme", "m1"), store("globex", "m2")])

    assert isinstance(outcomes[0], Receipt)
    assert isinstance(outcomes[1], Unauthorized)
    assert outcomes[1].code == "unauthorized"
    assert str(outcomes[1]) == "this sender may write to org 'acme' only, not 'globex'"
    assert stored_ids(bus) == ["m1"]


def test_open_bus_passes_the_tenant_on(settings: Settings) -> None:
    bus = open_bus(settings, tenant="acme")

    with pytest.raises(Unauthorized):
        bus.send(store("globex", "m1"))


# -- sessions ------------------------------------------------------------------------------


def test_ingest_session_end_to_end(bus: CommandBus) -> None:
    transcript = [{"role": "user", "content": "I prefer tea", "at": "2026-01-31T12:00:00Z"},
                  {"role": "assistant", "content": "Noted."}]
    command = {"type": "IngestSession", "org_id": "acme", "agent_id": "a1", "session_id": "ses_1",
               "user_id": "u1", "metadata": {"channel": "chat"}, "transcript": transcript,
               "correlation_id": "0190f3c4-0000-7000-8000-000000000001"}

    receipt = bus.send(command)
    [record] = bus.log.read(receipt.partition, after="0-0")

    assert receipt.subject_version == 1 and record.position == receipt.position
    event = record.event
    assert (event.type, event.subject_id, event.subject_version) == ("SessionIngested", "ses_1", 1)
    assert str(event.correlation_id) == command["correlation_id"]
    assert isinstance(event.data, SessionIngested)
    assert event.data.transcript == tuple(Message.model_validate(m) for m in transcript)
    assert (event.data.user_id, event.data.metadata) == ("u1", {"channel": "chat"})
    with pytest.raises(SubjectExists, match="ses_1 already exists"):
        bus.send(command)


def test_sessions_and_memories_with_one_id_do_not_collide(bus: CommandBus) -> None:
    bus.send({"type": "IngestSession", "org_id": "acme", "agent_id": "a1", "session_id": "x1",
              "transcript": [{"role": "user", "content": "hi"}]})

    receipt = bus.send({**store("acme", "x1"), "session_id": "x1"})

    assert receipt.subject_version == 1


# -- a large batch, prepared chunk by chunk while Redis appends the chunk before ------------


def test_a_batch_of_several_chunks_answers_each_command_in_order(bus: CommandBus) -> None:
    from commands.bus import CHUNK
    from ledger.errors import InvalidCommand, UnknownSubject

    # Given a batch three chunks and more long: stores, a bad command in the middle of the second
    # chunk, an update in the third chunk of a memory stored in the first, and one of a memory
    # that does not exist
    n = 3 * CHUNK + 5
    batch: list[dict[str, Any]] = [store("acme", f"m{i}") for i in range(n)]
    batch[CHUNK + 7] = {"type": "StoreMemory", "org_id": "acme", "agent_id": "a1", "memory_id": "bad"}  # no content
    batch[2 * CHUNK + 3] = {"type": "UpdateMemory", "org_id": "acme", "agent_id": "a1", "memory_id": "m1",
                            "content": "y"}
    batch[3 * CHUNK + 1] = {"type": "UpdateMemory", "org_id": "acme", "agent_id": "a1", "memory_id": "nowhere",
                            "content": "y"}

    outcomes = bus.send_many(batch)

    # Then every command has its own outcome, in the batch's order
    assert len(outcomes) == n
    assert isinstance(outcomes[CHUNK + 7], InvalidCommand)
    assert isinstance(outcomes[3 * CHUNK + 1], UnknownSubject)
    update = outcomes[2 * CHUNK + 3]
    assert isinstance(update, Receipt) and update.subject_version == 2  # after the store of chunk one
    receipts = [o for o in outcomes if isinstance(o, Receipt)]
    assert len(receipts) == n - 2
    assert all(o.subject_version == 1 for i, o in enumerate(outcomes)
               if isinstance(o, Receipt) and i != 2 * CHUNK + 3)
    # ... and the log holds exactly the accepted ones, each store once
    ids = stored_ids(bus)
    assert sorted(set(ids)) == sorted({f"m{i}" for i in range(n)} - {f"m{CHUNK + 7}", f"m{2 * CHUNK + 3}",
                                                                          f"m{3 * CHUNK + 1}"})
    assert ids.count("m1") == 2 and len(ids) == n - 2


def test_a_failure_while_preparing_chunks_still_reads_back_what_was_sent(bus: CommandBus) -> None:
    from ledger.log import RedisEventLog

    log = bus.log
    assert isinstance(log, RedisEventLog)
    first = [bus.prepare(bus_command) for bus_command in _models([store("acme", f"c{i}") for i in range(3)])]

    def chunks() -> Iterator[list[Any]]:
        yield first
        raise RuntimeError("the caller failed while preparing its second chunk")

    # When the chunks' producer fails after the first chunk was sent
    with pytest.raises(RuntimeError, match="second chunk"):
        log.append_chunks(chunks())

    # Then the first chunk was appended (it was sent, and ran), and the connection's replies were
    # read: the next append on it gets its own answers
    assert sorted(stored_ids(bus)) == ["c0", "c1", "c2"]
    after = log.append_many([bus.prepare(c) for c in _models([store("acme", "c3")])])
    assert isinstance(after[0], Receipt) and after[0].subject_version == 1
    assert sorted(stored_ids(bus)) == ["c0", "c1", "c2", "c3"]


def _models(forms: list[dict[str, Any]]) -> list[Any]:
    from commands.bus import parse_many

    return parse_many(forms)
