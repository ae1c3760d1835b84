#!/usr/bin/env bash
# Installs Debian's chromium, which the HTML report test opens the report in (headless).
#
# Skipped when /usr/bin/chromium exists. Only --no-install-recommends: the test needs the
# browser and its libraries, not fonts packs or the desktop integration. apt-get needs root.
set -euo pipefail
# apt-get waits up to 10 minutes for a lock another apt-get holds (a fresh machine's own updates, another checkout's `make`)

[[ -x /usr/bin/chromium ]] && exit 0

sudo=$([[ $(id -u) == 0 ]] || echo sudo)
$sudo apt-get -o DPkg::Lock::Timeout=600 update -q
DEBIAN_FRONTEND=noninteractive $sudo apt-get -o DPkg::Lock::Timeout=600 install -y -q --no-install-recommends chromium
/usr/bin/chromium --version
