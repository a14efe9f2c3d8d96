#!/usr/bin/env bash
# Make sure a Mosquitto broker binary exists; the tests start their own on a free port.
set -euo pipefail
find_broker() {
    command -v mosquitto 2>/dev/null || { [ -x /usr/sbin/mosquitto ] && echo /usr/sbin/mosquitto; } || true
}
if [ -n "$(find_broker)" ]; then
    exit 0
fi
echo "mosquitto not found: installing it from the distribution's packages" >&2
if command -v apt-get >/dev/null 2>&1; then
    SUDO=""
    if [ "$(id -u)" -ne 0 ]; then
        if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
            SUDO="sudo -n"
        else
            echo "error: mosquitto is missing and this user cannot install packages." >&2
            echo "       Run: sudo apt-get install mosquitto   (then run the tests again)" >&2
            exit 1
        fi
    fi
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends mosquitto >/dev/null
elif command -v dnf >/dev/null 2>&1; then
    sudo -n dnf install -y mosquitto
elif command -v brew >/dev/null 2>&1; then
    brew install mosquitto
else
    echo "error: mosquitto is missing and no known package manager was found." >&2
    echo "       Install Mosquitto 2.x from your distribution, then run the tests again." >&2
    exit 1
fi
if [ -z "$(find_broker)" ]; then
    echo "error: installing mosquitto did not put a 'mosquitto' binary on PATH or in /usr/sbin." >&2
    exit 1
fi
echo "mosquitto installed: $(find_broker)" >&2
