"""Trending read model, and what every Redis projection shares: atomic checkpoints, generations."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from commands import CommandBus, ForgetMemory, RecordRecall, StoreMemory, TagMemory, UntagMemory
from ledger import Settings, open_log
from ledger.errors import OutdatedReadModel
from projections import FencedOut, Projector, ProjectorOptions, open_projection, run_projection
from projections.redis import REDIS_PROJECTIONS, RedisProjection, Trending, TrendingProjection

from workload import conversations, send_all, workload

NOW = datetime.now(timezone.utc).replace(minute=30, second=0, microsecond=0)


def bus_at(settings: Settings, when: datetime) -> CommandBus:
    """A command bus whose events are stamped `when` (the projection must use that, not its clock)."""
    return CommandBus(open_log(settings), None, clock=lambda: when)


def trending(settings: Settings) -> Trending:
    return Trending(open_log(settings).client, settings.namespace, settings.partitions)


def project(settings: Settings, name: str = "trending", label: str | None = None, batch: int = 1000) -> RedisProjection:
    projection = open_projection(name, settings, label)
    assert isinstance(projection, RedisProjection)
    Projector(open_log(settings), projection, None, ProjectorOptions(batch=batch)).run(until_caught_up=True)
    return projection


def test_tags_and_recalls_rank_by_score_in_the_buckets_of_their_event_time(settings: Settings) -> None:
    # Given activity 30 hours ago and in the last two hours
    old, recent = bus_at(settings, NOW - timedelta(hours=30)), bus_at(settings, NOW - timedelta(hours=2))
    old.send(StoreMemory(org_id="acme", agent_id="a1", memory_id="old", content="x", tags=("legacy",)))
    for _ in range(5):
        old.send(RecordRecall(org_id="acme", agent_id="a1", memory_id="old"))
    recent.send(StoreMemory(org_id="acme", agent_id="a1", memory_id="tea", content="likes tea", tags=("food", "drink")))
    recent.send(StoreMemory(org_id="acme", agent_id="a2", memory_id="trip", content="flies", tags=("travel",)))
    recent.send(TagMemory(org_id="acme", agent_id="a2", memory_id="trip", tags=("food",)))
    for _ in range(3):
        recent.send(RecordRecall(org_id="acme", agent_id="a1", memory_id="tea"))
    recent.send(RecordRecall(org_id="acme", agent_id="a2", memory_id="trip"))
    recent.send(StoreMemory(org_id="globex", agent_id="a1", memory_id="g", content="other org", tags=("food",)))
    # When the projection catches up
    run_projection(settings, "trending", until_caught_up=True)
    reader = trending(settings)
    # Then a 24h window ranks only the recent hours, ties by name
    day = reader.top("acme", hours=24, until=NOW)
    assert day.tags == [("food", 6), ("drink", 4), ("travel", 2)]
    assert [(m.agent_id, m.memory_id, m.score) for m in day.memories] == [("a1", "tea", 3), ("a2", "trip", 1)]
    # And a 48h window merges the older buckets too; top cuts the list
    two_days = reader.top("acme", hours=48, top=2, until=NOW)
    assert two_days.tags == [("food", 6), ("legacy", 6)]
    assert [m.memory_id for m in two_days.memories] == ["old", "tea"]
    # And a window that ended before the recent activity sees only the old
    assert reader.top("acme", hours=24, until=NOW - timedelta(hours=20)).tags == [("legacy", 6)]


def test_forgetting_a_memory_takes_it_out_of_trending(settings: Settings) -> None:
    bus = bus_at(settings, NOW)
    bus.send(StoreMemory(org_id="acme", agent_id="a1", memory_id="m1", content="x", tags=("food", "secret")))
    bus.send(StoreMemory(org_id="acme", agent_id="a1", memory_id="m2", content="y", tags=("food",)))
    bus.send(UntagMemory(org_id="acme", agent_id="a1", memory_id="m2", tags=("food",)))
    for memory in ("m1", "m1", "m2"):
        bus.send(RecordRecall(org_id="acme", agent_id="a1", memory_id=memory))
    run_projection(settings, "trending", until_caught_up=True)
    before = trending(settings).top("acme", until=NOW)
    assert before.tags == [("food", 4), ("secret", 3)]  # m2's recall came after its untag
    # When m1 is forgotten
    bus.send(ForgetMemory(org_id="acme", agent_id="a1", memory_id="m1"))
    run_projection(settings, "trending", until_caught_up=True)
    # Then everything m1 added is taken back; m2's contributions stay
    after = trending(settings).top("acme", until=NOW)
    assert after.tags == [("food", 1)]
    assert [(m.memory_id, m.score) for m in after.memories] == [("m2", 1)]


@pytest.mark.parametrize("name", [cls.name for cls in REDIS_PROJECTIONS])
def test_the_same_events_give_the_same_state_whatever_the_batching(settings: Settings, name: str) -> None:
    # Given a mixed workload in the ledger (memories, sessions and conversations' messages)
    send_all(bus_at(settings, NOW), workload(1500, seed=5) + conversations(300, seed=5))
    # When it is projected live in big batches, and into two fresh generations in other batch sizes
    live = project(settings, name, batch=1000)
    small = project(settings, name, "small", batch=7)
    odd = project(settings, name, "odd", batch=333)
    # Then the three generations hold identical state, and it is not empty
    digest = live.digest()
    assert digest and all(v.split(":")[0] != "0" for v in digest.values())
    assert small.digest() == digest == odd.digest()
    assert small.checkpoints() == live.checkpoints()


def test_rankings_replay_identically(settings: Settings) -> None:
    send_all(bus_at(settings, NOW), workload(800, seed=8))
    run_projection(settings, "trending", until_caught_up=True)
    first = trending(settings).top("org1", until=NOW)
    rebuilt = project(settings, "trending", "rebuilt", batch=50)
    rebuilt.promote()  # queries now read the rebuilt generation
    again = trending(settings).top("org1", until=NOW)
    assert first.tags and first.memories
    assert (again.tags, again.memories) == (first.tags, first.memories)


def test_a_redelivered_batch_is_fenced_and_counted_once(settings: Settings) -> None:
    bus = bus_at(settings, NOW)
    receipt = bus.send(StoreMemory(org_id="acme", agent_id="a1", memory_id="m1", content="x", tags=("food",)))
    bus.send(RecordRecall(org_id="acme", agent_id="a1", memory_id="m1"))
    log = open_log(settings)
    events = log.read(receipt.partition)
    projection = TrendingProjection.open(settings)
    projection.ensure_current()
    projection.apply(receipt.partition, events, "0-0")
    state = projection.digest()
    # When the same batch comes again (a crash after the script ran, before the ack)
    with pytest.raises(FencedOut):
        projection.apply(receipt.partition, events, "0-0")
    # Then nothing changed
    assert projection.digest() == state
    assert projection.checkpoints() == {receipt.partition: events[-1].position.stream_id}


def test_dead_letters_move_the_checkpoint_with_them(settings: Settings) -> None:
    receipt = bus_at(settings, NOW).send(StoreMemory(org_id="acme", agent_id="a1", memory_id="m1", content="x"))
    projection = TrendingProjection.open(settings)
    projection.ensure_current()
    projection.dead_letter(receipt.partition, receipt.stream_id, "0-0", "e1", "MemoryStored", "boom", 3)
    with pytest.raises(FencedOut):
        projection.dead_letter(receipt.partition, receipt.stream_id, "0-0", "e1", "MemoryStored", "boom", 3)
    assert projection.checkpoints() == {receipt.partition: receipt.stream_id}
    assert [(d["event_id"], d["error"]) for d in projection.dead_letters()] == [("e1", "boom")]


def test_a_generation_built_by_another_version_is_refused(settings: Settings) -> None:
    TrendingProjection.open(settings).ensure_current()

    class Newer(TrendingProjection):
        version = 2

    with pytest.raises(OutdatedReadModel, match="memledger replay rebuild trending"):
        Newer.open(settings).ensure_current()
    Newer.open(settings, "rebuild2").ensure_current()  # a fresh generation is claimed by the new version


def test_promote_swaps_generations_and_fences_the_live_projector(settings: Settings) -> None:
    bus = bus_at(settings, NOW)
    receipt = bus.send(StoreMemory(org_id="acme", agent_id="a1", memory_id="m1", content="x", tags=("food",)))
    live = project(settings)
    assert not TrendingProjection.open(settings, "next").exists()
    shadow = project(settings, "trending", "next")
    assert shadow.exists()
    second = bus.send(TagMemory(org_id="acme", agent_id="a1", memory_id="m1", tags=("drink",)))
    events = open_log(settings).read(second.partition, receipt.stream_id)
    # When the shadow is promoted, the live projector's next batch is fenced out...
    shadow.promote()
    with pytest.raises(FencedOut, match="no longer 'v1'"):
        live.apply(second.partition, events, receipt.stream_id)
    # ...and it continues in the new generation, from that generation's checkpoint
    assert live.checkpoints() == shadow.checkpoints()
    live.apply(second.partition, events, receipt.stream_id)
    assert live.labels() == {"next"}
    assert trending(settings).top("acme", until=NOW).tags == [("drink", 1), ("food", 1)]
    # And the old generation can be dropped
    old = TrendingProjection.open(settings, "v1")
    assert old.drop() > 0 and old.digest() == {} and not old.exists()
