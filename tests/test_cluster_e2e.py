"""The whole path on a 3-master Redis Cluster: commands -> projectors -> queries (PostgreSQL
and the Redis read models) -> rebuild -> verify -> trim; and a master SIGKILLed mid-load."""

from __future__ import annotations

import threading
import time

from commands import StoreMemory, open_bus
from ledger import Receipt, Settings, open_log
from ledger.errors import StoreUnavailable
from memledger.app import App
from memledger.local_cluster import LocalCluster
from projections import PROJECTIONS, MemoryQuery, run_projection
from projections.postgres import migrate
from replay.rebuild import rebuild
from replay.trim import trim
from replay.verify import verify

from eventlog_contract import append, ok
from test_replay_helpers import populate

ORG = "acme"


def store(memory_id: str, agent: str = "a1") -> StoreMemory:
    return StoreMemory(org_id=ORG, agent_id=agent, memory_id=memory_id, content=f"about {memory_id}",
                       tags=("food",))


def test_commands_projections_queries_rebuild_verify_and_trim(cluster_settings: Settings) -> None:
    # Given a seeded workload sent and projected by every projector, and two memories of acme
    settings = cluster_settings
    log = populate(settings, 300)
    with App.open(settings) as app:
        heads = {p: log.head(p) or "0-0" for p in range(settings.partitions)}
        receipts = [app.send(store("m1")), app.send(store("m2", agent="a2"))]
        # The SSE stream's wait sees the appends, whichever master holds their partitions
        assert set(app.wait_moved(heads, 1000)) == {r.partition for r in receipts}
        for name in PROJECTIONS:
            app.run_projector(name, until_caught_up=True)
        app.wait_for(receipts[-1], timeout=5)
        # Then queries read PostgreSQL through the Redis cache, and the Redis read models answer
        query = MemoryQuery(ORG, tags=("food",), agent_id="a1")
        first, second = app.query(query), app.query(query)
        assert (first.cache, second.cache) == ("MISS", "HIT") and first.rows == second.rows
        assert "m1" in {r["memory_id"] for r in first.rows}
        assert "food" in dict(app.trending(ORG, hours=2).tags)
        assert sum(app.analytics(ORG).events.values()) >= 2
        assert [e["subject"] for e in app.feed(ORG, "a2")][0] == "m2"
        assert sum(x.behind for x in app.lag()) == 0
    # And a rebuild of each kind swaps and verifies against the live read model
    for name in ("memories", "trending", "analytics", "activity"):
        assert rebuild(settings, name).swapped, name
    for name in PROJECTIONS:
        assert verify(settings, name).agree, name
    # And a trim below what everything applied leaves history whole (archive, then stream)
    total = sum(log.length(p) for p in range(settings.partitions))
    assert sum(point.removed for point in trim(settings, older_than_days=0)) > 0
    assert sum(len(list(log.history(p, source=settings))) for p in range(settings.partitions)) == total
    assert verify(settings, "memories").agree
    log.close()


def _writer(settings: Settings, acked: list[Receipt], failures: list[str], stop: threading.Event) -> None:
    """Append one memory at a time to every agent in turn, keeping each acknowledged receipt."""
    log = open_log(settings)
    n = 0
    while not stop.is_set():
        try:
            acked.append(ok(log.append(append(f"agent{n % 12}", f"m{n}"))))
            n += 1
        except StoreUnavailable as e:
            failures.append(str(e))
            time.sleep(0.05)
    log.close()


def test_a_killed_master_loses_no_acknowledged_event_and_projectors_resume(
        redis_cluster: LocalCluster, cluster_settings: Settings) -> None:
    # Given a writer appending to 12 agents (partitions on all three masters) and a live projector
    settings = cluster_settings
    migrate.upgrade(settings)
    acked: list[Receipt] = []
    failures: list[str] = []
    stop, projector_stop = threading.Event(), threading.Event()
    writer = threading.Thread(target=_writer, args=(settings, acked, failures, stop))
    projector = threading.Thread(target=run_projection, args=(settings, "trending"),
                                 kwargs={"stop": projector_stop})
    writer.start()
    projector.start()
    try:
        deadline = time.monotonic() + 30
        while not any(_trending_checkpoints(settings).values()):  # the projector is at work
            assert time.monotonic() < deadline and projector.is_alive(), "the projector never applied a batch"
            time.sleep(0.1)
        # When one master is SIGKILLed (AOF appendfsync everysec, as ledger/durability.py accepts)
        victim = redis_cluster.ports[0]
        redis_cluster.kill(victim)
        time.sleep(1.0)
        redis_cluster.start_node(victim)
        redis_cluster.wait_ready()
        time.sleep(1.0)
    finally:
        stop.set()
        writer.join(timeout=30)
    log = open_log(settings)
    try:
        # Then the writer saw the outage, and every acknowledged append is in the ledger
        assert failures, "the kill did not interrupt any append"
        on_victim = {r.partition for r in acked
                     if log.client.get_node_from_key(log.keys.stream(r.partition)).port == victim}
        assert on_victim, "no acknowledged append was held by the killed master"
        stored = {(p, e.position.stream_id, e.event.event_id) for p in range(settings.partitions)
                  for e in log.iter_partition(p)}
        missing = [r for r in acked if (r.partition, r.stream_id, r.event_ids[0]) not in
                   {(p, sid, str(eid)) for p, sid, eid in stored}]
        assert not missing, f"{len(missing)} of {len(acked)} acknowledged appends are gone"
        # And the projector, still running, catches up to the head of every partition
        heads = {p: log.head(p) for p in range(settings.partitions)}
        deadline = time.monotonic() + 20
        while _trending_checkpoints(settings) != heads:
            assert time.monotonic() < deadline, (_trending_checkpoints(settings), heads)
            time.sleep(0.1)
    finally:
        projector_stop.set()
        projector.join(timeout=30)
        log.close()
    assert verify(settings, "trending").agree


def _trending_checkpoints(settings: Settings) -> dict[int, str | None]:
    from projections.redis.trending import TrendingProjection

    projection = TrendingProjection.open(settings)
    try:
        found = projection.checkpoints()
        return {p: found.get(p) for p in range(settings.partitions)}
    finally:
        projection.close()


def test_pubsub_notifications_reach_a_watcher_on_any_node(cluster_settings: Settings) -> None:
    # Given a watcher of acme's channel (subscribed on the node of the channel's slot)
    settings = cluster_settings
    received: list[dict[str, object]] = []
    stop = threading.Event()

    def collect() -> None:
        with App.open(settings) as app:
            for event in app.watch(ORG, stop):
                received.append(event)
                stop.set()

    watcher = threading.Thread(target=collect)
    watcher.start()
    bus = open_bus(settings)
    try:
        # When the activity projector applies acme's events (published by a script on the node
        # of each event's partition), until the watcher has one or 20 s passed
        deadline, n = time.monotonic() + 20, 0
        while not received and time.monotonic() < deadline:
            bus.send(store(f"p{n}", agent=f"a{n}"))
            n += 1
            run_projection(settings, "activity", until_caught_up=True)
            time.sleep(0.2)
    finally:
        stop.set()
        watcher.join(timeout=10)
        bus.log.close()
    # Then it received them
    assert received and received[0]["type"] == "MemoryStored"
