"""Ingested sessions on the command line.

    memledger session ingest     IngestSession JSON lines -> receipt and queue position each
    memledger session show ID    one session: status, summary, memories, transcript
    memledger session retry ID   process a failed session again
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table

from .agents import SourceArg, send_lines
from .common import AgentOpt, JsonOpt, OrgOpt, console, group, open_app, print_json

if TYPE_CHECKING:
    from projections.hierarchy import SessionTree

session_app = group("Ingested sessions: ingest, show, retry.")


def register(app: typer.Typer) -> None:
    app.add_typer(session_app, name="session")


@session_app.command("ingest")
def session_ingest(source: typer.FileBinaryRead = SourceArg, as_json: JsonOpt = False) -> None:
    """Append sessions (IngestSession JSON lines, `type` may be left out); each returns at once
    with its receipt and queue position.

    Reads and reports exactly as `memledger send` does, one outcome per line; exits 2 when
    any line was rejected. Refused as a whole, before anything is appended, when the
    namespace was never migrated (there is no queue to report a position in).
    """
    with open_app() as app:
        app.require_read_models()
        send_lines(app, app.ingest_many, source, as_json, only="IngestSession")


@session_app.command("show")
def session_show(session_id: str, org: OrgOpt, agent: AgentOpt = None, as_json: JsonOpt = False,
                 transcript: Annotated[bool, typer.Option("--transcript", help="Also print the transcript.")] = False,
                 ) -> None:
    """One session: status, summary, the memories extracted from it, and (with --transcript) the transcript."""
    with open_app() as app:
        tree = app.session(org, session_id, agent)
    if as_json:
        print_json({"session": tree.session, "summary": tree.summary, "discrete": tree.discrete})
    else:
        print_session(tree, transcript)


@session_app.command("retry")
def session_retry(session_id: str, org: OrgOpt, agent: AgentOpt = None, as_json: JsonOpt = False,
                  reason: Annotated[str | None, typer.Option("--reason", help="Recorded with the retry.")] = None,
                  force: Annotated[bool, typer.Option("--force", help="Retry even if not marked failed.")] = False,
                  ) -> None:
    """Process a failed session again (appends SessionRetryRequested; the enqueuer re-enqueues it)."""
    with open_app(system=True) as app:  # an operator's: RetrySession is an internal command
        receipt = app.retry_session(org, session_id, agent, reason, force)
    if as_json:
        print_json({"session_id": session_id, "partition": receipt.partition, "stream_id": receipt.stream_id})
    else:
        console.print(f"retry of {session_id} requested: p{receipt.partition} {receipt.stream_id}")


# -- rendering -------------------------------------------------------------------------------


def print_session(tree: SessionTree, transcript: bool) -> None:
    s = tree.session
    purged = f", transcript purged {s['transcript_purged_at']:%Y-%m-%d}" if s["transcript_purged_at"] else ""
    console.print(f"[bold]{s['session_id']}[/] ({s['org_id']}/{s['agent_id']}): {s['status']}, "
                  f"{s['message_count']} messages, ingested {s['ingested_at']:%Y-%m-%d %H:%M:%S}{purged}")
    if s["error"]:
        console.print(f"[red]error:[/] {s['error']}")
    for m in tree.summary:
        console.print(f"summary ({m['memory_id']}): {m['content']}")
    console.print(discrete_table(tree))
    if transcript and s["transcript"]:
        for message in s["transcript"]:
            console.print(f"[dim]{message['role']}:[/] {message['content']}")


def discrete_table(tree: SessionTree) -> Table:
    table = Table("memory", "type", "imp.", "tags", "content", title=f"{len(tree.discrete)} discrete memories")
    for m in tree.discrete:
        table.add_row(m["memory_id"], m["memory_type"], f"{m['importance']:.2f}", ", ".join(m["tags"]), m["content"])
    return table
