"""Settings: database URLs as people paste them, and a start-up that refuses an unsafe
production configuration."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError
from sqlalchemy import text
from sqlalchemy.engine import make_url

from notes_api.core.config import DEV_JWT_SECRET, Settings, normalize_database_url
from notes_api.core.db import Database
from tests.conftest import make_settings

STRONG_SECRET = "x" * 32


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Settings read the environment; these tests say everything they mean explicitly."""
    for name in (
        "APP_ENV",
        "JWT_SECRET",
        "DATABASE_URL",
        "DATABASE_URL_DIRECT",
        "SUMMARIZER",
        "OPENAI_BASE_URL",
    ):
        monkeypatch.delenv(name, raising=False)


def settings(**values: Any) -> Settings:
    return Settings(_env_file=None, **values)  # type: ignore[call-arg]


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("sqlite:///./data/x.db", "sqlite+aiosqlite:///./data/x.db"),
        ("sqlite:////abs/path/x.db", "sqlite+aiosqlite:////abs/path/x.db"),
        ("sqlite://", "sqlite+aiosqlite://"),
        ("sqlite+aiosqlite:///x.db", "sqlite+aiosqlite:///x.db"),
        ("postgres://u:p@h:5432/db", "postgresql+psycopg://u:p@h:5432/db"),
        ("postgresql://u:p@h:5432/db", "postgresql+psycopg://u:p@h:5432/db"),
        ("postgresql+psycopg://u:p@h/db", "postgresql+psycopg://u:p@h/db"),
        ("postgresql+psycopg_async://u:p@h/db", "postgresql+psycopg://u:p@h/db"),
        ("POSTGRES://u:p@h/db", "postgresql+psycopg://u:p@h/db"),
        ("  postgres://u:p@h/db\n", "postgresql+psycopg://u:p@h/db"),
    ],
)
def test_normalize_database_url_picks_the_async_driver(url: str, expected: str) -> None:
    assert normalize_database_url(url) == expected


def test_neon_url_keeps_its_query() -> None:
    url = (
        "postgresql://alex:AbC123dEf@ep-cool-darkness-123456-pooler.us-east-2.aws.neon.tech"
        "/dbname?sslmode=require&channel_binding=require"
    )
    normalized = normalize_database_url(url)
    parsed = make_url(normalized)
    assert parsed.drivername == "postgresql+psycopg"
    assert parsed.host == "ep-cool-darkness-123456-pooler.us-east-2.aws.neon.tech"
    assert parsed.username == "alex"
    assert parsed.password == "AbC123dEf"
    assert parsed.database == "dbname"
    assert dict(parsed.query) == {"sslmode": "require", "channel_binding": "require"}


def test_password_with_escaped_characters_survives() -> None:
    normalized = normalize_database_url("postgres://u:p%40ss%2Fw%3Ard@h:5432/db?sslmode=require")
    parsed = make_url(normalized)
    assert parsed.password == "p@ss/w:rd"
    assert parsed.host == "h"
    assert dict(parsed.query) == {"sslmode": "require"}


def test_empty_query_parameters_are_dropped() -> None:
    normalized = normalize_database_url("postgres://u@h/db?sslmode=require&options=")
    assert dict(make_url(normalized).query) == {"sslmode": "require"}


@pytest.mark.parametrize(
    "url",
    [
        "mysql://u:p@h/db",
        "postgresql+asyncpg://u@h/db",
        "http://example.com",
        "",
        "notaurl",
        "sqlite:/x.db",
    ],
)
def test_unsupported_database_url_is_a_value_error(url: str) -> None:
    with pytest.raises(ValueError, match="unsupported database URL"):
        normalize_database_url(url)


def test_settings_refuse_an_unusable_database_url() -> None:
    with pytest.raises(ValidationError, match="unsupported database URL"):
        settings(database_url="mysql://u@h/db")
    with pytest.raises(ValidationError, match="unsupported database URL"):
        settings(database_url_direct="redis://h")


def test_settings_read_database_url_from_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("DATABASE_URL", "postgres://u:p@h:5432/db?sslmode=require")
    monkeypatch.setenv("DATABASE_URL_DIRECT", "")
    loaded = settings()
    assert loaded.async_database_url == "postgresql+psycopg://u:p@h:5432/db?sslmode=require"
    assert loaded.database_url_direct is None
    assert loaded.async_direct_url == loaded.async_database_url
    assert not loaded.is_sqlite


def test_direct_url_serves_migrations_when_set() -> None:
    loaded = settings(
        database_url="postgres://u@pooler/db", database_url_direct="postgres://u@direct/db"
    )
    assert make_url(loaded.async_database_url).host == "pooler"
    assert make_url(loaded.async_direct_url).host == "direct"


def test_default_database_is_a_sqlite_file_under_data() -> None:
    loaded = settings()
    assert loaded.is_sqlite
    assert str(loaded.sqlite_path()) == "data/notes.db"
    assert settings(database_url="sqlite:///./data/x.db?mode=rwc").sqlite_path() == Path(
        "data/x.db"
    )
    for url in ("sqlite://", "sqlite:///:memory:", "postgres://u@h/db"):
        assert settings(database_url=url).sqlite_path() is None


def test_production_without_jwt_secret_refuses_to_start() -> None:
    with pytest.raises(ValidationError, match="JWT_SECRET"):
        settings(app_env="production")


@pytest.mark.parametrize("secret", ["", "short", "x" * 31, DEV_JWT_SECRET])
def test_production_with_short_or_default_jwt_secret_refuses_to_start(secret: str) -> None:
    with pytest.raises(ValidationError, match="JWT_SECRET"):
        settings(app_env="production", jwt_secret=secret)


def test_production_secret_is_counted_in_bytes() -> None:
    # 16 two-byte characters: 32 bytes.
    assert settings(app_env="production", jwt_secret="é" * 16).app_env == "production"


def test_production_with_32_byte_secret_starts(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("APP_ENV", "production")
    monkeypatch.setenv("JWT_SECRET", STRONG_SECRET)
    loaded = settings()
    assert loaded.app_env == "production"
    assert loaded.jwt_secret.get_secret_value() == STRONG_SECRET
    assert loaded.effective_log_format == "json"
    assert STRONG_SECRET not in repr(loaded)


def test_development_may_use_the_built_in_secret() -> None:
    assert settings().jwt_secret.get_secret_value() == DEV_JWT_SECRET
    assert settings().effective_log_format == "console"


@pytest.mark.parametrize(
    "value",
    ["https://a.example, https://b.example", '["https://a.example", "https://b.example"]'],
)
def test_cors_origins_from_environment_accept_comma_list_or_json(
    monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    monkeypatch.setenv("CORS_ORIGINS", value)
    assert settings().cors_origins == ["https://a.example", "https://b.example"]


def test_cors_origins_unset_or_blank_is_empty(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CORS_ORIGINS", raising=False)
    assert settings().cors_origins == []
    monkeypatch.setenv("CORS_ORIGINS", "")
    assert settings().cors_origins == []


def test_cors_origins_in_broken_json_is_a_validation_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("CORS_ORIGINS", '["https://a.example"')
    with pytest.raises(ValidationError):
        settings()


def test_the_shipped_env_example_loads_with_its_defaults() -> None:
    example = Path(__file__).resolve().parents[2] / ".env.example"
    if not example.exists():
        pytest.skip(".env.example is not in this checkout")
    loaded = Settings(_env_file=example)  # type: ignore[call-arg]
    assert loaded.log_format is None
    assert loaded.cors_origins == []
    assert loaded.jwt_secret.get_secret_value() == DEV_JWT_SECRET
    assert loaded.bootstrap_admin_password is None


@pytest.mark.parametrize("name", ["JWT_SECRET", "LOG_FORMAT", "OPENAI_API_KEY", "PORT"])
def test_empty_environment_variable_means_default(
    monkeypatch: pytest.MonkeyPatch, name: str
) -> None:
    defaults = settings()
    monkeypatch.setenv(name, "")
    assert settings() == defaults


def test_empty_jwt_secret_in_production_still_refuses_to_start(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("APP_ENV", "production")
    monkeypatch.setenv("JWT_SECRET", "")
    with pytest.raises(ValidationError, match="JWT_SECRET"):
        settings()


def test_bootstrap_admin_email_blank_means_unset() -> None:
    assert settings(bootstrap_admin_email="  ").bootstrap_admin_email is None


def with_scheme(url: str, scheme: str) -> str:
    return scheme + "://" + url.split("://", 1)[1]


def with_query(url: str, query: str) -> str:
    return url + ("&" if "?" in url else "?") + query


async def connects(url: str) -> int | None:
    db = Database(make_settings(url), pool_size=1)
    try:
        async with db.session() as session:
            value: int | None = await session.scalar(text("SELECT 1"))
            return value
    finally:
        await db.dispose()


async def test_postgres_scheme_url_connects(pg_url: str) -> None:
    assert await connects(with_scheme(pg_url, "postgres")) == 1


async def test_url_with_sslmode_connects(pg_url: str) -> None:
    assert await connects(with_query(with_scheme(pg_url, "postgresql"), "sslmode=prefer")) == 1


async def test_sslmode_reaches_libpq(pg_url: str) -> None:
    # `disable` connects whatever the server offers; a bogus mode is refused by libpq itself,
    # which proves the query string is handed on rather than dropped.
    assert await connects(with_query(pg_url, "sslmode=disable")) == 1
    with pytest.raises(Exception, match="sslmode"):
        await connects(with_query(pg_url, "sslmode=bogus"))


def test_the_daily_summary_quota_is_read_under_its_name_and_its_earlier_one(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert Settings(_env_file=None).summaries_per_org_per_day == 5_000  # type: ignore[call-arg]
    monkeypatch.setenv("MODEL_CALLS_PER_ORG_PER_DAY", "7")
    assert Settings(_env_file=None).summaries_per_org_per_day == 7  # type: ignore[call-arg]
    monkeypatch.setenv("SUMMARIES_PER_ORG_PER_DAY", "9")
    assert Settings(_env_file=None).summaries_per_org_per_day == 9  # type: ignore[call-arg]
