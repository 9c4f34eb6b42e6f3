#!/usr/bin/env bash
# libiscsi-tools.sh - the libiscsi command-line clients against the default target:
#   iscsi-ls (SendTargets discovery, with and without -s), iscsi-inq (standard INQUIRY and
#   VPD pages 0x00, 0x80, 0x83, 0xB0), iscsi-readcapacity16 (size and block length, also with a
#   CRC32C header digest), and that
#   the NAA identifier of VPD 0x83 is the same after a restart on the same data dir.
# Env: E2E_PORT [3311], and see lib.sh.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
e2e_init libiscsi-tools
need iscsi-ls iscsi-inq iscsi-readcapacity16
PORT=${E2E_PORT:-3311}
export IRONLUN_DATA="$WORK/data"
server_start_default "$PORT" 31 || { e2e_finish; exit 1; }

grep_out() {  # grep_out NAME SECONDS PATTERN CMD... : CMD succeeds and its output matches the ERE PATTERN
  local name="$1" secs="$2" pat="$3"; shift 3
  local f; f="$OUT/$(echo "$name" | tr -c 'A-Za-z0-9_.-' '_').out"
  local rc=0
  timeout -k 5 "$secs" "$@" > "$f" 2>&1 || rc=$?
  if [ "$rc" != 0 ]; then fail "$name" "rc=$rc$([ "$rc" -ge 124 ] && echo " (timed out after ${secs}s)"): $(head -c 300 "$f" | tr '\n' ' ')"; return 0; fi
  if grep -Eq -- "$pat" "$f"; then pass "$name"; else fail "$name" "output lacks /$pat/: $(head -c 300 "$f" | tr '\n' ' ')"; fi
}

grep_out "iscsi-ls lists the target and portal" 20 "^Target:$IQN Portal:127\.0\.0\.1:$PORT," iscsi-ls "iscsi://$PORTAL"
grep_out "iscsi-ls -s shows LUN $LUN as a disk" 20 "^Lun:$LUN +Type:DIRECT_ACCESS \(Size:" iscsi-ls -s "iscsi://$PORTAL"
grep_out "iscsi-inq: connected direct-access device" 30 "^Peripheral Device Type:DIRECT_ACCESS" iscsi-inq "$URL"
grep_out "iscsi-inq: peripheral qualifier connected" 30 "^Peripheral Qualifier:CONNECTED" iscsi-inq "$URL"
grep_out "iscsi-inq: vendor and product" 30 "^Product:." iscsi-inq "$URL"
for pg in 0x80 0x83 0xb0 0xb1 0xb2; do
  grep_out "iscsi-inq VPD 0x00 lists page $pg" 30 "^Page:$pg " iscsi-inq -e 1 -c 0 "$URL"
done
grep_out "iscsi-inq VPD 0x80 serial number" 30 "^Unit Serial Number:\[ *[^] ]" iscsi-inq -e 1 -c 128 "$URL"
grep_out "iscsi-inq VPD 0x83 NAA designator" 30 "^Designator Type:\(3\) NAA" iscsi-inq -e 1 -c 131 "$URL"
grep_out "iscsi-inq VPD 0xB0 block limits" 30 "^maximum transfer length:" iscsi-inq -e 1 -c 176 "$URL"
grep_out "iscsi-readcapacity16: 512-byte blocks" 30 "^LOGICAL BLOCK LENGTH IN BYTES:512$" iscsi-readcapacity16 "$URL"
grep_out "iscsi-readcapacity16: last LBA of 1 GiB" 30 "^RETURNED LOGICAL BLOCK ADDRESS:2097151$" iscsi-readcapacity16 "$URL"
grep_out "iscsi-readcapacity16 -s: 1073741824 bytes" 30 "^1073741824$" iscsi-readcapacity16 -s "$URL"
grep_out "iscsi-readcapacity16 with HeaderDigest=CRC32C" 30 "^1073741824$" iscsi-readcapacity16 -s "$URL?header_digest=crc32c"
check_fails "iscsi-inq on a target name that does not exist fails" 30 \
  iscsi-inq "iscsi://$PORTAL/iqn.2026-11.test:no-such-target/$LUN"

if [ "$E2E_SERVER" = ironlun ]; then
  # the NAA identifier (VPD 0x83) must be stable across restarts on the same data
  timeout 30 iscsi-inq -e 1 -c 131 "$URL" > "$OUT/vpd83-before.txt" 2>&1 || true
  server_stop_one 0
  if ironlun_start "$PORT"; then
    timeout 30 iscsi-inq -e 1 -c 131 "$URL" > "$OUT/vpd83-after.txt" 2>&1 || true
    if grep -q NAA "$OUT/vpd83-before.txt" && cmp -s "$OUT/vpd83-before.txt" "$OUT/vpd83-after.txt"; then
      pass "VPD 0x83 identical after a restart on the same data dir"
    else
      fail "VPD 0x83 identical after a restart on the same data dir" "see $OUT/vpd83-{before,after}.txt"
    fi
  fi
fi
e2e_finish
