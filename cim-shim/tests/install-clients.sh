#!/usr/bin/env bash
# Installs the real CIM clients the cim-shim client tests drive:
#   pywbemcli (PyPI pywbemtools) into <repo>/.venv, and
#   wbemcli (Debian sblim-wbemcli) with apt-get when missing and running as root.
# Usage: cim-shim/tests/install-clients.sh   (idempotent)
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
# Tests run in parallel and may all find the clients missing: one installs,
# the others wait for it (bounded).
exec 9> "$root/.venv.lock"
flock -w 900 9
if [ ! -x "$root/.venv/bin/pywbemcli" ]; then
    python3 -m venv "$root/.venv"
    "$root/.venv/bin/pip" install --quiet pywbemtools
fi
if ! command -v wbemcli >/dev/null 2>&1; then
    if [ "$(id -u)" = 0 ]; then
        (apt-get install -y -qq sblim-wbemcli || { apt-get update -qq && apt-get install -y -qq sblim-wbemcli; }) >/dev/null
    else
        echo "wbemcli missing: run 'apt-get install sblim-wbemcli' as root" >&2
        exit 1
    fi
fi
"$root/.venv/bin/pywbemcli" --version
command -v wbemcli
