#!/usr/bin/env bash
# Headless Chromium for the browser test (tests/test_browser.py).
#
#   tests/browser/chromium.sh   install Debian's chromium and chromium-driver when missing,
#                               then print the two paths: the browser and its driver
#
# Needs root and Debian (or Ubuntu) when they are missing: apt-get installs the packages
# `chromium` and `chromium-driver` (/usr/bin/chromium, /usr/bin/chromedriver). It waits
# up to 10 minutes for another apt-get to release dpkg's lock. On failure it prints one
# line, "chromium.sh: <what> failed: <why>", on stderr and exits 1; the test turns that
# line into its skip message.
set -euo pipefail
export LC_ALL=C

BROWSER=/usr/bin/chromium
DRIVER=/usr/bin/chromedriver

fail() {  # fail WHAT WHY: one line on stderr, exit 1
    echo "chromium.sh: $1 failed: $2" >&2
    exit 1
}

tail_of() {  # the last meaningful line of a log, to explain a failure
    grep -v '^\s*$' "$1" | tail -n 1 | cut -c1-300 || true
}

if [ ! -x "$BROWSER" ] || [ ! -x "$DRIVER" ]; then
    command -v apt-get >/dev/null || fail "installing chromium" "no apt-get on this machine"
    [ "$(id -u)" -eq 0 ] || fail "installing chromium" "not root (apt-get needs root)"
    log=$(mktemp /tmp/regexp-chromium-apt.XXXXXX)
    rc=0
    {
        # one apt-get at a time among the tests' scripts (the Slurm cluster's installs too):
        # apt-get update does not wait for the lists lock, it fails at once
        exec 9>/tmp/regexp-apt.lock && flock -w 600 9 &&
        DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 update -q &&
            DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 \
                install -y -q --no-install-recommends chromium chromium-driver
    } >"$log" 2>&1 || rc=$?
    exec 9>&-
    [ $rc -eq 0 ] || fail "apt-get install chromium chromium-driver" "$(tail_of "$log")"
    rm -f "$log"
    [ -x "$BROWSER" ] || fail "installing chromium" "no $BROWSER after apt-get"
    [ -x "$DRIVER" ] || fail "installing chromium-driver" "no $DRIVER after apt-get"
fi
echo "$BROWSER"
echo "$DRIVER"
