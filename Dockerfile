# One image for every process of the society: `society agent`, `society coordinator`,
# `society broker` (the pure-Python fallback; compose and Kubernetes use the Mosquitto image).
# Configured by flags or SOCIETY_* environment variables (`society agent --help` lists them).
#
#   docker build -t agent-society .
#   docker run --rm agent-society agent --help
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# CPU-only torch, pinned, before the project: a bare `torch` would pull a CUDA build of GBs.
RUN pip install torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu

WORKDIR /app
COPY pyproject.toml README.md ./
COPY agents ./agents
RUN pip install . && rm -rf /app/agents /app/build
COPY deploy/healthcheck.py /app/healthcheck.py

# An unprivileged user; data (checkpoints, outbox, history) lives under /data: mount a volume.
RUN useradd --uid 10001 --user-group --home-dir /data --create-home society
USER 10001:10001
WORKDIR /data
VOLUME ["/data"]
# The coordinator's Prometheus endpoint (`society coordinator --metrics-port`).
EXPOSE 9464

ENTRYPOINT ["society"]
CMD ["--help"]
