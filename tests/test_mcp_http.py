"""MCP over streamable HTTP at /mcp of a real served API (uvicorn on a free port), with the
SDK's client: the same tools as stdio, behind the same keys as REST, with the same errors."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from ledger import Settings

from http_server import Api, api, open_api  # noqa: F401 - the fixture
from mcp_client import http_session
from test_mcp_stdio import TOOLS

INIT = {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
    "protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}}}
MCP_HEADERS = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json"}


def test_tools_over_http_write_what_rest_reads(api: Api) -> None:
    key = api.key("acme", "agent", agent="bot")
    with http_session(api.url, key) as mcp:
        assert {t.name for t in mcp.tools()} == TOOLS
        stored = mcp.call("store_memory", content="Ada drinks green tea", tags=["diet"])
        retry = mcp.call("store_memory", content="Ada drinks green tea", tags=["diet"])  # same session
        assert retry == {**stored, "duplicate": True}
        api.project()
        with api.client(key) as http:
            # the memory the tool stored is what REST reads, waiting on the token the tool returned
            rest = http.get(f"/v1/memories/{stored['memory_id']}",
                            params={"consistent_with": stored["consistency_token"]})
            assert rest.status_code == 200 and rest.json()["content"] == "Ada drinks green tea"
            assert len(http.get(f"/v1/memories/{stored['memory_id']}/history").json()["events"]) == 1
        memory_id = stored["memory_id"]
        assert mcp.call("get_memory", memory_id=memory_id)["tags"] == ["diet"]
        assert mcp.call("search_memories", text="tea")["memories"][0]["memory_id"] == memory_id
        assert mcp.call("update_memory", memory_id=memory_id, importance=0.9)["version"] == 2
        assert mcp.call("tag_memory", memory_id=memory_id, add=["drinks"])["version"] == 3
        assert mcp.read(f"memory://bot/{memory_id}")["memory_id"] == memory_id
        api.project()
        assert mcp.read("activity://bot")["items"]
        assert mcp.call("memory_stats")["agents"][0]["agent_id"] == "bot"
        assert isinstance(mcp.call("trending")["tags"], list)
        assert len(mcp.call("memory_history", memory_id=memory_id)["events"]) == 3
        assert mcp.call("ingest_session", text="I moved to Lyon")["session_id"].startswith("ses_")
        assert mcp.call("forget_memory", memory_id=memory_id)["version"] == 4


def test_mcp_needs_a_key_as_rest_does(api: Api) -> None:
    with httpx.Client(base_url=api.url, timeout=30) as http:
        for headers in ({}, {"Authorization": "Bearer mlk_nonsense"}, {"Authorization": "Basic eDp5"}):
            answer = http.post("/mcp", json=INIT, headers={**MCP_HEADERS, **headers})
            assert answer.status_code == 401, answer.text
            assert answer.json()["code"] == "unauthenticated"
            assert answer.headers["content-type"] == "application/problem+json"


def _problems(tool_calls: list[tuple[str, dict[str, Any]]], mcp: Any) -> list[tuple[str, int]]:
    return [(p["code"], p["status"]) for p in (mcp.fail(tool, **args) for tool, args in tool_calls)]


def test_bad_input_gets_the_same_codes_as_rest_and_appends_nothing(api: Api) -> None:
    key = api.key("acme", "agent", agent="bot")
    cases: list[tuple[tuple[str, dict[str, Any]], tuple[str, str, dict[str, Any]]]] = [
        (("store_memory", {"content": ""}), ("POST", "/v1/memories", {"json": {"content": ""}})),
        (("store_memory", {"content": "x", "importance": "0.5"}),
         ("POST", "/v1/memories", {"json": {"content": "x", "importance": "0.5"}})),
        (("store_memory", {"content": "x", "extra": 1}), ("POST", "/v1/memories", {"json": {"content": "x",
                                                                                             "extra": 1}})),
        (("store_memory", {"content": "x", "agent_id": "other"}),
         ("POST", "/v1/memories", {"json": {"content": "x", "agent_id": "other"}})),
        (("update_memory", {"memory_id": "mem-none", "content": "x"}),
         ("PATCH", "/v1/memories/mem-none", {"json": {"content": "x"}})),
        (("forget_memory", {"memory_id": "mem-none"}), ("DELETE", "/v1/memories/mem-none", {})),
        (("get_memory", {"memory_id": "mem-none"}), ("GET", "/v1/memories/mem-none", {})),
        (("search_memories", {"limit": 0}), ("GET", "/v1/memories", {"params": {"limit": 0}})),
        (("trending", {"hours": 0}), ("GET", "/v1/trending", {"params": {"hours": 0}})),
    ]
    before = sum(p.length for p in api.system.info().partitions)
    with http_session(api.url, key) as mcp, api.client(key) as http:
        via_mcp = _problems([tool for tool, _ in cases], mcp)
        via_rest = []
        for _, (method, path, kwargs) in cases:
            answer = http.request(method, path, **kwargs)
            via_rest.append((answer.json()["code"], answer.status_code))
    assert via_mcp == via_rest
    assert sum(p.length for p in api.system.info().partitions) == before


@pytest.fixture
def insecure(settings: Settings) -> Iterator[Api]:
    with open_api(settings, insecure_no_auth=True) as served:
        yield served


def test_insecure_mode_takes_the_org_from_x_org_as_rest_does(insecure: Api) -> None:
    with httpx.Client(base_url=insecure.url, timeout=30) as http:
        refused = http.post("/mcp", json=INIT, headers=MCP_HEADERS)
        assert refused.status_code == 401 and "X-Org" in refused.json()["detail"]
    with http_session(insecure.url, None, **{"X-Org": "acme", "X-Agent": "bot"}) as mcp:
        stored = mcp.call("store_memory", content="local dev")
    insecure.project()
    assert insecure.system.get("acme", stored["memory_id"])["agent_id"] == "bot"
