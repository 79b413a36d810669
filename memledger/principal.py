"""Who is calling: the principal an API key stands for, and the format of key secrets.

A secret is `mlk_<key id>_<random>`: the key id (`key_` + 32 hex digits, ledger/ids.py)
lets the server find the key without scanning, and 32 random bytes (urlsafe base64, 43
characters) make it unguessable. Only `secret_hash(secret)` (sha256 hex of the whole
secret) is stored; with 256 random bits no slow hash is needed, and comparing hashes with
`hmac.compare_digest` keeps the check constant-time.

This module is pure (no I/O): the HTTP and MCP surfaces import it to type their callers.
"""

from __future__ import annotations

import base64
import hashlib
import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, get_args

from ledger.events import KeyRole

if TYPE_CHECKING:
    from commands.models import Command

__all__ = ["ROLES", "Principal", "Role", "mint_secret", "secret_hash", "split_secret"]

Role = KeyRole
#: Every role a key can have, least to most privileged as far as maintenance goes.
ROLES: tuple[Role, ...] = get_args(KeyRole)
#: Random bytes in a secret.
SECRET_BYTES = 32
_SECRET = re.compile(r"mlk_(key_[0-9a-f]{32})_[A-Za-z0-9_-]{43}")


@dataclass(frozen=True)
class Principal:
    """The caller an API key authenticates: its org, its role and, optionally, its one agent.

    - agent keys write and read their org (only `agent_id` when set);
    - analyst keys read it;
    - operator keys read it and run maintenance; they do not write memories.
    """

    key_id: str
    org_id: str
    role: Role
    agent_id: str | None = None

    @property
    def can_write(self) -> bool:
        return self.role == "agent"

    @property
    def can_read(self) -> bool:
        return True

    @property
    def can_operate(self) -> bool:
        return self.role == "operator"

    def describe(self) -> str:
        """E.g. "analyst key key_0190... of org acme", for error messages."""
        scope = f" (agent {self.agent_id})" if self.agent_id else ""
        return f"{self.role} key {self.key_id} of org {self.org_id!r}{scope}"

    def sign(self, command: Command | Mapping[str, Any]) -> Command | Mapping[str, Any]:
        """`command` with this key as its `actor`, whatever actor the caller wrote: the ledger
        records which key wrote each event, and a caller cannot claim another."""
        if isinstance(command, Mapping):
            return {**command, "actor": self.key_id}
        return command.model_copy(update={"actor": self.key_id})


def mint_secret(key_id: str) -> str:
    """A new secret for `key_id`, to show once and then forget."""
    random = base64.urlsafe_b64encode(secrets.token_bytes(SECRET_BYTES)).rstrip(b"=").decode()
    return f"mlk_{key_id}_{random}"


def split_secret(secret: str) -> str | None:
    """The key id a well-formed secret names; None when it is not a memory-ledger key at all."""
    found = _SECRET.fullmatch(secret)
    return found.group(1) if found else None


def secret_hash(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8", "surrogatepass")).hexdigest()
