#!/usr/bin/env bash
# kguest.sh - the Linux kernel initiator (open-iscsi + iscsi_tcp in a QEMU guest, tests/kguest)
# against the server: SendTargets discovery, login, GPT + mkfs.ext4 + write + remount + sha256
# verify, fio on the raw LUN, logout.  Configurations (KGUEST_CONFIGS):
#   plain        one session, no digests                     (default target)
#   crc32c       HeaderDigest and DataDigest CRC32C, checked as negotiated
#   mpath        2 sessions + dm-multipath round-robin, checked as 2 disks
#   mutual-chap  CHAP + mutual CHAP (a second server with a CHAP config)
#   chap-bad     a wrong CHAP secret: the kernel initiator's login must be refused
# The guest is built from Debian packages into $KGUEST_DIR (.kguest/, cached; needs the Debian
# mirror the first time).  A guest that cannot be built or booted is a FAIL, never a pass.
# Under TCG (no usable KVM here) each guest run takes about 90 s plus 4 fio jobs x KGUEST_RUNTIME.
# Env: E2E_PORT [3315] (the CHAP server uses E2E_PORT+1), KGUEST_RUNTIME [3], KGUEST_CONFIGS
#      ["plain crc32c mpath mutual-chap chap-bad"], KGUEST_DIR [.kguest], and see lib.sh.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
e2e_init kguest
PORT=${E2E_PORT:-3315}
CHAP_PORT=$((PORT + 1))
KG="$REPO/tests/kguest"
export KGUEST_DIR=${KGUEST_DIR:-$REPO/.kguest}
export KGUEST_RUNTIME=${KGUEST_RUNTIME:-3}
CONFIGS=${KGUEST_CONFIGS:-plain crc32c mpath mutual-chap chap-bad}
CHAP_USER=kguser CHAP_SECRET=kguestsecret12 MUTUAL_USER=kgtarget MUTUAL_SECRET=kgtargetsecret34
need apt-get dpkg-deb

t0=$(date +%s)
if timeout -k 10 900 "$KG/build-guest.sh" > "$OUT/build-guest.log" 2>&1; then
  pass "guest built ($(( $(date +%s) - t0 )) s)" "$(grep -m1 '^\[build-guest\] kernel' "$OUT/build-guest.log" || true)"
else
  fail "guest built" "build-guest.sh failed: $(tail -n 5 "$OUT/build-guest.log" | tr '\n' ' ' | cut -c1-400)"
  e2e_finish || true; exit 1
fi

server_start_default "$PORT" 35 || { e2e_finish; exit 1; }
MAIN_PORT=$PORT MAIN_IQN=$IQN

chap_server() {  # sets CHAP_IQN, starts the CHAP target
  case "$E2E_SERVER" in
    ironlun)
      CHAP_IQN=iqn.2026-11.org.ironlun:kguest-chap
      cat > "$WORK/kguest-chap.toml" <<TOML
[[target]]
iqn = "$CHAP_IQN"
portals = ["127.0.0.1:$CHAP_PORT"]
chap = { user = "$CHAP_USER", secret = "$CHAP_SECRET" }
mutual_chap = { user = "$MUTUAL_USER", secret = "$MUTUAL_SECRET" }
[[target.lun]]
id = 0
size = "1G"
TOML
      ironlun_start "$CHAP_PORT" "$WORK/kguest-chap.toml" ;;
    tgt)
      CHAP_IQN=iqn.2026-11.test:kguest-chap
      tgt_start "$CHAP_PORT" 36 || return 1
      local T=(timeout 10 tgtadm -C 36 --lld iscsi)
      tgt_target 36 1 "$CHAP_IQN" 1G && tgt_bind_all 36 1 &&
      "${T[@]}" --op new --mode account --user "$CHAP_USER" --password "$CHAP_SECRET" &&
      "${T[@]}" --op new --mode account --user "$MUTUAL_USER" --password "$MUTUAL_SECRET" &&
      "${T[@]}" --op bind --mode account --tid 1 --user "$CHAP_USER" &&
      "${T[@]}" --op bind --mode account --tid 1 --user "$MUTUAL_USER" --outgoing ;;
  esac
}

CHAP_UP=0
chap_server_once() { [ "$CHAP_UP" = 1 ] || { chap_server && CHAP_UP=1; }; }

for c in $CONFIGS; do
  env=(); port=$MAIN_PORT; iqn=$MAIN_IQN; expect_login_fail=0
  case "$c" in
    plain) ;;
    crc32c) env=(KGUEST_DIGEST=CRC32C) ;;
    mpath) env=(KGUEST_SESSIONS=2 KGUEST_MPATH=1) ;;
    mutual-chap)
      chap_server_once || { fail "kguest $c" "CHAP server did not start"; continue; }
      port=$CHAP_PORT; iqn=$CHAP_IQN
      env=(KGUEST_CHAP_USER="$CHAP_USER" KGUEST_CHAP_SECRET="$CHAP_SECRET"
           KGUEST_CHAP_USER_IN="$MUTUAL_USER" KGUEST_CHAP_SECRET_IN="$MUTUAL_SECRET") ;;
    chap-bad)   # the kernel initiator with a wrong CHAP secret: the login must fail
      chap_server_once || { fail "kguest $c" "CHAP server did not start"; continue; }
      port=$CHAP_PORT; iqn=$CHAP_IQN; expect_login_fail=1
      env=(KGUEST_CHAP_USER="$CHAP_USER" KGUEST_CHAP_SECRET=notthesecret99 KGUEST_FSTEST=0 KGUEST_FIO=0) ;;
    *) fail "kguest $c" "unknown configuration"; continue ;;
  esac
  log "guest run: $c (port $port, $iqn)"
  o="$OUT/$c"; rc=0; t1=$(date +%s)
  env ${env[@]+"${env[@]}"} KGUEST_OUT="$o" timeout -k 15 900 "$KG/run-guest.sh" "$port" "$iqn" < /dev/null > "$OUT/$c.log" 2>&1 || rc=$?
  wall=$(( $(date +%s) - t1 ))
  r="$o/results.txt"
  [ -f "$r" ] || : > "$r"
  problem=
  # a run that passed must also show what its configuration is about
  [ "$rc" = 0 ] && case "$c" in
    crc32c) if ! { grep -q 'HeaderDigest: CRC32C' "$r" && grep -q 'DataDigest: CRC32C' "$r"; }; then
              problem="digests not negotiated as CRC32C: $(grep SESSION-PARAM "$r" | tr '\n' ' ' || true)"; fi ;;
    mpath) if [ "$( (grep -m1 '^LOGIN-DONE' "$r" || true) | sed 's/.*disks=//' | wc -w)" -lt 2 ]; then
             problem="fewer than 2 disks: $(grep -m1 '^LOGIN-DONE' "$r" || true)"; fi ;;
    mutual-chap) if ! grep -qx 'AUTH mutual CHAP' "$r"; then problem="the guest did not configure mutual CHAP"; fi ;;
  esac
  if [ -n "$problem" ] && [ "$rc" = 0 ]; then rc=1; fi
  extra=$problem
  steps=$( (grep -E '^(LOGIN-DONE|FSTEST|LOGOUT OK|FAIL-STEP)' "$r" || true) | sed 's/uptime=[^ ]* //' | tr '\n' ';' | cut -c1-300)
  iops=$(awk '/^fio job/ {f=1; next} f && NF >= 3 {printf "%s=%s ", $1, $2}' "$o/summary.txt" 2>/dev/null || true)
  if [ "$expect_login_fail" = 1 ]; then
    if [ "$rc" = 1 ] && grep -q '^FAIL-STEP login' "$r" && ! grep -q '^LOGIN-DONE' "$r"; then pass "kguest $c: login refused (${wall} s)"
    else fail "kguest $c: login refused (${wall} s)" "rc=$rc $steps; console: $o/console.log"; fi
    continue
  fi
  if [ "$rc" = 0 ]; then pass "kguest $c (${wall} s)" "$steps fio IOPS (TCG, not a benchmark): $iops"
  else fail "kguest $c (${wall} s)" "rc=$rc ${extra} $steps; $(tail -n 1 "$OUT/$c.log" || true); console: $o/console.log"; fi
done
e2e_finish
