"""Recall of search on the project's retrieval set (tests/data/retrieval.json): the test
that asserts hybrid >= text and semantic, and `memledger bench search`, both use it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from .app import App

__all__ = ["RETRIEVAL_SET", "load", "recall", "store_all"]

RETRIEVAL_SET = Path(__file__).resolve().parents[1] / "tests" / "data" / "retrieval.json"


def load(path: Path = RETRIEVAL_SET) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(path.read_text())
    return data


def store_all(app: App, org: str, data: dict[str, Any]) -> None:
    from commands import StoreMemory

    app.send_many([StoreMemory(org_id=org, agent_id=m["agent"], memory_id=m["id"], content=m["content"])
                   for m in data["memories"]])


def recall(app: App, org: str, data: dict[str, Any], mode: str) -> dict[str, float]:
    """recall@1 and recall@5 of `mode` over the set's queries."""
    from projections.search import SearchQuery

    at1 = at5 = 0
    for q in data["queries"]:
        ids = [h.memory["memory_id"] for h in app.search(SearchQuery(org, q["query"], mode, limit=5))]  # type: ignore[arg-type]
        at1 += ids[:1] == [q["expected"]]
        at5 += q["expected"] in ids
    n = len(data["queries"])
    return {"recall@1": at1 / n, "recall@5": at5 / n}
