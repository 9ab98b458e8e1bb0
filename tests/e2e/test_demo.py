"""`lethe demo`, the README's main job, end to end: real subprocess, embedded service, shipped testbed."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

LETHE = [sys.executable, "-m", "core.cli"]


def _demo(args: list[str], data_dir: Path, timeout: float) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "LETHE_DATA_DIR": str(data_dir), "COLUMNS": "200"}
    for name in [k for k in env if k.startswith(("LETHE_VERIFY_", "LETHE_JUDGE_"))]:
        del env[name]  # the demo is judged by the service's own verification minimums
    return subprocess.run([*LETHE, "demo", *args], capture_output=True, text=True, env=env, timeout=timeout)


@pytest.mark.slow(minutes=1.3)
def test_demo_erases_and_proves_it(tmp_path: Path) -> None:
    out = _demo([], tmp_path, timeout=900)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    assert "signature valid" in out.stdout
    assert "audit chain  ok" in out.stdout
    runs = [p for p in (tmp_path / "demo").iterdir() if p.is_dir()]
    assert len(runs) == 1
    run = runs[0]
    assert (run / "adapter" / "pytorch_lora_weights.safetensors").stat().st_size > 0
    assert (run / "adapter" / "lora_kohya.safetensors").stat().st_size > 0
    assert "star" in (run / "README.md").read_text() and "model card" in out.stdout
    assert (run / "fused" / "model_index.json").is_file()
    assert (run / "grid.png").stat().st_size > 0
    report = json.loads((run / "report.json").read_text())
    target = report["metrics"]["testbed"]["targets"][0]
    assert target["forget"] == "star"
    assert target["ua"] >= 0.9 and target["ira_rel"] >= 0.9 and target["cra_rel"] >= 0.9
    # The probe runs at the calibrated budget (docs/robustness.md) and says so next to the number.
    assert target["attack_budget"] == 5 and 0.0 <= target["attack_success"] <= 1.0
    assert "soft-prompt budget 5" in out.stdout
    certificate = json.loads((run / "certificate.json").read_text())
    assert certificate["signature"]["alg"] == "EdDSA" and certificate["signature"]["jws"].count(".") == 2
    proof = certificate["certificate"]["proof"]
    assert proof["judge"]["name"] == "model-classifier" and proof["concepts"][0]["concept"] == "star"
    assert proof["concepts"][0]["ua"] >= 0.9 and "Proof: judge model-classifier" in out.stdout


def test_demo_refuses_an_unknown_concept_clearly(tmp_path: Path) -> None:
    out = _demo(["--concept", "object:unicorn"], tmp_path, timeout=120)
    assert out.returncode != 0
    text = out.stdout + out.stderr
    assert "unicorn" in text and "choose from" in text
    assert "Traceback" not in text
