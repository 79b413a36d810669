"""`memledger demo`: a realistic stream of agent commands, projected and queried.

Ids and idempotency keys are derived from the seed, so running the demo again appends
nothing new: every command comes back as a duplicate with its original receipt.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone

from commands import (
    Command,
    ForgetMemory,
    IngestSession,
    RecordRecall,
    StoreMemory,
    TagMemory,
    UpdateMemory,
)
from ledger.events import Message

ORGS = {"acme": ["support-bot", "sales-bot", "ops-bot"], "globex": ["tutor", "planner"], "initech": ["assistant"]}
FACTS = [
    ("prefers {x} for meetings", "preference", ["meetings", "scheduling"],
     ["mornings", "video calls", "short agendas"]),
    ("is allergic to {x}", "fact", ["health"], ["peanuts", "shellfish", "pollen"]),
    ("decided to migrate billing to {x}", "decision", ["billing", "roadmap"],
     ["Stripe", "an in-house ledger", "Adyen"]),
    ("asked about the {x} plan pricing", "note", ["sales", "pricing"], ["team", "enterprise", "starter"]),
    ("reported a bug in the {x} export", "fact", ["support", "bugs"], ["CSV", "PDF", "calendar"]),
    ("likes answers in {x}", "preference", ["style"], ["bullet points", "one paragraph", "Spanish"]),
]
USERS = [f"user-{i}" for i in range(12)]


def _memory(rnd: random.Random, org: str, agent: str, n: int) -> StoreMemory:
    template, kind, tags, options = rnd.choice(FACTS)
    user = rnd.choice(USERS)
    return StoreMemory(
        org_id=org, agent_id=agent, memory_id=f"demo-{org}-{agent}-{n}", memory_type=kind,
        content=f"{user} {template.format(x=rnd.choice(options))}", tags=tuple(tags),
        importance=round(rnd.uniform(0.1, 1.0), 2), metadata={"user_id": user, "source": "demo"},
        idempotency_key=f"demo-store-{org}-{agent}-{n}")


def _session(org: str, agent: str, n: int, at: datetime) -> IngestSession:
    transcript = (
        Message(role="user", content="Can you move my weekly sync to mornings? Video calls work best.", at=at),
        Message(role="assistant", content="Done: your weekly sync is now Tuesdays at 9:00.", at=at),
    )
    return IngestSession(org_id=org, agent_id=agent, session_id=f"demo-session-{org}-{agent}-{n}",
                         transcript=transcript, user_id="user-1", metadata={"channel": "chat"},
                         idempotency_key=f"demo-session-{org}-{agent}-{n}")


def demo_commands(seed: int = 7, per_agent: int = 40) -> Iterator[Command]:
    """Stores, then updates, tags, recalls, forgets and sessions, as agents would send them."""
    rnd = random.Random(seed)
    at = datetime(2026, 1, 5, 9, 0, tzinfo=timezone.utc)
    for org, agents in ORGS.items():
        for agent in agents:
            stored = [_memory(rnd, org, agent, n) for n in range(per_agent)]
            yield from stored
            for n, m in enumerate(rnd.sample(stored, per_agent // 4)):
                key = f"demo-{org}-{agent}-{n}"
                yield UpdateMemory(org_id=org, agent_id=agent, memory_id=m.memory_id,
                                   importance=min(1.0, m.importance + 0.2), idempotency_key=key + "-upd")
                yield TagMemory(org_id=org, agent_id=agent, memory_id=m.memory_id, tags=("reviewed",),
                                idempotency_key=key + "-tag")
                yield RecordRecall(org_id=org, agent_id=agent, memory_id=m.memory_id, user_id=rnd.choice(USERS),
                                   query="what do we know?", idempotency_key=key + "-recall")
            yield ForgetMemory(org_id=org, agent_id=agent, memory_id=stored[-1].memory_id, reason="user asked",
                               idempotency_key=f"demo-forget-{org}-{agent}")
            yield _session(org, agent, 0, at + timedelta(days=1))
