"""The fast path (memledger/http/fast_routes.py) and the FastAPI routes give the same answers.

Each request is sent twice: plain, which the fast path answers (its Server-Timing says
`route;desc="fast"`), and with something only the FastAPI route handles (an already satisfied
`consistent_with`, an unknown query parameter, which FastAPI ignores), which falls through."""

from __future__ import annotations

from typing import Any

import httpx
import orjson
import pytest

from http_server import Api, api  # noqa: F401 - the fixture

QUERIES: list[dict[str, Any]] = [
    {}, {"tag": "travel"}, {"tag": ["travel", "food"], "match": "all"}, {"min_importance": "0.6"},
    {"order": "importance", "limit": "2"}, {"agent_id": "bot"}, {"memory_type": "note"}, {"limit": "1"},
    {"agent_id": ""}, {"agent_id": "x" * 129}, {"min_importance": "1.5"}, {"limit": "0"}, {"order": "oldest"},
    {"limit": "1001"}, {"tag": "TRAVEL"}, {"session_id": "nope"},
]


def _fast(response: httpx.Response) -> bool:
    return 'route;desc="fast"' in response.headers["Server-Timing"]


def _same(fast: httpx.Response, slow: httpx.Response, ignore: tuple[str, ...] = ()) -> None:
    assert fast.status_code == slow.status_code, (fast.text, slow.text)
    assert fast.headers["content-type"] == slow.headers["content-type"]
    body, other = fast.json(), slow.json()
    if isinstance(body, dict):
        for name in ignore:
            body.pop(name, None), other.pop(name, None)
    assert body == other


@pytest.fixture
def stored(api: Api) -> dict[str, str]:
    key = api.key("acme", "agent", agent="bot")
    with api.client(key) as http:
        for n, (tags, importance) in enumerate([(["travel"], 0.9), (["travel", "food"], 0.7), (["food"], 0.3)]):
            written = http.post("/v1/memories", json={"content": f"fact {n}", "tags": tags, "importance": importance})
            assert written.status_code == 201
    api.project(("memories",))
    return {"key": key, "token": written.headers["X-Consistency-Token"]}


def test_queries_answer_the_same_on_both_paths(api: Api, stored: dict[str, str]) -> None:
    with api.client(stored["key"]) as http:
        for params in QUERIES:
            fast = http.get("/v1/memories", params=params)
            slow = http.get("/v1/memories", params={**params, "consistent_with": stored["token"]})
            assert not _fast(slow)
            _same(fast, slow, ignore=("cache",))
            if fast.status_code == 200:
                assert _fast(fast), params
                assert fast.headers["X-Cache-Status"] in ("HIT", "MISS") and set(fast.headers) == set(slow.headers)
                assert bool(fast.json()["items"]) == ("session_id" not in params), params


def test_a_second_page_and_other_keys_on_both_paths(api: Api, stored: dict[str, str]) -> None:
    with api.client(stored["key"]) as http:
        first = http.get("/v1/memories", params={"limit": "2"}).json()
        cursor = first["next_cursor"]
        assert cursor and len(first["items"]) == 2
        rest = http.get("/v1/memories", params={"limit": "2", "cursor": cursor})  # cursor: the FastAPI route
        assert not _fast(rest) and [i["content"] for i in rest.json()["items"]] == ["fact 0"]
        _same(http.get("/v1/memories", params={"agent_id": "other"}),  # not the key's agent: 404 on both
              http.get("/v1/memories", params={"agent_id": "other", "unknown": "1"}))
    with api.client(api.key("globex", "analyst")) as stranger:  # another org sees nothing on either path
        first_call = stranger.get("/v1/memories")  # a key not seen in the last 2 s is looked up by the route
        assert not _fast(first_call) and first_call.json()["items"] == []
        fast, slow = stranger.get("/v1/memories"), stranger.get("/v1/memories", params={"unknown": "1"})
        assert _fast(fast) and fast.json()["items"] == [] and slow.json()["items"] == []
    with api.client() as anonymous, api.client("mlk_key_" + "0" * 32 + "_" + "A" * 43) as forged:
        for client in (anonymous, forged):
            assert client.get("/v1/memories").status_code == 401


def test_stores_answer_the_same_on_both_paths(api: Api) -> None:
    agent, org_wide = api.key("acme", "agent", agent="bot"), api.key("acme", "agent")
    bodies: list[dict[str, Any]] = [
        {"content": "plain"}, {"content": "full", "tags": ["a", "b"], "importance": 0.8, "metadata": {"k": 1},
                                "memory_type": "fact", "expires_at": "2030-01-01T00:00:00Z"},
        {"content": ""}, {"content": "x", "importance": "0.5"}, {"content": "x", "colour": "red"},
        {"agent_id": "other", "content": "someone else's"},
    ]
    with api.client(agent) as http:
        assert http.get("/v1/stats").status_code == 200  # the key is now known to the server for 2 s
        for n, body in enumerate(bodies):
            fast = http.post("/v1/memories", json={**body, **({"memory_id": f"f{n}"} if "content" in body else {})})
            slow = http.post("/v1/memories", params={"unknown": "1"},
                             json={**body, **({"memory_id": f"s{n}"} if "content" in body else {})})
            assert not _fast(slow)
            _same(fast, slow, ignore=("memory_id", "stream_id", "event_ids", "partition"))
            if fast.status_code == 201:
                assert _fast(fast)
                assert fast.headers["Location"] == f"/v1/memories/f{n}" and fast.headers["ETag"] == '"1"'
                assert set(fast.headers) == set(slow.headers)  # the same headers, by name
                assert {"x-consistency-token", "x-ratelimit-remaining", "etag", "location"} <= set(fast.headers)
        retried = [http.post("/v1/memories", json={"content": "once"}, headers={"Idempotency-Key": "k-1"})
                   for _ in range(2)]
        assert [r.json()["duplicate"] for r in retried] == [False, True]
        assert retried[0].json()["memory_id"] == retried[1].json()["memory_id"]
    with api.client(org_wide) as http:  # no agent named, none bound: the same 422 on both paths
        _same(http.post("/v1/memories", json={"content": "whose?"}),
              http.post("/v1/memories", params={"unknown": "1"}, json={"content": "whose?"}))
    with api.client(api.key("acme", "analyst")) as http:  # analysts do not write: 403 on both
        _same(http.post("/v1/memories", json={"agent_id": "bot", "content": "no"}),
              http.post("/v1/memories", params={"unknown": "1"}, json={"agent_id": "bot", "content": "no"}))


def _on_loop(response: httpx.Response) -> bool:
    return 'cache;desc="hit on the event loop"' in response.headers["Server-Timing"]


def test_a_cache_hit_is_answered_on_the_event_loop_counted_once_and_never_stale(
        api: Api, stored: dict[str, str]) -> None:
    from ledger.connections import connect_redis
    from projections.redis import cache_stats

    params = {"tag": "travel", "limit": "5"}
    with api.client(stored["key"]) as http:
        first = http.get("/v1/memories", params=params)
        hits = [http.get("/v1/memories", params=params) for _ in range(4)]
        routed = http.get("/v1/memories", params={**params, "consistent_with": stored["token"]})
        # Given a cached page, when another travel memory is stored and projected,
        written = http.post("/v1/memories", json={"content": "fact 3", "tags": ["travel"], "importance": 0.5})
        api.project(("memories",))
        after = http.get("/v1/memories", params=params)
        after_hit = http.get("/v1/memories", params=params)
    assert first.headers["X-Cache-Status"] == "MISS" and not _on_loop(first)
    for hit in hits:
        assert hit.headers["X-Cache-Status"] == "HIT" and _on_loop(hit) and _fast(hit)
        _same(hit, routed)
    assert routed.headers["X-Cache-Status"] == "HIT" and not _on_loop(routed)
    # then the next read is not served from the loop's cache: it misses and holds the new memory.
    assert written.status_code == 201
    assert after.headers["X-Cache-Status"] == "MISS" and not _on_loop(after)
    assert "fact 3" in [item["content"] for item in after.json()["items"]]
    assert _on_loop(after_hit) and after_hit.json() == after.json() | {"cache": "HIT"}
    # Each request counted once: the loop's probe counts its hits, the thread path the misses.
    stats = cache_stats(connect_redis(api.settings), api.settings.namespace)
    assert (stats["hits"], stats["misses"]) == (6, 2)


def test_the_probe_declines_when_redis_is_unreachable_or_a_cluster() -> None:
    import asyncio
    import socket

    from ledger import Settings
    from projections.redis.cache_probe import CacheProbe
    from projections import MemoryQuery
    from projections.redis import QueryCache

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed_port = s.getsockname()[1]  # nothing listens once the socket closes
    query = MemoryQuery("acme", limit=5)

    async def probe(url: str) -> object:
        settings = Settings(redis_url=url, database_url="postgresql://unused@127.0.0.1/x")
        cache = QueryCache(None, "ml", "ml", 60)  # type: ignore[arg-type] - the probe uses its own client
        probing = CacheProbe(settings)
        try:
            return await probing.rows(cache, query), probing.enabled
        finally:
            await probing.aclose()

    assert asyncio.run(probe(f"redis://127.0.0.1:{closed_port}/0")) == (None, True)
    assert asyncio.run(probe("redis+cluster://127.0.0.1:7000")) == (None, False)


def _batch(suffix: str) -> list[Any]:
    """A batch of every kind of item: stored, duplicated, invalid, another org's, worker-only, not an object."""
    return [{"type": "StoreMemory", "memory_id": f"m-{suffix}", "content": "a fact", "tags": ["x"]},
            {"type": "StoreMemory", "memory_id": f"m-{suffix}", "content": "a fact", "tags": ["x"],
             "idempotency_key": f"k-{suffix}"},
            {"type": "StoreMemory", "content": ""}, {"type": "NoSuchCommand"},
            {"type": "StoreMemory", "org_id": "globex", "content": "not mine"},
            {"type": "ExpireMemory", "memory_id": f"m-{suffix}", "expires_at": "2026-01-01T00:00:00Z"}, 42]


def _shape(results: list[dict[str, Any]], side: str) -> list[tuple[Any, ...]]:
    """What must agree between the paths: all but positions and ids, which each write makes anew."""
    return [(r["index"], r["ok"], r["status"], r["code"], (r["detail"] or "").replace(f"m-{side}", "m-?"),
             r["version"], r["duplicate"], sorted(r)) for r in results]


def test_batches_answer_the_same_on_both_paths(api: Api, stored: dict[str, str]) -> None:
    with api.client(stored["key"]) as http:
        for body_of in (lambda s: orjson.dumps(_batch(s)),
                        lambda s: b"\n".join([*map(orjson.dumps, _batch(s)), b"{not json"]),
                        lambda s: b'{"type": "StoreMemory"}', lambda s: orjson.dumps([{}] * 1001), lambda s: b"[]"):
            content_type = "application/x-ndjson" if b"\n" in body_of("a") else "application/json"
            answers = [http.post("/v1/commands", params=params, content=body_of(side),
                                 headers={"Content-Type": content_type})
                       for side, params in (("fast", {}), ("slow", {"unknown": "1"}))]
            fast, slow = answers
            assert _fast(fast) and not _fast(slow)
            assert fast.status_code == slow.status_code and fast.headers["content-type"] == slow.headers["content-type"]
            if fast.status_code == 200:
                assert _shape(fast.json(), "fast") == _shape(slow.json(), "slow")
                assert {k for k in fast.headers if k.startswith("x-ratelimit")} == {
                    k for k in slow.headers if k.startswith("x-ratelimit")} != set()
            else:
                assert fast.json() == slow.json()
    statuses = [r["status"] for r in _shape_source(api, stored)]
    assert statuses == [200, 409, 422, 422, 404, 403, 422]


def _shape_source(api: Api, stored: dict[str, str]) -> list[dict[str, Any]]:
    with api.client(stored["key"]) as http:
        results: list[dict[str, Any]] = http.post("/v1/commands", json=_batch("again")).json()
    return results
