"""What the service's verification decides on erasures as workers run them, on both testbeds: the judge's first
draw of held-out images alone vs the sequential sample verification draws while a verdict is uncertain
(LETHE_JUDGE_MAX_IMAGES), each with the grid diagnostics a worker adds, at the service's thresholds.

Each target is erased as a worker erases it (the testbed's lethe.json phrases the request, the surrogate screen,
rounds with the held-out check, the verification as the acceptance rule of a round whose check passed, the
service's round budget). On every round the check passes both verifications run with the testbed's own
classifier as the judge (what `auto` picks for a folder that ships one) and `core.erasure.verification.verify`
gives each verdict: certified, or why not; the sequential one is the rule the loop reads. The row reports the
kept round's. A verdict the first draw alone gets wrong is what a certificate resting on a dozen images risks.

Prints a table, writes bench/results/verdicts.json and bench/results/verdicts.png (both rewritten after every
target).

    python bench/verdicts.py                                      # both testbeds, six targets each
    python bench/verdicts.py --testbeds subword --objects circle --styles ''
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

RESULTS = Path(__file__).resolve().parent / "results"
MODES = ("first_draw", "sequential")


def verdicts(pipe: Any, testbed: Path, target: str, args: argparse.Namespace) -> dict[str, Any]:
    """Erase `target` as workers do, then verify the kept round both ways."""
    from bench.erasure import RoundTracker, method_config
    from core.config import get_settings
    from core.erasure.judging import grid_diagnostics, job_evaluator
    from core.erasure.verification import Thresholds
    from core.erasure.verified import verification_grid_seeds, verified_erasure
    from core.evaluation.vocabulary import load_vocabulary
    from core.spare import ErasureSpec
    from core.spare.loading import pipeline_dir
    from core.spare.prompting import fit_request
    from core.spare.report import EngineMetrics
    from core.spare.rounds import erase_until_verified
    from core.spare.specs import ConceptSpec

    settings = get_settings()
    thresholds = Thresholds.for_request(settings)
    model_dir = pipeline_dir(testbed)
    requested = ErasureSpec(concepts=[ConceptSpec(target=target)])
    spec, config = fit_request(requested, method_config("spare-loop", args), load_vocabulary(model_dir))
    run = verified_erasure(pipe, model_dir, requested, spec, config, settings, judge_name="model-classifier",
                           fingerprint=None, thresholds=thresholds, attacks=False)
    spec = run.spec
    # The worker's evaluator (sequential), and the same judge and grid reading the first draw only.
    first = job_evaluator(model_dir, spec, config, settings, judge_name="model-classifier", fingerprint=None,
                          diagnostics=grid_diagnostics(model_dir, [target], seeds=verification_grid_seeds(settings),
                                                        attacks=False))
    # Both verdicts of every evaluated round, by round (0: the kept round, reloaded after the loop).
    by_round: dict[int, dict[str, Any]] = {}
    rounds_run = RoundTracker()

    def evaluate(erased: Any, base: Any, complete: bool = False, judged: Any = None) -> dict[str, Any]:
        metrics: dict[str, Any] = {}
        modes = by_round.setdefault(rounds_run.key(), {})
        for mode in MODES:
            t0 = time.perf_counter()
            # The loop's metrics are the sequential verification's (the last mode's): `judged`, a kept round's
            # evidence handed back, is that evaluator's own.
            metrics = (run.evaluator(erased, base, complete=complete, judged=judged) if mode == "sequential"
                       else first(erased, base, complete=complete))
            verdict = run.verify(EngineMetrics.model_validate(metrics))
            concept = metrics["judge"]["concepts"][0]
            modes[mode] = {
                "certified": verdict.ok, "reason": verdict.reason, "ua": concept["ua"],
                "ua_interval": concept["ua_interval"], "images": concept["images"],
                "draws": metrics["judge"]["draws"], "seconds": round(time.perf_counter() - t0, 1),
                "retention": {f"{r['group']}:{r['kind']}": [r["retention"], r["images"]]
                              for r in metrics["judge"]["retention"]},
                "grid": metrics.get("summary", {}).get(target),
                # The worker's verification draws its grid only on judge evidence that passes.
                "grid_skipped": bool(metrics.get("diagnostics_skipped")),
            }
        return metrics

    work = Path(tempfile.mkdtemp(prefix="lethe-verdicts-"))
    t0 = time.perf_counter()
    try:
        result = erase_until_verified(pipe, spec, config, out_dir=work / "out", erase_fn=rounds_run.erase,
                                      **{**run.loop_inputs(), "evaluator": evaluate})
    finally:
        shutil.rmtree(work, ignore_errors=True)
    rounds = result.report.rounds
    chosen = rounds.chosen if rounds else 1
    kept = rounds.kept_surrogates() if rounds else {}  # the loop may have switched the screened surrogate
    return {"testbed": testbed.name, "target": target, "surrogate": kept.get(target, spec.concepts[0].surrogate_text()),
            "rounds": len(rounds.history) if rounds else 1, "rounds_passed": rounds.passed if rounds else None,
            "chosen": chosen, "refused": {r.round: r.refused for r in rounds.history if r.refused} if rounds else {},
            "seconds": round(time.perf_counter() - t0, 1), **(by_round[0] if 0 in by_round else by_round[chosen])}


def summarize(rows: list[dict[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for testbed in dict.fromkeys(r["testbed"] for r in rows):
        rs = [r for r in rows if r["testbed"] == testbed]
        out[testbed] = {
            "targets": len(rs),
            **{f"certified_{mode}": sum(r[mode]["certified"] for r in rs) for mode in MODES},
            "refused_only_by_sequential": [r["target"] for r in rs
                                           if r["first_draw"]["certified"] and not r["sequential"]["certified"]],
            "certified_only_by_sequential": [r["target"] for r in rs
                                             if r["sequential"]["certified"] and not r["first_draw"]["certified"]],
            "mean_images": {mode: sum(r[mode]["images"] for r in rs) / len(rs) for mode in MODES},
        }
    return out


def _verdict(v: dict[str, Any], draws: bool) -> str:
    n = f"{v['images']}, {v['draws']}" if draws else f"{v['images']}"
    return f"{v['ua']:.3f} ({n}) {'certified' if v['certified'] else 'refused'}"


def table(rows: list[dict[str, Any]]) -> str:
    head = (f"{'testbed':<17}{'target':<11}{'rounds':>7}  {'first draw: UA (n) verdict':<34}"
            f"{'sequential: UA (n, draws) verdict':<40}")
    lines = [head]
    for r in rows:
        lines.append(f"{r['testbed']:<17}{r['target']:<11}{r['rounds']:>7}  "
                     f"{_verdict(r['first_draw'], False):<34}{_verdict(r['sequential'], True):<40}")
    return "\n".join(lines)


def chart(rows: list[dict[str, Any]], path: Path) -> None:
    """Per target, UA on the first draw and on the sequential sample (bars), and each verdict (C / R)."""
    from PIL import Image, ImageDraw

    colors = {"first_draw": (150, 150, 150), "sequential": (60, 130, 200)}
    w, h, left, bottom, top = 90 * len(rows) + 80, 340, 50, 70, 40
    img = Image.new("RGB", (w, h), "white")
    d = ImageDraw.Draw(img)
    plot_h = h - bottom - top
    for frac in (0.0, 0.5, 0.75, 0.9, 1.0):
        y = h - bottom - frac * plot_h
        d.line((left, y, w - 20, y), fill=(200, 60, 60) if frac == 0.9 else (225, 225, 225))
        d.text((8, y - 6), f"{frac:.2f}", fill="black")
    for i, r in enumerate(rows):
        x0 = left + 10 + i * 90
        for j, mode in enumerate(MODES):
            y = h - bottom - r[mode]["ua"] * plot_h
            d.rectangle((x0 + j * 34, y, x0 + j * 34 + 28, h - bottom), fill=colors[mode])
            d.text((x0 + j * 34 + 8, y - 14), "C" if r[mode]["certified"] else "R", fill="black")
        d.text((x0, h - bottom + 8), r["target"], fill="black")
        d.text((x0, h - bottom + 24), r["testbed"].replace("testbed-", "")[:10], fill="black")
    d.text((left, 8), "UA: first draw (grey) vs sequential (blue); C certified, R refused; red line: threshold",
           fill="black")
    img.save(path)


def main(argv: list[str] | None = None) -> int:
    from bench.cli import add_target_options, config_params, run_targets, testbed_dirs
    from bench.cli import targets as target_names

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_target_options(parser, testbeds="subword,full")
    parser.add_argument("--spare-steps", type=int, default=None, help="Override SPARE steps (toy runs only).")
    parser.add_argument("--spare-params", type=config_params("spare"), default=None,
                        help="JSON of SpareConfig fields (toy runs only).")
    parser.add_argument("--out", type=Path, default=RESULTS / "verdicts.json")
    args = parser.parse_args(argv)

    from core.config import get_settings

    torch.set_num_threads(args.threads)
    torch.set_flush_denormal(True)
    settings = get_settings()
    testbeds = testbed_dirs(args.testbeds)
    targets = target_names(args)
    result: dict[str, Any] = {
        "testbeds": [str(tb) for tb in testbeds], "targets": targets, "threads": args.threads,
        "thresholds": {"min_unlearning_accuracy": settings.verify_min_unlearning_accuracy,
                       "min_retention": settings.verify_min_retention},
        "judge_images": {"forget": settings.judge_forget_images, "retain": settings.judge_retain_images,
                         "max": settings.judge_max_images},
        "started_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "rows": [],
    }

    def measure(pipe: Any, testbed: Path, target: str) -> list[dict[str, Any]]:
        row = verdicts(pipe, testbed, target, args)
        print(table([row]).splitlines()[-1], flush=True)
        return [row]

    run_targets(testbeds, targets, result, args.out, measure=measure, summarize=summarize,
                chart=lambda r: chart(r["rows"], args.out.with_suffix(".png")))
    print(table(result["rows"]))
    for testbed, s in result["summary"].items():
        print(f"{testbed}: certified {s['certified_first_draw']}/{s['targets']} on the first draw, "
              f"{s['certified_sequential']}/{s['targets']} on the sequential sample; refused only by the "
              f"sequential sample: {', '.join(s['refused_only_by_sequential']) or 'none'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
