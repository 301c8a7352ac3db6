# One image for every process of the society: `society agent`, `society coordinator`,
# `society broker` (the pure-Python fallback; compose and Kubernetes use the Mosquitto image).
# Configured by flags or SOCIETY_* environment variables (`society agent --help` lists them).
#
#   DOCKER_BUILDKIT=1 docker build -t agent-society .
#   docker run --rm agent-society agent --help
#
# Build arguments (the defaults are what a machine with internet access wants):
#   BASE_IMAGE       a Python 3.11 image with pip               python:3.11-slim
#   TORCH            the torch requirement                      torch==2.13.0
#   TORCH_INDEX_URL  where pip finds torch and its dependencies https://download.pytorch.org/whl/cpu
#                    (the CPU build: a bare `torch` from PyPI is a CUDA build of several GB)
#   TORCH_WHEELS     an image (or stage) whose root holds wheels that pip may take torch from,
#                    mounted for the install only, never copied into the image
# Secret (optional): `--secret id=ca,src=<CA bundle>` for pip behind a TLS-inspecting proxy;
# it is mounted for the pip commands only and is not in any layer.
# tests/containers/build-images.sh builds it with stand-ins made from Debian packages where the
# registries of images cannot be reached (docs/deployment.md).
ARG BASE_IMAGE=python:3.11-slim
ARG TORCH_WHEELS=no-torch-wheels

FROM scratch AS no-torch-wheels
FROM ${TORCH_WHEELS} AS torch-wheels

FROM ${BASE_IMAGE}
ARG TORCH=torch==2.13.0
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# CPU-only torch, pinned, before the project: a bare `torch` would pull a CUDA build of GBs.
RUN --mount=type=secret,id=ca --mount=type=bind,from=torch-wheels,target=/tmp/torch-wheels \
    if [ -s /run/secrets/ca ]; then export PIP_CERT=/run/secrets/ca; fi; \
    pip install --find-links /tmp/torch-wheels --index-url "$TORCH_INDEX_URL" "$TORCH"

WORKDIR /app
# The project's dependencies (and its build backend) first, from pyproject.toml alone (an
# empty package and README stand in), so that a change to the code or the README reinstalls
# only the project, offline, in seconds.
COPY pyproject.toml ./
RUN --mount=type=secret,id=ca \
    if [ -s /run/secrets/ca ]; then export PIP_CERT=/run/secrets/ca; fi; \
    mkdir agents && touch agents/__init__.py README.md \
    && pip install . "setuptools>=77" wheel && pip uninstall -y agent-society \
    && rm -rf /app/agents /app/build /app/README.md
COPY README.md ./
COPY agents ./agents
RUN pip install --no-deps --no-build-isolation . && rm -rf /app/agents /app/build
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
