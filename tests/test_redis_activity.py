"""Activity read model: the capped per-agent feed, forgetting, and live notifications per org."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from typing import Any

import orjson

from commands import CommandBus, ForgetMemory, IngestSession, RecordRecall, StoreMemory, TagMemory, open_bus
from ledger import Settings, open_log
from ledger.events import Message
from projections import Projector, open_projection, run_projection
from projections.redis import ActivityFeed, ActivityProjection, watch
from projections.redis.activity import channel


def feed(settings: Settings, org: str = "acme", agent: str = "a1", limit: int = 100) -> list[dict[str, Any]]:
    return ActivityFeed(open_log(settings).client, settings.namespace, settings.partitions).recent(org, agent, limit)


def test_the_feed_is_newest_first_and_capped_per_agent(settings: Settings) -> None:
    capped = settings.model_copy(update={"feed_length": 5})
    bus = open_bus(capped)
    for i in range(8):
        bus.send(StoreMemory(org_id="acme", agent_id="a1", memory_id=f"m{i}", content=f"fact {i}", tags=("t",)))
    bus.send(StoreMemory(org_id="acme", agent_id="a2", memory_id="other", content="someone else's"))
    bus.send(TagMemory(org_id="acme", agent_id="a1", memory_id="m7", tags=("hot",)))
    run_projection(capped, "activity", until_caught_up=True)
    entries = feed(capped)
    assert [(e["type"], e["subject"]) for e in entries] == [
        ("MemoryTagged", "m7"), ("MemoryStored", "m7"), ("MemoryStored", "m6"), ("MemoryStored", "m5"),
        ("MemoryStored", "m4")]
    assert entries[1]["summary"] == "note: fact 7 [t]" and entries[0]["summary"] == "+hot"
    assert [e["subject"] for e in feed(capped, agent="a2")] == ["other"]
    assert feed(capped, limit=2) == entries[:2]


def test_forgetting_a_memory_removes_it_from_the_feed(settings: Settings) -> None:
    bus = open_bus(settings)
    bus.send(StoreMemory(org_id="acme", agent_id="a1", memory_id="keep", content="stays"))
    bus.send(StoreMemory(org_id="acme", agent_id="a1", memory_id="secret", content="my password hint"))
    run_projection(settings, "activity", until_caught_up=True)
    bus.send(RecordRecall(org_id="acme", agent_id="a1", memory_id="secret", user_id="u1"))
    bus.send(ForgetMemory(org_id="acme", agent_id="a1", memory_id="secret", reason="user asked"))
    bus.send(RecordRecall(org_id="acme", agent_id="a1", memory_id="keep"))
    run_projection(settings, "activity", until_caught_up=True)
    entries = feed(settings)
    assert [(e["type"], e["subject"]) for e in entries] == [("MemoryRecalled", "keep"), ("MemoryStored", "keep")]
    assert "password" not in orjson.dumps(entries).decode()


def _collect(settings: Settings, org: str, into: list[dict[str, Any]], stop: threading.Event,
             ready: threading.Event) -> None:
    client = open_log(settings).client
    events = watch(client, settings.namespace, org, stop, poll_s=0.05)
    ready.set()
    into.extend(events)


def _subscribed(settings: Settings, org: str, n: int = 1) -> None:
    client, deadline = open_log(settings).client, time.monotonic() + 10
    while dict(client.pubsub_numsub(channel(settings.namespace, org))).get(
            channel(settings.namespace, org).encode(), 0) < n:
        assert time.monotonic() < deadline, "the watcher never subscribed"
        time.sleep(0.01)


def test_each_applied_event_is_published_once_on_its_org_channel(settings: Settings) -> None:
    received: list[dict[str, Any]] = []
    stop, ready = threading.Event(), threading.Event()
    watcher = threading.Thread(target=_collect, args=(settings, "acme", received, stop, ready))
    watcher.start()
    ready.wait()
    _subscribed(settings, "acme")
    bus = open_bus(settings)
    receipts = [bus.send(StoreMemory(org_id="acme", agent_id="a1", memory_id="m1", content="x")),
                bus.send(StoreMemory(org_id="globex", agent_id="a1", memory_id="g", content="other org")),
                bus.send(ForgetMemory(org_id="acme", agent_id="a1", memory_id="m1"))]
    run_projection(settings, "activity", until_caught_up=True)
    # A rebuild into another generation publishes nothing
    shadow = open_projection("activity", settings, "rebuild")
    Projector(open_log(settings), shadow, None).run(until_caught_up=True)
    deadline = time.monotonic() + 5
    while len(received) < 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    time.sleep(0.2)
    stop.set()
    watcher.join()
    assert [(e["type"], e["subject"], e["position"]) for e in received] == [
        ("MemoryStored", "m1", f"{receipts[0].partition}/{receipts[0].stream_id}"),
        ("MemoryForgotten", "m1", f"{receipts[2].partition}/{receipts[2].stream_id}")]
    assert received[1]["summary"] == ""


def test_watch_command_prints_events_as_they_are_applied(settings: Settings) -> None:
    env = {**os.environ, "MEMLEDGER_REDIS_URL": str(settings.redis_url), "MEMLEDGER_NAMESPACE": settings.namespace,
           "MEMLEDGER_DATABASE_URL": str(settings.database_url), "MEMLEDGER_PARTITIONS": str(settings.partitions),
           "MEMLEDGER_ALLOW_VOLATILE": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "memledger", "watch", "--org", "acme", "--count", "2", "--json"],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        _subscribed(settings, "acme")
        bus: CommandBus = open_bus(settings)
        bus.send(StoreMemory(org_id="acme", agent_id="a1", memory_id="m1", content="likes tea"))
        bus.send(RecordRecall(org_id="acme", agent_id="a1", memory_id="m1", user_id="u1"))
        run_projection(settings, "activity", until_caught_up=True)
        out, err = proc.communicate(timeout=20)
    finally:
        proc.kill()
    assert proc.returncode == 0, err.decode()
    lines = [orjson.loads(line) for line in out.splitlines()]
    assert [(e["type"], e["summary"]) for e in lines] == [("MemoryStored", "note: likes tea"),
                                                           ("MemoryRecalled", "recalled by u1")]


def test_entries_of_sessions_and_memories_with_the_same_id_are_told_apart(settings: Settings) -> None:
    bus = open_bus(settings)
    bus.send(IngestSession(org_id="acme", agent_id="a1", session_id="x1", user_id="u1",
                           transcript=(Message(role="user", content="hello"),)))
    bus.send(StoreMemory(org_id="acme", agent_id="a1", memory_id="x1", content="same id"))
    bus.send(ForgetMemory(org_id="acme", agent_id="a1", memory_id="x1"))
    run_projection(settings, "activity", until_caught_up=True)
    assert [(e["type"], e["summary"]) for e in feed(settings)] == [
        ("SessionIngested", "session of 1 message with u1")]
    assert ActivityProjection.open(settings).dead_letters() == []
