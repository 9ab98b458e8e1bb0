# Lethe API image: slim Python and `lethe[api]` — no torch, no diffusers (the API, `lethe beat` and the
# default-queue workers never run a model; GPU workers use docker/worker.Dockerfile).
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 \
    LETHE_DATA_DIR=/var/lib/lethe LETHE_LOG_JSON=1 HF_HUB_OFFLINE=1 \
    LETHE_HEARTBEAT_FILE=/tmp/lethe.alive

RUN useradd --system --uid 10001 --create-home --home-dir /home/lethe lethe \
    && mkdir -p /var/lib/lethe && chown lethe /var/lib/lethe

WORKDIR /app
COPY pyproject.toml README.md constraints.txt alembic.ini ./
COPY core ./core
COPY api ./api
COPY worker ./worker
COPY migrations ./migrations
# constraints.txt is the lock shared with CI and the worker image.
RUN pip install -c constraints.txt ".[api]"

USER 10001
EXPOSE 8000
# Liveness without curl: the process answers /healthz.
HEALTHCHECK --interval=15s --timeout=5s --start-period=20s --retries=5 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=4)"]
CMD ["lethe", "serve", "--host", "0.0.0.0", "--port", "8000", "--workers", "2"]
