#!/usr/bin/env bash
# Puts Prometheus's promtool at $1 (the venv's bin/promtool), for the alert-rule tests.
#
# A promtool on PATH is linked. Otherwise the binary is taken out of Debian's `prometheus`
# package without installing the package: installing it would also start a Prometheus server
# on :9090 wherever systemd runs, and pull in its web UI's libraries. promtool is one static
# binary. Only `apt-get update` (when the package lists are missing) needs root.
set -euo pipefail
source "$(dirname "$0")/apt.sh"

target=${1:?usage: install-promtool.sh TARGET}
[[ -x $target ]] && exit 0

if found=$(command -v promtool); then
    ln -sf "$found" "$target"
    exit 0
fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
if ! (cd "$work" && apt-get download prometheus >/dev/null 2>&1); then
    apt_get update -q
    (cd "$work" && apt-get download prometheus)
fi
dpkg-deb --fsys-tarfile "$work"/prometheus_*.deb | tar -xO ./usr/bin/promtool >"$work/promtool"
chmod +x "$work/promtool"
"$work/promtool" --version | head -1
mv "$work/promtool" "$target"
