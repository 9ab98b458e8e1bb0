"""Retention floor: how much of an erasure's image-level retention loss any weight change of its size would cause.

An erasure (`lethe erase ... --out RUN`) changed some UNet modules by a low-rank delta. This benchmark scores, on a
testbed's grid (its classifier, `--eval-seeds` seeds per prompt), the erased model and models whose same modules
were changed instead by random deltas of the same rank and the same Frobenius norm per module (`--draws` of them).
When the random changes lose as much retention (IRA/CRA % of base) as the erasure, the loss is the base model's
fragility (images it draws right only by a margin), which no retain lever can win back; when they lose nothing, the
erasure's loss is its own (the concept's neighbourhood moved with it).

    lethe erase --model "$(lethe testbed path --name dev)/pipeline" --concept heart --out /tmp/heart
    python bench/retention_floor.py --testbed dev --run /tmp/heart --target heart

Prints a table, writes JSON (`--out`) and a bar chart beside it.
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
import time
from pathlib import Path
from statistics import mean
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

RESULTS = Path(__file__).resolve().parent / "results"


def _deltas(base_unet: Any, fused_unet: Any, modules: list[str]) -> dict[str, torch.Tensor]:
    """Each changed module's weight delta (fused − base), by module name."""
    base, fused = dict(base_unet.named_modules()), dict(fused_unet.named_modules())
    return {name: (fused[name].weight.detach().float() - base[name].weight.detach().float()) for name in modules}


def _random_like(delta: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """A random matrix of `delta`'s rank and Frobenius norm (a conv kernel is treated as its 2-D reshape)."""
    shape = delta.shape
    flat = delta.reshape(shape[0], -1)
    rank = max(1, int(torch.linalg.matrix_rank(flat).item()))
    u = torch.randn(flat.shape[0], rank, generator=generator)
    v = torch.randn(rank, flat.shape[1], generator=generator)
    random = u @ v
    return (random * (flat.norm() / random.norm().clamp_min(1e-12))).reshape(shape)


def _changed(pipeline: Any, deltas: dict[str, torch.Tensor]) -> Any:
    """The pipeline with a copy of its UNet whose named modules have these deltas added."""
    unet = copy.deepcopy(pipeline.unet)
    modules = dict(unet.named_modules())
    with torch.no_grad():
        for name, delta in deltas.items():
            weight = modules[name].weight
            weight.add_(delta.to(weight.dtype))
    changed = type(pipeline)(**{**pipeline.components, "unet": unet})
    changed.set_progress_bar_config(disable=True)
    return changed


IRA_CRA = (("ira_rel", (59, 130, 200)), ("cra_rel", (60, 170, 90)))


def chart(result: dict[str, Any], path: Path, series: tuple[tuple[str, tuple[int, int, int]], ...] = IRA_CRA,
          title: str = "IRA (blue) / CRA (green), share of base") -> None:
    """One group of bars per row (by default IRA and CRA % of base: the erasure beside each random change of
    its size)."""
    from PIL import Image, ImageDraw

    rows = result["rows"]
    bar, gap, height, left = 18, 30, 200, 40
    width = len(series) * bar + gap
    img = Image.new("RGB", (max(460, left + len(rows) * width + 20), height + 70), "white")
    d = ImageDraw.Draw(img)
    d.text((left, 6), f"{result['testbed']}: erased {result['target']} - {title}", fill="black")
    top = 30
    for i, row in enumerate(rows):
        x = left + i * width
        for j, (key, color) in enumerate(series):
            value = min(1.2, row[key] or 0.0)
            h = int(value / 1.2 * height)
            d.rectangle((x + j * bar, top + height - h, x + (j + 1) * bar - 2, top + height), fill=color)
        d.text((x, top + height + 6), row["model"][: width // 6], fill="black")
    y = top + height - int(1 / 1.2 * height)
    d.line((left - 4, y, img.width - 10, y), fill=(200, 0, 0))
    d.text((4, y - 6), "1.0", fill=(200, 0, 0))
    img.save(path)


def main(argv: list[str] | None = None) -> int:
    from bench.cli import add_eval_seeds

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--testbed", default="full",
                        help="Testbed name (full, subword, dev) or a built testbed's folder: its grid and classifier.")
    parser.add_argument("--run", type=Path, required=True, help="Output folder of `lethe erase` on that testbed.")
    parser.add_argument("--target", required=True, help="The concept the run erased.")
    parser.add_argument("--draws", type=int, default=3, help="Random changes of the erasure's size.")
    add_eval_seeds(parser, "Seeds per grid prompt")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (a shared CPU: keep it low).")
    parser.add_argument("--out", type=Path, default=None, help="JSON path (default results/retention_floor_<t>.json).")
    args = parser.parse_args(argv)

    from core.spare.loading import pipeline_dir
    from core.spare.testbed_eval import testbed_evaluator
    from core.testbed.loading import load_pipeline
    from core.testbed.paths import resolve_testbed

    torch.set_num_threads(args.threads)
    testbed = resolve_testbed(args.testbed)
    out = args.out or RESULTS / f"retention_floor_{testbed.name}_{args.target}.json"
    report = json.loads((args.run / "report.json").read_text())
    modules = list(report["adapter"]["target_modules"])
    base = load_pipeline(pipeline_dir(testbed))
    fused = load_pipeline(args.run / "fused")
    deltas = _deltas(base.unet, fused.unet, modules)
    del fused
    # The base is the testbed's shipped pipeline: its grid is drawn once per process, not once per model scored.
    evaluator = testbed_evaluator([args.target], testbed=testbed, seeds=tuple(range(args.eval_seeds)),
                                  cached_base=True)
    started = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    generator = torch.Generator().manual_seed(0)
    models = [("erasure", deltas)] + [
        (f"random {k + 1}", {name: _random_like(d, generator) for name, d in deltas.items()}) for k in range(args.draws)
    ]
    rows = []
    for name, change in models:
        t0 = time.perf_counter()
        summary = evaluator(_changed(base, change), base)["summary"][args.target]
        rows.append({"model": name, **{k: summary[k] for k in ("ua", "ira", "cra", "ira_rel", "cra_rel")},
                     "seconds": round(time.perf_counter() - t0, 1)})
        r = rows[-1]
        print(f"{name:10s} UA {r['ua']:.3f} IRA {r['ira_rel']:.3f} CRA {r['cra_rel']:.3f} of base ({r['seconds']} s)",
              flush=True)
    randoms = rows[1:]
    result = {
        "testbed": testbed.name, "target": args.target, "run": str(args.run), "modules": len(modules),
        "surrogates": report.get("prompts", {}).get("surrogates"),
        "delta_norm": round(float(sum(d.norm() ** 2 for d in deltas.values()) ** 0.5), 4),
        "eval_seeds": args.eval_seeds, "threads": args.threads, "started_at": started,
        "finished_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "rows": rows,
        "random_mean": {k: round(mean(r[k] for r in randoms), 4) for k in ("ua", "ira_rel", "cra_rel")}
        if randoms else None,
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    chart(result, out.with_suffix(".png"))
    print(f"\n{'model':10s} {'UA':>6s} {'IRA%':>7s} {'CRA%':>7s}")
    for r in rows:
        print(f"{r['model']:10s} {r['ua']:6.3f} {100 * r['ira_rel']:7.1f} {100 * r['cra_rel']:7.1f}")
    print(f"wrote {out} and {out.with_suffix('.png')}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
