"""`lethe erase`: a real run on a tiny SD1 folder (and on SD1 and SDXL bases stored as fp16 variants), and
readable errors (no tracebacks) for bad input."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from core.cli.app import app
from tests.tiny_pipelines import BUILDERS, save_tiny

torch.set_num_threads(1)
runner = CliRunner()
FAST = json.dumps({"sample_steps": 2, "max_forget_prompts": 3, "max_retain_prompts": 3, "saliency_batches": 1,
                   "timestep_grid": 3, "grid_seeds": 1, "batch_size": 2})


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_tiny("sd1", tmp_path_factory.mktemp("tiny") / "sd1")


def test_erase_cli_writes_outputs(tiny_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    res = runner.invoke(app, ["erase", "--model", str(tiny_dir), "--concept", "circle", "--surrogate", "square",
                              "--forget-prompt", "a circle on a table", "--retain", "a star", "--steps", "3",
                              "--device", "cpu", "--seed", "5", "--params", FAST, "--out", str(out)])
    assert res.exit_code == 0, res.output
    assert "wrote" in res.output and "forget gap closure" in res.output
    report = json.loads((out / "report.json").read_text())
    assert report["config"]["steps"] == 3 and report["config"]["seed"] == 5
    assert report["inputs"]["concepts"][0]["surrogate"] == "square"
    assert "a circle on a table" in report["prompts"]["forget"]["circle"]
    assert "a star" in report["prompts"]["retain"]
    assert (out / "adapter" / "pytorch_lora_weights.safetensors").is_file() and (out / "grid.png").is_file()


@pytest.mark.parametrize("arch", ["sd1", "sdxl"])
def test_the_model_card_loads_a_variant_only_base_as_it_says(arch: str, tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """A base holding only fp16-variant files: the card's adapter snippet, run as written (the base's path
    filled in), loads the base and the adapter, and draws what fused/ draws."""
    import re

    import numpy as np
    from diffusers import DiffusionPipeline
    from safetensors import safe_open

    base = tmp_path / "base"
    BUILDERS[arch]().to(torch.float16).save_pretrained(base, variant="fp16")
    out = tmp_path / "out"
    res = runner.invoke(app, ["erase", "--model", str(base), "--concept", "circle", "--surrogate", "square",
                              "--steps", "3", "--device", "cpu", "--params", FAST, "--out", str(out)])
    assert res.exit_code == 0, res.output
    card = (out / "README.md").read_text()
    assert "| base weights | the `fp16` variant files only |" in card
    with safe_open(str(out / "adapter" / "lora_kohya.safetensors"), "pt") as fh:
        assert fh.metadata()["lethe.base_variant"] == "fp16"
    snippet = re.findall(r"```python\n(.*?)```", card, re.S)[1]
    assert 'variant="fp16"' in snippet
    monkeypatch.chdir(out)
    scope: dict[str, object] = {}
    exec(snippet.replace("path/to/base", str(base)), scope)  # the card's own code, as a user runs it
    pipe = scope["pipe"]
    fused = DiffusionPipeline.from_pretrained(out / "fused")
    assert type(pipe) is type(fused)

    def draw(p: DiffusionPipeline) -> np.ndarray:
        p.set_progress_bar_config(disable=True)
        return p("a photo of a circle", num_inference_steps=3, height=16, width=16, output_type="np",
                 generator=torch.Generator().manual_seed(1)).images

    assert np.abs(draw(pipe) - draw(fused)).max() < 1e-3  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--concept", "circle", "--method", "magic"], "--method must be spare or esd"),
        (["--concept", "circle", "--steps", "0"], "steps"),
        (["--concept", "  "], "empty"),
        (["--concept", "circle", "--surrogate", "CIRCLE"], "surrogate equals the target"),
        (["--concept", "circle", "--kind", "animal"], "--kind must be"),
        (["--concept", "circle", "--device", "tpu"], "--device must be"),
        (["--concept", "circle", "--params", "{bad"], "--params is not JSON"),
        (["--concept", "circle", "--params", '{"rank": 0}'], "rank"),
        (["--concept", "a", "--concept", "b", "--surrogate", "x", "--surrogate", "y", "--surrogate", "z"],
         "one per --concept"),
    ],
)
def test_erase_cli_rejects_bad_input(tiny_dir: Path, tmp_path: Path, args: list[str], message: str) -> None:
    res = runner.invoke(app, ["erase", "--model", str(tiny_dir), *args, "--out", str(tmp_path / "o")])
    assert res.exit_code == 2, res.output
    assert message in res.output and "Traceback" not in res.output
    assert not (tmp_path / "o").exists()


def test_erase_cli_rejects_unknown_model_layout(tmp_path: Path) -> None:
    (tmp_path / "m").mkdir()
    res = runner.invoke(app, ["erase", "--model", str(tmp_path / "m"), "--concept", "x", "--out", str(tmp_path / "o")])
    assert res.exit_code == 2 and "not a diffusers pipeline" in res.output and "Traceback" not in res.output


def test_erase_cli_rejects_occupied_output(tiny_dir: Path, tmp_path: Path) -> None:
    (tmp_path / "o").mkdir()
    (tmp_path / "o" / "keep.txt").write_text("x")
    res = runner.invoke(app, ["erase", "--model", str(tiny_dir), "--concept", "x", "--out", str(tmp_path / "o")])
    assert res.exit_code == 2 and "not empty" in res.output


def test_erase_help() -> None:
    res = runner.invoke(app, ["erase", "--help"])
    assert res.exit_code == 0
    for flag in ("--model", "--concept", "--surrogate", "--kind", "--forget-prompt", "--retain", "--method",
                 "--steps", "--device", "--seed", "--out"):
        assert flag in res.output
