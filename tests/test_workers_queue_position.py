"""A session's queue position counts the sessions appended before it, across partitions.

Stream ids order one partition only; sessions sent in one batch land on several partitions in
the same millisecond, where each partition numbers its entries from 0. The position must still
follow the order they were sent in (workers.status.jobs_before).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import psycopg
import pytest

from commands import IngestSession, open_bus
from ledger import Receipt, Settings
from ledger.connections import database_url
from ledger.events import Message
from projections.postgres import migrate
from workers.ingest import SessionQueue

ORG = "org-queue"


@pytest.fixture
def conn(settings: Settings) -> Iterator[psycopg.Connection[Any]]:
    migrate.upgrade(settings)
    with psycopg.connect(database_url(settings), autocommit=True,
                         options=f"-c search_path={settings.db_schema}") as opened:
        yield opened


def _agents_apart(settings: Settings) -> list[str]:
    """One agent of ORG per partition."""
    bus = open_bus(settings)
    found: dict[int, str] = {}
    n = 0
    while len(found) < settings.partitions:
        found.setdefault(bus.log.partition_of(ORG, f"agent{n}"), f"agent{n}")
        n += 1
    bus.log.close()
    return list(found.values())


def _session(agent: str, n: int) -> IngestSession:
    return IngestSession(org_id=ORG, agent_id=agent, session_id=f"ses-{agent}-{n}",
                         transcript=(Message(role="user", content=f"hello {n}"),))


def test_sessions_sent_in_one_batch_queue_in_the_order_sent(settings: Settings,
                                                            conn: psycopg.Connection[Any]) -> None:
    agents = _agents_apart(settings)
    bus = open_bus(settings)
    queue = SessionQueue(bus, conn)
    # When one batch sends a session per partition, then another batch in the reverse order
    first = bus.send_many([_session(a, 1) for a in agents])
    second = bus.send_many([_session(a, 2) for a in reversed(agents)])
    receipts = [r for r in first + second if isinstance(r, Receipt)]
    assert len(receipts) == 2 * len(agents) and len({r.partition for r in receipts}) == len(agents)
    # Then each session is behind exactly the ones sent before it
    assert [queue.position(r) for r in receipts] == list(range(len(receipts)))
    bus.log.close()


def test_sessions_sent_one_by_one_queue_in_the_order_sent(settings: Settings, conn: psycopg.Connection[Any]) -> None:
    agents = _agents_apart(settings) * 2
    bus = open_bus(settings)
    queue = SessionQueue(bus, conn)
    assert [queue.ingest(_session(a, n)).queue_position for n, a in enumerate(agents)] == list(range(len(agents)))
    bus.log.close()
