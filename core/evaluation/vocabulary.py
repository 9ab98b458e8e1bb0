"""What a model folder declares about its prompt language: `lethe.json` beside `model_index.json`.

A judge needs three things a model cannot tell by itself: the concepts worth telling apart (so retention can
be measured on concepts the erasure must leave alone), how to phrase a label for the judge, and held-out
phrasings that the erasure never trains on. The erasure needs the model's own phrasing too: the prompts it
was trained on (its forget contexts), what to keep (the default retain set) and what a concept should turn
into when a request names no surrogate. Any model folder may ship them:

    {"format": 1,
     "concepts": {"object": ["circle", ...], "style": ["solid", ...]},
     "label_templates": {"object": ["a {object} image in {style} style"], "style": [...]},
     "heldout_templates": {"object": ["the {style} {object} shape"], "style": [...]},
     "prompt_templates": {"object": ["a {object} image in {style} style", "a {style} {object}"], ...},
     "retain_templates": {"object": ["a {object} image in {style} style"], ...},
     "surrogate_rule": "next-of-kind",
     "default_surrogates": {"circle": "square"},
     "judge": {"classifier": "../classifier"}}

`prompt_templates` replace the generic forget templates for a concept of that kind; `retain_templates` filled
with every declared concept except the targets are the retain prompts of a request that gives none;
`default_surrogates` (or else `surrogate_rule`: `next-of-kind` = the next declared concept of the kind that is
not itself being erased, `neutral` = the kind's neutral word) pick the surrogate of a request that names none.

Templates name slots by kind (`{object}`, `{style}`, `{identity}`, `{custom}`). Filling one for a concept puts
the concept into its own kind's slot and every concept of another kind into that kind's slot, so a label is
scored against all its contexts. A folder without `lethe.json` gets `DEFAULT`, phrased for real SD models.
"""

from __future__ import annotations

import itertools
import json
import re
import string
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, Field, ValidationError

FILE = "lethe.json"
KINDS = ("object", "style", "identity", "custom")
# How many prompts a folder's default retain set holds unless a config's `max_retain_prompts` asks for more.
DEFAULT_RETAIN_LIMIT = 30


class VocabularyError(ValueError):
    """lethe.json is present but not usable."""


class Vocabulary(BaseModel):
    concepts: dict[str, list[str]] = Field(default_factory=dict)
    label_templates: dict[str, list[str]] = Field(default_factory=dict)
    heldout_templates: dict[str, list[str]] = Field(default_factory=dict)
    prompt_templates: dict[str, list[str]] = Field(default_factory=dict)
    retain_templates: dict[str, list[str]] = Field(default_factory=dict)
    default_surrogates: dict[str, str] = Field(default_factory=dict)
    surrogate_rule: Literal["neutral", "next-of-kind"] = "neutral"
    judge: dict[str, Any] = Field(default_factory=dict)
    source: str = "default"

    def kind_of(self, concept: str) -> str | None:
        """The kind the folder declares `concept` under, or None."""
        for kind, names in self.concepts.items():
            if concept in names:
                return kind
        return None

    def training_prompts(self, kind: str, concept: str) -> list[str]:
        """The declared forget contexts of `concept` (template by template, every context); [] if none."""
        templates = self.prompt_templates.get(kind)
        return self._fill(templates, kind, concept) if templates else []

    def default_retain(self, targets: list[str], limit: int = DEFAULT_RETAIN_LIMIT) -> list[str]:
        """The retain templates filled with every declared concept except the targets, spread so that a cap
        keeps every concept represented; [] when the folder declares none."""
        templates = list(dict.fromkeys(t for group in self.retain_templates.values() for t in group))
        out: list[str] = []
        for template in templates:
            slots = _slots(template)
            choices = [[c for c in self.concepts.get(s, []) if c not in targets] for s in slots]
            for combo in itertools.product(*choices):
                out.append(re.sub(r"\s+", " ", template.format(**dict(zip(slots, combo, strict=True)))).strip())
        out = list(dict.fromkeys(out))
        out.sort(key=lambda p: (spread_order(p), p))
        return out[:limit]

    def surrogate_for(self, target: str, kind: str, avoid: list[str]) -> str | None:
        """What `target` turns into when a request names nothing: the declared default, else the rule's pick;
        None = the kind's neutral word. A pick that is itself being erased moves on to the next concept."""
        names = self.concepts.get(kind, [])
        declared = self.default_surrogates.get(target)
        if declared is not None and declared not in avoid:
            return declared
        if self.surrogate_rule != "next-of-kind" and declared is None:
            return None
        if target not in names:
            return None
        start = names.index(target)
        for step in range(1, len(names)):
            candidate = names[(start + step) % len(names)]
            if candidate not in avoid:
                return candidate
        raise VocabularyError(f"every declared {kind} is being erased: no surrogate is left")

    def with_concepts(self, kind: str, names: list[str]) -> Vocabulary:
        """The same vocabulary with extra concepts of `kind` (request targets and surrogates)."""
        merged = list(dict.fromkeys([*self.concepts.get(kind, []), *names]))
        return self.model_copy(update={"concepts": {**self.concepts, kind: merged}})

    def label_prompts(self, kind: str, label: str) -> list[str]:
        """Every phrasing of `label` the judge scores (min over them: the label in its best context)."""
        return self._fill(self.label_templates.get(kind) or _DEFAULT_LABEL[kind], kind, label)

    def heldout_prompts(self, kind: str, concept: str, exclude: set[str] | None = None) -> list[str]:
        """Held-out prompts for `concept`, minus `exclude`, in an order whose every prefix spreads over the
        templates and over each slot's contexts alike (`_balanced`): a verification drawing a dozen images sees
        the concept in many contexts, not one context in every template."""
        exclude = exclude or set()
        filled = self._fill(self.heldout_templates.get(kind) or _DEFAULT_HELDOUT[kind], kind, concept, balance=True)
        return [p for p in filled if p not in exclude]

    def _fill(self, templates: list[str], kind: str, concept: str, balance: bool = False) -> list[str]:
        rows: list[tuple[str, tuple[tuple[str, str], ...]]] = []  # (prompt, what it is made of)
        for ti, template in enumerate(templates):
            slots = [s for s in _slots(template) if s != kind]
            choices = [self.concepts.get(s) or [""] for s in slots]
            for combo in itertools.product(*choices):
                values = dict(zip(slots, combo, strict=True))
                values[kind] = concept
                text = re.sub(r"\s+", " ", template.format(**values)).strip()
                rows.append((text, (("template", str(ti)), *zip(slots, combo, strict=True))))
        flat = _balanced(rows) if balance else [text for text, _ in rows]
        return list(dict.fromkeys(flat))


def _balanced(rows: list[tuple[str, tuple[tuple[str, str], ...]]]) -> list[str]:
    """The prompts reordered greedily: next comes the first one whose template and slot values have been used
    least so far. Any prefix then covers templates and contexts about evenly (3 templates × 6 contexts: the
    first 6 prompts hold every context once and every template twice)."""
    holders: dict[tuple[str, str], list[int]] = {}  # feature -> the prompts that have it
    for i, (_, features) in enumerate(rows):
        for feature in features:
            holders.setdefault(feature, []).append(i)
    score = np.zeros(len(rows))  # per prompt: how often its template and values were used so far
    ordered: list[str] = []
    for _ in rows:
        best = int(np.argmin(score))  # the first of the least used (taken ones sit at infinity)
        text, features = rows[best]
        ordered.append(text)
        for feature in features:
            score[holders[feature]] += 1
        score[best] = np.inf
    return ordered


_DEFAULT_LABEL: dict[str, list[str]] = {
    "object": ["a photo of a {object}"],
    "style": ["an image in {style} style"],
    "identity": ["a photo of {identity}"],
    "custom": ["{custom}"],
}
_DEFAULT_HELDOUT: dict[str, list[str]] = {
    "object": ["a picture of a {object} on a table", "a {object} seen from the side", "a small {object}, centered"],
    "style": ["a house painted in {style} style", "a bowl of fruit, {style} style", "a tree rendered in {style} style"],
    "identity": ["{identity} standing outdoors", "a candid picture of {identity}"],
    "custom": ["a picture of {custom}", "{custom}, high quality"],
}

# Concepts that a real SD model tells apart well: the retention set when a folder declares none.
DEFAULT = Vocabulary(
    concepts={
        "object": ["dog", "cat", "car", "tree", "house", "bird", "flower", "chair"],
        "style": ["watercolor", "oil painting", "pencil sketch", "pixel art", "photograph", "cartoon"],
    },
    label_templates=_DEFAULT_LABEL,
    heldout_templates=_DEFAULT_HELDOUT,
)


def spread_order(text: str) -> int:
    """A stable spread (not Python's salted hash) for interleaving prompts."""
    return sum((i + 1) * ord(c) for i, c in enumerate(text)) % 97


def _slots(template: str) -> list[str]:
    names = [name for _, name, _, _ in string.Formatter().parse(template) if name]
    unknown = sorted(set(names) - set(KINDS))
    if unknown:
        raise VocabularyError(f"template {template!r} has unknown slots {unknown}; slots are {', '.join(KINDS)}")
    return list(dict.fromkeys(names))


def vocabulary_path(model_dir: Path) -> Path | None:
    """lethe.json in the pipeline folder (or the folder above it, for a testbed-style layout)."""
    for d in (model_dir, model_dir / "pipeline", model_dir.parent):
        if (d / FILE).is_file():
            return d / FILE
    return None


def load_vocabulary(model_dir: Path | None) -> Vocabulary:
    """The folder's declared vocabulary, or DEFAULT. A broken lethe.json is an error, never ignored."""
    path = vocabulary_path(Path(model_dir)) if model_dir is not None else None
    if path is None:
        return DEFAULT
    try:
        raw = json.loads(path.read_text())
        vocab = Vocabulary.model_validate({k: v for k, v in raw.items() if k != "format"})
        for group in (vocab.label_templates, vocab.heldout_templates, vocab.prompt_templates,
                      vocab.retain_templates):
            for templates in group.values():
                for t in templates:
                    _slots(t)
    except (OSError, json.JSONDecodeError, ValidationError) as exc:
        raise VocabularyError(f"{FILE} in the model folder is not valid: {exc}") from exc
    return vocab.model_copy(update={"source": FILE, "judge": {**vocab.judge, "_dir": str(path.parent)}})
