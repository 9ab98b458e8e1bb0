"""Seed spread: how much of a round's verdict and retention is its training seed's.

The same erasure run with several seeds (`lethe erase ... --params '{"max_rounds": 1, "seed": S}'`) differs only
in its random draws: the training samples, noise and timesteps, and the saliency that follows from them. This
benchmark reads each run's own verdict from its report (the verification grid's IRA % of base and its 95 %
interval, certified or refused) and scores each run's change on a testbed's grid, on seeds the verification never
drew (`--eval-seed-start 2`). It also scores the mean of all the runs' changes and gives their pairwise cosine
similarity.
- A wide spread between seeds means a verdict near the threshold is decided by the draw. A loop that retries
  at the same seed keeps most of that draw; one that reseeds draws anew, and then selects on the verification's
  own noise.
- The mean change shows whether the runs share their retention loss (averaging keeps it) or each loses to its own
  noise (averaging removes it).

    for s in 0 1 2 3; do
      lethe erase --model "$(lethe testbed path --name dev)/pipeline" --concept heart \\
        --params "{\\"max_rounds\\": 1, \\"seed\\": $s}" --out /tmp/heart_$s
    done
    python bench/seed_spread.py --testbed dev --run /tmp/heart_{0,1,2,3} --target heart --eval-seed-start 2

Prints a table, writes JSON (`--out`) and a bar chart beside it.
"""

from __future__ import annotations

import argparse
import sys
from itertools import combinations
from pathlib import Path
from statistics import correlation, mean, pstdev
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.run_parts import RESULTS, add_run_arguments, changed, finish, load_run, run_change, score, started_now

Change = dict[str, torch.Tensor]


def mean_change(changes: list[Change]) -> Change:
    """The module-wise mean of several changes (a module one run left alone counts as zero there)."""
    names = sorted(set().union(*changes))
    total: Change = {}
    for name in names:
        present = [c[name] for c in changes if name in c]
        total[name] = sum(present[1:], present[0]) / len(changes)
    return total


def cosine(a: Change, b: Change) -> float:
    """Cosine similarity of two changes as flat vectors over all modules."""
    dot = sum(float((a[n] * b[n]).sum()) for n in set(a) & set(b))
    norm = (sum(float(d.pow(2).sum()) for d in a.values()) * sum(float(d.pow(2).sum()) for d in b.values())) ** 0.5
    return dot / norm if norm > 0 else 0.0


def verdict(report: dict[str, Any], target: str) -> dict[str, Any]:
    """What the run's own verification said of its kept round: seed, certified, the grid's IRA/CRA % of base."""
    rounds = report.get("rounds") or {}
    kept = (rounds.get("history") or [{}])[(rounds.get("chosen") or 1) - 1]
    metrics = report.get("metrics") or {}
    grid = (metrics.get("summary") or {}).get(target, {})
    return {
        "seed": (report.get("config") or {}).get("seed"), "certified": bool(rounds.get("passed")),
        "refused": None if rounds.get("passed") else _refusal(kept, metrics),
        "verification_seeds": (metrics.get("testbed") or {}).get("seeds"),
        **{f"verification_{key}": grid.get(key) for key in ("ua", "ira_rel", "ira_rel_interval", "cra_rel")},
    }


def _refusal(kept: dict[str, Any], metrics: dict[str, Any]) -> str | None:
    """Why the kept round was not certified: the verification's reason, else what its round check found short."""
    if kept.get("refused"):
        return str(kept["refused"])
    thresholds = (metrics.get("round_check") or {}).get("thresholds") or {}
    short = [f"ua[{name}] {value:.3f}" for name, value in (kept.get("ua") or {}).items()
             if value < thresholds.get("min_unlearning_accuracy", 0.0)]
    short += [f"retention[{group}] {value:.3f}" for group, value in (kept.get("retention") or {}).items()
              if value < thresholds.get("min_retention", 0.0)]
    return f"round check: {', '.join(short)} below the threshold" if short else None


def _pearson(xs: list[float], ys: list[float]) -> float | None:
    """Pearson's r; None under three pairs or a constant side."""
    if len(xs) < 3 or pstdev(xs) == 0 or pstdev(ys) == 0:
        return None
    return correlation(xs, ys)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_run_arguments(parser, many=True)
    parser.add_argument("--out", type=Path, default=None, help="JSON path (default results/seed_spread_<t>.json).")
    args = parser.parse_args(argv)
    if len(args.run) < 2:
        parser.error("--run needs two run folders or more (the same erasure with different seeds)")

    run = load_run(args)
    out = args.out or RESULTS / f"seed_spread_{run.testbed.name}_{args.target}.json"
    started = started_now()
    reports, changes = [run.report], [run.deltas]
    for folder in args.run[1:]:
        report, change = run_change(run.base, folder)
        reports.append(report)
        changes.append(change)
    verdicts = [verdict(r, args.target) for r in reports]
    models = [(f"seed {v['seed']}", lambda c=c: changed(run.base, c)) for v, c in zip(verdicts, changes, strict=True)]
    models.append((f"mean of {len(changes)}", lambda: changed(run.base, mean_change(changes))))
    rows = score(run, models)
    for row, v, folder in zip(rows, verdicts, args.run, strict=False):
        row.update(v, run=str(folder))
    seeded = rows[:-1]
    unseen = [r["ira_rel"] for r in seeded]
    graded = [(r["verification_ira_rel"], r["ira_rel"]) for r in seeded if r["verification_ira_rel"] is not None]
    certified = [r["ira_rel"] for r in seeded if r["certified"]]
    spread = {
        "ira_rel_min": round(min(unseen), 4), "ira_rel_max": round(max(unseen), 4),
        "ira_rel_mean": round(mean(unseen), 4), "ira_rel_sd": round(pstdev(unseen), 4),
        "ua_min": round(min(r["ua"] for r in seeded), 4), "ua_max": round(max(r["ua"] for r in seeded), 4),
        "ua_mean": round(mean(r["ua"] for r in seeded), 4),
        "certified": len(certified), "certified_ira_rel": [round(x, 4) for x in certified],
        "verification_vs_unseen_ira_r": _pearson([g for g, _ in graded], [u for _, u in graded]),
        "mean_change_ira_rel": rows[-1]["ira_rel"], "mean_change_ua": rows[-1]["ua"],
    }
    finish({
        "testbed": run.testbed.name, "target": args.target, "runs": [str(f) for f in args.run],
        "eval_seeds": list(run.seeds), "threads": args.threads, "started_at": started, "finished_at": started_now(),
        "rows": rows, "spread": spread,
        "cosine": {f"{verdicts[i]['seed']}-{verdicts[j]['seed']}": round(cosine(changes[i], changes[j]), 4)
                   for i, j in combinations(range(len(changes)), 2)},
        "modules": [len(c) for c in changes],
    }, out)
    print(f"unseen UA {spread['ua_min']:.3f}-{spread['ua_max']:.3f} (mean {spread['ua_mean']:.3f}); "
          f"IRA % of base: {100 * spread['ira_rel_min']:.1f}-{100 * spread['ira_rel_max']:.1f} "
          f"(mean {100 * spread['ira_rel_mean']:.1f}, sd {100 * spread['ira_rel_sd']:.1f}); "
          f"certified {spread['certified']}/{len(seeded)}; the mean change {100 * spread['mean_change_ira_rel']:.1f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
