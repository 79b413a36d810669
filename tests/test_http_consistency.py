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
