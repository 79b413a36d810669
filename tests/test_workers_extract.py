"""The pure seams of background processing: extraction, planning commands, jobs, the hierarchy SQL."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import uuid
from datetime import datetime, timezone
from typing import Any

import pytest
from hypothesis import given, settings as hyp_settings, strategies as st

from commands.decide import decide
from commands.models import MarkSessionFailed, StoreMemory, SummarizeSession
from ledger import events as ev
from ledger.errors import ConfigurationError
from ledger.eventlog import Subject
from ledger.events import Message, Position, RecordedEvent
from ledger.settings import Settings
from projections.fold import fold_session
from projections.hierarchy import HierarchyQuery
from workers.extract import ExtractionError, KeywordExtractor, LLMExtractor, as_tag, classify, make_extractor
from workers.jobs import Job, job_for
from workers.plan import failure, item_key, memory_id, plan, summary_key, summary_marker
from workers.sample import sessions, transcript

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=timezone.utc)
TRANSCRIPT = (
    Message(role="user", content="Hi! I am planning the Q3 migration to Kubernetes. My team is 12 engineers."),
    Message(role="assistant", content="Sounds good. We could use Helm charts for the services."),
    Message(role="user", content="I prefer Terraform over Pulumi. We decided to launch the beta in March."),
    Message(role="assistant", content="Let's go with Helm then. I will draft the plan."),
)


def _ingest_record(stream_id: str = "1700000000000-0") -> RecordedEvent:
    event = ev.Event(event_id=uuid.uuid4(), type="SessionIngested", schema_version=1, org_id="acme", agent_id="bot",
                     subject_id="ses-1", subject_version=1, occurred_at=NOW,
                     data=ev.SessionIngested(transcript=TRANSCRIPT))
    return RecordedEvent(Position(2, stream_id), event)


# -- the keyword extractor -------------------------------------------------------------


def test_keyword_extractor_finds_facts_preferences_and_decisions() -> None:
    extraction = KeywordExtractor().extract(TRANSCRIPT)
    kinds = {(i.kind, i.content) for i in extraction.items}
    assert ("fact", "My team is 12 engineers.") in kinds
    assert ("preference", "I prefer Terraform over Pulumi.") in kinds
    assert ("decision", "We decided to launch the beta in March.") in kinds
    assert ("decision", "Let's go with Helm then.") in kinds
    assert "Kubernetes" in extraction.topics
    assert extraction.summary.startswith("Session of 4 messages") and "Topics:" in extraction.summary
    assert all(i.tags == tuple(t for t in i.tags if as_tag(t) == t) for i in extraction.items)


def test_only_the_user_states_preferences_and_facts() -> None:
    assert classify("user", "I prefer tea.") == "preference"
    assert classify("assistant", "I prefer tea.") is None
    assert classify("assistant", "We decided to ship on Friday.") == "decision"
    assert classify("user", "Thanks, that helps.") is None


_PRINT_EXTRACTION = """
import dataclasses, json
from workers.extract import KeywordExtractor
from workers.sample import sessions
out = [dataclasses.asdict(KeywordExtractor().extract(s.transcript)) for s in sessions(20, seed=5)]
print(json.dumps(out, sort_keys=True))
"""


def test_keyword_extractor_is_deterministic_across_processes_and_hash_seeds() -> None:
    results = []
    for seed in ("1", "2"):
        env = {**os.environ, "PYTHONHASHSEED": seed}
        done = subprocess.run([sys.executable, "-c", _PRINT_EXTRACTION], env=env, capture_output=True, check=True)
        results.append(json.loads(done.stdout))
    assert results[0] == results[1]
    assert sum(len(x["items"]) for x in results[0]) >= 40  # the sample sessions do yield memories


def test_keyword_extractor_needs_no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("the default extractor must not open a connection")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    extraction = KeywordExtractor().extract(transcript(__import__("random").Random(1)))
    assert extraction.summary and extraction.items


@hyp_settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["user", "assistant", "system", "tool"]),
                          # IngestSession refuses NUL characters and lone surrogates, so no transcript holds one
                          st.text(st.characters(blacklist_characters="\x00", blacklist_categories=("Cs",)), min_size=1, max_size=300)),
                min_size=1, max_size=6))
def test_any_transcript_gives_valid_commands(messages: list[tuple[str, str]]) -> None:
    # Whatever people type, the extraction becomes commands that pass validation.
    record = _ingest_record()
    transcript_ = tuple(Message.model_validate({"role": r, "content": c}) for r, c in messages)
    extraction = KeywordExtractor().extract(transcript_)
    job = job_for(record)
    assert job is not None
    commands = plan(job, record.event, extraction, "keywords")
    assert isinstance(commands[0], SummarizeSession) and len(commands) == len(extraction.items) + 2


@pytest.mark.parametrize("phrase, tag", [("Quarterly Budget", "quarterly-budget"), ("C++ / Rust", "c-/-rust"),
                                         ("--", None), ("Ünïcode", "n-code"), ("x" * 80, "x" * 64)])
def test_key_phrases_become_valid_tags(phrase: str, tag: str | None) -> None:
    assert as_tag(phrase) == tag


# -- planning --------------------------------------------------------------------------


def test_plan_derives_every_id_and_key_from_the_session_event_and_item_index() -> None:
    record = _ingest_record()
    job = job_for(record)
    assert job is not None
    extraction = KeywordExtractor().extract(TRANSCRIPT)
    first = plan(job, record.event, extraction, "keywords")
    again = plan(job, record.event, extraction, "keywords")
    assert [c.model_dump() for c in first] == [c.model_dump() for c in again]
    e = str(record.event.event_id)
    # The summary memory comes last: its existence marks the whole session as done
    stores = [c for c in first if isinstance(c, StoreMemory)]
    stores = [stores[-1], *stores[:-1]]
    assert [c.memory_id for c in stores] == [memory_id(e, i) for i in range(len(stores))]
    assert [c.idempotency_key for c in stores] == [item_key(e, i) for i in range(len(stores))]
    assert stores[0].memory_type == "summary" and {c.memory_type for c in stores[1:]} <= {"fact", "preference",
                                                                                             "decision"}
    assert all(c.metadata["parent_id"] == stores[0].memory_id for c in stores[1:])
    assert all(c.causation_id == record.event.event_id and c.session_id == "ses-1" for c in stores)
    assert summary_marker(job) == Subject("m", "acme", "bot", stores[0].memory_id)
    summary = first[0]
    assert isinstance(summary, SummarizeSession)
    assert summary.idempotency_key == summary_key(e) and summary.memory_ids == tuple(c.memory_id for c in stores)


def test_another_session_event_gives_other_ids() -> None:
    a, b = _ingest_record(), _ingest_record()
    assert memory_id(str(a.event.event_id), 1) != memory_id(str(b.event.event_id), 1)


def test_failure_is_keyed_by_the_triggering_event() -> None:
    job = job_for(_ingest_record())
    assert job is not None
    command = failure(job, "x" * 10_000, 3)
    assert isinstance(command, MarkSessionFailed) and len(command.error) == 4000
    assert command.idempotency_key == f"failed/{job.trigger_event_id}"


# -- jobs ------------------------------------------------------------------------------


def test_a_retry_event_asks_for_the_original_ingest() -> None:
    ingest = _ingest_record()
    retry = ev.Event(event_id=uuid.uuid4(), type="SessionRetryRequested", schema_version=1, org_id="acme",
                     agent_id="bot", subject_id="ses-1", subject_version=3, occurred_at=NOW,
                     data=ev.SessionRetryRequested(ingest_event_id=ingest.event.event_id,
                                                   ingest_stream_id=ingest.position.stream_id))
    job = job_for(RecordedEvent(Position(2, "1700000009999-0"), retry))
    assert job is not None
    assert (job.ingest_event_id, job.ingest_stream_id) == (str(ingest.event.event_id), ingest.position.stream_id)
    assert job.trigger_event_id == str(retry.event_id) and job.requested_ms == 1700000009999
    assert Job.from_kwargs(job.message().kwargs) == job
    assert job.message().message_id == job.trigger_event_id


def test_other_events_ask_for_nothing() -> None:
    stored = decide(StoreMemory(org_id="a", agent_id="b", content="x"), NOW, uuid.uuid4).events[0]
    assert job_for(RecordedEvent(Position(0, "1-0"), stored)) is None


def test_folding_failure_then_retry_then_summary() -> None:
    row = fold_session(None, _ingest_record().event)
    events: list[ev.Payload] = [
        ev.SessionExtractionFailed(error="boom", attempts=3),
        ev.SessionRetryRequested(ingest_event_id=uuid.uuid4(), ingest_stream_id="1-0"),
        ev.SessionSummarized(summary="done", memory_ids=("m1",)),
    ]
    statuses = []
    for version, payload in enumerate(events, 2):
        e = ev.Event(event_id=uuid.uuid4(), type=payload.type_name, schema_version=1, org_id="acme", agent_id="bot",
                     subject_id="ses-1", subject_version=version, occurred_at=NOW, data=payload)
        row = fold_session(row, e)
        assert row is not None
        statuses.append((row.status, row.error))
    assert statuses == [("failed", "boom"), ("pending", "boom"), ("summarized", None)]


# -- the LLM extractor (never called: only its pure parts) ------------------------------


def test_llm_answers_are_parsed_and_checked() -> None:
    content = json.dumps({"summary": "Talked about Helm.", "memories": [
        {"type": "decision", "content": "Use Helm.", "importance": 0.9, "tags": ["Helm Charts"]},
        {"type": "preference", "content": "Terraform over Pulumi."}]})
    extraction = LLMExtractor.parse({"choices": [{"message": {"content": content}}]})
    assert extraction.summary == "Talked about Helm."
    assert [(i.kind, i.tags) for i in extraction.items] == [("decision", ("helm-charts",)), ("preference", ())]
    with pytest.raises(ExtractionError):
        LLMExtractor.parse({"choices": [{"message": {"content": "not json"}}]})
    body = LLMExtractor("http://llm/v1", "m").request_body(TRANSCRIPT)
    assert body["model"] == "m" and body["temperature"] == 0 and "user: Hi!" in body["messages"][1]["content"]


def test_the_llm_extractor_is_chosen_by_environment_and_needs_its_url() -> None:
    assert make_extractor(Settings()).name == "keywords"
    with pytest.raises(ConfigurationError, match="MEMLEDGER_LLM_URL"):
        make_extractor(Settings(extractor="llm"))
    chosen = make_extractor(Settings(extractor="llm", llm_url="http://127.0.0.1:9/v1/", llm_model="m"))
    assert isinstance(chosen, LLMExtractor) and chosen.url == "http://127.0.0.1:9/v1/chat/completions"


# -- the hierarchy query ---------------------------------------------------------------


def test_hierarchy_sql_selects_only_the_requested_levels() -> None:
    sql, args = HierarchyQuery("acme", ("summary", "discrete"), session_id="s1", since=NOW, limit=5).sql()
    assert "FROM sessions" not in sql and sql.count("FROM memories") == 2
    # each level keeps its own first 5 (so it can stop early), then the union's first 5
    assert args == ["acme", "s1", NOW, 5, "acme", "s1", NOW, 5, 5]
    with pytest.raises(ValueError):
        HierarchyQuery("acme", ()).sql()


def test_rate_limits_are_waited_out_before_they_count_as_a_failure() -> None:
    from ledger.errors import RateLimited
    from workers.process import within_rate

    calls: list[int] = []
    slept: list[float] = []

    def action() -> str:
        calls.append(1)
        if len(calls) < 3:
            raise RateLimited("slow down", 0.25)
        return "done"

    assert within_rate(action, waits=5, sleep=slept.append) == "done" and slept == [0.25, 0.25]
    calls.clear()
    with pytest.raises(RateLimited):
        within_rate(action, waits=1, sleep=slept.append)


def test_sample_sessions_are_reproducible() -> None:
    assert [s.transcript for s in sessions(3, seed=9)] == [s.transcript for s in sessions(3, seed=9)]
