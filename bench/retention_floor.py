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
import sys
from pathlib import Path
from statistics import mean

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.run_parts import RESULTS, add_run_arguments, changed, finish, load_run, score, started_now


def _random_like(delta: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """A random matrix of `delta`'s rank and Frobenius norm (a conv kernel is treated as its 2-D reshape)."""
    shape = delta.shape
    flat = delta.reshape(shape[0], -1)
    rank = max(1, int(torch.linalg.matrix_rank(flat).item()))
    u = torch.randn(flat.shape[0], rank, generator=generator)
    v = torch.randn(rank, flat.shape[1], generator=generator)
    random = u @ v
    return (random * (flat.norm() / random.norm().clamp_min(1e-12))).reshape(shape)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_run_arguments(parser)
    parser.add_argument("--draws", type=int, default=3, help="Random changes of the erasure's size.")
    parser.add_argument("--out", type=Path, default=None, help="JSON path (default results/retention_floor_<t>.json).")
    args = parser.parse_args(argv)

    run = load_run(args)
    out = args.out or RESULTS / f"retention_floor_{run.testbed.name}_{args.target}.json"
    started = started_now()
    generator = torch.Generator().manual_seed(0)
    changes = [("erasure", run.deltas)] + [
        (f"random {k + 1}", {name: _random_like(d, generator) for name, d in run.deltas.items()})
        for k in range(args.draws)
    ]
    rows = score(run, [(name, lambda change=change: changed(run.base, change)) for name, change in changes])
    randoms = rows[1:]
    finish({
        "testbed": run.testbed.name, "target": args.target, "run": str(args.run), "modules": len(run.deltas),
        "surrogates": run.report.get("prompts", {}).get("surrogates"),
        "delta_norm": round(float(sum(d.norm() ** 2 for d in run.deltas.values()) ** 0.5), 4),
        "eval_seeds": args.eval_seeds, "threads": args.threads, "started_at": started,
        "finished_at": started_now(), "rows": rows,
        "random_mean": {k: round(mean(r[k] for r in randoms), 4) for k in ("ua", "ira_rel", "cra_rel")}
        if randoms else None,
    }, out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
