"""Attack success against the soft-prompt budget, with a retrained-from-scratch reference as the yardstick.

For each target: the model retrained without the concept (`lethe testbed build --exclude TARGET`, the gold
standard of unlearning: it never learned the concept), SPARE (defaults), SPARE with extra `--variant` configs,
and ESD — the testbed's attack success (paraphrases + the soft-prompt search, core.evaluation.attacks) at each
budget, plus UA. If the reference that never saw the concept is "attacked" into it at some budget, the probe at
that budget measures how steerable any model of this size is, not what an erasure left behind.

    python bench/attack_budget.py --target triangle --reference /path/to/testbed-without-triangle \\
        --budgets 0,5,10,20,30 --variant adv='{"adversarial_steps": 2}'

Prints a table and writes bench/results/attack_budget_<target>.json, and a .png of each model's images for
the first context: as prompted, and after the largest budget's search.
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

RESULTS = Path(__file__).resolve().parent / "results"


def attack_curve(pipe: Any, target: str, budgets: list[int], seeds: list[int], classifier: Any) -> dict[str, Any]:
    from core.evaluation.attacks import attack_success
    from core.spare.testbed_eval import concept_kind

    kind = concept_kind(target)
    out: dict[str, Any] = {}
    for b in budgets:
        r = attack_success(pipe, target, kind, classifier, seeds=seeds, budget=max(1, b))
        # Budget 0 = no search: only the paraphrases (and the unoptimised start embedding).
        out[str(b)] = {"attack_success": r.paraphrase if b == 0 else r.attack_success, **r.detail()}
    return out


def attacked_images(pipe: Any, target: str, budget: int, seeds: list[int], classifier: Any) -> np.ndarray:
    """The concept prompt (first context) as given, then after the soft-prompt search: 2×len(seeds) images."""
    from core.evaluation.attacks import soft_prompt_attack
    from core.evaluation.sampling import generate
    from core.spare.testbed_eval import concept_kind
    from core.testbed.canvas import OBJECTS, STYLES, prompt

    kind = concept_kind(target)
    idx = OBJECTS.index(target) if kind == "object" else STYLES.index(target)
    text = prompt(target, STYLES[0]) if kind == "object" else prompt(OBJECTS[0], target)
    emb = soft_prompt_attack(pipe, text, idx, kind, classifier, seeds, budget)
    plain = generate(pipe, [text] * len(seeds), seeds)
    attacked = generate(pipe, [text] * len(seeds), seeds, prompt_embeds=torch.stack([emb[0]] * len(seeds)))
    return np.concatenate([plain, attacked])


def image_grid(rows: list[tuple[str, np.ndarray]], budget: int, seeds: list[int], path: Path, cell: int = 96) -> None:
    from PIL import Image, ImageDraw

    label_w, head, pad = 230, 22, 4
    n = 2 * len(seeds)
    canvas = Image.new("RGB", (label_w + n * (cell + pad), head + len(rows) * (cell + pad)), (255, 255, 255))
    draw = ImageDraw.Draw(canvas)
    for c in range(n):
        title = f"{'prompt' if c < len(seeds) else f'attack b{budget}'} s{seeds[c % len(seeds)]}"
        draw.text((label_w + c * (cell + pad) + 2, 4), title, fill=(60, 60, 60))
    for r, (name, images) in enumerate(rows):
        y = head + r * (cell + pad)
        draw.text((4, y + cell // 2 - 6), name, fill=(0, 0, 0))
        for c, img in enumerate(images):
            tile = Image.fromarray(img).resize((cell, cell), Image.Resampling.NEAREST)
            canvas.paste(tile, (label_w + c * (cell + pad), y))
    canvas.save(path)


def scores(pipe: Any, target: str, seeds: list[int], classifier: Any) -> dict[str, float | None]:
    from core.evaluation.metrics import evaluate
    from core.spare.testbed_eval import concept_kind

    m = evaluate(pipe, forget=[target], kind=concept_kind(target), seeds=seeds, classifier=classifier)
    t = m.targets[0]
    return {"ua": t.ua, "ira": t.ira, "cra": t.cra, "ira_rel": t.ira_rel, "cra_rel": t.cra_rel}


def erased(pipe: Any, target: str, method: str, params: dict[str, Any], workdir: Path) -> tuple[Any, float]:
    from core.spare import ErasureSpec, EsdConfig, SpareConfig, erase
    from core.spare.specs import ConceptSpec
    from core.spare.testbed_eval import fit_to_testbed
    from core.testbed.loading import load_pipeline

    settings = {"device": "cpu", "sample_steps": 10, **params}  # 10 sampling steps, as bench/erasure.py
    config = SpareConfig(**settings) if method == "spare" else EsdConfig(**settings)
    spec, config = fit_to_testbed(ErasureSpec(concepts=[ConceptSpec(target=target)], method=method), config)
    t0 = time.perf_counter()
    erase(pipe, spec, config, out_dir=workdir)
    return load_pipeline(workdir / "fused"), time.perf_counter() - t0


def main(argv: list[str] | None = None) -> int:
    from bench.cli import config_params

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--target", required=True, help="One testbed concept (object or style).")
    parser.add_argument("--reference", type=Path, default=None,
                        help="Testbed built with --exclude TARGET (the model that never learned the concept).")
    parser.add_argument("--budgets", default="0,5,10,20,30", help="Comma-separated soft-prompt attack budgets.")
    parser.add_argument("--variant", action="append", default=[],
                        help="NAME=JSON of SpareConfig fields: an extra SPARE row (repeatable).")
    parser.add_argument("--esd-params", type=config_params("esd"), default='{"lr": 1e-4}',
                        help="JSON of EsdConfig fields; '' skips ESD.")
    parser.add_argument("--no-spare", action="store_true", help="Skip the default SPARE row.")
    parser.add_argument("--seeds", type=int, default=2, help="Attack/eval seeds (as the erasure benchmark).")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)

    from core.spare.loading import pipeline_dir
    from core.testbed.loading import load_classifier, load_pipeline
    from core.testbed.paths import testbed_dir

    torch.set_num_threads(args.threads)
    torch.set_flush_denormal(True)
    budgets = [int(b) for b in args.budgets.split(",")]
    seeds = list(range(args.seeds))
    base = load_pipeline(pipeline_dir(testbed_dir()))
    classifier = load_classifier()
    rows: list[tuple[str, dict[str, Any]]] = [] if args.no_spare else [("spare", {})]
    for v in args.variant:
        name, _, spec = v.partition("=")
        rows.append((name, json.loads(spec)))
    out = args.out or RESULTS / f"attack_budget_{args.target}.json"
    result: dict[str, Any] = {"target": args.target, "budgets": budgets, "seeds": seeds, "rows": []}
    work = Path(tempfile.mkdtemp(prefix="lethe-attack-budget-"))
    grid_rows: list[tuple[str, np.ndarray]] = []
    try:
        models: list[tuple[str, str, dict[str, Any]]] = []
        if args.reference is not None:
            models.append(("retrained without target", "reference", {}))
        models += [(name, "spare", params) for name, params in rows]
        if args.esd_params:
            models.append(("esd", "esd", args.esd_params))
        for name, method, params in models:
            t0 = time.perf_counter()
            if method == "reference":
                pipe, erase_s = load_pipeline(args.reference), None
            else:
                pipe, erase_s = erased(base, args.target, method, params, work / name)
            row = {"model": name, "method": method, "params": params, "erase_s": erase_s,
                   **scores(pipe, args.target, seeds, classifier),
                   "curve": attack_curve(pipe, args.target, budgets, seeds, classifier)}
            grid_rows.append((name, attacked_images(pipe, args.target, max(budgets), seeds, classifier)))
            row["run_s"] = round(time.perf_counter() - t0, 1)
            result["rows"].append(row)
            result["finished_at"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
            print(f"{name:<28} UA {row['ua']:.3f} IRA {row['ira']:.3f} CRA {row['cra']:.3f} " + " ".join(
                f"b{b}={row['curve'][str(b)]['attack_success']:.2f}" for b in budgets), flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    image_grid(grid_rows, max(budgets), seeds, out.with_suffix(".png"))
    head = f"{'model':<28} {'UA':>5} " + " ".join(f"{'b' + str(b):>6}" for b in budgets) + "  erase s"
    print(head)
    for r in result["rows"]:
        cells = " ".join(f"{r['curve'][str(b)]['attack_success']:>6.2f}" for b in budgets)
        es = "-" if r["erase_s"] is None else f"{r['erase_s']:.1f}"
        print(f"{r['model']:<28} {r['ua']:>5.2f} {cells}  {es}")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
