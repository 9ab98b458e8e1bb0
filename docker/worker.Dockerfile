# Lethe GPU worker: CUDA runtime, CUDA torch. One worker process per GPU (--pool=solo).
FROM nvidia/cuda:12.6.3-cudnn-runtime-ubuntu24.04

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 \
    LETHE_DATA_DIR=/var/lib/lethe LETHE_LOG_JSON=1 HF_HUB_OFFLINE=1 \
    VIRTUAL_ENV=/opt/venv PATH=/opt/venv/bin:$PATH

RUN apt-get update && apt-get install -y --no-install-recommends python3 python3-venv python3-pip \
    && rm -rf /var/lib/apt/lists/* \
    && python3 -m venv /opt/venv
RUN useradd --system --uid 10001 --create-home --home-dir /home/lethe lethe \
    && mkdir -p /var/lib/lethe && chown lethe /var/lib/lethe

WORKDIR /app
COPY pyproject.toml README.md alembic.ini ./
COPY core ./core
COPY api ./api
COPY worker ./worker
COPY migrations ./migrations
RUN pip install "torch>=2.4" --index-url https://download.pytorch.org/whl/cu126 && pip install .

USER lethe
HEALTHCHECK --interval=30s --timeout=20s --start-period=60s --retries=3 \
    CMD celery -A worker.app inspect ping -d "lethe-gpu@$(hostname)" --timeout 10 || exit 1
# `lethe worker --queues gpu` always runs Celery with --pool=solo (one process per GPU).
CMD ["lethe", "worker", "--queues", "gpu"]
