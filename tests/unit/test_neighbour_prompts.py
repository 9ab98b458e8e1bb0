"""Retain prompts in the forget prompts' phrasings (core.spare.samples.neighbour_prompts / training_retain)."""

from __future__ import annotations

from core.spare.samples import neighbour_prompts, training_retain
from core.spare.specs import ConceptSpec, ErasureSpec, SpareConfig

FORGET = ["a dotted circle", "circle , dotted", "the circles of a dotted circle", "a circular dotted thing"]


def _spec(neighbours: list[str], *more: ConceptSpec) -> ErasureSpec:
    return ErasureSpec(concepts=[ConceptSpec(target="circle", surrogate="square", neighbours=neighbours), *more],
                       retain=["a striped heart"])


def test_each_forget_prompt_is_swapped_for_the_neighbours_in_turn() -> None:
    out = neighbour_prompts(_spec(["square", "heart"]), {"circle": FORGET}, 1)
    # Whole words only: "circular" is another word, so the last prompt has nothing to swap; a swap that still
    # spells the target ("the circles of a dotted square") is not a retain prompt.
    assert out == ["a dotted square", "heart , dotted"]
    two = neighbour_prompts(_spec(["square", "heart"]), {"circle": FORGET[:1]}, 2)
    assert two == ["a dotted square", "a dotted heart"]


def test_no_swap_names_a_concept_being_erased() -> None:
    star = ConceptSpec(target="star", surrogate="cross")
    out = neighbour_prompts(_spec(["star", "heart"], star), {"circle": ["a circle", "one circle"]}, 1)
    assert out == ["a heart", "one heart"], "star is erased too: never a neighbour"


def test_off_by_default_and_added_after_the_capped_retain_set() -> None:
    spec = _spec(["square"])
    forget = {"circle": FORGET[:2]}
    assert neighbour_prompts(spec, forget, 0) == []
    plain = training_retain(spec, SpareConfig(), forget)
    more = training_retain(spec, SpareConfig(retain_neighbours=1, max_retain_prompts=2), forget)
    assert "a dotted square" not in plain and "" in plain
    assert more[:2] == ["a striped heart", ""] and more[2:] == ["a dotted square", "square , dotted"]
