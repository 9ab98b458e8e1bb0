"""Real services for tests: a private Postgres database, a private Redis DB number, an HTTP S3 server.

Nothing is skipped when a service is missing: tests fail with a message that says how to start it.
"""

from __future__ import annotations

import atexit
import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import redis
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


def _admin_engine() -> sa.Engine:
    return sa.create_engine(admin_pg_url(), isolation_level="AUTOCOMMIT")


def _database_url(name: str) -> str:
    return make_url(admin_pg_url()).set(database=name).render_as_string(hide_password=False)


def _create_database(name: str, template: str | None = None) -> None:
    engine = _admin_engine()
    statement = f'CREATE DATABASE "{name}"' + (f' TEMPLATE "{template}"' if template else "")
    try:
        with engine.connect() as conn:
            conn.execute(sa.text(statement))
    except sa.exc.OperationalError as exc:
        raise ServiceMissing(PG_HINT.format(url=admin_pg_url())) from exc
    finally:
        engine.dispose()


def _drop_database(name: str) -> None:
    engine = _admin_engine()
    try:
        with engine.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    finally:
        engine.dispose()


_template: str | None = None


def _migrated_template() -> str:
    """A database migrated to head once per test process; tests get copies of it (CREATE DATABASE … TEMPLATE
    copies files: ~0.15 s, where running every migration again takes ~1 s). Dropped when the process exits."""
    global _template
    if _template is None:
        from core.db import dispose_engines
        from core.migrate import upgrade

        name = f"lethe_tpl_{os.getpid()}_{uuid.uuid4().hex[:8]}"
        _create_database(name)
        atexit.register(_drop_database, name)
        upgrade(_database_url(name))
        dispose_engines()  # a template must have no open connections when it is copied
        _template = name
    return _template


@contextmanager
def postgres_database(prefix: str = "lethe_test", *, migrated: bool = False) -> Iterator[str]:
    """Create a uniquely named database (empty, or already migrated to head), yield its URL, drop it afterwards."""
    name = f"{prefix}_{os.getpid()}_{uuid.uuid4().hex[:8]}"
    _create_database(name, template=_migrated_template() if migrated else None)
    try:
        yield _database_url(name)
    finally:
        from core.db import dispose_engines

        dispose_engines()
        _drop_database(name)


_REDIS_CLAIM = "lethe-test:redis-db:{db}"


def _claim_redis_db(client: redis.Redis) -> int:
    """A DB number (1..15) no other live test process holds. Claims live in DB 0 under the owner's pid, so
    parallel test processes (pytest-xdist workers, concurrent runs) never share a DB; a claim whose process
    has exited is taken over."""
    pid = os.getpid()
    order = [1 + (pid + i) % 15 for i in range(15)]
    for db in order:
        key = _REDIS_CLAIM.format(db=db)
        if client.set(key, pid, nx=True, ex=6 * 3600):
            return db
        owner = client.get(key)
        if owner is not None and not _alive(int(owner)):
            # Compare-and-set: only one process takes over a dead owner's claim.
            with client.pipeline() as pipe:
                try:
                    pipe.watch(key)
                    if pipe.get(key) != owner:
                        continue
                    pipe.multi()
                    pipe.set(key, pid, ex=6 * 3600)
                    pipe.execute()
                    return db
                except redis.exceptions.WatchError:
                    continue
    raise ServiceMissing("every Redis DB 1..15 is claimed by a live test process")


def _release_redis_db(admin: redis.Redis, db: int) -> None:
    key = _REDIS_CLAIM.format(db=db)
    try:
        if admin.get(key) == str(os.getpid()).encode():
            admin.delete(key)
        admin.close()
    except redis.exceptions.RedisError:
        pass  # the claim expires on its own


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # alive, another user's
    return True


def private_redis_url() -> str:
    """A Redis URL on a DB number of this process's own (claimed in DB 0), flushed before use."""
    base = redis_base_url().rstrip("/")
    try:
        admin = redis.Redis.from_url(f"{base}/0", socket_connect_timeout=2)
        db = _claim_redis_db(admin)
        atexit.register(_release_redis_db, admin, db)
        client = redis.Redis.from_url(f"{base}/{db}", socket_connect_timeout=2)
        client.flushdb()
        client.close()
    except redis.exceptions.ConnectionError as exc:
        raise ServiceMissing(REDIS_HINT.format(url=base)) from exc
    return f"{base}/{db}"


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
