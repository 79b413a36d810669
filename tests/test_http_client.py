"""The Python client (memledger/client/) against a real server: every method, and errors decoded
to the same classes the App raises in-process."""

from __future__ import annotations

import asyncio
import re
import threading
import time
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from http_server import Api, api, open_api  # noqa: F401 - the fixture
from ledger import Settings
from ledger.errors import (
    CommandError,
    Forbidden,
    InvalidCommand,
    InvalidQuery,
    NotFound,
    RateLimited,
    StoreUnavailable,
    SubjectForgotten,
    Timeout,
    Unauthenticated,
    Unauthorized,
    VersionConflict,
)
from memledger.client import AsyncClient, Client
from memledger.client.results import LiveEvent, WriteReceipt


def test_every_write_and_read_round_trips(api: Api) -> None:
    with api.projecting(), Client(api.url, api.key("acme", "agent", agent="bot")) as ml:
        # Writes answer typed receipts; each next read waits for the last write (read-your-writes)
        stored = ml.store("Dana likes tea", tags=["drinks"], importance=0.7, metadata={"src": "chat"},
                          idempotency_key="fact-1")
        assert stored.version == 1 and stored.token == ml.token and not stored.duplicate
        assert ml.store("Dana likes tea", tags=["drinks"], idempotency_key="fact-1").duplicate
        memory_id = stored.subject_id
        assert memory_id is not None
        assert ml.get(memory_id).content == "Dana likes tea"
        assert ml.update(memory_id, content="Dana likes green tea", expected_version=1).version == 2
        assert ml.tag(memory_id, ["Tea"], expected_version=2).version == 3
        assert ml.untag(memory_id, "drinks").version == 4
        ml.record_recall(memory_id, user_id="u1", query="tea?")
        memory = ml.get(memory_id)
        assert (memory.content, memory.tags, memory.version, memory.recall_count) == ("Dana likes green tea",
                                                                                      ("tea",), 4, 1)
        page = ml.query(tags=["tea"])
        assert [m.memory_id for m in page.items] == [memory_id] and page.cache in ("HIT", "MISS", "BYPASS")
        assert [h.event["type"] for h in ml.history(memory_id)] == [
            "MemoryStored", "MemoryUpdated", "MemoryTagged", "MemoryUntagged", "MemoryRecalled"]
        assert ml.stats()[0]["agent_id"] == "bot"
        report = ml.stats_report(top_tags=5)
        assert report.tags == [{"tag": "tea", "memories": 1}] and report.hierarchy["direct"] >= 1
        assert _eventually(lambda: ml.feed("bot")[0]["type"] == "MemoryRecalled")  # a Redis read model: it follows
        assert ml.trending(hours=1).hours == 1
        assert ml.analytics().agents >= 1
        # A batch: one outcome per command, errors as the App's classes
        outcomes = ml.send_many([{"type": "StoreMemory", "memory_id": "b-1", "content": "one"},
                                 {"type": "StoreMemory", "memory_id": "b-2", "content": "two", "importance": 7},
                                 {"type": "StoreMemory", "agent_id": "other", "content": "not mine"}])
        assert isinstance(outcomes[0], WriteReceipt) and isinstance(outcomes[1], InvalidCommand)
        assert isinstance(outcomes[2], Unauthorized)  # as App.send_many answers it in-process
        assert ml.get("b-1").content == "one"
        # Sessions
        queued = ml.ingest_session([{"role": "user", "content": "I moved to Lyon"}], session_id="s-1")
        assert queued.session_id == "s-1" and queued.token == ml.token
        assert ml.session("s-1").session["session_id"] == "s-1"
        assert any(row.get("session_id") == "s-1" for row in ml.hierarchy(levels=["raw"]))
        # Forgotten: reads say NotFound, changes SubjectForgotten (410)
        ml.forget(memory_id, reason="asked")
        with pytest.raises(NotFound):
            ml.get(memory_id)
        with pytest.raises(SubjectForgotten):
            ml.update(memory_id, importance=0.1)
        assert ml.health().ok


def _eventually(check: Callable[[], bool], timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def test_errors_are_the_ledger_errors(api: Api) -> None:
    with api.projecting(), Client(api.url, api.key("acme", "agent")) as ml:
        stored = ml.store("v1", agent_id="bot")
        assert stored.subject_id is not None
        ml.update(stored.subject_id, content="v2", agent_id="bot")
        with pytest.raises(VersionConflict) as conflict:
            ml.update(stored.subject_id, content="v3", agent_id="bot", expected_version=1)
        assert conflict.value.current_version == 2
        with pytest.raises(InvalidCommand):
            ml.store("bad", agent_id="bot", importance=3.0)
        with pytest.raises(InvalidQuery):
            ml.query(limit=0)
        with pytest.raises(NotFound):
            ml.get("no-such-memory")
    with Client(api.url, api.key("globex", "agent")) as other:
        with pytest.raises(NotFound):  # another org's memory does not exist for this key
            other.get(stored.subject_id)
    with Client(api.url, api.key("acme", "analyst")) as analyst, pytest.raises(Forbidden):
        analyst.store("analysts read", agent_id="bot")
    with Client(api.url, "mlk_key_" + "0" * 32 + "_" + "A" * 43) as stranger, pytest.raises(Unauthenticated):
        stranger.stats()
    with Client("http://127.0.0.1:9", org="acme") as nowhere, pytest.raises(StoreUnavailable):
        nowhere.stats()


def test_rate_limited_carries_retry_after(settings: Settings) -> None:
    slow = settings.model_copy(update={"rate_per_second": 0.01, "rate_burst": 2})
    with open_api(slow) as served, Client(served.url, served.key("acme", "agent", agent="bot")) as ml:
        with pytest.raises(RateLimited) as limited:
            for n in range(3):
                ml.store(f"m{n}")
    assert limited.value.retry_after > 0 and isinstance(limited.value, CommandError)


def test_read_your_writes_can_be_turned_off(api: Api) -> None:
    # Given no projector: a read that waits for the last write cannot be answered
    with Client(api.url, api.key("acme", "agent", agent="bot")) as waits:
        waits.store("not projected yet")
        with pytest.raises(Timeout):  # the server waits 5 s for the write, then answers 503 timeout
            waits.stats()
    with Client(api.url, api.key("acme", "agent", agent="bot"), read_your_writes=False) as eager:
        eager.store("not projected either")
        assert eager.stats() == []  # answered at once, without the write


def test_events_resume_after_the_last_event_seen(api: Api) -> None:
    with Client(api.url, api.key("acme", "agent", agent="bot")) as ml:
        first = _events_after(ml.events(), lambda: [ml.store(f"m{n}") for n in range(3)], 3)
        resumed = _events_after(ml.events(since=first[0].id), lambda: [], 2)
    assert [e.event["data"]["content"] for e in first] == ["m0", "m1", "m2"]
    assert [e.event["data"]["content"] for e in resumed] == ["m1", "m2"]


def _events_after(stream: Iterator[LiveEvent], act: object, count: int) -> list[LiveEvent]:
    got: list[LiveEvent] = []

    def read() -> None:
        for event in stream:
            got.append(event)
            if len(got) == count:
                return

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    threading.Event().wait(0.7)  # connected, at the heads
    act()  # type: ignore[operator]
    reader.join(30)
    stream.close()  # type: ignore[attr-defined]
    assert len(got) == count
    return got


def test_the_async_client_mirrors_the_sync_one(api: Api) -> None:
    key = api.key("acme", "agent", agent="bot")

    async def scenario() -> None:
        async with AsyncClient(api.url, key) as ml:
            stored = await ml.store("async tea", tags=["drinks"])
            assert stored.subject_id is not None
            memory = await ml.get(stored.subject_id)
            assert memory.content == "async tea" and memory.version == 1
            with pytest.raises(VersionConflict):
                await ml.tag(stored.subject_id, ["x"], expected_version=5)
            page = await ml.query(tags=["drinks"], since=datetime.now(timezone.utc) - timedelta(hours=1))
            assert [m.memory_id for m in page.items] == [stored.subject_id]
            stream = ml.events(since="0:0-0")
            first = await anext(stream)
            await stream.aclose()  # type: ignore[attr-defined]
            assert (first.type, first.event["subject_id"]) == ("MemoryStored", stored.subject_id)

    with api.projecting():
        asyncio.run(scenario())


def test_a_conversation_through_both_clients(api: Api) -> None:
    key = api.key("acme", "agent", agent="bot")
    with api.projecting(("conversations", "recent_messages")), Client(api.url, key) as ml:
        ml.append_message("ses-chat", "user", "I fly to Lisbon on Friday")
        sent = ml.append_message("ses-chat", "assistant", "Aisle or window?", idempotency_key="t2")
        again = ml.append_message("ses-chat", "assistant", "Aisle or window?", idempotency_key="t2")
        assert (sent.seq, again.seq, again.duplicate) == (2, 2, True)
        recent = ml.recent_messages("ses-chat", 5)  # waits for the last write (read-your-writes)
        assert [m["content"] for m in recent.messages] == ["I fly to Lisbon on Friday", "Aisle or window?"]
        assert recent.source in ("cache", "database")

        async def scenario() -> None:
            async with AsyncClient(api.url, key) as aml:
                closed = await aml.close_session("ses-chat")
                assert closed.session_id == "ses-chat"
                with pytest.raises(CommandError):
                    await aml.append_message("ses-chat", "user", "one more")
                assert [m["seq"] for m in (await aml.recent_messages("ses-chat", 1)).messages] == [2]

        asyncio.run(scenario())


def test_the_readme_agent_example_runs(api: Api, monkeypatch: pytest.MonkeyPatch) -> None:
    readme = Path(__file__).resolve().parents[1] / "README.md"
    [example] = [block for block in re.findall(r"```py\n(.*?)```", readme.read_text(), re.S)
                 if "memledger.client" in block]
    monkeypatch.setenv("MEMLEDGER_URL", api.url)
    monkeypatch.setenv("MEMLEDGER_KEY", api.key("acme", "agent"))
    scope: dict[str, object] = {}
    with api.projecting():
        exec(compile(example, str(readme), "exec"), scope)  # noqa: S102 - the README's own code
    stored, page, event = scope["stored"], scope["page"], scope["event"]
    assert [m.content for m in page.items] == ["Dana prefers morning meetings"]  # type: ignore[attr-defined]
    assert event.event["subject_id"] == stored.subject_id  # type: ignore[attr-defined]
