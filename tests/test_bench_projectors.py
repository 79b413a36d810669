"""`memledger bench projectors` at a tiny size: N processes share the backlog, figures with their CPU."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from ledger import Settings, open_log
from memledger.cli import app
from memledger.bench.projector_processes import run_projector_processes


def test_two_processes_project_the_whole_backlog_and_report_rate_and_cpu(settings: Settings) -> None:
    # When a 1,000-command backlog is projected by two processes sharing the partitions
    lines: list[str] = []
    [figure] = run_projector_processes(settings, [2], 1000, 1, progress=lines.append)
    # Then every event was projected (the bench waits for every head) and the round is reported with its CPU
    log = open_log(settings)
    assert figure.events == sum(log.client.xlen(log.keys.stream(p)) for p in range(settings.partitions)) >= 1000
    log.close()
    assert figure.processes == 2 and len(figure.rates) == 1 and figure.median > 0
    assert figure.rates[0] == pytest.approx(figure.events / figure.rounds[0].seconds)
    python_us, postgres_us = figure.cpu_us()
    assert python_us > 0 and postgres_us > 0 and figure.ceiling(2) > 0
    assert len(lines) == 1 and "2 process(es)" in lines[0]


@pytest.mark.parametrize("bad", ["0", "1,x", ""])
def test_a_bad_process_list_is_one_clear_error(bad: str) -> None:
    result = CliRunner().invoke(app, ["bench", "projectors", "--processes", bad])
    assert result.exit_code == 2 and "--processes" in result.output and "process counts" in result.output
