"""API keys, the application's side: minting, issuing, revoking, authenticating (App methods call these).

Issuing and revoking are events (`IssueKey`/`RevokeKey`, operator-only commands); the keys
read model (projections/postgres/api_keys.py) is what authentication reads. Because that
model is projected asynchronously, `settle` waits until it has applied the command, and
runs the api_keys projector in this process meanwhile: if a projector already runs (`memledger
up`), it holds the leases and ours only waits; if none runs, ours applies the event. Either way
a key works the moment `keys create` prints it, and a revoked key stops working once
`keys revoke` returns (plus the authentication cache, below).

Authentication cache. `authenticate` remembers each key it accepted for at most
`AUTH_CACHE_S` seconds (2 s), so a busy server does not read PostgreSQL on every request;
a revocation therefore takes effect within that window. Refusals are not cached: a revoked
key is never refused later than it was accepted, and unknown keys cannot fill the cache.
"""

from __future__ import annotations

import hmac
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ledger.errors import AlreadyRevoked, CommandError, SubjectForgotten, Timeout, Unauthenticated, UnknownSubject

from .principal import Principal, mint_secret, secret_hash, split_secret

if TYPE_CHECKING:
    from commands.models import Command
    from ledger import Settings
    from ledger.eventlog import Receipt
    from ledger.postgres import Connection

__all__ = ["AUTH_CACHE_S", "BAD_KEY", "IssuedKey", "KeyCache", "authenticate", "cached_principal", "issue_command", "revoke_command",
           "revoke_refusal", "settle"]

#: Longest time, in seconds, an accepted key is trusted without reading the keys read model again.
AUTH_CACHE_S = 2.0
#: Most keys the cache holds; beyond it, it starts over (keys are few; this bounds memory).
AUTH_CACHE_SIZE = 10_000
#: How long `keys create`/`revoke` wait for the api_keys read model, in seconds. Generous: a
#: projector that never ran reads the whole ledger once to get there.
APPLY_TIMEOUT_S = 30.0
#: The one answer to every key that does not authenticate: it never says which check failed.
BAD_KEY = "invalid API key: it is unknown, malformed or revoked; an operator issues keys with `memledger keys create`"


@dataclass(frozen=True)
class IssuedKey:
    """A key just issued, with its secret: shown once, stored nowhere."""

    key_id: str
    org_id: str
    role: str
    agent_id: str | None
    label: str | None
    secret: str
    receipt: Receipt | None = None

    def as_json(self) -> dict[str, Any]:
        position = None if self.receipt is None else f"{self.receipt.partition}/{self.receipt.stream_id}"
        return {"key_id": self.key_id, "org_id": self.org_id, "role": self.role, "agent_id": self.agent_id,
                "label": self.label, "secret": self.secret, "position": position}


class KeyCache:
    """Accepted principals by secret hash, each for at most `ttl_s` seconds; thread-safe."""

    def __init__(self, ttl_s: float = AUTH_CACHE_S, size: int = AUTH_CACHE_SIZE,
                 clock: Callable[[], float] = time.monotonic):
        self.ttl_s, self.size, self.clock = ttl_s, size, clock
        self._entries: dict[str, tuple[float, Principal]] = {}
        self._lock = threading.Lock()

    def get(self, digest: str) -> Principal | None:
        with self._lock:
            found = self._entries.get(digest)
            if found is None or found[0] <= self.clock():
                self._entries.pop(digest, None)
                return None
            return found[1]

    def put(self, digest: str, principal: Principal) -> None:
        if self.ttl_s <= 0:
            return
        with self._lock:
            if len(self._entries) >= self.size:
                self._entries.clear()
            self._entries[digest] = (self.clock() + self.ttl_s, principal)


def cached_principal(cache: KeyCache, secret: object) -> Principal | None:
    """The principal of `secret` if it was accepted within the cache's TTL (no I/O); None: ask
    `authenticate`. `Unauthenticated` for what is not even shaped like a key."""
    key_id = split_secret(secret) if isinstance(secret, str) else None
    if key_id is None:
        raise Unauthenticated(BAD_KEY)
    return cache.get(secret_hash(str(secret)))


def authenticate(conn: Connection, cache: KeyCache, secret: object) -> Principal:
    """The principal `secret` stands for; `Unauthenticated` (always `BAD_KEY`) otherwise."""
    from projections.postgres.api_keys import find_keys

    key_id = split_secret(secret) if isinstance(secret, str) else None
    if key_id is None:
        raise Unauthenticated(BAD_KEY)
    digest = secret_hash(str(secret))
    if (known := cache.get(digest)) is not None:
        return known
    rows = find_keys(conn, key_id)
    # An id found in two orgs (an operator reused it) authenticates as neither.
    if len(rows) != 1 or rows[0].key.revoked or not hmac.compare_digest(rows[0].secret_hash, digest):
        raise Unauthenticated(BAD_KEY)
    key = rows[0].key
    principal = Principal(key.key_id, key.org_id, key.role, key.agent_id)  # type: ignore[arg-type]
    cache.put(digest, principal)
    return principal


def issue_command(org: str, role: str, agent: str | None, label: str | None,
                  actor: str | None) -> tuple[IssuedKey, Command]:
    """A new key (with its secret) and the `IssueKey` that records it; `InvalidCommand` if any
    field is refused (nothing is sent then)."""
    from commands.bus import parse
    from ledger.ids import new_id

    key_id = new_id("key")
    secret = mint_secret(key_id)
    command = parse({"type": "IssueKey", "org_id": org, "key_id": key_id, "role": role, "key_agent_id": agent,
                     "label": label, "secret_hash": secret_hash(secret), "actor": actor})
    return IssuedKey(key_id, org, role, agent, label, secret), command


def revoke_command(org: str, key_id: str, reason: str | None, actor: str | None) -> Command:
    from commands.bus import parse

    return parse({"type": "RevokeKey", "org_id": org, "key_id": key_id, "reason": reason, "actor": actor})


def revoke_refusal(error: CommandError, org: str, key_id: str) -> CommandError:
    """The append's refusal of a revocation, said in terms of keys."""
    if isinstance(error, UnknownSubject):
        return UnknownSubject(f"no API key {key_id!r} in org {org!r}; `memledger keys list --org {org}` shows them")
    if isinstance(error, SubjectForgotten):
        return AlreadyRevoked(f"API key {key_id!r} of org {org!r} was already revoked; nothing to do")
    return error


def settle(settings: Settings, wait: Callable[[float], None], timeout: float = APPLY_TIMEOUT_S) -> None:
    """Return once `wait(timeout)` does, running the api_keys projector in this process
    meanwhile (it only waits for its leases while another projector holds them)."""
    from projections import run_projection

    stop, failed = threading.Event(), []

    def project() -> None:
        try:
            run_projection(settings, "api_keys", stop=stop)
        except Exception as e:  # noqa: BLE001 - reported below if the wait fails too
            failed.append(e)

    runner = threading.Thread(target=project, name="keys-projector", daemon=True)
    runner.start()
    deadline = time.monotonic() + timeout
    try:
        while True:  # in slices, so that a projector that failed at once is reported at once
            try:
                return wait(max(min(1.0, deadline - time.monotonic()), 0.0))
            except Timeout as e:
                if failed:
                    raise failed[0] from e
                if time.monotonic() >= deadline:
                    raise
    finally:
        stop.set()
        runner.join()
