#!/usr/bin/env bash
# Builds, with one command, every image the container tests run (`make images` calls it):
#
#   1. the base images: python:3.11-slim, eclipse-mosquitto:2.0.20 and prom/prometheus:v2.53.0
#      when they are here or can be pulled; otherwise stand-ins made from Debian packages
#      (debootstrap --variant=minbase of bookworm, `docker import`, then
#      tests/containers/stand-ins/*.Dockerfile), tagged agent-society-stand-in/*. A stand-in
#      that exists is kept (--rebuild makes them again);
#   2. when the CPU build of torch lies on this machine's disk (pip's find-links, see
#      `pip config list`), an image holding only that wheel, agent-society-stand-in/torch-wheels,
#      which the Dockerfile mounts for its torch install (it is not copied into the image);
#   3. agent-society:latest from the project's Dockerfile, with those as build arguments and
#      this machine's CA bundle as a BuildKit secret (for pip; in no layer of the image).
#
# Needs a running dockerd; root for debootstrap. Prints the seconds each step took.
set -euo pipefail
cd "$(dirname "$0")/../.."

rebuild=0
[ "${1:-}" = "--rebuild" ] && rebuild=1
STAND_IN=agent-society-stand-in
DEBIAN_IMAGE="$STAND_IN/debian:bookworm"
MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
CA_BUNDLE=${CA_BUNDLE:-/etc/ssl/certs/ca-certificates.crt}
TORCH_VERSION=2.13.0

say() { echo "build-images: $*"; }
elapsed() { echo $(($(date +%s) - $1)); }

# A docker CLI that builds with BuildKit: `docker buildx`, or a CLI older than 23 (whose
# `docker build` has BuildKit inside) such as Debian's docker.io.
build_cmd=()
for cli in docker /usr/bin/docker; do
    command -v "$cli" >/dev/null 2>&1 || continue
    if "$cli" buildx version >/dev/null 2>&1; then
        build_cmd=("$cli" buildx build --load)
        break
    fi
    major=$("$cli" version --format '{{.Client.Version}}' 2>/dev/null | cut -d. -f1 || true)
    if [ -n "$major" ] && [ "$major" -lt 23 ] 2>/dev/null; then
        build_cmd=(env DOCKER_BUILDKIT=1 "$cli" build)
        break
    fi
done
if [ "${#build_cmd[@]}" -eq 0 ]; then
    echo "build-images: no docker CLI that builds with BuildKit (docker buildx, or Debian's docker.io)" >&2
    exit 1
fi

have() { docker image inspect "$1" >/dev/null 2>&1; }

# The real image when it is here or can be pulled (20 s at most), else "".
real_image() {
    if have "$1"; then
        echo "$1"
    elif [ "$rebuild" -eq 0 ] && have "$2"; then
        echo ""
    elif timeout 20 docker pull -q "$1" >/dev/null 2>&1; then
        echo "$1"
    else
        echo ""
    fi
}

debian_base() {
    if [ "$rebuild" -eq 0 ] && have "$DEBIAN_IMAGE"; then
        return
    fi
    command -v debootstrap >/dev/null 2>&1 || {
        echo "build-images: debootstrap is missing (apt-get install debootstrap)" >&2
        exit 1
    }
    local start root
    start=$(date +%s)
    root=$(mktemp -d)
    debootstrap --variant=minbase bookworm "$root" "$MIRROR" >"$root.log" 2>&1 || {
        tail -20 "$root.log" >&2
        exit 1
    }
    cat >"$root/etc/apt/sources.list" <<EOF
deb $MIRROR bookworm main
deb $MIRROR bookworm-updates main
deb ${MIRROR%/debian}/debian-security bookworm-security main
EOF
    rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/cache/apt/*.bin "$root"/var/lib/apt/lists/*
    tar -C "$root" -c . | docker import -c 'CMD ["/bin/bash"]' - "$DEBIAN_IMAGE" >/dev/null
    rm -rf "$root" "$root.log"
    say "$DEBIAN_IMAGE made by debootstrap in $(elapsed "$start") s"
}

stand_in() {
    # $1 name (a Dockerfile in tests/containers/stand-ins), $2 tag
    local image="$STAND_IN/$1:$2" start
    if [ "$rebuild" -eq 0 ] && have "$image"; then
        echo "$image"
        return
    fi
    debian_base >&2
    start=$(date +%s)
    "${build_cmd[@]}" -q --build-arg "DEBIAN=$DEBIAN_IMAGE" -t "$image" \
        -f "tests/containers/stand-ins/$1.Dockerfile" tests/containers/stand-ins >/dev/null
    say "$image built in $(elapsed "$start") s" >&2
    echo "$image"
}

python_image=$(real_image python:3.11-slim "$STAND_IN/python:3.11")
[ -n "$python_image" ] || python_image=$(stand_in python 3.11)
mosquitto_image=$(real_image eclipse-mosquitto:2.0.20 "$STAND_IN/mosquitto:2.0")
[ -n "$mosquitto_image" ] || mosquitto_image=$(stand_in mosquitto 2.0)
prometheus_image=$(real_image prom/prometheus:v2.53.0 "$STAND_IN/prometheus:2.42")
[ -n "$prometheus_image" ] || prometheus_image=$(stand_in prometheus 2.42)
say "python: $python_image; mosquitto: $mosquitto_image; prometheus: $prometheus_image"

# torch: the CPU wheel from pip's find-links folder, when it is there.
build_args=(--build-arg "BASE_IMAGE=$python_image")
wheels_dir=${TORCH_WHEELS_DIR:-$(python3 -m pip config get global.find-links 2>/dev/null || echo "${PIP_FIND_LINKS:-}")}
wheel=""
for dir in $wheels_dir; do
    dir=${dir#file://}
    for candidate in "$dir"/torch-"$TORCH_VERSION"+cpu-cp311-*.whl; do
        [ -f "$candidate" ] && wheel=$candidate && break 2
    done
done
if [ -n "$wheel" ]; then
    wheels_image="$STAND_IN/torch-wheels:$TORCH_VERSION"
    if [ "$rebuild" -eq 1 ] || ! have "$wheels_image"; then
        tar -C "$(dirname "$wheel")" -c "$(basename "$wheel")" | docker import - "$wheels_image" >/dev/null
    fi
    build_args+=(--build-arg "TORCH_WHEELS=$wheels_image"
        --build-arg "TORCH=torch==$TORCH_VERSION+cpu"
        --build-arg "TORCH_INDEX_URL=https://pypi.org/simple")
    say "torch from $wheel"
else
    say "torch from the Dockerfile's default index (no torch-$TORCH_VERSION+cpu wheel on disk)"
fi
[ -f "$CA_BUNDLE" ] && build_args+=(--secret "id=ca,src=$CA_BUNDLE")

start=$(date +%s)
"${build_cmd[@]}" "${build_args[@]}" -t agent-society:latest .
say "agent-society:latest built in $(elapsed "$start") s"
