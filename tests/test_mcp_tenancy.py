"""Tenancy through MCP: a session scoped to org A never reads or changes org B, through any
tool or resource, whatever ids it passes (hypothesis picks them, B's real ids among them)."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from memledger.log_reader import EventFilter

from http_server import Api, api  # noqa: F401 - the fixture
from mcp_client import MCPError, McpSession, http_session

B_AGENTS = ("b-bot", "b-helper")
B_MEMORIES = ("mem-b1", "mem-b2")
B_TAG = "secret-b"
SECRET = "B knows"


def _seed_b(api: Api) -> None:
    for agent in B_AGENTS:
        with http_session(api.url, api.key("org-b", "agent", agent=agent)) as mcp:
            for memory_id in B_MEMORIES:
                mcp.call("store_memory", memory_id=memory_id, content=f"{SECRET} {memory_id}", tags=[B_TAG])
            mcp.call("ingest_session", session_id="ses-b1", text="B's secret chat")
            mcp.call("append_message", session_id="conv-b1", role="user", content=f"{SECRET}: my PIN")
    api.project()
    api.project(("conversations", "recent_messages"))


def _b_state(api: Api) -> tuple[int, list[Any]]:
    from projections import MemoryQuery

    events = api.system.events(EventFilter(org="org-b"), limit=100_000)
    memories = api.system.query(MemoryQuery("org-b", limit=1000)).rows
    return len(events), sorted((m["agent_id"], m["memory_id"], m["version"]) for m in memories)


ids = (st.sampled_from(B_MEMORIES + ("ses-b1", "conv-b1", "mem-none"))
       | st.from_regex(r"\A[A-Za-z0-9][A-Za-z0-9_.:-]{0,20}\Z"))
agents = st.none() | st.sampled_from(B_AGENTS)


def _reads(mcp: McpSession, memory_id: str, agent: str | None) -> None:
    scoped = {"agent_id": agent} if agent else {}
    for tool in ("get_memory", "memory_history"):
        problem = mcp.fail(tool, memory_id=memory_id, **scoped)
        assert problem["status"] == 404, (tool, problem)
    found = mcp.attempt("search_memories", text="knows", **scoped)
    assert found[1].get("memories", []) == [] and (found[0] or found[1]["status"] == 404), found
    assert mcp.call("search_memories", tags=[B_TAG])["memories"] == []
    assert mcp.call("memory_stats")["agents"] == []
    assert mcp.fail("recent_messages", session_id=memory_id, **scoped)["status"] == 404
    trending = mcp.call("trending")
    assert trending["tags"] == [] and trending["memories"] == []
    for uri in (f"memory://{agent or B_AGENTS[0]}/{memory_id}", f"activity://{agent or B_AGENTS[0]}"):
        try:
            body = mcp.read(uri)
        except MCPError as error:
            # ours: -32002 (not found); the SDK's own, for an id its URI template refuses: -32602
            assert error.code in (-32002, -32602) and "B knows" not in str(error), (uri, error)
        else:
            assert body.get("items") == [], (uri, body)  # an agent of A's own org with no activity


def _writes(mcp: McpSession, memory_id: str, agent: str | None, bound: bool) -> None:
    scoped = {"agent_id": agent} if agent else {}
    for tool, args in (("update_memory", {"content": "A was here"}), ("tag_memory", {"add": ["a"]}),
                       ("tag_memory", {"remove": [B_TAG]}), ("forget_memory", {})):
        problem = mcp.fail(tool, memory_id=memory_id, **scoped, **args)
        assert problem["status"] in (404, 422), (tool, problem)
    assert mcp.fail("close_session", session_id=memory_id, **scoped)["status"] in (404, 422)
    if agent and bound:  # a key bound to agent a-bot storing as another agent: not found
        assert mcp.fail("store_memory", content="planted", agent_id=agent)["status"] == 404


@pytest.mark.parametrize("bound", [True, False], ids=["agent-key", "org-wide-agent-key"])
def test_org_a_never_sees_or_changes_org_b(api: Api, bound: bool) -> None:
    _seed_b(api)
    before = _b_state(api)
    secret = api.key("org-a", "agent", agent="a-bot" if bound else None)
    analyst = api.key("org-a", "analyst")
    with http_session(api.url, secret) as writer, http_session(api.url, analyst) as reader:

        @settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
        @given(memory_id=ids, agent=agents, as_writer=st.booleans())
        def probe(memory_id: str, agent: str | None, as_writer: bool) -> None:
            _reads(writer if as_writer else reader, memory_id, agent)
            _writes(writer, memory_id, agent, bound)

        probe()
    api.project()
    assert _b_state(api) == before
    with http_session(api.url, analyst) as reader:  # and nothing planted reached B's reads
        assert SECRET not in str(reader.call("search_memories", limit=100))


def test_a_session_follows_the_key_of_each_request(api: Api) -> None:
    """A session opened with B's key and continued with A's is A's: scope is per request."""
    with http_session(api.url, api.key("org-b", "agent", agent="b-bot")) as b:
        stored = b.call("store_memory", memory_id="mem-b9", content=f"{SECRET} mem-b9")
        api.project()
        b.headers["Authorization"] = f"Bearer {api.key('org-a', 'agent', agent='a-bot')}"
        assert b.fail("get_memory", memory_id=stored["memory_id"])["status"] == 404
        assert b.call("search_memories")["memories"] == []


def test_a_stdio_session_of_org_a_never_reaches_org_b(api: Api) -> None:
    from mcp_client import stdio_session

    _seed_b(api)
    before = _b_state(api)
    with stdio_session(api.settings, api.key("org-a", "agent", agent="a-bot")) as mcp:
        for memory_id in B_MEMORIES:
            for agent in (None,) + B_AGENTS:
                _reads(mcp, memory_id, agent)
                _writes(mcp, memory_id, agent, True)
    api.project()
    assert _b_state(api) == before
