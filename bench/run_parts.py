"""An erasure run's weight change, taken apart and scored on a testbed's grid: what bench/retention_floor.py and
bench/retention_anatomy.py share (the run's arguments, its deltas, models changed by part of them, the scoring
loop, the table, the JSON and the bar chart)."""

from __future__ import annotations

import argparse
import copy
import json
import textwrap
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

RESULTS = Path(__file__).resolve().parent / "results"
Color = tuple[int, int, int]
IRA_CRA: tuple[tuple[str, Color], ...] = (("ira_rel", (59, 130, 200)), ("cra_rel", (60, 170, 90)))


def add_run_arguments(parser: argparse.ArgumentParser, many: bool = False) -> None:
    """--testbed, --run (several folders where `many`), --target, --eval-seeds, --eval-seed-start, --threads."""
    from bench.cli import add_eval_seeds

    parser.add_argument("--testbed", default="full",
                        help="Testbed name (full, subword, dev) or a built testbed's folder: its grid and classifier.")
    if many:
        parser.add_argument("--run", type=Path, nargs="+", required=True,
                            help="Output folders of `lethe erase` on that testbed (the first is the reference).")
    else:
        parser.add_argument("--run", type=Path, required=True, help="Output folder of `lethe erase` on that testbed.")
    parser.add_argument("--target", required=True, help="The concept the run erased.")
    add_eval_seeds(parser, "Seeds per grid prompt")
    parser.add_argument("--eval-seed-start", type=int, default=0,
                        help="First grid seed (2 scores a job's kept round on seeds its verification never drew).")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (a shared CPU: keep it low).")


@dataclass
class Run:
    """A finished erasure on a testbed: the base pipeline, each changed module's delta, and the grid's scorer."""

    testbed: Path
    target: str
    report: dict[str, Any]
    base: Any
    deltas: dict[str, torch.Tensor]
    seeds: tuple[int, ...]
    evaluator: Callable[[Any, Any], dict[str, Any]]


def load_run(args: argparse.Namespace) -> Run:
    from core.spare.loading import pipeline_dir
    from core.spare.testbed_eval import testbed_evaluator
    from core.testbed.loading import load_pipeline
    from core.testbed.paths import resolve_testbed

    torch.set_num_threads(args.threads)
    testbed = resolve_testbed(args.testbed)
    base = load_pipeline(pipeline_dir(testbed))
    report, deltas = run_change(base, args.run[0] if isinstance(args.run, list) else args.run)
    seeds = tuple(range(args.eval_seed_start, args.eval_seed_start + args.eval_seeds))
    # The base is the testbed's shipped pipeline: its grid is drawn once per process, not once per model scored.
    evaluator = testbed_evaluator([args.target], testbed=testbed, seeds=seeds, cached_base=True)
    return Run(testbed, args.target, report, base, deltas, seeds, evaluator)


def run_change(base: Any, folder: Path) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """A run folder's report and the change its fused UNet makes to `base`, per module the report names."""
    from core.testbed.loading import load_pipeline

    report = json.loads((folder / "report.json").read_text())
    fused = load_pipeline(folder / "fused")
    base_modules, fused_modules = dict(base.unet.named_modules()), dict(fused.unet.named_modules())
    deltas = {name: fused_modules[name].weight.detach().float() - base_modules[name].weight.detach().float()
              for name in report["adapter"]["target_modules"]}
    return report, deltas


def changed(pipeline: Any, deltas: dict[str, torch.Tensor]) -> Any:
    """The pipeline with a copy of its UNet whose named modules have these deltas added."""
    unet = copy.deepcopy(pipeline.unet)
    modules = dict(unet.named_modules())
    with torch.no_grad():
        for name, delta in deltas.items():
            weight = modules[name].weight
            weight.add_(delta.to(weight.dtype))
    pipe = type(pipeline)(**{**pipeline.components, "unet": unet})
    pipe.set_progress_bar_config(disable=True)
    return pipe


def score(run: Run, models: list[tuple[str, Callable[[], Any]]]) -> list[dict[str, Any]]:
    """UA and IRA/CRA (absolute and % of base) of each model (built when its turn comes), printed as it goes."""
    rows = []
    for name, make in models:
        t0 = time.perf_counter()
        summary = run.evaluator(make(), run.base)["summary"][run.target]
        rows.append({"model": name, **{k: summary[k] for k in ("ua", "ira", "cra", "ira_rel", "cra_rel")},
                     "seconds": round(time.perf_counter() - t0, 1)})
        r = rows[-1]
        print(f"{name:14s} UA {r['ua']:.3f} IRA {r['ira_rel']:.3f} CRA {r['cra_rel']:.3f} of base ({r['seconds']} s)",
              flush=True)
    return rows


def finish(result: dict[str, Any], out: Path, series: tuple[tuple[str, Color], ...] = IRA_CRA,
           title: str = "IRA (blue) / CRA (green), share of base") -> None:
    """Write the JSON and its chart, print the table."""
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    chart(result, out.with_suffix(".png"), series, title)
    print(f"\n{'model':14s} {'UA':>6s} {'IRA%':>7s} {'CRA%':>7s}")
    for r in result["rows"]:
        print(f"{r['model']:14s} {r['ua']:6.3f} {100 * r['ira_rel']:7.1f} {100 * r['cra_rel']:7.1f}")
    print(f"wrote {out} and {out.with_suffix('.png')}")


def chart(result: dict[str, Any], path: Path, series: tuple[tuple[str, Color], ...], title: str) -> None:
    """One group of bars per row, one bar per series, against the base's 1.0."""
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
        for k, line in enumerate(textwrap.wrap(row["model"], width // 6)[:2]):  # two lines at most
            d.text((x, top + height + 6 + 12 * k), line, fill="black")
    y = top + height - int(1 / 1.2 * height)
    d.line((left - 4, y, img.width - 10, y), fill=(200, 0, 0))
    d.text((4, y - 6), "1.0", fill=(200, 0, 0))
    img.save(path)


def started_now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
