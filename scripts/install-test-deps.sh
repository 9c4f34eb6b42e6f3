#!/usr/bin/env bash
# install-test-deps.sh - install what the test suite needs from Debian's packages. Idempotent:
# packages already installed are skipped, and apt is not touched at all when nothing is missing.
# Never downloads a prebuilt toolchain (Rust comes from the machine; the kguest guest is built
# from Debian .debs by tests/kguest/build-guest.sh, which downloads them itself).
#
# Usage: scripts/install-test-deps.sh [--bench]
#   --bench   also what benches/compare-tgt.sh needs to build fio with its libiscsi engine
#
# Packages:
#   libiscsi-bin  iscsi-ls, iscsi-inq, iscsi-readcapacity16, iscsi-test-cu, iscsi-perf
#   tgt           the peer target (tgtd, tgtadm): conformance matrix, benchmarks, suite self-checks
#   fio sg3-utils the usual block tools
#   iproute2 procps  ss (is a port listening), pgrep
#   zstd          compresses the kguest initramfs (gzip fallback)
#   dpkg-dev      dpkg-deb, used by the kguest build to unpack the guest's .debs
#   python3       prints the kguest fio summary
#   (linter)      shellcheck, lints the test scripts
#   sblim-wbemcli python3-venv  the CIM clients (wbemcli; pywbemcli from PyPI into <repo>/.venv,
#                 by cim-shim/tests/install-clients.sh) the CIM tests drive
set -euo pipefail

PKGS=(libiscsi-bin tgt fio sg3-utils iproute2 procps zstd dpkg-dev python3 shellcheck ca-certificates sblim-wbemcli python3-venv)
REPO=$(cd "$(dirname "$0")/.." && pwd)
# pywbemcli (PyPI pywbemtools) into <repo>/.venv, once the Debian packages are there.
cim_clients() { bash "$REPO/cim-shim/tests/install-clients.sh" > /dev/null || echo "install-test-deps: pywbemcli could not be installed (the CIM tests will fail)" >&2; }
if [ "${1:-}" = --bench ]; then
  PKGS+=(build-essential libiscsi-dev libaio-dev zlib1g-dev pkg-config)
fi

SUDO=()
if [ "$(id -u)" != 0 ]; then
  command -v sudo >/dev/null || { echo "install-test-deps: not root and no sudo" >&2; exit 1; }
  SUDO=(sudo -n)
fi

missing=()
for p in "${PKGS[@]}"; do
  if ! dpkg-query -W -f='${Status}\n' "$p" 2>/dev/null | grep -q '^install ok installed$'; then missing+=("$p"); fi
done
if [ "${#missing[@]}" = 0 ]; then
  echo "install-test-deps: all present (${PKGS[*]})"
  cim_clients
  exit 0
fi
echo "install-test-deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
timeout 600 "${SUDO[@]}" apt-get update -q < /dev/null
# Don't let package scripts start daemons (tgt's service would take 127.0.0.1:3260, ironlun's
# default port): a policy-rc.d that forbids it, only for the time of this install.
policy=/usr/sbin/policy-rc.d
own_policy=0
if [ ! -e "$policy" ]; then
  printf '#!/bin/sh\nexit 101\n' | "${SUDO[@]}" tee "$policy" > /dev/null
  "${SUDO[@]}" chmod 755 "$policy"
  own_policy=1
fi
rc=0
timeout 1200 "${SUDO[@]}" apt-get install -y -q --no-install-recommends "${missing[@]}" < /dev/null || rc=$?
if [ "$own_policy" = 1 ]; then "${SUDO[@]}" rm -f "$policy"; fi
[ "$rc" = 0 ] || { echo "install-test-deps: apt-get install failed (rc=$rc)" >&2; exit "$rc"; }
cim_clients
echo "install-test-deps: done"
