"""`memledger bench search`: the figures of semantic search, on a PostgreSQL with pgvector.

- embeddings/s of the local model, batched (MEMLEDGER_EMBEDDING_BATCH texts per call);
- recall@1/@5 of text, semantic and hybrid on the project's retrieval set;
- write-to-searchable lag: stores sent at a steady rate while the memories and embeddings
  projectors run; per store, from the send to the embeddings checkpoint passing it;
- search latency over N memories with HNSW (App.search end to end, the query's embedding
  included, and the SQL alone), and HNSW recall@10 against an exact scan of the same rows.

The N memories are N distinct sentences (composed from parts, see `sentences`) embedded by
the real model and written straight into the read model's table (COPY), not through the
ledger: at ~100 texts/s here the ledger path would measure the model, not the search.
Each figure is the median of `repeat` runs. Every namespace it makes is dropped at the end.
"""

from __future__ import annotations

import statistics
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from itertools import product
from pathlib import Path
from typing import Any

import orjson
import psycopg

from ledger import Settings
from ledger.events import stream_id_key
from projections.postgres.embeddings import HNSW_EF_CONSTRUCTION, HNSW_M

__all__ = ["SearchBench", "run_search_bench", "sentences"]

#: HNSW ef_search values whose recall@10 and SQL latency the bench reports.
EF_SWEEP = (40, 100, 200, 400)

_WHO = ["Maria", "Tom", "Priya", "Jonas", "Dana", "Kai", "Mei", "Olga", "Ravi", "Sofia", "Ahmed", "Lena", "Carlos",
        "Nina", "Paul", "Elena", "Mark", "Anna", "Sam", "Greta", "Hugo", "Ines", "Jin", "Farid", "Bea"]
_DOES = ["prefers", "asked about", "complained about", "wants to cancel", "forgot", "recommended", "booked",
         "reviewed", "paid for", "needs help with", "is excited about", "lost", "borrowed", "returned", "shared",
         "ordered", "renewed", "upgraded", "scheduled", "postponed"]
_WHAT = ["the aisle seat", "the team offsite", "the invoice export", "the dentist visit", "the yoga class",
         "the boiler repair", "the quarterly report", "the gluten-free menu", "the train tickets", "the VPN access",
         "the parental leave", "the design review", "the wifi password", "the rental car", "the standing desk",
         "the dark mode setting", "the hotel room", "the blood test", "the kids' school trip", "the CRM licence"]
_WHEN = ["on Monday", "last week", "before the holidays", "every morning", "after lunch", "in March", "next month",
         "at the airport", "during the call", "on the weekend", "since January", "at night", "twice a year",
         "for the third time", "without telling anyone", "as soon as possible", "in the new office", "by email",
         "from home", "with the whole team"]


def sentences(n: int) -> list[str]:
    """`n` distinct sentences (up to 25*20*20*20 = 200k)."""
    out = [f"{w} {d} {x} {t}" for (w, d, x, t) in product(_WHO, _DOES, _WHAT, _WHEN)]
    step = max(1, len(out) // n)  # spread over every part, not the first person only
    return out[::step][:n]


@dataclass
class SearchBench:
    figures: dict[str, Any] = field(default_factory=dict)

    def put(self, name: str, value: Any) -> None:
        self.figures[name] = value


def _median_of(repeat: int, once: Callable[[], float]) -> float:
    return statistics.median(once() for _ in range(repeat))


def _pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(p * len(ordered)))]


def embeddings_per_second(settings: Settings, texts: list[str], repeat: int) -> float:
    from projections.embedders import open_embedder

    embedder, batch = open_embedder(settings), settings.embedding_batch
    embedder.embed(texts[:batch])  # load the model

    def once() -> float:
        started = time.perf_counter()
        for i in range(0, len(texts), batch):
            embedder.embed(texts[i:i + batch])
        return len(texts) / (time.perf_counter() - started)
    return _median_of(repeat, once)


def _namespace(settings: Settings) -> Settings:
    return settings.model_copy(update={"namespace": "bs" + uuid.uuid4().hex[:10]})


def _drop(settings: Settings) -> None:
    from ledger.connections import connect_redis
    from ledger.postgres import connect

    with connect(settings, schema="", autocommit=True) as conn:
        for (name,) in conn.execute("SELECT nspname FROM pg_namespace WHERE nspname = %s OR nspname LIKE %s",
                                    (settings.db_schema, settings.db_schema + "\\_%")).fetchall():
            conn.execute(f'DROP SCHEMA "{name}" CASCADE')
    client = connect_redis(settings)
    for pattern in (f"{{{settings.namespace}:*", f"{{{settings.namespace}}}*"):
        keys = list(client.scan_iter(match=pattern, count=1000))
        for i in range(0, len(keys), 500):
            client.delete(*keys[i:i + 500])
    client.close()


def quality(settings: Settings) -> dict[str, dict[str, float]]:
    from memledger.app import App
    from memledger.search_quality import load, recall, store_all
    from projections import run_projection

    with App.open(settings) as app:
        app.migrate()
        data = load()
        store_all(app, "bench", data)
        run_projection(settings, "memories", until_caught_up=True)
        run_projection(settings, "embeddings", until_caught_up=True)
        return {mode: recall(app, "bench", data, mode) for mode in ("text", "semantic", "hybrid")}


def lag(settings: Settings, rate: float, seconds: float) -> dict[str, float]:
    """Write-to-searchable lag (ms) of stores sent at `rate` per second for `seconds`."""
    from commands import StoreMemory
    from memledger.app import App
    from projections import run_projection

    stop = threading.Event()
    pending: list[tuple[int, tuple[int, int], float]] = []
    lags: list[float] = []
    with App.open(settings) as app:
        app.migrate()
        runners = [threading.Thread(target=run_projection, args=(settings, name, False, stop), daemon=True)
                   for name in ("memories", "embeddings")]
        for t in runners:
            t.start()
        texts = sentences(int(rate * seconds) + 50)
        app.send(StoreMemory(org_id="lag", agent_id="warm", memory_id="warm", content="warm up the model"))
        time.sleep(3)
        watcher = threading.Thread(target=_watch, args=(settings, pending, lags, stop), daemon=True)
        watcher.start()
        started = time.perf_counter()
        for i in range(int(rate * seconds)):
            time.sleep(max(0.0, started + i / rate - time.perf_counter()))
            receipt = app.send(StoreMemory(org_id="lag", agent_id=f"a{i % 5}", memory_id=f"m{i}",
                                              content=texts[i]))
            pending.append((receipt.partition, stream_id_key(receipt.stream_id), time.perf_counter()))
        deadline = time.perf_counter() + 30
        while pending and time.perf_counter() < deadline:
            time.sleep(0.05)
        stop.set()
    return {"stores": float(len(lags)), "p50_ms": _pct(lags, 0.5), "p99_ms": _pct(lags, 0.99),
            "max_ms": max(lags), "unseen": float(len(pending))}


def _watch(settings: Settings, pending: list[tuple[int, tuple[int, int], float]], lags: list[float],
           stop: threading.Event) -> None:
    from ledger.postgres import connect

    with connect(settings, autocommit=True) as conn:
        while not stop.is_set():
            rows = conn.execute("SELECT partition, stream_id FROM projection_checkpoints WHERE projection = "
                                "'embeddings'").fetchall()
            now, reached = time.perf_counter(), {int(p): stream_id_key(str(s)) for p, s in rows}
            for item in list(pending):
                if item[0] in reached and reached[item[0]] >= item[1]:
                    lags.append((now - item[2]) * 1000)
                    pending.remove(item)
            time.sleep(0.002)


def _cached_vectors(path: Path | None, texts: list[str], embedder: Any, batch: int,
                    progress: Callable[[str], None]) -> list[list[float]]:
    """The model's vectors of `texts`, kept in `path` (JSON) so that a second run skips the model."""
    if path is not None and path.exists():
        stored: list[list[float]] = orjson.loads(path.read_bytes())
        if len(stored) == len(texts):
            return stored
    vectors: list[list[float]] = []
    for i in range(0, len(texts), batch):
        vectors += embedder.embed(texts[i:i + batch])
        if (i // batch) % 40 == 39 or i + batch >= len(texts):
            progress(f"embedded {len(vectors)}/{len(texts)}")
    if path is not None:
        path.write_bytes(orjson.dumps(vectors))
    return vectors


def load_corpus(settings: Settings, n: int, progress: Callable[[str], None], vectors_file: Path | None = None,
                hnsw: tuple[int, int] = (HNSW_M, HNSW_EF_CONSTRUCTION)) -> tuple[list[str], float]:
    """`n` real-model vectors COPYed into `memory_search`, then the HNSW index; its build seconds."""
    from projections import open_projection
    from projections.embedders import open_embedder
    from projections.postgres.embeddings import content_hash, hnsw_index_sql, vector_text

    from memledger.app import App

    with App.open(settings) as app:
        app.migrate()
    projection = open_projection("embeddings", settings)
    projection.ensure_current()  # claims the space, creates the (empty) HNSW index
    projection.close()
    texts, embedder, batch = sentences(n), open_embedder(settings), 256
    from ledger.postgres import connect

    with connect(settings) as conn:
        conn.execute("DROP INDEX IF EXISTS memory_search_embedding")
        with conn.cursor().copy("COPY memory_search (org_id, agent_id, memory_id, content, tags, importance, "
                                "created_at, updated_at, content_hash, embedding) FROM STDIN") as copy:
            vectors = _cached_vectors(vectors_file, texts, embedder, batch, progress)
            for i in range(0, n, batch):
                chunk = texts[i:i + batch]
                for j, (text, vector) in enumerate(zip(chunk, vectors[i:i + batch])):
                    copy.write_row(("bench", f"a{(i + j) % 7}", f"m{i + j}", text, "{}", 0.5, "2026-01-01T00:00Z",
                                    "2026-01-01T00:00Z", content_hash(text), vector_text(vector)))
        conn.commit()
        started = time.perf_counter()
        conn.execute("SET maintenance_work_mem = '512MB'")
        conn.execute(hnsw_index_sql(embedder.dimension, *hnsw))
        conn.execute("ANALYZE memory_search")
        conn.commit()
    return texts, time.perf_counter() - started


def latencies(settings: Settings, questions: list[str], repeat: int) -> dict[str, float]:
    from memledger.app import App
    from projections.search import Mode, SearchQuery

    out: dict[str, float] = {}
    modes: tuple[Mode, ...] = ("semantic", "text", "hybrid")
    with App.open(settings, tenant="bench") as app:
        for mode in modes:
            for q in questions[:5]:
                app.search(SearchQuery("bench", q, mode))
            runs = []
            for _ in range(repeat):
                times = []
                for q in questions:
                    started = time.perf_counter()
                    app.search(SearchQuery("bench", q, mode))
                    times.append((time.perf_counter() - started) * 1000)
                runs.append((_pct(times, 0.5), _pct(times, 0.99)))
            out[f"{mode}_p50_ms"] = statistics.median(r[0] for r in runs)
            out[f"{mode}_p99_ms"] = statistics.median(r[1] for r in runs)
    return out


def sql_latency_and_recall(settings: Settings, questions: list[str]) -> dict[str, float]:
    """The vector SQL alone (query embedded beforehand), and HNSW recall@10 against exact."""
    from projections.embedders import open_embedder
    from projections.postgres.embeddings import vector_text
    from projections.postgres.search_reads import SearchStore
    from projections.search import SearchQuery

    embedder, store = open_embedder(settings), SearchStore(settings)
    try:
        vectors = [vector_text(v) for v in embedder.embed(questions)]
        dim = embedder.dimension
        exact = [_exact(store.conn, v, dim) for v in vectors]
        out: dict[str, float] = {}
        for ef in EF_SWEEP:
            times, found = [], []
            for q, v, truth in zip(questions, vectors, exact):
                query = SearchQuery("bench", q, "semantic", limit=10)
                started = time.perf_counter()
                ranked, _ = store.rankings(query, v, dim, ef_search=ef)
                times.append((time.perf_counter() - started) * 1000)
                found.append(len({r.key[1] for r in ranked[:10]} & truth) / 10)
            out.update({f"ef{ef}_vector_sql_p50_ms": _pct(times, 0.5), f"ef{ef}_vector_sql_p99_ms": _pct(times, 0.99),
                        f"ef{ef}_hnsw_recall_at_10": statistics.mean(found)})
        return out
    finally:
        store.close()


def _exact(conn: psycopg.Connection[Any], vector: str, dim: int) -> set[str]:
    rows = conn.execute(f"SELECT memory_id FROM memory_search WHERE org_id = 'bench' ORDER BY "
                        f"((embedding::public.vector({dim})) OPERATOR(public.<=>) %s::public.vector({dim})) + 0 "
                        "LIMIT 10", (vector,)).fetchall()
    return {str(r[0]) for r in rows}


def run_search_bench(settings: Settings, memories: int, repeat: int, rate: float, lag_seconds: float,
                     progress: Callable[[str], None], vectors_file: Path | None = None,
                     only_corpus: bool = False,
                     hnsw: tuple[int, int] = (HNSW_M, HNSW_EF_CONSTRUCTION)) -> SearchBench:
    from memledger.search_quality import load

    bench = SearchBench()
    data = load()
    if not only_corpus:
        _small_figures(bench, settings, repeat, rate, lag_seconds, progress)
    questions = [q["query"] for q in data["queries"]]
    with _scratch(settings) as scratch:
        _, seconds = load_corpus(scratch, memories, progress, vectors_file, hnsw)
        bench.put("memories", memories)
        bench.put("hnsw_m_ef_construction", list(hnsw))
        bench.put("hnsw_build_s", round(seconds, 1))
        progress("search latency")
        bench.put("search", latencies(scratch, questions, repeat))
        bench.put("sql", sql_latency_and_recall(scratch, questions))
    return bench


def _small_figures(bench: SearchBench, settings: Settings, repeat: int, rate: float, lag_seconds: float,
                   progress: Callable[[str], None]) -> None:
    progress("embeddings/s")
    bench.put("embeddings_per_s", round(embeddings_per_second(settings, sentences(1024), repeat), 1))
    progress("recall on the retrieval set")
    with _scratch(settings) as scratch:
        bench.put("recall", quality(scratch))
    progress(f"lag at {rate} stores/s")
    with _scratch(settings) as scratch:
        bench.put("lag", lag(scratch, rate, lag_seconds))


class _scratch:
    """A namespace of its own for one step, dropped afterwards."""

    def __init__(self, settings: Settings):
        self.settings = _namespace(settings)

    def __enter__(self) -> Settings:
        return self.settings

    def __exit__(self, *exc: object) -> None:
        _drop(self.settings)


