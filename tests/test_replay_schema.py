"""The schema-change workflow, exactly as the README's "Replay and schema changes" tells it:

1. add an Alembic revision, 2. bump the projection's version, 3. `memledger migrate`,
4. the projector refuses the old model and names `memledger replay rebuild`, 5. rebuild,
6. all is live again. History includes an event written in an old payload schema (v1),
which by then lives only in the archive (the stream was trimmed): the rebuild upcasts it.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator, Sequence
from pathlib import Path

import psycopg
import pytest
from alembic.script import ScriptDirectory
from typer.testing import CliRunner, Result

from commands import StoreMemory, open_bus
from ledger import Settings
from ledger.errors import OutdatedReadModel
from ledger.events import RecordedEvent
from memledger.cli import app
from memledger.cli.common import settings as cli_settings
from projections import PROJECTIONS, run_projection
from projections.postgres import migrate
from projections.postgres.memories import MemoriesProjection
from replay.status import status
from replay.verify import verify

from test_replay_helpers import append_v1_memory, env, populate, project_all, sql
from workload import send_all, workload

REVISION = '''"""memories.word_count

Revision ID: {revision}
Revises: {down}
"""

import sqlalchemy as sa
from alembic import op

revision = "{revision}"
down_revision = "{down}"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("memories", sa.Column("word_count", sa.Integer(), nullable=True))


def downgrade() -> None:
    op.drop_column("memories", "word_count")
'''


class MemoriesV2(MemoriesProjection):
    """Version 2 also keeps each memory's word count (the new column)."""

    version = 2

    def write(self, cur: psycopg.Cursor, events: Sequence[RecordedEvent]) -> None:  # type: ignore[type-arg]
        super().write(cur, events)
        keys = sorted({(r.event.org_id, r.event.agent_id, r.event.subject_id) for r in events})
        orgs, agents, ids = (list(x) for x in zip(*keys))
        cur.execute("UPDATE memories SET word_count = array_length(regexp_split_to_array(trim(content), '\\s+'), 1)"
                    " WHERE (org_id, agent_id, memory_id) IN (SELECT * FROM unnest(%s::text[], %s::text[],"
                    " %s::text[]))", (orgs, agents, ids))


@pytest.fixture
def migrations(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A copy of migrations/ that tests may add revisions to (the repository's stays as it is)."""
    copy = tmp_path / "migrations"
    shutil.copytree(migrate.MIGRATIONS, copy, ignore=shutil.ignore_patterns("__pycache__"))
    monkeypatch.setattr(migrate, "MIGRATIONS", copy)
    yield copy


@pytest.fixture
def registry() -> Iterator[None]:
    saved = dict(PROJECTIONS)
    yield
    PROJECTIONS.clear()
    PROJECTIONS.update(saved)


def cli(settings: Settings, *args: str) -> Result:
    cli_settings.cache_clear()
    try:
        return CliRunner().invoke(app, list(args), env=env(settings))
    finally:
        cli_settings.cache_clear()


def test_schema_change_workflow(settings: Settings, migrations: Path, registry: None) -> None:
    # Given a ledger whose history starts with a MemoryStored written in payload schema v1,
    log = populate(settings, 10, project=False)
    legacy = append_v1_memory(log, "org0", "agent0", "legacy", "  met Ana at the Lisbon office  ", 8, partition=0)
    populate(settings, 800, seed=7)  # later events, and every projection caught up
    # and a stream trimmed since, so that event now lives only in the archive
    assert cli(settings, "ledger", "trim", "--older-than", "0", "--yes").exit_code == 0
    assert not log.client.xrange(log.keys.stream(0), legacy, legacy)

    # 1. add an Alembic revision (a new column in a read-model table)
    head = ScriptDirectory.from_config(migrate.alembic_config(settings)).get_current_head()
    (migrations / "versions" / "9001_memories_word_count.py").write_text(REVISION.format(revision="9001", down=head))
    # 2. bump the projection's version (and teach it the new column)
    PROJECTIONS["memories"] = MemoriesV2
    # 3. migrate
    assert cli(settings, "migrate").exit_code == 0
    assert sql(settings, "SELECT count(*) FROM memories WHERE word_count IS NOT NULL") == [(0,)]

    # 4. the projector refuses the old read model and says what to run
    with pytest.raises(OutdatedReadModel, match="rebuild it with `memledger replay rebuild memories`"):
        run_projection(settings, "memories", until_caught_up=True)
    refused = cli(settings, "projector", "run", "-p", "memories", "--until-caught-up")
    assert refused.exit_code != 0 and "memledger replay rebuild memories" in str(refused.exception or refused.output)
    assert {r.state for r in status(settings, ["memories"])} == {"outdated"}

    # 5. rebuild (queries keep reading version 1 until the swap)
    rebuilt = cli(settings, "replay", "rebuild", "memories", "--yes")
    assert rebuilt.exit_code == 0, rebuilt.output
    assert "swapped in" in rebuilt.output

    # 6. all is live again: version 2, every row has its word count, the v1 event upcast
    assert {(r.state, r.version) for r in status(settings, ["memories"])} == {("live", 2)}
    assert sql(settings, "SELECT content, importance, word_count, tags FROM memories WHERE memory_id = 'legacy'") == [
        ("  met Ana at the Lisbon office  ", pytest.approx(0.8), 6, ["legacy"])]
    assert sql(settings, "SELECT count(*) FROM memories WHERE word_count IS NULL") == [(0,)]
    # and the projector carries on with new events
    send_all(open_bus(settings), workload(100, seed=8))
    open_bus(settings).send(StoreMemory(org_id="org0", agent_id="agent0", memory_id="new", content="a b c"))
    project_all(settings)
    assert sql(settings, "SELECT word_count FROM memories WHERE memory_id = 'new'") == [(3,)]
    assert verify(settings, "memories").agree
    assert sql(settings, "SELECT version_num FROM alembic_version") == [("9001",)]
