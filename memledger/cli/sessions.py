"""Sessions on the command line: ingested whole, or conversations appended message by message.

    memledger session ingest        IngestSession JSON lines -> receipt and queue position each
    memledger session show ID       one session: status, summary, memories, transcript
    memledger session retry ID      process a failed session again
    memledger session append ID     one message of a conversation (the first creates it)
    memledger session messages ID   a conversation's last messages (--last N), from the cache or PostgreSQL
    memledger session close ID      no more messages: hand the conversation to background extraction
"""

from __future__ import annotations

import json
import sys
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.table import Table

from .agents import SourceArg, send_lines
from .common import AgentOpt, JsonOpt, OrgOpt, console, group, open_app, print_json

from ledger.errors import InvalidCommand

if TYPE_CHECKING:
    from ledger.eventlog import Receipt
    from memledger.conversations import RecentMessages
    from projections.hierarchy import SessionTree

session_app = group("Sessions: ingest, show, retry; conversations: append, messages, close.")
RequiredAgentOpt = Annotated[str, typer.Option("--agent", help="The agent the conversation belongs to.")]
KeyOpt = Annotated[str | None, typer.Option("--idempotency-key", help="Makes a retry append nothing.")]


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


@session_app.command("append")
def session_append(session_id: str, org: OrgOpt, agent: RequiredAgentOpt,
                   content: Annotated[str, typer.Option("--content", help="The text; '-' reads stdin.")],
                   role: Annotated[str, typer.Option("--role", help="user|assistant|system|tool")] = "user",
                   metadata: Annotated[str | None, typer.Option("--metadata", help="A JSON object.")] = None,
                   key: KeyOpt = None, as_json: JsonOpt = False) -> None:
    """Append one message to a conversation (AppendMessage); its first message creates it."""
    text = sys.stdin.read() if content == "-" else content
    command = {"type": "AppendMessage", "org_id": org, "agent_id": agent, "session_id": session_id,
               "role": role, "content": text, "idempotency_key": key,
               **({"metadata": parse_object(metadata)} if metadata else {})}
    with open_app() as app:
        receipt = app.append_message(command)
    print_receipt(session_id, receipt, "message", as_json)


@session_app.command("close")
def session_close(session_id: str, org: OrgOpt, agent: RequiredAgentOpt, key: KeyOpt = None,
                  as_json: JsonOpt = False) -> None:
    """Close a conversation (CloseSession): it takes no more messages and is summarized in the background."""
    with open_app() as app:
        receipt = app.close_session(org, session_id, agent, key)
    print_receipt(session_id, receipt, "closed", as_json)


@session_app.command("messages")
def session_messages(session_id: str, org: OrgOpt, agent: AgentOpt = None, as_json: JsonOpt = False,
                     last: Annotated[int, typer.Option("--last", min=1, max=10_000,
                                                       help="How many of the last messages.")] = 10,
                     summary: Annotated[bool, typer.Option("--summary", help="Also the older part's summary.")
                                        ] = False,
                     ) -> None:
    """A conversation's last messages, oldest first; says whether they came from the cache or PostgreSQL."""
    with open_app() as app:
        found = app.recent_messages(org, session_id, last, agent, summary)
    if as_json:
        print_json(found.as_json())
    else:
        print_messages(found)


# -- rendering -------------------------------------------------------------------------------


def parse_object(text: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as e:
        raise InvalidCommand(f"--metadata is not JSON: {e}") from None
    if not isinstance(value, dict):
        raise InvalidCommand("--metadata must be a JSON object, e.g. '{\"channel\": \"web\"}'")
    return value


def print_receipt(session_id: str, receipt: Receipt, what: str, as_json: bool) -> None:
    if as_json:
        print_json({"session_id": session_id, "partition": receipt.partition, "stream_id": receipt.stream_id,
                    "version": receipt.subject_version, "duplicate": receipt.duplicate})
    else:
        again = " (a retry: nothing appended)" if receipt.duplicate else ""
        console.print(f"{session_id} {what} #{receipt.subject_version}: p{receipt.partition} "
                      f"{receipt.stream_id}{again}")


def print_messages(found: RecentMessages) -> None:
    why = f" ({found.cache_error})" if found.cache_error else ""
    console.print(f"[bold]{found.session_id}[/] ({found.org_id}/{found.agent_id}): {len(found.messages)} "
                  f"messages from the {found.source}{why}")
    if found.summary:
        console.print(f"summary of messages 1-{found.summary_through}: {found.summary}")
    for m in found.messages:
        console.print(f"[dim]#{m['seq']} {m['role']}:[/] {m['content']}")



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
