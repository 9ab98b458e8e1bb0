"""Erasure benchmark on the testbeds: SPARE (erase until verified), SPARE (one round), ablations, ESD.

`--testbeds full,subword` runs every method on both testbeds in one run (the second, built by another recipe,
is for reporting the defaults on a model they were never tuned on — never for tuning; `--testbeds dev`, a third
recipe, is where the escalation is developed). Requests are phrased by
each testbed's own lethe.json through the generic path (core.spare.prompting.fit_request). `spare-loop` is
what workers run: rounds with the testbed classifier's cheap held-out check and escalation
(core.spare.rounds), the verification a worker applies (its judge, its grid — 2 seeds per cell, more while a grid
verdict could still turn — the service thresholds) as
the acceptance rule of a round whose check passed, the service's default budget (LETHE_ERASE_MAX_ROUNDS);
`spare` is one round. Every row also has the diffusion classifier's UA on held-out prompts (the judge any model
gets); the benchmark's own grid (`--eval-seeds` seeds from `--eval-seed-start`) scores the kept round and never
decides a round. Its seeds start after the verification's by default: the loop keeps the round that the
verification's grid passed, so scoring it on those same images would grade it on what it was selected on. A
loop row also reports the verification's own grid numbers of the kept round (`verification.grid`).

For each target (objects and styles) and method: UA, IRA, CRA (absolute and % of base), the FID analogue,
attack success, wall time of the erasure (evaluation excluded), peak RSS vs sampling alone (in-process per row,
and once in fresh processes — the memory probe — which is what the target is checked on), adapter and fused
bytes. Runs everything in one process (threads capped) so the evaluator's base grid is generated once.
Prints a table, writes bench/results/erasure.json (rewritten after every run) and bench/results/erasure.png.

    python bench/erasure.py                          # defaults: 3 objects + 3 styles, all four methods
    python bench/erasure.py --objects circle --styles '' --methods spare,esd --eval-seeds 2
    python bench/erasure.py --testbeds subword,full --methods spare-loop,spare,esd --eval-seeds 4   # the record
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from statistics import mean
from typing import Any

import torch

from core.evaluation.attacks import CALIBRATED_BUDGET

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

RESULTS = Path(__file__).resolve().parent / "results"
METHODS = ("spare-loop", "spare", "spare-uniform", "spare-nosal", "esd")


def method_config(method: str, args: argparse.Namespace) -> Any:
    from core.spare import EsdConfig, SpareConfig

    base = dict(seed=args.seed, device="cpu", sample_steps=args.sample_steps)
    extra = dict(args.spare_params or {})
    if args.spare_steps:
        extra["steps"] = args.spare_steps
    if method == "spare":
        return SpareConfig(**base, **extra)
    if method == "spare-loop":
        from core.config import get_settings

        return SpareConfig(**base, **{"max_rounds": get_settings().erase_max_rounds, **extra})
    if method == "spare-uniform":
        return SpareConfig(**base, **{**extra, "timesteps": "uniform"})
    if method == "spare-nosal":
        # LoRA on every attention projection (self and cross), no saliency selection.
        return SpareConfig(**base, **{**extra, "saliency_pool": "attention", "saliency_fraction": 1.0,
                                      "top_k": None, "max_modules": 4096})
    esd_extra = dict(args.esd_params or {})
    if args.esd_steps:
        esd_extra["steps"] = args.esd_steps
    return EsdConfig(**base, **esd_extra)


def sampling_reference(pipe: Any, n: int = 8) -> dict[str, float]:
    """Peak RSS and seconds of sampling alone (the same batch the engine generates samples with)."""
    from core.spare.memory import PeakMemory
    from core.spare.samples import generate_latents
    from core.testbed.canvas import OBJECTS, STYLES, prompt

    prompts = [prompt(OBJECTS[i % len(OBJECTS)], STYLES[i % len(STYLES)]) for i in range(n)]
    t0 = time.perf_counter()
    with PeakMemory() as mem:
        generate_latents(pipe, prompts, seed=0, steps=20, guidance=5.0, per_prompt=1)
    return {"peak_rss_bytes": mem.peak_rss, "seconds": time.perf_counter() - t0}


def memory_child(what: str, threads: int) -> dict[str, Any]:
    """In a fresh process: load the testbed, then either sample (the reference) or run one SPARE erasure."""
    from core.spare import ErasureSpec, SpareConfig, erase
    from core.spare.loading import pipeline_dir
    from core.spare.memory import PeakMemory
    from core.spare.specs import ConceptSpec
    from core.spare.testbed_eval import fit_to_testbed
    from core.testbed.loading import load_pipeline
    from core.testbed.paths import testbed_dir

    torch.set_num_threads(threads)
    pipe = load_pipeline(pipeline_dir(testbed_dir()))
    if what == "sampling":
        return sampling_reference(pipe)
    spec, config = fit_to_testbed(ErasureSpec(concepts=[ConceptSpec(target=what)]),
                                  SpareConfig(device="cpu", sample_steps=10))
    out = Path(tempfile.mkdtemp(prefix="lethe-bench-mem-"))
    t0 = time.perf_counter()
    try:
        with PeakMemory() as mem:
            erase(pipe, spec, config, out_dir=out / "run")
    finally:
        shutil.rmtree(out, ignore_errors=True)
    return {"peak_rss_bytes": mem.peak_rss, "seconds": time.perf_counter() - t0}


def memory_probe(target: str, threads: int) -> dict[str, Any]:
    """Peak RSS of one SPARE erasure vs sampling alone, each in its own fresh process.

    RSS never shrinks back within a process (allocator high-water marks, the evaluator's caches), so the
    in-process numbers of later benchmark rows overstate what one erasure needs; this is the fair comparison.
    """
    def child(what: str) -> dict[str, Any]:
        cmd = [sys.executable, __file__, "--memory-child", what, "--threads", str(threads)]
        out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
        return json.loads(out.strip().splitlines()[-1])

    sampling, spare = child("sampling"), child(target)
    return {"target": target, "sampling": sampling, "spare": spare,
            "ratio": spare["peak_rss_bytes"] / sampling["peak_rss_bytes"]}


class RoundTracker:
    """Which round an evaluation belongs to, for erase_until_verified(erase_fn=tracker.erase): `key()` is the
    round the engine is running, or 0 for the kept round's evaluation after the loop (from its saved weights)."""

    def __init__(self) -> None:
        self.round, self.inside = 0, False

    def erase(self, *a: Any, **k: Any) -> Any:
        from core.spare import erase

        self.round, self.inside = self.round + 1, True
        try:
            return erase(*a, **k)
        finally:
            self.inside = False

    def key(self) -> int:
        return self.round if self.inside else 0


def one_run(pipe: Any, testbed: Path, target: str, method: str, args: argparse.Namespace, cached: bool) -> dict:
    from core.config import get_settings
    from core.erasure.judging import job_evaluator
    from core.erasure.verification import Thresholds
    from core.erasure.verified import VerifiedErasure, verification_grid_seeds, verified_erasure
    from core.evaluation.vocabulary import load_vocabulary
    from core.spare import ErasureSpec, erase
    from core.spare.loading import pipeline_dir
    from core.spare.prompting import fit_request
    from core.spare.report import EngineMetrics
    from core.spare.rounds import erase_until_verified
    from core.spare.specs import ConceptSpec
    from core.spare.testbed_eval import concept_kind, testbed_evaluator

    spare_method = "esd" if method == "esd" else "spare"
    config = method_config(method, args)
    model_dir = pipeline_dir(testbed)
    # The generic path: the testbed's lethe.json phrases the request (canvas contexts, retain set, surrogate).
    named = args.surrogates.get(target)
    requested = ErasureSpec(concepts=[ConceptSpec(target=target, surrogate=named)], method=spare_method)
    spec, config = fit_request(requested, config, load_vocabulary(model_dir))
    settings = get_settings()
    thresholds = Thresholds.for_request(settings)
    verification_seeds = verification_grid_seeds(settings)  # as workers verify
    run: VerifiedErasure | None = None
    if method == "spare-loop":
        # As workers run it: the surrogate screen, then rounds (the screen's time counts in the loop's), and the
        # worker's verification read on a round whose check passed.
        run = verified_erasure(pipe, model_dir, requested, spec, config, settings, judge_name="model-classifier",
                               fingerprint=None, thresholds=thresholds, grid_seeds=verification_seeds,
                               attacks=False)
        spec = run.spec
    concept = spec.concepts[0]
    grid = testbed_evaluator([target], testbed=testbed, seeds=eval_seeds(args),
                             attacks=args.attack_budget > 0, attack_budget=max(1, args.attack_budget),
                             cached_base=cached)
    scoring = job_evaluator(model_dir, spec, config, settings, judge_name="diffusion-classifier", fingerprint=None,
                            diagnostics=grid) if args.diffusion_judge else grid
    evaluation_s = [0.0]
    # The worker's verification of each evaluated round (0: the kept round, reloaded after the loop) and its time.
    verified: dict[int, tuple[dict[str, Any], float]] = {}
    rounds_run = RoundTracker()

    def evaluator(erased: Any, base: Any, complete: bool = False, judged: Any = None) -> dict[str, Any]:
        # `judged` (a kept round's evidence handed back) is the benchmark's own judge's here, not the worker's:
        # the worker's verification draws its own again (the same images: same weights, seeds, CPU).
        if run is not None:
            t0 = time.perf_counter()
            verified[rounds_run.key()] = (run.evaluator(erased, base, complete=complete), time.perf_counter() - t0)
        t0 = time.perf_counter()
        try:
            metrics = scoring(erased, base)
        finally:
            evaluation_s[0] += time.perf_counter() - t0
        # Where the worker's verification skipped its diagnostics, say so as it does: the loop then completes a
        # kept round's evaluation as in a job.
        skipped = run is not None and verified[rounds_run.key()][0].get("diagnostics_skipped")
        return {**metrics, "diagnostics_skipped": skipped} if skipped else metrics

    def accept(metrics: Any) -> Any:
        assert run is not None
        worker_metrics = verified[rounds_run.round][0]
        return run.accept()(EngineMetrics.model_validate({**worker_metrics, "probe": metrics.probe}))

    out = Path(tempfile.mkdtemp(prefix="lethe-bench-")) / "run"
    try:
        if run is not None:
            # The benchmark's own evaluator and rule wrap the worker's; its metrics write no model card checks.
            res = erase_until_verified(pipe, spec, config, out_dir=out, erase_fn=rounds_run.erase,
                                       **{**run.loop_inputs(), "evaluator": evaluator, "accept": accept,
                                          "verifier": None})
        else:
            res = erase(pipe, spec, config, out_dir=out, evaluator=evaluator)
    finally:
        shutil.rmtree(out.parent, ignore_errors=True)
    rep = res.report.dump()
    metrics = rep["metrics"]
    t = rep["timings_s"]
    # ESD does not use SPARE's cached samples (it samples x_t itself each step): its time is training + saving.
    stages = ("distill", "fuse") if method == "esd" else ("samples", "saliency", "timesteps", "distill", "fuse")
    erase_s = sum(t.get(s, 0.0) for s in stages)
    rounds = rep.get("rounds")
    kept_verification: dict[str, Any] | None = None
    if method == "spare-loop" and rounds:
        # Every round (with its held-out check, and the verification of a round the rule then refused) is the
        # loop's cost; the benchmark's evaluation and the kept round's verification are left out — both its
        # evaluations where it had two (during the loop, then complete from its saved weights: 0).
        kept = 0 if 0 in verified else rounds["chosen"]
        kept_metrics = verified.get(kept, ({}, 0.0))[0]
        kept_s = sum(verified[k][1] for k in {0, rounds["chosen"]} if k in verified)
        erase_s = rounds["total_seconds"] - evaluation_s[0] - kept_s
        if kept_metrics:
            assert run is not None
            verdict = run.verify(EngineMetrics.model_validate({**kept_metrics, "probe": metrics["probe"]}))
            # The verification's grid (its own seeds, where the loop chose the round), beside the benchmark's.
            seen = kept_metrics.get("summary", {}).get(target) or {}
            kept_verification = {"certified": verdict.ok, "reason": verdict.reason, "seconds": round(kept_s, 1),
                                 "grid": {"seeds": kept_metrics.get("testbed", {}).get("seeds", verification_seeds),
                                          **seen}}
    stage_rss = rep["memory"]["stage_peak_rss_bytes"]
    peak = max(v for k, v in stage_rss.items() if k in stages)
    row = metrics["summary"][target]
    tb = metrics["testbed"]
    judge = metrics.get("judge")
    dc = next((c for c in (judge or {}).get("concepts", []) if c["concept"] == target), None)
    kept_round = next((r for r in rounds["history"] if r["round"] == rounds["chosen"]), {}) if rounds else {}
    return {
        "testbed": testbed.name,
        "target": target,
        # The surrogate the kept round trained toward (the loop may switch the screened one after a round).
        "surrogate": kept_round.get("surrogates", {}).get(target, concept.surrogate_text()),
        "surrogate_named": named is not None,
        "kind": concept_kind(target),
        "method": method,
        "ua": row["ua"], "ira": row["ira"], "cra": row["cra"],
        "ira_rel": row["ira_rel"], "cra_rel": row["cra_rel"], "base_ua": row["base_ua"],
        "attack_success": row["attack_success"],
        "attack_detail": next((t.get("attack_detail") for t in tb["targets"] if t["forget"] == target), None),
        "fid_analogue": tb["fid_analogue"],
        "erase_s": round(erase_s, 2),
        "timings_s": t,
        "peak_rss_bytes": peak,
        "adapter_bytes": rep["sizes"]["adapter_bytes"],
        "fused_bytes": rep["sizes"]["fused_bytes"],
        "unet_bytes": rep["sizes"]["unet_bytes"],
        "forget_gap_closure": metrics["probe"]["forget_gap_closure"],
        "modules": len(rep["adapter"]["target_modules"]) if rep.get("adapter") else None,
        "config": rep["config"],
        "diffusion_ua": dc["ua"] if dc else None,
        "diffusion_base_ua": dc["base_ua"] if dc else None,
        "rounds": len(rounds["history"]) if rounds else 1,
        "rounds_passed": rounds["passed"] if rounds else None,
        "round_history": rounds["history"] if rounds else None,
        "images": {"forget": row["images_forget"], "rest": row["images_rest"]},
        **{k: row[k] for k in ("ua_interval", "ira_rel_interval", "cra_rel_interval")},
        "surrogate_screen": rounds.get("surrogates") if rounds else None,
        "verification": kept_verification,
        "verify_s": round(sum(s for _, s in verified.values()), 2) if verified else None,
        # The rounds' held-out checks, extensions included: with verify_s (less the kept round's verification),
        # the part of erase_s that is not training.
        "check_s": round(sum(r["timings_s"].get("check", 0.0) for r in rounds["history"]), 2) if rounds else None,
    }


def eval_seeds(args: argparse.Namespace) -> list[int]:
    """The seeds of the benchmark's grid: `--eval-seeds` of them from `--eval-seed-start`."""
    return list(range(args.eval_seed_start, args.eval_seed_start + args.eval_seeds))


def named_surrogates(pairs: str) -> dict[str, str]:
    """--surrogate "striped=checkered,circle=heart" -> {"striped": "checkered", "circle": "heart"}."""
    out: dict[str, str] = {}
    for pair in filter(None, (p.strip() for p in pairs.split(","))):
        target, sep, surrogate = pair.partition("=")
        if not sep or not target.strip() or not surrogate.strip():
            raise ValueError(f"--surrogate wants target=surrogate pairs, got {pair!r}")
        out[target.strip()] = surrogate.strip()
    return out


def _key(row: dict) -> str:
    """Summary key: the method, prefixed by the testbed for any testbed but the first."""
    testbed = row.get("testbed", "testbed")
    return row["method"] if testbed == "testbed" else f"{testbed}/{row['method']}"


def summarize(rows: list[dict]) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for key in dict.fromkeys(_key(r) for r in rows):
        rs = [r for r in rows if _key(r) == key]

        def avg(key: str, rs: list[dict] = rs) -> float | None:
            vals = [r[key] for r in rs if r[key] is not None]
            return mean(vals) if vals else None

        out[key] = {
            "runs": len(rs),
            **{k: avg(k) for k in ("ua", "ira", "cra", "ira_rel", "cra_rel", "base_ua", "attack_success",
                                    "fid_analogue", "erase_s", "peak_rss_bytes", "forget_gap_closure",
                                    "diffusion_ua", "rounds")},
            "min_ua": min(r["ua"] for r in rs),
            "min_ira_rel": min((r["ira_rel"] for r in rs if r["ira_rel"] is not None), default=None),
            "min_cra_rel": min((r["cra_rel"] for r in rs if r["cra_rel"] is not None), default=None),
            "adapter_bytes": avg("adapter_bytes"),
            "fused_bytes": avg("fused_bytes"),
            "adapter_fraction_of_unet": (avg("adapter_bytes") / rs[0]["unet_bytes"]) if avg("adapter_bytes") else None,
            # Each row is relative to the sampling reference measured in its own process.
            "peak_rss_vs_sampling": max(r["peak_rss_vs_sampling"] for r in rs),
            # Rows the worker's verification certified (spare-loop only: the others are not verified here).
            "certified": (sum(bool(r["verification"]["certified"]) for r in rs)
                          if all(r.get("verification") for r in rs) else None),
            # The same minima on the verification's own grid, where the loop chose its rounds (spare-loop only).
            **{f"verified_min_{k}": _verified_min(rs, k) for k in ("ua", "ira_rel", "cra_rel")},
        }
    return out


def _verified_min(rows: list[dict], key: str) -> float | None:
    values = [((r.get("verification") or {}).get("grid") or {}).get(key) for r in rows]
    return min(values) if values and all(v is not None for v in values) else None


def targets_check(summary: dict[str, dict[str, Any]], probe: dict[str, Any] | None = None) -> dict[str, Any]:
    """The targets, each with the measured value (pass/fail is secondary): SPARE's on the first testbed, and
    erase-until-verified's on each testbed (second and development: UA >= 0.95 on every target, IRA/CRA >= 0.95 of
    base, time <= 1/5 of ESD's; first: no regression, UA >= 0.99 and IRA/CRA >= 0.97 of base)."""
    checks: dict[str, Any] = {}
    # The development testbed is held to the second's targets: it is where they are worked toward.
    for prefix, ua_min, keep_min in (("", 0.99, 0.97), ("testbed-subword/", 0.95, 0.95), ("testbed-dev/", 0.95, 0.95)):
        loop, esd = summary.get(f"{prefix}spare-loop"), summary.get(f"{prefix}esd")
        if loop:
            name = prefix.rstrip("/") or "testbed"
            checks[f"{name}:loop_min_ua>={ua_min}"] = (loop["min_ua"], loop["min_ua"] >= ua_min)
            for k in ("min_ira_rel", "min_cra_rel"):
                checks[f"{name}:loop_{k}>={keep_min}"] = (loop[k], (loop[k] or 0) >= keep_min)
            if esd:
                checks[f"{name}:loop_time<=esd/5"] = (loop["erase_s"] / esd["erase_s"],
                                                      loop["erase_s"] <= esd["erase_s"] / 5)
    s = summary.get("spare")
    if not s:
        return {k: {"value": v, "met": bool(ok)} for k, (v, ok) in checks.items()}
    e = summary.get("esd")
    checks |= {
        "ua>=0.99": (s["ua"], s["ua"] >= 0.99),
        "ira_rel>=0.97": (s["ira_rel"], (s["ira_rel"] or 0) >= 0.97),
        "cra_rel>=0.97": (s["cra_rel"], (s["cra_rel"] or 0) >= 0.97),
        "attack<=0.10": (s["attack_success"], s["attack_success"] is not None and s["attack_success"] <= 0.10),
        "adapter<=1%unet": (s["adapter_fraction_of_unet"], (s["adapter_fraction_of_unet"] or 1) <= 0.01),
    }
    if probe:
        checks["peak_mem<=1.3x_sampling"] = (probe["ratio"], probe["ratio"] <= 1.3)
    if e:
        checks["time<=esd/10"] = (s["erase_s"] / e["erase_s"], s["erase_s"] <= e["erase_s"] / 10)
        for k, higher in (("ua", True), ("ira", True), ("cra", True), ("attack_success", False)):
            if s[k] is not None and e[k] is not None:
                checks[f"{k}_ahead_of_esd"] = ((s[k], e[k]), s[k] >= e[k] if higher else s[k] <= e[k])
    return {k: {"value": v, "met": bool(ok)} for k, (v, ok) in checks.items()}


def table(summary: dict[str, dict[str, Any]]) -> str:
    head = (f"{'method':<28}{'UA':>7}{'IRA':>7}{'CRA':>7}{'IRA%':>7}{'CRA%':>7}{'FID~':>8}{'attack':>8}"
            f"{'time s':>8}{'RSS/smp':>8}{'adapter':>9}{'fused':>10}{'dcUA':>7}{'rounds':>7}{'cert':>7}")
    lines = [head]

    def f(v: Any, spec: str) -> str:
        return format(v, spec) if isinstance(v, (int, float)) else "-".rjust(int(spec.split(".")[0]))

    for m, s in summary.items():
        lines.append(
            f"{m:<28}{f(s['ua'], '7.3f')}{f(s['ira'], '7.3f')}{f(s['cra'], '7.3f')}"
            f"{f(s['ira_rel'] and 100 * s['ira_rel'], '7.1f')}{f(s['cra_rel'] and 100 * s['cra_rel'], '7.1f')}"
            f"{f(s['fid_analogue'], '8.2f')}{f(s['attack_success'], '8.3f')}{f(s['erase_s'], '8.1f')}"
            f"{f(s['peak_rss_vs_sampling'], '8.2f')}{f(s['adapter_bytes'], '9.0f')}{f(s['fused_bytes'], '10.0f')}"
            f"{f(s['diffusion_ua'], '7.3f')}{f(s['rounds'], '7.2f')}"
            f"{(str(s['certified']) + '/' + str(s['runs'])) if s.get('certified') is not None else '-':>7}"
        )
    return "\n".join(lines)


def chart(summary: dict[str, dict[str, Any]], path: Path) -> None:
    """Grouped bars per method: UA, IRA % of base, CRA % of base, 1 − attack success; and erasure seconds."""
    from PIL import Image, ImageDraw

    metrics = [("UA", "ua"), ("IRA rel", "ira_rel"), ("CRA rel", "cra_rel"), ("1-attack", "attack_success")]
    colors = [(200, 60, 60), (60, 130, 200), (60, 170, 90), (150, 90, 180)]
    methods = list(summary)
    w, h, left, bottom, top = 220 * len(methods) + 380, 360, 50, 40, 30
    img = Image.new("RGB", (w, h), "white")
    d = ImageDraw.Draw(img)
    plot_h = h - bottom - top
    d.line((left, top, left, h - bottom), fill="black")
    d.line((left, h - bottom, left + 220 * len(methods), h - bottom), fill="black")
    for frac in (0, 0.25, 0.5, 0.75, 1.0):
        y = h - bottom - frac * plot_h
        d.text((8, y - 6), f"{frac:.2f}", fill="black")
        d.line((left, y, left + 220 * len(methods), y), fill=(225, 225, 225))
    for i, m in enumerate(methods):
        x0 = left + 20 + i * 220
        for j, (_, key) in enumerate(metrics):
            v = summary[m][key]
            if v is None:
                continue
            v = 1 - v if key == "attack_success" else min(v, 1.2)
            y = h - bottom - max(0.0, v) / 1.0 * plot_h
            d.rectangle((x0 + j * 45, y, x0 + j * 45 + 38, h - bottom), fill=colors[j])
        d.text((x0, h - bottom + 8), m, fill="black")
    # Time panel.
    tx = left + 220 * len(methods) + 40
    tmax = max((summary[m]["erase_s"] or 0) for m in methods) or 1
    d.text((tx, 8), "erasure seconds", fill="black")
    for i, m in enumerate(methods):
        y = top + 20 + i * 40
        bar = (summary[m]["erase_s"] or 0) / tmax * 150
        d.rectangle((tx + 90, y, tx + 90 + bar, y + 24), fill=(120, 120, 120))
        d.text((tx, y + 6), m, fill="black")
        d.text((tx + 95 + bar, y + 6), f"{summary[m]['erase_s']:.0f}", fill="black")
    for j, (label, _) in enumerate(metrics):
        d.rectangle((left + 10 + j * 90, 6, left + 22 + j * 90, 18), fill=colors[j])
        d.text((left + 26 + j * 90, 6), label, fill="black")
    img.save(path)


def finish(result: dict[str, Any], out: Path) -> None:
    result["summary"] = summarize(result["rows"])
    result["targets_check"] = targets_check(result["summary"], result.get("memory_probe"))
    out.write_text(json.dumps(result, indent=2))
    if not result["summary"]:
        print(f"no run finished: {len(result.get('errors', []))} failed, see `errors` in {out}")
        return
    chart(result["summary"], out.with_suffix(".png"))
    print(table(result["summary"]))
    print("RSS/smp: in-process peak over sampling alone; it only grows across the runs of one process.")
    if result.get("memory_probe"):
        m = result["memory_probe"]
        print(f"memory probe (fresh processes): SPARE on {m['target']} {m['spare']['peak_rss_bytes'] / 2**20:.0f} MiB"
              f" vs sampling alone {m['sampling']['peak_rss_bytes'] / 2**20:.0f} MiB = {m['ratio']:.2f}x")
    for m, s in result["summary"].items():
        if s.get("verified_min_ua") is not None:
            ira, cra = (s[f"verified_min_{k}"] for k in ("ira_rel", "cra_rel"))
            print(f"{m}: on the verification's own grid (where the loop chose its rounds) min UA "
                  f"{s['verified_min_ua']:.3f}, min IRA {'-' if ira is None else f'{100 * ira:.1f} %'}, "
                  f"min CRA {'-' if cra is None else f'{100 * cra:.1f} %'}")
    for k, v in result["targets_check"].items():
        print(f"  {k:<24} {v['value']}  {'met' if v['met'] else 'NOT met'}")


def merge(paths: list[Path], out: Path) -> int:
    parts = [json.loads(p.read_text()) for p in paths]
    for part in parts:
        for row in part["rows"]:
            row.setdefault("peak_rss_vs_sampling", row["peak_rss_bytes"] / part["sampling_reference"]["peak_rss_bytes"])
    result = {**parts[0], "merged_from": [str(p) for p in paths], "rows": [r for p in parts for r in p["rows"]]}
    result["targets"] = list(dict.fromkeys(t for p in parts for t in p["targets"]))
    # Results written before runs listed their testbeds name one ("testbed").
    result["testbeds"] = list(dict.fromkeys(tb for p in parts for tb in p.get("testbeds", [p.get("testbed")]) if tb))
    # The memory probe runs once, at the end of a run: a part stopped before it has none; take the part that ran it.
    probes = [p["memory_probe"] for p in parts if p.get("memory_probe")]
    if probes:
        result["memory_probe"] = probes[-1]
    result["sampling_reference"] = [p["sampling_reference"] for p in parts]
    result["finished_at"] = max(p.get("finished_at", "") for p in parts)
    finish(result, out)
    return 0


def main(argv: list[str] | None = None) -> int:
    from bench.cli import add_eval_seeds, config_params
    from core.config import get_settings

    parser = argparse.ArgumentParser(description="SPARE vs ablations vs ESD on the testbed.")
    parser.add_argument("--testbed", type=Path, default=None, help="Testbed folder (default: core.testbed).")
    parser.add_argument("--testbeds", default=None,
                        help="Comma-separated testbeds, names (full, subword, dev) or built testbed folders: every "
                        "method on each, in one run.")
    parser.add_argument("--diffusion-judge", action=argparse.BooleanOptionalAction, default=True,
                        help="Also score UA with the diffusion classifier on held-out prompts (any model's judge).")
    parser.add_argument("--objects", default="circle,triangle,heart", help="Comma-separated object targets.")
    parser.add_argument("--styles", default="striped,dotted,checkered", help="Comma-separated style targets.")
    parser.add_argument("--methods", default=",".join(METHODS), help=f"Subset of {','.join(METHODS)}.")
    parser.add_argument("--surrogate", default="",
                        help="Comma-separated target=surrogate pairs: the request names that surrogate (kept by the "
                             "surrogate screen, as a requester's choice is); other targets get the vocabulary's.")
    add_eval_seeds(parser)
    from core.erasure.verified import GRID_SETTLING_SEED0

    verification_seeds = get_settings().verify_grid_seeds
    parser.add_argument("--eval-seed-start", type=int, default=verification_seeds,
                        help="First seed of the benchmark's grid (default: LETHE_VERIFY_GRID_SEEDS, the first after "
                        f"the verification's first draw, seeds 0..{verification_seeds - 1} now; its further seeds "
                        f"start at {GRID_SETTLING_SEED0}: the loop keeps a round that grid passed, so the benchmark "
                        "scores it on other images).")
    parser.add_argument("--attack-budget", type=int, default=CALIBRATED_BUDGET,
                        help="Soft-prompt attack steps; 0 = no attacks. Default: the calibrated budget "
                        "(docs/robustness.md).")
    parser.add_argument("--spare-steps", type=int, default=None, help="Override SPARE steps.")
    parser.add_argument("--spare-params", type=config_params("spare"), default=None,
                        help="JSON of SpareConfig fields for all SPARE variants.")
    parser.add_argument("--esd-steps", type=int, default=None, help="Override ESD steps.")
    parser.add_argument("--esd-params", type=config_params("esd"), default=None, help="JSON of EsdConfig fields.")
    parser.add_argument("--sample-steps", type=int, default=10,
                        help="DDIM steps for SPARE's cached samples and ESD's x_t (all methods alike).")
    parser.add_argument("--ablations-on", default=None,
                        help="Comma-separated targets that also get the ablations (default: every target).")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (a shared CPU: keep it low).")
    parser.add_argument("--out", type=Path, default=RESULTS / "erasure.json")
    parser.add_argument("--memory-target", default="heart",
                        help="Target of the fresh-process memory probe (SPARE vs sampling alone); '' skips it.")
    parser.add_argument("--add-memory-probe", type=Path, default=None,
                        help="Only run the memory probe and add it to this finished result file.")
    parser.add_argument("--memory-child", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--merge", type=Path, nargs="+", default=None,
                        help="Merge finished partial result files (e.g. objects and styles run in parallel).")
    args = parser.parse_args(argv)
    try:
        args.surrogates = named_surrogates(args.surrogate)
    except ValueError as exc:
        parser.error(str(exc))
    if args.memory_child:
        torch.set_flush_denormal(True)
        print(json.dumps(memory_child(args.memory_child, args.threads)))
        return 0
    if args.add_memory_probe:
        result = json.loads(args.add_memory_probe.read_text())
        result["memory_probe"] = memory_probe(args.memory_target, args.threads)
        finish(result, args.add_memory_probe)
        return 0
    if args.merge:
        return merge(args.merge, args.out)

    from bench.cli import targets as target_names
    from bench.cli import testbed_dirs
    from core.spare.loading import pipeline_dir
    from core.testbed.loading import load_pipeline
    from core.testbed.paths import testbed_dir

    torch.set_num_threads(args.threads)
    torch.set_flush_denormal(True)
    if args.testbeds:
        testbeds = testbed_dirs(args.testbeds)
    else:
        testbeds = [args.testbed or testbed_dir()]
    testbed = testbeds[0]
    pipes = {tb: load_pipeline(pipeline_dir(tb)) for tb in testbeds}
    pipe = pipes[testbed]
    targets = target_names(args)
    methods = [m for m in args.methods.split(",") if m]
    unknown = set(methods) - set(METHODS)
    if unknown:
        parser.error(f"unknown methods: {sorted(unknown)}")
    sampling = sampling_reference(pipe)
    result: dict[str, Any] = {
        "testbed": str(testbed), "testbeds": [str(tb) for tb in testbeds], "targets": targets, "methods": methods,
        "eval_seeds": args.eval_seeds, "eval_seed_list": eval_seeds(args), "surrogates_named": args.surrogates,
        "attack_budget": args.attack_budget, "threads": args.threads, "sampling_reference": sampling,
        "started_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "rows": [],
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    ablation_targets = targets if args.ablations_on is None else [t for t in args.ablations_on.split(",") if t]
    main_methods = [m for m in methods if m in ("spare-loop", "spare", "esd")]
    jobs = [(tb, t, m) for tb in testbeds for t in targets for m in main_methods]
    jobs += [(testbed, t, m) for t in ablation_targets for m in methods if m not in main_methods]
    result["ablation_targets"] = ablation_targets
    for tb, target, method in jobs:
        t0 = time.perf_counter()
        cached = tb.resolve() == testbed_dir().resolve()
        try:
            row = one_run(pipes[tb], tb, target, method, args, cached)
        except Exception as exc:  # one broken row must not lose the others: recorded, reported, skipped
            print(f"{tb.name:<16} {target:<10} {method:<14} FAILED: {type(exc).__name__}: {exc}", flush=True)
            result.setdefault("errors", []).append({"testbed": tb.name, "target": target, "method": method,
                                                    "error": f"{type(exc).__name__}: {exc}"})
            args.out.write_text(json.dumps(result, indent=2))
            continue
        row["run_s"] = round(time.perf_counter() - t0, 1)
        row["peak_rss_vs_sampling"] = row["peak_rss_bytes"] / sampling["peak_rss_bytes"]
        result["rows"].append(row)
        print(f"{tb.name:<16} {target:<10} {method:<14} UA {row['ua']:.3f} IRA {row['ira']:.3f} CRA {row['cra']:.3f} "
              f"dcUA {row['diffusion_ua']} attack {row['attack_success']} rounds {row['rounds']} "
              f"erase {row['erase_s']:.1f}s (run {row['run_s']}s)", flush=True)
        result["summary"] = summarize(result["rows"])
        result["targets_check"] = targets_check(result["summary"], result.get("memory_probe"))
        args.out.write_text(json.dumps(result, indent=2))
    if args.memory_target:
        result["memory_probe"] = memory_probe(args.memory_target, args.threads)
    result["finished_at"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    finish(result, args.out)
    return 0 if result["rows"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
