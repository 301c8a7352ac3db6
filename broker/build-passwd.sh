#!/bin/sh
# Builds Mosquitto's password file when the broker container starts, from the environment
# (and, optionally, a folder with one file per user), so no password file is kept anywhere
# and the broker and its clients read their passwords from the same place (.env for docker
# compose, a Secret in Kubernetes).
#
#   MQTT_COORDINATOR_PASSWORD  user `coordinator`
#   MQTT_AGENT_PASSWORD        user `agent` (shared by every agent; see broker/README.md)
#   MQTT_MONITOR_PASSWORD      user `monitor` (read-only: dashboards, Home Assistant, healthcheck)
#   MQTT_USERS_DIR             a folder of files, file name = user name, content = password
#                              (the per-agent-user variant: one user per StatefulSet pod)
#
# Usage: build-passwd.sh OUTPUT_FILE     (POSIX sh: runs in the eclipse-mosquitto image)
set -eu

out=${1:?usage: build-passwd.sh OUTPUT_FILE}
passwd_bin=${MOSQUITTO_PASSWD:-mosquitto_passwd}
tmp="$out.tmp"
umask 077
rm -f "$tmp"
: >"$tmp"
count=0

add() {
    # $1 user, $2 password; an empty password means "no such user".
    [ -n "$2" ] || return 0
    "$passwd_bin" -b "$tmp" "$1" "$2"
    count=$((count + 1))
}

add coordinator "${MQTT_COORDINATOR_PASSWORD:-}"
add agent "${MQTT_AGENT_PASSWORD:-}"
add monitor "${MQTT_MONITOR_PASSWORD:-}"
if [ -n "${MQTT_USERS_DIR:-}" ] && [ -d "$MQTT_USERS_DIR" ]; then
    for file in "$MQTT_USERS_DIR"/*; do
        [ -f "$file" ] || continue
        add "$(basename "$file")" "$(cat "$file")"
    done
fi

if [ "$count" -eq 0 ]; then
    rm -f "$tmp"
    echo "build-passwd.sh: no MQTT_*_PASSWORD variable and no MQTT_USERS_DIR: nobody could" \
        "connect (run broker/make-passwords.sh)" >&2
    exit 1
fi
# Started as root, Mosquitto reads the file after switching to user `mosquitto`.
if [ "$(id -u)" = 0 ] && id mosquitto >/dev/null 2>&1; then
    chown mosquitto:mosquitto "$tmp"
fi
mv "$tmp" "$out"
echo "build-passwd.sh: $count users in $out"
