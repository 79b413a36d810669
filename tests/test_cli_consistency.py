"""The CLI as a new user meets it: one meaning per short flag, --json on every read command, bare
groups print help, a never-migrated namespace is one line (exit 3), the embedded servers can be
inspected and stopped, and no CLI module holds a driver or SQL."""

from __future__ import annotations

import ast
import os
import re
import subprocess
import sys
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import psycopg
import pytest
import redis
import typer
from typer.testing import CliRunner

from ledger import Settings
from ledger.embedded import embedded_redis_url
from memledger.app import App
from memledger.cli import app
from memledger.cli.common import settings as cli_settings

CLI = Path(__file__).resolve().parents[1] / "memledger" / "cli"
DRIVERS = ("redis", "psycopg", "sqlalchemy")
SQL = re.compile(r"\b(SELECT|INSERT|UPDATE|DELETE)\b.+\b(FROM|INTO|SET|WHERE)\b", re.S)
GROUPS = ["worker", "session", "query", "memory", "log", "projector", "replay", "ledger", "servers"]
READ_COMMANDS = ["info", "log show", "log tail", "query memories", "query hierarchy", "memory show", "stats",
                 "trending", "analytics", "feed", "watch", "lag", "health", "replay status", "replay dead-letters",
                 "worker status", "session show", "servers status"]
SESSION = '{"org_id": "acme", "agent_id": "a1", "transcript": [{"role": "user", "content": "hi"}]}\n'


def env(settings: Settings, **extra: str) -> dict[str, str]:
    return {**os.environ, "MEMLEDGER_REDIS_URL": str(settings.redis_url),
            "MEMLEDGER_DATABASE_URL": str(settings.database_url), "MEMLEDGER_NAMESPACE": settings.namespace,
            "MEMLEDGER_PARTITIONS": str(settings.partitions), "MEMLEDGER_ALLOW_VOLATILE": "1", **extra}


def memledger(environ: dict[str, str], *args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    """The installed console script, as a user runs it."""
    script = Path(sys.executable).parent / "memledger"
    return subprocess.run([str(script), *args], env=environ, input=stdin, capture_output=True, text=True, timeout=60)


@pytest.fixture
def runner_env(settings: Settings) -> Iterator[dict[str, str]]:
    cli_settings.cache_clear()
    yield env(settings)
    cli_settings.cache_clear()


def commands(group: Any = None, path: str = "") -> Iterator[tuple[str, Any]]:
    """Every leaf command of the CLI, by its full name ("replay status")."""
    group = group or typer.main.get_command(app)
    subcommands = getattr(group, "commands", None)  # a group (typer's own click types)
    if subcommands is None:
        yield path, group
        return
    for name, sub in subcommands.items():
        yield from commands(sub, f"{path} {name}".strip())


def namespace_untouched(settings: Settings, client: redis.Redis) -> bool:
    keys = list(client.scan_iter(match=f"{{{settings.namespace}*", count=1000))
    with psycopg.connect(str(settings.database_url)) as conn:
        schema = conn.execute("SELECT 1 FROM pg_namespace WHERE nspname = %s", (settings.namespace,)).fetchone()
    return not keys and schema is None


# -- a namespace never migrated ----------------------------------------------------------------------


@pytest.mark.parametrize("args", [
    ["query", "memories", "--org", "acme"],
    ["memory", "show", "m1", "--org", "acme"],
    ["lag"],
    ["replay", "status"],
    ["worker", "status"],
    ["session", "ingest"],
])
def test_a_never_migrated_namespace_is_one_line_naming_migrate(settings: Settings, args: list[str]) -> None:
    result = memledger(env(settings), *args, stdin=SESSION)

    assert result.returncode == 3, result.stderr
    assert "Traceback" not in result.stderr
    [line] = result.stderr.strip().splitlines()
    assert "never migrated" in line and "run `memledger migrate`" in line
    with App.open(settings) as inspect:
        assert sum(p.length for p in inspect.info().partitions) == 0  # session ingest appended nothing


# -- bare groups --------------------------------------------------------------------------------------


@pytest.mark.parametrize("group", [[], *([g] for g in GROUPS)])
def test_a_bare_group_prints_its_help_and_does_nothing(runner_env: dict[str, str], settings: Settings,
                                                       redis_client: redis.Redis, group: list[str]) -> None:
    result = CliRunner().invoke(app, group, env=runner_env)

    assert result.exit_code == 0, result.output
    assert "Usage:" in result.output and "Commands" in result.output
    assert namespace_untouched(settings, redis_client)  # `memledger worker` used to start workers


# -- flags ----------------------------------------------------------------------------------------------


def test_each_short_flag_has_one_meaning() -> None:
    meanings: dict[str, set[str]] = defaultdict(set)
    for _, command in commands():
        for param in command.params:
            shorts = [o for o in (*param.opts, *param.secondary_opts) if re.fullmatch(r"-[A-Za-z]", o)]
            longs = [o for o in param.opts if o.startswith("--")]
            for short in shorts:
                meanings[short].add(longs[0])
    assert {short: longs for short, longs in meanings.items() if len(longs) > 1} == {}
    assert meanings["-p"] == {"--projection"}


def test_every_read_command_has_json() -> None:
    found = dict(commands())
    missing = [name for name in READ_COMMANDS
               if not any("--json" in p.opts and getattr(p, "is_flag", False) for p in found[name].params)]
    assert missing == []


def test_time_ranges_are_since_and_until_and_old_names_still_work(runner_env: dict[str, str]) -> None:
    def analytics(*args: str) -> object:
        cli_settings.cache_clear()
        result = CliRunner().invoke(app, ["analytics", "--org", "acme", "--json", *args], env=runner_env)
        assert result.exit_code == 0, result.output
        return orjson.loads(result.output)

    new = analytics("--since", "2026-01-01", "--until", "2026-01-03")
    assert new == analytics("--from", "2026-01-01", "--to", "2026-01-03")
    assert [d["day"] for d in new["days"]] == ["2026-01-01", "2026-01-02", "2026-01-03"]  # type: ignore[index]
    help_text = CliRunner().invoke(app, ["analytics", "--help"], env={**runner_env, "COLUMNS": "200"}).output
    assert "--since" in help_text and "--from" not in help_text


def test_info_help_describes_its_output() -> None:
    help_text = CliRunner().invoke(app, ["info", "--help"], env={"COLUMNS": "200"}).output
    for what in ("namespace", "persistence", "NOT durable", "query cache", "partition", "head"):
        assert what in help_text


# -- the embedded servers --------------------------------------------------------------------------------


@pytest.fixture
def home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    home = tmp_path_factory.mktemp("home")  # short: a unix socket's path is limited to ~100 bytes
    yield home
    pid_file = home / "redis" / "redis.pid"
    if pid_file.exists():  # the test failed before its stop: do not leave a server behind
        os.kill(int(pid_file.read_text()), 15)


def servers(home: Path, command: str) -> tuple[int, list[dict[str, object]]]:
    result = memledger({**os.environ, "MEMLEDGER_HOME": str(home)}, "servers", command, "--json")
    assert "Traceback" not in result.stderr, result.stderr
    return result.returncode, orjson.loads(result.stdout)["servers"]


def test_servers_status_with_none_running_starts_nothing(home: Path) -> None:
    code, found = servers(home, "status")

    assert code == 0
    assert [(s["name"], s["running"], s["pid"]) for s in found] == [("redis", False, None), ("postgresql", False, None)]
    assert list(home.iterdir()) == []  # nothing was started or created
    assert servers(home, "stop") == (0, found)


def test_servers_stop_stops_the_embedded_redis(home: Path) -> None:
    # Given the embedded Redis, started as `memledger demo` would start it
    embedded_redis_url(home)
    pid = int((home / "redis" / "redis.pid").read_text())
    code, [redis_status, _] = servers(home, "status")
    assert code == 0 and (redis_status["running"], redis_status["pid"]) == (True, pid)
    assert redis_status["address"] == f"unix://{home / 'redis' / 'redis.sock'}"

    # When it is stopped
    code, [redis_status, _] = servers(home, "stop")

    # Then it shut down cleanly (its pid file removed by the server itself) and status agrees
    assert code == 0 and redis_status["running"] is False
    assert not (home / "redis" / "redis.pid").exists()
    assert servers(home, "status")[1][0]["running"] is False


# -- the CLI is a thin layer ------------------------------------------------------------------------------


def test_no_cli_module_imports_a_driver_or_holds_sql() -> None:
    for path in sorted(CLI.glob("*.py")):
        tree = ast.parse(path.read_text(), str(path))
        for node in ast.walk(tree):
            where = f"{path.name}:{getattr(node, 'lineno', '?')}"
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = [node.module or ""]
            else:
                names = []
            assert not [n for n in names if n.split(".")[0] in DRIVERS], f"{where} imports {names}"
            if isinstance(node, ast.Constant) and isinstance(node.value, str):
                assert not SQL.search(node.value), f"{where} holds SQL: {node.value[:60]!r}"
