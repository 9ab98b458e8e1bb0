"""Retention anatomy: which part of an erasure erases and which part costs the kept concepts.

An erasure (`lethe erase ... --out RUN`) changed some UNet modules. This benchmark scores, on a testbed's grid (its
classifier, `--eval-seeds` seeds per prompt), models that keep only part of that change:
- by module: the text pathway (cross-attention key/value, the only layers that see nothing but the prompt) or the
  image side (every other changed module), and by UNet block (down, mid, up);
- by denoising step: the erased UNet at high-noise steps only (t >= `--split`) or at the rest only, the base
  UNet at the others;
- by guidance branch: the erased UNet for the prompt's (conditional) prediction only, or for the unconditional
  one only.
Where the parts lose less retention than the whole, the loss comes from their interplay (along the trajectory,
or between modules); where one part erases on its own with little loss, that part is the erasure.

    lethe erase --model "$(lethe testbed path --name dev)/pipeline" --concept heart --out /tmp/heart
    python bench/retention_anatomy.py --testbed dev --run /tmp/heart --target heart

Prints a table, writes JSON (`--out`) and a bar chart beside it.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.retention_floor import IRA_CRA, _changed, _deltas, chart

RESULTS = Path(__file__).resolve().parent / "results"


def _block(name: str) -> str:
    return name.split(".", 1)[0].replace("_blocks", "").replace("_block", "")


def _routed(base: Any, erased: Any, use_erased: Callable[[float, int, int], bool]) -> Any:
    """`erased` whose UNet runs, for each call and each half of a guidance batch, either its own weights or the
    base UNet's: `use_erased(t, half, halves)` (half 0 = unconditional when the batch holds both)."""
    base_forward, own_forward = base.unet.forward, erased.unet.forward

    def forward(sample: torch.Tensor, timestep: Any, encoder_hidden_states: torch.Tensor, *a: Any, **k: Any) -> Any:
        t = float(timestep.flatten()[0]) if isinstance(timestep, torch.Tensor) else float(timestep)
        halves = 2 if sample.shape[0] % 2 == 0 and sample.shape[0] > 1 else 1
        k = {**k, "return_dict": False}
        outs = []
        for half, (x, h) in enumerate(zip(sample.chunk(halves), encoder_hidden_states.chunk(halves), strict=True)):
            fn = own_forward if use_erased(t, half, halves) else base_forward
            outs.append(fn(x, timestep, h, *a, **k)[0])
        return (torch.cat(outs),)

    erased.unet.forward = forward
    return erased


def main(argv: list[str] | None = None) -> int:
    from bench.cli import add_eval_seeds

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--testbed", default="full",
                        help="Testbed name (full, subword, dev) or a built testbed's folder: its grid and classifier.")
    parser.add_argument("--run", type=Path, required=True, help="Output folder of `lethe erase` on that testbed.")
    parser.add_argument("--target", required=True, help="The concept the run erased.")
    parser.add_argument("--split", type=int, default=600,
                        help="The timestep that splits high-noise steps from the rest.")
    add_eval_seeds(parser, "Seeds per grid prompt")
    parser.add_argument("--eval-seed-start", type=int, default=0,
                        help="First grid seed (2 scores a job's kept round on seeds its verification never drew).")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (a shared CPU: keep it low).")
    parser.add_argument("--out", type=Path, default=None,
                        help="JSON path (default results/retention_anatomy_<testbed>_<target>.json).")
    args = parser.parse_args(argv)

    from core.evaluation.metrics import sampling_defaults
    from core.spare.loading import pipeline_dir
    from core.spare.saliency import is_text_side
    from core.spare.testbed_eval import testbed_evaluator
    from core.testbed.loading import load_pipeline
    from core.testbed.paths import resolve_testbed

    torch.set_num_threads(args.threads)
    testbed = resolve_testbed(args.testbed)
    out = args.out or RESULTS / f"retention_anatomy_{testbed.name}_{args.target}.json"
    report = json.loads((args.run / "report.json").read_text())
    modules = list(report["adapter"]["target_modules"])
    base = load_pipeline(pipeline_dir(testbed))
    fused = load_pipeline(args.run / "fused")
    deltas = _deltas(base.unet, fused.unet, modules)
    del fused
    seeds = tuple(range(args.eval_seed_start, args.eval_seed_start + args.eval_seeds))
    evaluator = testbed_evaluator([args.target], testbed=testbed, seeds=seeds, cached_base=True)
    # The branch variants split the UNet's batch into its unconditional and conditional halves: the grid must be
    # drawn with classifier-free guidance.
    guided = sampling_defaults(testbed)[1] > 1.0
    started = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())

    def part(keep: Callable[[str], bool]) -> Callable[[], Any]:
        return lambda: _changed(base, {n: d for n, d in deltas.items() if keep(n)})

    def routed(use_erased: Callable[[float, int, int], bool]) -> Callable[[], Any]:
        return lambda: _routed(base, _changed(base, deltas), use_erased)

    blocks = sorted({_block(n) for n in deltas})
    variants: list[tuple[str, Callable[[], Any]]] = [
        ("erasure", part(lambda n: True)),
        ("text side", part(is_text_side)),
        ("image side", part(lambda n: not is_text_side(n))),
        *[(f"{b} blocks", part(lambda n, b=b: _block(n) == b)) for b in blocks],
        (f"t >= {args.split}", routed(lambda t, h, n: t >= args.split)),
        (f"t < {args.split}", routed(lambda t, h, n: t < args.split)),
    ]
    if guided:
        variants += [("cond branch", routed(lambda t, h, n: h == 1)), ("uncond branch", routed(lambda t, h, n: h == 0))]
    rows = []
    for name, make in variants:
        t0 = time.perf_counter()
        summary = evaluator(make(), base)["summary"][args.target]
        rows.append({"model": name, **{k: summary[k] for k in ("ua", "ira", "cra", "ira_rel", "cra_rel")},
                     "seconds": round(time.perf_counter() - t0, 1)})
        r = rows[-1]
        print(f"{name:14s} UA {r['ua']:.3f} IRA {r['ira_rel']:.3f} CRA {r['cra_rel']:.3f} of base ({r['seconds']} s)",
              flush=True)
    result = {
        "testbed": testbed.name, "target": args.target, "run": str(args.run), "modules": len(modules),
        "text_side_modules": sum(is_text_side(n) for n in deltas), "split": args.split,
        "surrogates": report.get("prompts", {}).get("surrogates"), "eval_seeds": list(seeds),
        "threads": args.threads, "started_at": started,
        "finished_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "rows": rows,
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    chart(result, out.with_suffix(".png"), (("ua", (200, 120, 40)), *IRA_CRA),
          "UA (orange), IRA (blue) / CRA (green) share of base")
    print(f"\n{'part kept':14s} {'UA':>6s} {'IRA%':>7s} {'CRA%':>7s}")
    for r in rows:
        print(f"{r['model']:14s} {r['ua']:6.3f} {100 * r['ira_rel']:7.1f} {100 * r['cra_rel']:7.1f}")
    print(f"wrote {out} and {out.with_suffix('.png')}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
