"""The ledger's own figures: appends through the command bus, and decoded reads of the log.

Appends go through `open_bus`, the production path (validate, authorize, rate-limit,
decide, encode, one Lua append per partition touched); the bench settings raise the
rate limit so that it admits everything, but its round trip is still paid. Each round
sends fresh commands (memory ids unique to the round), so stores never collide.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

from commands import Command, CommandBus, open_bus
from ledger.errors import CommandError
from ledger.log import Outcome, RedisEventLog

from .figures import Figure, Target, latency_figures, throughput
from .raw import LATENCY_CALLS, PAGE, RAW_ROUND_TRIP, RAW_XADD, RAW_XRANGE, readback_keys
from .registry import BenchContext, Stopwatch, measurement

__all__ = ["BATCH", "LEDGER_APPEND", "LEDGER_APPEND_JSON", "LEDGER_APPEND_LOG", "LEDGER_LATENCY", "LEDGER_READ", "BenchmarkRejected"]

GROUP = "ledger"
LEDGER_APPEND = "ledger append, batched"
LEDGER_APPEND_LOG = "ledger append, batched, log only"
LEDGER_APPEND_JSON = "ledger append, batched, JSON"
LEDGER_LATENCY = "ledger append"
LEDGER_READ = "ledger read, decoded"
BATCH = 500

APPEND_TARGET = Target(">= 0.6x raw XADD", 0.6, "min", on="ratio")
#: The command path (validate, decide, encode, append), issue 18's targets against raw pipelined XADD.
COMMAND_TARGET = Target(">= 0.5x raw XADD", 0.5, "min", on="ratio")
COMMAND_JSON_TARGET = Target(">= 0.35x raw XADD", 0.35, "min", on="ratio")
LATENCY_TARGETS = {50: Target("< 0.5 ms", 0.5, "max"), 99: Target("< 2 ms", 2.0, "max")}


class BenchmarkRejected(CommandError):
    """The ledger refused a command of the data set, which the data set never should cause."""


@contextmanager
def bench_bus(ctx: BenchContext) -> Iterator[CommandBus]:
    """A command bus on the bench namespace, wired as `open_bus` wires it."""
    bus = open_bus(ctx.settings)
    try:
        yield bus
    finally:
        bus.log.close()


def accepted(outcomes: Sequence[Outcome]) -> int:
    """The number of events appended; raises on the first rejection."""
    events = 0
    for outcome in outcomes:
        if isinstance(outcome, CommandError):
            raise BenchmarkRejected(f"the ledger rejected a data set command: {outcome}") from outcome
        events += len(outcome.event_ids)
    return events


def send_batches(bus: CommandBus, commands: Sequence[Command | Mapping[str, Any]]) -> int:
    """Send `commands` in batches of `BATCH`, in order; the events appended."""
    return sum(accepted(bus.send_many(commands[i:i + BATCH])) for i in range(0, len(commands), BATCH))


def measure_batched(ctx: BenchContext, name: str, prefix: str, as_json: bool, target: Target | None) -> Figure:
    with bench_bus(ctx) as bus:
        def once(index: int) -> float:
            run = f"{prefix}{index:03d}"
            commands = ctx.data.commands(run) if as_json else ctx.data.models(run)
            with Stopwatch() as watch:
                events = send_batches(bus, commands)
            if events != len(ctx.data):
                raise AssertionError(f"{name}: appended {events} events, expected {len(ctx.data)}")
            return watch.seconds

        seconds = ctx.rounds(name, once)
    note = f"send_many, {BATCH} per batch" + (", validation included" if as_json else "")
    return throughput(name, GROUP, len(ctx.data), seconds, target=target, baseline=RAW_XADD, note=note)


@measurement(LEDGER_APPEND_LOG)
def measure_append_log(ctx: BenchContext) -> Sequence[Figure]:
    """The log's atomic Lua append of the same event payloads raw XADD writes.

    Commands are decided and encoded before the clock starts: this is the like-for-like
    comparison with raw XADD of pre-encoded payloads. The end-to-end bus figure follows.
    """
    with bench_bus(ctx) as bus:
        def once(index: int) -> float:
            appends = [bus.prepare(command) for command in ctx.data.models(f"p{index:03d}")]
            with Stopwatch() as watch:
                events = sum(accepted(bus.log.append_many(appends[i:i + BATCH]))
                             for i in range(0, len(appends), BATCH))
            if events != len(ctx.data):
                raise AssertionError(f"{LEDGER_APPEND_LOG}: appended {events} events, expected {len(ctx.data)}")
            return watch.seconds

        seconds = ctx.rounds(LEDGER_APPEND_LOG, once)
    note = f"append.lua, {BATCH} per batch, payloads encoded beforehand"
    return [throughput(LEDGER_APPEND_LOG, GROUP, len(ctx.data), seconds, target=APPEND_TARGET, baseline=RAW_XADD,
                       note=note)]


@measurement(LEDGER_APPEND)
def measure_append(ctx: BenchContext) -> Sequence[Figure]:
    return [measure_batched(ctx, LEDGER_APPEND, "a", as_json=False, target=COMMAND_TARGET)]


@measurement(LEDGER_APPEND_JSON)
def measure_append_json(ctx: BenchContext) -> Sequence[Figure]:
    return [measure_batched(ctx, LEDGER_APPEND_JSON, "j", as_json=True, target=COMMAND_JSON_TARGET)]


@measurement(LEDGER_LATENCY)
def measure_latency(ctx: BenchContext) -> Sequence[Figure]:
    calls = min(LATENCY_CALLS, len(ctx.data))
    with bench_bus(ctx) as bus:
        def once(index: int) -> list[float]:
            durations = []
            for command in ctx.data.models(f"l{index:03d}", calls):
                start = time.perf_counter()
                bus.send(command)
                durations.append(time.perf_counter() - start)
            return durations

        rounds = ctx.rounds(f"{LEDGER_LATENCY} latency", once)
    return latency_figures(LEDGER_LATENCY, GROUP, rounds, LATENCY_TARGETS, baseline=RAW_ROUND_TRIP)


@measurement(LEDGER_READ)
def measure_read(ctx: BenchContext) -> Sequence[Figure]:
    log = RedisEventLog(ctx.redis, readback_keys(ctx).namespace, ctx.settings.partitions)

    def once(_: int) -> float:
        with Stopwatch() as watch:
            read = sum(1 for p in range(log.partitions) for _ in log.iter_partition(p, batch=PAGE))
        if read != len(ctx.data):
            raise AssertionError(f"{LEDGER_READ}: read {read} events, expected {len(ctx.data)}")
        return watch.seconds

    seconds = ctx.rounds(LEDGER_READ, once)
    note = f"XRANGE pages of {PAGE}, decode + upcast"
    return [throughput(LEDGER_READ, GROUP, len(ctx.data), seconds, baseline=RAW_XRANGE, note=note)]
