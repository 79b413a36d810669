"""bench-scaling at tiny sizes: a rebuild per size with its CPU, bulk-load limit and peak
memory, query latency per table size, and the charts."""

from __future__ import annotations

from pathlib import Path

import pytest

from ledger import Settings
from memledger.bench.scaling import as_json, chart, run_query_scaling, run_scaling, text_chart


def test_each_size_is_rebuilt_and_reported_with_its_cpu_limit_and_memory(settings: Settings, tmp_path: Path) -> None:
    # When two small histories are rebuilt (each in a namespace of its own)
    seen: list[int] = []
    figures = run_scaling(settings, [400, 1200], progress=seen.append)

    # Then each size has its rebuild, its raw COPY, the CPU both sides spent, the bulk-load
    # limit beside it and the peak memory of the process that rebuilt it
    assert seen == [400, 1200] and [f.events for f in figures] == [400, 1200]
    rows = as_json(figures)["rebuild"]
    for row in rows:
        assert row["rebuild_s"] > 0 and row["copy_s"] > 0 and row["limit_s"] > 0
        assert row["rebuild_rate"] == pytest.approx(row["events"] / row["rebuild_s"])
        assert row["vs_limit"] == pytest.approx(row["limit_s"] / row["rebuild_s"])
        assert row["python_cpu_s"] > 0 and row["postgres_cpu_s"] >= 0
        assert row["cpu_ceiling"] > 0
        assert 10 < row["peak_rss_mb"] < 4096  # a Python process's, in MB (not KiB, not bytes)
        assert row["workers"] == 1  # as `replay rebuild` chooses for so small a history
    # (a backend of the tiniest rebuild may end between two polls of the meter; the sum may not)
    assert sum(row["postgres_cpu_s"] for row in rows) > 0
    # ... and the charts are text and a PNG
    text = text_chart(figures)
    assert "1,200" in text and "peak RSS" in text
    png = tmp_path / "scaling.png"
    chart(figures, png, "tiny")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_query_latency_is_measured_per_table_size(settings: Settings, tmp_path: Path) -> None:
    # When the query workload runs on two small tables
    seen: list[int] = []
    queries = run_query_scaling(settings, [200, 2000], progress=seen.append)

    # Then each size has its latencies, p99 at or above p50, and they chart
    assert seen == [200, 2000] and [q.rows for q in queries] == [200, 2000]
    assert all(0 < q.p50_ms <= q.p99_ms for q in queries)
    assert as_json([], queries)["query"][1]["rows"] == 2000
    assert "uncached query p50" in text_chart([], queries)
    # And the pages each query read, as PostgreSQL counted them: some, and more for the larger table's
    # rarest filters (a query that finds fewer than its limit reads every candidate row)
    assert all(0 < q.pages_p50 <= q.pages_p99 for q in queries)
    assert queries[1].pages_p99 > queries[0].pages_p99
    assert as_json([], queries)["query"][1]["pages_p99"] == queries[1].pages_p99
    assert "pages per query" in text_chart([], queries)
    # And the share of them fetched from outside PostgreSQL's buffer cache, with that cache's size
    # (a small table was just written: it is all in the cache)
    assert all(0.0 <= q.outside_cache < 0.5 and q.shared_buffers[0].isdigit() for q in queries)
    assert as_json([], queries)["query"][0]["shared_buffers"] == queries[0].shared_buffers
