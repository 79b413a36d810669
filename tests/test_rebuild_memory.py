"""A rebuild's memory is bounded by its batch size, not by the history it replays.

Each lane of `replay.rebuild.Replayer` holds at most three chunks of `batch` events: the one
it applies, one read ahead, and one being read. Counting the decoded events alive while a
history twenty times the batch replays shows that window, and that nothing keeps the
events of chunks already applied.
"""

from __future__ import annotations

import gc
import threading

from commands import open_bus
from ledger import Settings
from ledger.events import RecordedEvent
from projections import run_projection
from projections.postgres import migrate
from replay.rebuild import Progress, rebuild

from workload import send_all, workload

BATCH = 25
LANES = 2


def _alive() -> int:
    return sum(1 for o in gc.get_objects() if type(o) is RecordedEvent)


def test_a_rebuild_holds_a_few_batches_of_events_whatever_the_history(settings: Settings) -> None:
    # Given a history many times the batch size, archived and projected
    migrate.upgrade(settings)
    history = send_all(open_bus(settings), workload(1_200, seed=41))
    assert history >= 20 * LANES * BATCH
    run_projection(settings, "archive", until_caught_up=True)
    run_projection(settings, "memories", until_caught_up=True)
    gc.collect()
    already = _alive()
    # When the memories model is rebuilt in batches of BATCH on two lanes, counting the
    # decoded events alive each time a chunk has been applied
    counts: list[int] = []
    lock = threading.Lock()

    def report(p: Progress) -> None:
        if p.partition >= 0:
            with lock:
                counts.append(_alive() - already)

    result = rebuild(settings, "memories", batch=BATCH, report=report, appliers=LANES)
    # Then it replayed the whole history, never holding more than three chunks per lane
    assert result.swapped and result.applied >= history
    assert len(counts) >= history // BATCH
    assert max(counts) <= 3 * BATCH * LANES, max(counts)
