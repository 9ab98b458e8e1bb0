"""Calibrate the diffusion classifier against a real judge: the testbed's own classifier, on the same images.

On the shipped testbed, runs erasures that span strong (defaults), weak (few steps) and deliberately failed ones
(3-5 steps, a surrogate of the wrong kind, a learning rate too small to move anything). After each, the erased and
the base model draw the held-out verification images once, and both judges label the same images. Per run: UA and
retention from each judge, |ΔUA|, whether each judge's verdict under the service thresholds is pass or fail, and
seconds (erasure, drawing the images, each judge's labelling). Before the runs, the diffusion classifier's accuracy
on the base model's images is measured per single timestep (which timesteps discriminate).

Prints a table, writes bench/results/judge_agreement.json (rewritten after every run) and judge_agreement.png.

    python bench/judge_agreement.py                 # the full calibration (14 erasures, ~15 min on 2 cores)
    python bench/judge_agreement.py --runs 2 --out /tmp/j.json   # a quick look
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

RESULTS = Path(__file__).resolve().parent / "results"
MAX_UA_GAP = 0.10

# (target, surrogate, engine params, what the run is meant to be)
RUNS: list[tuple[str, str, dict[str, Any], str]] = [
    ("triangle", "star", {}, "strong"),
    ("star", "cross", {}, "strong"),
    ("heart", "circle", {}, "strong"),
    ("circle", "square", {}, "strong"),
    ("striped", "solid", {}, "strong"),
    ("dotted", "outline", {}, "strong"),
    ("checkered", "solid", {}, "strong"),
    ("triangle", "star", {"steps": 15}, "weak"),
    ("dotted", "outline", {"steps": 10}, "weak"),
    ("triangle", "star", {"steps": 3}, "failed"),
    ("heart", "circle", {"steps": 5}, "failed"),
    ("striped", "solid", {"steps": 3}, "failed"),
    ("triangle", "dotted", {}, "failed? surrogate of the wrong kind"),
    ("star", "cross", {"lr": 1e-5}, "failed: learning rate too small"),
]


def timestep_sweep(pipe: Any, vocab: Any, timesteps: list[int]) -> list[dict[str, Any]]:
    """The diffusion classifier with one timestep at a time on one base image per (object, style) pair."""
    from core.evaluation.judges.diffusion import DiffusionClassifierConfig, DiffusionClassifierJudge
    from core.evaluation.sampling import generate
    from core.testbed.canvas import OBJECTS, STYLES

    pairs = [(o, s) for o in OBJECTS for s in STYLES]
    prompts = [f"the {s} {o} shape" for o, s in pairs]  # a held-out wording of the testbed's lethe.json
    images = generate(pipe, prompts, [31_000 + i for i in range(len(pairs))], steps=10)
    rows = []
    for t in timesteps:
        judge = DiffusionClassifierJudge(pipe, vocab, DiffusionClassifierConfig(timesteps=(t,), screen_timesteps=1))
        started = time.perf_counter()
        obj = judge.classify(images, "object", list(OBJECTS))
        sty = judge.classify(images, "style", list(STYLES))
        rows.append({
            "timestep": t,
            "object_accuracy": float(np.mean([g == o for g, (o, _) in zip(obj, pairs, strict=True)])),
            "style_accuracy": float(np.mean([g == s for g, (_, s) in zip(sty, pairs, strict=True)])),
            "seconds": round(time.perf_counter() - started, 2),
        })
        print(f"  t={t}: object {rows[-1]['object_accuracy']:.2f} style {rows[-1]['style_accuracy']:.2f}", flush=True)
    return rows


def one_run(pipe: Any, testbed: Path, vocab: Any, judges: dict[str, Any], run: tuple, args: argparse.Namespace,
            thresholds: Any) -> dict[str, Any]:
    from core.erasure.judging import training_prompts
    from core.erasure.verification import verify
    from core.evaluation.evidence import draw_heldout, judge_heldout
    from core.spare import ErasureSpec, SpareConfig
    from core.spare import erase as run_erase
    from core.spare.report import EngineMetrics
    from core.spare.specs import ConceptSpec
    from core.spare.testbed_eval import concept_kind, fit_to_testbed

    target, surrogate, params, intent = run
    spec, config = fit_to_testbed(
        ErasureSpec(concepts=[ConceptSpec(target=target, surrogate=surrogate, kind=concept_kind(target))],
                    method="spare"),
        SpareConfig(seed=args.seed, device="cpu", **params),
    )
    trained = training_prompts(spec, config)
    captured: dict[str, Any] = {}

    def evaluator(erased: Any, base: Any) -> dict[str, Any]:
        held = draw_heldout(erased, base, vocab, [(target, spec.concepts[0].kind, surrogate)],
                            training_prompts=trained, forget_images=args.forget_images,
                            retain_images=args.retain_images, steps=args.steps)
        captured["draw_s"] = round(held.seconds, 2)
        for name, judge in judges.items():
            captured[name] = judge_heldout(held, judge).model_dump(mode="json")
        return {}

    with tempfile.TemporaryDirectory() as tmp:
        result = run_erase(pipe, spec, config, out_dir=Path(tmp) / "out", evaluator=evaluator)
    timings = result.report.timings_s
    erase_s = timings["total"] - timings.get("evaluate", 0.0)
    row: dict[str, Any] = {"target": target, "surrogate": surrogate, "params": params, "intent": intent,
                           "erase_s": round(erase_s, 2), "draw_s": captured["draw_s"]}
    for name in judges:
        ev = captured[name]
        verdict = verify(EngineMetrics.model_validate({"judge": ev}), thresholds, [target])
        row[name] = {
            "ua": ev["concepts"][0]["ua"], "ua_interval": ev["concepts"][0]["ua_interval"],
            "base_ua": ev["concepts"][0]["base_ua"],
            "retention": {f"{r['group']}:{r['kind']}": r["retention"] for r in ev["retention"]},
            "passes": verdict.ok, "judge_s": ev["judge_seconds"],
            "share_of_erasure": round((captured["draw_s"] + ev["judge_seconds"]) / erase_s, 3),
        }
    ref, dc = row["model-classifier"], row["diffusion-classifier"]
    row["ua_gap"] = round(abs(ref["ua"] - dc["ua"]), 4)
    row["retention_gap"] = max(
        (abs(ref["retention"][k] - dc["retention"][k]) for k in ref["retention"]
         if ref["retention"][k] is not None and dc["retention"].get(k) is not None), default=None)
    row["verdicts_agree"] = ref["passes"] == dc["passes"]
    return row


def summarize(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Agreement with the reference judge. A run counts as failed when the reference judge fails it (what the
    run was meant to be is in `intent`; a meant-to-fail run that the reference passes is reported, not hidden)."""
    gaps = [r["ua_gap"] for r in rows]
    failed = [r for r in rows if not r["model-classifier"]["passes"]]
    return {
        "runs": len(rows),
        "max_ua_gap": max(gaps) if gaps else None,
        "mean_ua_gap": round(float(np.mean(gaps)), 4) if gaps else None,
        "runs_within_gap": sum(g <= MAX_UA_GAP for g in gaps),
        "verdict_agreement": sum(r["verdicts_agree"] for r in rows),
        "failed_by_reference": len(failed),
        "failed_by_reference_also_failed_by_diffusion_classifier": sum(
            not r["diffusion-classifier"]["passes"] for r in failed),
        "meant_to_fail_but_passed_by_reference": [
            f"{r['target']} -> {r['surrogate']} {json.dumps(r['params'])}" for r in rows
            if r["intent"].startswith("failed") and r["model-classifier"]["passes"]],
        "max_share_of_erasure": {
            name: max(r[name]["share_of_erasure"] for r in rows)
            for name in ("model-classifier", "diffusion-classifier")
        } if rows else None,
        "target_met": bool(rows) and max(gaps) <= MAX_UA_GAP
        and all(not r["diffusion-classifier"]["passes"] for r in failed),
    }


def table(rows: list[dict[str, Any]]) -> str:
    head = (f"{'target':<10} {'surrogate':<9} {'params':<16} {'intent':<12} {'UA clf':>6} {'UA dc':>6} {'|dUA|':>6} "
            f"{'ret clf':>8} {'ret dc':>8} {'pass clf/dc':>11} {'erase s':>8} {'judge s clf/dc':>15}")
    lines = [head, "-" * len(head)]
    for r in rows:
        ref, dc = r["model-classifier"], r["diffusion-classifier"]
        rr = min((v for v in ref["retention"].values() if v is not None), default=float("nan"))
        rd = min((v for v in dc["retention"].values() if v is not None), default=float("nan"))
        lines.append(
            f"{r['target']:<10} {r['surrogate']:<9} {json.dumps(r['params']):<16} {r['intent'][:12]:<12} "
            f"{ref['ua']:>6.3f} {dc['ua']:>6.3f} {r['ua_gap']:>6.3f} {rr:>8.3f} {rd:>8.3f} "
            f"{('P' if ref['passes'] else 'F') + '/' + ('P' if dc['passes'] else 'F'):>11} {r['erase_s']:>8.1f} "
            f"{r['draw_s'] + ref['judge_s']:>7.1f}/{r['draw_s'] + dc['judge_s']:<7.1f}"
        )
    return "\n".join(lines)


def chart(rows: list[dict[str, Any]], path: Path) -> None:
    """UA by the testbed classifier (x) against UA by the diffusion classifier (y), with the ±0.10 band."""
    from PIL import Image, ImageDraw

    size, pad = 420, 50
    img = Image.new("RGB", (size + 2 * pad, size + 2 * pad), "white")
    d = ImageDraw.Draw(img)

    def xy(x: float, y: float) -> tuple[float, float]:
        return pad + x * size, pad + (1 - y) * size

    d.polygon([xy(0, 0), xy(0, MAX_UA_GAP), xy(1 - MAX_UA_GAP, 1), xy(1, 1), xy(1, 1 - MAX_UA_GAP),
               xy(MAX_UA_GAP, 0)], fill=(225, 240, 225))
    d.line([xy(0, 0), xy(1, 1)], fill=(150, 150, 150))
    d.rectangle([xy(0, 1), xy(1, 0)], outline="black")
    for v in (0, 0.25, 0.5, 0.75, 1.0):
        d.text((xy(v, 0)[0] - 8, pad + size + 6), f"{v:.2f}", fill="black")
        d.text((8, xy(0, v)[1] - 6), f"{v:.2f}", fill="black")
    d.text((pad, 14), "UA: testbed classifier (x) vs diffusion classifier (y); green = |dUA| <= 0.10", fill="black")
    colours = {"strong": (40, 120, 200), "weak": (230, 150, 30), "failed": (200, 40, 40)}
    for r in rows:
        x, y = xy(r["model-classifier"]["ua"], r["diffusion-classifier"]["ua"])
        c = colours["failed" if r["intent"].startswith("failed") else r["intent"]]
        d.ellipse((x - 5, y - 5, x + 5, y + 5), fill=c)
    for i, (name, c) in enumerate(colours.items()):
        d.ellipse((pad + 10, pad + 10 + i * 16, pad + 20, pad + 20 + i * 16), fill=c)
        d.text((pad + 26, pad + 8 + i * 16), name, fill="black")
    img.save(path)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=len(RUNS), help="Use the first N runs of the calibration set.")
    ap.add_argument("--forget-images", type=int, default=12, help="Held-out images of the erased concept.")
    ap.add_argument("--retain-images", type=int, default=24, help="Held-out images of concepts that must stay.")
    ap.add_argument("--steps", type=int, default=10, help="Sampling steps of the held-out images.")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1, help="torch threads (2 shared cores: 1 is fastest overall).")
    ap.add_argument("--sweep", default="100,200,300,400,500,600,700,800",
                    help="Timesteps for the single-timestep accuracy sweep ('' skips it).")
    ap.add_argument("--out", type=Path, default=RESULTS / "judge_agreement.json")
    ap.add_argument("--resume", action="store_true", help="Keep the rows already in --out and run the rest.")
    args = ap.parse_args(argv)

    from core.config import Settings
    from core.erasure.verification import Thresholds
    from core.evaluation.judges import select_judge
    from core.evaluation.vocabulary import load_vocabulary
    from core.testbed import paths
    from core.testbed.loading import load_pipeline

    torch.set_num_threads(args.threads)
    torch.set_flush_denormal(True)
    testbed = paths.testbed_dir()
    pipe = load_pipeline(testbed / "pipeline")
    vocab = load_vocabulary(testbed / "pipeline")
    judges = {
        "model-classifier": select_judge("model-classifier", base_pipeline=pipe, vocabulary=vocab),
        "diffusion-classifier": select_judge("diffusion-classifier", base_pipeline=pipe, vocabulary=vocab),
    }
    thresholds = Thresholds.for_request(Settings())
    result: dict[str, Any] = {
        "testbed": str(testbed), "started_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "threads": args.threads, "load_average_at_start": os.getloadavg(),
        "forget_images": args.forget_images, "retain_images": args.retain_images,
        "thresholds": vars(thresholds), "judges": {n: j.describe() for n, j in judges.items()},
        "diffusion_classifier_config": asdict(judges["diffusion-classifier"].config),
        "max_ua_gap": MAX_UA_GAP,
    }
    done: list[dict[str, Any]] = []
    if args.resume and args.out.is_file():
        previous = json.loads(args.out.read_text())
        done = previous.get("rows", [])
        result["timestep_sweep"] = previous.get("timestep_sweep")
        result["started_at"] = previous.get("started_at")
    sweep = [int(t) for t in args.sweep.split(",") if t.strip()] if not done else []
    if sweep:
        print("diffusion classifier accuracy on base images, one timestep at a time:", flush=True)
        result["timestep_sweep"] = timestep_sweep(pipe, vocab, sweep)
    rows: list[dict[str, Any]] = list(done)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    for i, run in enumerate(RUNS[: args.runs]):
        if i < len(done):
            continue
        print(f"[{i + 1}/{args.runs}] {run[0]} -> {run[1]} {run[2]} ({run[3]})", flush=True)
        rows.append(one_run(pipe, testbed, vocab, judges, run, args, thresholds))
        result["rows"] = rows
        result["summary"] = summarize(rows)
        args.out.write_text(json.dumps(result, indent=2) + "\n")
    result["rows"] = rows
    result["summary"] = summarize(rows)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(table(rows))
    print(json.dumps(result["summary"], indent=2))
    chart(rows, args.out.with_suffix(".png"))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
