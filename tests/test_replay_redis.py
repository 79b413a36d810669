"""Redis read models rebuild under a new key generation and swap by pointer; and rebuilds in parallel."""

from __future__ import annotations

import threading
import time

import pytest

from commands import open_bus
from ledger import Settings, open_log
from ledger.errors import PoisonEvent
from projections import run_projection
from projections.redis import REDIS_PROJECTIONS
from projections.redis.keys import ModelKeys
from replay import Snapshot, open_target
from replay.rebuild import rebuild
from replay.verify import verify

from test_replay_helpers import populate, project_all
from workload import send_all, workload

REDIS_NAMES = [cls.name for cls in REDIS_PROJECTIONS]


def _live(settings: Settings, name: str) -> Snapshot:
    target = open_target(settings, name)
    try:
        return target.live_snapshot()
    finally:
        target.close()


def _generations(settings: Settings, name: str) -> set[str]:
    """Labels that have keys in Redis, over all partitions."""
    client, keys = open_log(settings).client, ModelKeys(settings.namespace, name)
    found = set()
    for p in range(settings.partitions):
        prefix = keys.prefix(p, "")
        for key in client.scan_iter(match=prefix + "*", count=1000):
            label = key.decode()[len(prefix):].split(":", 1)[0]
            if label != "live":
                found.add(label)
    return found


@pytest.mark.parametrize("name", REDIS_NAMES)
def test_redis_rebuild_swaps_generations_and_drops_the_old_one(settings: Settings, name: str) -> None:
    populate(settings, 600)
    before, generations = _live(settings, name), _generations(settings, name)
    assert before.digest and generations == {"v1"}
    result = rebuild(settings, name)
    assert result.swapped
    after = _generations(settings, name)
    assert len(after) == 1 and after != generations  # the new generation only; the old one is gone
    assert _live(settings, name) == before
    # The live projector follows the pointer to the new generation
    send_all(open_bus(settings), workload(100, seed=2))
    run_projection(settings, name, until_caught_up=True)
    assert _generations(settings, name) == after
    assert verify(settings, name).agree


def test_redis_rebuild_while_its_projector_runs(settings: Settings) -> None:
    populate(settings, 600)
    stop = threading.Event()
    projector = threading.Thread(target=run_projection, args=(settings, "trending"), kwargs={"stop": stop})
    projector.start()
    try:
        bus = open_bus(settings)
        for seed in range(3, 6):
            send_all(bus, workload(100, seed=seed))
            if seed == 4:
                assert rebuild(settings, "trending").swapped
        time.sleep(0.5)
    finally:
        stop.set()
        projector.join()
    run_projection(settings, "trending", until_caught_up=True)
    assert verify(settings, "trending").agree


def test_redis_verify_reports_a_tampered_key(settings: Settings) -> None:
    populate(settings, 300)
    assert verify(settings, "analytics").agree
    client, keys = open_log(settings).client, ModelKeys(settings.namespace, "analytics")
    label = client.get(keys.pointer(0)).decode()
    [victim] = list(client.scan_iter(match=keys.prefix(0, label) + ":n:*", count=1000))[:1]
    client.hincrby(victim, "MemoryStored", 1)
    result = verify(settings, "analytics")
    assert not result.agree and any(line.startswith("n: ") for line in result.differences)


def test_parallel_workers_rebuild_to_the_same_result(settings: Settings) -> None:
    populate(settings, 2000)
    before = _live(settings, "memories")
    result = rebuild(settings, "memories", workers=2, batch=500)
    assert result.swapped and result.applied == sum(open_log(settings).length(p) for p in range(4))
    assert _live(settings, "memories") == before


def test_a_worker_poison_event_stops_the_parallel_rebuild(settings: Settings) -> None:
    log = populate(settings, 400)
    log.client.xadd(log.keys.stream(2), {"v": 1, "e": b"{not json"})
    project_all(settings, ("memories",))
    before = _live(settings, "memories")
    with pytest.raises(PoisonEvent, match="partition 2 id .* cannot be decoded"):
        rebuild(settings, "memories", workers=2, batch=100)
    assert _live(settings, "memories") == before
