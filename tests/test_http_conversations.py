"""Working memory over HTTP (issue 17), through a real server on a free port: append message
by message, read the recent ones back (cache or PostgreSQL), close; errors and tenancy."""

from __future__ import annotations

from typing import Any

import httpx

from memledger.log_reader import EventFilter

from http_server import Api, api  # noqa: F401 - the fixture

CHAT = ("conversations", "recent_messages")


def _events(api: Api, org: str = "acme") -> int:
    return len(api.system.events(EventFilter(org=org), limit=100_000))


def _say(http: httpx.Client, session: str, content: str, **extra: Any) -> httpx.Response:
    headers = {"Idempotency-Key": extra.pop("key")} if "key" in extra else {}
    return http.post(f"/v1/sessions/{session}/messages", json={"role": "user", "content": content, **extra},
                     headers=headers)


def test_append_read_back_and_close(api: Api) -> None:
    with api.client(api.key("acme", "agent", agent="bot")) as http:
        # Given three messages, the second sent twice with one Idempotency-Key
        first = _say(http, "chat-1", "hello")
        second = _say(http, "chat-1", "I like green tea", key="k2", metadata={"channel": "web"})
        retry = _say(http, "chat-1", "I like green tea", key="k2", metadata={"channel": "web"})
        third = http.post("/v1/sessions/chat-1/messages", json={"role": "assistant", "content": "noted"})
        assert [r.status_code for r in (first, second, retry, third)] == [201, 201, 201, 201]
        assert [r.json()["seq"] for r in (first, second, third)] == [1, 2, 3]
        assert retry.json()["duplicate"] is True and retry.json()["stream_id"] == second.json()["stream_id"]
        assert third.headers["X-Consistency-Token"] and third.headers["ETag"] == '"3"'
        # When PostgreSQL has the messages but the cache projector has not run yet
        api.project(("conversations",))
        token = third.headers["X-Consistency-Token"]
        fresh = http.get("/v1/sessions/chat-1/messages", params={"last": 2, "consistent_with": token})
        # Then a read-your-writes read answers from PostgreSQL, with the write in it
        assert fresh.status_code == 200, fresh.text
        body = fresh.json()
        assert (body["source"], fresh.headers["X-Cache-Status"]) == ("database", "MISS")
        assert body["status"] == "open"
        assert [(m["seq"], m["role"], m["content"]) for m in body["messages"]] == [
            (2, "user", "I like green tea"), (3, "assistant", "noted")]
        assert body["messages"][0]["metadata"] == {"channel": "web"}
        # ... and once the cache projector caught up, the cache answers the same
        api.project(CHAT)
        cached = http.get("/v1/sessions/chat-1/messages", params={"last": 2, "consistent_with": token})
        assert (cached.json()["source"], cached.headers["X-Cache-Status"]) == ("cache", "HIT")
        assert cached.json()["messages"] == body["messages"]
        # When the conversation is closed, it takes no more messages (409), nor a second close
        closed = http.post("/v1/sessions/chat-1/close")
        assert closed.status_code == 200 and closed.json()["seq"] == 4
        before = _events(api)
        late = _say(http, "chat-1", "one more thing")
        assert late.status_code == 409 and late.headers["content-type"].startswith("application/problem+json")
        assert late.json()["code"] == "session_closed" and "closed" in late.json()["detail"]
        assert http.post("/v1/sessions/chat-1/close").status_code == 409
        assert http.post("/v1/sessions/never/close").status_code == 404
        assert _events(api) == before


def test_bad_messages_are_422_and_append_nothing(api: Api) -> None:
    with api.client(api.key("acme", "agent", agent="bot")) as http:
        assert _say(http, "s", "ok").status_code == 201
        before = _events(api)
        bad = [
            {"role": "user", "content": ""},
            {"role": "user", "content": "  \t "},
            {"role": "robot", "content": "hi"},
            {"role": "user", "content": "x" * 32_769},
            {"role": "user", "content": "hi", "metadata": {"blob": "y" * 9000}},
            {"role": "user", "content": "hi", "unknown": 1},
            {"content": "no role"},
        ]
        for body in bad:
            answer = http.post("/v1/sessions/s/messages", json=body)
            assert answer.status_code == 422, (body, answer.text)
            assert answer.json()["detail"]
        assert http.get("/v1/sessions/s/messages", params={"last": 0}).status_code == 422
        assert _events(api) == before
    with api.client(api.key("acme", "agent")) as http:  # a key bound to no agent must name one
        answer = _say(http, "s", "who am I?")
        assert answer.status_code == 422 and "agent_id" in answer.json()["detail"]


def test_another_org_never_sees_or_closes_a_session_and_an_agent_key_only_its_own(api: Api) -> None:
    with api.client(api.key("acme", "agent", agent="bot")) as http:
        assert _say(http, "private", "the vault code is 1234").status_code == 201
    with api.client(api.key("acme", "agent", agent="helper")) as http:
        assert _say(http, "helpers", "hi").status_code == 201
    api.project(CHAT)
    keys = {who: api.key(*who) for who in (("globex", "agent", "bot"), ("acme", "analyst", None))}
    before = _events(api)
    with api.client(keys[("globex", "agent", "bot")]) as other:
        assert other.get("/v1/sessions/private/messages").status_code == 404
        assert other.get("/v1/sessions/private/messages", params={"agent_id": "bot"}).status_code == 404
        assert other.post("/v1/sessions/private/close").status_code == 404
        # the same session id in the other org is simply another session
        assert _say(other, "private", "globex's own").json()["seq"] == 1
    with api.client(api.key("acme", "agent", agent="bot")) as http:
        assert http.get("/v1/sessions/helpers/messages").status_code == 404
        assert http.get("/v1/sessions/helpers/messages", params={"agent_id": "helper"}).status_code == 404
        mine = http.get("/v1/sessions/private/messages").json()
        assert [m["content"] for m in mine["messages"]] == ["the vault code is 1234"]
    with api.client(keys[("acme", "analyst", None)]) as analyst:  # an org-wide reader finds the agent itself
        assert analyst.get("/v1/sessions/helpers/messages").json()["agent_id"] == "helper"
        assert analyst.post("/v1/sessions/helpers/messages", json={"role": "user", "content": "x",
                                                                   "agent_id": "helper"}).status_code == 403
    assert _events(api) == before  # nothing of acme's changed (globex's own message is globex's)


def test_summary_option_openapi_and_health(api: Api) -> None:
    with api.client(api.key("acme", "agent", agent="bot")) as http:
        for i in range(3):
            _say(http, "s", f"message {i}")
        api.project(CHAT)
        with_summary = http.get("/v1/sessions/s/messages", params={"last": 2, "summary": "true"}).json()
        assert with_summary["summary"] is None and with_summary["status"] == "open"  # nothing summarized yet
        assert [m["seq"] for m in with_summary["messages"]] == [2, 3]
        spec = http.get("/openapi.json").json()
        assert {"post", "get"} <= set(spec["paths"]["/v1/sessions/{session_id}/messages"])
        assert "post" in spec["paths"]["/v1/sessions/{session_id}/close"]
        health = http.get("/v1/health").json()
        assert health["session_cache"]["sessions_cached"] == 1 and health["session_cache"]["hits"] >= 1
