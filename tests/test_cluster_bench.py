"""`memledger bench cluster`: a tiny run measures both targets and leaves no server behind."""

from __future__ import annotations

import subprocess

from memledger.bench.cluster_bench import as_json, run_cluster_bench


def _redis_servers() -> set[str]:
    found = subprocess.run(["pgrep", "-f", "redis-server"], capture_output=True, text=True).stdout
    return set(found.split())


def test_a_tiny_run_measures_one_redis_and_the_cluster() -> None:
    before = _redis_servers()
    figures = run_cluster_bench(writers=1, commands=20, batch=5, rounds=1)
    rows = {row["target"]: row for row in as_json(figures)}
    assert set(rows) == {"single", "cluster"}
    for row in rows.values():
        assert row["writers"] == 1 and row["median_commands_per_s"] > 0
        assert len(row["rounds_commands_per_s"]) == 1 and len(row["load"]) == 1
    assert _redis_servers() <= before  # the bench's servers are gone
