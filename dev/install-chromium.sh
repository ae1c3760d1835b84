#!/usr/bin/env bash
# Installs Debian's chromium, which the HTML report test opens the report in (headless).
#
# Skipped when /usr/bin/chromium exists. Only --no-install-recommends: the test needs the
# browser and its libraries, not fonts packs or the desktop integration. apt-get needs root.
set -euo pipefail
source "$(dirname "$0")/apt.sh"

[[ -x /usr/bin/chromium ]] && exit 0

apt_get update -q
apt_get install -y -q --no-install-recommends chromium
/usr/bin/chromium --version
