# Sourced by the install scripts: `apt_get ARGS...` runs apt-get as root (through sudo when
# needed, non-interactive) and waits, up to 10 minutes, while another apt-get holds a lock (a
# fresh machine's own updates, another checkout's `make`). `DPkg::Lock::Timeout` makes `install`
# wait for dpkg's lock, but `update` fails at once on the package lists' lock, so a failure that
# names a lock is tried again.
apt_get() {
    local sudo deadline=$((SECONDS + 600)) log status
    sudo=$([[ $(id -u) == 0 ]] || echo sudo)
    log=$(mktemp)
    while true; do
        set +e
        $sudo env DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 "$@" 2>&1 | tee "$log"
        status=${PIPESTATUS[0]}
        set -e
        if ((status == 0)) || ! grep -q "Could not get lock" "$log" || ((SECONDS >= deadline)); then
            rm -f "$log"
            return "$status"
        fi
        echo "apt-get: another apt-get holds a lock; trying again in 5 s" >&2
        sleep 5
    done
}
