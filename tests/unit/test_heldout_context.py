"""Held-out prompts past the model's context are not drawn: a pipeline cuts such a prompt at its end, and the
cut can take the concept with it (a 16-token model spelling words in byte pieces). The tiny SD1 pipeline's
tokenizer has a 16-token context."""

from __future__ import annotations

from core.evaluation.evidence import draw_heldout
from core.evaluation.vocabulary import Vocabulary
from core.spare.prompting import untruncated
from tests.tiny_pipelines import tiny_sd1, tiny_tokenizer

LONG = "a picture of a {object} on a wooden kitchen table, seen from the side"
SHORT = "a {object}"


def test_only_prompts_the_tokenizer_encodes_whole_are_kept() -> None:
    tok = tiny_tokenizer()
    long, short = LONG.format(object="circle"), SHORT.format(object="circle")
    assert len(tok(long, truncation=False).input_ids) > tok.model_max_length >= len(tok(short).input_ids)
    assert untruncated([long, short], tok) == [short]
    assert untruncated([long], tok) == [long], "none fits: drawn as before, there is nothing better"
    assert untruncated([long, short], None) == [long, short]


def test_verification_draws_no_prompt_the_model_would_truncate() -> None:
    pipe = tiny_sd1()
    vocab = Vocabulary(concepts={"object": ["circle", "square", "star"]}, heldout_templates={"object": [LONG, SHORT]},
                       label_templates={"object": ["a {object}"]}, source="lethe.json")
    held = draw_heldout(pipe, pipe, vocab, [("circle", "object", "square")], training_prompts=set(),
                        forget_images=4, retain_images=4, steps=1)
    prompts = {row[3] for row in held.plan}
    assert prompts == {"a circle", "a square", "a star"}, prompts
    limit = pipe.tokenizer.model_max_length
    assert all(len(pipe.tokenizer(p, truncation=False).input_ids) <= limit for p in prompts)
