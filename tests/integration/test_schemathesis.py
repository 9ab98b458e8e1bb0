"""Property-based fuzzing of the whole OpenAPI surface (schemathesis, in-process ASGI).

At least 2,000 generated requests (positive and negative data), authenticated as an admin key of a tenant
with a ready model. Checks: no 5xx, every status code and content type is documented, and every response
body matches its documented schema (errors included: problem+json).
"""

from __future__ import annotations

import time
import uuid
from collections import Counter
from collections.abc import Iterator

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)

from core.db import unit_of_work
from core.erasure.schemas import _EXAMPLE as ERASURE_EXAMPLE
from core.registry.models import ModelStatus, RegisteredModel
from tests.api_support import ApiEnv, build_env

CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]
EXAMPLES_PER_OPERATION = 45  # per operation and mode (positive, negative); ~30 operations → ~2,400 requests


@pytest.fixture
def fuzz_env(pg_url: str) -> Iterator[ApiEnv]:
    yield from build_env(pg_url)


def _model_behind_the_openapi_example(env: ApiEnv) -> None:
    """The ErasureCreate example names a model id: make it a ready model so the example itself succeeds."""
    principal = env.principal()
    with unit_of_work(env.engine) as s:
        s.add(RegisteredModel(id=uuid.UUID(ERASURE_EXAMPLE["model_id"]), tenant_id=principal.tenant_id,
                              name="example", source_uri="file:///example", status=ModelStatus.ready,
                              architecture="sd1", fingerprint="cd" * 32))


@pytest.mark.slow(minutes=0.8)
def test_openapi_contract(fuzz_env: ApiEnv) -> None:
    _model_behind_the_openapi_example(fuzz_env)
    schema = schemathesis.openapi.from_asgi("/openapi.json", fuzz_env.client.app)
    headers = fuzz_env.auth()
    stats: Counter[int] = Counter()
    started = time.monotonic()
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 17
    for operation, mode in [(op, mode) for op in operations for mode in GenerationMode]:

        @given(case=operation.as_strategy(generation_mode=mode))
        @settings(
            max_examples=EXAMPLES_PER_OPERATION,
            deadline=None,
            phases=[Phase.explicit, Phase.generate],
            suppress_health_check=list(HealthCheck),
            derandomize=True,
            database=None,
        )
        def fuzz(case: schemathesis.Case) -> None:
            response = case.call_and_validate(headers=headers, checks=CHECKS)
            stats[response.status_code] += 1

        try:
            fuzz()
        except Unsatisfiable:
            # Nothing to negate (no parameters or body, e.g. /healthz): only positive cases exist.
            assert mode is GenerationMode.NEGATIVE, operation.label
    total = sum(stats.values())
    elapsed = time.monotonic() - started
    print(f"schemathesis: {total} requests over {len(operations)} operations in {elapsed:.0f} s; "
          f"statuses {dict(sorted(stats.items()))}")
    assert total >= 2000, f"only {total} requests generated: {dict(stats)}"
    assert not any(code >= 500 for code in stats), dict(stats)
