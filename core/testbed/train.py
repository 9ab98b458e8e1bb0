"""Builds the testbed: dataset → classifier → VAE → UNet + text encoder → measurements → manifest.

Deterministic by seed (fixed step counts, seeded generators). Progress bars on every phase. A full build can
drop work-in-progress pipelines into a folder so others can start on a partly trained model.
"""

from __future__ import annotations

import copy
import hashlib
import json
import math
import shutil
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from core.filehash import file_sha256
from core.testbed.canvas import OBJECTS, STYLES, TRAIN_TEMPLATES, render, vocabulary_document
from core.testbed.classifier import Classifier
from core.testbed.model import (
    ModelConfig,
    assemble_pipeline,
    build_text_encoder,
    build_tokenizer,
    build_unet,
    build_vae,
    train_scheduler,
)

MANIFEST = "manifest.json"
_HELDOUT_SEED_BASE = 1_000_000  # classifier/VAE held-out renders never overlap training seeds


@dataclass(frozen=True)
class Profile:
    """Everything that decides a build. Stored in the manifest."""

    name: str
    seed: int = 0
    images_per_pair: int = 400
    heldout_per_pair: int = 40
    classifier_steps: int = 300
    classifier_batch: int = 128
    classifier_lr: float = 2e-3
    vae_steps: int = 1200
    vae_batch: int = 64
    vae_lr: float = 1e-3
    vae_kl_weight: float = 1e-6
    unet_steps: int = 2500
    unet_batch: int = 128
    unet_lr: float = 1e-3
    unet_warmup: int = 200
    uncond_prob: float = 0.12  # classifier-free guidance: share of steps trained on the empty prompt
    ema_decay: float = 0.999
    eval_seeds: int = 8
    eval_steps: int = 20
    guidance_scales: tuple[float, ...] = (3.0, 5.0, 7.0)
    # One thread: on a shared 2-core box a 2-thread job ran ~9x slower per step than a 1-thread one once other
    # processes competed (OpenMP barriers wait on a descheduled thread). Measured 2026-11-29.
    threads: int = 1
    save_fp16: bool = True
    # Canvas concepts (objects or styles) whose images the UNet never sees: a retrained-from-scratch reference,
    # the gold standard an erasure of those concepts is judged against.
    exclude: tuple[str, ...] = ()
    model: ModelConfig = field(default_factory=ModelConfig)

    def __post_init__(self) -> None:
        unknown = sorted(set(self.exclude) - set(OBJECTS) - set(STYLES))
        if unknown:
            raise ValueError(f"exclude takes canvas concepts ({', '.join(OBJECTS + STYLES)}), not {', '.join(unknown)}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


PROFILES: dict[str, Profile] = {
    "full": Profile(name="full", model=ModelConfig(vae_channels=(16, 32, 64), unet_channels=(48, 96, 96))),
    # CI: exercises every phase end to end in well under a minute; the result is not expected to draw well.
    "tiny": Profile(
        name="tiny",
        images_per_pair=8,
        heldout_per_pair=4,
        classifier_steps=30,
        classifier_batch=64,
        vae_steps=20,
        vae_batch=32,
        unet_steps=30,
        unet_batch=32,
        unet_warmup=5,
        eval_seeds=1,
        eval_steps=4,
        guidance_scales=(5.0,),
        save_fp16=False,
        model=ModelConfig(vae_channels=(16, 16, 16), unet_channels=(16, 32), text_width=32),
    ),
    # A second testbed by another recipe, for reporting defaults on a model they were never tuned on: another
    # seed, a smaller sub-word vocabulary (square, triangle, star, solid, striped and "style" split into pieces;
    # every training prompt still fits the 16-token context), narrower UNet and VAE, and far less training, so
    # that its prompt adherence is imperfect like a real model's.
    "subword": Profile(
        name="subword",
        seed=7,
        images_per_pair=150,
        heldout_per_pair=20,
        classifier_steps=200,
        vae_steps=500,
        unet_steps=975,
        unet_batch=64,
        unet_warmup=85,
        guidance_scales=(3.0, 5.0),
        model=ModelConfig(
            vae_channels=(16, 32, 32), unet_channels=(32, 64, 64), text_width=48, tokenizer_merges=130
        ),
    ),
}

ProgressFn = Callable[[str, dict[str, Any]], None]


def _to_tensor(images: np.ndarray) -> torch.Tensor:
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


def _training_pool(objs: np.ndarray, styles: np.ndarray, exclude: tuple[str, ...]) -> torch.Tensor | None:
    """Indices of the training images the UNet may see; None = all (keeps the RNG stream of a full build)."""
    if not exclude:
        return None
    keep = [OBJECTS[o] not in exclude and STYLES[s] not in exclude for o, s in zip(objs, styles, strict=True)]
    return torch.tensor(keep).nonzero().flatten()


def _cosine_lr(step: int, total: int, warmup: int) -> float:
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
            g["lr"] = p.classifier_lr * _cosine_lr(step, p.classifier_steps, min(50, p.classifier_steps // 10 + 1))
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
            g["lr"] = p.vae_lr * _cosine_lr(step, p.vae_steps, min(50, p.vae_steps // 10 + 1))
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


class _Ema:
    def __init__(self, module: torch.nn.Module, decay: float) -> None:
        self.shadow = copy.deepcopy(module).eval().requires_grad_(False)
        self.decay = decay

    @torch.no_grad()
    def update(self, module: torch.nn.Module, step: int) -> None:
        d = min(self.decay, (1 + step) / (10 + step))
        for s, m in zip(self.shadow.parameters(), module.parameters(), strict=True):
            s.lerp_(m.detach(), 1 - d)


def file_hashes(root: Path) -> dict[str, str]:
    return {
        str(f.relative_to(root)): file_sha256(f) for f in sorted(root.rglob("*")) if f.is_file() and f.name != MANIFEST
    }


def save_testbed(
    pipe: Any, clf: Classifier, out: Path, fp16: bool, extra_manifest: dict[str, Any] | None = None
) -> None:
    """Write pipeline/ and classifier/ (and a manifest when given) into `out`, replacing what was there."""
    tmp = out.with_name(out.name + ".tmp")
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    if fp16:
        # UNet and VAE halve on disk; stock diffusers loads them back as float32. The text encoder stays
        # float32: transformers keeps a saved dtype, and float16 text beside a float32 UNet fails on a CPU.
        pipe = copy.deepcopy(pipe).to(torch.float16)
        pipe.text_encoder.to(torch.float32)
    pipe.save_pretrained(tmp / "pipeline", safe_serialization=True)
    clf.save(tmp / "classifier")
    (tmp / "pipeline" / "lethe.json").write_text(json.dumps(vocabulary_document(), indent=2) + "\n")
    if fp16:
        # Halve the classifier file too; it is upcast on load.
        from safetensors.torch import load_file, save_file

        f = tmp / "classifier" / "model.safetensors"
        save_file({k: v.half() if v.is_floating_point() else v for k, v in load_file(str(f)).items()}, str(f))
    for f in tmp.rglob("*"):
        f.chmod(0o755 if f.is_dir() else 0o644)  # safetensors writes 0600
    if extra_manifest is not None:
        manifest = {**extra_manifest, "files": file_hashes(tmp)}
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
    if out.exists():
        shutil.rmtree(out)
    tmp.rename(out)


class _Stages:
    """Finished build stages kept on disk, keyed by the settings that decide them."""

    def __init__(self, root: Path | None, p: Profile) -> None:
        self.root = root
        self.keys = _stage_keys(p.to_dict())
        if root is not None:
            root.mkdir(parents=True, exist_ok=True)
        self.index_path = root / "stages.json" if root is not None else None
        self.index: dict[str, Any] = (
            json.loads(self.index_path.read_text()) if self.index_path and self.index_path.is_file() else {}
        )

    def _valid(self, stage: str) -> bool:
        return self.root is not None and self.index.get(stage, {}).get("key") == self.keys[stage]

    def _record(self, stage: str, minutes: float, **extra: Any) -> None:
        if self.index_path is None:
            return
        self.index[stage] = {"key": self.keys[stage], "minutes": minutes, **extra}
        self.index_path.write_text(json.dumps(self.index, indent=2) + "\n")

    def minutes(self, stage: str) -> float:
        return float(self.index[stage]["minutes"])

    def load_classifier(self) -> Classifier | None:
        return Classifier.load(self.root / "classifier") if self._valid("classifier") and self.root else None

    def save_classifier(self, clf: Classifier, minutes: float) -> None:
        if self.root is not None:
            clf.save(self.root / "classifier")
            self._record("classifier", minutes)

    def load_vae(self) -> torch.nn.Module | None:
        if not self._valid("vae") or self.root is None:
            return None
        from diffusers import AutoencoderKL

        return AutoencoderKL.from_pretrained(str(self.root / "vae")).eval()

    def save_vae(self, vae: torch.nn.Module, minutes: float) -> None:
        if self.root is not None:
            vae.save_pretrained(str(self.root / "vae"))
            self._record("vae", minutes)

    def load_unet(
        self, unet: Any, text: Any, ema_u: _Ema, ema_t: _Ema, opt: Any, gen: torch.Generator
    ) -> tuple[int, float]:
        if not self._valid("unet") or self.root is None:
            return 0, 0.0
        state = torch.load(self.root / "unet_checkpoint.pt", weights_only=False)
        unet.load_state_dict(state["unet"])
        text.load_state_dict(state["text"])
        ema_u.shadow.load_state_dict(state["ema_unet"])
        ema_t.shadow.load_state_dict(state["ema_text"])
        opt.load_state_dict(state["opt"])
        gen.set_state(state["gen"])
        return int(state["step"]), float(self.index["unet"]["minutes"])

    def save_unet(
        self, step: int, unet: Any, text: Any, ema_u: _Ema, ema_t: _Ema, opt: Any, gen: torch.Generator, minutes: float
    ) -> None:
        if self.root is None:
            return
        state = {
            "step": step,
            "unet": unet.state_dict(),
            "text": text.state_dict(),
            "ema_unet": ema_u.shadow.state_dict(),
            "ema_text": ema_t.shadow.state_dict(),
            "opt": opt.state_dict(),
            "gen": gen.get_state(),
        }
        tmp = self.root / "unet_checkpoint.pt.tmp"
        torch.save(state, tmp)
        tmp.rename(self.root / "unet_checkpoint.pt")
        self._record("unet", minutes, step=step)


def _stage_keys(d: dict[str, Any]) -> dict[str, str]:
    """Each stage's key from a profile as a dict (a Profile's, or the one a testbed's manifest records)."""
    data = {k: d[k] for k in ("seed", "images_per_pair")}
    keys = {
        "classifier": _key(data, _pick(d, "classifier_"), d["model"]["resolution"]),
        "vae": _key(
            data, _pick(d, "vae_"), {k: d["model"][k] for k in ("resolution", "vae_channels", "latent_channels")}
        ),
    }
    # A default tokenizer is left out, so the keys of builds recorded before the field existed stay valid.
    model = {k: v for k, v in d["model"].items() if not (k == "tokenizer_merges" and v is None)}
    unet_parts = [keys["vae"], _pick(d, "unet_"), d["uncond_prob"], d["ema_decay"], model]
    if d.get("exclude"):  # appended only when set, so the keys of existing full builds stay valid
        unet_parts.append(sorted(d["exclude"]))
    keys["unet"] = _key(*unet_parts)
    return keys


def seed_stages(stages_dir: Path, testbed: Path, p: Profile) -> list[str]:
    """Put a finished testbed's classifier and VAE into the stage cache when its build settings for those
    stages are `p`'s, so a variant build (e.g. `exclude`) trains only the UNet and shares the rest exactly.
    Returns the stages seeded."""
    manifest = json.loads((testbed / MANIFEST).read_text())
    theirs = _stage_keys(manifest["profile"])
    stages = _Stages(stages_dir, p)
    seeded = []
    for stage, source in (("classifier", testbed / "classifier"), ("vae", testbed / "pipeline" / "vae")):
        if theirs[stage] != stages.keys[stage]:
            continue
        shutil.copytree(source, stages_dir / stage, dirs_exist_ok=True)
        stages._record(stage, float(manifest.get("training_minutes", {}).get(stage, 0.0)))
        seeded.append(stage)
    return seeded


def _pick(d: dict[str, Any], prefix: str) -> dict[str, Any]:
    return {k: v for k, v in d.items() if k.startswith(prefix)}


def _key(*parts: Any) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:16]


def build(
    out: Path,
    profile: Profile,
    wip_dir: Path | None = None,
    wip_every_s: float = 600.0,
    on_event: ProgressFn | None = None,
    stages_dir: Path | None = None,
) -> dict[str, Any]:
    """Train and measure a testbed into `out` (pipeline/, classifier/, manifest.json). Returns the manifest.

    With `stages_dir`, finished stages (classifier, VAE) are kept there and reused by a later build whose
    settings for that stage are the same, and the UNet phase checkpoints there at every WIP save and resumes.
    """
    from core.evaluation.adherence import prompt_adherence

    def emit(event: str, **data: Any) -> None:
        if on_event is not None:
            on_event(event, data)

    torch.set_flush_denormal(True)
    torch.set_num_threads(profile.threads)
    torch.manual_seed(profile.seed)
    p = profile
    minutes: dict[str, float] = {}
    t_all = time.perf_counter()
    reused: list[str] = []

    t0 = time.perf_counter()
    train_np, train_o, train_s = render_set(p.images_per_pair, p.seed * 10_000_000)
    held_np, held_o, held_s = render_set(p.heldout_per_pair, _HELDOUT_SEED_BASE + p.seed * 10_000_000)
    x_train, x_held = _to_tensor(train_np), _to_tensor(held_np)
    yo, ys = torch.from_numpy(train_o), torch.from_numpy(train_s)
    hyo, hys = torch.from_numpy(held_o), torch.from_numpy(held_s)
    minutes["render"] = (time.perf_counter() - t0) / 60
    emit("rendered", train=len(x_train), heldout=len(x_held))

    stages = _Stages(stages_dir, p)
    t0 = time.perf_counter()
    clf = stages.load_classifier()
    if clf is None:
        clf, _ = train_classifier(p, x_train, yo, ys)
        minutes["classifier"] = (time.perf_counter() - t0) / 60
        stages.save_classifier(clf, minutes["classifier"])
    else:
        minutes["classifier"] = stages.minutes("classifier")
        reused.append("classifier")
    clf_acc = classifier_accuracy(clf, x_held, hyo, hys)
    emit("classifier", **clf_acc)

    t0 = time.perf_counter()
    vae = stages.load_vae()
    if vae is None:
        vae = train_vae(p, x_train)
        minutes["vae"] = (time.perf_counter() - t0) / 60
        stages.save_vae(vae, minutes["vae"])
    else:
        minutes["vae"] = stages.minutes("vae")
        reused.append("vae")
    vae_acc = classifier_accuracy(clf, reconstruct(vae, x_held), hyo, hys)
    vae_mse = float(F.mse_loss(reconstruct(vae, x_held), x_held))
    emit("vae", reconstruction_mse=vae_mse, **vae_acc)

    lat_mean, lat_std = encode_all(vae, x_train)
    scaling = float(1.0 / lat_mean.std())
    vae.register_to_config(scaling_factor=scaling)
    vae.requires_grad_(False)

    tokenizer = build_tokenizer(p.model.max_tokens, p.model.tokenizer_merges)
    text_encoder = build_text_encoder(tokenizer, p.model)
    unet = build_unet(p.model)
    sched = train_scheduler(p.model)
    # Every prompt the UNet ever sees, tokenized once: [pair][template], plus the empty prompt for CFG.
    n_t = len(TRAIN_TEMPLATES)
    texts = [
        t.format(object=OBJECTS[oi], style=STYLES[si])
        for oi in range(len(OBJECTS))
        for si in range(len(STYLES))
        for t in TRAIN_TEMPLATES
    ]
    texts.append("")
    ids = tokenizer(
        texts, padding="max_length", max_length=tokenizer.model_max_length, truncation=True, return_tensors="pt"
    ).input_ids
    empty_id = len(texts) - 1
    pair_index = torch.from_numpy(train_o * len(STYLES) + train_s)
    pool = _training_pool(train_o, train_s, p.exclude)

    params = [*unet.parameters(), *text_encoder.parameters()]
    opt = torch.optim.AdamW(params, lr=p.unet_lr, weight_decay=1e-2)
    ema_unet, ema_text = _Ema(unet, p.ema_decay), _Ema(text_encoder, p.ema_decay)
    alphas = sched.alphas_cumprod
    gen = torch.Generator().manual_seed(p.seed + 3)
    unet.train()
    text_encoder.train()

    def ema_pipeline() -> Any:
        return assemble_pipeline(vae, ema_text.shadow, tokenizer, ema_unet.shadow, p.model)

    start_step, prior_minutes = stages.load_unet(unet, text_encoder, ema_unet, ema_text, opt, gen)
    if start_step:
        emit("resumed", step=start_step)
        reused.append(f"unet@{start_step}")
    t0 = time.perf_counter()
    last_wip = time.perf_counter()
    bar = tqdm(range(start_step, p.unet_steps), desc="unet+text", leave=False, initial=start_step, total=p.unet_steps)
    for step in bar:
        for g in opt.param_groups:
            g["lr"] = p.unet_lr * _cosine_lr(step, p.unet_steps, p.unet_warmup)
        if pool is None:
            idx = torch.randint(0, len(lat_mean), (p.unet_batch,), generator=gen)
        else:
            idx = pool[torch.randint(0, len(pool), (p.unet_batch,), generator=gen)]
        z0 = (lat_mean[idx] + lat_std[idx] * torch.randn(lat_mean[idx].shape, generator=gen)) * scaling
        tmpl = torch.randint(0, n_t, (p.unet_batch,), generator=gen)
        text_idx = pair_index[idx] * n_t + tmpl
        text_idx = torch.where(torch.rand(p.unet_batch, generator=gen) < p.uncond_prob, empty_id, text_idx)
        cond = text_encoder(ids[text_idx])[0]
        t = torch.randint(0, sched.config.num_train_timesteps, (p.unet_batch,), generator=gen)
        noise = torch.randn(z0.shape, generator=gen)
        a = alphas[t].view(-1, 1, 1, 1)
        zt = a.sqrt() * z0 + (1 - a).sqrt() * noise
        loss = F.mse_loss(unet(zt, t, cond).sample, noise)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        ema_unet.update(unet, step)
        ema_text.update(text_encoder, step)
        if step % 10 == 0:
            bar.set_postfix(loss=f"{loss.item():.4f}")
        if (wip_dir is not None or stages_dir is not None) and time.perf_counter() - last_wip > wip_every_s:
            elapsed = prior_minutes + (time.perf_counter() - t0) / 60
            stages.save_unet(step + 1, unet, text_encoder, ema_unet, ema_text, opt, gen, elapsed)
            if wip_dir is not None:
                pipe = ema_pipeline()
                quick = prompt_adherence(pipe, clf, seeds=range(4), steps=p.eval_steps, guidance_scale=5.0)
                wip_manifest = {
                    "wip": True,
                    "step": step + 1,
                    "objects": list(OBJECTS),
                    "styles": list(STYLES),
                    "sampling": {"steps": p.eval_steps, "guidance_scale": 5.0, "scheduler": "DDIM"},
                    "adherence_4_seeds": quick.model_dump(),
                }
                save_testbed(pipe, clf, wip_dir, fp16=False, extra_manifest=wip_manifest)
                emit(
                    "wip",
                    step=step + 1,
                    path=str(wip_dir),
                    object=quick.object_accuracy,
                    style=quick.style_accuracy,
                    both=quick.both_accuracy,
                )
            last_wip = time.perf_counter()
    minutes["unet"] = prior_minutes + (time.perf_counter() - t0) / 60
    pipe = ema_pipeline()

    # Save, then measure the files as shipped (fp16 reloaded as fp32): the numbers describe what others load.
    save_testbed(pipe, clf, out, fp16=p.save_fp16)
    wall = (time.perf_counter() - t_all) / 60
    extra = {"stages_reused": reused, "build_wall_minutes": round(wall, 2)}
    return measure(out, p, minutes, on_event=on_event, extra=extra)


def measure(
    out: Path,
    p: Profile,
    minutes: dict[str, float],
    on_event: ProgressFn | None = None,
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Measure the testbed saved in `out` (classifier, VAE, adherence over a guidance sweep, sampling cost) and
    write its manifest. Everything is measured on the files as saved."""
    from core.evaluation.adherence import prompt_adherence
    from core.evaluation.sampling import generate
    from core.testbed.loading import load_classifier, load_pipeline

    def emit(event: str, **data: Any) -> None:
        if on_event is not None:
            on_event(event, data)

    pipe = load_pipeline(out / "pipeline")
    clf = load_classifier(out / "classifier")
    held_np, held_o, held_s = render_set(p.heldout_per_pair, _HELDOUT_SEED_BASE + p.seed * 10_000_000)
    x_held, hyo, hys = _to_tensor(held_np), torch.from_numpy(held_o), torch.from_numpy(held_s)
    clf_acc = classifier_accuracy(clf, x_held, hyo, hys)
    with torch.no_grad():
        rec = reconstruct(pipe.vae, x_held)
    vae_acc = classifier_accuracy(clf, rec, hyo, hys)
    vae_mse = float(F.mse_loss(rec, x_held))

    t0 = time.perf_counter()
    sweep: dict[str, Any] = {}
    best_g, best = None, None
    seeds = range(p.eval_seeds)
    for g in p.guidance_scales:
        ad = prompt_adherence(pipe, clf, seeds=seeds, steps=p.eval_steps, guidance_scale=g)
        sweep[str(g)] = {"object": ad.object_accuracy, "style": ad.style_accuracy, "both": ad.both_accuracy}
        emit("guidance", guidance=g, object=ad.object_accuracy, style=ad.style_accuracy, both=ad.both_accuracy)
        score = (ad.meets_bar(), min(ad.object_accuracy, ad.style_accuracy), ad.both_accuracy)
        if best is None or score > best[0]:
            best_g, best = g, (score, ad)
    assert best is not None and best_g is not None
    adherence = best[1]

    # Best of three: the machine is shared, and the bar is about the model's cost, not the neighbours' load.
    timings = []
    for _ in range(3):
        ts = time.perf_counter()
        generate(
            pipe, ["a circle image in solid style"] * 64, list(range(64)), steps=p.eval_steps, guidance_scale=best_g
        )
        timings.append(time.perf_counter() - ts)
    sample_64 = min(timings)
    minutes = dict(minutes)
    minutes["measure"] = (time.perf_counter() - t0) / 60
    # Phases reused from the stage cache carry the minutes they took when trained, so the total is their sum.
    minutes["total"] = sum(v for k, v in minutes.items() if k != "total")

    manifest = {
        "format": 1,
        "profile": p.to_dict(),
        "objects": list(OBJECTS),
        "styles": list(STYLES),
        "seeds": {
            "build": p.seed,
            "train_render_base": p.seed * 10_000_000,
            "heldout_render_base": _HELDOUT_SEED_BASE + p.seed * 10_000_000,
            "eval": list(seeds),
        },
        "sampling": {"steps": p.eval_steps, "guidance_scale": best_g, "scheduler": "DDIM"},
        "training_minutes": {k: round(v, 2) for k, v in minutes.items()},
        "accuracies": {
            "classifier_heldout": clf_acc,
            "vae_reconstruction": {**vae_acc, "mse": vae_mse},
            "adherence": adherence.model_dump(),
            "guidance_sweep": sweep,
            "meets_bar": adherence.meets_bar() and min(clf_acc.values()) >= 0.97,
        },
        "sampling_seconds_64": round(sample_64, 2),
        "vae_scaling_factor": float(pipe.vae.config.scaling_factor),
        "torch_threads": p.threads,
        **(extra or {}),
    }
    manifest["files"] = file_hashes(out)
    (out / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
    emit("done", path=str(out), meets_bar=manifest["accuracies"]["meets_bar"])
    return manifest


def profile_named(name: str, **overrides: Any) -> Profile:
    if name not in PROFILES:
        raise ValueError(f"unknown profile {name!r}; choose from {', '.join(PROFILES)}")
    return replace(PROFILES[name], **overrides) if overrides else PROFILES[name]
