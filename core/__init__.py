"""Lethe's core: everything that is Lethe, importable without FastAPI or Celery."""

import os

# OpenMP's default busy-wait makes torch's intra-op threads spin against every other process on a small,
# shared CPU box: a tiny UNet forward measured 8.07 s with 2 threads vs 0.20 s with OMP_WAIT_POLICY=PASSIVE
# (load ~9 on 2 cores). It must be set before torch loads its OpenMP runtime; every entry point imports
# core first. An explicit value from the environment wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
