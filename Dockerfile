# One image for every process of the society: `society agent`, `society coordinator`,
# `society broker` (the pure-Python fallback; compose uses the Mosquitto image instead).
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1

# CPU-only torch, pinned, before the project: a bare `torch` would pull a CUDA build of GBs.
RUN pip install torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu

WORKDIR /app
COPY pyproject.toml README.md ./
COPY agents ./agents
RUN pip install .

# Data (checkpoints, outbox, history) lives under /data; mount a volume there.
WORKDIR /data
ENTRYPOINT ["society"]
CMD ["--help"]
