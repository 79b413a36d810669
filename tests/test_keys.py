"""API keys: issued and revoked as ledger events, projected into `api_keys`, turned into principals.

Real Redis and PostgreSQL (the `settings` fixture's namespace); the CLI runs in-process
through typer's CliRunner (no HTTP server is involved in keys).
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timezone
from typing import Any

import orjson
import pytest
from typer.testing import CliRunner, Result

from commands import StoreMemory, open_bus
from commands.decide import check, decide
from commands.models import IssueKey, RevokeKey
from ledger import Settings, open_log
from ledger.errors import (
    AlreadyRevoked,
    Forbidden,
    InvalidCommand,
    NotFound,
    NotPermitted,
    SubjectExists,
    Unauthenticated,
    Unauthorized,
    UnknownSubject,
)
from ledger.eventlog import SubjectState
from ledger.events import KEYS_AGENT, KeyIssued
from ledger.ids import uuid7
from memledger.app import App
from memledger.cli import app as cli
from memledger.cli.common import settings as cli_settings
from memledger.keyring import BAD_KEY, KeyCache
from memledger.principal import Principal, mint_secret, secret_hash, split_secret
from projections import open_projection, run_projection
from projections.postgres import migrate
from replay.rebuild import rebuild

HASH = "0" * 64


@pytest.fixture
def admin(settings: Settings) -> Iterator[App]:
    """An operator's App (system: it may send IssueKey/RevokeKey) on a migrated namespace."""
    migrate.upgrade(settings)
    with App.open(settings, system=True) as app:
        yield app


@pytest.fixture
def env(settings: Settings) -> Iterator[dict[str, str]]:
    cli_settings.cache_clear()
    yield {"MEMLEDGER_REDIS_URL": settings.redis_url or "", "MEMLEDGER_DATABASE_URL": settings.database_url or "",
           "MEMLEDGER_NAMESPACE": settings.namespace, "MEMLEDGER_PARTITIONS": str(settings.partitions),
           "MEMLEDGER_ALLOW_VOLATILE": "1"}
    cli_settings.cache_clear()


def run(env: dict[str, str], *args: str) -> Result:
    cli_settings.cache_clear()
    return CliRunner().invoke(cli, list(args), env=env)


def appended(settings: Settings) -> int:
    log = open_log(settings)
    try:
        return sum(log.length(p) for p in range(settings.partitions))
    finally:
        log.close()


def principal_app(settings: Settings, admin: App, role: str, org: str = "acme", agent: str | None = None) -> App:
    issued = admin.issue_key(org, role, agent)
    return App.for_principal(settings, admin.authenticate(issued.secret))


def store(org: str, agent: str, memory_id: str, **extra: Any) -> dict[str, Any]:
    return {"type": "StoreMemory", "org_id": org, "agent_id": agent, "memory_id": memory_id,
            "content": f"about {memory_id}", **extra}


# -- the pure parts --------------------------------------------------------------------------


def test_a_secret_names_its_key_and_only_its_hash_is_kept() -> None:
    secret = mint_secret("key_" + "ab" * 16)
    assert split_secret(secret) == "key_" + "ab" * 16
    assert secret_hash(secret) != secret_hash(mint_secret("key_" + "ab" * 16))  # random part differs
    for bad in ("", "mlk_", secret + "x", secret[:-1], secret + "\n", " " + secret, secret.replace("mlk_", "mlk-")):
        assert split_secret(bad) is None, bad


def test_roles_say_who_writes_reads_and_operates() -> None:
    agent, analyst, operator = (Principal("key_x", "acme", "agent"), Principal("key_x", "acme", "analyst"),
                                Principal("key_x", "acme", "operator"))
    assert (agent.can_write, analyst.can_write, operator.can_write) == (True, False, False)
    assert (agent.can_operate, analyst.can_operate, operator.can_operate) == (False, False, True)
    assert agent.can_read and analyst.can_read and operator.can_read
    signed = agent.sign(store("acme", "a1", "m1", actor="someone-else"))
    assert signed["actor"] == "key_x"  # type: ignore[index]


def test_decide_issues_once_and_revokes_once() -> None:
    issue = IssueKey(org_id="acme", role="agent", secret_hash=HASH)
    decision = decide(issue, datetime.now(timezone.utc), uuid7)
    assert (decision.kind, decision.subject_id, decision.mode) == ("k", issue.key_id, "create")
    [event] = decision.events
    assert event.agent_id == KEYS_AGENT and event.data == KeyIssued(role="agent", secret_hash=HASH)
    revoke = decide(RevokeKey(org_id="acme", key_id=issue.key_id), datetime.now(timezone.utc), uuid7)
    assert revoke.mode == "end"
    assert isinstance(check(SubjectState(1, "live"), "create", None), SubjectExists)
    assert check(SubjectState(), "end", None) is not None  # unknown key
    assert check(SubjectState(2, "ended"), "end", None) is not None  # revoked twice


# -- issuing, listing, revoking through the CLI ----------------------------------------------


def test_cli_creates_lists_and_revokes_a_key(admin: App, env: dict[str, str]) -> None:
    # Given a key created on the command line
    created = run(env, "keys", "create", "--org", "acme", "--role", "agent", "--label", "support bot", "--json")
    assert created.exit_code == 0, created.output
    issued = orjson.loads(created.stdout)
    assert issued["note"] == "the secret is shown only once" and issued["role"] == "agent"
    # Then it authenticates at once (create waits for the keys read model)
    assert admin.authenticate(issued["secret"]) == Principal(issued["key_id"], "acme", "agent", None)
    # And listing shows it, never its secret nor the secret's hash
    listed = run(env, "keys", "list", "--org", "acme", "--json")
    assert listed.exit_code == 0, listed.output
    [row] = orjson.loads(listed.stdout)
    assert (row["key_id"], row["label"], row["revoked"], row["issued_by"][:3]) == (
        issued["key_id"], "support bot", False, "cli")
    assert issued["secret"] not in listed.output and secret_hash(issued["secret"]) not in listed.output
    assert orjson.loads(run(env, "keys", "list", "--org", "other", "--json").stdout) == []
    # When it is revoked
    revoked = run(env, "keys", "revoke", issued["key_id"], "--org", "acme", "--reason", "leaked")
    assert revoked.exit_code == 0, revoked.output
    # Then a fresh process refuses it, and the list says why
    with App.open(admin.settings) as fresh, pytest.raises(Unauthenticated):
        fresh.authenticate(issued["secret"])
    [row] = orjson.loads(run(env, "keys", "list", "--json").stdout)
    assert (row["revoked"], row["revoke_reason"]) == (True, "leaked")


def test_cli_prints_the_secret_alone_on_stdout(admin: App, env: dict[str, str]) -> None:
    created = run(env, "keys", "create", "--org", "acme", "--role", "analyst")
    assert created.exit_code == 0, created.output
    secret = created.stdout.strip()
    assert split_secret(secret) is not None
    assert "shown only once" in created.stderr
    assert admin.authenticate(secret).role == "analyst"


def test_revoking_twice_or_an_unknown_key_is_refused_clearly(admin: App, env: dict[str, str]) -> None:
    issued = admin.issue_key("acme", "analyst")
    admin.revoke_key("acme", issued.key_id)
    before = appended(admin.settings)
    with pytest.raises(AlreadyRevoked, match="already revoked") as again:
        admin.revoke_key("acme", issued.key_id)
    assert again.value.code == "already_revoked"
    with pytest.raises(UnknownSubject, match="no API key"):
        admin.revoke_key("acme", "key_" + "0" * 32)
    with pytest.raises(UnknownSubject):  # another org's key does not exist for this org
        admin.revoke_key("globex", issued.key_id)
    assert appended(admin.settings) == before
    cli_again = run(env, "keys", "revoke", issued.key_id, "--org", "acme")
    assert cli_again.exit_code != 0 and isinstance(cli_again.exception, AlreadyRevoked)


def test_an_existing_key_id_is_refused(admin: App) -> None:
    command = IssueKey(org_id="acme", role="agent", secret_hash=HASH)
    admin.send(command)
    with pytest.raises(SubjectExists):
        admin.send(command.model_copy(update={"role": "operator"}))


def test_agents_cannot_mint_or_revoke_keys_over_the_bus(admin: App) -> None:
    before = appended(admin.settings)
    bus = open_bus(admin.settings)
    try:
        with pytest.raises(Unauthorized):
            bus.send({"type": "IssueKey", "org_id": "acme", "role": "operator", "secret_hash": HASH})
        with pytest.raises(Unauthorized):
            bus.send({"type": "RevokeKey", "org_id": "acme", "key_id": "key_" + "1" * 32})
    finally:
        bus.log.close()
    agent = principal_app(admin.settings, admin, "agent")
    with agent:
        [outcome] = agent.send_many([{"type": "IssueKey", "org_id": "acme", "role": "operator", "secret_hash": HASH}])
        assert isinstance(outcome, Unauthorized)
        with pytest.raises(Forbidden):
            agent.issue_key("acme", "operator")
    with principal_app(admin.settings, admin, "operator") as operator:
        with pytest.raises(NotPermitted):  # a key's App is never a system App, an operator's neither
            operator.issue_key("acme", "operator")
    assert appended(admin.settings) == before + 2  # the two keys' own KeyIssued only


@pytest.mark.parametrize("field, value, message", [
    ("label", "bad\x00label", "NUL"),
    ("label", "x" * 201, "at most 200"),
    ("role", "superuser", "'agent', 'analyst' or 'operator'"),
    ("agent", "no spaces allowed", "key_agent_id"),
])
def test_hostile_key_input_is_refused_and_appends_nothing(admin: App, env: dict[str, str], field: str, value: str,
                                                          message: str) -> None:
    before = appended(admin.settings)
    given = {"role": "agent", "agent": None, "label": None, field: value}
    with pytest.raises(InvalidCommand, match=message):
        admin.issue_key("acme", given["role"], given["agent"], given["label"])
    result = run(env, "keys", "create", "--org", "acme", *(x for k, v in given.items() if v for x in (f"--{k}", v)))
    assert result.exit_code != 0 and isinstance(result.exception, InvalidCommand)
    assert appended(admin.settings) == before


def test_a_hostile_org_is_refused(admin: App) -> None:
    before = appended(admin.settings)
    with pytest.raises(InvalidCommand, match="org_id"):
        admin.issue_key("ac me\x00", "agent")
    assert appended(admin.settings) == before


# -- authentication --------------------------------------------------------------------------


def test_unknown_malformed_and_revoked_keys_get_one_answer(admin: App) -> None:
    good = admin.issue_key("acme", "agent", "a1", "bot")
    gone = admin.issue_key("acme", "agent")
    admin.revoke_key("acme", gone.key_id)
    assert admin.authenticate(good.secret) == Principal(good.key_id, "acme", "agent", "a1")
    forged = good.secret[:-4] + ("AAAA" if not good.secret.endswith("AAAA") else "BBBB")  # right id, wrong secret
    unknown = mint_secret("key_" + "f" * 32)
    candidates: list[Any] = [forged, unknown, gone.secret, "", "mlk_", "Bearer " + good.secret, good.secret + "\x00",
                             "x" * 100_000, "mlk_key_\ud800", None, 42]
    answers = set()
    for secret in candidates:
        with pytest.raises(Unauthenticated) as refused:
            admin.authenticate(secret)
        answers.add(str(refused.value))
    assert answers == {BAD_KEY}


def test_a_revoked_key_stops_authenticating_when_the_cache_window_ends(admin: App) -> None:
    now = [1000.0]
    admin.key_cache = KeyCache(clock=lambda: now[0])
    issued = admin.issue_key("acme", "analyst")
    assert admin.authenticate(issued.secret).key_id == issued.key_id
    admin.revoke_key("acme", issued.key_id)
    now[0] += 1.9  # within the 2 s window, the accepted key may still be served from the cache
    assert admin.authenticate(issued.secret).key_id == issued.key_id
    now[0] += 0.2
    with pytest.raises(Unauthenticated):
        admin.authenticate(issued.secret)


def test_with_the_cache_off_revocation_is_immediate(admin: App) -> None:
    admin.key_cache = KeyCache(ttl_s=0)
    issued = admin.issue_key("acme", "operator")
    assert admin.authenticate(issued.secret).can_operate
    admin.revoke_key("acme", issued.key_id)
    with pytest.raises(Unauthenticated):
        admin.authenticate(issued.secret)


# -- what a key's App may do -----------------------------------------------------------------


def test_analyst_and_operator_keys_cannot_write(admin: App) -> None:
    for role in ("analyst", "operator"):
        with principal_app(admin.settings, admin, role) as app:
            before = appended(admin.settings)
            with pytest.raises(Forbidden, match="only agent keys write"):
                app.send(StoreMemory(org_id="acme", agent_id="a1", content="x"))
            with pytest.raises(Forbidden):
                app.send_many([store("acme", "a1", "m1")])
            assert appended(admin.settings) == before


def test_maintenance_needs_an_operator_key(admin: App) -> None:
    for role in ("agent", "analyst"):
        with principal_app(admin.settings, admin, role) as app:
            for call in (app.lag, lambda: app.trim(30), lambda: app.redrive(), app.keys,
                         lambda: app.retry_session(None, "ses_1")):
                with pytest.raises(Forbidden, match="needs an operator key"):
                    call()
    with principal_app(admin.settings, admin, "operator") as operator:
        assert [k.org_id for k in operator.keys()] == ["acme"] * 3
        with pytest.raises(NotPermitted):  # namespace-wide: not for one org's key
            operator.lag()


def test_an_agent_key_writes_only_as_its_agent(admin: App) -> None:
    with principal_app(admin.settings, admin, "agent", agent="a1") as app:
        before = appended(admin.settings)
        mine, theirs = app.send_many([store("acme", "a1", "m1"), store("acme", "a2", "m2")])
        assert not isinstance(mine, Exception)
        assert isinstance(theirs, Unauthorized)
        assert appended(admin.settings) == before + 1


def test_a_key_of_one_org_never_reads_another(admin: App) -> None:
    admin.send(store("globex", "a1", "secret-plan"))
    run_projection(admin.settings, "memories", until_caught_up=True)
    assert admin.get("globex", "secret-plan")["content"] == "about secret-plan"
    with principal_app(admin.settings, admin, "operator", org="acme") as app:
        for org in ("globex", None):
            with pytest.raises(NotFound):
                app.get(org, "secret-plan")
        with pytest.raises(NotFound):
            app.keys("globex")


def test_history_names_the_key_that_wrote_each_event(admin: App, env: dict[str, str]) -> None:
    with principal_app(admin.settings, admin, "agent") as app:
        key_id = app.principal.key_id  # type: ignore[union-attr]
        app.send(StoreMemory(org_id="acme", agent_id="a1", memory_id="m1", content="tea", actor="not-me"))
        app.send({"type": "TagMemory", "org_id": "acme", "agent_id": "a1", "memory_id": "m1", "tags": ["drinks"]})
    run_projection(admin.settings, "archive", until_caught_up=True)
    run_projection(admin.settings, "memories", until_caught_up=True)
    shown = run(env, "memory", "show", "m1", "--org", "acme", "--history", "--json")
    assert shown.exit_code == 0, shown.output
    history = orjson.loads(shown.stdout)["history"]
    assert [(h["type"], h["actor"]) for h in history] == [("MemoryStored", key_id), ("MemoryTagged", key_id)]


# -- the read model --------------------------------------------------------------------------


def test_a_rebuilt_keys_read_model_equals_the_live_one(admin: App) -> None:
    keys = [admin.issue_key(org, role) for org in ("acme", "globex") for role in ("agent", "analyst", "operator")]
    admin.revoke_key("acme", keys[1].key_id, "rotated")
    admin.send(store("acme", "a1", "m1"))  # other events pass through it untouched
    run_projection(admin.settings, "archive", until_caught_up=True)
    run_projection(admin.settings, "api_keys", until_caught_up=True)
    live = open_projection("api_keys", admin.settings)
    try:
        before, checkpoints = live.digest(), live.checkpoints()
    finally:
        live.close()
    listed = admin.keys()
    assert len(listed) == 6 and [k.key_id for k in listed if k.revoked] == [keys[1].key_id]

    result = rebuild(admin.settings, "api_keys")

    assert result.swapped
    rebuilt = open_projection("api_keys", admin.settings)
    try:
        assert (rebuilt.digest(), rebuilt.checkpoints()) == (before, checkpoints)
    finally:
        rebuilt.close()
    assert admin.keys() == listed
    assert admin.authenticate(keys[0].secret).key_id == keys[0].key_id
