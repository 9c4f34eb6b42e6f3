# shellcheck shell=bash
# tests/e2e/lib.sh - shared helpers for the end-to-end suites (sourced, not run).
#
# Every suite:
#   - starts its own server (ironlun, or tgt with E2E_SERVER=tgt to validate the suite
#     itself against the peer target) on its own loopback port with its data under a
#     fresh temp dir, and stops exactly that PID on exit;
#   - bounds every external command with `timeout`;
#   - prints one line per check, "PASS: <suite>: <check>" / "FAIL: ..." / "SKIP: ...",
#     appends the same lines to $E2E_RESULTS when set (scripts/test.sh counts them),
#     and exits 0 only when no check failed.
#
# Env (all optional):
#   E2E_SERVER   ironlun | tgt                               [ironlun]
#   IRONLUN_BIN  server binary                               [build/release/ironlun]
#   E2E_OUT      where logs and raw outputs are kept         [test-out/]
#   E2E_RESULTS  file the PASS/FAIL/SKIP lines are appended to []
#   E2E_KEEP     1 = keep the temp dir (data, logs)          [0]
#   IRONLUN_EXTRA_ARGS  more `ironlun serve` arguments, split on spaces []
set -euo pipefail

E2E_LIB_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$E2E_LIB_DIR/../.." && pwd)
E2E_SERVER=${E2E_SERVER:-ironlun}
IRONLUN_BIN=${IRONLUN_BIN:-$REPO/build/release/ironlun}
E2E_OUT=${E2E_OUT:-$REPO/test-out}
E2E_RESULTS=${E2E_RESULTS:-}
E2E_KEEP=${E2E_KEEP:-0}
DEFAULT_IQN=iqn.2026-11.org.ironlun:default

SUITE=
# set by server_start_default, used by the suites
PORTAL=
IQN=
LUN=
export URL=
WORK=
OUT=
N_PASS=0
N_FAIL=0
N_SKIP=0
# servers started by this suite: parallel arrays, one entry per server
SRV_PIDS=()
SRV_KINDS=()
SRV_CTLS=()

log() { printf '[%s %s] %s\n' "$SUITE" "$(date -u +%H:%M:%S)" "$*" >&2; }

record() {  # record VERDICT CHECK [DETAIL]
  local line="$1: $SUITE: $2${3:+  ($3)}"
  echo "$line"
  [ -n "$E2E_RESULTS" ] && echo "$line" >> "$E2E_RESULTS"
  case "$1" in
    PASS) N_PASS=$((N_PASS + 1)) ;;
    FAIL) N_FAIL=$((N_FAIL + 1)) ;;
    SKIP) N_SKIP=$((N_SKIP + 1)) ;;
  esac
  return 0
}
pass() { record PASS "$@"; }
fail() { record FAIL "$@"; }
skip() { record SKIP "$@"; }

# check NAME SECONDS CMD... : PASS when CMD exits 0 within SECONDS. Output goes to $OUT/NAME.log.
check() {
  local name="$1" secs="$2"; shift 2
  local logf; logf="$OUT/$(echo "$name" | tr -c 'A-Za-z0-9_.-' '_').log"
  if timeout -k 5 "$secs" "$@" > "$logf" 2>&1; then pass "$name"
  else local rc=$?; fail "$name" "rc=$rc, $(tail -n 3 "$logf" | tr '\n' ' ' | cut -c1-300)"; fi
}
# check_fails NAME SECONDS CMD... : PASS when CMD exits non-zero (but not by timeout) within SECONDS.
check_fails() {
  local name="$1" secs="$2"; shift 2
  local logf rc=0; logf="$OUT/$(echo "$name" | tr -c 'A-Za-z0-9_.-' '_').log"
  timeout -k 5 "$secs" "$@" > "$logf" 2>&1 || rc=$?
  if [ "$rc" = 0 ]; then fail "$name" "succeeded but must fail"
  elif [ "$rc" -ge 124 ]; then fail "$name" "timed out / killed (rc=$rc) instead of failing cleanly"
  else pass "$name" "rc=$rc"; fi
}

e2e_init() {  # e2e_init SUITE_NAME
  SUITE="$1"
  WORK=$(mktemp -d "${TMPDIR:-/tmp}/ironlun-e2e-$SUITE.XXXXXX")
  OUT="$E2E_OUT/$SUITE"
  rm -rf "$OUT"; mkdir -p "$OUT"
  trap e2e_cleanup EXIT
  trap 'exit 143' TERM
  trap 'exit 130' INT
  log "server=$E2E_SERVER work=$WORK out=$OUT"
}

e2e_cleanup() {
  local rc=$?
  set +e
  local i
  for i in "${!SRV_PIDS[@]}"; do server_stop_one "$i" quiet; done
  if [ "$E2E_KEEP" = 1 ]; then log "kept $WORK"; else rm -rf "$WORK"; fi
  return "$rc"
}

e2e_finish() {
  local i
  for i in "${!SRV_PIDS[@]}"; do server_stop_one "$i"; done
  echo "RESULT $SUITE: $N_PASS checks passed, $N_FAIL failed, $N_SKIP skipped (server: $E2E_SERVER)"
  [ "$N_FAIL" = 0 ]
}

need() {  # need CMD... : fail the suite loudly when a client is missing
  local c missing=0
  for c in "$@"; do
    command -v "$c" >/dev/null 2>&1 || { fail "client $c present" "not installed: run scripts/install-test-deps.sh"; missing=1; }
  done
  [ "$missing" = 0 ] || { e2e_finish || true; exit 1; }
}

port_listening() { ss -Htln "( sport = :$1 )" 2>/dev/null | grep -q .; }

wait_listening() {  # wait_listening PORT PID SECONDS
  local port="$1" pid="$2" secs="$3" i
  for ((i = 0; i < secs * 10; i++)); do
    port_listening "$port" && return 0
    kill -0 "$pid" 2>/dev/null || return 1
    sleep 0.1
  done
  return 1
}

# ---------------------------------------------------------------- ironlun
# ironlun_start PORT [CONFIG] : serve with the embedded default (target $DEFAULT_IQN, LUN 0)
# on 127.0.0.1:PORT, or with CONFIG (whose portals must name the ports). Sets SRV_PID.
# Data under $IRONLUN_DATA when set (to restart on the same data), else a fresh dir in $WORK.
ironlun_start() {
  local port="$1" config="${2:-}" n=${#SRV_PIDS[@]}
  [ -x "$IRONLUN_BIN" ] || { fail "server starts" "no binary $IRONLUN_BIN (cargo build --release)"; return 1; }
  port_listening "$port" && { fail "server starts" "port $port already in use by someone else"; return 1; }
  local args=(serve --data-dir "${IRONLUN_DATA:-$WORK/data$n}")
  if [ -n "$config" ]; then args+=(--config "$config"); else args+=(--iscsi-listen "127.0.0.1:$port"); fi
  # shellcheck disable=SC2206  # IRONLUN_EXTRA_ARGS is a plain word list, e.g. "--allow-sanitize"
  args+=(${IRONLUN_EXTRA_ARGS:-})
  # no CIM-XML listener (its default port 5988 would clash between instances), when the server has one
  if "$IRONLUN_BIN" serve --help 2>/dev/null | grep -q -- '--no-cim'; then args+=(--no-cim); fi
  log "starting $IRONLUN_BIN ${args[*]}"
  RUST_LOG=${RUST_LOG:-info} "$IRONLUN_BIN" "${args[@]}" > "$OUT/ironlun$n.log" 2>&1 &
  SRV_PID=$!
  SRV_PIDS+=("$SRV_PID"); SRV_KINDS+=(ironlun); SRV_CTLS+=(0)
  if ! wait_listening "$port" "$SRV_PID" 30; then
    fail "server starts and listens on 127.0.0.1:$port" "$(tail -n 5 "$OUT/ironlun$n.log" | tr '\n' ' ' | cut -c1-400)"
    return 1
  fi
  log "ironlun pid $SRV_PID listening on 127.0.0.1:$port"
}

# ---------------------------------------------------------------- tgt (peer, to validate the suites)
# tgt_start PORT CTL : start tgtd (foreground, its own control port CTL) on 127.0.0.1:PORT. Sets SRV_PID.
tgt_start() {
  local port="$1" ctl="$2" n=${#SRV_PIDS[@]} i
  port_listening "$port" && { fail "server starts" "port $port already in use by someone else"; return 1; }
  tgtd -f -C "$ctl" --iscsi "portal=127.0.0.1:$port" > "$OUT/tgtd$n.log" 2>&1 &
  SRV_PID=$!
  SRV_PIDS+=("$SRV_PID"); SRV_KINDS+=(tgt); SRV_CTLS+=("$ctl")
  for ((i = 0; i < 100; i++)); do
    timeout 5 tgtadm -C "$ctl" --op show --mode target >/dev/null 2>&1 && break
    sleep 0.1
  done
  wait_listening "$port" "$SRV_PID" 10 || { fail "tgtd starts" "$(tail -n 5 "$OUT/tgtd$n.log" | tr '\n' ' ')"; return 1; }
}
# tgt_target CTL TID IQN SIZE : a target with one file-backed disk at LUN 1 (tgt's LUN 0 is its controller).
tgt_target() {
  local ctl="$1" tid="$2" iqn="$3" size="$4" f="$WORK/tgt-$2-lun1.img"
  truncate -s "$size" "$f"
  local T=(timeout 10 tgtadm -C "$ctl" --lld iscsi)
  "${T[@]}" --op new --mode target --tid "$tid" -T "$iqn"
  "${T[@]}" --op new --mode logicalunit --tid "$tid" --lun 1 -b "$f"
  "${T[@]}" --op update --mode target --tid "$tid" -n HeaderDigest -v CRC32C,None
  "${T[@]}" --op update --mode target --tid "$tid" -n DataDigest -v CRC32C,None
}
tgt_bind_all() { timeout 10 tgtadm -C "$1" --lld iscsi --op bind --mode target --tid "$2" -I ALL; }

# ---------------------------------------------------------------- either
# server_start_default PORT CTL : the default single-LUN target; sets URL (iscsi://.../IQN/LUN), IQN, LUN.
server_start_default() {
  local port="$1" ctl="$2"
  case "$E2E_SERVER" in
    ironlun) IQN=$DEFAULT_IQN; LUN=0; ironlun_start "$port" || return 1 ;;
    tgt)     IQN=iqn.2026-11.test:e2e-$SUITE; LUN=1
             tgt_start "$port" "$ctl" || return 1
             if ! { tgt_target "$ctl" 1 "$IQN" 1G && tgt_bind_all "$ctl" 1; }; then fail "tgt setup"; return 1; fi ;;
    *) echo "E2E_SERVER must be ironlun or tgt" >&2; return 1 ;;
  esac
  PORTAL=127.0.0.1:$port
  URL=iscsi://$PORTAL/$IQN/$LUN
}

server_stop_one() {  # server_stop_one INDEX [quiet]
  local i="$1" quiet="${2:-}" pid kind ctl rc=0 j
  local -; set +e
  pid=${SRV_PIDS[$i]:-}; kind=${SRV_KINDS[$i]:-}; ctl=${SRV_CTLS[$i]:-0}
  [ -n "$pid" ] || return 0
  unset "SRV_PIDS[$i]"
  kill -0 "$pid" 2>/dev/null || { [ -z "$quiet" ] && [ "$kind" = ironlun ] && fail "server still running at the end" "pid $pid had died"; return 0; }
  if [ "$kind" = tgt ]; then
    # tgtd ignores SIGTERM: delete its targets, then the system, then SIGKILL that PID if still there
    for j in 1 2 3 4; do timeout 5 tgtadm -C "$ctl" --lld iscsi --op delete --mode target --tid "$j" --force >/dev/null 2>&1; done
    timeout 5 tgtadm -C "$ctl" --op delete --mode system >/dev/null 2>&1
    for ((j = 0; j < 50; j++)); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -0 "$pid" 2>/dev/null && kill -KILL "$pid" 2>/dev/null
    wait "$pid" 2>/dev/null || true
    return 0
  fi
  kill -TERM "$pid" 2>/dev/null
  for ((j = 0; j < 150; j++)); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  if kill -0 "$pid" 2>/dev/null; then
    kill -KILL "$pid" 2>/dev/null; wait "$pid" 2>/dev/null || true
    [ -z "$quiet" ] && fail "server exits within 15 s of SIGTERM" "had to SIGKILL pid $pid"
    return 0
  fi
  wait "$pid" 2>/dev/null || rc=$?
  if [ -z "$quiet" ]; then
    if [ "$rc" = 0 ]; then pass "server exits 0 on SIGTERM"; else fail "server exits 0 on SIGTERM" "exit status $rc"; fi
  fi
  return 0
}
