"""One worker process of a parallel rebuild (`python -m replay.rebuild_worker`; see replay.parallel).

It reads its job (settings, projection, partitions, bound, batch) as one JSON object on
stdin, runs `rebuild(partitions=share)` (which only advances the shadow) and reports on
stdout, one JSON object a line: {"progress": [applied, partition, position]}, then
{"done": applied} or {"error": {"type": ..., "message": ...}}. The kernel kills it if its
parent dies (PR_SET_PDEATHSIG), and SIGTERM cancels it like Ctrl-C (the batch in flight
rolls back).
"""

from __future__ import annotations

import contextlib
import ctypes
import signal
import sys
from typing import Any

import orjson

from ledger.settings import Settings

from .rebuild import Progress, rebuild

PR_SET_PDEATHSIG = 1


def _say(message: dict[str, Any]) -> None:
    sys.stdout.buffer.write(orjson.dumps(message) + b"\n")
    sys.stdout.buffer.flush()


def _report(p: Progress) -> None:
    if p.partition >= 0:
        _say({"progress": [p.applied, p.partition, p.position]})


def work() -> int:
    """Run the job on stdin; the process's exit code."""
    with contextlib.suppress(OSError, AttributeError):  # Linux only; elsewhere nothing kills orphans
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    signal.signal(signal.SIGTERM, _interrupt)
    job = orjson.loads(sys.stdin.buffer.read())
    try:
        # One lane: the workers are one per core already, and lanes in each only oversubscribe
        # the cores (300k events, 2 workers: 13.7-14.4 s with one lane each, 14.9-15.8 s with two).
        result = rebuild(Settings(**job["settings"]), job["name"], job["partitions"], job["bound"], job["batch"],
                         _report, appliers=1)
    except KeyboardInterrupt:
        return 130
    except Exception as e:  # noqa: BLE001 - handed to the parent, which raises it
        _say({"error": {"type": type(e).__name__, "message": str(e)}})
        return 1
    _say({"done": result.applied})
    return 0


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


if __name__ == "__main__":
    sys.exit(work())
