#!/usr/bin/env bash
# fio-libiscsi.sh - build fio with its libiscsi engine from Debian's own fio source package, so fio can
# drive an iSCSI LUN from userspace (Debian's fio binary has no libiscsi engine, and this machine has no
# iSCSI kernel module). Prints the path of the built binary as its last line.
#
# Usage: fio-libiscsi.sh [DEST_DIR]        (default: ./.fio-libiscsi)
# Then:  FIO=DEST_DIR/fio; $FIO --name=t --ioengine=libiscsi --filename='iscsi\://127.0.0.1\:3260/IQN/0' \
#          --rw=randread --bs=4k --iodepth=32 --runtime=10 --time_based
#        (fio needs the ':' in the URL escaped as '\:'.)
set -eu
DEST=$(mkdir -p "${1:-.fio-libiscsi}" && cd "${1:-.fio-libiscsi}" && pwd)
if [ -x "$DEST/fio" ] && "$DEST/fio" --enghelp 2>/dev/null | grep -q libiscsi; then echo "$DEST/fio"; exit 0; fi
SRC_LIST=/etc/apt/sources.list.d/fio-libiscsi-src.sources
if ! grep -rqs '^Types:.*deb-src' /etc/apt/sources.list.d/ && ! grep -qs '^deb-src' /etc/apt/sources.list; then
  # shellcheck disable=SC1091
  codename=$(. /etc/os-release && echo "$VERSION_CODENAME")
  printf 'Types: deb-src\nURIs: http://deb.debian.org/debian\nSuites: %s\nComponents: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n' "$codename" >"$SRC_LIST"
fi
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq dpkg-dev build-essential libiscsi-dev libaio-dev zlib1g-dev pkg-config >/dev/null
work=$(mktemp -d); trap 'rm -rf "$work"' EXIT
(cd "$work" && apt-get source -qq fio >/dev/null 2>&1)
src=$(find "$work" -maxdepth 1 -type d -name 'fio-*' | head -1)
[ -n "$src" ] || { echo "apt-get source fio failed" >&2; exit 1; }
(cd "$src" && ./configure --enable-libiscsi >"$DEST/configure.log" 2>&1 && make -j"$(nproc)" fio >"$DEST/build.log" 2>&1)
cp "$src/fio" "$DEST/fio"
"$DEST/fio" --enghelp | grep -q libiscsi || { echo "built fio has no libiscsi engine" >&2; exit 1; }
echo "$DEST/fio"
