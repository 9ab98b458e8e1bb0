"""Erasure lineage on the testbed: N takedown requests in a row, three ways of accumulating them, side by side.

- `head`:  each erasure trains on the current head (the fused output of the previous one); the version's
           cumulative adapter is the chain's adapters stacked (core.lineage.combine_adapters).
- `merge`: each erasure trains on v1 alone; the version is v1 plus every adapter so far, merged exactly by
           stacking factors (the same combine_adapters), loaded with stock diffusers and fused.
- `joint`: each version is one multi-concept erasure of every concept so far, from v1.

Every erasure is what a worker runs: the request phrased by the testbed's lethe.json (fit_request), SPARE with
its default configuration as bench/erasure.py's `spare-loop` builds it (erase until verified, the service's
round budget and held-out check), and the worker's verification as the loop's acceptance rule. On a version
(`head`) the verification judges, as a worker's does, every concept the version lost and retention against v1
(core.erasure.lineage.with_lineage, against_source). Each row says whether the worker would have certified the
step (`certified`, `verification`); a refused step still builds its version from the loop's best round, so
that the chain goes on. After each request every version is scored on the testbed grid with the testbed
classifier (core.evaluation.metrics.evaluate): UA of every concept erased so far, and the accuracy of the
concepts still kept — objects and styles separately, as a fraction of v1's on the same images. Time per step
(erasure with the worker's verification, merge, building the version; the benchmark's scoring excluded) and
cumulative adapter size are recorded.
Prints a table, writes bench/results/lineage.json and bench/results/lineage.png (both rewritten after every row).

    python bench/lineage.py                 # 10 requests, objects and styles alternating
    python bench/lineage.py --steps 2       # the first two requests only (a time estimate)
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from statistics import mean
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

RESULTS = Path(__file__).resolve().parent / "results"
STRATEGIES = ("head", "merge", "joint")
# Objects and styles alternate; ten of the testbed's eleven concepts, so the last request leaves one style.
DEFAULT_ORDER = "circle,striped,triangle,dotted,star,outline,heart,checkered,cross,square"
ADAPTER = Path("adapter/pytorch_lora_weights.safetensors")
TARGET_UA, TARGET_RETENTION = 0.95, 0.90


@dataclass
class Erased:
    out_dir: Path
    report: dict[str, Any]
    seconds: float
    surrogates: dict[str, str]
    verification: dict[str, Any] = field(default_factory=dict)  # the worker's verdict on the kept round
    note: str | None = None


@dataclass
class Chain:
    """What one strategy holds between steps."""

    name: str
    head: Any = None  # the current version's pipeline
    adapters: list[Path] = field(default_factory=list)
    lineage: list[dict[str, Any]] = field(default_factory=list)  # what the head has lost, as a version records it


def erase_concepts(pipe: Any, targets: list[str], out_dir: Path, args: argparse.Namespace,
                   surrogates: dict[str, str] | None = None, lineage: list[dict[str, Any]] | None = None,
                   source: Any = None) -> Erased:
    """One request as a worker runs it: fit_request on the testbed's lethe.json, the surrogate screen, erase
    until verified with the worker's verification as acceptance rule. `lineage`: what `pipe` (a version) has
    lost already ({"target", "kind", "surrogate"} each: never a surrogate, judged with the request's concepts);
    `source`: v1, the retention baseline of a version's verification."""
    from bench.erasure import method_config
    from core.config import get_settings
    from core.erasure.verification import Thresholds
    from core.erasure.verified import verified_erasure
    from core.evaluation.vocabulary import load_vocabulary
    from core.spare import ErasureSpec
    from core.spare.loading import pipeline_dir
    from core.spare.prompting import fit_request
    from core.spare.rounds import erase_until_verified
    from core.spare.specs import ConceptSpec
    from core.testbed.paths import testbed_dir

    model_dir = pipeline_dir(testbed_dir())
    settings = get_settings()
    lineage = lineage or []
    erased = [c["target"] for c in lineage]
    concepts = [ConceptSpec(target=t, surrogate=(surrogates or {}).get(t)) for t in targets]
    requested = ErasureSpec(concepts=concepts)
    spec, config = fit_request(requested, method_config("spare-loop", args), load_vocabulary(model_dir),
                               erased=erased)
    thresholds = Thresholds.for_request(settings)
    t0 = time.perf_counter()
    run = verified_erasure(pipe, model_dir, requested, spec, config, settings, judge_name="model-classifier",
                           fingerprint=None, thresholds=thresholds, lineage=lineage,
                           source=(lambda: source) if source is not None else None,
                           grid_seeds=range(args.eval_seeds), attacks=False)
    spec = run.spec
    result = erase_until_verified(pipe, spec, config, out_dir=out_dir, **run.loop_inputs())
    verdict = run.verify(result.metrics)
    kept = result.report.rounds.kept_surrogates() if result.report.rounds else {}
    return Erased(out_dir, result.report.dump(), time.perf_counter() - t0,
                  {c.target: kept.get(c.target, c.surrogate_text()) for c in spec.concepts},
                  verification={"certified": verdict.ok, "reason": verdict.reason})


def single_request_surrogates(targets: list[str]) -> dict[str, str]:
    """Each concept's surrogate as its own one-concept request gets it (the next of its kind)."""
    from core.evaluation.vocabulary import load_vocabulary
    from core.spare.loading import pipeline_dir
    from core.spare.testbed_eval import concept_kind
    from core.testbed.paths import testbed_dir

    vocabulary = load_vocabulary(pipeline_dir(testbed_dir()))
    return {t: str(vocabulary.surrogate_for(t, concept_kind(t), [t])) for t in targets}


def erase_jointly(pipe: Any, targets: list[str], out_dir: Path, args: argparse.Namespace) -> Erased:
    """Every concept so far in one request. When the request's default surrogates run out (every concept of a
    kind is being erased: the service refuses such a request), each concept gets its one-concept surrogate."""
    from core.spare.errors import ErasureInputError

    try:
        return erase_concepts(pipe, targets, out_dir, args)
    except ErasureInputError as exc:
        if "surrogate" not in str(exc):
            raise
        shutil.rmtree(out_dir, ignore_errors=True)
        erased = erase_concepts(pipe, targets, out_dir, args, surrogates=single_request_surrogates(targets))
        erased.note = f"default surrogates refused ({exc}); one-concept surrogates given"
        return erased


def with_adapter(adapter: Path) -> Any:
    """v1 with a LoRA file loaded by stock diffusers and fused in (the version a cumulative adapter stands for)."""
    from core.testbed.loading import load_pipeline

    pipe = load_pipeline()
    pipe.load_lora_weights(adapter.parent, weight_name=adapter.name)
    pipe.fuse_lora()
    pipe.unload_lora_weights()
    return pipe


def adapter_rank(report: dict[str, Any]) -> int:
    """Sum over the adapted modules of each module's LoRA rank."""
    adapter = report["adapter"]
    return sum(int(adapter["rank_pattern"].get(m, adapter["rank"])) for m in adapter["target_modules"])


def max_weight_diff(a: Any, b: Any) -> float:
    sa, sb = a.unet.state_dict(), b.unet.state_dict()
    return max(float((sa[k] - sb[k]).abs().max()) for k in sa)


def score(pipe: Any, erased: list[str], classifier: Any, seeds: list[int]) -> dict[str, Any]:
    """UA of every erased concept; accuracy on the kept objects and kept styles, relative to v1 (the testbed's
    cached base grid, same seeds). A kept concept is scored on every image prompted with it, whatever the
    other half of the prompt (a kept object drawn in an erased style must still be that object)."""
    from core.evaluation.metrics import evaluate
    from core.testbed.canvas import OBJECTS, STYLES

    metrics = evaluate(pipe, forget=erased, seeds=seeds, classifier=classifier)
    assert metrics.base is not None

    def kept(names: tuple[str, ...], model: dict[str, float], base: dict[str, float]) -> dict[str, float | None]:
        names_kept = [n for n in names if n not in erased]
        if not names_kept:
            return {"accuracy": None, "base": None, "rel": None}
        acc, ref = mean(model[n] for n in names_kept), mean(base[n] for n in names_kept)
        return {"accuracy": acc, "base": ref, "rel": acc / ref if ref > 0 else None}

    objects = kept(OBJECTS, metrics.model.per_object, metrics.base.per_object)
    styles = kept(STYLES, metrics.model.per_style, metrics.base.per_style)
    ua = {t.forget: t.ua for t in metrics.targets}
    rels = [r for r in (objects["rel"], styles["rel"]) if r is not None]
    return {
        "ua": ua, "min_ua": min(ua.values()), "base_ua": {t.forget: t.base_ua for t in metrics.targets},
        "objects_kept": objects, "styles_kept": styles, "min_retention_rel": min(rels) if rels else None,
        # The testbed evaluator's own per-target IRA/CRA (other concepts of the kind / the other kind, over every
        # image not prompted with the target, erased concepts included), for reference.
        "per_target": {t.forget: {"ira_rel": t.ira_rel, "cra_rel": t.cra_rel} for t in metrics.targets},
        "fid_analogue": metrics.fid_analogue, "eval_s": round(metrics.seconds, 2),
    }


def step(chain: Chain, index: int, targets: list[str], v1: Any, work: Path, args: argparse.Namespace) -> dict:
    """Apply request `index` (targets[index]) under the chain's strategy; returns the row without scores."""
    from core.lineage import adapter_is_exact, combine_adapters
    from core.spare.testbed_eval import concept_kind
    from core.testbed.loading import load_pipeline

    target, so_far = targets[index], targets[: index + 1]
    run_dir = work / chain.name / f"step{index + 1:02d}"
    t0 = time.perf_counter()
    exact_check = None
    if chain.name == "joint":
        erased = erase_jointly(v1, so_far, run_dir, args)
    else:
        on_head = chain.name == "head"
        erased = erase_concepts(chain.head if on_head else v1, [target], run_dir, args,
                                lineage=chain.lineage if on_head else None, source=v1 if on_head else None)
        if on_head:
            chain.lineage += [{"target": t, "kind": concept_kind(t), "surrogate": s}
                              for t, s in erased.surrogates.items()]
    erase_s = time.perf_counter() - t0
    exact = adapter_is_exact(erased.out_dir)
    t1 = time.perf_counter()
    if chain.name == "joint":
        chain.head, adapter_bytes = load_pipeline(erased.out_dir / "fused"), (erased.out_dir / ADAPTER).stat().st_size
        ranks = adapter_rank(erased.report)
    else:
        chain.adapters.append(erased.out_dir / ADAPTER)
        combined = combine_adapters(chain.adapters, run_dir / "cumulative" / ADAPTER.name)
        adapter_bytes, ranks = combined.size, combined.total_rank
        if chain.name == "merge":
            chain.head = with_adapter(combined.path)
        else:
            chain.head = load_pipeline(erased.out_dir / "fused")
    build_s = time.perf_counter() - t1
    if chain.name == "head":
        # Not part of the strategy's cost: the cumulative adapter on v1 against the fused chain.
        exact_check = max_weight_diff(with_adapter(run_dir / "cumulative" / ADAPTER.name), chain.head)
    shutil.rmtree(erased.out_dir / "fused", ignore_errors=True)
    rounds = erased.report.get("rounds") or {}
    return {
        "step": index + 1, "strategy": chain.name, "target": target, "erased": so_far,
        "surrogates": erased.surrogates, "note": erased.note,
        "certified": erased.verification.get("certified"), "verification": erased.verification.get("reason"),
        "erase_s": round(erase_s, 2), "build_s": round(build_s, 2), "step_s": round(erase_s + build_s, 2),
        "rounds": len(rounds.get("history") or []) or 1, "rounds_passed": rounds.get("passed"),
        # Each round: levers, the check's (or the refusing verification's) UA and retention, what it lost to what.
        "round_history": rounds.get("history"),
        "judge": _judge_summary(erased.report),
        "adapter_exact": exact, "cumulative_adapter_bytes": adapter_bytes, "cumulative_rank": ranks,
        "cumulative_vs_fused_max_weight_diff": exact_check,
    }


def _judge_summary(report: dict[str, Any]) -> dict[str, Any] | None:
    """The verification's held-out evidence on the kept round: UA per judged concept (with its image count),
    retention per group (images the base drew right, those the version still draws right, and what each lost
    image became: concept → label)."""
    judge = report["metrics"].get("judge")
    if not judge:
        return None
    return {"ua": {c["concept"]: [c["ua"], c["images"]] for c in judge["concepts"]},
            "retention": {f"{r['group']}:{r['kind']}": {
                "retention": r["retention"], "images": r["images"], "correct_base": r["correct_base"],
                "correct_erased": r["correct_erased"],
                "lost": [f"{x['concept']} → {x['erased_label']}" for x in r.get("lost", [])],
            } for r in judge["retention"]}}


def summarize(rows: list[dict]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name in dict.fromkeys(r["strategy"] for r in rows):
        rs = [r for r in rows if r["strategy"] == name]
        last = rs[-1]
        out[name] = {
            "steps": len(rs),
            "final_min_ua": last["min_ua"],
            "final_objects_kept_rel": last["objects_kept"]["rel"],
            "final_styles_kept_rel": last["styles_kept"]["rel"],
            "final_min_retention_rel": last["min_retention_rel"],
            "total_step_s": round(sum(r["step_s"] for r in rs), 1),
            "mean_step_s": round(mean(r["step_s"] for r in rs), 1),
            "last_step_s": last["step_s"],
            "final_adapter_bytes": last["cumulative_adapter_bytes"],
            "ua_target_met": last["min_ua"] >= TARGET_UA,
            "retention_target_met": (last["min_retention_rel"] or 0) >= TARGET_RETENTION,
            "certified": sum(bool(r["certified"]) for r in rs),
            "worst_min_ua": min(r["min_ua"] for r in rs),
            "worst_retention_rel": min((r["min_retention_rel"] for r in rs if r["min_retention_rel"] is not None),
                                       default=None),
        }
        out[name]["targets_met"] = out[name]["ua_target_met"] and out[name]["retention_target_met"]
    return out


def table(rows: list[dict]) -> str:
    def f(v: Any, spec: str) -> str:
        return format(v, spec) if isinstance(v, (int, float)) else "-".rjust(int(spec.rstrip("dfe").split(".")[0]))

    lines = [f"{'step':>4} {'target':<10}{'strategy':<8}{'minUA':>7}{'objs%':>7}{'styl%':>7}{'erase s':>9}"
             f"{'step s':>8}{'rounds':>7}{'cert':>5}{'adapter B':>11}{'rank':>6}  UA per erased concept"]
    for r in rows:
        uas = " ".join(f"{t[:4]}={u:.2f}" for t, u in r["ua"].items())
        lines.append(
            f"{r['step']:>4} {r['target']:<10}{r['strategy']:<8}{f(r['min_ua'], '7.3f')}"
            f"{f(r['objects_kept']['rel'] and 100 * r['objects_kept']['rel'], '7.1f')}"
            f"{f(r['styles_kept']['rel'] and 100 * r['styles_kept']['rel'], '7.1f')}"
            f"{f(r['erase_s'], '9.1f')}{f(r['step_s'], '8.1f')}{f(r['rounds'], '7d')}"
            f"{ {True: 'yes', False: 'no'}.get(r.get('certified'), '-'):>5}"
            f"{f(r['cumulative_adapter_bytes'], '11d')}{f(r['cumulative_rank'], '6d')}  {uas}"
        )
    return "\n".join(lines)


def chart(rows: list[dict], path: Path) -> None:
    """Four panels over the steps, one line per strategy: min UA of the erased concepts, min kept accuracy
    (% of v1), seconds per step, cumulative adapter KiB."""
    from PIL import Image, ImageDraw

    colors = {"head": (200, 60, 60), "merge": (60, 130, 200), "joint": (60, 160, 80)}
    panels = [("min UA (erased so far)", lambda r: r["min_ua"], (0.0, 1.05), TARGET_UA),
              ("min kept accuracy / v1", lambda r: r["min_retention_rel"], (0.0, 1.2), TARGET_RETENTION),
              ("seconds per step", lambda r: r["step_s"], None, None),
              ("cumulative adapter KiB", lambda r: r["cumulative_adapter_bytes"] / 1024, None, None)]
    steps = max(r["step"] for r in rows)
    pw, ph, margin = 330, 240, 45
    img = Image.new("RGB", (pw * len(panels) + 20, ph + 60), "white")
    d = ImageDraw.Draw(img)
    for p, (title, value, limits, target) in enumerate(panels):
        x0, y0, w, h = p * pw + margin, 30, pw - margin - 15, ph - 40
        vals = [value(r) for r in rows if value(r) is not None]
        lo, hi = limits or (0.0, max(vals, default=1.0) * 1.1 or 1.0)
        d.text((x0, 8), title, fill="black")
        d.rectangle((x0, y0, x0 + w, y0 + h), outline="black")

        def xy(s: int, v: float, x0: int = x0, y0: int = y0, w: int = w, h: int = h, lo: float = lo,
               hi: float = hi) -> tuple[float, float]:
            x = x0 + (s - 1) / max(1, steps - 1) * w
            return x, y0 + h - (min(max(v, lo), hi) - lo) / (hi - lo) * h

        for frac in (0.0, 0.5, 1.0):
            v = lo + frac * (hi - lo)
            d.text((x0 - 40, xy(1, v)[1] - 6), f"{v:.3g}", fill="black")
        if target is not None:
            d.line((xy(1, target), (x0 + w, xy(1, target)[1])), fill=(170, 170, 170))
        for s in range(1, steps + 1):
            d.text((xy(s, lo)[0] - 3, y0 + h + 4), str(s), fill="black")
        for name, color in colors.items():
            pts = [xy(r["step"], value(r)) for r in rows if r["strategy"] == name and value(r) is not None]
            if len(pts) > 1:
                d.line(pts, fill=color, width=2)
            for x, y in pts:
                d.ellipse((x - 3, y - 3, x + 3, y + 3), fill=color)
    for i, (name, color) in enumerate(colors.items()):
        d.rectangle((margin + i * 120, ph + 30, margin + i * 120 + 12, ph + 42), fill=color)
        d.text((margin + i * 120 + 18, ph + 30), name, fill="black")
    img.save(path)


def main(argv: list[str] | None = None) -> int:
    from bench.cli import add_eval_seeds, config_params

    parser = argparse.ArgumentParser(description="Sequential erasures on the testbed: head vs merge vs joint.")
    parser.add_argument("--steps", type=int, default=10, help="Requests to run (from the start of --order).")
    parser.add_argument("--quick", action="store_true", help="Two requests, one evaluation seed: a time estimate.")
    parser.add_argument("--order", default=DEFAULT_ORDER, help="Comma-separated testbed concepts, in request order.")
    parser.add_argument("--strategies", default=",".join(STRATEGIES), help=f"Subset of {','.join(STRATEGIES)}.")
    add_eval_seeds(parser, "Seeds per grid cell when scoring a version and in the verification's grid diagnostics")
    parser.add_argument("--sample-steps", type=int, default=10,
                        help="DDIM steps of SPARE's cached samples (bench/erasure.py's default).")
    parser.add_argument("--spare-steps", type=int, default=None, help="Override SPARE steps (toy runs only).")
    parser.add_argument("--spare-params", type=config_params("spare"), default=None,
                        help="JSON of SpareConfig fields (toy runs only).")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (a shared CPU: keep it low).")
    parser.add_argument("--out", type=Path, default=RESULTS / "lineage.json")
    parser.add_argument("--work", type=Path, default=None, help="Keep run folders here (default: a temp dir).")
    args = parser.parse_args(argv)
    if args.quick:
        args.steps, args.eval_seeds = 2, 1
    from core.spare.testbed_eval import concept_kind
    from core.testbed.loading import load_classifier, load_pipeline

    targets = [t for t in args.order.split(",") if t]
    for t in targets:
        concept_kind(t)
    if len(set(targets)) != len(targets):
        parser.error("--order names a concept twice")
    if not 1 <= args.steps <= len(targets):
        parser.error(f"--steps must be between 1 and {len(targets)}")
    strategies = [s for s in args.strategies.split(",") if s]
    if set(strategies) - set(STRATEGIES):
        parser.error(f"unknown strategies: {sorted(set(strategies) - set(STRATEGIES))}")

    torch.set_num_threads(args.threads)
    torch.set_flush_denormal(True)
    import diffusers
    import transformers

    diffusers.utils.logging.set_verbosity_error()
    diffusers.utils.logging.disable_progress_bar()
    transformers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    v1, classifier = load_pipeline(), load_classifier()
    chains = {name: Chain(name, head=v1) for name in strategies}
    seeds = list(range(args.eval_seeds))
    work = args.work or Path(tempfile.mkdtemp(prefix="lethe-lineage-"))
    result: dict[str, Any] = {
        "order": targets[: args.steps], "strategies": strategies, "eval_seeds": args.eval_seeds,
        "sample_steps": args.sample_steps, "threads": args.threads, "targets": {"ua": TARGET_UA,
        "retention_rel": TARGET_RETENTION}, "started_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "rows": [],
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    try:
        for index in range(args.steps):
            for name in strategies:
                row = step(chains[name], index, targets, v1, work, args)
                row.update(score(chains[name].head, targets[: index + 1], classifier, seeds))
                result["rows"].append(row)
                print(table([row]).splitlines()[1], flush=True)
                result["summary"] = summarize(result["rows"])
                args.out.write_text(json.dumps(result, indent=2))
                chart(result["rows"], args.out.with_suffix(".png"))  # a stopped run keeps its picture too
    finally:
        if args.work is None:
            shutil.rmtree(work, ignore_errors=True)
    result["finished_at"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    result["summary"] = summarize(result["rows"])
    args.out.write_text(json.dumps(result, indent=2))
    chart(result["rows"], args.out.with_suffix(".png"))
    print(table(result["rows"]))
    for name, s in result["summary"].items():
        print(f"{name:<6} after {s['steps']} requests: min UA {s['final_min_ua']:.3f} "
              f"({'met' if s['ua_target_met'] else 'NOT met'} >= {TARGET_UA}), min kept accuracy "
              f"{s['final_min_retention_rel']} of v1 ({'met' if s['retention_target_met'] else 'NOT met'} >= "
              f"{TARGET_RETENTION}), {s['certified']}/{s['steps']} steps certified, {s['total_step_s']} s in all, "
              f"adapter {s['final_adapter_bytes']} B")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
