"""Vocabulary-aware prompts: declared phrasing from lethe.json, and only words the model's tokenizer knows."""

from __future__ import annotations

import pytest
from transformers import CLIPTokenizer

from core.evaluation.vocabulary import Vocabulary, load_vocabulary
from core.spare.prompting import Tokens, fit_request, tokens_of
from core.spare.samples import forget_prompts, retain_prompts
from core.spare.specs import ConceptSpec, ErasureSpec, EsdConfig, SpareConfig
from core.testbed.paths import SHIPPED


@pytest.fixture(scope="module")
def canvas_tokens() -> Tokens:
    return Tokens(CLIPTokenizer.from_pretrained(str(SHIPPED / "pipeline" / "tokenizer")))


def test_words_the_tokenizer_spells_out_letter_by_letter_are_unknown(canvas_tokens: Tokens) -> None:
    assert canvas_tokens.known("circle") and canvas_tokens.known("striped") and canvas_tokens.known("in")
    assert canvas_tokens.tokenizer.tokenize("photo") == ["p", "h", "ot", "o</w>"]
    assert not canvas_tokens.known("photo") and not canvas_tokens.known("painting") and not canvas_tokens.known("7")
    assert canvas_tokens.unknown_words("a photo of a circle") == ["photo"]
    assert canvas_tokens.max_length == 16
    assert not canvas_tokens.fits("a circle image in striped style " * 3)


def test_sub_word_pieces_count_as_known() -> None:
    from core.testbed.model import build_tokenizer

    tokenizer = build_tokenizer(16, merges_kept=130)  # the subword testbed's tokenizer
    assert tokenizer.tokenize("square") == ["s", "q", "u", "are</w>"]
    assert Tokens(tokenizer).known("triangle") and not Tokens(tokenizer).known("square")
    # Words the request's own (declared) prompts use are the model's words, however they are split.
    spec = ErasureSpec(concepts=[ConceptSpec(target="star", prompts=["a star image in square style"])])
    tokens = tokens_of(tokenizer, spec)
    assert tokens is not None and tokens.known("square") and not tokens.known("photo")


def test_a_template_word_the_tokenizer_does_not_know_is_not_used(canvas_tokens: Tokens) -> None:
    concept = ConceptSpec(target="circle", surrogate="square", prompts=["a circle in solid style"])
    plain = forget_prompts(concept, ["a star in dotted style"], limit=64)
    assert "a photo of a circle" in plain and "a star in dotted style, with a circle" in plain
    fitted = forget_prompts(concept, ["a star in dotted style"], limit=64, tokens=canvas_tokens)
    assert fitted[0] == "a circle in solid style", "the request's own prompts come first, verbatim"
    assert "a circle" in fitted and "a star in dotted style, with a circle" in fitted
    assert "a photo of a circle" not in fitted and "a painting of a circle" not in fitted
    # A context template keeps only the words the model knows.
    assert canvas_tokens.connector("{r}, photographed with a {t}", "circle") == "{r}, with a {t}"
    for prompt in fitted:
        assert not canvas_tokens.unknown_words(prompt), prompt
        assert canvas_tokens.fits(prompt)
    retain = retain_prompts(ErasureSpec(concepts=[concept]), limit=24, tokens=canvas_tokens)
    assert "a photo" not in retain and "" in retain
    assert "a photo" in retain_prompts(ErasureSpec(concepts=[concept]), limit=24)


def test_a_prompt_longer_than_the_context_is_not_used(canvas_tokens: Tokens) -> None:
    long_retain = "a star image in dotted style a heart image in striped style"
    concept = ConceptSpec(target="circle", surrogate="square")
    fitted = forget_prompts(concept, [long_retain], limit=64, tokens=canvas_tokens)
    assert not any(long_retain in p for p in fitted)
    assert any(long_retain in p for p in forget_prompts(concept, [long_retain], limit=64))


def test_a_prompt_whose_surrogate_prompt_would_be_cut_off_is_not_used() -> None:
    from core.spare.samples import surrogate_prompt
    from core.testbed.model import build_tokenizer

    # The subword testbed's tokenizer spells square in four pieces and circle in fewer: the context prompt fits
    # its 16 tokens while the teacher's surrogate prompt for it would lose the surrogate to truncation.
    tokens = Tokens(build_tokenizer(16, merges_kept=130))
    concept = ConceptSpec(target="circle", surrogate="square")
    context = "a heart image in striped style"
    prompt = f"{context}, with a circle"
    assert tokens.fits(prompt) and not tokens.fits(surrogate_prompt(prompt, concept))
    fitted = forget_prompts(concept, [context, "a star"], limit=64, tokens=tokens)
    assert prompt not in fitted and "a star, with a circle" in fitted
    assert all(tokens.fits(surrogate_prompt(p, concept)) for p in fitted)
    assert prompt in forget_prompts(concept, [context], limit=64)  # without a tokenizer nothing is measured


def test_a_declared_vocabulary_phrases_the_request() -> None:
    vocab = Vocabulary(
        concepts={"object": ["mug", "vase", "lamp"], "style": ["ink", "clay"]},
        prompt_templates={"object": ["a {object} made of {style}", "{style} {object}"]},
        retain_templates={"object": ["a {object} made of {style}"]},
        default_surrogates={"mug": "lamp"},
        surrogate_rule="next-of-kind",
    )
    spec = ErasureSpec(concepts=[ConceptSpec(target="mug", surrogate="object", prompts=["my mug"]),
                                 ConceptSpec(target="clay", kind="object")])
    fitted, config = fit_request(spec, SpareConfig(), vocab)
    mug, clay = fitted.concepts
    assert mug.surrogate == "lamp" and mug.kind == "object"
    assert clay.kind == "style" and clay.surrogate == "ink", "declared kind; next concept of the kind"
    assert mug.prompts == ["my mug", "a mug made of ink", "a mug made of clay", "ink mug", "clay mug"]
    assert fitted.retain == sorted(["a vase made of ink", "a lamp made of ink"],
                                   key=lambda p: (sum((i + 1) * ord(c) for i, c in enumerate(p)) % 97, p))
    assert config.max_forget_prompts == 5
    # What the caller set stays; so does a named surrogate, and a request for a folder declaring nothing.
    _, kept = fit_request(spec, SpareConfig(max_forget_prompts=3), vocab)
    assert kept.max_forget_prompts == 3
    named, _ = fit_request(ErasureSpec(concepts=[ConceptSpec(target="mug", surrogate="vase")]), EsdConfig(), vocab)
    assert named.concepts[0].surrogate == "vase"
    plain = ErasureSpec(concepts=[ConceptSpec(target="dog")])
    assert fit_request(plain, SpareConfig(), Vocabulary()) == (plain, SpareConfig())


def test_a_raised_retain_cap_gets_more_of_the_folders_default_retain_set() -> None:
    # Two retain phrasings of five kept objects in five styles: 50 default retain prompts.
    vocab = Vocabulary(
        concepts={"object": ["mug", "vase", "lamp", "cup", "bowl", "jar"],
                  "style": ["ink", "clay", "wood", "glass", "tin"]},
        retain_templates={"object": ["a {object} made of {style}", "{style} {object}"]},
    )
    spec = ErasureSpec(concepts=[ConceptSpec(target="mug", surrogate="lamp")])
    default, _ = fit_request(spec, SpareConfig(), vocab)
    assert len(default.retain) == 30, "the folder's default length; the config's cap of 24 then applies"
    assert retain_prompts(default, SpareConfig().max_retain_prompts)[:-1] == default.retain[:23]
    raised, config = fit_request(spec, SpareConfig(max_retain_prompts=64), vocab)
    assert len(raised.retain) == 50 and raised.retain[:30] == default.retain
    assert not any("mug" in r for r in raised.retain)
    assert len(retain_prompts(raised, config.max_retain_prompts)) > 50, "all of them, the neutral ones, the empty"


def test_the_testbed_declares_its_phrasing_in_lethe_json() -> None:
    vocab = load_vocabulary(SHIPPED / "pipeline")
    spec, config = fit_request(
        ErasureSpec(concepts=[ConceptSpec(target="circle", surrogate="object"), ConceptSpec(target="square")]),
        SpareConfig(), vocab,
    )
    assert [c.surrogate for c in spec.concepts] == ["triangle", "triangle"]  # skips the other target
    assert all("circle" in p for p in spec.concepts[0].prompts) and len(spec.concepts[0].prompts) == 20
    assert spec.retain and not any("circle" in r or "square" in r for r in spec.retain)
    assert config.max_forget_prompts == 20
    style, _ = fit_request(ErasureSpec(concepts=[ConceptSpec(target="checkered")]), SpareConfig(), vocab)
    assert style.concepts[0].kind == "style" and style.concepts[0].surrogate == "solid"


def test_a_concept_the_model_lost_already_is_no_surrogate_but_stays_retained() -> None:
    vocab = load_vocabulary(SHIPPED / "pipeline")
    request = ErasureSpec(concepts=[ConceptSpec(target="circle")])
    spec, _ = fit_request(request, SpareConfig(), vocab, erased=["square"])
    circle = spec.concepts[0]
    assert circle.surrogate == "triangle", "square (erased in an earlier version) is skipped"
    assert any("square" in r for r in spec.retain), "matching the version keeps square erased"
    assert "square" in circle.neighbours and "circle" not in circle.neighbours
    # Every other object erased already: the plain pick rather than a refusal.
    others = ["square", "triangle", "star", "cross", "heart"]
    last, _ = fit_request(request, SpareConfig(), vocab, erased=others)
    assert last.concepts[0].surrogate == "square"
