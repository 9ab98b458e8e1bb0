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
