"""A throwaway Redis Cluster on loopback: three masters, no replicas, AOF on.

For the cluster benchmark (`memledger bench cluster`) and the tests: it runs the
`redis-server` and `redis-cli` found on PATH, each node in its own directory under
`workdir`, and removes nothing but its processes on `stop`. Not for production: a real
cluster has replicas and runs on several hosts.
"""

from __future__ import annotations

import random
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from ledger.errors import ConfigurationError

__all__ = ["LocalCluster", "free_port", "start_redis"]

#: Seconds the cluster gets to report `cluster_state:ok` after `redis-cli --cluster create`.
READY_TIMEOUT_S = 30.0
#: A cluster node also listens on its port + 10000 for the other nodes.
CLUSTER_BUS_OFFSET = 10_000


def _free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def free_port() -> int:
    """A free loopback port P whose cluster bus port P + 10000 is free too (Redis wants P <= 55535)."""
    while True:
        port = random.randint(20_000, 55_000)
        if _free(port) and _free(port + CLUSTER_BUS_OFFSET):
            return port


def _need(binary: str) -> str:
    found = shutil.which(binary)
    if found is None:
        raise ConfigurationError(f"{binary} is not on PATH; install Redis (e.g. `apt-get install redis-server`)")
    return found


def start_redis(workdir: Path, port: int, appendfsync: str = "everysec") -> subprocess.Popen[bytes]:
    """One plain (non-cluster) redis-server with AOF on, answering on `port`: the cluster's twin."""
    workdir.mkdir(parents=True, exist_ok=True)
    process = subprocess.Popen(
        [_need("redis-server"), "--port", str(port), "--bind", "127.0.0.1", "--appendonly", "yes",
         "--appendfsync", appendfsync, "--save", "", "--dir", str(workdir), "--logfile", str(workdir / "redis.log")],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        _wait_for(lambda: _cli(port, "PING") == "PONG", f"redis-server on port {port} to answer", workdir)
    except BaseException:
        process.kill()
        process.wait()
        raise
    return process


def _cli(port: int, *args: str) -> str:
    done = subprocess.run([_need("redis-cli"), "-p", str(port), *args], capture_output=True, text=True, timeout=10)
    return done.stdout.strip()


def _wait_for(condition: Callable[[], bool], what: str, workdir: Path) -> None:
    deadline = time.monotonic() + READY_TIMEOUT_S
    while not condition():
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out waiting for {what} (logs under {workdir})")
        time.sleep(0.05)


@dataclass
class LocalCluster:
    """Masters on `ports` (free loopback ports when not given), data under `workdir`."""

    workdir: Path
    masters: int = 3
    appendfsync: str = "everysec"
    ports: list[int] = field(default_factory=list)
    processes: dict[int, subprocess.Popen[bytes]] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return "redis+cluster://" + ",".join(f"127.0.0.1:{p}" for p in self.ports)

    def start(self) -> LocalCluster:
        self.ports = self.ports or [free_port() for _ in range(self.masters)]
        try:
            for port in self.ports:
                self.start_node(port)
            nodes = [f"127.0.0.1:{p}" for p in self.ports]
            subprocess.run([_need("redis-cli"), "--cluster", "create", *nodes, "--cluster-replicas", "0",
                            "--cluster-yes"], check=True, capture_output=True, timeout=60)
            self.wait_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def start_node(self, port: int) -> None:
        """Start (or restart, after a kill) the node on `port`; it reloads its AOF and cluster config."""
        node_dir = self.workdir / str(port)
        node_dir.mkdir(parents=True, exist_ok=True)
        self.processes[port] = subprocess.Popen(
            [_need("redis-server"), "--port", str(port), "--bind", "127.0.0.1", "--cluster-enabled", "yes",
             "--cluster-config-file", "nodes.conf", "--cluster-node-timeout", "2000", "--appendonly", "yes",
             "--appendfsync", self.appendfsync, "--save", "", "--dir", str(node_dir), "--daemonize", "no",
             "--logfile", str(node_dir / "redis.log")],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self._wait_for(lambda: self._cli(port, "PING") == "PONG", f"redis-server on port {port} to answer")

    def kill(self, port: int) -> None:
        """SIGKILL one node: no shutdown, no final fsync (what the AOF policy keeps survives)."""
        process = self.processes.pop(port)
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=10)

    def wait_ready(self) -> None:
        def ok() -> bool:
            return all("cluster_state:ok" in self._cli(p, "CLUSTER", "INFO") for p in self.ports)
        self._wait_for(ok, "the cluster to report cluster_state:ok")

    def stop(self) -> None:
        for port in list(self.processes):
            process = self.processes.pop(port)
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()

    def _cli(self, port: int, *args: str) -> str:
        return _cli(port, *args)

    def _wait_for(self, condition: Callable[[], bool], what: str) -> None:
        _wait_for(condition, what, self.workdir)

    def __enter__(self) -> LocalCluster:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
