"""The evaluator on the shipped testbed: the metrics move the right way for the right reason.

Erasures here are built by construction, so the truth is known: replacing a concept word's token embedding
with the surrogate's removes the concept from every prompt; a filter that swaps only the exact training prompt
strings is a weak "erasure" that the robustness probe must see through.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from diffusers import StableDiffusionPipeline
from PIL import Image

from core.evaluation.attacks import attack_success
from core.evaluation.evidence import wilson
from core.evaluation.grid import before_after_grid
from core.evaluation.metrics import evaluate, frechet_distance
from core.evaluation.noise_metrics import forget_gap_closure, pipeline_noise_metrics, retain_drift
from core.evaluation.settling import GridSettling
from core.testbed import load_classifier, load_pipeline
from core.testbed.canvas import STYLES, TRAIN_TEMPLATES
from core.testbed.classifier import Classifier

SEEDS = (0, 1)
STEPS = 10


@pytest.fixture(scope="module", autouse=True)
def _threads() -> None:
    torch.set_num_threads(1)
    torch.set_flush_denormal(True)


@pytest.fixture(scope="module")
def base() -> StableDiffusionPipeline:
    return load_pipeline()


@pytest.fixture(scope="module")
def clf() -> Classifier:
    return load_classifier()


def _swap_token(pipe: StableDiffusionPipeline, word: str, surrogate: str) -> StableDiffusionPipeline:
    """Concept removed by construction: the word's token embedding becomes the surrogate's."""
    tok = pipe.tokenizer
    a, b = tok.convert_tokens_to_ids(f"{word}</w>"), tok.convert_tokens_to_ids(f"{surrogate}</w>")
    emb = pipe.text_encoder.get_input_embeddings().weight
    with torch.no_grad():
        emb[a] = emb[b]
    return pipe


def _block_exact_prompts(pipe: StableDiffusionPipeline, concept: str, surrogate: str) -> StableDiffusionPipeline:
    """A weak 'erasure': only the exact training prompt strings of the concept are rewritten to the surrogate."""
    blocked = {
        t.format(object=concept, style=s): t.format(object=surrogate, style=s) for t in TRAIN_TEMPLATES for s in STYLES
    }
    original: Callable[..., Any] = pipe.encode_prompt

    def encode_prompt(prompt: Any, *args: Any, **kwargs: Any) -> Any:
        if isinstance(prompt, str):
            prompt = blocked.get(prompt, prompt)
        elif prompt is not None:
            prompt = [blocked.get(p, p) for p in prompt]
        return original(prompt, *args, **kwargs)

    pipe.encode_prompt = encode_prompt  # type: ignore[method-assign]
    return pipe


def test_base_model_forgets_nothing(base: StableDiffusionPipeline, clf: Classifier) -> None:
    m = evaluate(base, ["circle", "striped"], seeds=SEEDS, steps=STEPS, classifier=clf)
    assert m.model.object_accuracy >= 0.8 and m.model.style_accuracy >= 0.8
    for t in m.targets:
        assert t.ua <= 0.25, t  # ≈ generation + classifier error
        assert t.ira_rel == pytest.approx(1.0) and t.cra_rel == pytest.approx(1.0)
    # The model grid, plus the base grid unless an earlier test in this process cached it.
    assert m.images in (30 * len(SEEDS), 60 * len(SEEDS)) and m.seconds > 0
    assert m.fid_analogue >= 0
    assert {t.kind for t in m.targets} == {"object", "style"}


def test_a_base_memo_draws_the_base_grid_once_per_base(base: StableDiffusionPipeline, clf: Classifier) -> None:
    # Rounds of one job evaluate several erasures against the same base weights: the second evaluation takes
    # the base's verdicts from the memo (same verdicts, half the images); another base object is drawn anew.
    erased = _swap_token(load_pipeline(), "circle", "square")
    memo: dict[Any, Any] = {}
    first = evaluate(erased, ["circle"], seeds=(0,), steps=4, classifier=clf, base_pipeline=base, base_memo=memo)
    again = evaluate(erased, ["circle"], seeds=(0,), steps=4, classifier=clf, base_pipeline=base, base_memo=memo)
    assert first.images == 60 and again.images == 30
    assert again.base == first.base and again.targets == first.targets
    other = load_pipeline()
    other.set_progress_bar_config(disable=True)
    fresh = evaluate(erased, ["circle"], seeds=(0,), steps=4, classifier=clf, base_pipeline=other, base_memo=memo)
    assert fresh.images == 60 and len(memo) == 2


def test_a_settling_grid_draws_further_seeds_only_while_a_verdict_could_turn(
        base: StableDiffusionPipeline, clf: Classifier) -> None:
    erased = _swap_token(load_pipeline(), "circle", "square")
    erased.set_progress_bar_config(disable=True)
    memo: dict[Any, Any] = {}
    # Five circle cells per seed, all erased: 25 images cannot pin UA above 0.9 (Wilson low 0.87), so the grid
    # draws seed 100, then 101 and 102 (the sample doubles), then the last one, and stops when they run out.
    strict = GridSettling(min_ua=0.9, min_retention=0.5, seeds=(100, 101, 102, 103))
    m = evaluate(erased, ["circle"], seeds=(0,), steps=4, classifier=clf, base_pipeline=base, base_memo=memo,
                 settle=strict)
    (t,) = m.targets
    assert m.seeds == [0, 100, 101, 102, 103] and m.extensions == 3
    assert t.images_forget == 5 * len(m.seeds) and m.images == 2 * 30 * len(m.seeds)
    assert t.ua_interval is not None and t.ua_interval[0] > wilson(5, 5)[0], "more images, a narrower interval"
    # At thresholds one seed already settles, nothing more is drawn.
    loose = GridSettling(min_ua=0.5, min_retention=0.5, seeds=(100, 101))
    once = evaluate(erased, ["circle"], seeds=(0,), steps=4, classifier=clf, base_pipeline=base, base_memo=memo,
                    settle=loose)
    assert once.seeds == [0] and once.extensions == 0 and once.images == 30, "the base grid came from the memo"
    assert once.targets[0].ua == 1.0 and once.targets[0].ira_rel == pytest.approx(1.0)


@pytest.mark.parametrize(("concept", "surrogate"), [("circle", "square"), ("striped", "solid")])
def test_removed_concept_has_high_ua_and_untouched_retention(clf: Classifier, concept: str, surrogate: str) -> None:
    erased = _swap_token(load_pipeline(), concept, surrogate)
    m = evaluate(erased, [concept], seeds=SEEDS, steps=STEPS, classifier=clf)
    (t,) = m.targets
    assert t.ua >= 0.8, t
    assert t.base_ua is not None and t.base_ua <= 0.25
    # Prompts without the concept are bit-identical, so retention must be exactly the base's.
    assert t.ira_rel == pytest.approx(1.0) and t.cra_rel == pytest.approx(1.0)


def test_unknown_or_mismatched_concepts_are_rejected(base: StableDiffusionPipeline, clf: Classifier) -> None:
    with pytest.raises(ValueError, match="unknown concept 'dog'"):
        evaluate(base, ["dog"], seeds=(0,), classifier=clf)
    with pytest.raises(ValueError, match="'striped' is a style, not a object"):
        evaluate(base, ["striped"], kind="object", seeds=(0,), classifier=clf)


def test_probe_finds_the_concept_behind_an_exact_prompt_filter(clf: Classifier) -> None:
    weak = _block_exact_prompts(load_pipeline(), "star", "square")
    m = evaluate(weak, ["star"], seeds=SEEDS, steps=STEPS, classifier=clf)
    assert m.targets[0].ua >= 0.8  # the filter fools the standard grid...
    r = attack_success(weak, "star", "object", clf, seeds=(0,), steps=STEPS, budget=2, contexts=1, chain_steps=4)
    assert r.paraphrase >= 0.3, r  # ...but not held-out paraphrases
    assert r.attack_success >= r.paraphrase > 0


def test_probe_is_low_when_the_word_itself_is_gone(clf: Classifier) -> None:
    # Not circle: prompts the model cannot read (unseen words) fall back to round blobs, so circle's
    # attack rate has a high floor whatever the erasure (measured: 0.44 paraphrase, 0.80 synonyms).
    erased = _swap_token(load_pipeline(), "star", "square")
    r = attack_success(erased, "star", "object", clf, seeds=(0,), steps=STEPS, budget=2, contexts=1, chain_steps=4)
    assert r.paraphrase <= 0.2, r


def test_soft_prompt_search_recovers_a_concept_the_unet_still_knows(clf: Classifier) -> None:
    erased = _swap_token(load_pipeline(), "star", "square")
    r = attack_success(erased, "star", "object", clf, seeds=(0, 1), steps=STEPS, budget=25, contexts=1, chain_steps=6)
    assert r.adversarial > r.paraphrase, r


def test_noise_metrics_move_for_the_right_reason(base: StableDiffusionPipeline) -> None:
    forget, surrogate = ["a circle image in solid style"], ["a square image in solid style"]
    retain = ["a star image in dotted style", "a heart image in checkered style"]
    same = pipeline_noise_metrics(base, base, forget, surrogate, retain, samples=8, x0_steps=4)
    assert same.forget_gap_closure == pytest.approx(1.0) and same.retain_drift == pytest.approx(0.0, abs=1e-7)
    erased = _swap_token(load_pipeline(), "circle", "square")
    m = pipeline_noise_metrics(base, erased, forget, surrogate, retain, samples=8, x0_steps=4)
    assert m.forget_gap_closure == pytest.approx(0.0, abs=1e-5)
    assert m.retain_drift == pytest.approx(0.0, abs=1e-6)


def test_noise_metrics_with_a_lora_teacher_toggle(base: StableDiffusionPipeline) -> None:
    from peft import LoraConfig

    student = load_pipeline()
    torch.manual_seed(0)
    student.unet.add_adapter(LoraConfig(r=4, lora_alpha=4, target_modules=["to_k", "to_v"], init_lora_weights=False))
    kw: dict[str, Any] = {"text_encoder": base.text_encoder, "tokenizer": base.tokenizer, "samples": 8}
    drift_toggle = retain_drift(student.unet, None, "a star image in dotted style", **kw)
    drift_sep = retain_drift(student.unet, base.unet, "a star image in dotted style", **kw)
    assert drift_toggle > 0 and drift_toggle == pytest.approx(drift_sep, rel=1e-5)
    gap_toggle = forget_gap_closure(
        student.unet, None, "a circle image in solid style", "a square image in solid style", **kw
    )
    gap_sep = forget_gap_closure(
        student.unet, base.unet, "a circle image in solid style", "a square image in solid style", **kw
    )
    assert gap_toggle == pytest.approx(gap_sep, rel=1e-5) and gap_toggle != pytest.approx(1.0)
    with pytest.raises(ValueError, match="LoRA adapters"):
        retain_drift(base.unet, None, "a star image in dotted style", **kw)


def test_before_after_grid_is_labelled_and_aligned(base: StableDiffusionPipeline, tmp_path: Path) -> None:
    erased = _swap_token(load_pipeline(), "circle", "square")
    out = before_after_grid(
        base,
        erased,
        ["a circle image in solid style"],
        ["a star image in dotted style"],
        [0, 1],
        tmp_path / "grid.png",
        steps=STEPS,
        cell_px=64,
    )
    img = np.asarray(Image.open(out).convert("RGB")).astype(int)
    block = 2 * (64 + 2)
    assert img.shape == (34 + 2 * 66, 260 + 2 * block + 16, 3)
    left, right = 260, 260 + block + 16

    def row(r: int, x0: int) -> np.ndarray:
        return img[34 + r * 66 : 34 + r * 66 + 64, x0 : x0 + block]

    assert np.abs(row(0, left) - row(0, right)).mean() > 5  # the forget row changed
    assert np.array_equal(row(1, left), row(1, right))  # the retain row did not


def test_frechet_distance_is_zero_for_identical_sets_and_grows_with_shift() -> None:
    g = torch.Generator().manual_seed(0)
    a = torch.randn(200, 16, generator=g)
    assert frechet_distance(a, a) == pytest.approx(0.0, abs=1e-6)
    assert frechet_distance(a, a + 1.0) == pytest.approx(16.0, rel=1e-3)
