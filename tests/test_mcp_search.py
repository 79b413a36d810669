"""search_memories over MCP by meaning: hybrid where the database has pgvector (the embedded
PostgreSQL 16 of the test session), full text where it has not (the loopback PostgreSQL 15)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from ledger import Settings
from memledger.app import App

from mcp_client import stdio_session
from vector_server import pgvector_url, vector_settings  # noqa: F401 - the fixtures


@pytest.fixture
def vector_app(vector_settings: Settings) -> Iterator[App]:
    with App.open(vector_settings, system=True) as app:
        app.migrate()
        yield app


def test_a_model_finds_a_memory_by_meaning(vector_settings: Settings, vector_app: App) -> None:
    with stdio_session(vector_settings, vector_app.issue_key("acme", "agent", "bot").secret) as mcp:
        # Given memories stored through the tool, embedded by the embeddings projector
        for content in ("Dana is allergic to peanuts", "The quarterly report is due on Friday",
                        "Sam prefers window seats on long flights"):
            mcp.call("store_memory", content=content)
        for name in ("memories", "embeddings"):
            vector_app.run_projector(name, until_caught_up=True)
        # When a question shares no word with the memory it needs
        question = "which foods must never be served to Dana at dinner"
        found = mcp.call("search_memories", text=question, limit=1)
        words = mcp.call("search_memories", text=question, mode="text")
    # Then the default (auto: hybrid here) finds it, with its score, where a word match alone does not
    assert found["mode"] == "hybrid"
    assert [m["content"] for m in found["memories"]] == ["Dana is allergic to peanuts"]
    assert found["memories"][0]["score"] > 0
    assert words["mode"] == "text" and words["memories"] == []


def test_without_pgvector_auto_is_text_and_semantic_says_why(settings: Settings) -> None:
    with App.open(settings, system=True) as system:
        system.migrate()
        secret = system.issue_key("acme", "agent", "bot").secret
    with stdio_session(settings, secret) as mcp:
        mcp.call("store_memory", content="Dana is allergic to peanuts")
        with App.open(settings) as runner:
            runner.run_projector("memories", until_caught_up=True)
        assert mcp.call("search_memories", text="peanuts")["mode"] == "text"
        refused = mcp.fail("search_memories", text="peanuts", mode="semantic")
        assert (refused["status"], refused["code"]) == (503, "semantic_search_unavailable")
        tags = mcp.fail("search_memories", text="x", mode="hybrid", session_id="s1")
        assert tags["code"] == "invalid"
