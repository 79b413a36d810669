"""GET /metrics through a real server: the counters and histograms move with requests, lag is read
at scrape time, and only loopback callers may scrape."""

from __future__ import annotations

import re

import httpx

from http_server import Api, api  # noqa: F401 - the fixture


def _scrape(api: Api) -> dict[str, float]:
    response = httpx.get(f"{api.url}/metrics", timeout=30)
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/plain")
    samples: dict[str, float] = {}
    for line in response.text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            samples[name] = float(value)
    return samples


def _value(samples: dict[str, float], name: str) -> float:
    return samples.get(name, 0.0)


def test_counters_and_latency_move_with_requests(api: Api) -> None:
    before = _scrape(api)
    with api.projecting(), api.client(api.key("acme", "agent", agent="bot")) as http:
        first = http.post("/v1/memories", json={"content": "one"}, headers={"Idempotency-Key": "k1"})
        http.post("/v1/memories", json={"content": "one"}, headers={"Idempotency-Key": "k1"})  # a duplicate
        memory_id = first.json()["memory_id"]
        stale = http.patch(f"/v1/memories/{memory_id}", json={"content": "x"}, headers={"If-Match": '"7"'})
        assert stale.status_code == 412
        batch = http.post("/v1/commands", json=[{"type": "StoreMemory", "content": "two"},
                                                {"type": "StoreMemory", "content": "three", "importance": 2}])
        assert [r["ok"] for r in batch.json()] == [True, False]
        token = batch.json()[0]
        for _ in range(2):  # a miss, then a hit
            http.get("/v1/memories", params={"tag": "none", "consistent_with": f"{token['partition']}-"
                                                                              f"{token['stream_id']}"})
    after = _scrape(api)

    def moved(name: str) -> float:
        return _value(after, name) - _value(before, name)

    assert moved("memledger_commands_appended_total") == 2
    assert moved("memledger_commands_duplicate_total") == 1
    assert moved('memledger_commands_rejected_total{code="precondition_failed"}') == 1
    assert moved('memledger_commands_rejected_total{code="invalid"}') == 1
    assert moved('memledger_http_query_cache_total{status="MISS"}') >= 1
    assert moved('memledger_http_query_cache_total{status="HIT"}') >= 1
    created = 'memledger_http_request_duration_seconds_count{method="POST",route="/v1/memories",status="201"}'
    assert moved(created) == 2
    templated = [k for k in after if 'route="/v1/memories/{memory_id}"' in k and 'status="412"' in k]
    assert templated, "latency is labelled by route template, not by path"


def test_lag_and_ledger_figures_are_read_at_scrape_time(api: Api) -> None:
    with api.client(api.key("acme", "agent", agent="bot")) as http:
        for n in range(3):
            http.post("/v1/memories", json={"content": f"m{n}"})
    samples = _scrape(api)
    assert samples["memledger_scrape_ok"] == 1
    lag = {k: v for k, v in samples.items() if k.startswith("memledger_projection_lag_events{")}
    projections = {found.group(1) for k in lag if (found := re.search(r'projection="([a-z_]+)"', k))}
    assert projections >= {"memories", "archive"}
    assert sum(v for k, v in lag.items() if 'projection="memories"' in k) >= 3  # no projector ran
    assert sum(v for k, v in samples.items() if k.startswith("memledger_ledger_events{")) >= 3
    api.project()
    caught_up = _scrape(api)
    assert sum(v for k, v in caught_up.items()
               if k.startswith("memledger_projection_lag_events{") and 'projection="memories"' in k) == 0


def test_only_loopback_callers_may_scrape(api: Api) -> None:
    # uvicorn trusts X-Forwarded-For from loopback: this is how a proxied outside caller looks
    outside = httpx.get(f"{api.url}/metrics", headers={"X-Forwarded-For": "203.0.113.7"})
    assert outside.status_code == 404 and outside.headers["content-type"] == "application/problem+json"
    assert "/metrics" not in httpx.get(f"{api.url}/openapi.json").json()["paths"]
