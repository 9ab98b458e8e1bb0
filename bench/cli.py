"""Command-line options the per-target benchmarks share: which testbeds and targets, sampling, seed, threads,
the grid's seeds, engine parameters."""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any


def add_target_options(parser: argparse.ArgumentParser, testbeds: str, sampling: bool = True) -> None:
    """--testbeds (default `testbeds`), --objects, --styles, --threads; with `sampling` (benchmarks that erase)
    also --sample-steps and --seed."""
    parser.add_argument("--testbeds", default=testbeds,
                        help="Comma-separated testbeds: names (full, subword, dev) or built testbed folders.")
    parser.add_argument("--objects", default="circle,triangle,heart", help="Comma-separated object targets.")
    parser.add_argument("--styles", default="striped,dotted,checkered", help="Comma-separated style targets.")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (a shared CPU: keep it low).")
    if sampling:
        parser.add_argument("--sample-steps", type=int, default=10, help="DDIM steps of SPARE's cached samples.")
        parser.add_argument("--seed", type=int, default=0)


def add_eval_seeds(parser: argparse.ArgumentParser, what: str = "Seeds per grid cell in the evaluator") -> None:
    """--eval-seeds: seeds per cell of the testbed's grid; by default the count a worker's verification uses
    (LETHE_VERIFY_GRID_SEEDS), so that a benchmark's grid numbers and a job's grid checks rest on as many images."""
    from core.config import get_settings

    seeds = get_settings().verify_grid_seeds
    parser.add_argument("--eval-seeds", type=int, default=seeds,
                        help=f"{what} (default: LETHE_VERIFY_GRID_SEEDS, the verification's; now {seeds}).")


def config_params(method: str) -> Callable[[str], dict[str, Any]]:
    """An argparse `type` for --spare-params / --esd-params: the JSON object of the method's config fields
    (core.spare.specs), refused before any run (exit 2, naming the option) unless it is one, with every field known
    and within its bounds. '' is no parameters."""

    def parse(text: str) -> dict[str, Any]:
        if not text:
            return {}
        from pydantic import ValidationError

        from core.spare import EsdConfig, SpareConfig

        try:
            params = json.loads(text)
        except json.JSONDecodeError as exc:
            raise argparse.ArgumentTypeError(f"not JSON ({exc.msg} at character {exc.pos}): {text}") from None
        if not isinstance(params, dict):
            raise argparse.ArgumentTypeError(f"must be a JSON object of config fields, got: {text}")
        try:
            (SpareConfig if method == "spare" else EsdConfig)(**params)
        except ValidationError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None
        return params

    return parse


def testbed_dirs(names: str) -> list[Path]:
    """The testbeds a comma-separated list names: each a name `lethe testbed path --name` knows, or the folder of a
    built testbed (one holding manifest.json, e.g. `lethe testbed build --profile dev --seed 23 --out DIR`)."""
    from core.testbed.paths import resolve_testbed

    return [resolve_testbed(name) for name in filter(None, (n.strip() for n in names.split(",")))]


def targets(args: argparse.Namespace) -> list[str]:
    """The objects, then the styles, the options name."""
    return [t for t in args.objects.split(",") + args.styles.split(",") if t]


def run_targets(testbeds: list[Path], targets: list[str], result: dict[str, Any], out: Path,
                measure: Callable[[Any, Path, str], list[dict[str, Any]]],
                summarize: Callable[[list[dict[str, Any]]], Any], chart: Callable[[dict[str, Any]], None]) -> None:
    """`measure(pipeline, testbed, target)` for each target on each testbed (one pipeline loaded per testbed):
    its rows go to result["rows"]; the summary, the JSON at `out` and the plot are rewritten after every target,
    so that a long run interrupted keeps what it measured."""
    from core.spare.loading import pipeline_dir
    from core.testbed.loading import load_pipeline

    out.parent.mkdir(parents=True, exist_ok=True)
    for testbed in testbeds:
        pipe = load_pipeline(pipeline_dir(testbed))
        for target in targets:
            result["rows"] += measure(pipe, testbed, target)
            result["summary"] = summarize(result["rows"])
            out.write_text(json.dumps(result, indent=2))
            chart(result)
    result["finished_at"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    out.write_text(json.dumps(result, indent=2))
