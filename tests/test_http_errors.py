"""Every error status as application/problem+json, and a rejected request appends nothing."""

from __future__ import annotations

import time
from collections.abc import Iterator

import httpx
import pytest

from ledger import Settings
from memledger.log_reader import EventFilter

from http_server import Api, api, open_api  # noqa: F401 - the fixture

PROBLEM = "application/problem+json"


def _problem(response: httpx.Response, status: int, code: str) -> dict[str, object]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == PROBLEM
    body: dict[str, object] = response.json()
    assert body["status"] == status and body["code"] == code and body["title"] and body["detail"]
    assert str(body["type"]).endswith("/" + code)
    assert "Traceback" not in response.text
    return body


def _events(api: Api, org: str = "acme") -> int:
    return len(api.system.events(EventFilter(org=org, types=frozenset({"MemoryStored", "MemoryUpdated"})),
                                 limit=10_000))


def test_each_client_error_is_a_problem_and_appends_nothing(api: Api) -> None:
    key = api.key("acme", "agent", agent="bot")
    with api.client(key) as http:
        stored = http.post("/v1/memories", json={"content": "kept", "memory_id": "m1"})
        assert stored.status_code == 201
        before = _events(api)

        _problem(http.post("/v1/memories", content=b'{"content": "a", "content": "b"}',
                           headers={"Content-Type": "application/json"}), 400, "malformed")
        _problem(http.post("/v1/memories", content=b'{"content": "x", "importance": NaN}',
                           headers={"Content-Type": "application/json"}), 400, "malformed")
        _problem(http.post("/v1/memories", content=b"[" * 5000 + b"]" * 5000,
                           headers={"Content-Type": "application/json"}), 400, "malformed")
        _problem(http.get("/v1/memories", params={"consistent_with": "soon"}), 400, "bad_request")
        _problem(http.get("/v1/memories", params={"cursor": "%%%"}), 400, "bad_request")
        _problem(http.post("/v1/memories", content=b"content=x",
                           headers={"Content-Type": "application/x-www-form-urlencoded"}), 415,
                 "unsupported_media_type")
        _problem(http.post("/v1/memories", content=b'{"content": "' + b"x" * (3 * 1024 * 1024) + b'"}',
                           headers={"Content-Type": "application/json"}), 413, "too_large")

        invalid = _problem(http.post("/v1/memories", json={"content": "", "importance": "0.5", "colour": "red"}),
                           422, "invalid")
        fields = {e["field"] for e in invalid["errors"]}  # type: ignore[attr-defined]
        assert {"body.content", "body.importance", "body.colour"} <= fields
        _problem(http.patch("/v1/memories/m1", json={}), 422, "invalid")  # an update must change something

        _problem(http.get("/v1/memories/nope"), 404, "not_found")
        _problem(http.patch("/v1/memories/nope", json={"agent_id": "bot", "content": "x"}), 404, "unknown_subject")
        _problem(http.post("/v1/memories", json={"content": "again", "memory_id": "m1"}), 409, "exists")
        stale = _problem(http.patch("/v1/memories/m1", json={"agent_id": "bot", "content": "x"},
                                    headers={"If-Match": '"7"'}), 412, "precondition_failed")
        assert stale["current_version"] == 1
        _problem(http.patch("/v1/memories/m1", json={"agent_id": "bot", "content": "x"},
                            headers={"If-Match": "yesterday"}), 400, "bad_request")
        # A key bound to agent bot writing as another agent: that agent does not exist for it.
        _problem(http.post("/v1/memories", json={"agent_id": "other", "content": "x"}), 404, "not_found")

        assert _events(api) == before

    with api.client(api.key("acme", "agent")) as org_wide:  # a key of the org, bound to no agent
        for agent in ("bot", "other"):
            assert org_wide.post("/v1/memories", json={"agent_id": agent, "memory_id": "shared",
                                                       "content": f"{agent}'s"}).status_code == 201
        _problem(org_wide.post("/v1/memories", json={"content": "whose?"}), 422, "invalid")
        api.project(("memories",))
        _problem(org_wide.get("/v1/memories/shared"), 422, "invalid_query")
        assert org_wide.get("/v1/memories/shared", params={"agent_id": "other"}).json()["content"] == "other's"
        before = _events(api)

    with api.client() as anonymous:
        _problem(anonymous.get("/v1/memories"), 401, "unauthenticated")
        assert anonymous.get("/v1/stats").headers["WWW-Authenticate"].startswith("Bearer")
    with api.client("mlk_key_" + "0" * 32 + "_" + "A" * 43) as forged:
        _problem(forged.get("/v1/memories"), 401, "unauthenticated")
    with api.client(api.key("acme", "analyst")) as analyst:
        _problem(analyst.post("/v1/memories", json={"agent_id": "bot", "content": "x"}), 403, "forbidden")
        _problem(analyst.delete("/v1/memories/m1", params={"agent_id": "bot"}), 403, "forbidden")
    assert _events(api) == before


def test_a_read_that_cannot_catch_up_is_503_with_retry_after(api: Api) -> None:
    key = api.key("acme", "analyst")
    future = f"0-{int(time.time() * 1000) + 3_600_000}-0"  # an hour from now: no projector will get there
    with api.client(key) as http:
        waited = http.get("/v1/stats", params={"consistent_with": future})
        _problem(waited, 503, "timeout")
        assert int(waited.headers["Retry-After"]) >= 1


@pytest.fixture
def slow_api(settings: Settings) -> Iterator[Api]:
    """An org may send 3 commands at once, then one every 10 s."""
    with open_api(settings.model_copy(update={"rate_per_second": 0.1, "rate_burst": 3})) as served:
        yield served


def test_rate_limited_writes_get_429_and_idempotent_retries_never_do(slow_api: Api) -> None:
    key = slow_api.key("acme", "agent", agent="bot")  # issuing it took one of the org's 3
    with slow_api.client(key) as http:
        first = http.post("/v1/memories", json={"content": "one"}, headers={"Idempotency-Key": "k1"})
        assert first.status_code == 201 and first.headers["X-RateLimit-Remaining"] == "1"
        assert http.post("/v1/memories", json={"content": "two"}).status_code == 201

        limited = _problem(http.post("/v1/memories", json={"content": "three"}), 429, "rate_limited")
        assert float(str(limited["retry_after"])) > 0
        assert int(http.post("/v1/memories", json={"content": "three"}).headers["Retry-After"]) >= 1

        # The retry of an accepted write is answered with its original receipt, however limited the org is.
        retry = http.post("/v1/memories", json={"content": "one"}, headers={"Idempotency-Key": "k1"})
        assert retry.status_code == 201 and retry.json()["duplicate"] is True
        original = first.json()
        assert {**retry.json(), "duplicate": False} == original
        assert retry.headers["X-Consistency-Token"] == first.headers["X-Consistency-Token"]


def test_a_command_type_only_the_system_sends_is_403_system_only_in_a_batch(api: Api) -> None:
    # Given an agent key of acme and one of its memories
    key = api.key("acme", "agent", agent="bot")
    with api.client(key) as http:
        assert http.post("/v1/memories", json={"content": "kept", "memory_id": "m1"}).status_code == 201
        before = _events(api)
        # When it sends a worker-internal command type (its own org, its own agent)
        expire = {"type": "ExpireMemory", "org_id": "acme", "agent_id": "bot", "memory_id": "m1",
                  "expires_at": "2026-01-01T00:00:00Z"}
        store = {"type": "StoreMemory", "org_id": "acme", "agent_id": "bot", "content": "fine"}
        results = http.post("/v1/commands", json=[expire, store])
    # Then that item is 403 system_only (the type is public: nothing about any org is revealed),
    # the other item is accepted, and nothing of the refused one is appended
    assert results.status_code == 200, results.text
    refused, accepted = results.json()
    assert (refused["ok"], refused["status"], refused["code"]) == (False, 403, "system_only")
    assert accepted["ok"] and accepted["status"] == 200
    assert _events(api) == before + 1
    assert len(api.system.events(EventFilter(org="acme", types=frozenset({"MemoryExpired"})), limit=10)) == 0


def test_time_windows_at_the_year_1_answer_rather_than_fail(api: Api) -> None:
    # Found by schemathesis: the default week before 0001-01-01 overflowed into a 500.
    with api.client(api.key("acme", "analyst")) as http:
        first_week = http.get("/v1/analytics", params={"until": "0001-01-03"})  # the default week starts at day 1
        assert first_week.status_code == 200 and first_week.json()["from"] == "0001-01-01"
        trending = http.get("/v1/trending", params={"until": "0001-01-01T00:00:00Z", "hours": 5})
        assert trending.status_code == 200 and trending.json()["tags"] == []
