"""The EventLog contract (tests/eventlog_contract.py) against one Redis: `RedisEventLog`."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from ledger import EventLog, Settings, open_log
from ledger.log import RedisEventLog

from eventlog_contract import ORG, EventLogContract, append, ok


class TestRedisEventLog(EventLogContract):
    @pytest.fixture
    def log(self, settings: Settings) -> Iterator[EventLog]:
        opened = open_log(settings)
        yield opened
        opened.close()


def test_the_append_script_reloads_after_a_script_flush(settings: Settings) -> None:
    # Given a log whose append script the server has forgotten (a restart, SCRIPT FLUSH)
    log = open_log(settings)
    ok(log.append(append("a1", "m1")))
    log.redis_client_for_workers().script_flush()
    # Then the next append, trim and count load it again, and each runs once
    assert ok(log.append(append("a1", "m2"))).subject_version == 1
    p = log.partition_of(ORG, "a1")
    assert log.count_after(p, "0-0", 10) == 2
    assert log.trim(p, log.head(p) or "0-0").removed == 1
    log.close()


def test_keys_stay_under_the_partitions_hash_tag(settings: Settings) -> None:
    """Every key the log writes for a partition shares its hash tag, so one script (and one
    Redis Cluster slot) holds them all."""
    log = open_log(settings)
    assert isinstance(log, RedisEventLog)
    p = log.partition_of(ORG, "a1")
    ok(log.append(append("a1", "m1", key="k")))
    ok(log.append(append("a1", "m2")))
    assert log.trim(p, log.head(p) or "0-0").removed == 1
    tag = log.keys.tag(p)
    written = {k.decode() for k in log.client.scan_iter(match=f"{{{settings.namespace}:p*", count=1000)}
    assert written and all(k.startswith(tag) for k in written), written
    assert {k.removeprefix(tag) for k in written} == {":stream", ":subjects", ":trimmed", f":idem:{ORG}/a1/k"}
    assert log.partition_key(p, "lease:x").startswith(tag)
    log.close()
