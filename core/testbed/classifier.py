"""The independent judge: a small two-head CNN (object head, style head) trained on rendered canvas images.

It never sees generated images while training, so it measures what the pipeline draws, not what it learned
to expect from the pipeline.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from safetensors.torch import load_file, save_file
from torch import nn

from core.testbed.canvas import OBJECTS, RESOLUTION, STYLES

ImagesLike = Sequence[Image.Image] | torch.Tensor | np.ndarray


class Classifier(nn.Module):
    """Two heads over one trunk. Inputs are images in [-1, 1] (N×3×H×W) or PIL images."""

    def __init__(
        self,
        objects: Sequence[str] = OBJECTS,
        styles: Sequence[str] = STYLES,
        width: int = 32,
        resolution: int = RESOLUTION,
    ) -> None:
        super().__init__()
        self.objects = tuple(objects)
        self.styles = tuple(styles)
        self.width = width
        self.resolution = resolution
        w = width

        def block(cin: int, cout: int) -> nn.Sequential:
            return nn.Sequential(
                nn.Conv2d(cin, cout, 3, padding=1),
                nn.BatchNorm2d(cout),
                nn.SiLU(),
                nn.Conv2d(cout, cout, 3, padding=1),
                nn.BatchNorm2d(cout),
                nn.SiLU(),
                nn.MaxPool2d(2),
            )

        self.trunk = nn.Sequential(block(3, w), block(w, 2 * w), block(2 * w, 4 * w))
        side = resolution // 8
        self.embed = nn.Sequential(nn.Flatten(), nn.Linear(4 * w * side * side, 128), nn.SiLU())
        self.object_head = nn.Linear(128, len(self.objects))
        self.style_head = nn.Linear(128, len(self.styles))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.embed(self.trunk(x))
        return self.object_head(h), self.style_head(h)

    def to_tensor(self, images: ImagesLike) -> torch.Tensor:
        """PIL list / uint8 N×H×W×3 array / float tensor in [-1,1] → float tensor N×3×H×W in [-1,1]."""
        if isinstance(images, torch.Tensor):
            x = images.float()
        else:
            if isinstance(images, np.ndarray):
                arr = images
            else:
                arr = np.stack(
                    [np.asarray(im.convert("RGB").resize((self.resolution, self.resolution))) for im in images]
                )
            x = torch.from_numpy(arr).permute(0, 3, 1, 2).float() / 127.5 - 1.0
        if x.shape[-1] != self.resolution:
            x = F.interpolate(x, size=(self.resolution, self.resolution), mode="bilinear", antialias=True)
        return x

    @torch.no_grad()
    def logits(self, images: ImagesLike, batch_size: int = 256) -> tuple[torch.Tensor, torch.Tensor]:
        self.eval()
        x = self.to_tensor(images)
        outs = [self(x[i : i + batch_size]) for i in range(0, len(x), batch_size)]
        return torch.cat([o[0] for o in outs]), torch.cat([o[1] for o in outs])

    def predict(self, images: ImagesLike) -> tuple[torch.Tensor, torch.Tensor]:
        """(object index, style index) per image."""
        lo, ls = self.logits(images)
        return lo.argmax(1), ls.argmax(1)

    @torch.no_grad()
    def features(self, images: ImagesLike, batch_size: int = 256) -> torch.Tensor:
        """The 128-d embedding the heads read: the feature space of the FID analogue."""
        self.eval()
        x = self.to_tensor(images)
        return torch.cat([self.embed(self.trunk(x[i : i + batch_size])) for i in range(0, len(x), batch_size)])

    def save(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        save_file({k: v.contiguous() for k, v in self.state_dict().items()}, str(directory / "model.safetensors"))
        config = {"objects": self.objects, "styles": self.styles, "width": self.width, "resolution": self.resolution}
        (directory / "config.json").write_text(json.dumps(config, indent=2) + "\n")

    @classmethod
    def load(cls, directory: Path) -> Classifier:
        directory = Path(directory)
        cfg_path = directory / "config.json"
        if not cfg_path.is_file():
            raise FileNotFoundError(f"no classifier at {directory} (config.json missing)")
        cfg = json.loads(cfg_path.read_text())
        model = cls(cfg["objects"], cfg["styles"], cfg["width"], cfg["resolution"])
        state = load_file(str(directory / "model.safetensors"))
        model.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in state.items()})
        model.eval()
        return model
