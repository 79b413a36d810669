"""`memledger search`: memories by meaning and by words (hybrid, semantic, text)."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from .common import AgentOpt, JsonOpt, OrgOpt, SinceOpt, UntilOpt, console, open_app, print_json


def register(app: typer.Typer) -> None:
    app.command("search")(search)


def search(
    text: Annotated[str, typer.Argument(help="What to look for, in your own words.")],
    org: OrgOpt, agent: AgentOpt = None,
    mode: Annotated[str, typer.Option("--mode", help="hybrid (default) | semantic | text")] = "hybrid",
    tag: Annotated[list[str] | None, typer.Option("--tag", help="Repeat: every tag must be on the memory.")] = None,
    since: SinceOpt = None, until: UntilOpt = None,
    min_importance: Annotated[float | None, typer.Option("--min-importance", min=0.0, max=1.0)] = None,
    limit: Annotated[int, typer.Option("--limit", "-n", min=1, max=100)] = 10,
    as_json: JsonOpt = False,
) -> None:
    """Search an org's memories; each hit shows its score and which rankings found it."""
    from projections.search import SearchQuery

    query = SearchQuery(org, text, mode, agent, tuple(t.lower() for t in tag or ()),  # type: ignore[arg-type]
                        since, until, min_importance, limit)
    with open_app() as app:
        hits = app.search(query)
    if as_json:
        print_json({"mode": mode, "hits": [h.as_dict() for h in hits]})
        return
    table = Table(title=f"{len(hits)} hits in {org} ({mode})")
    for column in ("score", "vector", "text", "agent", "memory", "content"):
        table.add_column(column)
    for h in hits:
        table.add_row(f"{h.score:.4f}", _rank(h.vector_rank), _rank(h.text_rank), h.memory["agent_id"],
                      h.memory["memory_id"], h.memory["content"][:80])
    console.print(table)


def _rank(rank: int | None) -> str:
    return "-" if rank is None else f"#{rank}"
