"""Analytics read model: exact counters per type and day, HyperLogLog unique agents and users."""

from __future__ import annotations

import uuid
from datetime import date, datetime, timedelta, timezone

import pytest

from commands import CommandBus, IngestSession, RecordRecall, StoreMemory, UpdateMemory
from ledger import Settings, open_log
from ledger.events import Event, MemoryRecalled, Message, Position, RecordedEvent
from ledger.partitions import partition_for
from projections import run_projection
from projections.redis import Analytics, AnalyticsProjection

DAY1 = datetime.now(timezone.utc).replace(hour=10, minute=0, second=0, microsecond=0) - timedelta(days=3)
DAY2 = DAY1 + timedelta(days=1, hours=13)  # the next UTC day, late


def bus_at(settings: Settings, when: datetime) -> CommandBus:
    return CommandBus(open_log(settings), None, clock=lambda: when)


def analytics(settings: Settings) -> Analytics:
    return Analytics(open_log(settings).client, settings.namespace, settings.partitions)


def test_counts_per_type_and_unique_agents_and_users_per_day_and_over_the_range(settings: Settings) -> None:
    # Given, on day 1: three agents; users named by metadata, recalls and sessions
    first, second = bus_at(settings, DAY1), bus_at(settings, DAY2)
    for agent, user in (("a1", "u1"), ("a2", "u1"), ("a3", "u2")):
        first.send(StoreMemory(org_id="acme", agent_id=agent, memory_id=f"m-{agent}", content="x",
                               metadata={"user_id": user}))
    first.send(RecordRecall(org_id="acme", agent_id="a1", memory_id="m-a1", user_id="u3"))
    first.send(IngestSession(org_id="acme", agent_id="a2", session_id="s1", user_id="u4",
                             transcript=(Message(role="user", content="hi"),)))
    first.send(StoreMemory(org_id="globex", agent_id="a9", memory_id="g", content="x", metadata={"user_id": "u9"}))
    # and on day 2: one agent, a known user and a new one
    second.send(UpdateMemory(org_id="acme", agent_id="a1", memory_id="m-a1", importance=0.9))
    second.send(RecordRecall(org_id="acme", agent_id="a1", memory_id="m-a1", user_id="u1"))
    second.send(RecordRecall(org_id="acme", agent_id="a1", memory_id="m-a1", user_id="u5"))
    # When the projection catches up and the range is read
    run_projection(settings, "analytics", until_caught_up=True)
    report = analytics(settings).report("acme", DAY1.date() - timedelta(days=1), DAY2.date())
    # Then each day has exact counts and distinct agents and users; the range is the union
    empty, d1, d2 = report.days
    assert (empty.events, empty.agents, empty.users) == ({}, 0, 0)
    assert d1.events == {"MemoryRecalled": 1, "MemoryStored": 3, "SessionIngested": 1}
    assert (d1.agents, d1.users) == (3, 4)
    assert d2.events == {"MemoryRecalled": 2, "MemoryUpdated": 1}
    assert (d2.agents, d2.users) == (1, 2)
    assert (report.agents, report.users) == (3, 5)
    assert report.events == {"MemoryRecalled": 3, "MemoryStored": 3, "MemoryUpdated": 1, "SessionIngested": 1}
    assert analytics(settings).report("globex", DAY1.date(), DAY1.date()).users == 1


def _recall(settings: Settings, agent: str, user: str, at: datetime, n: int) -> RecordedEvent:
    event = Event(event_id=uuid.uuid4(), type="MemoryRecalled", schema_version=1, org_id="big", agent_id=agent,
                  subject_id="m", occurred_at=at, data=MemoryRecalled(user_id=user))
    ms = int(at.timestamp() * 1000)
    return RecordedEvent(Position(partition_for("big", agent, settings.partitions), f"{ms}-{n}"), event)


def test_hyperloglog_counts_100k_distinct_users_within_two_percent(settings: Settings) -> None:
    # Given 100k distinct users over two days, spread over agents in every partition
    agents = [f"agent{i}" for i in range(16)]
    assert len({partition_for("big", a, settings.partitions) for a in agents}) == settings.partitions
    projection = AnalyticsProjection.open(settings)
    projection.ensure_current()
    batches: dict[int, list[RecordedEvent]] = {}
    for n in range(100_000):
        at = DAY1 if n < 60_000 else DAY2
        r = _recall(settings, agents[n % len(agents)], f"user-{n}", at, n)
        batches.setdefault(r.position.partition, []).append(r)
    # When they are applied (in batches of 5000 per partition)
    for partition, events in batches.items():
        events.sort(key=lambda r: r.position.key)
        after = "0-0"
        for i in range(0, len(events), 5000):
            projection.apply(partition, events[i:i + 5000], after)
            after = events[min(i + 5000, len(events)) - 1].position.stream_id
    # Then each day's and the range's unique users are within 2% of the truth; counters are exact
    report = analytics(settings).report("big", DAY1.date(), DAY2.date())
    day1, day2 = report.days
    assert abs(day1.users - 60_000) / 60_000 < 0.02, day1.users
    assert abs(day2.users - 40_000) / 40_000 < 0.02, day2.users
    assert abs(report.users - 100_000) / 100_000 < 0.02, report.users
    assert (day1.events, day2.events) == ({"MemoryRecalled": 60_000}, {"MemoryRecalled": 40_000})
    assert report.agents == 16


def test_a_range_is_bounded(settings: Settings) -> None:
    with pytest.raises(ValueError, match="1 to 366 days"):
        analytics(settings).report("acme", date(2026, 1, 2), date(2026, 1, 1))
