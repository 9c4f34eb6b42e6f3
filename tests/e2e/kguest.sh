#!/usr/bin/env bash
# kguest.sh - the Linux kernel initiator (open-iscsi + iscsi_tcp in a QEMU guest, tests/kguest)
# against the server: SendTargets discovery, login, GPT + mkfs.ext4 + write + remount + sha256
# verify, fio on the raw LUN, logout.  Configurations (KGUEST_CONFIGS):
#   plain        one session, no digests                     (default target)
#   crc32c       HeaderDigest and DataDigest CRC32C, checked as negotiated
#   mpath        2 sessions + dm-multipath round-robin, checked as 2 disks
#   mutual-chap  CHAP + mutual CHAP (a second server with a CHAP config)
#   chap-bad     a wrong CHAP secret: the kernel initiator's login must be refused
#   snapshot     online snapshot: while the guest writes to ext4 on a LUN, the host takes a snapshot
#                through CIM-XML (wbemcli CreateElementReplica SyncType 7); the server exposes it at
#                once as a read-only LUN, the guest finds it with a session rescan and checks it
#                (e2fsck replaying the journal into a RAM overlay, then e2fsck -fn clean, mount, data)
# The guest is built from Debian packages into $KGUEST_DIR (.kguest/, cached; needs the Debian
# mirror the first time).  A guest that cannot be built or booted is a FAIL, never a pass.
# Under TCG (no usable KVM here) each guest run takes about 90 s plus 4 fio jobs x KGUEST_RUNTIME.
# Env: E2E_PORT [3315] (the CHAP server uses E2E_PORT+1, the snapshot server E2E_PORT+2 and its
#      CIM-XML listener KGUEST_CIM_PORT [E2E_PORT+3]), KGUEST_RUNTIME [3], KGUEST_CONFIGS
#      ["plain crc32c mpath mutual-chap chap-bad snapshot"], KGUEST_DIR [.kguest], and see lib.sh.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
e2e_init kguest
PORT=${E2E_PORT:-3315}
CHAP_PORT=$((PORT + 1))
KG="$REPO/tests/kguest"
export KGUEST_DIR=${KGUEST_DIR:-$REPO/.kguest}
export KGUEST_RUNTIME=${KGUEST_RUNTIME:-3}
CONFIGS=${KGUEST_CONFIGS:-plain crc32c mpath mutual-chap chap-bad snapshot}
SNAP_PORT=$((PORT + 2))
CIM_PORT=${KGUEST_CIM_PORT:-$((PORT + 3))}
CHAP_USER=kguser CHAP_SECRET=kguestsecret12 MUTUAL_USER=kgtarget MUTUAL_SECRET=kgtargetsecret34
need apt-get dpkg-deb
case " $CONFIGS " in *" snapshot "*) [ "$E2E_SERVER" = ironlun ] && need wbemcli ;; esac

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

# ---- the online snapshot configuration (ironlun only: it needs the CIM-XML replication service)
SNAP_IQN=iqn.2026-11.org.ironlun:kguest-snap
snap_server_start() {  # snap_server_start CONFIG LOGNAME : sets SNAP_IDX (its SRV_PIDS index)
  port_listening "$SNAP_PORT" && { fail "kguest snapshot: server starts" "port $SNAP_PORT in use"; return 1; }
  port_listening "$CIM_PORT" && { fail "kguest snapshot: server starts" "CIM port $CIM_PORT in use"; return 1; }
  RUST_LOG=${RUST_LOG:-info} "$IRONLUN_BIN" serve --data-dir "$WORK/snapdata" --config "$1" \
    --cim-listen "127.0.0.1:$CIM_PORT" > "$OUT/$2" 2>&1 &
  SRV_PIDS+=("$!"); SRV_KINDS+=(ironlun); SRV_CTLS+=(0)
  local keys=("${!SRV_PIDS[@]}"); SNAP_IDX=${keys[-1]}
  wait_listening "$SNAP_PORT" "${SRV_PIDS[$SNAP_IDX]}" 30 ||
    { fail "kguest snapshot: server starts" "$(tail -n 5 "$OUT/$2" | tr '\n' ' ' | cut -c1-400)"; return 1; }
}
wait_line() {  # wait_line FILE TEXT SECONDS PID : the guest printed TEXT (while run-guest PID runs)
  local i
  for ((i = 0; i < $3 * 5; i++)); do
    grep -aq "$2" "$1" 2>/dev/null && return 0
    kill -0 "$4" 2>/dev/null || return 1
    sleep 0.2
  done
  return 1
}
snapshot_config() {
  if [ "$E2E_SERVER" != ironlun ]; then skip "kguest snapshot" "needs ironlun's CIM-XML replication service"; return; fi
  local cfg="$WORK/kguest-snap.toml" o="$OUT/snapshot" t1 wall rc=0 gpid step=ok cred pw host
  printf '[[target]]\niqn = "%s"\nportals = ["127.0.0.1:%s"]\n[[target.lun]]\nid = 0\nsize = "1G"\nvolume = "kgsrc"\n' \
    "$SNAP_IQN" "$SNAP_PORT" > "$cfg"
  snap_server_start "$cfg" snapshot-server.log || return
  log "guest run: snapshot (port $SNAP_PORT, $SNAP_IQN, CIM 127.0.0.1:$CIM_PORT)"
  t1=$(date +%s)
  mkdir -p "$o"
  KGUEST_SNAPTEST=1 KGUEST_FSTEST=0 KGUEST_FIO=0 KGUEST_TIMEOUT=800 KGUEST_OUT="$o" \
    timeout -k 15 900 "$KG/run-guest.sh" "$SNAP_PORT" "$SNAP_IQN" < /dev/null > "$OUT/snapshot.log" 2>&1 &
  gpid=$!
  if ! wait_line "$o/results.raw" SNAP-WRITING 600 "$gpid"; then
    step="the guest never started writing"
  else
    cred=$(cat "$WORK/snapdata/cim-admin.credential"); pw=${cred#*:}
    host=$(cat /proc/sys/kernel/hostname 2>/dev/null || echo ironlun)
    timeout 60 wbemcli cm "http://admin:$pw@127.0.0.1:$CIM_PORT/root/cimv2/storage/iscsitarget:MSISCSITARGET_ReplicationService.SystemCreationClassName=\"CIM_ComputerSystem\",SystemName=\"$host\",CreationClassName=\"MSISCSITARGET_ReplicationService\",Name=\"ReplicationService\"" \
      'CreateElementReplica.ElementName="kgsnap",SyncType=7,SourceElement=MSISCSITARGET_StorageVolume.DeviceID="default/kgsrc"' \
      > "$OUT/snapshot-cim.log" 2>&1 || true
    grep -q 'CreateElementReplica: 0' "$OUT/snapshot-cim.log" ||
      step="CreateElementReplica: $(tr '\n' ' ' < "$OUT/snapshot-cim.log" | cut -c1-300)"
    log "snapshot taken while the guest writes: $step"
  fi
  [ "$step" = ok ] || kill "$gpid" 2>/dev/null
  wait "$gpid" || rc=$?
  wall=$(( $(date +%s) - t1 ))
  local r="$o/results.txt" steps
  [ -f "$r" ] || : > "$r"
  steps=$( (grep -aE '^(LOGIN-DONE|SNAP-|SNAPTEST|LOGOUT OK|FAIL-STEP)' "$r" || true) | sed 's/uptime=[^ ]* //' | tr '\n' ';' | cut -c1-400)
  if [ "$step" = ok ] && ! grep -q 'serving replica as LUN.*kgsnap' "$OUT/snapshot-server.log"; then
    step="the server log does not show the snapshot served as a LUN"
  fi
  if [ "$step" = ok ] && [ "$rc" = 0 ] && grep -q '^SNAPTEST PASS' "$r" && grep -q '^SNAP-FSCK rc=0' "$r"; then
    pass "kguest snapshot (${wall} s)" "$steps"
  else
    fail "kguest snapshot (${wall} s)" "rc=$rc host: $step; $steps; console: $o/console.log"
  fi
  server_stop_one "$SNAP_IDX"
}

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
    snapshot) snapshot_config; continue ;;
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
