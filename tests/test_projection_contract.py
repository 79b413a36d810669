"""The contract every registered projection keeps, run against each store's read models.

`ProjectionContract` states it once, in terms of the roles only (`projections.base.Projection`,
`ProjectionClass`, `projections.checkpoints.CheckpointStore`): a batch applied twice equals
it applied once (the second is fenced and changes nothing), a fresh read model creates a
partition's checkpoint only from the start and only once, a dead letter moves the checkpoint
and is listed, and a rebuild equals the live model. Each store's test class below names its
projections; a read model in a new store (a new registry entry) needs a class of its own,
which `test_every_registered_projection_is_under_contract` insists on.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from commands import open_bus
from ledger import Settings, open_log
from ledger.events import RecordedEvent
from projections import PROJECTIONS, FencedOut, Projection, open_projection, run_projection
from projections.postgres import migrate
from projections.postgres.base import PostgresProjection
from projections.redis.base import RedisProjection
from replay.rebuild import rebuild

from workload import send_all, workload

POSTGRES = sorted(n for n, c in PROJECTIONS.items() if isinstance(c, type) and issubclass(c, PostgresProjection))
REDIS = sorted(n for n, c in PROJECTIONS.items() if isinstance(c, type) and issubclass(c, RedisProjection))


@pytest.fixture
def ledger_300(settings: Settings) -> Settings:
    """A migrated namespace whose ledger holds 300 events over every partition."""
    migrate.upgrade(settings)
    assert send_all(open_bus(settings), workload(300, seed=41)) == 300
    return settings


def _busiest(settings: Settings, count: int) -> tuple[int, list[RecordedEvent]]:
    """The first `count` events of the partition holding the most."""
    log = open_log(settings)
    partition = max(range(settings.partitions), key=lambda p: len(log.read(p, count=count)))
    events = log.read(partition, count=count)
    assert len(events) == count, f"partition {partition} holds only {len(events)} events"
    return partition, events


class ProjectionContract:
    """Subclasses provide the `name` fixture: one registered projection per parameter."""

    @pytest.fixture
    def name(self) -> str:
        raise NotImplementedError

    @pytest.fixture
    def projection(self, ledger_300: Settings, name: str) -> Iterator[Projection]:
        projection = open_projection(name, ledger_300)
        projection.ensure_current()
        yield projection
        projection.close()

    def test_the_registry_holds_its_class_which_names_it(self, ledger_300: Settings, name: str,
                                                         projection: Projection) -> None:
        cls = PROJECTIONS[name]
        assert isinstance(cls, type) and cls.name == name == projection.name
        assert cls.version == projection.version == projection.stored_version()
        assert projection.skips_poison is (name != "archive")  # the archive never dead-letters
        target = cls.shadow(ledger_300)
        try:
            assert target.name == name and not target.shadow_exists()
        finally:
            target.close()

    def test_a_fresh_read_model_creates_a_checkpoint_only_from_the_start_and_once(
            self, ledger_300: Settings, projection: Projection) -> None:
        # Given a read model that has applied nothing
        partition, events = _busiest(ledger_300, 6)
        assert projection.checkpoints() == {}
        # When a batch claims to follow an event it never applied, it is fenced
        with pytest.raises(FencedOut):
            projection.apply(partition, events[1:3], events[0].position.stream_id)
        assert projection.checkpoints() == {}
        # Then only a batch read from "0-0" creates the checkpoint, and only once
        projection.apply(partition, events[:3], "0-0")
        assert projection.checkpoints() == {partition: events[2].position.stream_id}
        with pytest.raises(FencedOut):
            projection.apply(partition, events[:3], "0-0")
        projection.apply(partition, events[3:], events[2].position.stream_id)
        assert projection.checkpoints() == {partition: events[5].position.stream_id}

    def test_a_batch_applied_twice_equals_it_applied_once(self, ledger_300: Settings,
                                                          projection: Projection) -> None:
        # Given two batches applied, and what the read model then holds
        partition, events = _busiest(ledger_300, 20)
        first, second = events[:10], events[10:]
        projection.apply(partition, first, "0-0")
        projection.apply(partition, second, first[-1].position.stream_id)
        once, checkpoints = projection.digest(), projection.checkpoints()
        assert once, "an applied read model has something to digest"
        # When either batch is delivered again (a crash after its commit, a stale projector)
        for batch, after in ((second, first[-1].position.stream_id), (first, "0-0")):
            with pytest.raises(FencedOut):
                projection.apply(partition, batch, after)
        # Then it is fenced and changes nothing
        assert projection.digest() == once
        assert projection.checkpoints() == checkpoints

    def test_a_dead_letter_moves_the_checkpoint_and_is_listed(self, ledger_300: Settings,
                                                              projection: Projection) -> None:
        partition, events = _busiest(ledger_300, 2)
        projection.apply(partition, events[:1], "0-0")
        poison = events[1]
        projection.dead_letter(partition, poison.position.stream_id, events[0].position.stream_id,
                               str(poison.event.event_id), poison.event.type, "ValueError: bad", 3)
        assert projection.checkpoints() == {partition: poison.position.stream_id}
        [letter] = projection.list_dead_letters()
        assert (letter.projection, letter.partition, letter.stream_id, letter.event_id, letter.attempts) == (
            projection.name, partition, poison.position.stream_id, str(poison.event.event_id), 3)
        # A second letter for the same position is fenced like a batch
        with pytest.raises(FencedOut):
            projection.dead_letter(partition, poison.position.stream_id, events[0].position.stream_id,
                                   str(poison.event.event_id), poison.event.type, "again", 1)
        assert len(projection.list_dead_letters()) == 1

    def test_the_checkpoint_store_reads_what_the_batches_wrote(self, ledger_300: Settings,
                                                               projection: Projection) -> None:
        partition, events = _busiest(ledger_300, 4)
        store = projection.checkpoint_store
        assert (store.load(), store.get(partition)) == ({}, None)
        projection.apply(partition, events, "0-0")
        assert store.load() == projection.checkpoints() == {partition: events[-1].position.stream_id}
        assert store.get(partition) == events[-1].position.stream_id
        assert store.projection == projection.name

    def test_a_rebuild_equals_the_live_model(self, ledger_300: Settings, name: str) -> None:
        # Given the live model caught up with the whole ledger
        run_projection(ledger_300, "archive", until_caught_up=True)  # others read history from it
        run_projection(ledger_300, name, until_caught_up=True)
        live = open_projection(name, ledger_300)
        try:
            before, checkpoints = live.digest(), live.checkpoints()
        finally:
            live.close()
        log = open_log(ledger_300)
        assert checkpoints == {p: h for p in range(ledger_300.partitions) if (h := log.head(p))}
        # When it is rebuilt from history and swapped in
        result = rebuild(ledger_300, name)
        assert result.swapped and result.applied == sum(log.length(p) for p in range(ledger_300.partitions))
        # Then the rebuilt model is the live one, at the same checkpoints
        rebuilt = open_projection(name, ledger_300)
        try:
            assert (rebuilt.digest(), rebuilt.checkpoints()) == (before, checkpoints)
        finally:
            rebuilt.close()


class TestPostgresProjections(ProjectionContract):
    @pytest.fixture(params=POSTGRES)
    def name(self, request: pytest.FixtureRequest) -> str:
        return str(request.param)


class TestRedisProjections(ProjectionContract):
    @pytest.fixture(params=REDIS)
    def name(self, request: pytest.FixtureRequest) -> str:
        return str(request.param)


def test_every_registered_projection_is_under_contract() -> None:
    assert set(POSTGRES) | set(REDIS) == set(PROJECTIONS)
    assert "archive" in POSTGRES and "memories" in POSTGRES and REDIS
