"""`memledger up` never leaves its projector processes behind: not on SIGTERM, not when SIGKILLed.

`up` runs as a real process on the loopback servers; its children are found through /proc
(Linux), each remembered with its start time so that a reused pid is never taken for it.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from ledger import Settings, open_log
from projections import PROJECTIONS
from projections.lease import Leases

#: Upper bound for `up` to migrate and have every projector hold its leases.
STARTUP_S = 20.0
#: Upper bound for `up` to stop after SIGTERM, or for orphaned projectors to stop by themselves.
STOP_S = 10.0


@dataclass(frozen=True)
class Proc:
    pid: int
    start: str  # start time in clock ticks since boot: a pid reused by another process has another one


def _stat(pid: int) -> list[str] | None:
    """Fields 3.. of /proc/PID/stat (state, ppid, ...), or None once the process is gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return text[text.rindex(")") + 2:].split()  # the command name (field 2) may hold spaces and parentheses


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def _children(ppid: int) -> list[Proc]:
    found = []
    for entry in filter(str.isdigit, os.listdir("/proc")):
        fields = _stat(int(entry))
        if fields is not None and fields[1] == str(ppid):
            found.append(Proc(int(entry), fields[19]))
    return found


def _alive(proc: Proc) -> bool:
    fields = _stat(proc.pid)
    return fields is not None and fields[19] == proc.start and fields[0] not in ("Z", "X")


def _wait_for(condition: Callable[[], bool], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)
    return True


def _env(settings: Settings) -> dict[str, str]:
    return {**os.environ, "MEMLEDGER_REDIS_URL": str(settings.redis_url),
            "MEMLEDGER_DATABASE_URL": str(settings.database_url), "MEMLEDGER_NAMESPACE": settings.namespace,
            "MEMLEDGER_PARTITIONS": str(settings.partitions), "MEMLEDGER_ALLOW_VOLATILE": "1"}


@dataclass
class Up:
    process: subprocess.Popen[bytes]
    stderr: Path
    projectors: list[Proc]

    def output(self) -> str:
        return self.stderr.read_text(errors="replace")

    def record_projectors(self) -> None:
        known = {p.pid for p in self.projectors}
        self.projectors += [c for c in _children(self.process.pid) if c.pid not in known]

    def alive_projectors(self) -> list[Proc]:
        return [p for p in self.projectors if _alive(p)]


@pytest.fixture
def running_up(settings: Settings, tmp_path: Path) -> Iterator[Up]:
    """`memledger up` with every projector running its loop (holding its leases); killed afterwards, pass or fail."""
    stderr = tmp_path / "up.stderr"
    with stderr.open("wb") as err:
        process = subprocess.Popen([sys.executable, "-m", "memledger", "up"], env=_env(settings),
                                   stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err)
    up = Up(process, stderr, [])
    try:
        _wait_for_projectors(up, settings)
        yield up
    finally:
        _kill_all(up)


def _kill_all(up: Up) -> None:
    """SIGKILL `up` and every projector it started that still runs, whether or not the test passed."""
    if up.process.poll() is None:
        up.record_projectors()
        up.process.kill()
    up.process.wait(timeout=STOP_S)
    for proc in up.alive_projectors():
        with contextlib.suppress(ProcessLookupError):
            os.kill(proc.pid, signal.SIGKILL)


def _wait_for_projectors(up: Up, settings: Settings) -> None:
    log = open_log(settings)
    lease_keys = [Leases(log, name, 1000).key(p) for name in PROJECTIONS
                  for p in range(settings.partitions)]

    def ready() -> bool:
        assert up.process.poll() is None, f"`up` exited early ({up.process.returncode}):\n{up.output()}"
        up.record_projectors()
        return len(up.projectors) == len(PROJECTIONS) and all(log.client.exists(k) for k in lease_keys)

    try:
        assert _wait_for(ready, STARTUP_S), f"projectors not all running after {STARTUP_S}s:\n{up.output()}"
    finally:
        log.client.close()
    assert all("projector run" in _cmdline(p.pid) for p in up.projectors), [_cmdline(p.pid) for p in up.projectors]


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT, signal.SIGHUP], ids=lambda s: s.name)
def test_a_stop_signal_stops_up_and_its_projectors(running_up: Up, signum: signal.Signals) -> None:
    # When `up` is asked to stop (by `kill`, Ctrl-C or a closed terminal)
    running_up.process.send_signal(signum)
    # Then it stops its projectors, waits for them and exits 0 (a requested stop), all within bounded time
    returncode = running_up.process.wait(timeout=STOP_S)
    assert running_up.alive_projectors() == [], f"`up` exited ({returncode}) and left its projectors running"
    assert returncode == 0, running_up.output()


def test_projectors_stop_by_themselves_when_up_is_sigkilled(running_up: Up) -> None:
    # When `up` dies without a chance to clean up
    running_up.process.send_signal(signal.SIGKILL)
    running_up.process.wait(timeout=STOP_S)
    # Then its projectors notice they were orphaned and exit on their own
    assert _wait_for(lambda: not running_up.alive_projectors(), STOP_S), \
        f"projectors still running {STOP_S}s after `up` died: {running_up.alive_projectors()}"


def test_an_exception_in_up_stops_its_projectors(settings: Settings, tmp_path: Path) -> None:
    # Given the supervision `up` runs its projectors under, in a real process
    script = ("import time\nfrom memledger.cli.operators import supervised\n"
              "with supervised(['memories', 'archive']) as children:\n"
              "    print(*(c.pid for c in children.values()), flush=True)\n"
              "    time.sleep(3)\n"
              "    raise RuntimeError('boom')\n")
    with subprocess.Popen([sys.executable, "-c", script], env=_env(settings), stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE) as process:
        up = Up(process, tmp_path / "unused", [])
        try:
            assert process.stdout is not None
            pids = [int(pid) for pid in process.stdout.readline().split()]
            up.projectors = [Proc(pid, fields[19]) for pid in pids if (fields := _stat(pid)) is not None]
            assert len(up.projectors) == 2, pids
            # When its body raises, Then the error propagates only once both projectors are gone
            _, err = process.communicate(timeout=STOP_S)
            assert b"RuntimeError: boom" in err and process.returncode == 1, err.decode()
            assert up.alive_projectors() == []
        finally:
            _kill_all(up)


def test_a_child_that_ignores_sigterm_is_killed_after_the_grace_period() -> None:
    from memledger.cli.operators import stop_children  # here, so the tests above judge any version of `up`

    with subprocess.Popen([sys.executable, "-c", "import signal, time\n"
                           "signal.signal(signal.SIGTERM, signal.SIG_IGN)\nprint(flush=True)\ntime.sleep(60)"],
                          stdout=subprocess.PIPE) as stubborn:
        try:
            assert stubborn.stdout is not None and stubborn.stdout.readline() == b"\n"  # SIGTERM ignored from here
            started = time.monotonic()
            stop_children([stubborn], grace_s=1.0)
            assert stubborn.returncode == -signal.SIGKILL and 1.0 <= time.monotonic() - started < STOP_S
        finally:
            if stubborn.poll() is None:
                stubborn.kill()
