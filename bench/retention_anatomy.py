"""Retention anatomy: which part of an erasure erases and which part costs the kept concepts.

An erasure (`lethe erase ... --out RUN`) changed some UNet modules. This benchmark scores, on a testbed's grid (its
classifier, `--eval-seeds` seeds per prompt), models that keep only part of that change:
- by module: the text pathway (cross-attention key/value, the only layers that see nothing but the prompt) or the
  image side (every other changed module), and by UNet block (down, mid, up);
- by denoising step: the erased UNet at high-noise steps only (t >= `--split`) or at the rest only, the base
  UNet at the others;
- by guidance branch: the erased UNet for the prompt's (conditional) prediction only, or for the unconditional
  one only;
- by strength (`--strengths`): the whole change and its text pathway scaled down (a LoRA's scale), which traces
  what each buys in erasure for what it costs in retention.
Where the parts lose less retention than the whole, the loss comes from their interplay (along the trajectory,
or between modules); where one part erases on its own with little loss, that part is the erasure.

    lethe erase --model "$(lethe testbed path --name dev)/pipeline" --concept heart --out /tmp/heart
    python bench/retention_anatomy.py --testbed dev --run /tmp/heart --target heart

Prints a table, writes JSON (`--out`) and a bar chart beside it.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.run_parts import IRA_CRA, RESULTS, add_run_arguments, changed, finish, load_run, score, started_now


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


def _part(base: Any, deltas: dict[str, torch.Tensor], keep: Callable[[str], bool],
          scale: float = 1.0) -> Callable[[], Any]:
    """Builds the base with `scale` times the change of the modules `keep` names."""
    return lambda: changed(base, {n: scale * d for n, d in deltas.items() if keep(n)})


def strength_variants(base: Any, deltas: dict[str, torch.Tensor],
                      strengths: list[float]) -> list[tuple[str, Callable[[], Any]]]:
    """The whole change and its text pathway at each scale (what a LoRA's scale does to its delta)."""
    from core.spare.saliency import is_text_side

    return [variant for scale in strengths for variant in (
        (f"erasure x{scale:g}", _part(base, deltas, lambda n: True, scale)),
        (f"text side x{scale:g}", _part(base, deltas, is_text_side, scale)))]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_run_arguments(parser)
    parser.add_argument("--split", type=int, default=600,
                        help="The timestep that splits high-noise steps from the rest.")
    parser.add_argument("--strengths", default="",
                        help="Comma-separated scales (e.g. 0.8,0.65,0.5) of the whole change and of its text pathway, "
                        "scored as well.")
    parser.add_argument("--out", type=Path, default=None,
                        help="JSON path (default results/retention_anatomy_<testbed>_<target>.json).")
    args = parser.parse_args(argv)

    from core.evaluation.metrics import sampling_defaults
    from core.spare.saliency import is_text_side

    strengths = [float(s) for s in args.strengths.split(",") if s.strip()]
    run = load_run(args)
    out = args.out or RESULTS / f"retention_anatomy_{run.testbed.name}_{args.target}.json"
    started = started_now()
    base, deltas = run.base, run.deltas

    def part(keep: Callable[[str], bool]) -> Callable[[], Any]:
        return _part(base, deltas, keep)

    def routed(use_erased: Callable[[float, int, int], bool]) -> Callable[[], Any]:
        return lambda: _routed(base, changed(base, deltas), use_erased)

    variants: list[tuple[str, Callable[[], Any]]] = [
        ("erasure", part(lambda n: True)),
        ("text side", part(is_text_side)),
        ("image side", part(lambda n: not is_text_side(n))),
        *[(f"{b} blocks", part(lambda n, b=b: _block(n) == b)) for b in sorted({_block(n) for n in deltas})],
        (f"t >= {args.split}", routed(lambda t, h, n: t >= args.split)),
        (f"t < {args.split}", routed(lambda t, h, n: t < args.split)),
    ]
    variants += strength_variants(base, deltas, strengths)
    # The branch variants split the UNet's batch into its unconditional and conditional halves: only a grid drawn
    # with classifier-free guidance has both.
    if sampling_defaults(run.testbed)[1] > 1.0:
        variants += [("cond branch", routed(lambda t, h, n: h == 1)), ("uncond branch", routed(lambda t, h, n: h == 0))]
    rows = score(run, variants)
    finish({
        "testbed": run.testbed.name, "target": args.target, "run": str(args.run), "modules": len(deltas),
        "text_side_modules": sum(is_text_side(n) for n in deltas), "split": args.split,
        "strengths": strengths,
        "surrogates": run.report.get("prompts", {}).get("surrogates"), "eval_seeds": list(run.seeds),
        "threads": args.threads, "started_at": started, "finished_at": started_now(), "rows": rows,
    }, out, (("ua", (200, 120, 40)), *IRA_CRA), "UA (orange), IRA (blue) / CRA (green) share of base")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
