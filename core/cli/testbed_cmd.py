"""`lethe testbed ...`: build, locate, list and evaluate the mini-canvas testbed."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import typer

app = typer.Typer(help="The mini-canvas testbed: a tiny SD pipeline that knows its concepts, and its evaluator.")


def _fail(message: str) -> None:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code=2)


@app.command("build")
def build_cmd(
    out: Path | None = typer.Option(None, "--out", help="Output directory. Default: $LETHE_DATA_DIR/testbed."),
    profile: str = typer.Option(
        "full", "--profile",
        help="full (the shipped recipe, ~1 h on 2 cores), subword (the second testbed: another seed, tokenizer "
        "and UNet, less training; ~20 min on one core), dev (a third recipe, for developing the escalation "
        "without tuning on the second) or tiny (CI).",
    ),
    seed: int | None = typer.Option(
        None, "--seed", help="Build seed (data, initialisation, batches). Default: the profile's (full: 0)."
    ),
    wip_dir: Path | None = typer.Option(
        None, "--wip-dir", help="Write work-in-progress pipelines here every ~10 minutes while the UNet trains."
    ),
    stages: Path | None = typer.Option(
        None, "--stages", help="Keep finished stages (classifier, VAE, UNet checkpoints) here; a rerun resumes."
    ),
    stages_from: Path | None = typer.Option(
        None, "--stages-from",
        help="Seed --stages with this finished testbed's classifier and VAE when its build settings for them "
        "match (e.g. the shipped testbed: then an --exclude build trains only the UNet, ~20 min).",
    ),
    exclude: list[str] = typer.Option(
        [], "--exclude",
        help="Leave this canvas concept out of the UNet's training data (repeatable): a retrained-from-scratch "
        "reference to judge an erasure of it against. Classifier and VAE still see everything.",
    ),
) -> None:
    """Train dataset → classifier → VAE → UNet + text encoder, measure it, and write pipeline/, classifier/,
    manifest.json."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from core.testbed.paths import built_dir, folder_name
    from core.testbed.profiles import PROFILES, profile_named
    from core.testbed.train import build

    if profile not in PROFILES:
        _fail(f"unknown profile {profile!r}; choose from {', '.join(PROFILES)}")
    target = out if out is not None else built_dir().parent / folder_name(profile)

    def on_event(event: str, data: dict[str, Any]) -> None:
        typer.echo(f"{event}: {json.dumps(data)}", err=True)

    try:
        overrides: dict[str, Any] = {"exclude": tuple(exclude)}
        if seed is not None:
            overrides["seed"] = seed
        chosen = profile_named(profile, **overrides)
    except ValueError as exc:
        _fail(f"--{exc}")
    if stages_from is not None:
        from core.testbed.stage_cache import seed_stages

        if stages is None:
            _fail("--stages-from needs --stages (the cache it fills)")
        if not (stages_from / "manifest.json").is_file():
            _fail(f"no testbed manifest at {stages_from}")
        seeded = seed_stages(stages, stages_from, chosen)
        typer.echo(f"stages seeded from {stages_from}: {', '.join(seeded) or 'none (build settings differ)'}", err=True)
    manifest = build(target, chosen, wip_dir=wip_dir, on_event=on_event, stages_dir=stages)
    acc = manifest["accuracies"]
    ad = acc["adherence"]
    typer.echo(
        f"testbed written to {target}\n"
        f"classifier held-out: object {acc['classifier_heldout']['object']:.3f} style "
        f"{acc['classifier_heldout']['style']:.3f}\n"
        f"pipeline adherence: object {ad['object_accuracy']:.3f} style {ad['style_accuracy']:.3f} "
        f"(guidance {manifest['sampling']['guidance_scale']}, {manifest['sampling']['steps']} steps)\n"
        f"meets quality bar: {acc['meets_bar']}"
    )


@app.command("path")
def path_cmd(
    name: str | None = typer.Option(
        None, "--name",
        help="Which testbed: full (the first, default) or a profile's: subword (the second), dev (the third).",
    ),
) -> None:
    """Print the directory of a testbed (pipeline/, classifier/, manifest.json)."""
    from core.testbed.paths import named_testbed_dir

    try:
        typer.echo(str(named_testbed_dir(name)))
    except FileNotFoundError as exc:
        _fail(str(exc))


@app.command("concepts")
def concepts_cmd(as_json: bool = typer.Option(False, "--json", help="Print one JSON object.")) -> None:
    """List the testbed's objects and styles."""
    from core.testbed.canvas import OBJECTS, STYLES

    if as_json:
        typer.echo(json.dumps({"objects": list(OBJECTS), "styles": list(STYLES)}))
    else:
        typer.echo(f"objects: {', '.join(OBJECTS)}\nstyles:  {', '.join(STYLES)}")


@app.command("eval")
def eval_cmd(
    model: Path = typer.Option(..., "--model", help="Pipeline directory (model_index.json) or a testbed directory."),
    adapter: Path | None = typer.Option(None, "--adapter", help="A diffusers LoRA directory to load onto the model."),
    forget: list[str] = typer.Option([], "--forget", help="An erased concept (object or style); repeatable."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object on stdout."),
    seeds: int = typer.Option(8, "--seeds", min=1, help="Seeds per object × style prompt."),
    steps: int | None = typer.Option(None, "--steps", min=1, help="DDIM steps. Default: the --testbed manifest's."),
    guidance: float | None = typer.Option(None, "--guidance",
                                          help="Guidance scale. Default: the --testbed manifest's."),
    attack: bool = typer.Option(True, "--attack/--no-attack", help="Run the robustness probe per target."),
    attack_budget: int = typer.Option(30, "--attack-budget", min=1, help="Gradient steps of the soft-prompt search."),
    testbed: str | None = typer.Option(
        None, "--testbed",
        help="The testbed whose classifier scores the images, whose manifest gives the default steps and guidance "
             "and whose pipeline is the base of IRA/CRA rel: a name (full, subword, dev) or a built testbed's "
             "folder. Default: the testbed --model belongs to (the folder or its parent holds manifest.json), "
             "else the first testbed."),
) -> None:
    """Prompt adherence of a model over the whole grid, and UA/IRA/CRA/attack success per forgotten concept."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch

    from core.evaluation.metrics import concept_kind, evaluate, sampling_defaults
    from core.testbed.loading import load_classifier, load_pipeline
    from core.testbed.paths import resolve_testbed, testbed_dir, testbed_of

    torch.set_flush_denormal(True)
    for name in forget:
        try:
            concept_kind(name)
        except ValueError as e:
            _fail(str(e))
    try:
        scored_by = resolve_testbed(testbed) if testbed else (testbed_of(model) or testbed_dir())
    except FileNotFoundError as e:
        _fail(str(e))
    d_steps, d_guidance = sampling_defaults(scored_by)
    try:
        pipe = load_pipeline(model)
    except (FileNotFoundError, OSError, ValueError) as e:
        _fail(f"cannot load a pipeline from {model}: {e}")
    if adapter is not None:
        if not adapter.exists():
            _fail(f"adapter not found: {adapter}")
        try:
            pipe.load_lora_weights(str(adapter))
        except (OSError, ValueError, KeyError) as e:
            _fail(f"cannot load LoRA adapter {adapter}: {e}")
    try:
        clf = load_classifier(scored_by)
    except FileNotFoundError as e:
        _fail(str(e))
    metrics = evaluate(
        pipe,
        forget,
        seeds=range(seeds),
        steps=steps if steps is not None else d_steps,
        guidance_scale=guidance if guidance is not None else d_guidance,
        classifier=clf,
        attacks=attack,
        attack_budget=attack_budget,
        base_testbed=scored_by,
    )
    result = {
        "model": {"object_accuracy": metrics.model.object_accuracy, "style_accuracy": metrics.model.style_accuracy},
        "targets": [
            {
                "forget": t.forget,
                "kind": t.kind,
                "ua": t.ua,
                "ira": t.ira,
                "cra": t.cra,
                "ira_rel": t.ira_rel,
                "cra_rel": t.cra_rel,
                "attack_success": t.attack_success,
            }
            for t in metrics.targets
        ],
        "images": metrics.images,
        "seconds": round(metrics.seconds, 2),
    }
    if as_json:
        typer.echo(json.dumps(result))
        return
    from rich.console import Console
    from rich.table import Table

    console = Console()
    console.print(
        f"model adherence: object {metrics.model.object_accuracy:.3f}  style {metrics.model.style_accuracy:.3f}  "
        f"(FID analogue {metrics.fid_analogue:.2f}; {metrics.images} images, {metrics.seconds:.1f} s)"
    )
    if metrics.targets:
        table = Table("forget", "kind", "UA", "IRA", "CRA", "IRA rel", "CRA rel", "attack success")

        def fmt(x: float | None) -> str:
            return "-" if x is None else f"{x:.3f}"

        for t in metrics.targets:
            table.add_row(
                t.forget,
                t.kind,
                fmt(t.ua),
                fmt(t.ira),
                fmt(t.cra),
                fmt(t.ira_rel),
                fmt(t.cra_rel),
                fmt(t.attack_success),
            )
        console.print(table)
