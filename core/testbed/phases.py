"""The testbed's training phases before the UNet: the rendered dataset, the classifier (the judge), the VAE,
and the helpers the UNet phase shares (learning-rate schedule, EMA, latents)."""

from __future__ import annotations

import copy
import math

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from core.testbed.canvas import OBJECTS, STYLES, render
from core.testbed.classifier import Classifier
from core.testbed.model import build_vae
from core.testbed.profiles import Profile

HELDOUT_SEED_BASE = 1_000_000  # classifier/VAE held-out renders never overlap training seeds


def to_tensor(images: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(images).permute(0, 3, 1, 2).float() / 127.5 - 1.0


def render_set(per_pair: int, seed_base: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Renders (N×32×32×3 uint8), object indices, style indices for every pair × per_pair seeds."""
    imgs, objs, styles = [], [], []
    pairs = [(oi, si) for oi in range(len(OBJECTS)) for si in range(len(STYLES))]
    for oi, si in tqdm(pairs, desc="render", leave=False):
        for k in range(per_pair):
            imgs.append(np.asarray(render(OBJECTS[oi], STYLES[si], seed_base + k)))
            objs.append(oi)
            styles.append(si)
    return np.stack(imgs), np.array(objs), np.array(styles)


def training_pool(objs: np.ndarray, styles: np.ndarray, exclude: tuple[str, ...]) -> torch.Tensor | None:
    """Indices of the training images the UNet may see; None = all (keeps the RNG stream of a full build)."""
    if not exclude:
        return None
    keep = [OBJECTS[o] not in exclude and STYLES[s] not in exclude for o, s in zip(objs, styles, strict=True)]
    return torch.tensor(keep).nonzero().flatten()


def cosine_lr(step: int, total: int, warmup: int) -> float:
    if step < warmup:
        return (step + 1) / warmup
    return 0.5 * (1 + math.cos(math.pi * (step - warmup) / max(1, total - warmup))) * 0.95 + 0.05


def _augment(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Shifts, mild blur and noise: the judge should not depend on pixel-exact renders."""
    n = x.shape[0]
    shift = torch.randint(-2, 3, (2,), generator=gen).tolist()
    x = torch.roll(x, shifts=(shift[0], shift[1]), dims=(2, 3))
    blur_mask = (torch.rand(n, generator=gen) < 0.3).view(n, 1, 1, 1)
    kernel = torch.tensor([1.0, 2.0, 1.0])
    kernel = (kernel[:, None] * kernel[None, :]) / 16
    blurred = F.conv2d(F.pad(x, (1, 1, 1, 1), mode="replicate"), kernel.expand(3, 1, 3, 3), groups=3)
    x = torch.where(blur_mask, blurred, x)
    return x + torch.randn(x.shape, generator=gen) * 0.04


def train_classifier(
    p: Profile, x: torch.Tensor, yo: torch.Tensor, ys: torch.Tensor
) -> tuple[Classifier, dict[str, float]]:
    gen = torch.Generator().manual_seed(p.seed + 1)
    clf = Classifier(resolution=p.model.resolution)
    opt = torch.optim.AdamW(clf.parameters(), lr=p.classifier_lr, weight_decay=1e-4)
    clf.train()
    bar = tqdm(range(p.classifier_steps), desc="classifier", leave=False)
    for step in bar:
        for g in opt.param_groups:
            g["lr"] = p.classifier_lr * cosine_lr(step, p.classifier_steps, min(50, p.classifier_steps // 10 + 1))
        idx = torch.randint(0, len(x), (p.classifier_batch,), generator=gen)
        lo, ls = clf(_augment(x[idx], gen))
        loss = F.cross_entropy(lo, yo[idx]) + F.cross_entropy(ls, ys[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if step % 20 == 0:
            bar.set_postfix(loss=f"{loss.item():.3f}")
    clf.eval()
    return clf, {"final_loss": float(loss.item())}


def classifier_accuracy(clf: Classifier, x: torch.Tensor, yo: torch.Tensor, ys: torch.Tensor) -> dict[str, float]:
    po, ps = clf.predict(x)
    return {"object": float((po == yo).float().mean()), "style": float((ps == ys).float().mean())}


def train_vae(p: Profile, x: torch.Tensor) -> torch.nn.Module:
    gen = torch.Generator().manual_seed(p.seed + 2)
    vae = build_vae(p.model)
    opt = torch.optim.AdamW(vae.parameters(), lr=p.vae_lr, weight_decay=0.0)
    vae.train()
    bar = tqdm(range(p.vae_steps), desc="vae", leave=False)
    for step in bar:
        for g in opt.param_groups:
            g["lr"] = p.vae_lr * cosine_lr(step, p.vae_steps, min(50, p.vae_steps // 10 + 1))
        batch = x[torch.randint(0, len(x), (p.vae_batch,), generator=gen)]
        post = vae.encode(batch).latent_dist
        z = post.mean + post.std * torch.randn(post.mean.shape, generator=gen)
        rec = vae.decode(z).sample
        kl = post.kl().mean() / batch[0].numel()
        loss = F.mse_loss(rec, batch) + 0.5 * F.l1_loss(rec, batch) + p.vae_kl_weight * kl
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(vae.parameters(), 1.0)
        opt.step()
        if step % 20 == 0:
            bar.set_postfix(loss=f"{loss.item():.4f}")
    vae.eval()
    return vae


@torch.no_grad()
def encode_all(vae: torch.nn.Module, x: torch.Tensor, batch: int = 256) -> tuple[torch.Tensor, torch.Tensor]:
    means, stds = [], []
    for i in range(0, len(x), batch):
        post = vae.encode(x[i : i + batch]).latent_dist
        means.append(post.mean)
        stds.append(post.std)
    return torch.cat(means), torch.cat(stds)


@torch.no_grad()
def reconstruct(vae: torch.nn.Module, x: torch.Tensor, batch: int = 256) -> torch.Tensor:
    return torch.cat(
        [vae.decode(vae.encode(x[i : i + batch]).latent_dist.mean).sample for i in range(0, len(x), batch)]
    )


class Ema:
    def __init__(self, module: torch.nn.Module, decay: float) -> None:
        self.shadow = copy.deepcopy(module).eval().requires_grad_(False)
        self.decay = decay

    @torch.no_grad()
    def update(self, module: torch.nn.Module, step: int) -> None:
        d = min(self.decay, (1 + step) / (10 + step))
        for s, m in zip(self.shadow.parameters(), module.parameters(), strict=True):
            s.lerp_(m.detach(), 1 - d)

