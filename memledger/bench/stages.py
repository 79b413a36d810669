"""CPU per event by stage: where the command path's and each Redis projector's time goes.

A throughput figure says how fast; these say which stage a change moved. Each stage is
timed on its own over the whole data set, in CPU time (`time.process_time`, this
process; the Redis server's own account for the Redis stages), so the figures hold on a
shared machine better than wall time does.

- Command path, from the JSON forms: validate (`parse_many`, one validator call per
  batch), decide + encode (`CommandBus.prepare`), append (the Lua script, batches of
  `BATCH`): its Python side (building the call, reading replies) and the Redis server's.
- Each Redis projector, over the data set appended once (`projection_log`): read (XREAD
  in batches), decode (`decode_entry`: JSON, upcast, models), fold + encode (the model's
  `arguments`: pure Python), script (the Lua call with its checkpoint): Python side and
  Redis server.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Sequence
from itertools import groupby
from typing import Any, TypeVar

from commands.bus import parse_many
from ledger.codec import decode_entry
from ledger.eventlog import Entry
from ledger.events import RecordedEvent
from projections.redis import REDIS_PROJECTIONS, RedisProjection
from projections.runtime import fewer_collections

from .cpu_meter import CpuMeter
from .figures import Figure
from .ledger_bench import BATCH, accepted, bench_bus
from .projections_bench import projection_log
from .registry import BenchContext, measurement

__all__ = ["COMMAND_STAGES", "REDIS_STAGES", "UNIT"]

UNIT = "µs/event"
COMMAND_GROUP = "command path, CPU per event"
REDIS_GROUP = "Redis projectors, CPU per event"
COMMAND_STAGES = ("validate", "decide + encode", "append, Python", "append, Redis")
REDIS_STAGES = ("read", "decode", "fold + encode", "script, Python", "script, Redis")
T = TypeVar("T")
Stages = dict[str, float]  # stage -> CPU seconds of one round


def cpu(action: Callable[[], T]) -> tuple[T, float]:
    """`action()`'s result and the CPU seconds this process spent on it."""
    start = time.process_time()
    result = action()
    return result, time.process_time() - start


def stage_figures(rounds: Sequence[Stages], stages: Sequence[str], prefix: str, group: str,
                  events: int) -> list[Figure]:
    """One figure per stage: median CPU microseconds per event over the rounds."""
    figures = []
    for stage in stages:
        samples = tuple(r[stage] / events * 1e6 for r in rounds)
        figures.append(Figure(f"{prefix}: {stage}", statistics.median(samples), UNIT, group, samples))
    total = tuple(sum(r[s] for s in stages) / events * 1e6 for r in rounds)
    figures.append(Figure(f"{prefix}: all stages", statistics.median(total), UNIT, group, total,
                          note="the sum of the stages above"))
    return figures


@measurement("command path, CPU by stage")
def measure_command_stages(ctx: BenchContext) -> Sequence[Figure]:
    n = len(ctx.data)
    with bench_bus(ctx) as bus:
        def once(index: int) -> Stages:
            forms = ctx.data.commands(f"s{index:03d}")
            parsed, validate_s = cpu(lambda: [c for i in range(0, n, BATCH) for c in parse_many(forms[i:i + BATCH])])
            commands = [c for c in parsed if not isinstance(c, Exception)]
            appends, prepare_s = cpu(lambda: [bus.prepare(c) for c in commands])
            with CpuMeter(ctx.settings, ctx.redis, postgres=False) as meter:
                events = sum(accepted(bus.log.append_many(appends[i:i + BATCH])) for i in range(0, n, BATCH))
            if events != n:
                raise AssertionError(f"command stages: appended {events} events, expected {n}")
            return {"validate": validate_s, "decide + encode": prepare_s,
                    "append, Python": meter.python_s, "append, Redis": meter.redis_s}

        rounds = ctx.rounds("command path, CPU by stage", once)
    return stage_figures(rounds, COMMAND_STAGES, "command", COMMAND_GROUP, n)


def _read_all(ctx: BenchContext) -> list[Entry]:
    log = projection_log(ctx)
    cursors = {p: "0-0" for p in range(log.partitions)}
    entries: list[Entry] = []
    while batch := log.wait_entries(cursors, ctx.settings.projector_batch, None):
        entries += batch
        cursors.update({p: sid for p, sid, _ in batch})
    return entries


def _batches(events: list[RecordedEvent], size: int) -> list[tuple[int, list[RecordedEvent]]]:
    """Per partition, in order, cut into batches of `size`, as the projector hands them over."""
    out = []
    ordered = sorted(events, key=lambda r: r.position.partition)  # stable: stream order kept
    for partition, group in groupby(ordered, key=lambda r: r.position.partition):
        items = list(group)
        out += [(partition, items[i:i + size]) for i in range(0, len(items), size)]
    return out


def _projector_stages(ctx: BenchContext, kind: type[RedisProjection], index: int) -> Stages:
    # Under the collector settings the projector runs with (projections.runtime): with the
    # default ones, decoding the whole data set at once in the bench's large heap measured the
    # collector's walks of that heap, two to three times the decoding itself.
    with fewer_collections():
        return _projector_stages_as_run(ctx, kind, index)


def _projector_stages_as_run(ctx: BenchContext, kind: type[RedisProjection], index: int) -> Stages:
    entries, read_s = cpu(lambda: _read_all(ctx))
    events, decode_s = cpu(lambda: [decode_entry(*entry) for entry in entries])
    if len(events) != len(ctx.data):
        raise AssertionError(f"{kind.name} stages: read {len(events)} events, expected {len(ctx.data)}")
    batches = _batches(events, ctx.settings.projector_batch)
    projection = kind(ctx.redis, ctx.settings.namespace, ctx.settings.partitions, label=f"stages{index}")
    projection.ensure_current()
    try:
        fold_s, after = 0.0, {p: "0-0" for p, _ in batches}
        with CpuMeter(ctx.settings, ctx.redis, postgres=False) as meter:
            for p, batch in batches:
                args, seconds = cpu(lambda: projection.arguments(p, batch))  # noqa: B023 (called at once)
                fold_s += seconds
                projection.write(p, args, after[p], batch[-1].position.stream_id)
                after[p] = batch[-1].position.stream_id
    finally:
        projection.drop()
    return {"read": read_s, "decode": decode_s, "fold + encode": fold_s,
            "script, Python": meter.python_s - fold_s, "script, Redis": meter.redis_s}


@measurement("Redis projectors, CPU by stage")
def measure_redis_stages(ctx: BenchContext) -> Sequence[Figure]:
    figures: list[Figure] = []
    for kind in REDIS_PROJECTIONS:
        def once(index: int, kind: Any = kind) -> Stages:
            return _projector_stages(ctx, kind, index)

        rounds = ctx.rounds(f"{kind.name}, CPU by stage", once)
        figures += stage_figures(rounds, REDIS_STAGES, kind.name, REDIS_GROUP, len(ctx.data))
    return figures
