"""Judges on real models: the diffusion classifier reads the shipped testbed's base images, the model's own
classifier and a CLIP folder plug in behind the same interface, and `auto` picks in the documented order."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from core.evaluation.judges import JudgeUnavailable, select_judge
from core.evaluation.judges.clip import ClipJudge
from core.evaluation.judges.diffusion import DiffusionClassifierJudge
from core.evaluation.sampling import generate
from core.evaluation.vocabulary import DEFAULT, load_vocabulary
from core.testbed import paths
from core.testbed.canvas import OBJECTS, STYLES
from core.testbed.loading import load_pipeline
from tests.tiny_pipelines import save_tiny, tiny_tokenizer


@pytest.fixture(scope="module")
def testbed_images() -> tuple:
    """One base image per (object, style) pair from a held-out wording, on seeds no erasure uses."""
    torch.set_num_threads(1)
    pipe = load_pipeline(paths.testbed_dir() / "pipeline")
    vocab = load_vocabulary(paths.testbed_dir() / "pipeline")
    pairs = [(o, s) for o in OBJECTS for s in STYLES]
    prompts = [f"the {s} {o} shape" for o, s in pairs]
    images = generate(pipe, prompts, [4242 + i for i in range(len(pairs))], steps=10)
    return pipe, vocab, pairs, images


def test_diffusion_classifier_reads_the_testbed_base_images(testbed_images: tuple) -> None:
    pipe, vocab, pairs, images = testbed_images
    judge = DiffusionClassifierJudge(pipe, vocab, fingerprint="f" * 64)
    objects = judge.classify(images, "object", list(OBJECTS))
    styles = judge.classify(images, "style", list(STYLES))
    object_acc = np.mean([got == o for got, (o, _) in zip(objects, pairs, strict=True)])
    style_acc = np.mean([got == s for got, (_, s) in zip(styles, pairs, strict=True)])
    # Measured 1.00 / 1.00 on these 30 images; the independent testbed classifier agrees on its own.
    assert object_acc >= 0.9 and style_acc >= 0.9, (object_acc, style_acc)
    assert judge.version.endswith("+" + "f" * 16), "the base weights are part of the judge's version"
    own = select_judge("model-classifier", base_pipeline=pipe, vocabulary=vocab)
    assert np.mean([got == o for got, (o, _) in zip(own.classify(images, "object", list(OBJECTS)), pairs,
                                                     strict=True)]) >= 0.9


def test_auto_prefers_the_model_classifier_then_clip_then_diffusion(testbed_images: tuple, tmp_path: Path) -> None:
    pipe, vocab, _, _ = testbed_images
    assert select_judge("auto", base_pipeline=pipe, vocabulary=vocab).name == "model-classifier"
    assert select_judge("auto", base_pipeline=pipe, vocabulary=DEFAULT).name == "diffusion-classifier"
    with pytest.raises(JudgeUnavailable, match="declares no classifier"):
        select_judge("model-classifier", base_pipeline=pipe, vocabulary=DEFAULT)
    with pytest.raises(JudgeUnavailable, match="LETHE_CLIP_JUDGE_PATH"):
        select_judge("clip", base_pipeline=pipe, vocabulary=DEFAULT)
    clip_dir = _tiny_clip(tmp_path / "clip")
    assert select_judge("auto", base_pipeline=pipe, vocabulary=DEFAULT, clip_path=clip_dir).name == "clip"


def _tiny_clip(out: Path) -> Path:
    """A CLIP model folder built from a config (untrained: it exercises the judge, it claims no quality)."""
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel

    tok = tiny_tokenizer()
    config = CLIPConfig(
        text_config={"vocab_size": tok.vocab_size, "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1,
                     "num_attention_heads": 2, "max_position_embeddings": 16, "bos_token_id": tok.bos_token_id,
                     "eos_token_id": tok.eos_token_id, "pad_token_id": tok.pad_token_id},
        vision_config={"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1, "num_attention_heads": 2,
                       "image_size": 32, "patch_size": 8},
        projection_dim=16,
    )
    torch.manual_seed(0)
    CLIPModel(config).save_pretrained(out)
    tok.save_pretrained(out)
    CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}).save_pretrained(out)
    return out


def test_clip_judge_from_a_config_built_folder(tmp_path: Path) -> None:
    clip_dir = _tiny_clip(tmp_path / "clip")
    judge = ClipJudge(clip_dir, DEFAULT)
    images = np.random.default_rng(0).integers(0, 255, (5, 32, 32, 3), dtype=np.uint8)
    labels = DEFAULT.concepts["object"][:3]
    verdicts = judge.classify(images, "object", labels)
    assert len(verdicts) == 5 and set(verdicts) <= set(labels)
    assert judge.classify(images, "object", labels) == verdicts, "deterministic"
    assert len(judge.version) == 16
    with pytest.raises(JudgeUnavailable):
        ClipJudge(tmp_path, DEFAULT)


def test_diffusion_classifier_runs_on_sd2_and_sdxl(tmp_path: Path) -> None:
    from core.spare.loading import load_pipeline as load_any

    images = np.random.default_rng(1).integers(0, 255, (3, 32, 32, 3), dtype=np.uint8)
    for arch in ("sd2", "sdxl"):
        pipe = load_any(save_tiny(arch, tmp_path / arch), "cpu")
        judge = DiffusionClassifierJudge(pipe, DEFAULT)
        assert set(judge.classify(images, "style", ["cartoon", "watercolor"])) <= {"cartoon", "watercolor"}
