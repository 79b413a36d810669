"""Peak resident memory (RSS) of this process over a piece of work, in MB.

Linux keeps a process's high-water mark (VmHWM) and lets the process reset it (writing 5
to /proc/self/clear_refs), so a measurement sees the peak of its own work rather than of
everything the process did before. Elsewhere it falls back to `ru_maxrss` (the peak over
the whole life of the process: an upper bound).
"""

from __future__ import annotations

import resource
import sys
from pathlib import Path
from types import TracebackType

__all__ = ["PeakRss"]

_STATUS, _CLEAR = Path("/proc/self/status"), Path("/proc/self/clear_refs")


class PeakRss:
    """`with PeakRss() as rss: ...` then `rss.mb`: the peak RSS while the block ran."""

    mb: float = 0.0

    def __enter__(self) -> PeakRss:
        try:
            _CLEAR.write_text("5")
        except OSError:
            pass  # not Linux, or not allowed: ru_maxrss below is the life-long peak
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self.mb = _high_water_kb() / 1024


def _high_water_kb() -> float:
    try:
        for line in _STATUS.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return float(line.split()[1])
    except OSError:
        pass
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 1024 if sys.platform == "darwin" else float(peak)  # bytes on macOS, KiB on Linux
