# Lethe GPU worker image: `lethe[worker]` (torch with CUDA, diffusers) on the same Python and the same lock
# (constraints.txt) as CI and the API image. PyPI's Linux torch wheel is the CUDA build and brings the CUDA
# runtime as nvidia-* wheels; the host's NVIDIA container toolkit provides the driver. One worker per GPU.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 \
    LETHE_DATA_DIR=/var/lib/lethe LETHE_LOG_JSON=1 HF_HUB_OFFLINE=1 \
    LETHE_HEARTBEAT_FILE=/tmp/lethe.alive LETHE_WORKER_METRICS_PORT=9101

RUN useradd --system --uid 10001 --create-home --home-dir /home/lethe lethe \
    && mkdir -p /var/lib/lethe && chown lethe /var/lib/lethe

WORKDIR /app
COPY pyproject.toml README.md constraints.txt alembic.ini ./
COPY core ./core
COPY api ./api
COPY worker ./worker
COPY migrations ./migrations
RUN pip install -c constraints.txt ".[worker]"

USER 10001
EXPOSE 9101
# The worker touches LETHE_HEARTBEAT_FILE every LETHE_HEARTBEAT_INTERVAL_SECONDS (10 s) from a thread, also
# during a long job, as long as that job's lease is renewed; stale for a minute = unhealthy.
HEALTHCHECK --interval=30s --timeout=10s --start-period=120s --retries=3 \
    CMD ["python", "-c", "import os,sys,time; sys.exit(time.time() - os.stat('/tmp/lethe.alive').st_mtime > 60)"]
# `lethe worker --queues gpu` always runs Celery with --pool=solo (one process per GPU).
CMD ["lethe", "worker", "--queues", "gpu"]
