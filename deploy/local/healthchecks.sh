#!/usr/bin/env bash
# Runs the containers' healthchecks where podman cannot schedule them itself. Podman hands each
# healthcheck to a systemd timer; on a machine without systemd (a container, CI) no check ever
# runs, every container stays "starting", and `docker compose up --wait` never returns. This
# loop runs `podman healthcheck run` for each running container of a compose project that has a
# healthcheck, at that check's own interval, until it is stopped. Hand-written: podman 4 has
# no scheduler of its own besides systemd.
#
#   deploy/local/healthchecks.sh PROJECT     (PROJECT: the compose project name, e.g. spendpipe)
set -euo pipefail

project=${1:?usage: healthchecks.sh COMPOSE_PROJECT}
export CONTAINERS_CONF=${CONTAINERS_CONF:-$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/containers.conf}
declare -A due=()

# a Go duration as podman prints it (10s, 1m0s, 500ms) -> whole seconds, at least 1
seconds() {
  local d=$1 total=0 n unit
  while [[ $d =~ ^([0-9]+)(\.[0-9]+)?(h|ms|m|s|us|ns)(.*)$ ]]; do
    n=${BASH_REMATCH[1]} unit=${BASH_REMATCH[3]} d=${BASH_REMATCH[4]}
    case $unit in
      h) total=$(( total + n * 3600 )) ;;
      m) total=$(( total + n * 60 )) ;;
      s) total=$(( total + n )) ;;
    esac
  done
  echo $(( total > 0 ? total : 1 ))
}

trap 'exit 0' TERM INT
while :; do
  now=$(date +%s)
  for id in $(podman ps --quiet --no-trunc --filter "label=com.docker.compose.project=$project"); do
    # "CMD 10s", "CMD-SHELL 10s", or "NONE 30s" for a disabled check; nothing without one
    read -r kind interval < <(podman inspect --format \
      '{{if .Config.Healthcheck}}{{index .Config.Healthcheck.Test 0}} {{.Config.Healthcheck.Interval}}{{end}}' \
      "$id" 2>/dev/null) || continue
    [[ $kind == CMD || $kind == CMD-SHELL ]] || continue
    if (( now >= ${due[$id]:-0} )); then
      # a failing check is recorded by podman itself; only the schedule is ours
      podman healthcheck run "$id" >/dev/null 2>&1 || true
      due[$id]=$(( now + $(seconds "$interval") ))
    fi
  done
  sleep 1
done
