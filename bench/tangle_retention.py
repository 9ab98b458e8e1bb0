"""Does the surrogate screen's neighbourhood measure predict what an erasure toward a candidate costs retention?

Joins what the screen measures of each (target, candidate) on a base model — the share of base images crossing
the candidate's worst boundary with a kept concept (`tangled`: from the `surrogate_screen` records of
`bench/erasure.py` results, `--screens`, or measured here on a testbed's base model with the job's judge and the
service's allowances, `--measure DIR`) — with what one round toward that candidate did (`--against`: a
`bench/erasure.py` result holding one round toward each candidate, e.g. `surrogates_dev_seed23.json`). Candidates
the judge confuses with the target beyond the confusion allowance are left out (the screen never takes them for
their tangle). The rest fall in three bands by the screen's rule at `--max-tangle`: within the allowance; above it
but within sampling noise (the share's 95 % Wilson interval reaches the allowance); beyond sampling noise. Per
band: how many, and the lower of IRA and CRA % of base (mean, min, max).

    python bench/tangle_retention.py --testbed testbed-dev23 --against bench/results/surrogates_dev_seed23.json \\
        --screens bench/results/erasure_dev_projection.json,bench/results/erasure_dev_nearest.json \\
        --out bench/results/tangle_retention_dev_seed23.json

    python bench/tangle_retention.py --testbed testbed-dev29 --measure DIR --against ROUNDS.json --out …

Prints a table, writes JSON (`--out`) and a chart beside it. With `--screens` it reads results only.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

RESULTS = Path(__file__).resolve().parent / "results"
BANDS = ("within the allowance", "above it, within noise", "beyond noise")


def screened(paths: list[Path], testbed: str) -> dict[tuple[str, str], dict[str, Any]]:
    """(target, candidate) -> the screen's record of that candidate on `testbed` (its rows' testbed name)."""
    found: dict[tuple[str, str], dict[str, Any]] = {}
    for path in paths:
        for row in json.loads(path.read_text())["rows"]:
            if row["testbed"] != testbed:
                continue
            for screen in row.get("surrogate_screen") or []:
                for tried in screen["tried"]:
                    if tried.get("tangled") is not None:
                        found[(screen["concept"], tried["surrogate"])] = tried
    return found


def measure(testbed_dir: Path, pairs: list[tuple[str, str]]) -> dict[tuple[str, str], dict[str, Any]]:
    """(target, candidate) -> the screen's measure of that candidate on the testbed's base model, as a job's
    screen takes it (the testbed's own classifier as the judge, the service's allowances and screen settings)."""
    from core.config import get_settings
    from core.erasure.judging import screenings, shared_judge
    from core.erasure.verification import Thresholds
    from core.evaluation.vocabulary import load_vocabulary
    from core.spare.loading import pipeline_dir
    from core.spare.specs import ConceptSpec, ErasureSpec, SpareConfig
    from core.testbed.loading import load_pipeline

    settings = get_settings()
    thresholds = Thresholds.for_request(settings)
    model_dir = pipeline_dir(testbed_dir)
    pipe = load_pipeline(model_dir)
    pipe.set_progress_bar_config(disable=True)
    judge = shared_judge(model_dir, settings, judge_name="model-classifier", fingerprint=None)
    screening = screenings(model_dir, settings, judge=judge,
                           min_unlearning_accuracy=thresholds.min_unlearning_accuracy,
                           min_retention=thresholds.min_retention,
                           guidance_scale=getattr(SpareConfig(), "guidance_scale", 5.0))(pipe, ())
    vocabulary = load_vocabulary(model_dir)
    found: dict[tuple[str, str], dict[str, Any]] = {}
    for target, candidate in pairs:
        kind = vocabulary.kind_of(target)
        if kind is None:
            raise SystemExit(f"{target!r} is not a concept {testbed_dir} declares")
        spec = ErasureSpec(concepts=[ConceptSpec(target=target)])
        found[(target, candidate)] = screening.measurer(spec, kind, target)(candidate)[0].model_dump()
    return found


def band(tried: dict[str, Any], max_tangle: float) -> str:
    """Which of BANDS the screen's rule (`core.evaluation.surrogates.beyond_noise`) puts a candidate's tangle in."""
    from core.evaluation.surrogates import beyond_noise

    if tried["tangled"] <= max_tangle:
        return BANDS[0]
    images = tried.get("tangle_images") or 2 * tried["images"]  # both concepts' base images
    return BANDS[2] if beyond_noise(tried["tangled"], images, max_tangle) else BANDS[1]


def chart(result: dict[str, Any], path: Path) -> None:
    """Each candidate's tangle (x) against the lower of its IRA and CRA % of base (y), coloured by band."""
    from PIL import Image, ImageDraw

    width, height, left, top = 560, 320, 50, 30
    colours = dict(zip(BANDS, ((40, 140, 60), (200, 150, 20), (190, 40, 40)), strict=True))
    img = Image.new("RGB", (width, height + 70), "white")
    d = ImageDraw.Draw(img)
    d.text((left, 6), f"{result['testbed']}: screen's tangle vs min(IRA, CRA) % of base after one round",
           fill="black")
    low = min([0.7] + [r["retention"] for r in result["rows"]])

    def xy(tangle: float, retention: float) -> tuple[int, int]:
        return (left + int(tangle / 0.6 * (width - left - 20)),
                top + int((1.05 - retention) / (1.05 - low) * height))

    x0, _ = xy(result["max_tangle"], 1.0)
    d.line((x0, top, x0, top + height), fill=(150, 150, 150))
    for level in (low, 0.95, 1.0):
        _, y = xy(0.0, level)
        d.line((left, y, width - 20, y), fill=(225, 225, 225))
        d.text((4, y - 6), f"{100 * level:.0f}", fill="black")
    for r in result["rows"]:
        x, y = xy(r["tangled"], r["retention"])
        d.ellipse((x - 4, y - 4, x + 4, y + 4), fill=colours[r["band"]])
    for i, name in enumerate(BANDS):
        d.text((left + 170 * i, top + height + 30), name, fill=colours[name])
    d.text((left, top + height + 10), "tangle (share of crossing base images) ->", fill="black")
    img.save(path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--testbed", required=True, help="The testbed name the result rows carry (e.g. testbed-dev23).")
    parser.add_argument("--against", type=Path, required=True,
                        help="bench/erasure.py result with one round toward each candidate (target/surrogate rows).")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--screens",
                        help="Comma-separated bench/erasure.py results whose surrogate_screen records measured the "
                        "candidates on that testbed.")
    source.add_argument("--measure", type=Path,
                        help="A testbed (name or built folder): measure each candidate's tangle on its base model.")
    parser.add_argument("--max-tangle", type=float, default=0.10,
                        help="The neighbourhood allowance (1 - the verification's retention threshold).")
    parser.add_argument("--max-confusion", type=float, default=0.10,
                        help="Candidates confused with the target above this share are left out.")
    parser.add_argument("--out", type=Path, default=RESULTS / "tangle_retention.json")
    args = parser.parse_args(argv)

    rounds = [row for row in json.loads(args.against.read_text())["rows"] if row["testbed"] == args.testbed]
    if args.measure is not None:
        from core.testbed.paths import resolve_testbed

        screens = measure(resolve_testbed(str(args.measure)), [(r["target"], r["surrogate"]) for r in rounds])
    else:
        screens = screened([Path(p) for p in args.screens.split(",")], args.testbed)
    rows: list[dict[str, Any]] = []
    for row in rounds:
        tried = screens.get((row["target"], row["surrogate"]))
        if tried is None or tried.get("tangled") is None or tried["confused"] > args.max_confusion:
            continue
        rows.append({"target": row["target"], "surrogate": row["surrogate"], "tangled": tried["tangled"],
                     "tangled_with": tried["tangled_with"], "band": band(tried, args.max_tangle), "ua": row["ua"],
                     "ira_rel": row["ira_rel"], "cra_rel": row["cra_rel"],
                     "retention": min(row["ira_rel"], row["cra_rel"])})
    if not rows:
        raise SystemExit(f"no candidate of {args.testbed} is both screened and erased in these results")
    rows.sort(key=lambda r: (BANDS.index(r["band"]), r["tangled"], r["target"]))
    summary: dict[str, dict[str, Any]] = {}
    for name in BANDS:
        kept = [r["retention"] for r in rows if r["band"] == name]
        summary[name] = ({"n": len(kept), "mean": round(sum(kept) / len(kept), 4), "min": round(min(kept), 4),
                          "max": round(max(kept), 4)} if kept else {"n": 0})
    print(f"{'target':10s} {'candidate':10s} {'tangle':>7s} {'with':10s} {'UA':>5s} {'IRA%':>6s} {'CRA%':>6s}  band")
    for r in rows:
        print(f"{r['target']:10s} {r['surrogate']:10s} {r['tangled']:7.4f} {r['tangled_with']:10s} {r['ua']:5.2f} "
              f"{100 * r['ira_rel']:6.1f} {100 * r['cra_rel']:6.1f}  {r['band']}")
    print(f"\n{'band':24s} {'n':>3s} {'min(IRA,CRA)% mean':>19s} {'min':>6s} {'max':>6s}")
    for name, s in summary.items():
        print(f"{name:24s} {s['n']:3d} " + (f"{100 * s['mean']:19.1f} {100 * s['min']:6.1f} {100 * s['max']:6.1f}"
                                            if s["n"] else f"{'-':>19s}"))
    result = {"testbed": args.testbed, "against": str(args.against),
              "screens": args.screens.split(",") if args.screens else [], "measured_on": str(args.measure or ""),
              "max_tangle": args.max_tangle, "max_confusion": args.max_confusion,
              "made_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "rows": rows, "bands": summary}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    chart(result, args.out.with_suffix(".png"))
    print(f"wrote {args.out} and {args.out.with_suffix('.png')}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
