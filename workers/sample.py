"""Generated chat sessions for tests, the benchmark and demos: seeded, so reproducible.

Each session mixes small talk with a few sentences the keyword extractor recognises
(facts, preferences, decisions), so every session yields a summary and some memories.
"""

from __future__ import annotations

import random
from collections.abc import Iterator

from commands.models import IngestSession
from ledger.events import Message

TOPICS = ["the quarterly budget", "the Kubernetes migration", "the onboarding flow", "the billing API",
          "the mobile release", "the data warehouse", "customer churn", "the hiring plan", "the security audit",
          "the pricing page", "the support backlog", "the search ranking"]
TOOLS = ["Terraform", "PostgreSQL", "Redis", "Grafana", "Figma", "Snowflake", "Jira", "Slack", "Python", "Go"]
MONTHS = ["January", "March", "May", "July", "September", "November"]
FACTS = ["My team is {n} engineers.", "I work in the {city} office.", "We have {n}k customers on the old plan.",
         "My manager is {name}.", "The deadline is due on {month} {day}."]
PREFERENCES = ["I prefer {tool} over {tool2}.", "I like short status updates.",
               "Please never schedule calls before 10am.", "I'd rather get the report as a PDF.",
               "My favorite dashboard is the one in {tool}."]
DECISIONS = ["We decided to move {topic} to {tool}.", "Let's go with the second option for {topic}.",
             "We will launch {topic} in {month}.", "We agreed to freeze {topic} until the audit is done."]
SMALL_TALK = ["Thanks, that helps.", "Could you look into {topic} for me?", "What are the open questions on {topic}?",
              "Sure, here is a summary of {topic} so far.", "Good point, I will check with the team."]
NAMES = ["Maria", "Chen", "Amara", "Lukas", "Priya", "Tom"]
CITIES = ["Lisbon", "Berlin", "Toronto", "Nairobi", "Osaka"]


def _fill(rng: random.Random, template: str, topic: str) -> str:
    tool, tool2 = rng.sample(TOOLS, 2)
    return template.format(n=rng.randint(2, 40), day=rng.randint(1, 28), city=rng.choice(CITIES),
                           name=rng.choice(NAMES), tool=tool, tool2=tool2, topic=topic, month=rng.choice(MONTHS))


def transcript(rng: random.Random, turns: int = 6) -> tuple[Message, ...]:
    topic = rng.choice(TOPICS)
    messages = [Message(role="user", content=f"Hi, I need help with {topic}. " + _fill(rng, rng.choice(FACTS), topic))]
    for turn in range(1, turns):
        if turn % 2:
            text = _fill(rng, rng.choice(SMALL_TALK), topic) + " " + _fill(rng, rng.choice(DECISIONS), topic)
            messages.append(Message(role="assistant", content=text))
        else:
            pools = [PREFERENCES, FACTS, SMALL_TALK]
            text = " ".join(_fill(rng, rng.choice(pool), topic) for pool in pools)
            messages.append(Message(role="user", content=text))
    return tuple(messages)


def sessions(count: int, org_id: str = "acme", agents: int = 8, seed: int = 0, prefix: str = "ses",
             turns: int = 6) -> Iterator[IngestSession]:
    rng = random.Random(seed)
    for index in range(count):
        yield IngestSession(org_id=org_id, agent_id=f"agent-{index % agents}", session_id=f"{prefix}-{seed}-{index}",
                            transcript=transcript(rng, turns), idempotency_key=f"{prefix}-{seed}-{index}")


__all__ = ["sessions", "transcript"]
