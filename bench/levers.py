"""Which escalation levers help: each lever of erase-until-verified applied alone to a round, on both testbeds.

The loop escalates a round whose UA is short by the next lever in `core.spare.levers.SPARE_LEVERS` and rolls a
round that broke retention back with `RETENTION_LEVERS`. This benchmark measures what each lever does on its own:
for every testbed and target, one erasure with the start config (the service's defaults changed by `--start`),
then one per lever with that lever's change on top (`core.spare.levers.lever_change`), each scored on the
testbed's grid (UA, IRA/CRA % of base) and by the loop's own held-out round check. The start defaults to 8
distillation steps of the default 100, so that round 1 falls short on the first testbed too: at the defaults
every first-testbed target is erased in one round and no lever has anything to win there, while on the grid
6 steps leave UA between 0.0 and 1.0 over circle, heart, striped and dotted and 12 steps erase all four. The
levers then show what makes a short round more effective, measured where defaults may be tuned; the second
testbed is reported beside it and never used to choose the order.

Requests go through the generic path (each testbed's lethe.json, the surrogate screen), as workers run them.
Prints a table per testbed (mean change over the targets against the start, and on how many targets the lever
raised UA while keeping IRA/CRA >= 95 % of base), writes bench/results/levers.json and levers.png (rewritten
after every target).

    python bench/levers.py                                   # both testbeds, six targets, every lever
    python bench/levers.py --testbeds full --objects circle --styles '' --levers capacity,steps
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path
from statistics import mean
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

RESULTS = Path(__file__).resolve().parent / "results"
KEEP = 0.95  # IRA/CRA share of base a lever must keep to count as helping


def levers_for(pipe: Any, testbed: Path, target: str, levers: list[str], args: argparse.Namespace) -> list[dict]:
    """The start round and one round per lever for `target` on `testbed`, each scored."""
    from core.config import get_settings
    from core.erasure.judging import verified_rounds
    from core.erasure.verification import Thresholds
    from core.evaluation.vocabulary import load_vocabulary
    from core.spare import ErasureSpec, SpareConfig, erase
    from core.spare.levers import lever_change
    from core.spare.loading import pipeline_dir
    from core.spare.prompting import fit_request
    from core.spare.specs import ConceptSpec
    from core.spare.testbed_eval import concept_kind, testbed_evaluator

    settings = get_settings()
    model_dir = pipeline_dir(testbed)
    start_params = json.loads(args.start) if args.start else {}
    requested = ErasureSpec(concepts=[ConceptSpec(target=target)])
    config = SpareConfig(seed=args.seed, device="cpu", sample_steps=args.sample_steps, max_rounds=1)
    spec, config = fit_request(requested, config, load_vocabulary(model_dir))
    start = config.model_copy(update=start_params)
    spec, screened, check, _ = verified_rounds(pipe, model_dir, requested, spec, start, settings,
                                               judge_name="model-classifier", fingerprint=None,
                                               thresholds=Thresholds.for_request(settings))
    grid = testbed_evaluator([target], testbed=testbed, seeds=list(range(args.eval_seeds)), cached_base=True)
    variants = [("start", {})] + [(name, lever_change(name, start)) for name in levers]
    rows = []
    for name, change in variants:
        if name != "start" and not change:
            continue  # the lever cannot go further from the start config
        verdicts: list[Any] = []

        def evaluator(erased: Any, base: Any, verdicts: list[Any] = verdicts) -> dict[str, Any]:
            verdicts.append(check(erased, base))
            return grid(erased, base)

        out = Path(tempfile.mkdtemp(prefix="lethe-levers-")) / "run"
        try:
            res = erase(pipe, spec, start.model_copy(update=change), out_dir=out, evaluator=evaluator)
        finally:
            shutil.rmtree(out.parent, ignore_errors=True)
        rep = res.report.dump()
        scores = rep["metrics"]["summary"][target]
        timings = rep["timings_s"]
        verdict = verdicts[0]
        rows.append({
            "testbed": testbed.name, "target": target, "kind": concept_kind(target),
            "surrogate": spec.concepts[0].surrogate_text(), "lever": name, "change": change,
            "ua": scores["ua"], "ira_rel": scores["ira_rel"], "cra_rel": scores["cra_rel"],
            "base_ua": scores["base_ua"],
            "check": {"ua": verdict.ua, "retention": verdict.retention, "passed": verdict.passed},
            "erase_s": round(sum(timings.get(s, 0.0) for s in ("samples", "saliency", "timesteps", "distill",
                                                                "fuse")), 2),
            "adapter_bytes": rep["sizes"]["adapter_bytes"],
            "modules": len(rep["adapter"]["target_modules"]) if rep.get("adapter") else None,
            "surrogate_screen": [s.model_dump(mode="json") for s in screened],
        })
        r = rows[-1]
        print(f"{r['testbed']:<16} {target:<10} {name:<11} UA {r['ua']:.3f} IRA% {_pct(r['ira_rel'])} "
              f"CRA% {_pct(r['cra_rel'])} check {'pass' if verdict.passed else 'fail'} erase {r['erase_s']:.1f}s",
              flush=True)
    return rows


def _pct(v: float | None) -> str:
    return f"{100 * v:6.1f}" if v is not None else "     -"


def summarize(rows: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per testbed and lever: mean change against the same target's start round, and how often it helped."""
    out: dict[str, dict[str, Any]] = {}
    for testbed in dict.fromkeys(r["testbed"] for r in rows):
        starts = {r["target"]: r for r in rows if r["testbed"] == testbed and r["lever"] == "start"}
        per: dict[str, Any] = {}
        for lever in dict.fromkeys(r["lever"] for r in rows if r["testbed"] == testbed):
            rs = [r for r in rows if r["testbed"] == testbed and r["lever"] == lever and r["target"] in starts]
            per[lever] = {
                "targets": len(rs),
                "ua": round(mean(r["ua"] for r in rs), 4), "min_ua": min(r["ua"] for r in rs),
                **{f"d_{k}": _delta(rs, starts, k) for k in ("ua", "ira_rel", "cra_rel")},
                "helped": sum(r["ua"] > starts[r["target"]]["ua"] and _kept(r) for r in rs),
                "checks_passed": sum(r["check"]["passed"] for r in rs),
                "erase_s": round(mean(r["erase_s"] for r in rs), 2),
            }
        out[testbed] = per
    return out


def _delta(rows: list[dict[str, Any]], starts: dict[str, dict[str, Any]], key: str) -> float | None:
    """Mean change of `key` against each row's target's start round."""
    vals = [r[key] - starts[r["target"]][key] for r in rows
            if r[key] is not None and starts[r["target"]][key] is not None]
    return round(mean(vals), 4) if vals else None


def _kept(row: dict[str, Any]) -> bool:
    return all(row[k] is None or row[k] >= KEEP for k in ("ira_rel", "cra_rel"))


def _num(v: float | None, spec: str, scale: float = 1.0) -> str:
    return format(v * scale, spec) if v is not None else "-".rjust(int(spec.split(".")[0]))


def table(summary: dict[str, dict[str, Any]]) -> str:
    lines = []
    for testbed, per in summary.items():
        lines.append(f"{testbed}: mean over targets, change against the start round")
        lines.append(f"{'lever':<12}{'UA':>7}{'min UA':>8}{'dUA':>8}{'dIRA%':>8}{'dCRA%':>8}{'helped':>8}"
                     f"{'checks':>8}{'erase s':>9}")
        for lever, s in per.items():
            lines.append(f"{lever:<12}{s['ua']:7.3f}{s['min_ua']:8.3f}{_num(s['d_ua'], '8.3f')}"
                         f"{_num(s['d_ira_rel'], '8.1f', 100)}{_num(s['d_cra_rel'], '8.1f', 100)}"
                         f"{s['helped']:>5}/{s['targets']:<2}{s['checks_passed']:>5}/{s['targets']:<2}"
                         f"{s['erase_s']:9.1f}")
    return "\n".join(lines)


def chart(summary: dict[str, dict[str, Any]], path: Path) -> None:
    """One panel per testbed: per lever, the mean change in UA and in IRA/CRA % of base against the start."""
    from PIL import Image, ImageDraw

    series = [("dUA", "d_ua", (200, 60, 60)), ("dIRA", "d_ira_rel", (60, 130, 200)),
              ("dCRA", "d_cra_rel", (60, 170, 90))]
    panels = list(summary.items())
    n = max((len(per) for _, per in panels), default=1)
    pw, h, left, mid, scale = 70 * n + 60, 360, 50, 190, 300.0  # y: 0 at `mid`, 300 px per 1.0 (±0.5 shown)
    img = Image.new("RGB", (pw * max(1, len(panels)), h), "white")
    d = ImageDraw.Draw(img)
    for p, (testbed, per) in enumerate(panels):
        x = p * pw
        d.text((x + left, 8), f"{testbed}: change vs start", fill="black")
        for v in (-0.5, -0.25, 0.0, 0.25, 0.5):
            y = mid - v * scale
            d.line((x + left, y, x + pw - 10, y), fill="black" if v == 0 else (225, 225, 225))
            d.text((x + 8, y - 6), f"{v:+.2f}", fill="black")
        for i, (lever, s) in enumerate(per.items()):
            x0 = x + left + 10 + i * 70
            for j, (_, key, color) in enumerate(series):
                v = max(-0.5, min(0.5, s[key] or 0.0))
                d.rectangle((x0 + j * 18, min(mid, mid - v * scale), x0 + j * 18 + 14, max(mid, mid - v * scale)),
                            fill=color)
            d.text((x0, h - 40), lever[:10], fill="black")
        for j, (label, _, color) in enumerate(series):
            d.rectangle((x + left + j * 70, 24, x + left + 12 + j * 70, 36), fill=color)
            d.text((x + left + 16 + j * 70, 24), label, fill="black")
    img.save(path)


def _known(lever: str) -> bool:
    """Whether `core.spare.levers.lever_change` has a case for `lever` (in the loop's order or not yet)."""
    from core.spare import SpareConfig
    from core.spare.levers import lever_change

    try:
        lever_change(lever, SpareConfig())
    except ValueError:
        return False
    return True


def main(argv: list[str] | None = None) -> int:
    from bench.cli import add_eval_seeds, add_target_options, run_targets, testbed_dirs
    from bench.cli import targets as target_names
    from core.spare.levers import RETENTION_LEVERS, SPARE_LEVERS

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_target_options(parser, testbeds="full,subword")
    parser.add_argument("--levers", default=",".join(dict.fromkeys(SPARE_LEVERS + RETENTION_LEVERS)),
                        help="Comma-separated levers, each applied alone to the start config.")
    parser.add_argument("--start", default='{"steps": 8}',
                        help="JSON of SpareConfig fields the start round changes from the service's defaults "
                             "('{}': the defaults themselves).")
    add_eval_seeds(parser)
    parser.add_argument("--out", type=Path, default=RESULTS / "levers.json")
    args = parser.parse_args(argv)
    levers = list(dict.fromkeys(n for n in args.levers.split(",") if n))  # a lever in both orders runs once
    unknown = [n for n in levers if not _known(n)]
    if unknown:
        parser.error(f"unknown levers: {sorted(unknown)}")

    torch.set_num_threads(args.threads)
    torch.set_flush_denormal(True)
    testbeds = testbed_dirs(args.testbeds)
    targets = target_names(args)
    result: dict[str, Any] = {
        "testbeds": [str(tb) for tb in testbeds], "targets": targets, "levers": levers, "start": args.start,
        "eval_seeds": args.eval_seeds, "threads": args.threads, "keep": KEEP,
        "started_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "rows": [],
    }
    run_targets(testbeds, targets, result, args.out,
                measure=lambda pipe, testbed, target: levers_for(pipe, testbed, target, levers, args),
                summarize=summarize, chart=lambda r: chart(r["summary"], args.out.with_suffix(".png")))
    print(table(result["summary"]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
