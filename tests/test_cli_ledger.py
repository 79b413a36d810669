"""The ledger's CLI: `send`, `log show|tail`, `info`, run in-process against the real Redis."""

from __future__ import annotations

import os
import queue
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import orjson
import pytest
from typer.testing import CliRunner, Result

from ledger import Settings, open_log
from memledger.cli import app
from memledger.cli.agents import read_commands
from memledger.cli.common import settings as cli_settings
from memledger.cli.logs import make_filter, short_payload
from memledger.log_reader import EventFilter, follow

Env = dict[str, str]


@pytest.fixture
def env(settings: Settings) -> Iterator[Env]:
    """The MEMLEDGER_* variables that point the CLI at the test namespace."""
    cli_settings.cache_clear()  # the CLI caches its settings per process
    yield {
        "MEMLEDGER_REDIS_URL": settings.redis_url or "",
        "MEMLEDGER_DATABASE_URL": settings.database_url or "",
        "MEMLEDGER_NAMESPACE": settings.namespace,
        "MEMLEDGER_PARTITIONS": str(settings.partitions),
        "MEMLEDGER_ALLOW_VOLATILE": "1",
    }
    cli_settings.cache_clear()


def run(env: Env, *args: str, stdin: str | None = None) -> Result:
    cli_settings.cache_clear()
    return CliRunner().invoke(app, list(args), input=stdin, env=env)


def json_lines(text: str) -> list[dict[str, Any]]:
    return [orjson.loads(line) for line in text.splitlines() if line.strip()]


def lines(*commands: dict[str, Any] | str) -> str:
    return "".join((c if isinstance(c, str) else orjson.dumps(c).decode()) + "\n" for c in commands)


def store(memory_id: str, org: str = "acme", agent: str = "a1", **extra: Any) -> dict[str, Any]:
    return {"type": "StoreMemory", "org_id": org, "agent_id": agent, "memory_id": memory_id,
            "content": f"about {memory_id}", **extra}


def update(memory_id: str, expected: int | None = None, org: str = "acme", agent: str = "a1") -> dict[str, Any]:
    return {"type": "UpdateMemory", "org_id": org, "agent_id": agent, "memory_id": memory_id,
            "importance": 0.9, "expected_version": expected}


# -- send ----------------------------------------------------------------------------------


def test_send_reports_each_line_and_exits_2_on_a_bad_one(env: Env, settings: Settings) -> None:
    result = run(env, "send", stdin=lines(store("m1"), "{not json", update("m1")))

    assert result.exit_code == 2, result.output
    out = result.stdout.splitlines()
    assert len(out) == 3
    assert out[0].startswith("line 1: ok p") and " v1 events=" in out[0]
    assert out[1].startswith("line 2: invalid: not valid JSON")
    assert out[2].startswith("line 3: ok p") and " v2 " in out[2]
    log = open_log(settings)
    assert sum(log.length(p) for p in range(log.partitions)) == 2


def test_send_json_gives_receipts_and_typed_errors(env: Env) -> None:
    run(env, "send", stdin=lines(store("m1")))

    result = run(env, "send", "--json", stdin=lines(
        update("m1", expected=1),
        update("m1", expected=1),
        store("m2", idempotency_key="k"),
        store("m2", idempotency_key="k"),
        {"type": "TagMemory", "org_id": "acme", "agent_id": "a1", "memory_id": "m1", "tags": ["has space"]},
        "[1, 2]",
    ))

    assert result.exit_code == 2
    out = json_lines(result.stdout)
    assert [o["line"] for o in out] == [1, 2, 3, 4, 5, 6]
    assert out[0]["ok"] and out[0]["subject_version"] == 2 and len(out[0]["event_ids"]) == 1
    assert set(out[0]) == {"line", "ok", "partition", "stream_id", "subject_version", "event_ids", "duplicate"}
    assert out[1] == {"line": 2, "ok": False, "error": "version_conflict", "current_version": 2,
                      "message": out[1]["message"]}
    assert "m1 is at version 2, not 1" in out[1]["message"]
    assert (out[2]["duplicate"], out[3]["duplicate"]) == (False, True)
    assert out[3]["stream_id"] == out[2]["stream_id"]
    assert out[4]["error"] == "invalid" and "TagMemory.tags.0" in out[4]["message"]
    assert out[5]["error"] == "invalid" and "JSON object" in out[5]["message"]


def test_send_exits_0_when_all_are_accepted(env: Env, tmp_path: Path) -> None:
    path = tmp_path / "commands.jsonl"
    path.write_text(lines(store("m1"), store("m2"), "", update("m1")))

    result = run(env, "send", str(path), "--json")

    assert result.exit_code == 0, result.output
    assert [o["line"] for o in json_lines(result.stdout)] == [1, 2, 4]  # blank lines are skipped


def test_send_reads_one_pretty_printed_object(env: Env) -> None:
    pretty = orjson.dumps(store("m1"), option=orjson.OPT_INDENT_2).decode()

    result = run(env, "send", "-", "--json", stdin=pretty)

    assert result.exit_code == 0, result.output
    [out] = json_lines(result.stdout)
    assert out["ok"] and out["line"] == 1


def test_send_reports_rate_limits_with_retry_after(env: Env) -> None:
    limited = {**env, "MEMLEDGER_RATE_PER_SECOND": "1", "MEMLEDGER_RATE_BURST": "1"}

    result = run(limited, "send", "--json", stdin=lines(store("m1"), store("m2")))

    assert result.exit_code == 2
    ok, refused = json_lines(result.stdout)
    assert ok["ok"] and refused["error"] == "rate_limited" and refused["retry_after"] > 0


@pytest.mark.parametrize(("text", "expected"), [
    ('{"a": 1}\n{"b": 2}\n', [(1, {"a": 1}), (2, {"b": 2})]),
    ('{\n  "a": 1\n}\n', [(1, {"a": 1})]),
    ("\n\n", []),
])
def test_read_commands(text: str, expected: list[tuple[int, Any]]) -> None:
    assert list(read_commands(text.encode().splitlines(keepends=True))) == expected


def test_read_commands_keeps_going_after_a_broken_first_line() -> None:
    items = list(read_commands([b'{"a": \n', b'{"b": 2}\n']))

    assert [n for n, _ in items] == [1, 2]
    assert items[1][1] == {"b": 2}


# -- log show / tail -----------------------------------------------------------------------


def seed(env: Env) -> None:
    result = run(env, "send", stdin=lines(
        store("m1"), store("m2", agent="a2"), update("m1"), store("m3", org="globex"), update("m2", agent="a2")))
    assert result.exit_code == 0, result.output


def shown(env: Env, *args: str) -> list[dict[str, Any]]:
    result = run(env, "log", *args, "--json")
    assert result.exit_code == 0, result.output
    return json_lines(result.stdout)


def in_log_order(events: list[dict[str, Any]]) -> bool:
    # One batch spans partitions in one round trip, so events of different partitions can
    # share a millisecond: the log orders by stream id, then partition.
    keys = [(tuple(map(int, e["stream_id"].split("-"))), e["partition"]) for e in events]
    return keys == sorted(keys)


def test_log_show_filters_by_type(env: Env) -> None:
    seed(env)

    events = shown(env, "show", "--type", "MemoryStored")

    assert sorted(e["subject_id"] for e in events) == ["m1", "m2", "m3"]
    assert {e["type"] for e in events} == {"MemoryStored"}
    assert all({"partition", "stream_id", "event_id", "data", "occurred_at"} <= set(e) for e in events)
    assert in_log_order(events)


def test_log_show_filters_by_org_agent_subject_and_limit(env: Env) -> None:
    seed(env)

    def subjects(*args: str) -> list[tuple[str, int]]:
        return [(e["subject_id"], e["subject_version"]) for e in shown(env, "show", *args)]

    everything = subjects()
    assert len(everything) == 5 and in_log_order(shown(env, "show"))
    assert subjects("--org", "globex") == [("m3", 1)]
    assert subjects("--org", "acme", "--agent", "a1") == [("m1", 1), ("m1", 2)]
    assert subjects("--subject", "m2") == [("m2", 1), ("m2", 2)]
    assert subjects("--limit", "2") == everything[:2]
    assert subjects("--type", "MemoryUpdated", "--type", "MemoryStored", "--org", "acme") == \
        [s for s in everything if s[0] != "m3"]
    assert subjects("--since", "2199-01-01T00:00:00Z") == []
    assert subjects("--until", "2001-01-01") == []
    assert subjects("--since", "2001-01-01", "--until", "2199-01-01T00:00:00+02:00") == everything


def test_log_show_table(env: Env) -> None:
    seed(env)

    result = run(env, "log", "show", "--type", "MemoryUpdated")

    assert result.exit_code == 0, result.output
    assert "MemoryUpdated" in result.stdout and "MemoryStored" not in result.stdout


def test_log_tail_shows_the_newest_oldest_first(env: Env) -> None:
    seed(env)
    everything = shown(env, "show")

    assert shown(env, "tail", "-n", "2") == everything[-2:]
    assert shown(env, "tail") == everything  # the default 20 covers them all


def test_log_tail_with_filters(env: Env) -> None:
    seed(env)

    tail = shown(env, "tail", "--type", "MemoryStored", "--org", "acme")

    assert tail == shown(env, "show", "--type", "MemoryStored", "--org", "acme")
    assert sorted(e["subject_id"] for e in tail) == ["m1", "m2"]
    assert shown(env, "tail", "-n", "1", "--subject", "m1")[0]["subject_version"] == 2


def test_usage_errors_name_the_option(env: Env) -> None:
    bad_type = run(env, "log", "show", "--type", "MemoryTeleported")
    bad_time = run(env, "log", "tail", "--since", "yesterday")
    bad_partition = run(env, "log", "show", "--partition", "9")

    assert bad_type.exit_code == bad_time.exit_code == bad_partition.exit_code == 2
    assert "unknown event type MemoryTeleported" in bad_type.output
    assert "not an ISO 8601 time" in bad_time.output
    assert "partition 9 does not exist" in bad_partition.output


def test_follow_yields_events_appended_after_the_cursor(env: Env, settings: Settings) -> None:
    seed(env)
    log = open_log(settings)
    heads = {p: log.head(p) or "0-0" for p in range(log.partitions)}
    live = follow(log, heads, make_filter(["MemoryUpdated"], None, None, None, None, None), block_ms=200)

    run(env, "send", stdin=lines(store("m9"), update("m9"), update("m1")))

    got = [next(live), next(live)]
    assert sorted((r.event.subject_id, r.event.subject_version) for r in got) == [("m1", 3), ("m9", 2)]


def test_tail_follow_prints_new_events_until_ctrl_c(env: Env) -> None:
    script = Path(sys.executable).parent / "memledger"
    tail = subprocess.Popen([str(script), "log", "tail", "--follow", "--json", "--type", "MemoryUpdated"],
                            env={**os.environ, **env}, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        # Whether tail reads them as its last 20 or as new arrivals, each is printed once.
        run(env, "send", stdin=lines(store("m1"), update("m1"), update("m1")))
        printed = [orjson.loads(line) for line in read_lines(tail.stdout, 2, timeout=20)]
        assert [(e["subject_id"], e["subject_version"]) for e in printed] == [("m1", 2), ("m1", 3)]
    finally:
        tail.send_signal(signal.SIGINT)
        _, err = tail.communicate(timeout=20)
    assert tail.returncode == 0, err
    assert "Traceback" not in err


def read_lines(stream: IO[str] | None, count: int, timeout: float) -> list[str]:
    """`count` lines from a child's pipe, failing after `timeout` seconds instead of hanging."""
    assert stream is not None
    got: queue.Queue[str] = queue.Queue()

    def pump() -> None:
        for line in stream:
            got.put(line)

    threading.Thread(target=pump, daemon=True).start()
    return [got.get(timeout=timeout) for _ in range(count)]


# -- info ----------------------------------------------------------------------------------


def test_info_json(env: Env, settings: Settings) -> None:
    seed(env)

    result = run(env, "info", "--json")

    assert result.exit_code == 0, result.output
    info = orjson.loads(result.stdout)
    assert info["namespace"] == settings.namespace and info["partition_count"] == 4
    assert [p["partition"] for p in info["partitions"]] == [0, 1, 2, 3]
    assert sum(p["length"] for p in info["partitions"]) == 5
    assert all((p["head"] is None) == (p["length"] == 0) for p in info["partitions"])
    assert info["redis_version"]
    assert info["persistence"]["durable"] is False  # the loopback test server runs without AOF
    assert info["allow_volatile"] is True


def test_info_text_marks_a_volatile_redis(env: Env) -> None:
    result = run(env, "info")

    assert result.exit_code == 0, result.output
    assert "NOT durable" in result.stdout and "4 partitions" in result.stdout


def test_info_reports_rather_than_refuses_a_volatile_redis(env: Env) -> None:
    strict = {**env, "MEMLEDGER_ALLOW_VOLATILE": "0"}

    info = run(strict, "info")
    send = run(strict, "send", stdin=lines(store("m1")))

    assert info.exit_code == 0, info.output
    assert "NOT durable" in info.stdout and "commands will be refused until AOF is on" in info.stdout
    assert send.exit_code != 0 and "not durable" in str(send.exception)


def memledger(env: Env, *args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    """The installed console script, as a user runs it."""
    script = Path(sys.executable).parent / "memledger"
    return subprocess.run([str(script), *args], env={**os.environ, **env}, input=stdin,
                          capture_output=True, text=True, timeout=60)


def test_console_script_exit_codes(env: Env) -> None:
    info = memledger(env, "info", "--json")
    rejected = memledger(env, "send", stdin=lines(store("m1"), store("m1")))
    wrong_layout = memledger({**env, "MEMLEDGER_PARTITIONS": "8"}, "log", "show")

    assert info.returncode == 0, info.stderr
    assert orjson.loads(info.stdout)["partition_count"] == 4
    assert rejected.returncode == 2 and "line 2: exists: m1 already exists" in rejected.stdout
    assert wrong_layout.returncode == 3
    assert "set MEMLEDGER_PARTITIONS=4" in wrong_layout.stderr and "Traceback" not in wrong_layout.stderr


# -- pure helpers --------------------------------------------------------------------------


def test_event_filter_time_bounds_map_to_stream_ids() -> None:
    filt = EventFilter(since_ms=1000, until_ms=2000)

    assert (filt.after, filt.until) == (f"999-{2**64 - 1}", "2000")
    assert (EventFilter().after, EventFilter().until) == ("0-0", "+")


def test_short_payload_is_cut() -> None:
    from ledger.events import MemoryStored
    assert short_payload(MemoryStored(content="x" * 200), width=20) == '{"content":"xxxxxxx…'


def test_send_gives_an_ingested_session_its_queue_position(env: Env, settings: Settings) -> None:
    from projections.postgres import migrate

    migrate.upgrade(settings)
    session = {"type": "IngestSession", "org_id": "acme", "agent_id": "a1",
               "transcript": [{"role": "user", "content": "I prefer tea"}]}
    result = run(env, "send", "--json", stdin=lines(session, session))
    first, second = json_lines(result.output)
    assert (first["ok"], first["queue_position"]) == (True, 0)
    assert second["queue_position"] == 1  # the first is still ahead of it: no enqueuer runs


def test_a_resent_store_without_an_id_reports_the_memory_the_original_created(env: Env) -> None:
    command = {"type": "StoreMemory", "org_id": "acme", "agent_id": "a1", "content": "tea",
               "idempotency_key": "fact-9"}
    first, retry = (json_lines(run(env, "send", "--json", stdin=lines(command)).stdout)[0] for _ in range(2))

    assert (first["duplicate"], retry["duplicate"]) == (False, True)
    assert retry["memory_id"] == first["memory_id"]


def test_stats_shows_agents_tags_and_the_hierarchy(env: Env, settings: Settings) -> None:
    from projections.postgres import migrate

    migrate.upgrade(settings)
    sent = run(env, "send", stdin=lines(store("m1", tags=["tea", "food"]), store("m2", tags=["tea"]),
                                        store("m3", org="globex", tags=["secret"])))
    assert sent.exit_code == 0, sent.output
    assert run(env, "projector", "run", "-p", "memories", "--until-caught-up").exit_code == 0

    report = orjson.loads(run(env, "stats", "--org", "acme", "--json").stdout)
    assert [a["agent_id"] for a in report["agents"]] == ["a1"]
    assert report["tags"] == [{"tag": "tea", "memories": 2}, {"tag": "food", "memories": 1}]
    assert report["hierarchy"]["direct"] == 2 and report["hierarchy"]["sessions"] == {}
    table = run(env, "stats", "--org", "acme")
    assert table.exit_code == 0 and "tea" in table.stdout and "Hierarchy" in table.stdout
    assert "secret" not in table.stdout
