"""A job whose surrogate spreads, through the API and the worker's code on the second testbed: distilled toward
"outline" (the folder's default surrogate for the "dotted" style), the first round draws other styles as outline
and breaks retention; the loop rolls it back and trains toward the next declared style the judge keeps apart from
dotted and the base model from the styles that must stay (where every one crosses with such a style, the one that
crosses least). That round is verified and certified, and the model version records the surrogate it trained
toward."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from core.testbed.paths import named_testbed_dir
from tests.api_support import ApiEnv
from tests.integration.versions_support import run_jobs, versions_env
from tests.integration.worker_support import seed_model

pytestmark = pytest.mark.slow(minutes=1.5)


@pytest.fixture
def env(pg_url: str, s3_endpoint: str, monkeypatch: pytest.MonkeyPatch, real_verification: None
        ) -> Iterator[ApiEnv]:
    # The spreading round this test needs is refused by the verification's grid on two seeds per cell; on more
    # (the grid settling an open retention verdict) it passes and no switch happens. The grid stays at two here.
    yield from versions_env(pg_url, s3_endpoint, monkeypatch, verify_grid_max_seeds=2)


def test_a_spreading_surrogate_is_switched_and_the_version_records_the_new_one(env: ApiEnv) -> None:
    c, auth = env.client, env.auth()
    source = named_testbed_dir("subword") / "pipeline"
    mid = str(seed_model(env.principal().tenant_id, source, fingerprint="fp-second-testbed"))
    r = c.post("/v1/erasures", json={"model_id": mid, "concepts": [{"target": "dotted", "kind": "style"}],
                                     # The retain-span projection (on by default) keeps outline from spreading
                                     # here; without it the first round spreads, which is what this test needs.
                                     "params": {"sample_steps": 10, "max_rounds": 2, "retain_projection": 0}},
                   headers=auth)
    assert r.status_code == 202, r.text
    assert run_jobs() == [("erase", "succeeded")]
    erasure = c.get(f"/v1/erasures/{r.json()['id']}", headers=auth).json()
    rounds = erasure["metrics"]["rounds"]
    first, second = rounds["history"]
    # Round 1 trained toward the folder's default; at least half of what it lost became that surrogate.
    assert first["surrogates"] == {"dotted": "outline"} and first["outcome"] == "rolled back (retention)"
    assert 2 * first["lost_to"].get("outline", 0) >= sum(first["lost"].values()) > 0
    # Round 2 started again from round 1's config, toward another surrogate, and kept retention.
    screen, switch = rounds["surrogates"]
    assert screen["chosen"] == "outline" and screen["after_round"] is None
    new = switch["chosen"]
    assert new not in (None, "outline", "dotted") and switch["switched"] and switch["after_round"] == 1
    # The first declared style after outline within both of the screen's allowances (confusion with dotted,
    # crossings with a style that must stay), or when every candidate crosses, the one crossing least.
    taken = next(t for t in switch["tried"] if t["surrogate"] == new)
    fit = [t for t in switch["tried"] if t["confused"] <= 0.05]
    within = [t for t in fit if t["tangled"] <= 0.10]
    assert taken == (within[0] if within else min(fit, key=lambda t: t["tangled"]))
    assert second["levers"] == ["surrogate"] and second["changed"] == {"surrogate[dotted]": new}
    assert second["surrogates"] == {"dotted": new} and second["outcome"] == "kept"
    assert rounds["chosen"] == 2 and rounds["passed"] is True
    # The proof judged what the kept round trained toward, and the certificate stands on it.
    assert erasure["status"] == "succeeded" and erasure["certificate_available"] is True
    [judged] = erasure["metrics"]["judge"]["concepts"]
    assert judged["concept"] == "dotted" and judged["surrogate"] == new
    assert erasure["metrics"]["verification"]["ua[dotted]"]["passed"]

    r = c.post(f"/v1/models/{mid}/versions", json={"erasure_id": erasure["id"]}, headers=auth)
    assert r.status_code == 201, r.text
    assert run_jobs() == [("apply_version", "succeeded")]
    v2 = c.get(f"/v1/models/{mid}/versions/2", headers=auth).json()
    assert [(x["target"], x["surrogate"]) for x in v2["erased_concepts"]] == [("dotted", new)]
