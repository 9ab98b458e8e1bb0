"""What a model folder declares about its prompt language: `lethe.json` beside `model_index.json`.

A judge needs three things a model cannot tell by itself: the concepts worth telling apart (so retention can
be measured on concepts the erasure must leave alone), how to phrase a label for the judge, and held-out
phrasings that the erasure never trains on. Any model folder may ship them:

    {"format": 1,
     "concepts": {"object": ["circle", ...], "style": ["solid", ...]},
     "label_templates": {"object": ["a {object} image in {style} style"], "style": [...]},
     "heldout_templates": {"object": ["the {style} {object} shape"], "style": [...]},
     "judge": {"classifier": "../classifier"}}

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
from typing import Any

from pydantic import BaseModel, Field, ValidationError

FILE = "lethe.json"
KINDS = ("object", "style", "identity", "custom")


class VocabularyError(ValueError):
    """lethe.json is present but not usable."""


class Vocabulary(BaseModel):
    concepts: dict[str, list[str]] = Field(default_factory=dict)
    label_templates: dict[str, list[str]] = Field(default_factory=dict)
    heldout_templates: dict[str, list[str]] = Field(default_factory=dict)
    judge: dict[str, Any] = Field(default_factory=dict)
    source: str = "default"

    def with_concepts(self, kind: str, names: list[str]) -> Vocabulary:
        """The same vocabulary with extra concepts of `kind` (request targets and surrogates)."""
        merged = list(dict.fromkeys([*self.concepts.get(kind, []), *names]))
        return self.model_copy(update={"concepts": {**self.concepts, kind: merged}})

    def label_prompts(self, kind: str, label: str) -> list[str]:
        """Every phrasing of `label` the judge scores (min over them: the label in its best context)."""
        return self._fill(self.label_templates.get(kind) or _DEFAULT_LABEL[kind], kind, label)

    def heldout_prompts(self, kind: str, concept: str, exclude: set[str] | None = None) -> list[str]:
        """Held-out prompts for `concept`, round-robin over templates and contexts, minus `exclude`."""
        exclude = exclude or set()
        filled = self._fill(self.heldout_templates.get(kind) or _DEFAULT_HELDOUT[kind], kind, concept, interleave=True)
        return [p for p in filled if p not in exclude]

    def _fill(self, templates: list[str], kind: str, concept: str, interleave: bool = False) -> list[str]:
        per_template: list[list[str]] = []
        for template in templates:
            slots = [s for s in _slots(template) if s != kind]
            choices = [self.concepts.get(s) or [""] for s in slots]
            rows = []
            for combo in itertools.product(*choices):
                values = dict(zip(slots, combo, strict=True))
                values[kind] = concept
                rows.append(re.sub(r"\s+", " ", template.format(**values)).strip())
            per_template.append(rows)
        if interleave:  # template 1 context 1, template 2 context 1, ..., so a short list spans templates
            flat = [p for group in itertools.zip_longest(*per_template) for p in group if p]
        else:
            flat = [p for rows in per_template for p in rows]
        return list(dict.fromkeys(flat))


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
        for group in (vocab.label_templates, vocab.heldout_templates):
            for templates in group.values():
                for t in templates:
                    _slots(t)
    except (OSError, json.JSONDecodeError, ValidationError) as exc:
        raise VocabularyError(f"{FILE} in the model folder is not valid: {exc}") from exc
    return vocab.model_copy(update={"source": FILE, "judge": {**vocab.judge, "_dir": str(path.parent)}})
