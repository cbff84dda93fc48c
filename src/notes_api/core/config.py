"""All configuration, read once from the environment (and `.env` when present)."""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Literal
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from pydantic import AliasChoices, Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

DEV_JWT_SECRET = "dev-only-insecure-jwt-secret-change-me-0123456789"  # noqa: S105
DEFAULT_SQLITE_URL = "sqlite:///./data/notes.db"


def normalize_database_url(url: str) -> str:
    """Turn the URL forms people paste (Neon, Koyeb, Heroku style) into a SQLAlchemy async URL.

    `postgres://` and `postgresql://` get the psycopg 3 driver, which hands `sslmode` and
    `channel_binding` to libpq untouched; `sqlite:///PATH` gets aiosqlite.
    """
    url = url.strip()
    scheme, _, rest = url.partition("://")
    scheme = scheme.lower()
    if scheme in {"postgres", "postgresql", "postgresql+psycopg", "postgresql+psycopg_async"}:
        parts = urlsplit("postgresql+psycopg://" + rest)
        # Neon's URLs are valid libpq URLs; only drop empty parameters so libpq stays happy.
        query = urlencode([(k, v) for k, v in parse_qsl(parts.query) if v])
        return urlunsplit(parts._replace(query=query))
    if scheme in {"sqlite", "sqlite+aiosqlite"}:
        return "sqlite+aiosqlite://" + rest
    raise ValueError(f"unsupported database URL scheme {scheme!r}: use sqlite:// or postgresql://")


class Settings(BaseSettings):
    # An empty variable (`LOG_FORMAT=` as .env.example has it) means "use the default".
    model_config = SettingsConfigDict(
        env_file=".env", extra="ignore", case_sensitive=False, env_ignore_empty=True
    )

    app_env: Literal["development", "production", "test"] = "development"
    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=1, le=65535)
    log_format: Literal["json", "console"] | None = None
    log_level: str = "INFO"
    # NoDecode: the environment gives a comma-separated list, which is not JSON.
    cors_origins: Annotated[list[str], NoDecode] = Field(default_factory=list)

    database_url: str = DEFAULT_SQLITE_URL
    database_url_direct: str | None = None
    db_pool_size: int = Field(default=10, ge=1, le=200)
    db_pool_timeout: float = Field(default=10.0, gt=0)
    # Postgres: a statement run a few times on a connection is prepared there, parsed and
    # planned once. Off only behind a pooler in transaction mode that cannot keep them
    # (PgBouncer before 1.21; Neon's pooler keeps them).
    db_prepared_statements: bool = True
    # Seconds a request has to begin its answer (long polls: plus their `wait`).
    request_timeout: float = Field(default=8.0, gt=0)
    # Proxies whose X-Forwarded-For is believed (uvicorn's list: addresses, networks or *).
    forwarded_allow_ips: str = "127.0.0.1"
    # When set, /metrics asks for `Authorization: Bearer <METRICS_TOKEN>`.
    metrics_token: SecretStr | None = None

    jwt_secret: SecretStr = SecretStr(DEV_JWT_SECRET)
    access_token_ttl: int = Field(default=900, ge=30, description="seconds")
    # Seconds a process may remember a confirmed caller (users/callers.py); 0: never.
    caller_record_seconds: float = Field(default=5.0, ge=0, le=60)
    refresh_token_ttl: int = Field(default=30 * 24 * 3600, ge=60, description="seconds")
    argon2_memory_kib: int = Field(default=19 * 1024, ge=8)
    argon2_time_cost: int = Field(default=2, ge=1)
    hash_concurrency: int = Field(default=2, ge=1, le=64)
    login_max_failures: int = Field(default=5, ge=1)
    login_lockout_seconds: int = Field(default=300, ge=1)
    signup_open: bool = True
    # Sign-ups one client address may make per hour (0: no limit).
    signup_per_client_per_hour: int = Field(default=20, ge=0)
    bootstrap_admin_email: str | None = None
    bootstrap_admin_password: SecretStr | None = None

    summarizer: Literal["extractive", "openai"] = "extractive"
    openai_api_key: SecretStr | None = None
    openai_base_url: str = "https://api.openai.com/v1"
    openai_model: str = "gpt-4o-mini"
    openai_timeout: float = Field(default=20.0, gt=0)
    # What one model call may be sent, in tokens (estimated from the text's size); a longer
    # note is summarized in parts, then the parts' summaries are combined.
    openai_max_input_tokens: int = Field(default=8_000, ge=200)

    # Writes (create, edit, retry) per minute, and summaries an organization may queue per
    # UTC day with a paid summarizer (each is one or more model calls); 0 turns a limit off.
    # MODEL_CALLS_PER_ORG_PER_DAY, the quota's earlier name, is still read.
    rate_limit_user_writes_per_minute: int = Field(default=60, ge=0)
    rate_limit_org_writes_per_minute: int = Field(default=600, ge=0)
    summaries_per_org_per_day: int = Field(
        default=5_000,
        ge=0,
        validation_alias=AliasChoices("summaries_per_org_per_day", "model_calls_per_org_per_day"),
    )

    worker_embedded: bool = True
    worker_concurrency: int = Field(default=64, ge=1, le=256)
    job_max_attempts: int = Field(default=5, ge=1, le=100)
    job_lease_seconds: float = Field(default=30.0, gt=0)
    job_backoff_base: float = Field(default=2.0, ge=0)
    job_backoff_max: float = Field(default=300.0, ge=0)
    job_poll_interval: float = Field(default=5.0, gt=0)
    job_shutdown_grace: float = Field(default=10.0, ge=0)
    job_retention_hours: float = Field(default=168.0, gt=0)

    event_retention_hours: float = Field(default=72.0, gt=0)
    event_heartbeat_seconds: float = Field(default=15.0, gt=0)
    event_retry_ms: int = Field(default=3000, ge=0)
    event_poll_interval: float = Field(default=5.0, gt=0)
    event_streams_per_user: int = Field(default=5, ge=1)
    event_streams_per_process: int = Field(default=1000, ge=1)
    # None: a fifth of the process's (EVENT_STREAMS_PER_PROCESS // 5, at least 1).
    event_streams_per_organization: int | None = Field(default=None, ge=1)

    webhook_allow_private: bool = False
    webhook_max_endpoints: int = Field(default=10, ge=1, le=100)
    webhook_timeout: float = Field(default=10.0, gt=0, le=60)
    webhook_max_attempts: int = Field(default=24, ge=1, le=100)
    webhook_retry_base: float = Field(default=30.0, ge=0)
    webhook_retry_max: float = Field(default=3600.0, ge=0)
    webhook_disable_after: int = Field(default=5, ge=1)

    @field_validator("cors_origins", mode="before")
    @classmethod
    def _split_origins(cls, value: object) -> object:
        if isinstance(value, str):
            if value.lstrip().startswith("["):
                return json.loads(value)
            return [v.strip() for v in value.split(",") if v.strip()]
        return value

    @field_validator(
        "bootstrap_admin_email",
        "bootstrap_admin_password",
        "database_url_direct",
        "metrics_token",
        "event_streams_per_organization",
        mode="before",
    )
    @classmethod
    def _blank_is_none(cls, value: object) -> object:
        return None if isinstance(value, str) and not value.strip() else value

    @model_validator(mode="after")
    def _check(self) -> Settings:
        normalize_database_url(self.database_url)  # fail fast on an unusable URL
        if self.database_url_direct:
            normalize_database_url(self.database_url_direct)
        if self.app_env == "production":
            secret = self.jwt_secret.get_secret_value()
            if secret == DEV_JWT_SECRET or len(secret.encode()) < 32:
                raise ValueError("JWT_SECRET must be set to 32+ random bytes in production")
        password = self.bootstrap_admin_password
        if password is not None and not 8 <= len(password.get_secret_value()) <= 128:
            # The same rule as every other password: no weak first admin by configuration.
            raise ValueError("BOOTSTRAP_ADMIN_PASSWORD must be 8 to 128 characters")
        if self.summarizer == "openai" and not self.openai_base_url:
            raise ValueError("OPENAI_BASE_URL is required with SUMMARIZER=openai")
        return self

    @model_validator(mode="after")
    def _check_streams(self) -> Settings:
        # Anyone can sign up into the default organization: if one organization could hold
        # every stream of a process, strangers could shut everyone else out.
        share = self.event_streams_per_organization
        if share is not None and share >= self.event_streams_per_process > 1:
            raise ValueError(
                "EVENT_STREAMS_PER_ORGANIZATION must be below EVENT_STREAMS_PER_PROCESS, "
                "so that one organization cannot take every stream"
            )
        return self

    @property
    def async_database_url(self) -> str:
        return normalize_database_url(self.database_url)

    @property
    def async_direct_url(self) -> str:
        """Migrations and LISTEN need a real session, not a transaction-pooled one."""
        return normalize_database_url(self.database_url_direct or self.database_url)

    @property
    def is_sqlite(self) -> bool:
        return self.async_database_url.startswith("sqlite")

    @property
    def effective_log_format(self) -> str:
        return self.log_format or ("json" if self.app_env == "production" else "console")

    def sqlite_path(self) -> Path | None:
        if not self.is_sqlite:
            return None
        path = self.async_database_url.partition(":///")[2].split("?", 1)[0]
        return None if path in {"", ":memory:"} else Path(path)


@lru_cache
def get_settings() -> Settings:
    return Settings()
