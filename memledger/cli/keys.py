"""API keys on the command line (operators only: these commands append internal commands).

    memledger keys create --org ORG --role ROLE   issue a key; its secret is printed once
    memledger keys list [--org ORG]               keys, never their secrets or hashes
    memledger keys revoke KEY_ID --org ORG        revoke a key (it stops working within 2 s)
"""

from __future__ import annotations

import getpass
from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table

from memledger.principal import ROLES

from .common import AgentOpt, JsonOpt, OrgOpt, console, group, open_app, print_json

if TYPE_CHECKING:
    from memledger.keyring import IssuedKey
    from projections.postgres.api_keys import ApiKey

keys_app = group("API keys: create, list, revoke.")

RoleOpt = Annotated[str, typer.Option("--role", help=f"What the key may do: {', '.join(ROLES)}.")]
LabelOpt = Annotated[str | None, typer.Option("--label", help="A note saying whose key it is (up to 200 characters).")]
ReasonOpt = Annotated[str | None, typer.Option("--reason", help="Recorded with the revocation.")]


def register(app: typer.Typer) -> None:
    app.add_typer(keys_app, name="keys")


def operator() -> str:
    """The actor the ledger records for keys issued or revoked from this shell."""
    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):  # no user name in this environment (some containers)
        return "cli"


@keys_app.command("create")
def keys_create(org: OrgOpt, role: RoleOpt, agent: AgentOpt = None, label: LabelOpt = None,
                as_json: JsonOpt = False) -> None:
    """Issue an API key of ORG. An agent key writes and reads the org (with --agent, only as
    that agent); an analyst key reads; an operator key reads and runs maintenance.

    The secret is printed once and stored nowhere (only its hash is): keep it now.
    """
    with open_app(system=True) as app:
        issued = app.issue_key(org, role, agent, label, actor=operator())
    if as_json:
        print_json({**issued.as_json(), "note": "the secret is shown only once"})
    else:
        print_issued(issued)


@keys_app.command("list")
def keys_list(org: Annotated[str | None, typer.Option("--org", help="Only this org's keys.")] = None,
              as_json: JsonOpt = False) -> None:
    """API keys, oldest first: id, org, role, agent, label, who issued and revoked them (never a secret)."""
    with open_app() as app:
        keys = app.keys(org)
    if as_json:
        print_json([k.as_json() for k in keys])
    else:
        console.print(keys_table(keys))


@keys_app.command("revoke")
def keys_revoke(key_id: str, org: OrgOpt, reason: ReasonOpt = None, as_json: JsonOpt = False) -> None:
    """Revoke a key of ORG: servers refuse it within 2 s of this command returning."""
    with open_app(system=True) as app:
        receipt = app.revoke_key(org, key_id, reason, actor=operator())
    if as_json:
        print_json({"key_id": key_id, "org_id": org, "revoked": True,
                    "position": f"{receipt.partition}/{receipt.stream_id}"})
    else:
        console.print(f"key {key_id} of {org} revoked (p{receipt.partition} {receipt.stream_id})")


# -- rendering -------------------------------------------------------------------------------


def print_issued(issued: IssuedKey) -> None:
    scope = f", agent {issued.agent_id} only" if issued.agent_id else ""
    typer.echo(f"{issued.role} key {issued.key_id} of org {issued.org_id}{scope}:", err=True)
    typer.echo(issued.secret)  # alone on stdout, so `$(memledger keys create ...)` captures it
    typer.echo("This secret is shown only once and stored nowhere: keep it now.", err=True)


def keys_table(keys: list[ApiKey]) -> Table:
    table = Table("key", "org", "role", "agent", "label", "issued", "by", "revoked", title=f"{len(keys)} API keys")
    for k in keys:
        revoked = f"{k.revoked_at:%Y-%m-%d %H:%M:%S}" + (f" ({k.revoke_reason})" if k.revoke_reason else "") \
            if k.revoked_at else ""
        table.add_row(k.key_id, k.org_id, k.role, k.agent_id or "*", k.label or "", f"{k.issued_at:%Y-%m-%d %H:%M:%S}",
                      k.issued_by or "", revoked)
    return table
