"""Every setting is read somewhere: a field of `Settings` that no code outside core/config.py uses would be a
knob with no effect."""

from __future__ import annotations

import re
import uuid
from pathlib import Path
from typing import Any

import pytest

from core.config import Settings, get_settings
from core.jobs import services
from core.jobs.lifecycle import new_job_values
from core.jobs.states import JobKind

ROOT = Path(__file__).resolve().parents[2]


def test_every_setting_is_used() -> None:
    code = "\n".join(p.read_text() for folder in ("core", "api", "worker") for p in (ROOT / folder).rglob("*.py")
                     if p != ROOT / "core" / "config.py")
    switches = {f"service_{name}" for name in services.registered()}  # read as getattr(settings, "service_<name>")
    unused = [name for name in Settings.model_fields
              if name not in switches and not re.search(rf"\b{name}\b", code)]
    assert unused == []
    assert {f for f in Settings.model_fields if f.startswith("service_")} == switches, "a switch for every service"


def test_new_jobs_take_their_attempts_from_the_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LETHE_JOB_MAX_ATTEMPTS", "5")
    get_settings.cache_clear()
    job, _ = new_job_values(tenant_id=uuid.uuid4(), kind=JobKind.erase, model_id=uuid.uuid4())
    assert job["max_attempts"] == 5
    job, _ = new_job_values(tenant_id=uuid.uuid4(), kind=JobKind.erase, model_id=uuid.uuid4(), max_attempts=2)
    assert job["max_attempts"] == 2


def test_a_switched_off_service_does_not_run(monkeypatch: pytest.MonkeyPatch) -> None:
    on = {s.name for s in services.enabled(Settings())}
    assert on == set(services.registered())
    off = {s.name for s in services.enabled(Settings(service_doorbells=False, service_overdue=False))}
    assert off == on - {"doorbells", "overdue"}


def test_the_verification_grid_reads_the_seeds_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    """Workers and `lethe erase` (no --eval-seeds) build the grid diagnostics of their verification with
    LETHE_VERIFY_GRID_SEEDS seeds per cell; an explicit count wins. Either way the grid may draw further seeds, up
    to LETHE_VERIFY_GRID_MAX_SEEDS per cell, at the verification's thresholds."""
    from core.erasure import verified
    from core.erasure.verification import Thresholds
    from core.spare import ConceptSpec, ErasureSpec

    monkeypatch.setenv("LETHE_VERIFY_GRID_SEEDS", "3")
    monkeypatch.setenv("LETHE_VERIFY_GRID_MAX_SEEDS", "5")
    get_settings.cache_clear()
    settings = get_settings()
    spec = ErasureSpec(concepts=[ConceptSpec(target="circle")])
    seen: list[list[int]] = []
    settling: list[Any] = []

    def grid(model_dir: Path, targets: list[str], *, seeds: range, attacks: bool, rest_only: bool,
             settle: Any) -> None:
        seen.append(list(seeds))
        settling.append(settle)

    monkeypatch.setattr(verified, "verified_rounds", lambda *a, **k: (spec, [], None, None))
    monkeypatch.setattr(verified, "grid_diagnostics", grid)
    monkeypatch.setattr(verified, "job_evaluator", lambda *a, **k: None)
    for given in (None, range(1)):
        verified.verified_erasure(None, ROOT, spec, spec, None, settings, judge_name="auto", fingerprint=None,
                                  thresholds=Thresholds.for_request(settings), grid_seeds=given)
    assert seen == [[0, 1, 2], [0]]
    assert [len(settle.seeds) for settle in settling] == [2, 4]
    assert settling[0].min_retention == settings.verify_min_retention


def test_the_benchmarks_grid_seeds_default_to_the_verification_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    """The benchmarks score their grid with as many seeds per cell as a job's verification unless told."""
    import argparse

    from bench.cli import add_eval_seeds

    for value in ("3", "5"):
        monkeypatch.setenv("LETHE_VERIFY_GRID_SEEDS", value)
        get_settings.cache_clear()
        parser = argparse.ArgumentParser()
        add_eval_seeds(parser)
        assert parser.parse_args([]).eval_seeds == int(value)
        assert parser.parse_args(["--eval-seeds", "1"]).eval_seeds == 1
