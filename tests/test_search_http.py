"""`GET /v1/memories/search` through a real server: against pgvector (the embedded pgserver,
schemathesis included) and against the loopback PostgreSQL 15 (503, one line)."""

from __future__ import annotations

import schemathesis
from hypothesis import HealthCheck, given, settings as hypothesis_settings
from http_server import open_api
from schemathesis.specs.openapi.checks import positive_data_acceptance
from vector_server import pgvector_url, vector_settings  # noqa: F401 - fixtures

from commands import StoreMemory
from ledger import Settings


def test_search_over_http_finds_by_meaning_scoped_to_the_keys_org(vector_settings: Settings) -> None:
    with open_api(vector_settings) as api:
        for org in ("acme", "globex"):
            api.system.send(StoreMemory(org_id=org, agent_id="bot", memory_id=f"{org}-1",
                                        content="Jonas is allergic to peanuts", tags=("health",)))
            api.system.send(StoreMemory(org_id=org, agent_id="bot", memory_id=f"{org}-2",
                                        content="The wifi password is on the fridge"))
        api.project(("memories", "embeddings"))
        with api.client(api.key("acme", "analyst")) as http:
            answer = http.get("/v1/memories/search", params={"q": "which foods could make Jonas sick"})
            assert answer.status_code == 200, answer.text
            hits = answer.json()["hits"]
            assert hits[0]["memory_id"] == "acme-1" and hits[0]["vector_rank"] == 1
            assert {h["memory_id"] for h in hits} <= {"acme-1", "acme-2"}  # never globex's
            tagged = http.get("/v1/memories/search", params={"q": "fridge", "tag": "health", "mode": "text"})
            assert tagged.json()["hits"] == []
            bad = http.get("/v1/memories/search", params={"q": "x", "mode": "fuzzy"})
            assert bad.status_code == 422


def test_search_answers_within_its_spec(vector_settings: Settings) -> None:
    with open_api(vector_settings) as api:
        headers = {"Authorization": f"Bearer {api.key('acme', 'agent', agent='bot')}"}
        schema = schemathesis.openapi.from_url(f"{api.url}/openapi.json")
        operation = next(op for op in (r.ok() for r in schema.get_all_operations())
                         if op.path == "/v1/memories/search")

        @given(case=operation.as_strategy())
        @hypothesis_settings(max_examples=30, deadline=None, suppress_health_check=list(HealthCheck), database=None)
        def check(case: schemathesis.Case) -> None:
            case.call_and_validate(headers=headers, excluded_checks=[positive_data_acceptance])

        check()


def test_without_pgvector_search_is_a_503_problem_in_one_line(settings: Settings) -> None:
    with open_api(settings) as api, api.client(api.key("acme", "analyst")) as http:
        answer = http.get("/v1/memories/search", params={"q": "anything"})
        assert answer.status_code == 503
        problem = answer.json()
        assert problem["code"] == "semantic_search_unavailable" and "\n" not in problem["detail"]
