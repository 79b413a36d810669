"""A projector that holds no partition looks for free leases often (IDLE_LOOK_S), not only at
the renewal interval of a holder (lease_ttl_ms / 3): partitions a peer releases on a clean
stop are taken within a fraction of a second, however long the lease TTL."""

from __future__ import annotations

import threading
import time

from commands import StoreMemory, open_bus
from ledger import Settings, open_log
from ledger.connections import database_url
from projections import Projector, ProjectorOptions
from projections.lease import Leases
from projections.postgres import migrate
from projections.postgres.memories import MemoriesProjection
from projections.runtime import IDLE_LOOK_S

LEASE_TTL_MS = 60_000  # a holder renews every 20 s
# How soon the released partitions must be taken: IDLE_LOOK_S plus the machine's hiccups (a run
# of the whole suite on a fresh clone once took over 1 s), still far below a renewal interval.
TAKEN_WITHIN_S = 3.0


def test_an_idle_projector_takes_released_partitions_at_once(settings: Settings) -> None:
    migrate.upgrade(settings)
    receipt = open_bus(settings).send(StoreMemory(org_id="acme", agent_id="bot", memory_id="m", content="hello"))
    log = open_log(settings)
    partitions = list(range(settings.partitions))
    # Given a peer holding every partition, and a projector that has joined and holds none
    peer = Leases(log, "memories", LEASE_TTL_MS, token="peer")
    assert peer.take(partitions) == set(partitions)
    mine = Leases(open_log(settings), "memories", LEASE_TTL_MS)
    projection = MemoriesProjection(database_url(settings), settings.db_schema)
    stop = threading.Event()
    runner = threading.Thread(target=Projector(log, projection, mine, ProjectorOptions(lease_ttl_ms=LEASE_TTL_MS)).run,
                              args=(stop,))
    runner.start()
    try:
        deadline = time.monotonic() + 10
        while not log.client.zscore(mine.members_key, mine.token):
            assert time.monotonic() < deadline, "the projector never joined"
            time.sleep(0.01)
        time.sleep(0.2)  # well into its wait for a look
        # When the peer releases them (a clean stop)
        peer.release(partitions)
        peer.leave()
        released = time.monotonic()
        # Then the projector holds them and applied the backlog well before a renewal interval
        while log.client.get(mine.key(receipt.partition)) != mine.token.encode():
            assert time.monotonic() - released < TAKEN_WITHIN_S, \
                f"the released partitions were not taken within {TAKEN_WITHIN_S} s " \
                f"(projector running: {runner.is_alive()}, members: {log.client.zrange(mine.members_key, 0, -1)})"
            time.sleep(0.005)
        assert IDLE_LOOK_S < TAKEN_WITHIN_S < LEASE_TTL_MS / 3000 / 5
    finally:
        stop.set()
        runner.join(30)
        projection.close()
