"""Commands agents send, their pure handlers, and the bus that appends them."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ledger.lazy import lazy_names

from ledger import Settings
from ledger.errors import Unauthorized

from .decide import Decision, SubjectState, check, decide, fold
from .models import (
    AppendMessage,
    CloseSession,
    Command,
    ExpireMemory,
    ForgetMemory,
    IngestSession,
    MarkSessionFailed,
    PurgeTranscript,
    RecordRecall,
    RetrySession,
    StoreMemory,
    SummarizeConversation,
    SummarizeSession,
    TagMemory,
    UntagMemory,
    UpdateMemory,
)

if TYPE_CHECKING:
    from .bus import CommandBus, parse

__all__ = ["AppendMessage", "CloseSession", "SummarizeConversation",
           "Command", "CommandBus", "Decision", "ExpireMemory", "ForgetMemory", "IngestSession",
           "MarkSessionFailed", "PurgeTranscript", "RecordRecall", "RetrySession", "StoreMemory",
           "SubjectState", "SummarizeSession", "TagMemory", "Unauthorized", "UntagMemory", "UpdateMemory",
           "check", "decide", "fold", "open_bus", "parse"]

# The bus: resolved on first use (PEP 562), so importing the models and decide() stays
# cheap; `open_bus` is what opens the Redis log.
_LAZY = {"CommandBus": ".bus", "parse": ".bus"}

if not TYPE_CHECKING:  # hidden from mypy, which would otherwise type any unknown name as Any
    __getattr__ = lazy_names(__name__, _LAZY, globals())


def open_bus(settings: Settings, tenant: str | None = None, system: bool = False) -> CommandBus:
    """A command bus on the configured ledger, rate-limited per org as configured.

    `system=True` is for memory-ledger's own components only (workers, expiry, an
    operator's retry): it also accepts the internal command types.
    """
    from ledger import open_log

    from .bus import CommandBus

    log = open_log(settings)
    return CommandBus(log, log.rate_limiter(settings.rate_per_second, settings.rate_burst), tenant, system=system)
