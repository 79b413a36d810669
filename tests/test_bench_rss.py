"""The bench's peak-memory figure is the measured process's own, not its parent's.

On Linux, `ru_maxrss` of a process started by fork + exec (multiprocessing's "spawn", which
the rebuild bench uses) starts at its parent's high-water mark: the kernel folds the old
address space's peak into it at exec. A rebuild bench whose parent had generated a large
history then reported that history's size as the rebuild's peak, and it "grew with history".
"""

from __future__ import annotations

import multiprocessing

from ledger import Settings
from memledger.bench.rss import PeakRss

FAT_MB = 400


def _child(out: multiprocessing.Queue[float]) -> None:
    with PeakRss() as rss:
        sum(range(1000))  # a small piece of work
    out.put(rss.mb)


def test_a_spawned_childs_peak_does_not_include_its_parents_memory() -> None:
    fat = bytearray(FAT_MB * 2**20)
    fat[::4096] = b"x" * len(fat[::4096])  # touch every page: resident
    context = multiprocessing.get_context("spawn")
    out: multiprocessing.Queue[float] = context.Queue()
    child = context.Process(target=_child, args=(out,))
    child.start()
    try:
        peak = out.get(timeout=60)
    finally:
        child.join()
    del fat
    assert peak < FAT_MB / 2, f"the child's peak {peak:.0f} MB includes its parent's {FAT_MB} MB"


def test_peak_rss_sees_the_work_of_its_block() -> None:
    with PeakRss() as rss:
        block = bytearray(200 * 2**20)
        block[::4096] = b"y" * len(block[::4096])
    del block
    assert rss.mb >= 200


def test_the_rebuild_benchs_peak_is_the_rebuilds_not_the_bench_processs(settings: Settings) -> None:
    from memledger.bench.rebuild_bench import measure

    # Given a bench process that holds far more memory than a small rebuild needs
    fat = bytearray(2 * FAT_MB * 2**20)
    fat[::4096] = b"x" * len(fat[::4096])
    # When it measures the rebuild of a small history (in a spawned process)
    figures = measure(settings, 300)
    del fat
    # Then the peak reported is that process's own, far below what the bench held
    assert 10 < figures.peak_rss_mb < FAT_MB, figures
