"""Read-your-writes across processes: a read given a write's X-Consistency-Token sees that write,
while the projectors run on their own (in threads here) and nobody waits by hand."""

from __future__ import annotations

from http_server import Api, api  # noqa: F401 - the fixture


def test_each_write_is_visible_to_the_read_that_names_its_token(api: Api) -> None:
    key = api.key("acme", "agent", agent="bot")
    with api.projecting(("memories",)), api.client(key) as http:
        memory_id = http.post("/v1/memories", json={"content": "version 1"}).json()["memory_id"]
        for n in range(2, 22):
            write = http.patch(f"/v1/memories/{memory_id}", json={"content": f"version {n}"})
            token = write.headers["X-Consistency-Token"]
            read = http.get(f"/v1/memories/{memory_id}", params={"consistent_with": token})
            assert read.json()["content"] == f"version {n}" and read.headers["ETag"] == f'"{n}"'
            listed = http.get("/v1/memories", params={"consistent_with": token, "text": "version"})
            assert listed.json()["items"][0]["content"] == f"version {n}"


def test_redis_read_models_wait_for_their_own_projection(api: Api) -> None:
    # Given a tagged write and a recall that only the memories projection has applied
    key = api.key("acme", "agent", agent="bot")
    with api.client(key) as http:
        memory_id = http.post("/v1/memories", json={"content": "aisle seat", "tags": ["travel"]}).json()["memory_id"]
        token = http.post(f"/v1/memories/{memory_id}/recalls", json={}).headers["X-Consistency-Token"]
        api.project(("memories",))
        # When the Redis read models are asked for that write, they do not answer without it
        for path in ("/v1/trending", "/v1/analytics", "/v1/agents/bot/feed"):
            waited = http.get(path, params={"consistent_with": token})
            assert waited.status_code == 503 and waited.json()["code"] == "timeout", (path, waited.text)
        # Then, with their projectors running, each answer includes it
        with api.projecting(("trending", "analytics", "activity")):
            trending = http.get("/v1/trending", params={"consistent_with": token, "hours": 1}).json()
            analytics = http.get("/v1/analytics", params={"consistent_with": token}).json()
            feed = http.get("/v1/agents/bot/feed", params={"consistent_with": token}).json()
    assert [t["tag"] for t in trending["tags"]] == ["travel"]
    assert analytics["events"]["MemoryRecalled"] == 1
    assert feed["items"][0]["type"] == "MemoryRecalled"
