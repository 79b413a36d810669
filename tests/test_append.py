"""The append script: idempotency, optimistic concurrency under a race, batches, the key layout."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from threading import Barrier
from typing import Any

import pytest

from commands import CommandBus, StoreMemory, open_bus
from ledger import Receipt, RecordedEvent, Settings, open_log
from ledger.errors import ConfigurationError, SubjectExists, UnknownSubject, VersionConflict
from ledger.partitions import Keys, partition_for

THREADS = 8
UPDATES_PER_THREAD = 12


@pytest.fixture
def bus(settings: Settings) -> Iterator[CommandBus]:
    bus = open_bus(settings)
    yield bus
    bus.log.client.close()


def store(memory_id: str, org: str = "acme", agent: str = "a1", **extra: Any) -> dict[str, Any]:
    return {"type": "StoreMemory", "org_id": org, "agent_id": agent, "memory_id": memory_id,
            "content": f"about {memory_id}", **extra}


def update(memory_id: str, content: str, expected: int | None = None, org: str = "acme",
           agent: str = "a1") -> dict[str, Any]:
    return {"type": "UpdateMemory", "org_id": org, "agent_id": agent, "memory_id": memory_id,
            "content": content, "expected_version": expected}


def all_events(bus: CommandBus) -> list[RecordedEvent]:
    return [r for p in range(bus.log.partitions) for r in bus.log.iter_partition(p)]


def receipt_core(receipt: Receipt) -> tuple[int, str, int, tuple[str, ...]]:
    return receipt.partition, receipt.stream_id, receipt.subject_version, receipt.event_ids


# -- idempotency ---------------------------------------------------------------------------


def test_retrying_with_one_idempotency_key_appends_once(bus: CommandBus) -> None:
    receipts = [bus.send(store("m1", idempotency_key="req-1")) for _ in range(100)]

    assert [r.duplicate for r in receipts] == [False] + [True] * 99
    assert {receipt_core(r) for r in receipts} == {receipt_core(receipts[0])}
    [event] = all_events(bus)
    assert str(event.event.event_id) == receipts[0].event_ids[0]


def test_repeats_inside_one_batch_append_once(bus: CommandBus) -> None:
    # No memory_id: each copy would get a fresh generated id, so only the key can dedupe them.
    command = {"type": "StoreMemory", "org_id": "acme", "agent_id": "a1", "content": "x",
               "idempotency_key": "batch-key"}

    outcomes = bus.send_many([command] * 100)

    assert all(isinstance(o, Receipt) for o in outcomes)
    receipts = [o for o in outcomes if isinstance(o, Receipt)]
    assert [r.duplicate for r in receipts] == [False] + [True] * 99
    assert {receipt_core(r) for r in receipts} == {receipt_core(receipts[0])}
    assert len(all_events(bus)) == 1


def test_idempotency_keys_are_scoped_per_org_and_agent(bus: CommandBus) -> None:
    first = bus.send(store("m1", agent="a1", idempotency_key="same"))
    second = bus.send(store("m1", agent="a2", idempotency_key="same"))

    assert not first.duplicate and not second.duplicate
    assert len(all_events(bus)) == 2


# -- optimistic concurrency ----------------------------------------------------------------


def racer(settings: Settings, memory_id: str, thread: int, start: Barrier) -> tuple[list[tuple[str, Receipt]], int]:
    """Apply this thread's updates with expected versions, re-reading the version on conflict.

    Returns the accepted updates (content, receipt) and the number of conflicts met.
    """
    bus = open_bus(settings)  # its own client and connection
    accepted: list[tuple[str, Receipt]] = []
    expected, conflicts = 1, 0
    start.wait()
    try:
        for n in range(UPDATES_PER_THREAD):
            content = f"thread {thread} update {n}"
            for _ in range(10_000):
                outcome = bus.send_many([update(memory_id, content, expected)])[0]
                if isinstance(outcome, VersionConflict):
                    expected, conflicts = outcome.current_version, conflicts + 1
                    continue
                assert isinstance(outcome, Receipt), outcome
                accepted.append((content, outcome))
                expected = outcome.subject_version
                break
            else:
                raise AssertionError(f"thread {thread} never got update {n} through")
    finally:
        bus.log.client.close()
    return accepted, conflicts


def test_racing_writers_get_gapless_versions(settings: Settings, bus: CommandBus) -> None:
    # Given one memory at version 1
    bus.send(store("shared"))

    # When 8 writers race to update it, each retrying with the version it was told
    start = Barrier(THREADS, timeout=30)
    with ThreadPoolExecutor(THREADS) as pool:
        results = [f.result() for f in [pool.submit(racer, settings, "shared", t, start) for t in range(THREADS)]]
    accepted = [item for items, _ in results for item in items]

    # Then the stream holds versions 1..N without gaps, each accepted update exactly once
    events = [r.event for r in all_events(bus)]
    assert [e.subject_version for e in events] == list(range(1, len(events) + 1))
    updates = [e for e in events if e.type == "MemoryUpdated"]
    assert len(accepted) == len(updates) == THREADS * UPDATES_PER_THREAD
    assert sorted(c for c, _ in accepted) == sorted(e.data.content for e in updates)  # type: ignore[attr-defined]
    by_id = {str(e.event_id): e for e in updates}
    for content, receipt in accepted:
        [event_id] = receipt.event_ids
        assert by_id[event_id].data.content == content  # type: ignore[attr-defined]
        assert by_id[event_id].subject_version == receipt.subject_version
    # Every writer first expects version 1 and only one can win it: the race really happened.
    assert sum(conflicts for _, conflicts in results) >= THREADS - 1


# -- batches -------------------------------------------------------------------------------


def test_mixed_batch_returns_one_outcome_per_command_in_order(bus: CommandBus) -> None:
    pairs = [("acme", "a2"), ("initech", "bot-7"), ("umbrella", "r2")]
    parts = {partition_for(o, a, bus.log.partitions) for o, a in pairs}
    assert len(parts) == 3, "the batch must span partitions"
    bus.send(store("old", org="initech", agent="bot-7"))

    batch = [
        store("m1", org="acme", agent="a2"),
        update("nope", "x", org="umbrella", agent="r2"),
        store("old", org="initech", agent="bot-7"),
        update("m1", "y", expected=1, org="acme", agent="a2"),
        update("old", "z", expected=7, org="initech", agent="bot-7"),
        store("m2", org="umbrella", agent="r2"),
        update("m1", "w", org="acme", agent="a2"),
    ]
    outcomes = bus.send_many(batch)

    kinds = [type(o) for o in outcomes]
    assert kinds == [Receipt, UnknownSubject, SubjectExists, Receipt, VersionConflict, Receipt, Receipt]
    receipts = {i: o for i, o in enumerate(outcomes) if isinstance(o, Receipt)}
    assert [receipts[i].subject_version for i in (0, 3, 5, 6)] == [1, 2, 1, 3]
    for i, receipt in receipts.items():
        assert receipt.partition == partition_for(batch[i]["org_id"], batch[i]["agent_id"], bus.log.partitions)
    conflict = outcomes[4]
    assert isinstance(conflict, VersionConflict) and conflict.current_version == 1
    assert len(all_events(bus)) == 1 + 4


# -- layout --------------------------------------------------------------------------------


def test_keys_of_a_partition_share_one_hash_tag() -> None:
    keys = Keys("ml")

    names = [keys.stream(3), keys.subjects(3), keys.idempotency(3, "acme", "a1", "k")]

    assert names == ["{ml:p3}:stream", "{ml:p3}:subjects", "{ml:p3}:idem:acme/a1/k"]
    assert {n[n.index("{") + 1:n.index("}")] for n in names} == {"ml:p3"}


@pytest.mark.parametrize(("org", "agent", "crc"), [
    ("acme", "agent-1", 2209920775), ("globex", "planner", 2856490263), ("initech", "bot-7", 3735129787)])
def test_partition_for_is_stable(org: str, agent: str, crc: int) -> None:
    # Hard-coded CRC-32 values: a change here would re-route existing agents to other streams.
    for partitions in (1, 4, 8, 16, 1024):
        assert partition_for(org, agent, partitions) == crc % partitions


def test_check_layout_refuses_another_partition_count(settings: Settings) -> None:
    open_log(settings)

    with pytest.raises(ConfigurationError, match=f"created with 4 partitions, not 8; set MEMLEDGER_PARTITIONS=4"):
        open_log(settings.model_copy(update={"partitions": 8}))


def test_append_survives_a_flushed_script_cache(settings: Settings) -> None:
    # A Redis restart or SCRIPT FLUSH empties the script cache; NOSCRIPT calls did nothing,
    # so the script is loaded and exactly those calls are sent again.
    bus = open_bus(settings)
    bus.log.client.script_flush()
    receipts = bus.send_many([StoreMemory(org_id="acme", agent_id=f"a{i}", content="x") for i in range(10)])
    assert all(not isinstance(r, Exception) for r in receipts)
    assert sum(bus.log.length(p) for p in range(settings.partitions)) == 10
