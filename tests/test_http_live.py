"""GET /v1/events (SSE) through real uvicorn servers: resume exactly once, filters, tenancy, errors."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from http_server import Api, api  # noqa: F401 - the fixture
from ledger import Settings
from ledger.errors import HistoryGap
from memledger.app import App
from memledger.client import Client
from memledger.client.results import LiveEvent
from memledger.http import serving
from projections.registry import PROJECTIONS
from test_replay_helpers import sql

PROBLEM = "application/problem+json"
AGENTS = tuple(f"agent-{n}" for n in range(6))  # spread over the 4 partitions of the test namespace


def _stores(org: str, prefix: str, count: int, agents: tuple[str, ...] = AGENTS) -> list[dict[str, Any]]:
    return [{"type": "StoreMemory", "org_id": org, "agent_id": agents[n % len(agents)], "memory_id": f"{prefix}-{n}",
             "content": f"{prefix} number {n}"} for n in range(count)]


def _append(system: App, commands: list[dict[str, Any]]) -> None:
    for start in range(0, len(commands), 250):
        outcomes = system.send_many(commands[start:start + 250])
        assert all(not isinstance(o, Exception) for o in outcomes), outcomes


class Reader:
    """Reads the first `count` events of a stream in a thread, from now on (a stream connects on
    its first read, and starts at the heads)."""

    def __init__(self, events: Iterator[LiveEvent], count: int):
        self.events, self.count = events, count
        self.got: list[LiveEvent] = []
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self) -> None:
        for event in self.events:
            self.got.append(event)
            if len(self.got) == self.count:
                return

    def take(self, timeout: float = 60.0) -> list[LiveEvent]:
        """The events; fails, rather than hanging, when they do not come."""
        self.thread.join(timeout)
        assert len(self.got) == self.count, f"received {len(self.got)} of {self.count} events in {timeout} s"
        return self.got


def _take(events: Iterator[LiveEvent], count: int, timeout: float = 60.0) -> list[LiveEvent]:
    return Reader(events, count).take(timeout)


def _assert_ledger_order(events: list[LiveEvent]) -> None:
    last: dict[int, tuple[int, ...]] = {}
    for e in events:
        key = tuple(int(x) for x in e.stream_id.split("-"))
        assert key > last.get(e.partition, (-1,)), f"partition {e.partition} went back at {e.stream_id}"
        last[e.partition] = key


def test_a_client_resumes_exactly_once_across_a_disconnect_and_a_server_restart(settings: Settings) -> None:
    with App.open(settings, system=True) as system:
        system.migrate()
        key = system.issue_key("acme", "analyst").secret
        # Given a client that received 7 of 20 events, then went away in the middle of them
        with serving(settings) as url, Client(url, key) as client:
            stream = client.events()
            first = _take(_after_connect(stream, system, _stores("acme", "early", 20)), 7)
            stream.close()
            # When 500 events are appended (and 300 of another org) while it is away...
            _append(system, _stores("acme", "mid", 500) + _stores("globex", "other", 300))
        # ...the server restarts, and 500 more come
        _append(system, _stores("acme", "late", 500) + _stores("globex", "other-late", 300))
        with serving(settings) as url, Client(url, key) as client:
            # Then, resuming with the last id it saw, it gets each event it missed exactly once
            resumed = client.events(since=first[-1].id)
            rest = _take(resumed, 13 + 1000)
            _append(system, _stores("acme", "sentinel", 1, ("agent-0",)))
            after = _take(resumed, 1)
            resumed.close()
    received = first + rest
    ids = [e.event["subject_id"] for e in received]
    expected = ([f"early-{n}" for n in range(20)] + [f"mid-{n}" for n in range(500)]
                + [f"late-{n}" for n in range(500)])
    assert sorted(ids) == sorted(expected) and len(ids) == len(set(ids))
    assert {e.event["org_id"] for e in received} == {"acme"}
    assert after[0].event["subject_id"] == "sentinel-0"  # nothing came twice between the last one and this
    _assert_ledger_order(received)


def _after_connect(stream: Iterator[LiveEvent], system: App, commands: list[dict[str, Any]]) -> Iterator[LiveEvent]:
    """The stream, with `commands` appended only once it is connected (it starts at the heads)."""
    appender = threading.Timer(0.5, _append, (system, commands))
    appender.start()
    try:
        yield from stream
    finally:
        appender.join()


def test_filters_by_type_and_agent_and_shows_only_the_keys_org(api: Api) -> None:
    analyst, bot = api.key("acme", "analyst"), api.key("acme", "agent", agent="agent-1")
    with Client(api.url, analyst) as client, Client(api.url, bot) as bound:
        streams = client.events(types=["MemoryTagged"]), client.events(agent_id="agent-2"), bound.events()
        tagged, agent_2, own = Reader(streams[0], 12), Reader(streams[1], 4), Reader(streams[2], 4)
        time.sleep(1.0)  # every stream is connected (they start at the heads)
        commands = _stores("acme", "m", 12) + _stores("globex", "g", 12)
        commands += [{"type": "TagMemory", "org_id": "acme", "agent_id": AGENTS[n % 6], "memory_id": f"m-{n}",
                      "tags": ["x"]} for n in range(12)]
        api.system.issue_key("acme", "agent")  # a key event: never streamed
        _append(api.system, commands)
        # Then each stream sees what it asked for, and nothing of globex
        assert {e.type for e in tagged.take()} == {"MemoryTagged"}
        mine = agent_2.take()  # agent-2 stored m-2 and m-8, and tagged them
        assert {e.event["agent_id"] for e in mine} == {"agent-2"}
        assert [e.type for e in mine] == ["MemoryStored", "MemoryStored", "MemoryTagged", "MemoryTagged"]
        assert {(e.event["org_id"], e.event["agent_id"]) for e in own.take()} == {("acme", "agent-1")}
        for stream in streams:
            stream.close()


def test_an_agent_key_cannot_stream_another_agent(api: Api) -> None:
    bot = api.key("acme", "agent", agent="agent-1")
    with api.client(bot) as http:
        response = http.get("/v1/events", params={"agent": "agent-2"})
    assert response.status_code == 404 and response.headers["content-type"] == PROBLEM


@pytest.mark.parametrize("header", ["nonsense", "1:2", "9:1700000000000-0", "0:1-1,0:2-2", "0:1-1,", "-1:5-0",
                                    "0:01-0", "0:1-" + "9" * 25])
def test_a_malformed_last_event_id_is_a_400_problem(api: Api, header: str) -> None:
    with api.client(api.key("acme", "analyst")) as http:
        response = http.get("/v1/events", headers={"Last-Event-ID": header})
        as_since = http.get("/v1/events", params={"since": header})
    assert response.status_code == 400 and response.headers["content-type"] == PROBLEM
    body = response.json()
    assert body["code"] == "invalid_cursor" and body["errors"][0]["field"] == "header.Last-Event-ID"
    assert as_since.status_code == 400 and as_since.json()["errors"][0]["field"] == "query.since"


def test_an_unknown_or_unstreamed_type_is_refused(api: Api) -> None:
    with api.client(api.key("acme", "analyst")) as http:
        for name in ("MemoryStoredd", "KeyIssued"):
            response = http.get("/v1/events", params={"type": name})
            assert response.status_code == 422 and name in response.json()["detail"]


def test_no_key_is_401(api: Api) -> None:
    with api.client() as http:
        assert http.get("/v1/events").status_code == 401


def test_an_idle_stream_sends_keep_alive_pings(api: Api, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MEMLEDGER_SSE_PING_S", "0.2")
    with api.client(api.key("acme", "analyst")) as http:
        with http.stream("GET", "/v1/events") as response:
            assert response.headers["content-type"].startswith("text/event-stream")
            lines = response.iter_lines()
            assert next(lines) == "retry: 1000"
            started = time.monotonic()
            assert [line for line in _until(lines, ": ping")][-1] == ": ping"
            assert time.monotonic() - started < 5


def _until(lines: Iterator[str], wanted: str) -> Iterator[str]:
    for line in lines:
        yield line
        if line == wanted:
            return


def test_a_client_that_leaves_leaves_no_connection_behind(api: Api) -> None:
    analyst = api.key("acme", "analyst")
    with Client(api.url, analyst) as client:
        client.stats()  # the server's pooled Apps are open before counting
        before = _redis_connections()
        for _ in range(5):
            with client.http.stream("GET", "/v1/events") as response:
                next(response.iter_lines())  # connected: the stream's own App holds its connections
        deadline = time.monotonic() + 10
        while _redis_connections() > before and time.monotonic() < deadline:
            time.sleep(0.1)
    assert _redis_connections() <= before


def _redis_connections() -> int:
    """TCP connections of this process (client and server run in it) to the test Redis port."""
    port = int(os.environ.get("MEMLEDGER_TEST_REDIS_URL", "redis://127.0.0.1:6379").rsplit(":", 1)[1].split("/")[0])
    inodes = set()
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    count = 0
    for table in ("/proc/self/net/tcp", "/proc/self/net/tcp6"):
        with open(table) as f:
            for row in f.readlines()[1:]:
                cols = row.split()
                if int(cols[2].rsplit(":", 1)[1], 16) == port and cols[3] == "01" and cols[9] in inodes:
                    count += 1
    return count


def test_a_stream_can_start_from_a_cursor(api: Api) -> None:
    # Given the position before three events (the id of the event before them)
    key = api.key("acme", "analyst")
    _append(api.system, _stores("acme", "before", 1, ("agent-0",)))
    with Client(api.url, key) as client:
        stream = client.events(since="0:0-0")  # names partition 0 at its start: every other one from its start too
        everything = _take(stream, 1)
        stream.close()
        _append(api.system, _stores("acme", "after", 3))
        again = client.events(since=everything[0].id)
        got = _take(again, 3)
        again.close()
    assert everything[0].event["subject_id"] == "before-0"
    assert sorted(e.event["subject_id"] for e in got) == ["after-0", "after-1", "after-2"]


def _cursor_then_trimmed(api: Api, client: Client, prefix: str, count: int) -> str:
    """A client's cursor, then `count` events after it, archived and projected, then the streams trimmed."""
    _append(api.system, _stores("acme", "seen", 1, ("agent-0",)))
    stream = client.events(since="0:0-0")
    [seen] = _take(stream, 1)
    stream.close()
    _append(api.system, _stores("acme", prefix, count))
    api.project(tuple(PROJECTIONS))  # every projection holds the trim below what it has applied
    trimmed = api.system.trim(0)
    assert sum(point.removed for point in trimmed) > 0, trimmed
    return seen.id


def test_a_cursor_older_than_a_trim_resumes_from_the_archive(api: Api) -> None:
    with Client(api.url, api.key("acme", "analyst")) as client:
        cursor = _cursor_then_trimmed(api, client, "missed", 40)
        # When it reconnects with that cursor, and one more event comes after
        again = client.events(since=cursor)
        _append(api.system, _stores("acme", "later", 1))
        got = _take(again, 41)
        again.close()
    # Then it gets each event it missed exactly once, in order per partition, and the new one
    assert sorted(e.event["subject_id"] for e in got) == sorted([f"missed-{n}" for n in range(40)] + ["later-0"])
    _assert_ledger_order(got)


def test_a_cursor_behind_a_trim_the_archive_cannot_fill_ends_the_stream_with_a_problem(api: Api) -> None:
    with Client(api.url, api.key("acme", "analyst")) as client:
        cursor = _cursor_then_trimmed(api, client, "lost", 12)
        sql(api.settings, "DELETE FROM event_archive WHERE subject_id LIKE 'lost-%%'")  # the archive lost them
        # When the client resumes from its cursor, then it is told history is gone, not silently skipped
        with pytest.raises(HistoryGap, match="trimmed"):
            next(client.events(since=cursor))


def test_the_spec_documents_the_streams_problems(api: Api) -> None:
    import httpx

    spec = httpx.get(f"{api.url}/openapi.json").json()
    responses = spec["paths"]["/v1/events"]["get"]["responses"]
    assert {"200", "400", "401", "404", "422", "503"} <= responses.keys()
    assert "text/event-stream" in responses["200"]["content"]
    assert "application/problem+json" in responses["400"]["content"]
