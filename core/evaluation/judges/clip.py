"""A CLIP model folder the operator installs (`LETHE_CLIP_JUDGE_PATH`) as a zero-shot judge.

Each label is phrased with the model's label templates; an image takes the label whose best phrasing has
the highest image-text cosine similarity. The folder is a transformers CLIPModel with its tokenizer and
image processor (`save_pretrained` of each); nothing is downloaded.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from core.evaluation.judges.base import Judge, JudgeUnavailable
from core.evaluation.vocabulary import Vocabulary
from core.filehash import file_sha256


class ClipJudge(Judge):
    name = "clip"

    def __init__(self, directory: Path, vocabulary: Vocabulary) -> None:
        from transformers import CLIPImageProcessor, CLIPModel, CLIPTokenizer

        if not (directory / "config.json").is_file():
            raise JudgeUnavailable("the configured CLIP judge folder has no config.json")
        try:
            self.model = CLIPModel.from_pretrained(str(directory), local_files_only=True).eval()
            self.tokenizer = CLIPTokenizer.from_pretrained(str(directory), local_files_only=True)
            self.processor = CLIPImageProcessor.from_pretrained(str(directory), local_files_only=True)
        except (OSError, ValueError) as exc:
            raise JudgeUnavailable(f"the configured CLIP judge could not be loaded: {exc}") from exc
        self.vocabulary = vocabulary
        digest = hashlib.sha256()
        for f in sorted(directory.glob("*.safetensors")) + sorted(directory.glob("*.bin")):
            digest.update(bytes.fromhex(file_sha256(f)))  # a digest of the files' digests
        self.version = digest.hexdigest()[:16]

    @torch.no_grad()
    def classify(self, images: np.ndarray, kind: str, labels: Sequence[str]) -> list[str]:
        if len(images) == 0:
            return []
        prompts, owner = [], []
        for li, label in enumerate(labels):
            for p in self.vocabulary.label_prompts(kind, label):
                prompts.append(p)
                owner.append(li)
        max_len = int(self.model.config.text_config.max_position_embeddings)
        text = self.tokenizer(prompts, padding=True, truncation=True, max_length=max_len, return_tensors="pt")
        t = self.model.get_text_features(**text)
        pixel = self.processor(images=list(images), return_tensors="pt")["pixel_values"]
        v = self.model.get_image_features(pixel_values=pixel)
        t = getattr(t, "pooler_output", t)
        v = getattr(v, "pooler_output", v)
        sims = torch.nn.functional.normalize(v, dim=-1) @ torch.nn.functional.normalize(t, dim=-1).T
        owner_t = torch.tensor(owner)
        scores = torch.stack([sims[:, owner_t == li].max(1).values for li in range(len(labels))], dim=1)
        return [labels[int(i)] for i in scores.argmax(1)]
