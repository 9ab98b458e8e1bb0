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


def test_a_sequential_samples_extensions_continue_the_heldout_order() -> None:
    pipe = tiny_sd1()
    templates = ["the {style} {object}", "{style} {object} here", "{object} , {style}"]
    vocab = Vocabulary(concepts={"object": ["circle", "square", "star"], "style": STYLES}, source="lethe.json",
                       heldout_templates={"object": templates}, label_templates={"object": ["a {object}"]})
    order = vocab.heldout_prompts("object", "circle")

    def draw(extension: int, scale: int) -> tuple[list[str], list[str]]:
        held = draw_heldout(pipe, pipe, vocab, [("circle", "object", "square")], training_prompts=set(),
                            forget_images=3 * scale, retain_images=4 * scale, steps=1, extension=extension,
                            seed=900_000 + 3_000_000 * extension)
        return ([row[3] for row in held.plan if row[0] == "forget:circle"],
                [row[3] for row in held.plan if row[0] == "same-kind:object"])

    # A first draw and the extensions a sequential sample adds (1, 1, 2, 4 first draws): 24 forget images.
    draws = [draw(0, 1), draw(1, 1), draw(2, 2), draw(3, 4)]
    forget = [p for f, _ in draws for p in f]
    assert forget == (order + order)[:24], "each extension takes the phrasings after the earlier draws'"
    assert len(set(forget)) == len(order) == 18
    same_kind = [p for _, r in draws for p in r]
    assert len(set(same_kind)) == len(same_kind) == 16, same_kind
