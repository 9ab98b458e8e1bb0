"""The mini-canvas dataset and the testbed tokenizer: deterministic, jittered, and prompts kept apart."""

from __future__ import annotations

import numpy as np
import pytest

from core.testbed.canvas import (
    HELDOUT_SYNONYMS,
    HELDOUT_TEMPLATES,
    OBJECTS,
    RESOLUTION,
    STYLES,
    TRAIN_TEMPLATES,
    heldout_prompts,
    prompt,
    render,
    synonym_prompts,
    vocabulary,
)
from core.testbed.model import build_tokenizer


def test_grid_size_meets_the_spec() -> None:
    assert len(OBJECTS) >= 6 and len(STYLES) >= 5
    assert len(set(OBJECTS) | set(STYLES)) == len(OBJECTS) + len(STYLES)


def test_render_is_deterministic_by_seed_and_jittered_across_seeds() -> None:
    for o in OBJECTS:
        for s in STYLES:
            a = np.asarray(render(o, s, 7))
            assert a.shape == (RESOLUTION, RESOLUTION, 3) and a.dtype == np.uint8
            assert np.array_equal(a, np.asarray(render(o, s, 7)))
            assert not np.array_equal(a, np.asarray(render(o, s, 8)))


def test_objects_and_styles_change_the_pixels() -> None:
    base = np.asarray(render("circle", "solid", 3)).astype(int)
    for o in OBJECTS[1:]:
        assert np.abs(np.asarray(render(o, "solid", 3)).astype(int) - base).mean() > 1.0
    for s in STYLES[1:]:
        assert np.abs(np.asarray(render("circle", s, 3)).astype(int) - base).mean() > 1.0


def test_jitter_spans_position_and_background() -> None:
    imgs = np.stack([np.asarray(render("square", "solid", k)).astype(float) for k in range(20)])
    corners = imgs[:, 0, 0, :]
    assert corners.std(0).max() > 2.0  # background colour varies
    centroids = []
    for im in imgs:
        fg = np.abs(im - im[0, 0]).sum(-1) > 60
        ys, xs = np.nonzero(fg)
        centroids.append((xs.mean(), ys.mean()))
    assert np.std(centroids, axis=0).max() > 0.8  # position varies


def test_prompts_and_heldout_templates_are_disjoint() -> None:
    assert prompt("circle", "striped") == "a circle image in striped style"
    assert prompt("star", "dotted", 2) == TRAIN_TEMPLATES[2].format(object="star", style="dotted")
    train = {t.format(object=o, style=s) for t in TRAIN_TEMPLATES for o in OBJECTS for s in STYLES}
    held = {p for o in OBJECTS for s in STYLES for p in heldout_prompts(o, s)}
    assert not train & held
    assert len(HELDOUT_TEMPLATES) >= 3
    syn = synonym_prompts("circle", "solid", "circle")
    assert syn and all("circle" not in p for p in syn)
    assert set(HELDOUT_SYNONYMS) == set(OBJECTS) | set(STYLES)


def test_unknown_concepts_are_rejected_clearly() -> None:
    with pytest.raises(ValueError, match="unknown object 'dog'"):
        render("dog", "solid", 0)
    with pytest.raises(ValueError, match="unknown style 'wavy'"):
        prompt("circle", "wavy")


def test_tokenizer_keeps_every_canvas_word_whole() -> None:
    tok = build_tokenizer()
    for word in vocabulary():
        ids = tok(word).input_ids
        assert len(ids) == 3, (word, tok.convert_ids_to_tokens(ids))
    ids = tok(prompt("heart", "checkered"), padding="max_length", max_length=tok.model_max_length).input_ids
    assert len(ids) == tok.model_max_length
    assert tok.convert_ids_to_tokens(ids[1:7]) == [
        "a</w>",
        "heart</w>",
        "image</w>",
        "in</w>",
        "checkered</w>",
        "style</w>",
    ]
