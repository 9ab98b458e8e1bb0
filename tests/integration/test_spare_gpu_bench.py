"""bench/erasure_gpu.py cannot run its real size here (no GPU); its CPU-safe paths must still work."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from bench import erasure_gpu


def test_help_parses(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        erasure_gpu.main(["--help"])
    assert exc.value.code == 0
    assert "--dry-run" in capsys.readouterr().out


def test_dry_run_measures_both_methods(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "gpu.json"
    assert erasure_gpu.main(["--dry-run", "--steps", "2", "--out", str(out)]) == 0
    result = json.loads(out.read_text())
    assert set(result["methods"]) == {"spare", "esd"} and result["dry_run"]
    assert result["methods"]["spare"]["adapter_bytes"] > 0 and result["methods"]["esd"]["adapter_bytes"] is None
    table = capsys.readouterr().out.strip().splitlines()
    assert table[0].startswith("phase") and any(line.startswith("spare distill") for line in table)


def test_full_size_unet_has_sd15_parameter_count() -> None:
    """Built on the meta device (no memory): the published SD 1.5 UNet has 859,520,964 parameters."""
    import torch
    from diffusers import UNet2DConditionModel

    with torch.device("meta"):
        unet = UNet2DConditionModel(**erasure_gpu.unet_config(erasure_gpu.SD15_UNET))
    assert sum(p.numel() for p in unet.parameters()) == 859_520_964
