"""Lethe's core: everything that is Lethe, importable without FastAPI or Celery."""

import os

# OpenMP's default busy-wait makes torch's intra-op threads spin against every other process on a small,
# shared CPU box: a tiny UNet forward measured 8.07 s with 2 threads vs 0.20 s with OMP_WAIT_POLICY=PASSIVE
# (load ~9 on 2 cores). It must be set before torch loads its OpenMP runtime; every entry point imports
# core first. An explicit value from the environment wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


def _quiet_image_processor_fallback() -> None:
    """transformers warns, in every process that imports an SD pipeline, that its CLIP image processor falls
    back from torchvision to PIL. Lethe installs no torchvision on purpose: the PIL processor is the one it
    means to use (the CLIP judge preprocesses with it; pipelines carry no safety checker). The notice would
    open the output of every CLI command; this filter drops that one message and nothing else the library logs."""
    import logging

    class _Fallback(logging.Filter):
        def filter(self, record: logging.LogRecord) -> bool:
            return "requires torchvision (not installed); falling back" not in record.getMessage()

    logging.getLogger("transformers.utils.import_utils").addFilter(_Fallback())


_quiet_image_processor_fallback()
