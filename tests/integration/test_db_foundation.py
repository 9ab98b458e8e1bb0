"""Migrations and datetime handling on both dialects (SQLite and a real Postgres)."""

from datetime import UTC, datetime, timedelta, timezone

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, Session, mapped_column

from core.db import Base, UtcDateTime, make_engine
from core.migrate import downgrade, upgrade


def _tables(url: str) -> set[str]:
    engine = make_engine(url)
    try:
        return set(sa.inspect(engine).get_table_names())
    finally:
        engine.dispose()


def _enum_types(url: str) -> set[str]:
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            if conn.dialect.name != "postgresql":
                return set()
            rows = conn.execute(sa.text("SELECT typname FROM pg_type WHERE typtype = 'e'"))
            return {r[0] for r in rows}
    finally:
        engine.dispose()


def test_migrations_run_up_and_down(any_db_url: str) -> None:
    upgrade(any_db_url)
    tables = _tables(any_db_url)
    expected = set(Base.metadata.tables)
    assert expected <= tables, f"missing after upgrade: {expected - tables}"
    downgrade(any_db_url, "base")
    assert _tables(any_db_url) <= {"alembic_version"}
    assert _enum_types(any_db_url) == set(), "enum types left behind by downgrade"
    upgrade(any_db_url)  # and up again from base
    assert expected <= _tables(any_db_url)


def test_models_match_migrations(any_db_url: str) -> None:
    """Autogenerate against the migrated schema finds nothing to do: models and migrations agree."""
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    upgrade(any_db_url)
    engine = make_engine(any_db_url)
    with engine.connect() as conn:
        ctx = MigrationContext.configure(conn, opts={"compare_type": False})
        diff = [d for d in compare_metadata(ctx, Base.metadata) if not _ignorable(d)]
    engine.dispose()
    assert diff == []


def _ignorable(diff: object) -> bool:
    # alembic_version is Alembic's own table.
    return isinstance(diff, tuple) and diff[0] == "remove_table" and diff[1].name == "alembic_version"


class _Stamp(Base):
    __tablename__ = "_test_stamp"
    __table_args__ = {"info": {"test_only": True}}
    id: Mapped[int] = mapped_column(primary_key=True)
    at: Mapped[datetime] = mapped_column(UtcDateTime())


# This table exists only for the round-trip test; keep it out of the migration checks above.
Base.metadata.remove(_Stamp.__table__)


def test_utc_round_trip(any_db_url: str) -> None:
    engine = make_engine(any_db_url)
    _Stamp.__table__.create(engine)
    plus_two = timezone(timedelta(hours=2))
    written = datetime(2026, 11, 29, 12, 0, tzinfo=plus_two)
    with Session(engine) as s:
        s.add(_Stamp(id=1, at=written))
        s.add(_Stamp(id=2, at=datetime(2026, 1, 1, 8, 30)))  # naive = UTC
        s.commit()
    with Session(engine) as s:
        first = s.get(_Stamp, 1)
        second = s.get(_Stamp, 2)
        assert first is not None and second is not None
        assert first.at.tzinfo is not None and first.at.utcoffset() == timedelta(0)
        assert first.at == written  # same instant
        assert first.at.hour == 10
        assert second.at == datetime(2026, 1, 1, 8, 30, tzinfo=UTC)
    engine.dispose()
