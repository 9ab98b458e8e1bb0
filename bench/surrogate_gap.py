"""Which surrogate an erasure should train toward: the base model's noise-space gap between a target and each
candidate (`core.evaluation.surrogate_gap`), beside what a round toward each candidate did.

For each target, every other declared concept of its kind is a candidate; the gap is what the adapter has to move
the target's prediction by. With `--against` (a `bench/erasure.py` result holding one round toward each candidate,
e.g. `surrogates_dev_seed23.json`) each candidate's UA / IRA / CRA % of base is printed beside its gap, and per
target the Spearman rank correlation of gap and IRA (negative: nearer surrogates kept more).

    python bench/surrogate_gap.py --testbed DIR --against bench/results/surrogates_dev_seed23.json \\
        --out bench/results/surrogate_gap_dev_seed23.json

Prints a table, writes JSON (`--out`) and a chart beside it.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

RESULTS = Path(__file__).resolve().parent / "results"


def spearman(xs: list[float], ys: list[float]) -> float | None:
    """Spearman's rank correlation (average ranks for ties); None under three pairs or a constant side."""
    if len(xs) < 3:
        return None

    def ranks(values: list[float]) -> list[float]:
        order = sorted(range(len(values)), key=lambda i: values[i])
        out = [0.0] * len(values)
        i = 0
        while i < len(order):
            j = i
            while j + 1 < len(order) and values[order[j + 1]] == values[order[i]]:
                j += 1
            for k in range(i, j + 1):
                out[order[k]] = (i + j) / 2
            i = j + 1
        return out

    rx, ry = ranks(xs), ranks(ys)
    mx, my = sum(rx) / len(rx), sum(ry) / len(ry)
    sx = sum((a - mx) ** 2 for a in rx) ** 0.5
    sy = sum((b - my) ** 2 for b in ry) ** 0.5
    if sx == 0 or sy == 0:
        return None
    return sum((a - mx) * (b - my) for a, b in zip(rx, ry, strict=True)) / (sx * sy)


def chart(result: dict[str, Any], path: Path) -> None:
    """Per target, each candidate's gap (bar) with its IRA % of base (text) where measured."""
    from PIL import Image, ImageDraw

    rows = result["rows"]
    bar, gap_px, height, left = 14, 30, 180, 30
    targets = list(dict.fromkeys(r["target"] for r in rows))
    width = left + sum(len([r for r in rows if r["target"] == t]) * bar + gap_px for t in targets) + 20
    img = Image.new("RGB", (max(480, width), height + 90), "white")
    d = ImageDraw.Draw(img)
    d.text((left, 6), f"{result['testbed']}: noise-space gap per candidate surrogate (bars), IRA % of base below",
           fill="black")
    top, x = 30, left
    biggest = max(r["gap"] for r in rows) or 1.0
    for t in targets:
        for r in [r for r in rows if r["target"] == t]:
            h = int(r["gap"] / biggest * height)
            d.rectangle((x, top + height - h, x + bar - 3, top + height), fill=(59, 130, 200))
            d.text((x, top + height + 4), r["surrogate"][:2], fill="black")
            if r.get("ira_rel") is not None:
                d.text((x - 2, top + height + 18), f"{100 * r['ira_rel']:.0f}", fill=(120, 0, 0))
            x += bar
        d.text((x - bar * 3, top + height + 34), t, fill="black")
        x += gap_px
    img.save(path)


def main(argv: list[str] | None = None) -> int:
    from bench.cli import add_target_options, targets, testbed_dirs

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_target_options(parser, testbeds="full", sampling=False)
    parser.add_argument("--testbed", default=None, help="One testbed (name or built folder); overrides --testbeds.")
    parser.add_argument("--against", type=Path, default=None,
                        help="bench/erasure.py result with one round toward each candidate (target/surrogate rows).")
    parser.add_argument("--prompts", type=int, default=4, help="Held-out phrasings of the target (one draw each).")
    parser.add_argument("--out", type=Path, default=RESULTS / "surrogate_gap.json")
    args = parser.parse_args(argv)

    from core.evaluation.surrogate_gap import noise_gaps
    from core.evaluation.vocabulary import load_vocabulary
    from core.spare.loading import pipeline_dir
    from core.testbed.loading import load_pipeline

    torch.set_num_threads(args.threads)
    (testbed,) = testbed_dirs(args.testbed or args.testbeds.split(",")[0])
    model_dir = pipeline_dir(testbed)
    vocabulary = load_vocabulary(model_dir)
    pipe = load_pipeline(model_dir)
    pipe.set_progress_bar_config(disable=True)
    measured: dict[tuple[str, str], dict[str, Any]] = {}
    if args.against is not None:
        for row in json.loads(args.against.read_text())["rows"]:
            measured[(row["target"], row["surrogate"])] = row
    started = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    rows: list[dict[str, Any]] = []
    correlations: dict[str, float | None] = {}
    for target in targets(args):
        kind = vocabulary.kind_of(target)
        if kind is None:
            raise SystemExit(f"{target!r} is not a concept {testbed} declares")
        candidates = [c for c in vocabulary.concepts[kind] if c != target]
        t0 = time.perf_counter()
        gaps = noise_gaps(pipe, vocabulary, kind=kind, target=target, candidates=candidates, prompts=args.prompts)
        seconds = round(time.perf_counter() - t0, 2)
        these = []
        for candidate in sorted(candidates, key=gaps.__getitem__):
            seen = measured.get((target, candidate), {})
            these.append({"target": target, "surrogate": candidate, "gap": round(gaps[candidate], 6),
                          **{k: seen.get(k) for k in ("ua", "ira_rel", "cra_rel")}, "seconds": seconds})
        rows += these
        scored = [r for r in these if r["ira_rel"] is not None]
        correlations[target] = spearman([r["gap"] for r in scored], [r["ira_rel"] for r in scored])
        print(f"{target}: " + "  ".join(
            f"{r['surrogate']} {r['gap']:.5f}" + (f" (UA {r['ua']:.2f} IRA {100 * r['ira_rel']:.1f} CRA "
                                                 f"{100 * r['cra_rel']:.1f})" if r["ira_rel"] is not None else "")
            for r in these) + (f"  rho(gap, IRA) {correlations[target]:+.2f}"
                                if correlations[target] is not None else "") + f"  [{seconds} s]", flush=True)
    result = {"testbed": testbed.name, "testbed_dir": str(testbed), "against": str(args.against or ""),
              "prompts": args.prompts, "threads": args.threads, "started_at": started,
              "finished_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "rows": rows,
              "spearman_gap_ira": correlations}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    chart(result, args.out.with_suffix(".png"))
    print(f"\n{'target':10s} {'nearest':10s} {'gap':>8s} {'its IRA%':>9s} {'max IRA%':>10s} {'rho':>6s}")
    for target in dict.fromkeys(r["target"] for r in rows):
        these = [r for r in rows if r["target"] == target]
        near, scored = these[0], [r for r in these if r["ira_rel"] is not None]
        best = max(scored, key=lambda r: r["ira_rel"]) if scored else None
        rho = correlations[target]
        print(f"{target:10s} {near['surrogate']:10s} {near['gap']:8.5f} "
              f"{(100 * near['ira_rel']) if near['ira_rel'] is not None else float('nan'):9.1f} "
              f"{(best['surrogate'] + ' ' + format(100 * best['ira_rel'], '.1f')) if best else '-':>10s} "
              f"{rho if rho is not None else float('nan'):6.2f}")
    print(f"wrote {args.out} and {args.out.with_suffix('.png')}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
