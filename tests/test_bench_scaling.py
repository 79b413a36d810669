"""bench-scaling at tiny sizes: a rebuild per size, figures with their CPU, the chart."""

from __future__ import annotations

from pathlib import Path

import pytest

from ledger import Settings
from memledger.bench.scaling import as_json, chart, run_scaling


def test_each_size_is_rebuilt_and_reported_with_its_cpu(settings: Settings, tmp_path: Path) -> None:
    # When two small histories are rebuilt (each in a namespace of its own)
    seen: list[int] = []
    figures = run_scaling(settings, [400, 1200], progress=seen.append)

    # Then each size has its rebuild, its raw COPY and the CPU both sides spent
    assert seen == [400, 1200] and [f.events for f in figures] == [400, 1200]
    rows = as_json(figures)
    for row in rows:
        assert row["rebuild_s"] > 0 and row["copy_s"] > 0
        assert row["rebuild_rate"] == pytest.approx(row["events"] / row["rebuild_s"])
        assert row["python_cpu_s"] > 0 and row["postgres_cpu_s"] >= 0
        assert row["cpu_ceiling"] > 0
    # (a backend of the tiniest rebuild may end between two polls of the meter; the sum may not)
    assert sum(row["postgres_cpu_s"] for row in rows) > 0
    # ... and the chart is a PNG
    png = tmp_path / "scaling.png"
    chart(figures, png, "tiny")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
