"""The held-out images a verification draws spread over contexts: a dozen images of a concept show it in many
contexts and templates, not one context in every template, and each retained concept of a group starts in a
context of its own."""

from __future__ import annotations

from collections import Counter

from core.evaluation.evidence import draw_heldout
from core.evaluation.vocabulary import Vocabulary
from tests.tiny_pipelines import tiny_sd1

STYLES = ["solid", "striped", "dotted", "outline", "checkered", "wavy"]


def test_every_prefix_of_the_heldout_prompts_spreads_over_templates_and_contexts() -> None:
    templates = ["the {style} {object}", "{style} {object} here", "{object} , {style}"]
    vocab = Vocabulary(concepts={"object": ["circle"], "style": STYLES}, source="lethe.json",
                       heldout_templates={"object": templates})
    prompts = vocab.heldout_prompts("object", "circle")
    assert len(prompts) == 18 and len(set(prompts)) == 18
    first = prompts[:6]
    assert {s for s in STYLES if any(f" {s} " in f" {p} " for p in first)} == set(STYLES), first
    templates = Counter("the" if p.startswith("the ") else "here" if p.endswith(" here") else "comma" for p in first)
    assert templates == {"the": 2, "here": 2, "comma": 2}, first


def test_a_retention_group_starts_each_concept_in_another_context() -> None:
    pipe = tiny_sd1()
    vocab = Vocabulary(concepts={"object": ["circle", "square", "star"], "style": ["solid", "striped", "dotted"]},
                       heldout_templates={"object": ["{style} {object}"], "style": ["{style} {object}"]},
                       label_templates={"object": ["a {object}"], "style": ["{style}"]}, source="lethe.json")
    held = draw_heldout(pipe, pipe, vocab, [("circle", "object", "square")], training_prompts=set(),
                        forget_images=3, retain_images=4, steps=1)
    forget = [row[3] for row in held.plan if row[0] == "forget:circle"]
    assert forget == ["solid circle", "striped circle", "dotted circle"]
    same_kind = [row[3] for row in held.plan if row[0] == "same-kind:object"]
    assert same_kind == ["solid square", "striped star"], same_kind
