"""The application API: one object, opened from `Settings`, that every surface calls.

    with App.open(Settings()) as app:
        receipt = app.send(StoreMemory(org_id="acme", agent_id="bot", content="likes tea"))
        app.wait_for(receipt)
        rows = app.query(MemoryQuery("acme", text="tea")).rows

The App owns its connections: each (the ledger, the agents' and the system's command bus,
PostgreSQL through the memory store, a Redis client for the Redis read models, the open
projections `lag` reads) is opened on first use, once, and closed by `close()`. The CLI, and
later HTTP and MCP, only parse input, call a method and render its typed result.

Scope. An App opened with `tenant=ORG` (and optionally `agent=AGENT`) is what an API key
gets: every read is confined to that org (and agent), and another org's data reads as not
found (`NotFound`), never as forbidden; every write of another org or agent is refused with
its own outcome and appends nothing. Operations on the whole namespace (replay, trim, lag,
info, projectors, workers, migrations) need an unscoped App (`NotPermitted` otherwise).
`system=True` is for memory-ledger's own components and its operators: only such an App sends
the internal command types (commands.open_bus has the same flag).

Keys. `App.for_principal(settings, principal)` is the App an API key gets (HTTP, MCP): scoped
to the key's org (and agent), recording the key as the `actor` of every command it sends, and
raising `Forbidden` when the key's role does not allow the call (writes need an agent key;
maintenance an operator key). `authenticate(secret)` turns a key's secret into its principal
(memledger/keyring.py; accepted keys are cached for at most 2 s).

Read models. The first use of PostgreSQL checks that the namespace was migrated: a never
migrated namespace is one `ConfigurationError` (exit code 3) naming `memledger migrate`,
before anything is appended or queried.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import closing
from dataclasses import replace
from datetime import date, datetime, timedelta, timezone
from itertools import islice
from types import TracebackType
from typing import TYPE_CHECKING, Any, Generic, Protocol, TypeVar

from ledger import Settings
from ledger.connections import connect_redis
from ledger.errors import CommandError, ConfigurationError, Forbidden, InvalidQuery, LedgerError, NotPermitted
from ledger.events import stream_id_key

from .keyring import KeyCache
from .log_reader import MAX_SEQ, EventFilter, PartitionReader, follow, newest, oldest, partitions_for
from .search import Searcher
from .servers import ServerStatus, server_status, stop_servers
from .views import Health, LedgerInfo, MemoryView, PartitionInfo, ShadowDropped, StatsReport

if TYPE_CHECKING:
    from commands import Command, CommandBus
    from ledger import RecordedEvent
    from ledger.eventlog import Outcome, Receipt
    from ledger.log import RedisEventLog
    from projections import MemoryQuery, Projection, QueryResult, RunStats
    from projections.hierarchy import HierarchyQuery, SessionTree
    from projections.history import HistoryEntry
    from projections.postgres.api_keys import ApiKey
    from projections.redis import AnalyticsReport, CachedMemoryStore, QueryCache, TrendingReport
    from projections.search import SearchHit, SearchQuery
    from projections.status import PartitionLag
    from replay.deadletters import DeadLetter, RedriveOutcome
    from replay.rebuild import Progress, RebuildPlan, RebuildResult
    from replay.status import StatusRow
    from replay.trim import TrimPoint
    from replay.verify import VerifyResult
    from workers.expiry import MaintenanceReport
    from workers.ingest import SessionQueue
    from workers.status import WorkerStatus

    from .conversations import Conversations, RecentMessages
    from .keyring import IssuedKey
    from .principal import Principal

__all__ = ["App", "NotPermitted"]

Row = dict[str, Any]
#: How long `wait_for` waits for a read model by default, in seconds.
WAIT_TIMEOUT_S = 5.0


class _Closable(Protocol):
    def close(self) -> None: ...


_C = TypeVar("_C", bound=_Closable)


class _OnFirstUse(Generic[_C]):
    """A connection that `opener` opens on first use and `close()` closes (the next use reopens it).

    Its type is whatever `opener` returns, so the App holds a driver's client without naming
    (or importing) the driver.
    """

    def __init__(self, opener: Callable[[], _C]):
        self._opener = opener
        self._opened: _C | None = None

    def get(self) -> _C:
        if self._opened is None:
            self._opened = self._opener()
        return self._opened

    def close(self) -> None:
        opened, self._opened = self._opened, None
        if opened is not None:
            opened.close()


class App:
    """Every operation of memory-ledger, on connections opened lazily and once.

    Parameters:
        settings: where the servers are and which namespace to use.
        tenant: when set, the only org this App reads or writes (an API key's org).
        agent: with `tenant`, the only agent this App reads or writes.
        system: True for memory-ledger's own components and operators: they may also send
            the internal command types (retries, summaries, expiry).
    """

    def __init__(self, settings: Settings, tenant: str | None = None, agent: str | None = None,
                 system: bool = False):
        if agent is not None and tenant is None:
            raise ConfigurationError("an App scoped to an agent needs its org (tenant) too")
        self.settings, self.tenant, self.agent, self.system = settings, tenant, agent, system
        self._log: RedisEventLog | None = None
        self._buses: dict[bool, CommandBus] = {}
        self._store: CachedMemoryStore | None = None
        self._redis = _OnFirstUse(lambda: connect_redis(settings))  # for the Redis read models
        self._searcher = _OnFirstUse(lambda: Searcher(settings))  # semantic search (memledger/search.py)
        self._projections: dict[str, Projection] = {}
        self._queue: SessionQueue | None = None
        self._working: Conversations | None = None  # working memory's reads (memledger/conversations.py)
        self._no_queue = False  # queue positions cannot be told here (no read models): not asked again
        self.principal: Principal | None = None  # the API key this App acts for (`for_principal`)
        self.key_cache = KeyCache()  # what `authenticate` accepted lately (memledger/keyring.py)

    @classmethod
    def open(cls, settings: Settings, tenant: str | None = None, agent: str | None = None,
             system: bool = False) -> App:
        """An App on `settings` (nothing is connected until a method needs it)."""
        return cls(settings, tenant, agent, system)

    @classmethod
    def for_principal(cls, settings: Settings, principal: Principal) -> App:
        """The App an API key gets: its org (and agent) only, its key as every command's actor,
        and `Forbidden` for what its role may not do."""
        app = cls(settings, principal.org_id, principal.agent_id)
        app.principal = principal
        return app

    def __enter__(self) -> App:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self.close()

    def close(self) -> None:
        """Close every connection this App opened (it may be used again: they reopen)."""
        for projection in self._projections.values():
            projection.close()
        for bus in self._buses.values():
            bus.log.close()
        if self._log is not None:
            self._log.close()
        if self._store is not None:
            self._store.close()
        self._redis.close()
        self._searcher.close()
        self._log, self._buses, self._store, self._projections = None, {}, None, {}
        self._queue, self._no_queue, self._working = None, False, None

    # -- connections, each opened once -------------------------------------------------------

    def _ledger(self) -> RedisEventLog:
        """The ledger; opening it refuses a volatile Redis (unless allowed) or a changed partition count."""
        if self._log is None:
            from ledger import open_log

            self._log = open_log(self.settings)
        return self._log

    def _bus(self, system: bool) -> CommandBus:
        if system not in self._buses:
            from commands import open_bus

            self._buses[system] = open_bus(self.settings, self.tenant, system=system)
        return self._buses[system]

    def _memories(self) -> CachedMemoryStore:
        if self._store is None:
            from projections.redis import open_cached_store

            store = open_cached_store(self.settings)
            try:
                self._require_schema(store)
            except BaseException:
                store.close()
                raise
            self._store = store
        return self._store

    def _require_schema(self, store: CachedMemoryStore) -> None:
        from ledger.postgres import is_migrated

        if not is_migrated(store.conn, self.settings.db_schema):
            raise ConfigurationError(
                f"namespace {self.settings.namespace!r} has no read models yet (PostgreSQL schema "
                f"{self.settings.db_schema!r} was never migrated); run `memledger migrate` first")

    def _projection(self, name: str) -> Projection:
        if name not in self._projections:
            from projections import open_projection

            self._projections[name] = open_projection(name, self.settings)
        return self._projections[name]

    def require_read_models(self) -> None:
        """Raise `ConfigurationError` (naming `memledger migrate`) unless the namespace was migrated."""
        self._memories()

    def check_ledger(self) -> None:
        """Open the ledger now, so that a volatile Redis or a wrong partition count is refused up front."""
        self._ledger()

    # -- scope --------------------------------------------------------------------------------

    def _org(self, org: str | None) -> str:
        """The org a call is about: a scoped App's own; another org reads as not found."""
        if self.tenant is None:
            if not org:
                raise InvalidQuery("name the org: every read is scoped to one")
            return org
        if org not in (None, self.tenant):
            raise self._not_found(f"no org {org!r}")
        return self.tenant

    def _agent(self, agent: str | None) -> str | None:
        if self.agent is None:
            return agent
        if agent not in (None, self.agent):
            raise self._not_found(f"no agent {agent!r} in org {self.tenant!r}")
        return self.agent

    @staticmethod
    def _not_found(message: str) -> LedgerError:
        from projections import NotFound

        return NotFound(message)

    def _maintenance(self, what: str) -> None:
        """Refuse `what` to an API key that is not an operator's."""
        if self.principal is not None and not self.principal.can_operate:
            raise Forbidden(f"{what} needs an operator key; this is the {self.principal.describe()}")

    def _signed(self, commands: Sequence[Command | Mapping[str, Any]]) -> Sequence[Command | Mapping[str, Any]]:
        """The commands as this App's key sends them (its id as their actor); `Forbidden` for a
        key that may not write."""
        if self.principal is None:
            return commands
        if not self.principal.can_write:
            raise Forbidden(f"only agent keys write; this is the {self.principal.describe()}")
        return [self.principal.sign(c) for c in commands]

    def _operator(self, what: str) -> None:
        self._maintenance(what)
        if self.tenant is not None:
            raise NotPermitted(f"{what} acts on the whole namespace; this App is scoped to org {self.tenant!r}")

    def _foreign(self, raw: Command | Mapping[str, Any]) -> CommandError | None:
        """The refusal of a command for another agent than a scoped App's (None: it may go on)."""
        agent = raw.get("agent_id") if isinstance(raw, Mapping) else raw.agent_id
        if self.agent is None or agent == self.agent:
            return None
        from commands import Unauthorized

        return Unauthorized(f"this sender may write as agent {self.agent!r} only, not {agent!r}")

    # -- agents: commands ---------------------------------------------------------------------

    def send(self, command: Command | Mapping[str, Any]) -> Receipt:
        """Append one command (a model, or its JSON form with `type`); raises its `CommandError`."""
        outcome = self.send_many([command])[0]
        if isinstance(outcome, CommandError):
            raise outcome
        return outcome

    def send_many(self, commands: Sequence[Command | Mapping[str, Any]]) -> list[Outcome]:
        """Append commands in one round trip: one receipt or error each, in input order.

        A command that is refused (invalid, another org's or agent's, internal on an agent's
        App, rate-limited) appends nothing and costs no other command its place.
        """
        commands = self._signed(commands)
        outcomes: list[Outcome | None] = [self._foreign(c) for c in commands]
        allowed = [c for c, o in zip(commands, outcomes) if o is None]
        sent = iter(self._bus(self.system).send_many(allowed) if allowed else [])
        return [o if o is not None else next(sent) for o in outcomes]

    def ingest_many(self, commands: Sequence[Command | Mapping[str, Any]]) -> list[Outcome]:
        """`send_many` for sessions: refused as a whole, before appending, when the namespace
        has no read models to queue them in (`memledger migrate`)."""
        self.require_read_models()
        return self.send_many(commands)

    def queue_position(self, receipt: Receipt) -> int | None:
        """Sessions ahead of the one `receipt` ingested (an estimate; None when it cannot be told)."""
        if self._no_queue:
            return None
        try:
            if self._queue is None:
                from workers.ingest import SessionQueue

                self._queue = SessionQueue(self._bus(self.system), self._memories().conn, self.settings)
        except LedgerError:
            self._no_queue = True
            return None
        return self._queue.estimate(receipt)

    def rate_limit(self) -> tuple[int, int, float]:
        """The scoped org's rate limit now: (burst, commands it may send now, seconds until its bucket is
        full); right after a send, as that send left it (no round trip)."""
        limiter = self._bus(self.system).limiter
        if self.tenant is None or limiter is None:
            raise NotPermitted("rate limits are per org: open the App scoped to one")
        left, full_in = limiter.last_left(self.tenant) or limiter.peek(self.tenant)
        return limiter.burst, left, full_in

    def wait_for(self, receipt: Receipt, timeout: float = WAIT_TIMEOUT_S, projection: str = "memories") -> None:
        """Return once `projection` has applied the receipt's position (read-your-writes); `Timeout` else.
        The memories and the archive are waited on through the query connection; any other
        projection (a Redis read model included) through its own checkpoint store."""
        if projection in ("memories", "archive") or self._read_on_replica(projection):
            # Checkpointed in PostgreSQL and read on the query connection: with a replica, its
            # applied checkpoint (the table replicates) is what says the read will see the write.
            self._memories().wait_for(receipt, timeout, projection)
            return
        from projections.checkpoints import wait_applied

        model = self._projection(projection)
        wait_applied(lambda: model.checkpoints().get(receipt.partition), receipt, timeout, projection)

    def _read_on_replica(self, projection: str) -> bool:
        """Whether `projection` is read on the replica (a PostgreSQL one, with a read URL set)."""
        from projections.postgres.base import PostgresProjection
        from projections.registry import projection_class

        return self.settings.database_read_url is not None and issubclass(
            projection_class(projection), PostgresProjection)  # type: ignore[arg-type]

    # -- analysts: memories -------------------------------------------------------------------

    def query(self, query: MemoryQuery) -> QueryResult:
        """Memories matching `query`, through the query cache (the result says HIT, MISS or BYPASS)."""
        return self._memories().query(self.scoped(query))

    def scoped(self, query: MemoryQuery) -> MemoryQuery:
        """`query` as this App runs it: in its org, and its agent's when the key is bound to one."""
        return replace(query, org_id=self._org(query.org_id), agent_id=self._agent(query.agent_id))

    def open_cache(self) -> QueryCache | None:
        """The query cache `query` goes through, once a query has opened it (no I/O: None before)."""
        return self._store.cache if self._store is not None else None

    def search(self, query: SearchQuery) -> list[SearchHit]:
        """Memories by meaning and words (`query.mode`: hybrid, semantic, text), best first, each
        with its score and the signals that matched; `SemanticSearchUnavailable` without pgvector."""
        scoped = replace(query, org_id=self._org(query.org_id), agent_id=self._agent(query.agent_id))
        self.require_read_models()
        return self._searcher.get().search(scoped)

    def search_unavailable(self) -> str | None:
        """None when search can answer on this database, else the one line that says why not."""
        return self._searcher.get().available()

    def as_of(self, org: str | None, agent: str | None, at: datetime, query: MemoryQuery | None = None) -> list[Row]:
        """What `agent` knew at `at`, folded from history (filtered by `query` when given)."""
        agent = self._agent(agent)
        if agent is None:
            raise InvalidQuery("a point-in-time query names its agent")
        return self._memories().as_of(self._org(org), agent, at, query)

    def get(self, org: str | None, memory_id: str, agent: str | None = None, as_of: datetime | None = None) -> Row:
        """One live memory (`NotFound` if forgotten, expired or unknown); with `as_of`, as it stood then."""
        org, agent = self._org(org), self._agent(agent)
        if as_of is None:
            return self._memories().get(org, memory_id, agent)
        owner = self._owner(org, memory_id, agent)
        for row in self._memories().as_of(org, owner, as_of):
            if row["memory_id"] == memory_id:
                return row
        raise self._not_found(f"memory {memory_id!r} of org {org!r} was not live at {as_of.isoformat()}")

    def _owner(self, org: str, memory_id: str, agent: str | None) -> str:
        agents = {h.event.agent_id for h in self.history(org, memory_id, agent)}
        if not agents:
            raise self._not_found(f"no memory {memory_id!r} in org {org!r}")
        if len(agents) > 1:
            raise InvalidQuery(f"memory id {memory_id!r} is used by several agents of {org!r}; name the agent")
        return agents.pop()

    def history(self, org: str | None, memory_id: str, agent: str | None = None) -> list[HistoryEntry]:
        """Every archived event of one memory, oldest first (empty when there is none)."""
        org, agent = self._org(org), self._agent(agent)
        entries = self._memories().history(org, memory_id)
        return [h for h in entries if agent is None or h.event.agent_id == agent]

    def memory(self, org: str | None, memory_id: str, agent: str | None = None, with_history: bool = False,
               as_of: datetime | None = None) -> MemoryView:
        """One memory and (with `with_history`) its events; a forgotten one still shows its history."""
        from projections import NotFound

        events = self.history(org, memory_id, agent) if with_history else []
        try:
            return MemoryView(self.get(org, memory_id, agent, as_of), tuple(events))
        except NotFound:
            if not events:
                raise
            return MemoryView(None, tuple(events))

    def stats(self, org: str | None) -> list[Row]:
        """Per-agent counters of an org: live, stored, updated, forgotten, expired, recalls, sessions."""
        rows = self._memories().agent_stats(self._org(org))
        return [r for r in rows if self.agent in (None, r["agent_id"])]

    def stats_report(self, org: str | None, top_tags: int = 100) -> StatsReport:
        """`stats` plus live memories per tag (the `top_tags` most used) and the hierarchy's counts."""
        store, org_id = self._memories(), self._org(org)
        return StatsReport(self.stats(org_id), store.tag_counts(org_id, self.agent, top_tags),
                           store.hierarchy_counts(org_id, self.agent))

    def hierarchy(self, query: HierarchyQuery) -> list[Row]:
        """Sessions (raw), their summaries and the discrete memories under them, newest first."""
        from projections.postgres.hierarchy_reads import hierarchy

        scoped = replace(query, org_id=self._org(query.org_id), agent_id=self._agent(query.agent_id))
        try:
            return hierarchy(self._memories().conn, scoped)
        except ValueError as e:
            raise InvalidQuery(str(e)) from None

    # -- analysts: the Redis read models ------------------------------------------------------

    def trending(self, org: str | None, hours: int, top: int = 10, until: datetime | None = None) -> TrendingReport:
        """Trending tags and most-recalled memories of an org over the `hours` before `until` (now)."""
        from projections.redis import Trending

        s = self.settings
        try:
            return Trending(self._redis.get(), s.namespace, s.partitions).top(self._org(org), hours, top, until)
        except (ValueError, OverflowError) as e:  # OverflowError: hours before the year 1
            raise InvalidQuery(f"no such time window: {e}") from None

    def memory_contents(self, org: str | None, refs: Iterable[tuple[str, str]]) -> dict[tuple[str, str], str]:
        """The content of each (agent, memory id) still live, from PostgreSQL; empty when it cannot be read."""
        from projections import NotFound

        found: dict[tuple[str, str], str] = {}
        try:
            for agent, memory_id in refs:
                try:
                    found[(agent, memory_id)] = self.get(org, memory_id, agent)["content"]
                except NotFound:
                    pass  # forgotten since: rankings are eventually consistent with the memories table
        except LedgerError:
            return {}
        return found

    def analytics(self, org: str | None, since: date | None = None, until: date | None = None) -> AnalyticsReport:
        """Events per type, unique agents and users (HyperLogLog) of an org, per day from `since` (default:
        6 days before `until`) to `until` (default: today, UTC)."""
        from projections.redis import Analytics

        s = self.settings
        last = until or datetime.now(timezone.utc).date()
        first = since or (last - timedelta(days=6) if last.toordinal() > 6 else date.min)
        try:
            return Analytics(self._redis.get(), s.namespace, s.partitions).report(self._org(org), first, last)
        except (ValueError, OverflowError) as e:
            raise InvalidQuery(f"no such range of days: {e}") from None

    def feed(self, org: str | None, agent: str | None, limit: int = 20) -> list[dict[str, Any]]:
        """An agent's recent activity, newest first."""
        from projections.redis import ActivityFeed

        org, agent = self._org(org), self._agent(agent)
        if agent is None:
            raise InvalidQuery("a feed belongs to one agent: name it")
        s = self.settings
        return ActivityFeed(self._redis.get(), s.namespace, s.partitions).recent(org, agent, limit)

    def watch(self, org: str | None, stop: threading.Event) -> Iterator[dict[str, Any]]:
        """An org's events as the activity projector applies them, until `stop` is set."""
        from projections.redis import watch

        org = self._org(org)
        for event in watch(self._redis.get(), self.settings.namespace, org, stop):
            if self.agent in (None, event.get("agent")):
                yield event

    # -- sessions -----------------------------------------------------------------------------

    def session(self, org: str | None, session_id: str, agent: str | None = None) -> SessionTree:
        """One session: status, summary, the memories extracted from it, its transcript."""
        from projections.postgres.hierarchy_reads import session_tree

        return session_tree(self._memories().conn, self._org(org), session_id, self._agent(agent))

    # -- working memory (memledger/conversations.py) ------------------------------------------

    def recent_messages(self, org: str | None, session_id: str, n: int = 10, agent: str | None = None,
                        with_summary: bool = False, after: tuple[int, str] | None = None) -> RecentMessages:
        """The last `n` messages of a conversation, oldest first, from the cache or PostgreSQL
        (the answer's `source` says which); `with_summary` adds the older part's summary; `after`
        (partition, stream id) is a write the answer must include."""
        return self._conversations().recent(self._org(org), session_id, n, self._agent(agent), with_summary,
                                            after)

    def append_message(self, command: Command | Mapping[str, Any]) -> Receipt:
        """Append one message (AppendMessage); the first one creates the session."""
        return self.send(command)

    def close_session(self, org: str | None, session_id: str, agent: str,
                      idempotency_key: str | None = None) -> Receipt:
        """Close a conversation: no more messages; background extraction summarizes it."""
        return self.send({"type": "CloseSession", "org_id": self._org(org), "session_id": session_id,
                          "agent_id": self._agent(agent) or agent, "idempotency_key": idempotency_key})

    def _conversations(self) -> Conversations:
        if self._working is None:
            from .conversations import Conversations

            self._working = Conversations(self.settings, lambda: self._memories().conn, self._redis.get)
        return self._working

    def retry_session(self, org: str | None, session_id: str, agent: str | None = None, reason: str | None = None,
                      force: bool = False) -> Receipt:
        """Process a failed session again (any with `force`): appends the internal RetrySession."""
        from workers.ingest import SessionQueue

        self._maintenance("session retry")
        if not self.system:
            raise NotPermitted("a retry appends an internal command: open the App with system=True")
        queue = SessionQueue(self._bus(True), self._memories().conn, self.settings)
        return queue.retry(self._org(org), session_id, self._agent(agent), reason, force)

    def processing_status(self) -> WorkerStatus:
        """Queue depth, per-day counts, worker heartbeats, the oldest pending and recent failed sessions.

        On a scoped App the sessions counted and listed are the org's only; the queue, the
        daily counts and the workers are the service's, shared by every org.
        """
        from workers.status import collect

        if self.tenant is None:
            self._operator("worker status")
        conn = self._memories().conn
        return collect(self._ledger(), conn, self.settings.worker_heartbeat_timeout_ms / 1000, self.tenant,
                       self.settings)

    def cleanup(self, retention_days: int | None = None) -> MaintenanceReport:
        """One round of expiry and retention now (of the App's org only when scoped): memories past
        their expiry end, raw transcripts older than `retention_days` (default: the setting) are purged."""
        from workers.expiry import ACTOR, run_maintenance

        self._maintenance("maintenance cleanup")
        days = self.settings.retention_days if retention_days is None else retention_days
        actor = ACTOR if self.principal is None else self.principal.key_id  # history names the operator's key
        return run_maintenance(self._bus(True), self._memories().conn, days, org_id=self.tenant, actor=actor,
                               idle_close_s=self.settings.session_idle_close_s,
                               max_messages=self.settings.session_max_messages)

    def run_workers(self, processes: int, threads: int, enqueuer: bool, maintenance: bool,
                    stop: threading.Event) -> None:
        """Migrate, then run the dramatiq workers, the enqueuer and maintenance until `stop` is set."""
        from workers.broker import broker_kind
        from workers.supervisor import Supervisor, WorkerOptions

        broker_kind(self.settings)  # a cluster ledger with no broker to use: one line, exit 3, nothing started
        self.migrate()
        self.check_ledger()  # refuse a volatile Redis here, before any child starts
        options = WorkerOptions(processes, threads, enqueuer=enqueuer, maintenance=maintenance)
        Supervisor(self.settings, options).run(stop)

    # -- API keys (memledger/keyring.py) ------------------------------------------------------

    def authenticate(self, secret: str) -> Principal:
        """The principal of an API key's secret; `Unauthenticated`, with one message whether the key is
        unknown, malformed or revoked. Accepted keys are cached in this App for at most
        `keyring.AUTH_CACHE_S` (2 s), so a revocation takes effect within 2 s of `keys revoke`."""
        from .keyring import authenticate

        return authenticate(self._memories().conn, self.key_cache, secret)

    def cached_principal(self, secret: str) -> Principal | None:
        """The principal of a key this App accepted less than 2 s ago, without any I/O (None: call
        `authenticate`); `Unauthenticated` for a malformed secret."""
        from .keyring import cached_principal

        return cached_principal(self.key_cache, secret)

    def issue_key(self, org: str | None, role: str, agent: str | None = None, label: str | None = None,
                  actor: str | None = None) -> IssuedKey:
        """Issue a key (its secret is in the result, and nowhere else); returns once it authenticates."""
        from .keyring import issue_command

        self._key_admin("keys create")
        issued, command = issue_command(self._org(org), role, agent, label, actor)
        receipt = self.send(command)
        self._settle(receipt)
        return replace(issued, receipt=receipt)

    def revoke_key(self, org: str | None, key_id: str, reason: str | None = None, actor: str | None = None) -> Receipt:
        """Revoke a key (UnknownSubject, AlreadyRevoked); returns once the keys read model has applied it."""
        from .keyring import revoke_command, revoke_refusal

        self._key_admin("keys revoke")
        org = self._org(org)
        outcome = self.send_many([revoke_command(org, key_id, reason, actor)])[0]
        if isinstance(outcome, CommandError):
            raise revoke_refusal(outcome, org, key_id)
        self._settle(outcome)
        return outcome

    def keys(self, org: str | None = None) -> list[ApiKey]:
        """The API keys of `org` (of every org on an unscoped App given none), never their secrets or hashes."""
        from projections.postgres.api_keys import list_keys

        self._maintenance("keys list")
        return list_keys(self._memories().conn, self._org(org) if org or self.tenant else None)

    def _key_admin(self, what: str) -> None:
        self._maintenance(what)
        if not self.system:
            raise NotPermitted(f"{what} appends an internal command: open the App with system=True")
        self.require_read_models()  # before appending: a key no read model holds would never work

    def _settle(self, receipt: Receipt) -> None:
        from .keyring import settle

        settle(self.settings, lambda timeout: self.wait_for(receipt, timeout, "api_keys"))

    # -- the log ------------------------------------------------------------------------------

    def _scoped(self, filt: EventFilter) -> EventFilter:
        if self.tenant is None:
            return filt
        return replace(filt, org=self._org(filt.org), agent=self._agent(filt.agent))

    def events(self, filt: EventFilter, partition: int | None = None, limit: int = 100) -> list[RecordedEvent]:
        """The first `limit` events matching `filt`, oldest first, across partitions (or one)."""
        filt = self._scoped(filt)
        chosen = partitions_for(self.settings.partitions, partition, filt.org, filt.agent)
        return oldest(self._ledger(), chosen, filt, limit, self._with_archive(filt, limit))

    def _with_archive(self, filt: EventFilter, limit: int) -> PartitionReader:
        """A partition reader that reads a range starting below a trim from the archive, then the
        stream (`ledger.archive.read_from`): an old cursor (an SSE client back after a trim) still
        gets every event after it, none skipped."""
        log = self._ledger()

        def read(partition: int, after: str, until: str) -> Iterable[RecordedEvent]:
            trimmed = log.trimmed_through(partition)
            if trimmed is None or stream_id_key(after) >= stream_id_key(trimmed):
                return log.iter_partition(partition, after, until)
            from ledger.archive import read_from

            # Its own connection (read_from holds a transaction while it reads), closed here.
            # An XRANGE end of a bare millisecond covers all its sequence numbers; the archive's needs them.
            end = None if until == "+" else until if "-" in until else f"{until}-{MAX_SEQ}"
            with closing(read_from(self.settings, log, partition, after, end)) as events:
                return list(islice(filter(filt.matches, events), limit))

        return read

    def heads(self, filt: EventFilter, partition: int | None = None) -> dict[int, str]:
        """The current head of each partition `filt` reads ("0-0" when empty): a cursor for `tail`/`follow`."""
        filt = self._scoped(filt)
        chosen = partitions_for(self.settings.partitions, partition, filt.org, filt.agent)
        return {p: self._ledger().head(p) or "0-0" for p in chosen}

    def tail(self, filt: EventFilter, heads: dict[int, str], limit: int = 20) -> list[RecordedEvent]:
        """The newest `limit` matching events at or before `heads`, oldest of them first."""
        return newest(self._ledger(), heads, self._scoped(filt), limit)

    def follow(self, filt: EventFilter, heads: dict[int, str]) -> Iterator[RecordedEvent]:
        """Matching events appended after `heads`, as they arrive (never ends by itself)."""
        return follow(self._ledger(), heads, self._scoped(filt))

    def wait_moved(self, heads: dict[int, str], block_ms: int) -> dict[int, str]:
        """The partitions of `heads` that gained entries after them, with their new heads; empty
        after `block_ms` without any. Reads no event, so it reveals nothing of any org: a live
        surface uses it to know when to read its own scoped events."""
        log = self._ledger()
        moved = {partition for partition, _, _ in log.wait_entries(heads, 1, block_ms)}
        return {p: log.head(p) or heads[p] for p in moved}

    # -- operators ----------------------------------------------------------------------------

    def info(self) -> LedgerInfo:
        """Namespace, partitions (length, head), Redis version, persistence, query cache counters.

        Read-only, so a volatile Redis is reported here (`persistence.durable`) rather than refused.
        """
        from ledger import open_log
        from projections.redis import cache_stats

        self._operator("info")
        log = open_log(self.settings.model_copy(update={"allow_volatile": True}))
        try:
            partitions = tuple(PartitionInfo(p, log.length(p), log.head(p)) for p in range(log.partitions))
            server = log.server()
            cache = cache_stats(self._redis.get(), self.settings.namespace)
        finally:
            log.close()
        return LedgerInfo(self.settings.namespace, partitions, server.version, server.persistence,
                          self.settings.allow_volatile, cache, self._conversations().cache_stats())

    def health(self) -> Health:
        """Whether Redis and PostgreSQL answer (and how fast), and whether the namespace is migrated."""
        from ledger.health import probe_postgres, probe_redis

        postgresql, migrated = probe_postgres(self.settings)
        return Health(probe_redis(self.settings), postgresql, migrated)

    def migrate(self) -> None:
        """Apply the Alembic revisions in migrations/ to the namespace's schema."""
        from projections.postgres import migrate

        self._operator("migrate")
        migrate.upgrade(self.settings)

    def lag(self) -> list[PartitionLag]:
        """Per projection and partition: checkpoint, head, events and milliseconds behind."""
        from projections import PROJECTIONS
        from projections.registry import VECTOR_PROJECTIONS
        from projections.status import partition_lag

        self._operator("lag")
        self.require_read_models()
        names = [*PROJECTIONS, *([] if self.search_unavailable() else VECTOR_PROJECTIONS)]  # embeddings: pgvector
        return [lag for name in names for lag in partition_lag(self._ledger(), self._projection(name))]

    def run_projector(self, name: str, until_caught_up: bool = False, stop: threading.Event | None = None,
                      on_batch: Callable[[RunStats], None] | None = None) -> RunStats:
        """Run projection `name` on every partition whose lease this process gets, until `stop` (or caught up)."""
        from projections import run_projection
        from projections.redis import REDIS_PROJECTIONS

        self._operator("projector run")
        if name not in {cls.name for cls in REDIS_PROJECTIONS}:  # the others live in PostgreSQL
            self.require_read_models()
        return run_projection(self.settings, name, until_caught_up, stop, on_batch)

    # -- replay -------------------------------------------------------------------------------

    def replay_status(self, names: Sequence[str] | None = None) -> list[StatusRow]:
        """Per projection and partition: checkpoint, head, lag, schema version, state, open dead letters."""
        from replay.status import status

        self._operator("replay status")
        self.require_read_models()
        return status(self.settings, list(names) if names else None)

    def plan_rebuild(self, name: str, partitions: Sequence[int] | None = None, until: str | None = None,
                     to: str | None = None) -> RebuildPlan:
        """What `rebuild` would replay, per partition (writes nothing).

        Parameters:
            partitions: only these (no swap); until: an ISO 8601 time, to: a stream id, to stop at (no swap).
        """
        from replay.rebuild import parse_bound, plan_rebuild

        self._operator("replay rebuild")
        self.require_read_models()
        return plan_rebuild(self.settings, name, partitions, parse_bound(until, to))

    def rebuild(self, name: str, partitions: Sequence[int] | None = None, until: str | None = None,
                to: str | None = None, batch: int | None = None, report: Callable[[Progress], None] | None = None,
                workers: int = 1) -> RebuildResult:
        """Rebuild `name` into a shadow from the archive and the stream, catch up and swap it in.

        Resumable (run it again after a crash or cancel); with `partitions`, `until` or `to` it
        only advances the shadow. `report` is called with progress; `workers` > 1 replays
        partitions in that many processes.
        """
        from replay.rebuild import BATCH, parse_bound, rebuild

        self._operator("replay rebuild")
        self.require_read_models()
        return rebuild(self.settings, name, partitions, parse_bound(until, to), batch or BATCH, report, workers)

    def verify(self, name: str, batch: int | None = None, report: Callable[[Progress], None] | None = None,
               keep: bool = False) -> VerifyResult:
        """Rebuild `name` into a shadow of its own and compare it with the live read model."""
        from replay.rebuild import BATCH
        from replay.verify import verify

        self._operator("replay verify")
        self.require_read_models()
        return verify(self.settings, name, batch or BATCH, report, keep)

    def discard_shadow(self, name: str) -> ShadowDropped:
        """Drop a rebuild's shadow of `name` (the live read model is not touched)."""
        from replay import open_target

        self._operator("replay discard")
        self.require_read_models()
        target = open_target(self.settings, name)
        try:
            existed = target.shadow_exists()
            target.drop_shadow()
            return ShadowDropped(name, target.shadow_label, existed)
        finally:
            target.close()

    def dead_letters(self, projection: str | None = None, include_resolved: bool = False,
                     ids: Sequence[int] | None = None) -> list[DeadLetter]:
        """Events projectors could not apply (open ones; with `include_resolved`, re-driven ones too)."""
        from replay.deadletters import list_dead_letters

        self._operator("replay dead-letters")
        self.require_read_models()
        return list_dead_letters(self.settings, projection, include_resolved, ids)

    def redrive(self, projection: str | None = None, ids: Sequence[int] | None = None) -> list[RedriveOutcome]:
        """Re-apply open dead letters in log order; each outcome says redriven, refused or failed."""
        from replay.deadletters import redrive

        self._operator("replay dead-letters --redrive")
        self.require_read_models()
        return redrive(self.settings, projection, ids)

    def plan_trim(self, older_than_days: float) -> list[TrimPoint]:
        """Where each partition's stream would be trimmed, and what holds it there (writes nothing)."""
        from replay.trim import plan_trim

        self._operator("ledger trim")
        self.require_read_models()
        return plan_trim(self.settings, older_than_days)

    def trim(self, older_than_days: float) -> list[TrimPoint]:
        """Trim streams below what the archive and every projection hold (never by length)."""
        from replay.trim import trim

        self._operator("ledger trim")
        self.require_read_models()
        return trim(self.settings, older_than_days)

    # -- the embedded servers -----------------------------------------------------------------

    def servers(self) -> list[ServerStatus]:
        """The embedded Redis and PostgreSQL under MEMLEDGER_HOME: running or not, pid, address (starts nothing)."""
        self._operator("servers status")
        return server_status(self.settings.home)

    def stop_servers(self) -> list[ServerStatus]:
        """Stop the embedded servers cleanly (Redis fsyncs its AOF, PostgreSQL checkpoints); their status after."""
        self._operator("servers stop")
        self.close()  # our own connections to them go first
        return stop_servers(self.settings.home)
