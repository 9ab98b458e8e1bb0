"""bench/retention_anatomy.py: the parts of an erasure it scores are the parts it says (a model routed to the
erased UNet everywhere draws what the erased model draws, routed nowhere what the base draws; a strength scales
the delta), and at a toy size on the shipped testbed it writes its table's JSON and plot."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from bench import retention_anatomy
from core.evaluation.sampling import generate
from tests.tiny_pipelines import tiny_sd1
from tests.toy_runs import toy_run

torch.set_num_threads(1)

def _erased_copy(pipe: object) -> object:
    unet = copy.deepcopy(pipe.unet)  # type: ignore[attr-defined]
    with torch.no_grad():
        for p in unet.parameters():
            p.add_(0.05 * torch.randn_like(p))
    erased = type(pipe)(**{**pipe.components, "unet": unet})  # type: ignore[attr-defined]
    erased.set_progress_bar_config(disable=True)
    return erased


def test_routing_everywhere_or_nowhere_draws_the_erased_or_the_base_model() -> None:
    base = tiny_sd1()
    base.set_progress_bar_config(disable=True)

    def draw(pipe: object) -> np.ndarray:
        return generate(pipe, ["a cat", "a dog"], [1, 2], steps=3, guidance_scale=5.0)

    def erased(route: object = None) -> object:
        torch.manual_seed(0)  # the same erased weights each time
        pipe = _erased_copy(base)
        return pipe if route is None else retention_anatomy._routed(base, pipe, route)  # type: ignore[arg-type]

    halves: list[int] = []
    assert np.array_equal(draw(erased(lambda t, h, n: halves.append(n) or True)), draw(erased()))
    assert set(halves) == {2}, "a guided batch is split into its unconditional and conditional halves"
    assert np.array_equal(draw(erased(lambda t, h, n: False)), draw(base))
    cond_only = draw(erased(lambda t, h, n: h == 1))
    assert not np.array_equal(cond_only, draw(base)) and not np.array_equal(cond_only, draw(erased()))


@pytest.mark.slow(minutes=0.5)
def test_a_text_side_change_is_all_in_the_text_side_row(tmp_path: Path) -> None:
    run = toy_run(tmp_path / "run", 3.0)
    out = tmp_path / "anatomy.json"
    assert retention_anatomy.main(["--testbed", "full", "--run", str(run), "--target", "circle",
                                   "--eval-seeds", "1", "--strengths", "1,0", "--out", str(out)]) == 0
    result = json.loads(out.read_text())
    rows = {r["model"]: r for r in result["rows"]}
    assert list(rows) == ["erasure", "text side", "image side", "down blocks", "t >= 600", "t < 600",
                          "erasure x1", "text side x1", "erasure x0", "text side x0", "cond branch", "uncond branch"]
    assert result["text_side_modules"] == 1
    keys = ("ua", "ira_rel", "cra_rel")
    assert [rows["text side"][k] for k in keys] == [rows["erasure"][k] for k in keys]
    assert [rows["down blocks"][k] for k in keys] == [rows["erasure"][k] for k in keys]
    assert (rows["image side"]["ira_rel"], rows["image side"]["cra_rel"]) == (1.0, 1.0), "no change: the base"
    assert [rows["erasure x1"][k] for k in keys] == [rows["erasure"][k] for k in keys]
    assert Image.open(out.with_suffix(".png")).size[0] > 100


def test_a_strength_scales_the_change_of_the_modules_it_names() -> None:
    """`--strengths`: the whole change and its text pathway, each delta times the scale, the rest as the base."""
    base = tiny_sd1()
    modules = dict(base.unet.named_modules())
    block = "down_blocks.0.attentions.0.transformer_blocks.0.attn2"
    text, image = f"{block}.to_k", f"{block}.to_q"
    deltas = {m: torch.randn_like(modules[m].weight) for m in (text, image)}
    variants = dict(retention_anatomy.strength_variants(base, deltas, [0.5]))
    assert list(variants) == ["erasure x0.5", "text side x0.5"]
    whole, text_only = (dict(variants[v]().unet.named_modules()) for v in variants)
    for m in (text, image):
        assert torch.allclose(whole[m].weight, modules[m].weight + 0.5 * deltas[m])
    assert torch.allclose(text_only[text].weight, modules[text].weight + 0.5 * deltas[text])
    assert torch.equal(text_only[image].weight, modules[image].weight)
