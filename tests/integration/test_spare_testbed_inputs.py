"""Checkpoints saved in fp16 (like the shipped testbed) load as float32 on a CPU, where fp16 cannot run."""

import torch

from core.spare.loading import load_pipeline
from core.testbed.paths import SHIPPED


def test_fp16_checkpoint_loads_as_float32_on_cpu() -> None:
    stored = {str(p) for p in (SHIPPED / "pipeline").rglob("*.safetensors")}
    assert stored, "the shipped testbed has no weights"
    pipe = load_pipeline(SHIPPED / "pipeline", device="cpu")
    assert pipe.unet.dtype == torch.float32
    assert pipe.text_encoder.dtype == torch.float32
    assert pipe.vae.dtype == torch.float32
    tokens = pipe.tokenizer(["a circle"], padding="max_length", max_length=pipe.tokenizer.model_max_length,
                            return_tensors="pt")
    with torch.no_grad():
        emb = pipe.text_encoder(tokens.input_ids)[0]
        out = pipe.unet(torch.randn(1, pipe.unet.config.in_channels, 8, 8), 10, emb).sample
    assert torch.isfinite(out).all()


def test_testbed_requests_get_a_surrogate_the_testbed_knows() -> None:
    from core.spare.specs import ConceptSpec, ErasureSpec, SpareConfig
    from core.spare.testbed_eval import fit_to_testbed

    generic = ErasureSpec(concepts=[ConceptSpec(target="circle", surrogate="object", kind="object"),
                                    ConceptSpec(target="square", kind="object")])
    spec, config = fit_to_testbed(generic, SpareConfig())
    assert [c.surrogate for c in spec.concepts] == ["triangle", "triangle"]  # skips the other target
    assert all("circle" in p for p in spec.concepts[0].prompts)
    assert not any("circle" in r or "square" in r for r in spec.retain)
    assert config.max_forget_prompts == max(len(c.prompts) for c in spec.concepts)
    chosen, _ = fit_to_testbed(ErasureSpec(concepts=[ConceptSpec(target="circle", surrogate="star")]), SpareConfig())
    assert chosen.concepts[0].surrogate == "star"
