"""Builds the testbed: dataset → classifier → VAE → UNet + text encoder → measurements → manifest.

Deterministic by seed (fixed step counts, seeded generators). Progress bars on every phase. A full build can
drop work-in-progress pipelines into a folder so others can start on a partly trained model. The recipe is a
`core.testbed.profiles.Profile`; the phases before the UNet live in `core.testbed.phases`, the stage cache in
`core.testbed.stage_cache`, the folder layout in `core.testbed.saving`.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from core.testbed.canvas import OBJECTS, STYLES, TRAIN_TEMPLATES
from core.testbed.model import (
    assemble_pipeline,
    build_text_encoder,
    build_tokenizer,
    build_unet,
    train_scheduler,
)
from core.testbed.phases import (
    HELDOUT_SEED_BASE,
    Ema,
    classifier_accuracy,
    cosine_lr,
    encode_all,
    reconstruct,
    render_set,
    to_tensor,
    train_classifier,
    train_vae,
    training_pool,
)
from core.testbed.profiles import Profile
from core.testbed.saving import MANIFEST, file_hashes, save_testbed
from core.testbed.stage_cache import StageCache

ProgressFn = Callable[[str, dict[str, Any]], None]


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
    held_np, held_o, held_s = render_set(p.heldout_per_pair, HELDOUT_SEED_BASE + p.seed * 10_000_000)
    x_train, x_held = to_tensor(train_np), to_tensor(held_np)
    yo, ys = torch.from_numpy(train_o), torch.from_numpy(train_s)
    hyo, hys = torch.from_numpy(held_o), torch.from_numpy(held_s)
    minutes["render"] = (time.perf_counter() - t0) / 60
    emit("rendered", train=len(x_train), heldout=len(x_held))

    stages = StageCache(stages_dir, p)
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
    pool = training_pool(train_o, train_s, p.exclude)

    params = [*unet.parameters(), *text_encoder.parameters()]
    opt = torch.optim.AdamW(params, lr=p.unet_lr, weight_decay=1e-2)
    ema_unet, ema_text = Ema(unet, p.ema_decay), Ema(text_encoder, p.ema_decay)
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
            g["lr"] = p.unet_lr * cosine_lr(step, p.unet_steps, p.unet_warmup)
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
    held_np, held_o, held_s = render_set(p.heldout_per_pair, HELDOUT_SEED_BASE + p.seed * 10_000_000)
    x_held, hyo, hys = to_tensor(held_np), torch.from_numpy(held_o), torch.from_numpy(held_s)
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
            "heldout_render_base": HELDOUT_SEED_BASE + p.seed * 10_000_000,
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

