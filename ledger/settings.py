"""Settings, read from MEMLEDGER_* environment variables."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """Everything configurable, with defaults a newcomer can run with.

    With neither URL set, an embedded Redis and PostgreSQL are started under `home`.
    """

    model_config = SettingsConfigDict(env_prefix="MEMLEDGER_", frozen=True, extra="ignore")

    redis_url: str | None = None
    database_url: str | None = None
    namespace: str = Field(default="ml", pattern=r"^[a-z][a-z0-9_]{0,30}$")
    partitions: int = Field(default=8, ge=1, le=1024)
    home: Path = Path.home() / ".memledger"
    allow_volatile: bool = False
    rate_per_second: float = Field(default=2000.0, gt=0)
    rate_burst: int = Field(default=4000, ge=1)
    idempotency_ttl_seconds: int = Field(default=7 * 24 * 3600, ge=60)
    cache_ttl_seconds: int = Field(default=300, ge=1)
    projector_batch: int = Field(default=1000, ge=1, le=50_000)
    lease_ttl_ms: int = Field(default=5000, ge=200)

    @property
    def db_schema(self) -> str:
        """PostgreSQL schema holding this namespace's tables."""
        return self.namespace
