"""The workers on RabbitMQ (`MEMLEDGER_BROKER_URL=amqp://...`): exactly once under SIGKILL, queues
of one namespace only, the queue depth and position read from RabbitMQ, and a Redis Cluster ledger
with no broker to use refused in one line."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import pika
import pytest
import redis

from commands import open_bus
from conftest import REDIS_URL
from ledger import Receipt, Settings, open_log
from ledger import events as ev
from ledger.connections import database_url
from ledger.errors import BrokerRequired, ConfigurationError
from projections.postgres import migrate
from projections.postgres.base import connect
from test_workers_e2e import Watcher, WorkerProcess, fast
from workers.broker import QUEUES, SESSIONS_QUEUE, WorkerKeys, broker_kind, make_broker, message
from workers.enqueuer import run_enqueuer
from workers.ingest import SessionQueue
from workers.queues import queue_reader
from workers.rabbitmq import RabbitQueues
from workers.sample import sessions
from workers.status import collect
from workers.supervisor import child_env

AMQP_URL = os.environ.get("MEMLEDGER_TEST_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/")


@pytest.fixture(scope="session")
def rabbitmq_available() -> None:
    try:
        pika.BlockingConnection(pika.URLParameters(AMQP_URL)).close()
    except pika.exceptions.AMQPError as e:
        pytest.fail(f"RabbitMQ at {AMQP_URL} is not reachable ({e!r}); start it (see README 'Tests')", pytrace=False)


@pytest.fixture
def on_rabbitmq(settings: Settings, rabbitmq_available: None) -> Iterator[Callable[[Settings], Settings]]:
    """Settings (of this or another fresh namespace) on RabbitMQ; every queue they used is deleted after."""
    used: list[Settings] = []

    def to_rabbitmq(base: Settings) -> Settings:
        used.append(fast(base, broker_url=AMQP_URL))
        return used[-1]

    yield to_rabbitmq
    for s in used:
        RabbitQueues(AMQP_URL, s.namespace).delete(QUEUES)


def _ingest(settings: Settings, items: list[ev.Message] | list[object]) -> list[Receipt]:
    bus = open_bus(settings)
    receipts: list[Receipt] = []
    for start in range(0, len(items), 25):
        outcomes = bus.send_many(items[start:start + 25])  # type: ignore[arg-type]
        assert all(isinstance(o, Receipt) for o in outcomes), outcomes
        receipts += [o for o in outcomes if isinstance(o, Receipt)]
    bus.log.close()
    return receipts


def test_sessions_are_summarized_exactly_once_on_rabbitmq_across_a_sigkill(
        settings: Settings, on_rabbitmq: Callable[[Settings], Settings], redis_client: redis.Redis,
        tmp_path: Path) -> None:
    settings = on_rabbitmq(settings)
    migrate.upgrade(settings)
    watcher = Watcher(open_log(settings))
    items = list(sessions(40, agents=8))
    log_file = tmp_path / "worker.log"
    worker = WorkerProcess(settings, log_file)
    try:
        # Given workers on RabbitMQ and 40 sessions ingested
        killed = worker.wait_for_workers()
        feeder = threading.Thread(target=_ingest, args=(settings, items))
        feeder.start()
        # When the dramatiq worker process is SIGKILLed mid-run (the supervisor restarts it)
        watcher.wait("SessionSummarized", 10, log_file=log_file)
        for pid in killed:
            os.kill(pid, signal.SIGKILL)
        at_kill = watcher.count("SessionSummarized")
        worker.wait_for_workers(replacing=killed)
        feeder.join()
        watcher.wait("SessionSummarized", 40, log_file=log_file)
        time.sleep(2)  # a duplicate still in flight would show up now
        watcher.poll()
    finally:
        worker.kill_all()
    # Then the kill landed mid-run, and every session has exactly one summary, each memory stored once
    assert at_kill < 40
    summaries = Counter(r.event.subject_id for r in watcher.events if r.event.type == "SessionSummarized")
    assert set(summaries) == {c.session_id for c in items} and set(summaries.values()) == {1}
    stored = [r.event.subject_id for r in watcher.events if isinstance(r.event.data, ev.MemoryStored)]
    assert len(stored) == len(set(stored)) >= 2 * 40
    # ... the messages went through RabbitMQ (no dramatiq key on the ledger's Redis) and nothing is left there
    assert not list(redis_client.scan_iter(match=f"{WorkerKeys(settings.namespace).dramatiq}*"))
    depth = queue_reader(settings, watcher.log).depth()
    assert (depth.ready, depth.delayed, depth.dead) == (0, 0, 0)


def test_queues_hold_their_namespace_only_and_tell_depth_and_position(
        settings: Settings, on_rabbitmq: Callable[[Settings], Settings]) -> None:
    mine = on_rabbitmq(settings)
    other = on_rabbitmq(settings.model_copy(update={"namespace": "t" + uuid.uuid4().hex[:10]}))
    migrate.upgrade(mine)
    # Given 3 sessions of this namespace enqueued (no worker runs) and 2 messages of another namespace
    _ingest(mine, list(sessions(3, agents=2)))
    run_enqueuer(mine, until_caught_up=True)
    broker = make_broker(other)
    for n in range(2):
        broker.enqueue(message(SESSIONS_QUEUE, "process_session", {"n": n}))
    broker.close()
    # Then each namespace's queue holds its own messages only, under a name that carries the namespace
    log = open_log(mine)
    assert queue_reader(mine, log).depth().ready == 3
    assert queue_reader(other, log).depth().ready == 2
    channel = pika.BlockingConnection(pika.URLParameters(AMQP_URL)).channel()
    assert channel.queue_declare(queue=f"{mine.namespace}.sessions", passive=True).method.message_count == 3
    channel.connection.close()
    # ... a new session is behind those 3, and the status says what RabbitMQ cannot tell (in flight)
    with connect(database_url(mine), mine.db_schema, autocommit=True) as conn:
        bus = open_bus(mine)
        receipt = bus.send(next(iter(sessions(1, agents=1, seed=99))))
        assert SessionQueue(bus, conn, mine).position(receipt) == 3
        status = collect(log, conn, 5.0, settings=mine)
        bus.log.close()
    assert (status.queue.ready, status.queue.in_flight, status.queue.dead) == (3, None, 0)
    log.close()


def test_a_plain_redis_broker_url_keeps_the_queues_off_the_ledgers_redis(
        settings: Settings, redis_client: redis.Redis) -> None:
    broker_url = REDIS_URL.rsplit("/", 1)[0] + "/1"
    separate = settings.model_copy(update={"broker_url": broker_url})
    keys = WorkerKeys(settings.namespace)
    other_db = redis.Redis.from_url(broker_url)
    try:
        broker = make_broker(separate)
        broker.enqueue(message(SESSIONS_QUEUE, "process_session", {"n": 1}))
        assert broker_kind(separate) == "redis"
        assert other_db.llen(keys.queue(SESSIONS_QUEUE)) == 1 and not redis_client.exists(keys.queue(SESSIONS_QUEUE))
        assert queue_reader(separate, open_log(settings)).depth().ready == 1
    finally:
        for key in other_db.scan_iter(match=f"{keys.dramatiq}*"):
            other_db.delete(key)
        other_db.close()


def test_a_redis_cluster_without_a_broker_url_is_refused_in_one_line(settings: Settings) -> None:
    cluster = settings.model_copy(update={"redis_url": "redis+cluster://127.0.0.1:6379"})
    # A cluster ledger with no broker URL, or a cluster broker URL, has no broker; an unknown scheme is named
    with pytest.raises(BrokerRequired, match="MEMLEDGER_BROKER_URL"):
        broker_kind(cluster)
    with pytest.raises(BrokerRequired, match="is a Redis Cluster"):
        broker_kind(settings.model_copy(update={"broker_url": "redis+cluster://u:secret@h:1"}))
    with pytest.raises(ConfigurationError, match="unknown scheme") as unknown:
        broker_kind(settings.model_copy(update={"broker_url": "kafka://u:secret@h:1"}))
    assert "secret" not in str(unknown.value)
    assert broker_kind(cluster.model_copy(update={"broker_url": AMQP_URL})) == "rabbitmq"
    # `memledger worker run` says so in one line and exits with the configuration code, starting nothing
    env = {**child_env(settings), "MEMLEDGER_REDIS_URL": "redis+cluster://127.0.0.1:6379"}
    env.pop("MEMLEDGER_BROKER_URL", None)
    done = subprocess.run([sys.executable, "-m", "memledger", "worker", "run"], env=env, capture_output=True,
                          timeout=60)
    errors = [line for line in done.stderr.decode().splitlines() if line.strip()]
    assert done.returncode == ConfigurationError.exit_code == 3
    assert len(errors) == 1 and "is a cluster" in errors[0] and "MEMLEDGER_BROKER_URL" in errors[0], errors


def test_workers_on_rabbitmq_serve_a_ledger_on_redis_cluster(
        cluster_settings: Settings, on_rabbitmq: Callable[[Settings], Settings], tmp_path: Path) -> None:
    # Given a ledger on a 3-master Redis Cluster and the workers' broker on RabbitMQ
    settings = on_rabbitmq(cluster_settings)
    migrate.upgrade(settings)
    watcher = Watcher(open_log(settings))
    items = list(sessions(12, agents=4))
    log_file = tmp_path / "worker.log"
    worker = WorkerProcess(settings, log_file)
    try:
        worker.wait_for_workers()
        # When sessions are ingested
        _ingest(settings, items)
        watcher.wait("SessionSummarized", 12, log_file=log_file)
        time.sleep(1)  # a duplicate still in flight would show up now
        watcher.poll()
    finally:
        worker.kill_all()
        watcher.log.close()
    # Then each is summarized once, its memories stored once, and no queue is left behind
    summaries = Counter(r.event.subject_id for r in watcher.events if r.event.type == "SessionSummarized")
    assert set(summaries) == {c.session_id for c in items} and set(summaries.values()) == {1}
    stored = [r.event.subject_id for r in watcher.events if isinstance(r.event.data, ev.MemoryStored)]
    assert len(stored) == len(set(stored)) >= 12
    log = open_log(settings)
    depth = queue_reader(settings, log).depth()
    log.close()
    assert (depth.ready, depth.delayed, depth.dead) == (0, 0, 0)
