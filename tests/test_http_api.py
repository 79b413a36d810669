"""Every endpoint's happy path, through a real uvicorn server on a free loopback port."""

from __future__ import annotations

from typing import Any

import httpx

from memledger.log_reader import EventFilter

from http_server import Api, api  # noqa: F401 - the fixture

PROBLEM = "application/problem+json"


def _store(http: httpx.Client, content: str, **fields: Any) -> httpx.Response:
    response = http.post("/v1/memories", json={"content": content, **fields})
    assert response.status_code == 201, response.text
    return response


def test_a_memory_through_its_whole_life(api: Api) -> None:
    key = api.key("acme", "agent", agent="bot")
    with api.projecting(), api.client(key) as http:
        # Given a stored memory
        stored = _store(http, "Dana likes tea", tags=["drinks"], importance=0.7)
        memory_id, token = stored.json()["memory_id"], stored.headers["X-Consistency-Token"]
        assert stored.headers["ETag"] == '"1"' and stored.headers["Location"] == f"/v1/memories/{memory_id}"
        assert int(stored.headers["X-RateLimit-Remaining"]) <= int(stored.headers["X-RateLimit-Limit"])
        assert "X-RateLimit-Reset" in stored.headers and "total;dur=" in stored.headers["Server-Timing"]

        # When it is read with its consistency token, it is there at once
        got = http.get(f"/v1/memories/{memory_id}", params={"consistent_with": token})
        assert got.status_code == 200 and got.json()["content"] == "Dana likes tea"
        assert got.headers["ETag"] == '"1"'

        # Changes, each guarded by the ETag it was given
        updated = http.patch(f"/v1/memories/{memory_id}", json={"content": "Dana likes green tea"},
                             headers={"If-Match": '"1"'})
        assert updated.status_code == 200 and updated.json()["version"] == 2 and updated.headers["ETag"] == '"2"'
        tagged = http.post(f"/v1/memories/{memory_id}/tags", json={"tags": ["Tea"]}, headers={"If-Match": '"2"'})
        assert tagged.json()["version"] == 3
        untagged = http.delete(f"/v1/memories/{memory_id}/tags/drinks", headers={"If-Match": '"3"'})
        assert untagged.json()["version"] == 4
        recalled = http.post(f"/v1/memories/{memory_id}/recalls", json={"user_id": "u1", "query": "tea?"})
        assert recalled.status_code == 200

        now = http.get(f"/v1/memories/{memory_id}", params={"consistent_with": recalled.headers["X-Consistency-Token"]})
        assert now.json()["tags"] == ["tea"] and now.json()["recall_count"] == 1

        history = http.get(f"/v1/memories/{memory_id}/history",
                           params={"consistent_with": recalled.headers["X-Consistency-Token"]}).json()
        types = [e["event"]["type"] for e in history["events"]]
        assert types[0] == "MemoryStored" and len(types) == 5
        assert {e["event"]["actor"] for e in history["events"]} == {_key_id(key)}

        # Forgotten: gone from reads, and it takes no more changes (410)
        forgotten = http.delete(f"/v1/memories/{memory_id}", params={"reason": "asked to"})
        assert forgotten.status_code == 200
        token = forgotten.headers["X-Consistency-Token"]
        gone = http.get(f"/v1/memories/{memory_id}", params={"consistent_with": token})
        assert gone.status_code == 404 and gone.headers["content-type"] == PROBLEM
        late = http.patch(f"/v1/memories/{memory_id}", json={"importance": 0.1})
        assert late.status_code == 410 and late.json()["code"] == "forgotten"


def _key_id(secret: str) -> str:
    return "_".join(secret.split("_")[1:3])


def test_query_pages_with_a_cursor_and_reports_the_cache(api: Api) -> None:
    key = api.key("acme", "agent", agent="bot")
    with api.client(key) as http:
        ids = {_store(http, f"fact number {i}", tags=["facts"]).json()["memory_id"] for i in range(7)}
        _store(http, "unrelated", tags=["other"])
        api.project(("memories",))

        for order in ("recent", "importance"):  # equal importances: the rest of the key orders them
            seen, pages = _all_pages(http, {"tag": "facts", "limit": 3, "order": order})
            assert pages == 3 and len(seen) == 7 and set(seen) == ids

        first = http.get("/v1/memories", params={"tag": "facts", "limit": 5, "order": "importance"})
        again = http.get("/v1/memories", params={"tag": "facts", "limit": 5, "order": "importance"})
        assert (first.headers["X-Cache-Status"], again.headers["X-Cache-Status"]) == ("MISS", "HIT")
        past = http.get("/v1/memories", params={"agent_id": "bot", "as_of": "2000-01-01T00:00:00Z"})
        assert past.json()["items"] == [] and past.headers["X-Cache-Status"] == "BYPASS"


def _all_pages(http: httpx.Client, params: dict[str, Any]) -> tuple[list[str], int]:
    seen: list[str] = []
    pages = 0
    while True:
        page = http.get("/v1/memories", params=params)
        assert page.status_code == 200 and page.headers["X-Cache-Status"] in ("HIT", "MISS")
        seen += [m["memory_id"] for m in page.json()["items"]]
        pages += 1
        if page.json()["next_cursor"] is None:
            return seen, pages
        params = {**params, "cursor": page.json()["next_cursor"]}


def test_sessions_batches_and_the_analyst_reads(api: Api) -> None:
    agent, analyst = api.key("acme", "agent", agent="bot"), api.key("acme", "analyst")
    with api.projecting(), api.client(agent) as http:
        session = http.post("/v1/sessions", json={"session_data": "I prefer tea over coffee."})
        assert session.status_code == 202, session.text
        body = session.json()
        assert body["session_id"].startswith("ses_") and body["queued_at"]
        assert isinstance(body["queue_position"], int)
        shown = http.get(f"/v1/sessions/{body['session_id']}",
                         params={"consistent_with": session.headers["X-Consistency-Token"]})
        assert shown.status_code == 200 and shown.json()["session"]["status"] == "pending"

        batch = http.post("/v1/commands", json=[
            {"type": "StoreMemory", "content": "first", "tags": ["t"]},
            {"type": "StoreMemory", "content": ""},
            {"type": "StoreMemory", "content": "third", "tags": ["t"]}])
        assert batch.status_code == 200
        assert [r["status"] for r in batch.json()] == [200, 422, 200]
        assert batch.json()[1]["code"] == "invalid"
        lines = b'{"type": "StoreMemory", "content": "ndjson"}\n{not json}\n'
        ndjson = http.post("/v1/commands", content=lines, headers={"Content-Type": "application/x-ndjson"})
        assert [r["ok"] for r in ndjson.json()] == [True, False]
        token = batch.json()[2]["consistency_token"]

    with api.client(analyst) as http:
        api.project()
        assert http.get("/v1/stats").json()["agents"][0]["agent_id"] == "bot"
        tags = {t["tag"] for t in http.get("/v1/trending", params={"hours": 2}).json()["tags"]}
        assert "t" in tags
        analytics = http.get("/v1/analytics").json()
        assert analytics["events"].get("MemoryStored", 0) == 3 and analytics["agents"] >= 1
        feed = http.get("/v1/agents/bot/feed", params={"limit": 5}).json()
        assert [i["type"] for i in feed["items"]] == ["MemoryStored"] * 3 + ["SessionIngested"]
        levels = {r["level"] for r in http.get("/v1/hierarchy", params={"consistent_with": token}).json()["rows"]}
        assert levels == {"raw", "discrete"}
        raw = http.get("/v1/hierarchy", params={"level": "raw", "limit": 1}).json()["rows"]
        assert len(raw) == 1 and raw[0]["level"] == "raw"
        status = http.get("/v1/processing-status")
        assert status.status_code == 200 and status.json()["pending"] == 1


def test_operations_health_and_cleanup(api: Api) -> None:
    operator, agent = api.key("acme", "operator"), api.key("acme", "agent", agent="bot")
    with api.client() as anonymous:
        health = anonymous.get("/v1/health")
        assert health.status_code == 200 and health.json()["redis"]["ok"] and health.json()["migrated"]
        assert "memories" in health.json()["lag"]
    with api.client(agent) as http:  # a memory already past its expiry, for the cleanup to end
        stored = http.post("/v1/memories", json={"content": "old news", "expires_at": "2026-01-01T00:00:00Z"})
        assert stored.status_code == 201, stored.text
    api.project(("memories",))
    with api.client(operator) as http:
        done = http.post("/v1/maintenance/cleanup", json={"retention_days": 30})
        assert done.status_code == 200 and (done.json()["expired"], done.json()["purged"]) == (1, 0)
        [expired] = api.system.events(EventFilter(org="acme", types=frozenset({"MemoryExpired"})))
        operator_key = api.system.authenticate(operator).key_id
        assert expired.event.actor == operator_key  # history names the key that ran the cleanup
        refused = http.post("/v1/memories", json={"agent_id": "bot", "content": "operators do not write"})
        assert refused.status_code == 403 and refused.json()["code"] == "forbidden"
    with api.client(agent) as http:
        assert http.post("/v1/maintenance/cleanup").status_code == 403
    with api.client() as anonymous:
        docs = anonymous.get("/docs")
        assert docs.status_code == 200 and "swagger" in docs.text.lower()
        spec = anonymous.get("/openapi.json").json()
        assert "/v1/memories" in spec["paths"] and "Problem" in spec["components"]["schemas"]


def test_a_retried_create_names_the_subject_the_original_created(api: Api) -> None:
    # A session, or a batch item, sent again with its idempotency key but no id gets the
    # original's receipt, and must name the original's session or memory, not a new id.
    key = api.key("acme", "agent", agent="bot")
    with api.client(key) as http:
        sessions = [http.post("/v1/sessions", json={"session_data": "I prefer tea."},
                              headers={"Idempotency-Key": "chat-7"}) for _ in range(2)]
        assert [s.status_code for s in sessions] == [202, 202]
        assert sessions[0].json()["session_id"] == sessions[1].json()["session_id"]

        item = {"type": "StoreMemory", "content": "tea", "idempotency_key": "fact-9"}
        first, retry = (http.post("/v1/commands", json=[item]).json()[0] for _ in range(2))
        assert (first["duplicate"], retry["duplicate"]) == (False, True)
        assert retry["subject_id"] == first["subject_id"]


def test_stats_break_down_by_agent_tag_and_hierarchy_within_the_key_scope(api: Api) -> None:
    # Given two agents of acme with tagged memories and a session, and a stranger org
    bot, other = api.key("acme", "agent", agent="bot"), api.key("acme", "agent", agent="other")
    with api.client(bot) as http:
        for tags in (["travel", "seat"], ["travel"], []):
            assert http.post("/v1/memories", json={"content": f"fact {tags}", "tags": tags}).status_code == 201
        assert http.post("/v1/sessions", json={"session_data": "I like aisle seats."}).status_code == 202
    with api.client(other) as http:
        assert http.post("/v1/memories", json={"content": "o", "tags": ["travel", "food"]}).status_code == 201
    with api.client(api.key("globex", "agent", agent="bot")) as http:
        assert http.post("/v1/memories", json={"content": "g", "tags": ["secret"]}).status_code == 201
    api.project(("memories",))

    # When the org's analyst asks, then every agent of acme counts, and nothing of globex
    with api.client(api.key("acme", "analyst")) as http:
        org = http.get("/v1/stats").json()
    assert [a["agent_id"] for a in org["agents"]] == ["bot", "other"]
    assert org["tags"] == [{"tag": "travel", "memories": 3}, {"tag": "food", "memories": 1},
                           {"tag": "seat", "memories": 1}]
    assert org["hierarchy"] == {"sessions": {"pending": 1}, "messages": 1, "summaries": 0, "extracted": 0,
                                "direct": 4}
    # And a key bound to agent bot sees bot's numbers only
    with api.client(bot) as http:
        mine = http.get("/v1/stats", params={"top_tags": 1}).json()
    assert [a["agent_id"] for a in mine["agents"]] == ["bot"]
    assert mine["tags"] == [{"tag": "travel", "memories": 2}]
    assert mine["hierarchy"]["direct"] == 3 and mine["hierarchy"]["sessions"] == {"pending": 1}


def _timing(response: httpx.Response) -> dict[str, float]:
    parts = (p.strip().split(";dur=") for p in response.headers["Server-Timing"].split(",") if ";dur=" in p)
    return {name: float(ms) for name, ms in parts}


def test_server_timing_names_the_key_check_the_wait_and_the_handler(api: Api) -> None:
    key = api.key("acme", "agent", agent="bot")
    with api.client(key) as http:
        stored = http.post("/v1/memories", json={"content": "timed"})
        token = stored.headers["X-Consistency-Token"]
        with api.projecting(("memories",)):
            read = http.get("/v1/memories", params={"consistent_with": token})
    with api.client() as anonymous:
        health = anonymous.get("/v1/health")
    write_parts, read_parts = _timing(stored), _timing(read)
    assert list(write_parts) == ["auth", "handler", "total"]
    assert list(read_parts) == ["auth", "wait", "handler", "total"]
    for parts in (write_parts, read_parts):
        assert all(ms >= 0 for ms in parts.values())
        assert sum(ms for name, ms in parts.items() if name != "total") <= parts["total"] + 0.05
    assert list(_timing(health)) == ["total"]  # no key, no route-level parts
