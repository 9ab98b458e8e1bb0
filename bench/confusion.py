"""How often each testbed's classifier calls a base-model image of one concept another: the UA an erasure can reach.

An erasure distils the target's prompts to what the base draws for the surrogate. If the judge already calls the
base's images of the surrogate the target in a share p of cells, a perfect erasure still scores UA about 1 - p:
the surrogate sets a ceiling no lever lifts. This benchmark renders each testbed's base grid (every object in
every style, `--seeds` seeds per cell), classifies it with the testbed's classifier, and reports the confusion
matrices per kind and, for every benchmark target, the surrogate the folder's vocabulary picks
(`core.spare.prompting.fit_request`, before the surrogate screen) with its share of cells judged the target,
its 95 % Wilson interval, and the UA ceiling it implies.

Prints a table, writes bench/results/confusion.json and confusion.png (both testbeds' matrices).

    python bench/confusion.py                      # both testbeds, 8 seeds per cell
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

RESULTS = Path(__file__).resolve().parent / "results"


def confusion(testbed: Path, seeds: int) -> dict[str, Any]:
    """The base grid's confusion matrices (rows: prompted, columns: judged) for objects and styles."""
    from core.evaluation.metrics import base_grid, sampling_defaults
    from core.testbed.canvas import OBJECTS, STYLES

    steps, guidance = sampling_defaults(testbed)
    objs, styles, pred_obj, pred_style = base_grid(testbed, range(seeds)).arrays()

    def matrix(prompted: np.ndarray, judged: np.ndarray, names: tuple[str, ...]) -> list[list[int]]:
        return [[int(((prompted == i) & (judged == j)).sum()) for j in range(len(names))] for i in range(len(names))]

    return {"object": {"names": list(OBJECTS), "matrix": matrix(objs, pred_obj, OBJECTS)},
            "style": {"names": list(STYLES), "matrix": matrix(styles, pred_style, STYLES)},
            "seeds": seeds, "sampling_steps": steps, "guidance_scale": guidance}


def ceilings(testbed: Path, matrices: dict[str, Any], targets: list[str]) -> list[dict[str, Any]]:
    """Per target: the vocabulary's surrogate, the share of its base cells judged the target, the UA ceiling."""
    from core.evaluation.evidence import wilson
    from core.evaluation.vocabulary import load_vocabulary
    from core.spare import ErasureSpec, SpareConfig
    from core.spare.loading import pipeline_dir
    from core.spare.prompting import fit_request
    from core.spare.specs import ConceptSpec
    from core.spare.testbed_eval import concept_kind

    vocabulary = load_vocabulary(pipeline_dir(testbed))
    rows = []
    for target in targets:
        spec, _ = fit_request(ErasureSpec(concepts=[ConceptSpec(target=target)]), SpareConfig(), vocabulary)
        surrogate = spec.concepts[0].surrogate_text()
        kind = concept_kind(target)
        names, m = matrices[kind]["names"], matrices[kind]["matrix"]
        row = m[names.index(surrogate)] if surrogate in names else None
        judged, cells = (row[names.index(target)], sum(row)) if row else (None, None)
        share = judged / cells if cells else None
        low, high = wilson(judged, cells) if cells else (None, None)
        rows.append({"testbed": testbed.name, "target": target, "kind": kind, "surrogate": surrogate,
                     "judged_target": judged, "cells": cells, "share": share, "share_interval": [low, high],
                     "ua_ceiling": None if share is None else round(1 - share, 4)})
    return rows


def table(rows: list[dict[str, Any]]) -> str:
    lines = [f"{'testbed':<17}{'target':<11}{'surrogate':<11}{'judged target':>15}{'share':>8}{'95 % interval':>17}"
             f"{'UA ceiling':>12}"]
    for r in rows:
        if r["cells"] is None:
            lines.append(f"{r['testbed']:<17}{r['target']:<11}{r['surrogate']:<11}  (surrogate not on the grid)")
            continue
        lo, hi = r["share_interval"]
        lines.append(f"{r['testbed']:<17}{r['target']:<11}{r['surrogate']:<11}{r['judged_target']:>9}/{r['cells']:<5}"
                     f"{r['share']:8.3f}   [{lo:.3f}, {hi:.3f}]{r['ua_ceiling']:12.3f}")
    return "\n".join(lines)


def chart(result: dict[str, Any], path: Path) -> None:
    """Both kinds' confusion matrices per testbed as shaded grids (darker: more cells), counts written in."""
    from PIL import Image, ImageDraw

    cell, pad, label = 34, 20, 70
    blocks = [(tb, kind, c[kind]) for tb, c in result["confusion"].items() for kind in ("object", "style")]
    size = label + 6 * cell + pad
    img = Image.new("RGB", (size * len(blocks), size + 40), "white")
    d = ImageDraw.Draw(img)
    for b, (tb, kind, c) in enumerate(blocks):
        x0, y0 = b * size + label, 40 + label
        d.text((b * size + 8, 8), f"{tb.replace('testbed-', '')}: {kind}s", fill="black")
        d.text((b * size + 8, 22), "rows prompted, columns judged", fill="black")
        for i, name in enumerate(c["names"]):
            d.text((b * size + 4, y0 + i * cell + 10), name[:9], fill="black")
            d.text((x0 + i * cell + 2, y0 - 16), name[:5], fill="black")
            total = max(1, sum(c["matrix"][i]))
            for j, n in enumerate(c["matrix"][i]):
                shade = int(255 - 200 * n / total)
                color = (shade, shade, 255) if i == j else (255, shade, shade)
                left, top = x0 + j * cell, y0 + i * cell
                d.rectangle((left, top, left + cell - 2, top + cell - 2), fill=color)
                if n:
                    d.text((x0 + j * cell + 8, y0 + i * cell + 10), str(n), fill="black")
    img.save(path)


def main(argv: list[str] | None = None) -> int:
    from bench.cli import add_target_options, testbed_dirs
    from bench.cli import targets as target_names

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_target_options(parser, testbeds="full,subword", sampling=False)
    parser.add_argument("--seeds", type=int, default=8, help="Seeds per grid cell.")
    parser.add_argument("--out", type=Path, default=RESULTS / "confusion.json")
    args = parser.parse_args(argv)

    torch.set_num_threads(args.threads)
    testbeds = testbed_dirs(args.testbeds)
    targets = target_names(args)
    result: dict[str, Any] = {"started_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "confusion": {},
                              "targets": []}
    for testbed in testbeds:
        matrices = confusion(testbed, args.seeds)
        result["confusion"][testbed.name] = matrices
        result["targets"] += ceilings(testbed, matrices, targets)
    result["finished_at"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))
    chart(result, args.out.with_suffix(".png"))
    print(table(result["targets"]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
