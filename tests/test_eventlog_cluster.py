"""The EventLog contract (tests/eventlog_contract.py) against a 3-master Redis Cluster.

`MEMLEDGER_REDIS_URL=redis+cluster://...` gives the same `RedisEventLog` over a
`RedisCluster` client: each script call goes to the node of its partition's slot.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from redis.cluster import RedisCluster

from ledger import EventLog, Settings, open_log
from ledger.connections import cluster_nodes, redis_from_url
from ledger.errors import ConfigurationError
from ledger.log import RedisEventLog

from eventlog_contract import ORG, EventLogContract, append, ok


class TestClusterEventLog(EventLogContract):
    @pytest.fixture
    def settings(self, cluster_settings: Settings) -> Settings:
        return cluster_settings

    @pytest.fixture
    def log(self, settings: Settings) -> Iterator[EventLog]:
        opened = open_log(settings)
        assert isinstance(opened, RedisEventLog) and isinstance(opened.client, RedisCluster)
        yield opened
        opened.close()


def test_partitions_spread_over_the_masters(cluster_settings: Settings) -> None:
    # Given 16 partitions on 3 masters
    settings = cluster_settings.model_copy(update={"partitions": 16})
    log = open_log(settings)
    assert isinstance(log, RedisEventLog) and isinstance(log.client, RedisCluster)
    # When every partition receives an append
    agents: dict[int, str] = {}
    for n in range(400):
        agents.setdefault(log.partition_of(ORG, f"a{n}"), f"a{n}")
    assert len(agents) == 16
    ok(log.append(append(agents[0], "m")))
    for outcome in log.append_many([append(a, "m") for p, a in agents.items() if p]):
        ok(outcome)
    # Then each master holds some of the streams, and each stream has its one event
    nodes = {log.client.get_node_from_key(log.keys.stream(p)).name for p in range(16)}
    assert len(nodes) == 3
    assert [log.length(p) for p in range(16)] == [1] * 16
    log.close()


def test_a_script_call_across_slots_is_refused_before_it_is_sent(cluster_settings: Settings) -> None:
    log = open_log(cluster_settings)
    script = log.script("rate_limit.lua")
    with pytest.raises(ConfigurationError, match="one slot"):
        script.run([log.partition_key(0, "a"), log.partition_key(1, "a")], [1.0, 2, 5])
    log.close()


def test_the_cluster_url_names_nodes_and_credentials() -> None:
    user, password, nodes = cluster_nodes("redis+cluster://me:s%40cret@10.0.0.1:7000,10.0.0.2:7001")
    assert (user, password) == ("me", "s@cret")
    assert [(n.host, n.port) for n in nodes] == [("10.0.0.1", 7000), ("10.0.0.2", 7001)]
    with pytest.raises(ConfigurationError, match="host:port"):
        cluster_nodes("redis+cluster://10.0.0.1")
    with pytest.raises(ConfigurationError, match="database 0"):
        cluster_nodes("redis+cluster://10.0.0.1:7000/2")


def test_a_plain_url_still_gives_one_server(settings: Settings) -> None:
    client = redis_from_url(str(settings.redis_url))
    assert not isinstance(client, RedisCluster) and client.ping()
    client.close()
