"""Real services for tests: a private Postgres database, a private Redis DB number, an HTTP S3 server.

Nothing is skipped when a service is missing: tests fail with a message that says how to start it.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import sqlalchemy as sa
from sqlalchemy.engine import make_url

PG_HINT = (
    "Postgres is not reachable at {url}. Start it with "
    "`pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start` "
    "or point LETHE_TEST_DATABASE_URL at a server (trust auth, user postgres)."
)
REDIS_HINT = (
    "Redis is not reachable at {url}. Start it with "
    '`redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no` '
    "or point LETHE_TEST_REDIS_URL at a server."
)


class ServiceMissing(RuntimeError):
    pass


def admin_pg_url() -> str:
    return os.environ.get("LETHE_TEST_DATABASE_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")


def redis_base_url() -> str:
    return os.environ.get("LETHE_TEST_REDIS_URL", "redis://127.0.0.1:6379")


@contextmanager
def postgres_database(prefix: str = "lethe_test") -> Iterator[str]:
    """Create a uniquely named database, yield its URL, drop it afterwards."""
    admin = admin_pg_url()
    engine = sa.create_engine(admin, isolation_level="AUTOCOMMIT")
    name = f"{prefix}_{os.getpid()}_{uuid.uuid4().hex[:8]}"
    try:
        with engine.connect() as conn:
            conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    except sa.exc.OperationalError as exc:
        engine.dispose()
        raise ServiceMissing(PG_HINT.format(url=admin)) from exc
    url = make_url(admin).set(database=name).render_as_string(hide_password=False)
    try:
        yield url
    finally:
        from core.db import dispose_engines

        dispose_engines()
        with engine.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        engine.dispose()


def private_redis_url() -> str:
    """A Redis URL on a DB number of this run's own (1..15 by pid), flushed before use."""
    import redis

    base = redis_base_url().rstrip("/")
    db = 1 + os.getpid() % 15
    url = f"{base}/{db}"
    try:
        client = redis.Redis.from_url(url, socket_connect_timeout=2)
        client.flushdb()
        client.close()
    except redis.exceptions.ConnectionError as exc:
        raise ServiceMissing(REDIS_HINT.format(url=base)) from exc
    return url


@contextmanager
def moto_s3_server() -> Iterator[str]:
    """moto's S3 server over HTTP on a free loopback port; yields its endpoint URL."""
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield f"http://{host}:{port}"
    finally:
        server.stop()
