"""The projector's garbage-collector tuning is process-wide and must be undone exactly."""

from __future__ import annotations

import gc
import threading

from projections.runtime import fewer_collections


def test_thresholds_are_raised_while_any_user_is_inside_and_restored_by_the_last() -> None:
    before, frozen_before = gc.get_threshold(), gc.get_freeze_count()
    entered, leave = threading.Event(), threading.Event()

    def other_projector() -> None:
        with fewer_collections():
            entered.set()
            leave.wait(5)

    # Given a projector thread inside, and this one entering and leaving while it stays
    thread = threading.Thread(target=other_projector)
    thread.start()
    assert entered.wait(5)
    with fewer_collections():
        assert gc.get_threshold()[0] == 50_000
    # Then the other projector still collects rarely
    assert gc.get_threshold()[0] == 50_000
    leave.set()
    thread.join(5)
    # ... and once both are out, everything is as before
    assert gc.get_threshold() == before
    assert gc.get_freeze_count() == frozen_before


def test_objects_frozen_by_the_caller_stay_frozen() -> None:
    # Given a caller (the benchmark) that froze its data set
    gc.freeze()
    try:
        frozen = gc.get_freeze_count()
        with fewer_collections():
            pass
        # Then the projector does not unfreeze them on its way out
        assert gc.get_freeze_count() >= frozen > 0
    finally:
        gc.unfreeze()
