"""The operators' CLI: `memledger replay rebuild|verify|status|dead-letters|discard`, `memledger ledger trim`."""

from __future__ import annotations

import os
import signal
import subprocess
import time

import orjson
from typer.testing import CliRunner, Result

from ledger import Settings, open_log
from memledger.cli import app
from memledger.cli.common import settings as cli_settings
from memledger.cli.replay import EXIT_CANCELLED, EXIT_DIFFERENT, auto_workers
from replay import open_target

from test_replay_helpers import env, memledger, populate, sql


def cli(settings: Settings, *args: str, stdin: str | None = None) -> Result:
    cli_settings.cache_clear()
    try:
        return CliRunner().invoke(app, list(args), env=env(settings), input=stdin)
    finally:
        cli_settings.cache_clear()


def _live(settings: Settings) -> object:
    target = open_target(settings, "memories")
    try:
        return target.live_snapshot()
    finally:
        target.close()


def _shadow_exists(settings: Settings) -> bool:
    target = open_target(settings, "memories")
    try:
        return target.shadow_exists()
    finally:
        target.close()


def test_status_dry_run_rebuild_and_verify(settings: Settings) -> None:
    populate(settings, 500)
    rows = orjson.loads(cli(settings, "replay", "status", "--json").output)
    assert {(r["projection"], r["state"], r["lag"]) for r in rows if r["projection"] in ("archive", "memories")} == {
        ("archive", "live", 0), ("memories", "live", 0)}
    table = cli(settings, "replay", "status").output
    assert "memories" in table and "live" in table

    dry = cli(settings, "replay", "rebuild", "memories", "--dry-run")
    assert dry.exit_code == 0 and "events to replay" in dry.output
    assert not _shadow_exists(settings)

    # Without --yes the swap is confirmed first; "n" aborts before anything is written
    assert cli(settings, "replay", "rebuild", "memories", stdin="n\n").exit_code == 1
    done = cli(settings, "replay", "rebuild", "memories", "--yes")
    assert done.exit_code == 0, done.output
    assert "ev/s" in done.output and "swapped in" in done.output
    as_json = orjson.loads(cli(settings, "replay", "rebuild", "memories", "--yes", "--json").output)
    assert as_json["swapped"] and as_json["applied"] == sum(open_log(settings).length(p) for p in range(4))

    agree = cli(settings, "replay", "verify", "memories")
    assert agree.exit_code == 0 and "equals a rebuild" in agree.output
    sql(settings, "UPDATE tag_stats SET memories = memories + 1 WHERE tag = 'food'")
    differ = cli(settings, "replay", "verify", "memories")
    assert differ.exit_code == EXIT_DIFFERENT
    assert "DIFFERS" in differ.output and "tag_stats: " in differ.output and "only in live" in differ.output


def test_dead_letters_listing_and_redrive(settings: Settings) -> None:
    log = populate(settings, 50)
    log.client.xadd(log.keys.stream(1), {"v": 1, "e": b"{not json"})
    assert cli(settings, "projector", "run", "-p", "memories", "--until-caught-up").exit_code == 0
    letters = orjson.loads(cli(settings, "replay", "dead-letters", "--projection", "memories", "--json").output)
    assert [(d["projection"], d["partition"], d["redriven_at"]) for d in letters] == [("memories", 1, None)]
    assert "undecodable" in letters[0]["error"]
    redriven = cli(settings, "replay", "dead-letters", "--projection", "memories", "--redrive", "--json")
    assert redriven.exit_code == 1  # not every letter could be re-driven
    [outcome] = orjson.loads(redriven.output)
    assert outcome["outcome"] == "failed" and outcome["detail"].startswith("still undecodable")  # stays open
    listed = cli(settings, "replay", "dead-letters", "--projection", "memories")
    assert listed.exit_code == 0 and "undecodable" in listed.output


def test_trim_dry_run_then_trim(settings: Settings) -> None:
    log = populate(settings, 300)
    lengths = [log.length(p) for p in range(4)]
    dry = orjson.loads(cli(settings, "ledger", "trim", "--older-than", "0", "--dry-run", "--json").output)
    assert [log.length(p) for p in range(4)] == lengths and all(p["min_id"] for p in dry)
    done = orjson.loads(cli(settings, "ledger", "trim", "--older-than", "0", "--yes", "--json").output)
    assert sum(p["removed"] for p in done) == sum(lengths) - sum(log.length(p) for p in range(4)) > 0
    kept = orjson.loads(cli(settings, "ledger", "trim", "--older-than", "365", "--yes", "--json").output)
    assert {p["held_by"] for p in kept} == {"age"} and sum(p["removed"] for p in kept) == 0


def test_ctrl_c_cancels_leaving_the_live_model_untouched_and_discard_drops_the_shadow(settings: Settings) -> None:
    populate(settings, 4000)
    sql(settings, "UPDATE memories SET importance = 0.5")  # a live model a rebuild would change
    before = _live(settings)
    child = memledger(settings, "replay", "rebuild", "memories", "--yes", "--batch", "50",
                      stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    target = open_target(settings, "memories")
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not target.shadow_checkpoints():
            time.sleep(0.02)
        child.send_signal(signal.SIGINT)
        output = child.communicate(timeout=60)[0].decode()
        assert child.returncode == EXIT_CANCELLED, output
        assert "cancelled: the live 'memories' read model is untouched" in output
        assert _live(settings) == before and target.shadow_exists()
        states = orjson.loads(cli(settings, "replay", "status", "--json", "--projection", "memories").output)
        assert {r["state"] for r in states} == {"rebuilding"}
        assert "a rebuild shadow stands at p0" in cli(settings, "replay", "status").output
        assert cli(settings, "replay", "discard", "memories").exit_code == 0
        assert not target.shadow_exists() and _live(settings) == before
    finally:
        target.close()


def test_workers_default_to_one_per_cpu_only_for_a_large_history() -> None:
    from replay.rebuild import PartitionPlan, RebuildPlan

    def plan(events: int) -> RebuildPlan:
        return RebuildPlan("memories", "schema x", False, None,
                           tuple(PartitionPlan(p, "0-0", events // 8) for p in range(8)), True)

    assert auto_workers(plan(10_000)) == 1
    assert auto_workers(plan(1_000_000)) == min(os.cpu_count() or 1, 8)
