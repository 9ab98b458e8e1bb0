"""Prompts in the model's own language: what a model folder declares, and what its tokenizer can represent.

`fit_request` turns a request into the model folder's phrasing (core.evaluation.vocabulary: its declared
forget contexts, default retain set and default surrogates); a folder that declares nothing gets the request
as it is. `Tokens` tells which words the model's tokenizer represents as known tokens, so that generic
templates are used only where every word means something to the model: a word that encodes to the unknown
token, or only as (nearly) single-character pieces, is not known unless the request's own prompts use it; a
prompt longer than the context is not used (truncation would cut the concept off). Same rule for a
small-vocabulary model and for SD 1.5.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from functools import lru_cache
from typing import Any

from core.spare.errors import ErasureInputError
from core.spare.specs import NEUTRAL_SURROGATE, ErasureSpec

_WORD = re.compile(r"[a-z0-9']+", re.IGNORECASE)


class Tokens:
    """What one tokenizer represents. Cached per word; cheap to build."""

    def __init__(self, tokenizer: Any, declared: set[str] | None = None) -> None:
        self.tokenizer = tokenizer
        self.declared = {w.lower() for w in declared or ()}
        self.max_length = int(getattr(tokenizer, "model_max_length", 77) or 77)
        self.unk_id = getattr(tokenizer, "unk_token_id", None)
        self._known = lru_cache(maxsize=4096)(self._word_known)

    def _word_known(self, word: str) -> bool:
        pieces = self.tokenizer.tokenize(word)
        if not pieces:
            return False
        ids = self.tokenizer.convert_tokens_to_ids(pieces)
        specials = set(getattr(self.tokenizer, "all_special_ids", []) or [])
        if (self.unk_id is not None and self.unk_id in ids) or any(i in specials for i in ids):
            return False
        lengths = [len(p.replace("</w>", "").replace("Ġ", "").replace("▁", "")) for p in pieces]
        # Spelled out in (nearly) single characters: the model never saw the word as a unit.
        return len(pieces) == 1 or sum(lengths) / len(lengths) >= 2.0

    def known(self, word: str) -> bool:
        word = word.lower()
        return word in self.declared or self._known(word)

    def unknown_words(self, text: str) -> list[str]:
        return [w for w in _WORD.findall(text) if not self.known(w)]

    def length(self, prompt: str) -> int:
        return len(self.tokenizer(prompt, truncation=False).input_ids)

    def fits(self, prompt: str) -> bool:
        return self.length(prompt) <= self.max_length

    def usable(self, prompt: str, concept: str = "") -> bool:
        """Every word outside `concept` is known, and the whole prompt fits the context."""
        rest = prompt.replace(concept, " ") if concept else prompt
        return not self.unknown_words(rest) and self.fits(prompt)

    def connector(self, template: str, concept: str) -> str:
        """A context template ("{r}, with a {t}") with the words the tokenizer does not know dropped."""
        words = template.split(" ")
        kept = [w for w in words if "{" in w or all(self.known(x) for x in _WORD.findall(w))]
        return " ".join(kept)


def tokens_of(tokenizer: Any, spec: ErasureSpec | None = None) -> Tokens | None:
    """Tokens for `tokenizer` (None: no filtering). Every word of the request's own prompts and retain prompts
    (where a model folder's declared phrasing lands, see `fit_request`) counts as known: the model's own words,
    even where its tokenizer splits them into short pieces."""
    if tokenizer is None:
        return None
    declared: set[str] = set()
    if spec is not None:
        for text in [*spec.retain, *(p for c in spec.concepts for p in c.prompts)]:
            declared.update(_WORD.findall(text))
    return Tokens(tokenizer, declared)


def untruncated(prompts: Sequence[str], tokenizer: Any) -> list[str]:
    """The `prompts` that `tokenizer` encodes whole. A pipeline cuts a prompt past its context at the end, and
    the cut may take the concept with it: an image drawn from that is no evidence about the concept. All of
    `prompts` when none fits or there is no tokenizer (nothing better to draw)."""
    if tokenizer is None:
        return list(prompts)
    tokens = Tokens(tokenizer)
    return [p for p in prompts if tokens.fits(p)] or list(prompts)


def named_surrogates(spec: ErasureSpec) -> set[str]:
    """The targets whose surrogate the request itself gave (not left empty, not the kind's neutral word)."""
    neutral = set(NEUTRAL_SURROGATE.values())
    return {c.target for c in spec.concepts if c.surrogate is not None and c.surrogate.strip() not in neutral}


def fit_request(spec: ErasureSpec, config: Any, vocabulary: Any,
                erased: Sequence[str] = ()) -> tuple[ErasureSpec, Any]:
    """The request in the model folder's phrasing (a folder that declares nothing: the request unchanged).

    - A concept the folder declares takes its declared kind.
    - A concept without a surrogate (or with the kind's generic neutral word, which the API records when none
      was given) gets the folder's default surrogate: a model that never saw the neutral word erases nothing
      when distilled towards it (testbed: UA 0.000 towards "object", 1.000 towards "square").
    - Forget prompts: the request's own, then the folder's declared contexts for the concept; unless the
      caller set `max_forget_prompts`, they are all the forget prompts (no generic templates are added).
    - Retain: the request's, else the folder's default retain set (up to the config's `max_retain_prompts`).
    - Neighbours (what `retain_neighbours` swaps in): the folder's other declared concepts of the kind.

    `erased`: concepts the model (a later version) has already lost: never a default surrogate — the model no
    longer draws them — but they stay in the default retain set, where matching the version keeps them erased.
    """
    from core.evaluation.vocabulary import DEFAULT_RETAIN_LIMIT, VocabularyError

    targets = [c.target for c in spec.concepts]
    concepts = []
    declared_any = False
    for c in spec.concepts:
        kind = vocabulary.kind_of(c.target) or c.kind
        surrogate = c.surrogate
        neutral = {NEUTRAL_SURROGATE[c.kind], NEUTRAL_SURROGATE[kind]}
        if surrogate is None or surrogate.strip() in neutral:
            try:
                try:
                    surrogate = vocabulary.surrogate_for(c.target, kind, [*targets, *erased]) or c.surrogate
                except VocabularyError:  # every other concept of the kind is gone already: the plain pick
                    surrogate = vocabulary.surrogate_for(c.target, kind, targets) or c.surrogate
            except VocabularyError as exc:
                raise ErasureInputError(str(exc)) from exc
        declared = vocabulary.training_prompts(kind, c.target)
        declared_any = declared_any or bool(declared)
        prompts = list(dict.fromkeys([*c.prompts, *declared]))[:32]
        neighbours = c.neighbours or [n for n in vocabulary.concepts.get(kind, []) if n not in targets]
        concepts.append(c.model_copy(update={"kind": kind, "surrogate": surrogate, "prompts": prompts,
                                             "neighbours": neighbours[:64]}))
    # The folder's default retain set, at least as long as the config's cap (which retain_prompts applies): a cap
    # raised above default_retain's own limit gets the further prompts.
    cap = getattr(config, "max_retain_prompts", 0)
    retain = list(spec.retain) or vocabulary.default_retain(targets, limit=max(DEFAULT_RETAIN_LIMIT, cap))
    spec = spec.model_copy(update={"concepts": concepts, "retain": retain})
    fields = type(config).model_fields
    if declared_any and "max_forget_prompts" in fields and "max_forget_prompts" not in config.model_fields_set:
        config = config.model_copy(update={"max_forget_prompts": max(len(c.prompts) for c in concepts)})
    return spec, config
