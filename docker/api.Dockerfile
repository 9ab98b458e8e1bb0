# Lethe API: slim Python, CPU-only torch (the API never runs models; workers do).
FROM python:3.11-slim AS base

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 \
    LETHE_DATA_DIR=/var/lib/lethe LETHE_LOG_JSON=1 HF_HUB_OFFLINE=1

RUN apt-get update && apt-get install -y --no-install-recommends curl && rm -rf /var/lib/apt/lists/*
RUN useradd --system --uid 10001 --create-home --home-dir /home/lethe lethe \
    && mkdir -p /var/lib/lethe && chown lethe /var/lib/lethe

WORKDIR /app
COPY pyproject.toml README.md constraints.txt alembic.ini ./
COPY core ./core
COPY api ./api
COPY worker ./worker
COPY migrations ./migrations
# The CPU wheel keeps the image small; pyproject's torch range would otherwise pull a CUDA build.
RUN pip install torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu \
    && pip install -c constraints.txt .

USER lethe
EXPOSE 8000
HEALTHCHECK --interval=15s --timeout=5s --start-period=20s --retries=5 \
    CMD curl -fsS http://127.0.0.1:8000/healthz || exit 1
CMD ["lethe", "serve", "--host", "0.0.0.0", "--port", "8000", "--workers", "2"]
