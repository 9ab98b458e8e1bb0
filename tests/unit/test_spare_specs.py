"""Input validation of the erasure engine: specs, configs, model layout detection, fingerprints."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from pydantic import ValidationError

from core.spare import ConceptSpec, ErasureInputError, ErasureSpec, EsdConfig, SpareConfig, UnsupportedModelError
from core.spare.loading import detect_architecture, fingerprint
from core.spare.samples import forget_prompts, retain_prompts, surrogate_prompt
from core.spare.timesteps import _interp


def test_empty_concept_rejected() -> None:
    with pytest.raises(ValidationError, match="empty"):
        ConceptSpec(target="   ")


def test_surrogate_equal_to_target_rejected() -> None:
    with pytest.raises(ValidationError, match="surrogate equals the target"):
        ConceptSpec(target="Circle", surrogate=" circle ")


def test_concept_count_and_prompt_bounds() -> None:
    with pytest.raises(ValidationError):
        ErasureSpec(concepts=[])
    with pytest.raises(ValidationError):
        ErasureSpec(concepts=[ConceptSpec(target=f"c{i}") for i in range(17)])
    with pytest.raises(ValidationError):
        ConceptSpec(target="x", prompts=[f"p{i}" for i in range(33)])
    with pytest.raises(ValidationError, match="listed twice"):
        ErasureSpec(concepts=[ConceptSpec(target="dog"), ConceptSpec(target="Dog")])


def test_steps_out_of_range_rejected() -> None:
    with pytest.raises(ValidationError):
        SpareConfig(steps=0)
    with pytest.raises(ValidationError):
        SpareConfig(steps=10**6)
    with pytest.raises(ValidationError):
        EsdConfig(steps=-1)
    with pytest.raises(ValidationError):
        SpareConfig(unknown_field=1)


def test_config_schema_exposes_bounds_for_api_validation() -> None:
    schema = SpareConfig.model_json_schema()
    steps = schema["properties"]["steps"]
    assert steps["minimum"] == 1 and steps["maximum"] == 20000 and steps["description"]
    assert schema["properties"]["device"]["enum"] == ["auto", "cpu", "cuda"]
    json.dumps(schema)  # serializable as the API publishes it


def test_forget_prompts_compose_target_with_contexts() -> None:
    concept = ConceptSpec(target="circle", kind="object", prompts=["a circle on a table"])
    prompts = forget_prompts(concept, ["a square in striped style"], limit=32)
    assert prompts[0] == "a circle on a table"
    assert all("circle" in p for p in prompts)
    assert "a square in striped style, with a circle" in prompts
    assert len(set(prompts)) == len(prompts) > 5
    assert surrogate_prompt("a Circle on a table", concept) == "a object on a table"
    assert surrogate_prompt("a circle", ConceptSpec(target="circle", surrogate="square")) == "a square"


def test_retain_prompts_keep_empty_prompt_and_drop_targets() -> None:
    spec = ErasureSpec(concepts=[ConceptSpec(target="circle")], retain=["a square", "a circle and a star"])
    retain = retain_prompts(spec, limit=24)
    assert "" in retain and "a square" in retain
    assert not any("circle" in r for r in retain)


def test_interp_matches_grid_points() -> None:
    import torch

    xp = torch.tensor([0.0, 10.0, 20.0])
    fp = torch.tensor([1.0, 3.0, 2.0])
    out = _interp(torch.tensor([0.0, 5.0, 10.0, 20.0]), xp, fp)
    assert torch.allclose(out, torch.tensor([1.0, 2.0, 3.0, 2.0]))


def _write_json(path: Path, data: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data))


def test_detect_architecture_rejects_unknown_layouts(tmp_path: Path) -> None:
    with pytest.raises(UnsupportedModelError, match="not a folder"):
        detect_architecture(tmp_path / "missing")
    with pytest.raises(UnsupportedModelError, match=r"model_index\.json is missing"):
        detect_architecture(tmp_path)
    flux = tmp_path / "flux"
    _write_json(flux / "model_index.json", {"_class_name": "FluxPipeline", "transformer": ["diffusers", "X"]})
    with pytest.raises(UnsupportedModelError, match="no UNet2DConditionModel"):
        detect_architecture(flux)
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "model_index.json").write_text("{not json")
    with pytest.raises(ErasureInputError, match="not readable JSON"):
        detect_architecture(bad)


def test_detect_architecture_from_configs(tmp_path: Path) -> None:
    unet = ["diffusers", "UNet2DConditionModel"]
    sd1 = tmp_path / "sd1"
    _write_json(sd1 / "model_index.json", {"_class_name": "StableDiffusionPipeline", "unet": unet})
    _write_json(sd1 / "unet" / "config.json", {"cross_attention_dim": 768})
    _write_json(sd1 / "scheduler" / "scheduler_config.json", {"prediction_type": "epsilon"})
    assert detect_architecture(sd1) == "sd1"
    nested = tmp_path / "testbed"  # the testbed keeps its pipeline in pipeline/
    _write_json(nested / "pipeline" / "model_index.json", {"_class_name": "StableDiffusionPipeline", "unet": unet})
    _write_json(nested / "pipeline" / "unet" / "config.json", {})
    assert detect_architecture(nested) == "sd1"
    sd2 = tmp_path / "sd2"
    _write_json(sd2 / "model_index.json", {"_class_name": "StableDiffusionPipeline", "unet": unet})
    _write_json(sd2 / "unet" / "config.json", {"use_linear_projection": True})
    _write_json(sd2 / "scheduler" / "scheduler_config.json", {"prediction_type": "v_prediction"})
    assert detect_architecture(sd2) == "sd2"
    xl = tmp_path / "xl"
    _write_json(xl / "model_index.json", {"_class_name": "StableDiffusionXLPipeline", "unet": unet,
                                          "text_encoder_2": ["transformers", "CLIPTextModelWithProjection"]})
    _write_json(xl / "unet" / "config.json", {"addition_embed_type": "text_time"})
    assert detect_architecture(xl) == "sdxl"


def test_fingerprint_is_stable_and_content_sensitive(tmp_path: Path) -> None:
    (tmp_path / "unet").mkdir()
    (tmp_path / "vae").mkdir()
    (tmp_path / "unet" / "w.safetensors").write_bytes(b"abc")
    (tmp_path / "vae" / "w.safetensors").write_bytes(b"def")
    (tmp_path / "unet" / "config.json").write_text("{}")
    first = fingerprint(tmp_path)
    assert first == fingerprint(tmp_path) and len(first) == 64
    (tmp_path / "unet" / "config.json").write_text('{"a": 1}')  # configs are not weights
    assert fingerprint(tmp_path) == first
    (tmp_path / "vae" / "w.safetensors").write_bytes(b"deg")
    assert fingerprint(tmp_path) != first
    with pytest.raises(UnsupportedModelError, match="no weight files"):
        fingerprint(_empty(tmp_path))


def _empty(tmp_path: Path) -> Path:
    d = tmp_path / "empty"
    d.mkdir()
    return d
