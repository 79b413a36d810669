"""Operations routes: health (no key needed), processing status, maintenance.

`GET /v1/health` answers without a key, as load balancers and orchestrators expect, so it
holds nothing of any org: server probes, Redis persistence, events behind per projection
(summed over partitions), the freshest worker heartbeat, the features on. It is 503 when
the ledger cannot accept writes (Redis unreachable, or volatile where that is not allowed).
The namespace-wide figures come from the server's own unscoped App, refreshed at most every
`OPS_CACHE_S` so that a health check polled often stays cheap.
"""

from __future__ import annotations

import threading
import time
from dataclasses import asdict
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request, Response

from ledger.errors import LedgerError
from memledger.app import App

from .auth import principal_app
from .models import CleanupIn, CleanupOut, HealthOut, ProbeOut, ProcessingOut
from .problems import PROBLEMS

__all__ = ["OpsView", "router"]

router = APIRouter(prefix="/v1", tags=["operations"])
#: Seconds the namespace-wide figures of /health (lag, persistence, workers) are reused.
OPS_CACHE_S = 2.0

AppDep = Annotated[App, Depends(principal_app)]


class OpsView:
    """The server's unscoped App, behind a lock (an App is not thread-safe), for namespace-wide figures."""

    def __init__(self, app: App, insecure: bool):
        self.app, self.insecure = app, insecure
        self.lock = threading.Lock()
        self._cached: tuple[float, dict[str, Any]] | None = None

    def figures(self) -> dict[str, Any]:
        """Persistence, lag per projection and the freshest heartbeat (each None/{} when unknown)."""
        with self.lock:
            if self._cached is None or time.monotonic() - self._cached[0] > OPS_CACHE_S:
                self._cached = (time.monotonic(), self._collect())
            return self._cached[1]

    def _collect(self) -> dict[str, Any]:
        found: dict[str, Any] = {"persistence": None, "lag": {}, "heartbeat": None, "throughput": None}
        try:
            info = self.app.info()
            p = info.persistence
            found["session_cache"] = info.session_cache
            found["persistence"] = {"appendonly": p.appendonly, "appendfsync": p.appendfsync, "durable": p.durable,
                                    "allow_volatile": info.allow_volatile, "description": p.describe()}
            lag: dict[str, int] = {}
            for row in self.app.lag():
                lag[row.projection] = lag.get(row.projection, 0) + row.behind
            found["lag"] = lag
            alive = [w for w in self.app.processing_status().workers if w.alive]
            found["heartbeat"] = min((w.last_beat_s for w in alive), default=None)
            rate = sum(w.processed / w.up_s for w in alive if w.up_s > 0)
            found["throughput"] = rate or None
        except LedgerError:
            self.app.close()  # reconnect next time; what was found so far stands
        return found

    def estimate(self, position: int | None) -> float | None:
        """Seconds until a session at queue `position` is processed, from the live workers' throughput."""
        rate: float | None = self.figures()["throughput"]
        if position is None or not rate:
            return None
        return round((position + 1) / rate, 3)

    def close(self) -> None:
        with self.lock:
            self.app.close()


@router.get("/health", response_model=HealthOut, responses={503: {"model": HealthOut,
                                                                  "description": "The ledger cannot accept writes"}})
def health(request: Request, response: Response) -> HealthOut:
    """Whether the service can take writes and answer reads. No key needed; holds no org's data."""
    ops: OpsView = request.app.state.ops
    with ops.lock:
        probes = ops.app.health()
    figures = ops.figures() if probes.redis.ok else {"persistence": None, "lag": {}, "heartbeat": None}
    persistence = figures["persistence"]
    durable_enough = persistence is None or persistence["durable"] or persistence["allow_volatile"]
    writable = probes.redis.ok and durable_enough
    if not writable:
        response.status_code = 503
        response.headers["Retry-After"] = "5"
    return HealthOut(ok=writable and probes.ok, redis=_probe(probes.redis), postgresql=_probe(probes.postgresql),
                     migrated=probes.migrated, persistence=persistence, lag=figures["lag"],
                     worker_heartbeat_age_s=figures["heartbeat"], session_cache=figures.get("session_cache"),
                     features={"auth": not ops.insecure, "extractor": ops.app.settings.extractor,
                               "partitions": ops.app.settings.partitions, "query_cache": True})


def _probe(probe: Any) -> ProbeOut:
    found = asdict(probe)
    return ProbeOut(ok=found["ok"], latency_ms=found["latency_ms"], detail=found["detail"])


@router.get("/processing-status", response_model=ProcessingOut, responses=PROBLEMS)
def processing_status(app: AppDep) -> ProcessingOut:
    """Background processing: the shared queue and workers, and this org's pending and failed sessions."""
    found = app.processing_status()
    return ProcessingOut(queue=asdict(found.queue), workers_alive=sum(w.alive for w in found.workers),
                         pending=found.pending, failed=found.failed,
                         oldest_pending=asdict(found.oldest_pending) if found.oldest_pending else None,
                         recent_failures=[asdict(s) for s in found.recent_failures])


@router.post("/maintenance/cleanup", response_model=CleanupOut, responses=PROBLEMS)
def cleanup(app: AppDep, body: CleanupIn | None = None) -> CleanupOut:
    """Run expiry and retention for this org now (operator keys only): memories past their expiry
    end, raw transcripts older than `retention_days` are purged from the read models."""
    report = app.cleanup(body.retention_days if body else None)
    return CleanupOut(**asdict(report))
