"""`memledger mcp` as an MCP client (an IDE, a desktop agent) runs it: a child process on stdio,
driven by the SDK's own client, on the test's real Redis and PostgreSQL."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator

import pytest

from ledger import Settings
from memledger.app import App
from memledger.bench.http_env import child_env
from memledger.http.headers import token_receipt

from mcp_client import MCPError, stdio_session

TOOLS = {"store_memory", "search_memories", "get_memory", "update_memory", "tag_memory", "forget_memory",
         "memory_history", "ingest_session", "memory_stats", "trending", "append_message", "recent_messages",
         "close_session"}
READ_MODELS = ("archive", "memories", "trending", "analytics", "activity")


@pytest.fixture
def system(settings: Settings) -> Iterator[App]:
    with App.open(settings, system=True) as app:
        app.migrate()
        yield app


def project(system: App) -> None:
    for name in READ_MODELS:
        system.run_projector(name, until_caught_up=True)


def ledger_length(system: App) -> int:
    return sum(p.length for p in system.info().partitions)


def test_lists_every_tool_with_a_description_for_a_model(settings: Settings, system: App) -> None:
    with stdio_session(settings, system.issue_key("acme", "agent", "bot").secret) as mcp:
        tools = {t.name: t for t in mcp.tools()}
    assert set(tools) == TOOLS
    for tool in tools.values():
        assert tool.description and len(tool.description) > 60, tool.name
        for name, schema in tool.input_schema["properties"].items():
            assert schema.get("description"), f"{tool.name}.{name} has no description"


def test_every_tool_works_and_a_stored_memory_is_queryable(settings: Settings, system: App) -> None:
    from projections import MemoryQuery

    with stdio_session(settings, system.issue_key("acme", "agent", "bot").secret) as mcp:
        # Given a memory stored through the tool
        stored = mcp.call("store_memory", content="Ada drinks green tea", tags=["Diet"], importance=0.8)
        # Then the query API sees it once the read model has applied the returned token
        with App.open(settings) as reader:
            runner = App.open(settings)
            runner.run_projector("memories", until_caught_up=True)
            runner.close()
            reader.wait_for(token_receipt(stored["consistency_token"]))
            rows = reader.query(MemoryQuery("acme", text="tea")).rows
        found_rows = [(r["memory_id"], r["agent_id"], r["tags"]) for r in rows]
        assert found_rows == [(stored["memory_id"], "bot", ["diet"])]
        memory_id = stored["memory_id"]
        # And every other tool answers on it
        found = mcp.call("search_memories", text="tea", consistent_with=stored["consistency_token"])
        assert [m["memory_id"] for m in found["memories"]] == [memory_id] and found["next_cursor"] is None
        assert mcp.call("get_memory", memory_id=memory_id)["content"] == "Ada drinks green tea"
        updated = mcp.call("update_memory", memory_id=memory_id, content="Ada drinks black tea",
                           expected_version=1)
        assert updated["version"] == 2 and updated["duplicate"] is False
        tagged = mcp.call("tag_memory", memory_id=memory_id, add=["drinks"], remove=["diet"])
        assert tagged["version"] == 4
        project(system)
        now = mcp.call("get_memory", memory_id=memory_id, consistent_with=tagged["consistency_token"])
        assert now["content"] == "Ada drinks black tea" and now["tags"] == ["drinks"] and now["version"] == 4
        before = mcp.call("get_memory", memory_id=memory_id, as_of=stored_at(system, memory_id))
        assert before["content"] == "Ada drinks green tea" and before["version"] == 1
        assert mcp.read(f"memory://bot/{memory_id}")["version"] == 4
        assert mcp.call("memory_stats")["agents"][0]["live_memories"] == 1
        assert "drinks" in [t["tag"] for t in mcp.call("trending", hours=1)["tags"]]
        assert mcp.read("activity://bot")["items"][0]["subject"] == memory_id
        forgotten = mcp.call("forget_memory", memory_id=memory_id, reason="asked to")
        project(system)
        assert mcp.fail("get_memory", memory_id=memory_id, consistent_with=forgotten["consistency_token"]
                        )["code"] == "not_found"
        history = mcp.call("memory_history", memory_id=memory_id)
        assert [e["type"] for e in history["events"]] == [
            "MemoryStored", "MemoryUpdated", "MemoryTagged", "MemoryUntagged", "MemoryForgotten"]
        assert mcp.fail("update_memory", memory_id=memory_id, content="again")["code"] == "forgotten"
        session = mcp.call("ingest_session", messages=[{"role": "user", "content": "I moved to Lyon"}])
        assert session["session_id"].startswith("ses_") and session["duplicate"] is False


def stored_at(system: App, memory_id: str) -> str:
    first = system.history("acme", memory_id)[0].event
    return first.occurred_at.isoformat()


def test_a_retried_store_stores_once(settings: Settings, system: App) -> None:
    secret = system.issue_key("acme", "agent", "bot").secret
    with stdio_session(settings, secret) as mcp:
        length = ledger_length(system)
        # When the same call is made twice in one session (a client retrying after a timeout)
        first = mcp.call("store_memory", content="likes tea", tags=["drinks"])
        retry = mcp.call("store_memory", content="likes tea", tags=["drinks"])
        # Then it is one memory and one event
        assert retry["memory_id"] == first["memory_id"] and retry["duplicate"] is True
        assert ledger_length(system) == length + 1
        # And an explicit key holds across sessions; distinct keys store identical content twice
        keyed = mcp.call("store_memory", content="likes tea", idempotency_key="k-1")
        other = mcp.call("store_memory", content="likes tea", idempotency_key="k-2")
        assert keyed["memory_id"] != other["memory_id"] != first["memory_id"]
        # And a retried session hand-off queues the session once
        handed = mcp.call("ingest_session", text="we talked about tea")
        again_handed = mcp.call("ingest_session", text="we talked about tea")
        assert (again_handed["session_id"], again_handed["duplicate"]) == (handed["session_id"], True)
        assert again_handed["consistency_token"] == handed["consistency_token"]
        # And the three memories page through search, two at a time
        project(system)
        page = mcp.call("search_memories", text="tea", limit=2)
        rest = mcp.call("search_memories", text="tea", limit=2, cursor=page["next_cursor"])
        paged = [m["memory_id"] for m in page["memories"] + rest["memories"]]
        assert sorted(paged) == sorted({first["memory_id"], keyed["memory_id"], other["memory_id"]})
        assert rest["next_cursor"] is None
    with stdio_session(settings, secret) as again:
        repeated = again.call("store_memory", content="likes tea", idempotency_key="k-1")
        assert repeated == {**keyed, "duplicate": True}
        fresh = again.call("store_memory", content="likes tea", tags=["drinks"])  # a new session: new memory
        assert fresh["memory_id"] != first["memory_id"]
    assert ledger_length(system) == length + 5  # 4 memories, 1 session


BAD_CALLS: list[tuple[str, dict[str, object], str, str]] = [
    ("store_memory", {"content": ""}, "invalid", "content"),
    ("store_memory", {"content": "x", "importance": "0.5"}, "invalid", "importance"),
    ("store_memory", {"content": "x", "importance": 1.5}, "invalid", "importance"),
    ("store_memory", {"content": "x", "tags": ["no spaces"]}, "invalid", "tags.0"),
    ("store_memory", {"content": "x", "memory_type": "gossip"}, "invalid", "memory_type"),
    ("store_memory", {"content": "x", "expires_at": 1700000000}, "invalid", "expires_at"),
    ("store_memory", {"content": "x", "agent_id": "other-bot"}, "not_found", ""),
    ("store_memory", {"content": "x", "surprise": 1}, "invalid", "surprise"),
    ("update_memory", {"memory_id": "mem-none", "content": "x"}, "unknown_subject", ""),
    ("update_memory", {"memory_id": "bad id"}, "invalid", "memory_id"),
    ("tag_memory", {"memory_id": "mem-none"}, "invalid", "add"),
    ("forget_memory", {"memory_id": "mem-none"}, "unknown_subject", ""),
    ("ingest_session", {}, "invalid", "messages"),
    ("ingest_session", {"text": "hi", "messages": [{"role": "user", "content": "hi"}]}, "invalid",
     "messages"),
    ("ingest_session", {"messages": [{"role": "boss", "content": "hi"}]}, "invalid", "messages.0.role"),
    ("search_memories", {"limit": 0}, "invalid", "limit"),
    ("search_memories", {"cursor": "not-a-cursor"}, "bad_request", ""),  # as GET /v1/memories
    ("get_memory", {"memory_id": "mem-none"}, "not_found", ""),
    ("trending", {"hours": 0}, "invalid", "hours"),
]


def test_bad_input_is_a_clear_tool_error_and_appends_nothing(settings: Settings, system: App) -> None:
    with stdio_session(settings, system.issue_key("acme", "agent", "bot").secret) as mcp:
        length = ledger_length(system)
        for tool, arguments, code, field in BAD_CALLS:
            problem = mcp.fail(tool, **arguments)
            assert problem["code"] == code, (tool, arguments, problem)
            assert problem["detail"] and "Traceback" not in problem["detail"]
            if field:
                assert field in [e["field"] for e in problem["errors"]], (tool, arguments, problem)
        assert ledger_length(system) == length


def test_an_analyst_key_reads_but_does_not_write(settings: Settings, system: App) -> None:
    with stdio_session(settings, system.issue_key("acme", "analyst").secret) as mcp:
        problem = mcp.fail("store_memory", content="x", agent_id="bot")
        assert problem["code"] == "forbidden" and problem["status"] == 403
        assert mcp.call("search_memories") == {"memories": [], "next_cursor": None, "mode": "text"}


def test_a_revoked_key_stops_a_running_server(settings: Settings, system: App) -> None:
    issued = system.issue_key("acme", "agent", "bot")
    with stdio_session(settings, issued.secret) as mcp:
        mcp.call("store_memory", content="before")
        system.revoke_key("acme", issued.key_id)
        time.sleep(2.2)  # accepted keys are cached for at most 2 s
        assert mcp.fail("store_memory", content="after")["code"] == "unauthenticated"
        with pytest.raises(MCPError):
            mcp.read("activity://bot")


@pytest.mark.parametrize("secret", [None, "", "mlk_nonsense"])
def test_no_or_a_bad_key_is_one_line_and_a_nonzero_exit(settings: Settings, system: App,
                                                        secret: str | None) -> None:
    env = child_env(settings)
    env.pop("MEMLEDGER_API_KEY", None)
    if secret is not None:
        env["MEMLEDGER_API_KEY"] = secret
    done = subprocess.run([sys.executable, "-m", "memledger", "mcp"], env=env, capture_output=True,
                          timeout=60, input=b"")
    assert done.returncode == 8, done.stderr
    lines = done.stderr.decode().strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "API key" in lines[0], lines
    assert done.stdout == b""




def test_the_readme_client_configurations_match_the_server() -> None:
    import json
    import re
    from pathlib import Path

    from memledger.mcp.http import MCP_PATH
    from memledger.mcp.stdio import ENV_KEY

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    section = readme.split("\n## MCP\n", 1)[1].split("\n## ", 1)[0]
    stdio, http = (json.loads(block)["mcpServers"]["memory-ledger"]
                   for block in re.findall(r"```json\n(.*?)```", section, re.S))
    assert [stdio["command"], *stdio["args"]] == ["memledger", "mcp"] and list(stdio["env"]) == [ENV_KEY]
    assert http["url"] == f"http://127.0.0.1:8080{MCP_PATH}"
    assert http["headers"]["Authorization"].startswith("Bearer mlk_")


def test_a_conversation_message_by_message_through_the_tools(settings: Settings, system: App) -> None:
    with stdio_session(settings, system.issue_key("acme", "agent", "bot").secret) as mcp:
        # Given a conversation started by its first message, then continued on the id it returned
        first = mcp.call("append_message", role="user", content="I fly to Lisbon on Friday")
        session = first["session_id"]
        mcp.call("append_message", session_id=session, role="assistant", content="Aisle or window?")
        last = mcp.call("append_message", session_id=session, role="user", content="Aisle, always",
                        idempotency_key="turn-3")
        retried = mcp.call("append_message", session_id=session, role="user", content="Aisle, always",
                           idempotency_key="turn-3")
        assert (first["seq"], last["seq"], retried["seq"], retried["duplicate"]) == (1, 3, 3, True)
        # When its recent messages are read (the projector applies them meanwhile)
        runner = App.open(settings)
        runner.run_projector("conversations", until_caught_up=True)
        runner.close()
        recent = mcp.call("recent_messages", session_id=session, last=2, consistent_with=last["consistency_token"])
        # Then they come back oldest first, and a closed conversation takes no more
        assert [m["content"] for m in recent["messages"]] == ["Aisle or window?", "Aisle, always"]
        assert mcp.call("close_session", session_id=session)["closed"] is True
        refused = mcp.fail("append_message", session_id=session, role="user", content="one more thing")
        assert refused["status"] == 409
        stranger = mcp.fail("recent_messages", session_id="ses_nobody")
        assert stranger["code"] == "not_found"
