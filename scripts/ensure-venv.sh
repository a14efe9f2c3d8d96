#!/usr/bin/env bash
# Create the virtualenv; on Debian/Ubuntu `venv` needs the python3-venv package (ensurepip),
# which minimal images lack: install it like Mosquitto, or say exactly what to run.
set -euo pipefail
PYTHON=${1:?usage: ensure-venv.sh PYTHON VENV}
VENV=${2:?usage: ensure-venv.sh PYTHON VENV}
if "$PYTHON" -m venv "$VENV" 2>/dev/null; then
    exit 0
fi
pkg="python$("$PYTHON" -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}")')-venv"
echo "$PYTHON -m venv failed (no ensurepip): installing $pkg" >&2
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
        SUDO="sudo -n"
    else
        SUDO="none"
    fi
fi
if [ "$SUDO" = "none" ] || ! command -v apt-get >/dev/null 2>&1; then
    echo "error: cannot create $VENV. Install Python's venv module (Debian/Ubuntu:" >&2
    echo "       sudo apt-get install $pkg), then run make again." >&2
    exit 1
fi
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "$pkg" >/dev/null
"$PYTHON" -m venv --clear "$VENV"
