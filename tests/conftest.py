"""Shared fixtures. Every run gets its own data dir, Postgres database, Redis DB and S3 server."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

# pytest-xdist workers share the cores: each (and every process it starts) gets its share of threads, set before
# torch loads (oversubscribed OpenMP threads on 2 shared cores run many times slower).
if os.environ.get("PYTEST_XDIST_WORKER_COUNT"):
    os.environ.setdefault(
        "OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // int(os.environ["PYTEST_XDIST_WORKER_COUNT"])))
    )

import core  # noqa: F401  (sets OMP_WAIT_POLICY before anything loads torch)
from core import wiring
from tests import pace, services

# Tests never touch the user's ~/.lethe or the hub, and never read a developer's LETHE_* settings.
for _key in [k for k in os.environ if k.startswith("LETHE_") and not k.startswith("LETHE_TEST_")]:
    del os.environ[_key]
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("AWS_ACCESS_KEY_ID", "testing")
os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "testing")
os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
# Job handlers and background services, as every worker process registers them at start.
wiring.load()


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Longest modules first (by their `slow(minutes=...)` marks), each module's tests kept together and in order.

    The suite runs on pytest-xdist workers that take one test at a time (pyproject addopts): started first, the
    long tests overlap each other and the many short ones fill the gaps, instead of one long test running alone
    at the end."""
    def module(item: pytest.Item) -> str:
        return item.nodeid.split("::")[0]

    weight: dict[str, float] = {}
    for item in items:
        mark = item.get_closest_marker("slow")
        minutes = float(mark.kwargs.get("minutes", 1.0)) if mark is not None else 0.0
        weight[module(item)] = weight.get(module(item), 0.0) + minutes
    order = {name: i for i, name in enumerate(dict.fromkeys(module(item) for item in items))}
    items.sort(key=lambda item: (-weight[module(item)], order[module(item)]))
    _scale_time_limits(config, items)


def _scale_time_limits(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Multiply every test's pytest-timeout limit by this box's measured slowdown (tests/pace.py).

    Measured only when a long test (one marked `slow` or with a limit of its own) is collected: a run of short
    tests never comes near the default limit."""
    if not any(item.get_closest_marker("slow") or item.get_closest_marker("timeout") for item in items):
        return
    factor = pace.slowdown()
    if factor <= 1.0:
        return
    default = float(config.getini("timeout") or 0)
    for item in items:
        mark = item.get_closest_marker("timeout")
        limit = float(mark.args[0]) if mark is not None and mark.args else default
        if limit > 0:
            item.add_marker(pytest.mark.timeout(limit * factor), append=False)


def pytest_sessionfinish(session: pytest.Session) -> None:
    """An xdist worker hands the factor it measured (if any) to the controller, which reports it."""
    if hasattr(session.config, "workeroutput") and os.environ.get(pace.ENV):
        session.config.workeroutput[pace.ENV] = os.environ[pace.ENV]


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node: object, error: object) -> None:
    """The controller keeps each worker's factor for the summary (an xdist hook: optional, so that a run with
    `-p no:xdist` still loads this conftest)."""
    factor = getattr(node, "workeroutput", {}).get(pace.ENV)
    if factor:
        os.environ.setdefault(pace.ENV, factor)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """One line saying how much the long time limits were stretched on this box, so that a run's log shows it."""
    if os.environ.get(pace.ENV):
        terminalreporter.write_line(pace.summary())


@pytest.fixture(autouse=True)
def _isolated_settings(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Each test starts from default settings in a private data dir."""
    from core.config import get_settings

    data_dir = tmp_path_factory.mktemp("lethe-data")
    monkeypatch.setenv("LETHE_DATA_DIR", str(data_dir))
    # Most job tests erase from tiny random pipelines (seconds on a CPU) whose images show nothing any judge can
    # recognise: they test the job machinery, so the judge runs for real but its image thresholds start at 0.
    # Tests of erasure quality (the testbed) restore the service minimums with `real_verification`.
    monkeypatch.setenv("LETHE_VERIFY_MIN_UNLEARNING_ACCURACY", "0")
    monkeypatch.setenv("LETHE_VERIFY_MIN_RETENTION", "0")
    monkeypatch.setenv("LETHE_JUDGE_FORGET_IMAGES", "2")
    monkeypatch.setenv("LETHE_JUDGE_RETAIN_IMAGES", "4")
    monkeypatch.setenv("LETHE_JUDGE_STEPS", "2")
    monkeypatch.setenv("LETHE_ROUND_CHECK_FORGET_IMAGES", "2")
    monkeypatch.setenv("LETHE_ROUND_CHECK_RETAIN_IMAGES", "4")
    monkeypatch.setenv("LETHE_SURROGATE_SCREEN_IMAGES", "0")  # a judge that reads nothing would pick at random
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


@pytest.fixture
def real_verification(monkeypatch: pytest.MonkeyPatch) -> None:
    """The service's own verification minimums and judge sizes (for tests on a model a judge can read)."""
    from core.config import get_settings

    for name in ("VERIFY_MIN_UNLEARNING_ACCURACY", "VERIFY_MIN_RETENTION", "JUDGE_FORGET_IMAGES",
                 "JUDGE_RETAIN_IMAGES", "JUDGE_STEPS", "ROUND_CHECK_FORGET_IMAGES", "ROUND_CHECK_RETAIN_IMAGES",
                 "SURROGATE_SCREEN_IMAGES"):
        monkeypatch.delenv(f"LETHE_{name}", raising=False)
    get_settings.cache_clear()


@pytest.fixture(autouse=True)
def _denormals_restored() -> Iterator[None]:
    """Erasure code turns on flush-to-zero for speed (per thread, for good); tests run in one thread, so undo it
    after each test — hypothesis (schemathesis) refuses to run when subnormal floats are flushed."""
    yield
    torch = sys.modules.get("torch")
    if torch is not None:
        torch.set_flush_denormal(False)


@pytest.fixture
def data_dir() -> Path:
    from core.config import get_settings

    return get_settings().data_dir


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'test.db'}"


def _postgres(migrated: bool) -> Iterator[str]:
    try:
        with services.postgres_database(migrated=migrated) as url:
            yield url
    except services.ServiceMissing as exc:
        pytest.fail(str(exc), pytrace=False)


@pytest.fixture
def pg_url() -> Iterator[str]:
    """A fresh Postgres database for this test, already migrated to head."""
    yield from _postgres(migrated=True)


@pytest.fixture
def empty_pg_url() -> Iterator[str]:
    """A fresh, empty Postgres database for this test (for tests of the migrations themselves)."""
    yield from _postgres(migrated=False)


@pytest.fixture(params=["sqlite", "postgres"])
def any_db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """Runs the test once on SQLite and once on a fresh, empty Postgres database."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'test.db'}"
        return
    yield from _postgres(migrated=False)


@pytest.fixture(scope="session")
def redis_url() -> str:
    try:
        return services.private_redis_url()
    except services.ServiceMissing as exc:
        pytest.fail(str(exc), pytrace=False)


@pytest.fixture(scope="session")
def s3_endpoint() -> Iterator[str]:
    with services.moto_s3_server() as endpoint:
        yield endpoint
