"""Tenancy over HTTP: keys of org A never read, list, count or change anything of org B,
whatever the ids and filters (hypothesis picks them, B's real ids among them)."""

from __future__ import annotations

from typing import Any

import httpx
from hypothesis import HealthCheck, given, settings, strategies as st

from memledger.log_reader import EventFilter

from http_server import Api, api  # noqa: F401 - the fixture

B_AGENTS = ("b-bot", "b-helper")
B_MEMORIES = ("mem-b1", "mem-b2", "mem-b3")
B_SESSION = "ses-b1"
B_TAG = "secret-b"


def _seed_b(api: Api) -> None:
    for agent in B_AGENTS:
        with api.client(api.key("org-b", "agent", agent=agent)) as http:
            for memory_id in B_MEMORIES:
                assert http.post("/v1/memories", json={"memory_id": memory_id, "content": f"B knows {memory_id}",
                                                       "tags": [B_TAG], "session_id": B_SESSION}).status_code == 201
                assert http.post(f"/v1/memories/{memory_id}/recalls", json={}).status_code == 200
            http.post("/v1/sessions", json={"session_id": B_SESSION, "session_data": "B's secret chat"})
    api.project()


def _b_state(api: Api) -> tuple[int, list[Any]]:
    events = api.system.events(EventFilter(org="org-b"), limit=100_000)
    memories = api.system.query(__import__("projections").MemoryQuery("org-b", limit=1000)).rows
    return len(events), sorted((m["agent_id"], m["memory_id"], m["version"]) for m in memories)


ids = st.sampled_from(B_MEMORIES + (B_SESSION, "mem-a-none")) | st.from_regex(r"\A[A-Za-z0-9][A-Za-z0-9_.:-]{0,20}\Z")
agents = st.none() | st.sampled_from(B_AGENTS)
filters = st.fixed_dictionaries({}, optional={
    "agent_id": st.sampled_from(B_AGENTS), "tag": st.sampled_from([B_TAG, "other"]),
    "text": st.sampled_from(["knows", "secret"]), "session_id": st.just(B_SESSION),
    "order": st.sampled_from(["recent", "importance"])})


def _reads(http: httpx.Client, memory_id: str, agent: str | None, query: dict[str, Any]) -> None:
    scoped = {"agent_id": agent} if agent else {}
    for path in (f"/v1/memories/{memory_id}", f"/v1/memories/{memory_id}/history", f"/v1/sessions/{memory_id}"):
        answer = http.get(path, params=scoped)
        assert answer.status_code == 404, (path, answer.text)
    listed = http.get("/v1/memories", params=query)
    assert listed.status_code == 200 and listed.json()["items"] == []
    assert http.get("/v1/hierarchy", params={k: v for k, v in query.items() if k in ("agent_id", "session_id")}
                    ).json()["rows"] == []
    assert http.get("/v1/stats").json()["agents"] == []
    trending = http.get("/v1/trending").json()
    assert trending["tags"] == [] and trending["memories"] == []
    analytics = http.get("/v1/analytics").json()
    assert analytics["events"].get("MemoryStored", 0) == 0 and analytics["users"] == 0
    assert http.get(f"/v1/agents/{agent or B_AGENTS[0]}/feed").json()["items"] == []
    assert B_TAG not in http.get("/v1/processing-status").text and "org-b" not in http.get("/v1/health").text


def _writes(http: httpx.Client, memory_id: str, agent: str | None) -> None:
    body = {"agent_id": agent} if agent else {}
    for answer in (http.patch(f"/v1/memories/{memory_id}", json={**body, "content": "A was here"}),
                   http.post(f"/v1/memories/{memory_id}/tags", json={**body, "tags": ["a"]}),
                   http.delete(f"/v1/memories/{memory_id}/tags/{B_TAG}", params=body),
                   http.post(f"/v1/memories/{memory_id}/recalls", json=body),
                   http.delete(f"/v1/memories/{memory_id}", params=body)):
        assert answer.status_code in (404, 422), answer.text
    batch = http.post("/v1/commands", json=[
        {"type": "UpdateMemory", "org_id": "org-b", "agent_id": agent or B_AGENTS[0], "memory_id": memory_id,
         "content": "A was here"},
        {"type": "StoreMemory", "org_id": "org-b", "agent_id": agent or B_AGENTS[0], "content": "planted"}])
    assert [r["status"] for r in batch.json()] == [404, 404]


def test_org_a_never_sees_or_changes_org_b(api: Api) -> None:
    _seed_b(api)
    before = _b_state(api)
    keys = [api.key("org-a", role) for role in ("agent", "analyst", "operator")]

    @settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
    @given(key=st.sampled_from(keys), memory_id=ids, agent=agents, query=filters)
    def probe(key: str, memory_id: str, agent: str | None, query: dict[str, Any]) -> None:
        with api.client(key) as http:
            _reads(http, memory_id, agent, query)
            if key == keys[0]:
                _writes(http, memory_id, agent)

    probe()
    api.project()
    assert _b_state(api) == before
