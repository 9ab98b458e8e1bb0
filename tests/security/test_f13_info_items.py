"""Info-level findings: integers given as strings or booleans; rate limits that held per API process only and
left unauthenticated traffic unthrottled. The limits now live in Redis, shared by every uvicorn worker."""

from __future__ import annotations

import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
import redis

from core.config import get_settings
from core.migrate import upgrade
from tests.api_support import ApiEnv, api, erasure_body  # noqa: F401
from tests.security.live import uvicorn_server


@pytest.mark.parametrize("params", [{"steps": "10"}, {"steps": True}, {"seed": "7"}, {"rank": False},
                                    {"steps": 10.0}])
def test_params_are_strict_integers(api: ApiEnv, params: dict) -> None:  # noqa: F811
    r = api.client.post("/v1/erasures", json=erasure_body(api.ready_model(), params=params), headers=api.auth())
    assert r.status_code == 422, r.text
    assert r.json()["errors"][0]["loc"][:2] == ["body", "params"]


def test_priority_is_a_strict_integer(api: ApiEnv) -> None:  # noqa: F811
    mid = api.ready_model()
    for priority in ("5", True):
        r = api.client.post("/v1/erasures", json=erasure_body(mid, priority=priority), headers=api.auth())
        assert r.status_code == 422, r.text
    ok = api.client.post("/v1/erasures", json=erasure_body(mid, params={"steps": 10, "lr": 1}), headers=api.auth())
    assert ok.status_code == 202, ok.text  # an integer is still a valid float


def _key(pg_url: str, tenant: str) -> str:
    from core.db import get_engine, unit_of_work
    from core.tenancy import service as tenancy

    settings = get_settings().model_copy(update={"database_url": pg_url})
    with unit_of_work(get_engine(settings)) as s:
        _, plaintext = tenancy.create_key(s, settings, tenancy.get_or_create_tenant(s, tenant), "admin")
    return plaintext


def _fan_out(base: str, n: int, headers: dict[str, str], path: str = "/v1/erasures") -> Counter[int]:
    """`n` requests, each on its own connection (so the kernel spreads them over the worker processes)."""

    def one(_: int) -> int:
        with httpx.Client(base_url=base, timeout=30) as client:
            r = client.get(path, headers=headers)
            if r.status_code == 429:
                assert r.headers["content-type"] == "application/problem+json"
                assert 1 <= int(r.headers["retry-after"]) <= 60
            return r.status_code

    with ThreadPoolExecutor(8) as pool:
        return Counter(pool.map(one, range(n)))


def test_limits_hold_across_two_uvicorn_workers(pg_url: str, redis_url: str) -> None:
    upgrade(pg_url)
    key, other = _key(pg_url, "acme"), _key(pg_url, "other")
    per_key, anonymous = 12, 9
    env = {"LETHE_DATABASE_URL": pg_url, "LETHE_DATA_DIR": str(get_settings().data_dir),
           "LETHE_RATE_LIMIT_PER_MINUTE": str(per_key), "LETHE_RATE_LIMIT_ANONYMOUS_PER_MINUTE": str(anonymous),
           "LETHE_RATE_LIMIT_STORAGE_URL": redis_url}
    redis.Redis.from_url(redis_url).flushdb()
    with uvicorn_server(env, workers=2) as base:
        # Per key: exactly N in the minute, whichever process serves each request.
        codes = _fan_out(base, 3 * per_key, {"Authorization": f"Bearer {key}"})
        assert codes == Counter({200: per_key, 429: 2 * per_key}), codes
        assert _fan_out(base, 1, {"Authorization": f"Bearer {other}"}) == Counter({200: 1})  # its own budget
        # Without a valid key: per client address, 401s counted, then 429 with Retry-After.
        bad = "lth_" + "x" * 32 + "_abcdef"
        codes = _fan_out(base, 2 * anonymous, {}) + _fan_out(base, anonymous, {"Authorization": f"Bearer {bad}"})
        assert codes == Counter({401: anonymous, 429: 2 * anonymous}), codes
        # Probes are never throttled; a valid key still works for its owner.
        assert _fan_out(base, 3, {}, "/healthz") == Counter({200: 3})
    stored = redis.Redis.from_url(redis_url).keys("LIMITS:*")
    assert stored, "the counters live in Redis"
    # The same traffic against per-process counters (what the limiter was): both workers served requests, so
    # more than N got through — the premise of the check above.
    with uvicorn_server({**env, "LETHE_RATE_LIMIT_STORAGE_URL": "memory://"}, workers=2) as base:
        codes = _fan_out(base, 3 * per_key, {"Authorization": f"Bearer {key}"})
    assert codes[200] > per_key, codes


def test_embedded_default_keeps_an_in_process_store(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from core.config import Settings

    settings = Settings(data_dir=tmp_path / str(uuid.uuid4()))
    assert settings.embedded and settings.rate_limit_storage_url == "memory://"
    shared = Settings(data_dir=tmp_path, broker_url="redis://127.0.0.1:6379/3")
    assert shared.rate_limit_storage_url == "redis://127.0.0.1:6379/3"
