"""The error hierarchy: one root, a base per family, translated at adapter edges.

Every error a user can meet is defined here, so that each adapter (CLI exit codes,
HTTP statuses, MCP tool errors) translates one tree. Exit codes: 1 other, 2 rejected
command or query, 3 configuration (incl. never migrated), 4 a server unreachable,
5 projection, 6 timeout, 7 not found, 8 refused (history gap, not permitted).
"""

from __future__ import annotations


class LedgerError(Exception):
    """Root of every error memory-ledger raises on purpose."""

    exit_code = 1


class ConfigurationError(LedgerError):
    """Settings or server configuration make it unsafe or impossible to run."""

    exit_code = 3


class DurabilityError(ConfigurationError):
    """The Redis server would lose acknowledged events on restart."""


class BrokerRequired(ConfigurationError):
    """The workers have no broker they can run on: the ledger's Redis is a cluster (which
    dramatiq's Redis broker cannot use) and MEMLEDGER_BROKER_URL names no other (exit code 3)."""


class StoreUnavailable(LedgerError):
    """Redis or PostgreSQL could not be reached; transient, safe to retry."""

    exit_code = 4


class CommandError(LedgerError):
    """A command was not accepted; nothing was appended."""

    exit_code = 2
    code = "rejected"


class InvalidCommand(CommandError):
    """The command failed validation (a field is missing, too large or malformed)."""

    code = "invalid"


class VersionConflict(CommandError):
    """The caller's expected subject version is not the current one."""

    code = "version_conflict"

    def __init__(self, message: str, current_version: int) -> None:
        super().__init__(message)
        self.current_version = current_version


class UnknownSubject(CommandError):
    """The memory or session named by the command does not exist."""

    code = "unknown_subject"


class SubjectForgotten(CommandError):
    """The memory was forgotten; it takes no further changes."""

    code = "forgotten"


class SubjectExists(CommandError):
    """A store or ingest named an id that is already taken."""

    code = "exists"


class SessionClosed(CommandError):
    """A message for a conversation that was closed (or a session ingested whole, which takes
    no messages), or a close of one that is closed already."""

    code = "session_closed"


class RateLimited(CommandError):
    """The organisation sent more commands than its rate allows."""

    code = "rate_limited"

    def __init__(self, message: str, retry_after: float) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class InvalidQuery(LedgerError):
    """A query's input cannot be answered (a filter is malformed, out of range, or not storable text)."""

    exit_code = 2


class EventError(LedgerError):
    """An event could not be decoded or upcast."""


class ProjectionError(LedgerError):
    """A read model cannot be used as it is."""

    exit_code = 5


class OutdatedReadModel(ProjectionError):
    """The stored read model was built by an older projection version."""


class PoisonEvent(ProjectionError):
    """An event failed to apply after retries."""


class Timeout(LedgerError):
    """Waiting for a read model to reach a position took too long."""

    exit_code = 6


class NotMigrated(ConfigurationError):
    """The namespace's tables do not exist: its schema was never migrated."""


class HistoryGap(LedgerError):
    """Events needed for a read were trimmed from the stream and are not in the archive."""

    exit_code = 8


class Unauthorized(CommandError):
    """The sender may not send this command: another org's, or one only the system sends."""

    code = "unauthorized"


class SystemOnly(Unauthorized):
    """The command type is sent only by memory-ledger's own workers and operators (retries,
    summaries, expiry, transcript purges), never by an agent's key (HTTP 403: the type is
    public knowledge, so refusing it reveals nothing about any org)."""

    code = "system_only"


class NotFound(LedgerError):
    """No such memory in this org (to another org's caller, its memories do not exist)."""

    exit_code = 7


class SessionNotFound(NotFound):
    """No such session in this org."""


class RedriveRefused(ProjectionError):
    """A dead letter cannot be re-driven now (out of order, already re-driven, or a read
    model that is only ever rebuilt); the letter stays open."""


class NotPermitted(LedgerError):
    """The App's scope does not allow this operation (a namespace-wide one on a tenant's App)."""

    exit_code = 8


class Unauthenticated(LedgerError):
    """No API key, or one that is unknown, malformed or revoked (HTTP 401). The message is the
    same whichever it was, so a caller cannot probe which keys exist."""

    exit_code = 8


class Forbidden(LedgerError):
    """The caller's key lacks the role for this operation (HTTP 403): an analyst key writing,
    a non-operator key running maintenance. Another org's data is NotFound, never Forbidden."""

    exit_code = 8


class AlreadyRevoked(CommandError):
    """The API key was revoked before; a key is revoked once."""

    code = "already_revoked"


class EmbeddingsUnavailable(StoreUnavailable):
    """The embeddings endpoint could not be reached or answered 5xx/429; transient (HTTP 503)."""


class SemanticSearchUnavailable(ConfigurationError):
    """The database has no pgvector extension, so there is no embeddings read model: vector and
    hybrid search cannot answer (HTTP 503, exit code 3). Text search still works."""
