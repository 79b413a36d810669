"""Semantic, text and hybrid search over the embeddings read model (pgvector in an embedded
PostgreSQL 16 from `pgserver`; the real all-MiniLM-L6-v2 model), and its absence on the
loopback PostgreSQL 15 (no pgvector)."""

from __future__ import annotations

import pytest
from pydantic import SecretStr
from hypothesis import HealthCheck, given, settings as hsettings, strategies as st
from embedding_server import EmbeddingServer
from vector_server import make_settings, pgvector_url, vector_settings  # noqa: F401 - fixtures

from commands import ForgetMemory, StoreMemory
from ledger import Settings
from ledger.errors import OutdatedReadModel, SemanticSearchUnavailable
from memledger.app import App
from memledger.search_quality import load, recall, store_all
from projections import run_projection
from projections.embedders.local import LocalEmbedder
from projections.search import SearchQuery


def project(settings: Settings) -> None:
    run_projection(settings, "memories", until_caught_up=True)
    run_projection(settings, "embeddings", until_caught_up=True)


def test_hybrid_recalls_at_least_as_well_as_text_and_semantic_alone(vector_settings: Settings) -> None:
    data = load()
    assert len(data["memories"]) >= 200 and len(data["queries"]) >= 60
    assert sum(not q["shares_keyword"] for q in data["queries"]) >= 30
    with App.open(vector_settings) as app:
        app.migrate()
        store_all(app, "acme", data)
        project(vector_settings)
        scores = {mode: recall(app, "acme", data, mode) for mode in ("text", "semantic", "hybrid")}
    for k in ("recall@1", "recall@5"):
        assert scores["hybrid"][k] >= scores["semantic"][k], scores
        assert scores["hybrid"][k] >= scores["text"][k], scores
    assert scores["semantic"]["recall@5"] > scores["text"]["recall@5"] + 0.3, scores  # meaning beats words here


def test_filters_are_inside_the_query_and_forget_removes_the_vector(vector_settings: Settings) -> None:
    with App.open(vector_settings) as app:
        app.migrate()
        for i in range(60):  # many closer memories that a post-filtered top-k would keep instead
            app.send(StoreMemory(org_id="acme", agent_id="bot", content=f"Maria books an aisle seat on flight {i}"))
        app.send(StoreMemory(org_id="acme", agent_id="bot", memory_id="m-rare", content="Jonas is allergic to peanuts",
                             tags=("health",), importance=0.9))
        project(vector_settings)
        hits = app.search(SearchQuery("acme", "where does Maria sit on planes", tags=("health",), limit=5))
        assert [h.memory["memory_id"] for h in hits] == ["m-rare"]
        assert app.search(SearchQuery("acme", "x seat", min_importance=0.95)) == []
        app.send(ForgetMemory(org_id="acme", agent_id="bot", memory_id="m-rare"))
        project(vector_settings)
        assert app.search(SearchQuery("acme", "which foods make Jonas sick", mode="semantic", tags=("health",))) == []
        with app._searcher.get()._open().conn.cursor() as cur:  # the row and its vector are gone
            assert cur.execute("SELECT count(*) FROM memory_search WHERE memory_id = 'm-rare'").fetchone() == (0,)


def test_expiry_removes_the_row_and_hides_it_before(vector_settings: Settings) -> None:
    from datetime import UTC, datetime, timedelta

    from commands import ExpireMemory

    past = datetime.now(UTC) - timedelta(minutes=1)
    with App.open(vector_settings, system=True) as app:
        app.migrate()
        app.send(StoreMemory(org_id="acme", agent_id="bot", memory_id="old", content="Jonas is allergic to peanuts",
                             expires_at=past))
        app.send(StoreMemory(org_id="acme", agent_id="bot", memory_id="new", content="Jonas is allergic to pollen"))
        project(vector_settings)
        question = SearchQuery("acme", "what is Jonas allergic to", "semantic")
        assert [h.memory["memory_id"] for h in app.search(question)] == ["new"]  # past its expiry: hidden
        app.send(ExpireMemory(org_id="acme", agent_id="bot", memory_id="old", expires_at=past))
        project(vector_settings)
        with app._searcher.get()._open().conn.cursor() as cur:
            assert cur.execute("SELECT memory_id FROM memory_search").fetchall() == [("new",)]


def test_identical_content_is_embedded_once(vector_settings: Settings) -> None:
    from projections import open_projection

    with App.open(vector_settings) as app:
        app.migrate()
        for agent in ("a", "b", "c"):
            app.send(StoreMemory(org_id="acme", agent_id=agent, content="The boiler needs servicing every autumn"))
        run_projection(vector_settings, "memories", until_caught_up=True)
    projection = open_projection("embeddings", vector_settings)
    try:
        projection.ensure_current()
        from projections import Projector, ProjectorOptions  # noqa: F401 - the runtime applies below
        run_projection(vector_settings, "embeddings", until_caught_up=True)
        with projection.conn.cursor() as cur:  # type: ignore[attr-defined]
            assert cur.execute("SELECT count(*) FROM embedding_cache").fetchone() == (1,)
            assert cur.execute("SELECT count(*) FROM memory_search").fetchone() == (3,)
    finally:
        projection.close()


def test_model_change_is_refused_then_rebuilt_while_searches_answer(vector_settings: Settings) -> None:
    question = "which foods could make Jonas sick"
    with App.open(vector_settings) as app:
        app.migrate()
        app.send(StoreMemory(org_id="acme", agent_id="bot", memory_id="m1", content="Jonas is allergic to peanuts"))
        app.send(StoreMemory(org_id="acme", agent_id="bot", memory_id="m2", content="The wifi password is on the fridge"))
        project(vector_settings)
        old = app.search(SearchQuery("acme", question, "semantic"))
    assert old[0].memory["memory_id"] == "m1"
    with EmbeddingServer({"minilm-meanmax": LocalEmbedder("all-MiniLM-L6-v2-meanmax")}, api_key="k") as server:
        switched = vector_settings.model_copy(update={"embeddings_url": server.url, "embeddings_model": "minilm-meanmax",
                                                      "embeddings_api_key": SecretStr("k")})
        with pytest.raises(OutdatedReadModel, match="memledger replay rebuild embeddings"):
            run_projection(switched, "embeddings", until_caught_up=True)
        with App.open(switched) as app:
            during: list[tuple[str, int]] = []

            def search_meanwhile(_: object) -> None:  # called by the rebuild before its swap
                during.append(app._searcher.get()._open().space() or ("", 0))
                assert app.search(SearchQuery("acme", question, "semantic"))[0].memory["memory_id"] == "m1"

            app.rebuild("embeddings", report=search_meanwhile)
            assert during and set(during) == {("local:all-MiniLM-L6-v2", 384)}
            assert app._searcher.get()._open().space() == ("endpoint:minilm-meanmax", 768)
            after = app.search(SearchQuery("acme", question, "semantic"))
            assert after[0].memory["memory_id"] == "m1" and after[0].similarity != old[0].similarity
            assert app.verify("embeddings").agree
            texts = server.texts
            run_projection(switched, "embeddings", until_caught_up=True)  # accepted now
            assert server.texts == texts + 1  # only the new projector's dimension probe: the rest is cached


@hsettings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=st.text(st.characters(codec="utf-8", exclude_categories=("Cs", "Cc")), min_size=1, max_size=40)
       .filter(str.strip), mode=st.sampled_from(["hybrid", "semantic", "text"]))
def test_a_tenant_never_sees_another_orgs_memories(tenancy_world: Settings, text: str, mode: str) -> None:
    with App.open(tenancy_world, tenant="acme") as app:
        hits = app.search(SearchQuery("acme", text, mode, limit=50))  # type: ignore[arg-type]
        assert all(h.memory["org_id"] == "acme" for h in hits)
        with pytest.raises(Exception, match="no org"):
            app.search(SearchQuery("globex", text, mode))  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def tenancy_world(pgvector_url: str) -> object:  # noqa: F811 - the session fixture
    from vector_server import drop

    settings = make_settings(pgvector_url)
    with App.open(settings) as app:
        app.migrate()
        for org in ("acme", "globex"):
            for content in ("Jonas is allergic to peanuts", "Dana prefers morning meetings", f"{org} secret plan"):
                app.send(StoreMemory(org_id=org, agent_id="bot", content=content))
        project(settings)
    yield settings
    drop(pgvector_url, settings.namespace)


def test_without_pgvector_migrate_succeeds_and_search_says_so_in_one_line(settings: Settings) -> None:
    with App.open(settings) as app:
        app.migrate()
        line = app.search_unavailable()
        assert line is not None and "\n" not in line and "pgvector" in line
        with pytest.raises(SemanticSearchUnavailable, match="semantic search is unavailable"):
            app.search(SearchQuery("acme", "anything"))
        assert app.query.__self__ is app  # the rest of the App still works on this database


def test_the_endpoint_embedder_speaks_openai_and_says_what_failed() -> None:
    import socket

    from ledger.errors import ConfigurationError, EmbeddingsUnavailable
    from projections.embedders.endpoint import EndpointEmbedder

    local = LocalEmbedder()
    with EmbeddingServer({"minilm": local}, api_key="secret") as server:
        remote = EndpointEmbedder(server.url, "minilm", "secret")
        texts = ["Maria books an aisle seat", "Invoices are due on the 5th"]
        for got, want in zip(remote.embed(texts), local.embed(texts)):
            assert sum(a * b for a, b in zip(got, want)) > 0.9999  # the same vectors, over HTTP
        assert remote.dimension == 384
        with pytest.raises(ConfigurationError, match="refused model 'other'"):
            EndpointEmbedder(server.url, "other", "secret").embed(["x"])
        with pytest.raises(ConfigurationError, match="401"):
            EndpointEmbedder(server.url, "minilm", "wrong").embed(["x"])
        remote.close()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # nothing listens on it once closed
    with pytest.raises(EmbeddingsUnavailable, match="unreachable"):
        EndpointEmbedder(f"http://127.0.0.1:{port}/v1", "minilm").embed(["x"])
