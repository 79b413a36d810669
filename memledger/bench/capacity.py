"""Capacity figures for docs/scaling.md: the benchmark's append and projector measurements at
several partition counts, each count in a namespace of its own.

    python -m memledger.bench.capacity --partitions 1 8 --events 10000 --repeat 3 \\
        --json-file docs/bench-capacity-2026-12-04.json

One Redis node and one PostgreSQL primary serve every partition; what the partition count
changes is how many projector processes may share the work (one per partition at most),
not what one server can absorb. The load average is recorded beside each run, since the
figures of a shared machine are only as quiet as it was.
"""

from __future__ import annotations

import argparse
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ledger import Settings

from .runner import measurements, run_benchmark

#: The measurements a capacity model needs, with the raw limits their ratios refer to.
NAMES = ("raw XADD, pipelined", "PG COPY", "ledger append, batched, log only", "ledger append, batched",
         "PG COPY into the memories read-model table", "projector memories", "projector archive")


def run(settings: Settings, partitions: Sequence[int], events: int, repeat: int) -> list[dict[str, Any]]:
    """One benchmark run per partition count: its figures (name -> value, unit) and the load after it."""
    chosen = [m for m in measurements() if m.name in NAMES]
    out = []
    for count in partitions:
        report = run_benchmark(settings.model_copy(update={"partitions": count}), events=events, repeat=repeat,
                               progress=False, only=chosen)
        out.append({"partitions": count, "events": events, "repeat": repeat, "loadavg": os.getloadavg(),
                    "figures": {f.name: {"value": f.value, "unit": f.unit, "samples": f.samples, "note": f.note}
                                for f in report.figures}})
    return out


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--partitions", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--events", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--json-file", type=Path)
    args = parser.parse_args(argv)
    results = run(Settings(), args.partitions, args.events, args.repeat)
    text = json.dumps(results, indent=2)
    print(text)
    if args.json_file:
        args.json_file.write_text(text + "\n")


if __name__ == "__main__":
    main()
