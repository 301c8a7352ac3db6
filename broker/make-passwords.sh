#!/bin/sh
# Creates the society's secrets once: random passwords for the MQTT users and Grafana's admin,
# as KEY=value lines. docker compose reads them from `.env` next to docker-compose.yml; for
# Kubernetes write them to deploy/k8s/credentials.env (kustomize's secretGenerator reads it).
#
#   broker/make-passwords.sh                           # writes ./.env (for docker compose)
#   broker/make-passwords.sh deploy/k8s/credentials.env
#
# An existing file is kept as it is (delete it to rotate the passwords). The broker builds its
# password file from the same variables when it starts (broker/build-passwd.sh). Passwords are
# hex, so they can stand in a broker URL (mqtt://user:password@host) without escaping.
set -eu

out=${1:-.env}
if [ -e "$out" ]; then
    echo "make-passwords.sh: $out exists; keeping it (delete it to make new passwords)" >&2
    exit 0
fi

random() {
    if command -v openssl >/dev/null 2>&1; then
        openssl rand -hex 24
    else
        od -An -N24 -tx1 /dev/urandom | tr -d ' \n'
    fi
}

umask 077
{
    echo "# Made by broker/make-passwords.sh. Secret: do not commit."
    echo "MQTT_COORDINATOR_PASSWORD=$(random)"
    echo "MQTT_AGENT_PASSWORD=$(random)"
    echo "MQTT_MONITOR_PASSWORD=$(random)"
    echo "GRAFANA_ADMIN_PASSWORD=$(random)"
} >"$out"
echo "make-passwords.sh: wrote $out"
