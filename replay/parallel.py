"""The bulk of a rebuild in several processes: partitions are independent, Python is one core.

Folding an event is mostly Python (decode, fold, row building), which one process runs on
one core. Partitions are independent histories, so `rebuild(workers=N)` first starts N
worker processes (`python -m replay.rebuild_worker`, fresh interpreters: no inherited
connections, and nothing depends on how the parent was started), each running
`rebuild(partitions=share)`: the same code path as `replay rebuild NAME --partition P`,
which only advances the shadow, under the same per-(shadow, partition) locks. Workers
report progress as JSON lines on stdout. The parent relays it, then takes every lock
itself, catches the shadow up and swaps as usual. A worker's failure (a poison event)
stops the others and is raised in the parent; Ctrl-C stops them all, and what they
committed stays in the shadow for the next run to resume from. Workers ask the kernel
to kill them if the parent dies (PR_SET_PDEATHSIG), so a SIGKILLed rebuild leaves no
writer behind.
"""

from __future__ import annotations

import contextlib
import subprocess
import sys
import threading
from collections.abc import Callable, Sequence
from typing import IO, Any

import orjson
from pydantic import SecretStr

from ledger import errors
from ledger.settings import Settings

__all__ = ["WORKER", "replay_in_workers", "shares"]

WORKER = "replay.rebuild_worker"  # the module each worker process runs (`python -m`)


def shares(estimates: dict[int, int], workers: int) -> list[list[int]]:
    """Partitions split into `workers` groups of about equal work (largest first, greedy)."""
    groups: list[tuple[int, list[int]]] = [(0, []) for _ in range(min(workers, len(estimates)))]
    for partition, events in sorted(estimates.items(), key=lambda x: (-x[1], x[0])):
        load, members = min(groups, key=lambda g: g[0])
        groups.remove((load, members))
        groups.append((load + events, [*members, partition]))
    return [sorted(members) for _, members in groups if members]


def replay_in_workers(settings: Settings, name: str, groups: Sequence[list[int]], bound: str | None, batch: int,
                      on_progress: Callable[[int, int, str], None]) -> int:
    """Advance the shadow of `name` for each group of partitions in its own process.

    `on_progress(events applied by all workers, partition, position)` follows them;
    returns how many events they applied.
    """
    config = _settings_json(settings)
    children = [subprocess.Popen([sys.executable, "-m", WORKER], stdin=subprocess.PIPE,
                                 stdout=subprocess.PIPE) for _ in groups]
    for child, group in zip(children, groups):
        assert child.stdin is not None
        child.stdin.write(orjson.dumps({"settings": config, "name": name, "partitions": group, "bound": bound,
                                        "batch": batch}, default=str))  # str: paths
        child.stdin.close()
    applied, lock = [0] * len(children), threading.Lock()
    failures: list[BaseException] = []

    def follow(index: int, out: IO[bytes]) -> None:
        for line in out:
            message = orjson.loads(line)
            with lock:
                if "progress" in message:
                    applied[index], partition, position = message["progress"]
                    on_progress(sum(applied), partition, position)
                elif "done" in message:
                    applied[index] = message["done"]
                elif "error" in message:
                    failures.append(_error(message["error"]))

    readers = [threading.Thread(target=follow, args=(i, c.stdout), daemon=True) for i, c in enumerate(children)]
    try:
        for t in readers:
            t.start()
        for i, child in enumerate(children):
            while child.poll() is None and not failures:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    child.wait(timeout=0.2)
            if failures:
                raise failures[0]
            readers[i].join()
            if failures:
                raise failures[0]
            if child.returncode != 0:
                raise errors.ProjectionError(f"rebuild worker {i} exited with code {child.returncode}")
    finally:
        for child in children:
            if child.poll() is None:
                child.terminate()  # SIGTERM: the worker's batch in flight rolls back
        for child, reader in zip(children, readers):
            child.wait()
            if reader.is_alive():
                reader.join(timeout=5)
            if child.stdout is not None:
                child.stdout.close()
    return sum(applied)


def _settings_json(settings: Settings) -> dict[str, Any]:
    fields = settings.model_dump()
    return {k: (v.get_secret_value() if isinstance(v, SecretStr) else v) for k, v in fields.items()}


def _error(fields: dict[str, str]) -> BaseException:
    kind = getattr(errors, fields["type"], None)
    cls = kind if isinstance(kind, type) and issubclass(kind, errors.LedgerError) else errors.ProjectionError
    return cls(fields["message"])
