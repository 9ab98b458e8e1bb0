"""Database groundwork: declarative Base, column types, engine and the unit of work.

Rules (docs/conventions.md): queries live in repositories, services never commit, and the boundary
(an HTTP request in api/, a task in worker/, a command in core/cli) commits once through `unit_of_work`.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import Any

from sqlalchemy import JSON, DateTime, Engine, MetaData, Select, create_engine, event
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Session, sessionmaker
from sqlalchemy.pool import NullPool
from sqlalchemy.types import TypeDecorator

from core.config import Settings, get_settings
from core.timeutil import as_utc

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class UtcDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC on both dialects.

    Postgres stores `timestamptz`. SQLite silently drops offsets, so values are converted to UTC
    before they are written (stored naive) and marked UTC again when read.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        value = as_utc(value)
        if dialect.name == "sqlite":
            return value.replace(tzinfo=None)
        return value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        return None if value is None else as_utc(value)


# JSONB on Postgres, JSON text elsewhere.
JsonType = JSON().with_variant(JSONB(), "postgresql")


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


def sqlite_write_lock(session: Session) -> None:
    """Take SQLite's database write lock for the rest of `session`'s transaction (no-op elsewhere).

    What FOR UPDATE is on Postgres: SQLite has no row locks, and its driver opens a transaction only at the
    first INSERT/UPDATE/DELETE, so a read-modify-write that has written nothing yet reads outside any lock and
    a writer committing in between goes unseen. BEGIN IMMEDIATE takes the write lock before the read (other
    writers wait on the busy timeout); a transaction that has written already holds it."""
    if session.get_bind().dialect.name != "sqlite":
        return
    raw = session.connection().connection.driver_connection
    if raw is not None and not raw.in_transaction:
        raw.execute("BEGIN IMMEDIATE")


def for_update(session: Session, stmt: Select[Any]) -> Select[Any]:
    """`stmt` as a locking read on either database: FOR UPDATE on Postgres (SQLite's compiler renders none),
    SQLite's write lock taken first (`sqlite_write_lock`); rows already in the session are re-read
    (populate_existing), so the caller sees what the previous lock holder committed."""
    sqlite_write_lock(session)
    return stmt.with_for_update().execution_options(populate_existing=True)


def make_engine(url: str, **kwargs: Any) -> Engine:
    """Engine for `url`, with SQLite made safe for concurrent use (FKs, WAL, busy timeout)."""
    if url.startswith("sqlite"):
        from core.datadir import private_file, sqlite_path

        db_file = sqlite_path(url)
        if db_file is not None:
            private_file(db_file)  # 0600 in directories created 0700, before SQLite creates it 0644
        kwargs.setdefault("connect_args", {"check_same_thread": False, "timeout": 30})
        kwargs.setdefault("poolclass", NullPool)
        engine = create_engine(url, **kwargs)
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    kwargs.setdefault("pool_pre_ping", True)
    kwargs.setdefault("pool_size", 10)
    kwargs.setdefault("max_overflow", 20)
    return create_engine(url, **kwargs)


_ENGINES: dict[str, Engine] = {}


def get_engine(settings: Settings | None = None) -> Engine:
    """The process's engine for the configured database (one pool per URL)."""
    url = (settings or get_settings()).database_url
    if url not in _ENGINES:
        _ENGINES[url] = make_engine(url)
    return _ENGINES[url]


def session_factory(engine: Engine | None = None) -> sessionmaker[Session]:
    """The engine's sessionmaker, made once: building one makes a new Session subclass (event dispatch
    set-up), which cost milliseconds per unit of work on the request hot path. Kept on the engine itself
    so that it lives and dies with it (tests make many engines)."""
    engine = engine or get_engine()
    factory: sessionmaker[Session] | None = getattr(engine, "_lethe_sessionmaker", None)
    if factory is None:
        factory = sessionmaker(bind=engine, expire_on_commit=False, autoflush=True)
        engine._lethe_sessionmaker = factory  # type: ignore[attr-defined]
    return factory


@contextmanager
def unit_of_work(engine: Engine | None = None) -> Iterator[Session]:
    """One transaction: commit on success, roll back on any exception. Only boundaries use this."""
    session = session_factory(engine)()
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()


def dispose_engines() -> None:
    """Close pooled connections (after a fork, between tests, on shutdown)."""
    for engine in _ENGINES.values():
        engine.dispose()
    _ENGINES.clear()
