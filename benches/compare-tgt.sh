#!/usr/bin/env bash
# compare-tgt.sh - every performance goal of issue 7 measured in one run: ironlun beside the peer
# target tgt on the same machine, same-size LUNs whose backing files sit in the same directory
# (same disk), driven over loopback by public userspace initiators.
#
#   fio --ioengine=libiscsi (built from Debian's fio source by scripts/fio-libiscsi.sh)
#     4k random read / write QD32, 128k sequential read / write QD32, with the server's CPU
#     (cores, from /proc/PID/stat, sampled inside the measured window) and IOPS per server
#     CPU-second; 4k random read / write QD1 completion-latency p50; ironlun with a snapshot taken
#     just before the run against ironlun without one; four sessions over two LUNs against one
#   fio io_uring (else libaio), O_DIRECT, on a file in the same directory: the backing file's ceiling
#   the same fio, 128k sequential read / write QD32 with HeaderDigest=CRC32C against without: fio's
#     libiscsi engine offers HeaderDigest=None,CRC32C (and a target rightly takes the initiator's
#     first choice), so a 10-line LD_PRELOAD shim built here makes libiscsi's iscsi_set_header_digest
#     ask for CRC32C only, the setting qemu's header-digest=crc32c makes through the same call;
#     ironlun's log must then show header_digest=true for that session. libiscsi has no data digest
#     at all (it always offers DataDigest=None), so data digests are not measured here.
#   fio, 64 jobs = 64 logged-in sessions: the servers' RSS idle and with 64 sessions; then a soak
#     (4k random 70/30 read/write QD32 on ironlun) sampling ironlun's RSS
#
# tgt is started by scripts/peer-tgt.sh with its tuned settings (TUNED=1: 256 KiB segments,
# InitialR2T=No) and two LUNs, rdwr (buffered) and aio (O_DIRECT); ratios compare ironlun with the
# better of the two. ironlun serves two 1-LUN-size thin volumes of its default cow pool (LUN 0 and
# LUN 1, the second only for the two-LUN test). Every LUN and the ceiling file are first filled by
# sequential 1 MiB writes, so reads are real reads.
#
# Each repetition runs every workload once on every target in turn (the order of the targets
# alternates between repetitions), so a change in the machine's load hits all alike; the table shows
# the median of the repetitions and a goal column. A figure that could not be measured is printed as
# MISSING, never as a number, and the script then exits 1.
#
# Usage: benches/compare-tgt.sh
# Env:   BENCH_RUNTIME [4] s measured per job (after BENCH_RAMP [1] s of warm-up), BENCH_REPS [3],
#        BENCH_SOAK [60] s (600 for the issue's 10-minute soak), BENCH_SESSIONS [64],
#        BENCH_SIZE [1G] per LUN, BENCH_PORT [3410] (ironlun; tgt uses +1, tgtd's control index +2),
#        BENCH_OUT [bench-out/<UTC time>], IRONLUN_BIN [build/release/ironlun] (copied into BENCH_OUT
#        first, so a rebuild during the run changes nothing), IRONLUN_COMMIT [git describe --dirty of
#        the binary's tree] (what the report names as the measured commit),
#        FIO (a fio with the libiscsi engine; built into bench-out/fio-libiscsi when absent)
# Default run: about 11 minutes on 2 cores. Prints the table and writes it to $BENCH_OUT/report.md, every run's
# figures to $BENCH_OUT/results.tsv, raw tool outputs beside them.
set -euo pipefail
{ # the whole script is read before it runs: editing this file during a run cannot change the run
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
RUNTIME=${BENCH_RUNTIME:-4}
RAMP=${BENCH_RAMP:-1}
REPS=${BENCH_REPS:-3}
SOAK=${BENCH_SOAK:-60}
NSESS=${BENCH_SESSIONS:-64}
SIZE=${BENCH_SIZE:-1G}
PORT=${BENCH_PORT:-3410}
TPORT=$((PORT + 1))
TCTL=$((PORT + 2))
IRONLUN_BIN=${IRONLUN_BIN:-$REPO/build/release/ironlun}
OUT=${BENCH_OUT:-$REPO/bench-out/$(date -u +%Y%m%dT%H%M%SZ)}
for v in RUNTIME RAMP REPS SOAK NSESS PORT; do
  [[ ${!v} =~ ^[0-9]+$ ]] || { echo "compare-tgt.sh: $v must be a whole number, not '${!v}'" >&2; exit 2; }
done
if [ "$RUNTIME" -lt 2 ] || [ "$REPS" -lt 1 ] || [ "$SOAK" -lt 10 ] || [ "$NSESS" -lt 1 ]; then
  echo "compare-tgt.sh: needs BENCH_RUNTIME >= 2, BENCH_REPS >= 1, BENCH_SOAK >= 10, BENCH_SESSIONS >= 1" >&2; exit 2
fi
mkdir -p "$OUT"; OUT=$(cd "$OUT" && pwd)
DISKDIR="$OUT/disk"; mkdir -p "$DISKDIR"
RESULTS="$OUT/results.tsv"; : > "$RESULTS"
TGT_IQN=iqn.2026-11.test:peer
IRONLUN_IQN=iqn.2026-11.org.ironlun:default
SNAP=bench-snapshot
HZ=$(getconf CLK_TCK)
log() { printf '[bench %s] %s\n' "$(date -u +%H:%M:%S)" "$*" >&2; }
die() { log "FATAL: $*"; exit 1; }

IL_PID=
TGT_STARTED=
stop_ironlun() {
  if [ -n "$IL_PID" ] && kill -0 "$IL_PID" 2>/dev/null; then
    kill -TERM "$IL_PID"
    for _ in $(seq 100); do kill -0 "$IL_PID" 2>/dev/null || break; sleep 0.1; done
    if kill -0 "$IL_PID" 2>/dev/null; then log "ironlun did not stop in 10 s: SIGKILL"; kill -KILL "$IL_PID"; fi
    wait "$IL_PID" 2>/dev/null || true
  fi
  IL_PID=
}
# shellcheck disable=SC2317  # run by the EXIT trap
cleanup() {
  set +e
  # this script's own background jobs (fio under timeout) first, then the servers
  for j in $(jobs -p); do [ "$j" = "$IL_PID" ] || kill -TERM "$j" 2>/dev/null; done
  stop_ironlun
  [ -n "$TGT_STARTED" ] && PEER_DIR="$DISKDIR/tgt" CONTROL_PORT=$TCTL "$REPO/scripts/peer-tgt.sh" stop >/dev/null 2>&1
  rm -rf "$DISKDIR"
}
trap cleanup EXIT
trap 'log "interrupted (SIGTERM): stopping"; exit 143' TERM
trap 'log "interrupted (SIGINT): stopping"; exit 130' INT

listening() { ss -Htln "( sport = :$1 )" 2>/dev/null | grep -q .; }
established() { ss -Htn state established "( dport = :$1 )" 2>/dev/null | wc -l; }
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat" 2>/dev/null; }
rss_kb() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status" 2>/dev/null; }
now() { date +%s.%N; }
# fio needs the ':' of an iSCSI URL escaped
fio_url() { local u=${1#iscsi://}; echo "iscsi\\://${u//:/\\:}"; }

# ---------------------------------------------------------------- tools
FIO=${FIO:-}
if [ -z "$FIO" ]; then
  log "building fio with the libiscsi engine (scripts/fio-libiscsi.sh, ~1 min the first time)"
  FIO=$(timeout 900 "$REPO/scripts/fio-libiscsi.sh" "$REPO/bench-out/fio-libiscsi" 2>"$OUT/fio-build.log" | tail -n 1) ||
    die "building fio failed ($OUT/fio-build.log)"
fi
FIO=$(realpath "$FIO")
"$FIO" --enghelp 2>/dev/null | grep -qw libiscsi || die "$FIO has no libiscsi engine"
FILE_ENGINE=io_uring
"$FIO" --enghelp 2>/dev/null | grep -qw io_uring || FILE_ENGINE=libaio
DIGEST_SHIM="$OUT/force-crc32c-header-digest.so"
cat > "$OUT/force-crc32c-header-digest.c" <<'EOF'
/* LD_PRELOAD shim (benches/compare-tgt.sh): whatever header digest a libiscsi client asks for,
 * offer only CRC32C, so the target must use header digests on that session. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <iscsi/iscsi.h>
int iscsi_set_header_digest(struct iscsi_context *iscsi, enum iscsi_header_digest wanted)
{
	int (*real)(struct iscsi_context *, enum iscsi_header_digest) =
		(int (*)(struct iscsi_context *, enum iscsi_header_digest))dlsym(RTLD_NEXT, "iscsi_set_header_digest");
	(void)wanted;
	return real ? real(iscsi, ISCSI_HEADER_DIGEST_CRC32C) : -1;
}
EOF
cc -shared -fPIC -O2 -Wall -o "$DIGEST_SHIM" "$OUT/force-crc32c-header-digest.c" -ldl 2> "$OUT/shim-build.log" ||
  die "cannot build the header-digest shim ($OUT/shim-build.log; needs cc and libiscsi-dev)"
command -v python3 >/dev/null || die "python3 missing"
[ -x "$IRONLUN_BIN" ] || die "no ironlun binary at $IRONLUN_BIN (set IRONLUN_BIN)"
IRONLUN_COMMIT=${IRONLUN_COMMIT:-$(git -C "$(dirname "$IRONLUN_BIN")" describe --always --dirty 2>/dev/null || echo unknown)}
IRONLUN_SRC=$IRONLUN_BIN
cp "$IRONLUN_BIN" "$OUT/ironlun"; IRONLUN_BIN="$OUT/ironlun"
for p in "$PORT" "$TPORT"; do ! listening "$p" || die "port $p is busy (set BENCH_PORT)"; done

# ---------------------------------------------------------------- servers
cat > "$OUT/ironlun.toml" <<EOF
# written by benches/compare-tgt.sh: the default target, two thin volumes of the default cow pool
[[target]]
iqn = "$IRONLUN_IQN"
portals = ["127.0.0.1:$PORT"]

[[target.lun]]
id = 0
size = "$SIZE"

[[target.lun]]
id = 1
size = "$SIZE"
EOF
IL_LOG="$OUT/ironlun.log"; : > "$IL_LOG"
start_ironlun() {
  # info level: one line per session (with its negotiated digests), nothing per command
  IRONLUN_LOG=info "$IRONLUN_BIN" serve --no-cim --config "$OUT/ironlun.toml" --data-dir "$DISKDIR/ironlun" \
    >> "$IL_LOG" 2>&1 &
  IL_PID=$!
  for _ in $(seq 300); do listening "$PORT" && return 0; kill -0 "$IL_PID" 2>/dev/null || break; sleep 0.1; done
  die "ironlun did not start listening on 127.0.0.1:$PORT: $(tail -n 3 "$IL_LOG" | tr '\n' ' ')"
}
# takes a fresh snapshot of LUN 0's volume while ironlun is stopped (the pool file is locked while served)
snapshot_lun0() {
  local pool="$DISKDIR/ironlun/pool.img"
  if "$IRONLUN_BIN" snapshot list "$pool" | awk 'NR > 1 {print $1}' | grep -qx "$SNAP"; then
    timeout 60 "$IRONLUN_BIN" snapshot delete "$pool" "$SNAP" >> "$OUT/snapshot.log" 2>&1 || die "snapshot delete failed ($OUT/snapshot.log)"
  fi
  timeout 60 "$IRONLUN_BIN" snapshot create "$pool" "$IL_VOLUME" "$SNAP" >> "$OUT/snapshot.log" 2>&1 ||
    die "snapshot create failed ($OUT/snapshot.log)"
}

pool_used_extents() {  # while ironlun is stopped; prints nothing when the pool cannot be read
  "$IRONLUN_BIN" pool info --json "$DISKDIR/ironlun/pool.img" 2>> "$OUT/snapshot.log" |
    python3 -c 'import json, sys; print(json.load(sys.stdin)["used_extents"])' 2>> "$OUT/snapshot.log" || true
}
: > "$OUT/redirected.tsv"
log "starting ironlun on 127.0.0.1:$PORT ($IRONLUN_BIN), data in $DISKDIR/ironlun"
start_ironlun
IL_URL0=iscsi://127.0.0.1:$PORT/$IRONLUN_IQN/0
IL_URL1=iscsi://127.0.0.1:$PORT/$IRONLUN_IQN/1
IL_VOLUME=default-lun0
RSS_IL_START=$(rss_kb "$IL_PID")
log "starting tgt on 127.0.0.1:$TPORT (scripts/peer-tgt.sh, tuned), backing files in $DISKDIR/tgt"
TGT_STARTED=1
PEER_DIR="$DISKDIR/tgt" PORTAL=127.0.0.1:$TPORT CONTROL_PORT=$TCTL LUN_SIZE=$SIZE FILL=0 TUNED=1 \
  timeout 60 "$REPO/scripts/peer-tgt.sh" start > "$OUT/peer-tgt.log" 2>&1 || { cat "$OUT/peer-tgt.log" >&2; die "tgt did not start"; }
TGT_PID=$(cat "$DISKDIR/tgt/tgtd.pid")
RSS_TGT_START=$(rss_kb "$TGT_PID")

declare -A URLS
URLS[ironlun]=$IL_URL0
URLS[ironlun-hdigest]=$IL_URL0
URLS[tgt-rdwr]=iscsi://127.0.0.1:$TPORT/$TGT_IQN/1
URLS[tgt-aio]=iscsi://127.0.0.1:$TPORT/$TGT_IQN/2
CEILING_FILE="$DISKDIR/ceiling.img"
server_pid() { case $1 in ironlun*) echo "$IL_PID" ;; tgt*) echo "$TGT_PID" ;; *) echo - ;; esac; }

# ---------------------------------------------------------------- measuring one job
# The server's CPU is sampled from RAMP + 0.5 s to 0.3 s before the job ends, inside fio's window.
cpu_cores_during() {  # PID DELAY WINDOW -> cores, or nothing when the process went away
  local pid=$1 c0 c1 t0 t1
  sleep "$2"; c0=$(cpu_ticks "$pid") || return 0; t0=$(now)
  sleep "$3"; c1=$(cpu_ticks "$pid") || return 0; t1=$(now)
  [ -n "$c0" ] && [ -n "$c1" ] || return 0
  awk -v a="$c0" -v b="$c1" -v t0="$t0" -v t1="$t1" -v hz="$HZ" 'BEGIN {printf "%.3f", (b - a) / hz / (t1 - t0)}'
}
CPU_WINDOW=$(awk -v t="$RUNTIME" 'BEGIN {print t - 0.8}')
# fio's JSON -> "IOPS BYTES/S P50_NS" summed over both directions (p50 of the busier one)
fio_figures() {
  python3 - "$1" <<'PY'
import json, sys
try:
    d = json.load(open(sys.argv[1]))
    j = d["jobs"][0]
except Exception as e:
    sys.exit(0)
if j.get("error", 0):
    sys.exit(0)
r, w = j["read"], j["write"]
iops = r["iops"] + w["iops"]
bw = r["bw_bytes"] + w["bw_bytes"]
busy = r if r["total_ios"] >= w["total_ios"] else w
p50 = busy.get("clat_ns", {}).get("percentile", {}).get("50.000000")
if iops > 0:
    print("%.1f %.0f %s" % (iops, bw, "%.0f" % p50 if p50 else "-"))
PY
}
record() {  # TEST TARGET REP IOPS BPS CORES P50 STATUS FILE
  printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$@" >> "$RESULTS"
}
slug() { echo "$*" | tr -c 'A-Za-z0-9.-' '_'; }
# run_fio TEST TARGET REP FIO-ARGS... : one fio run, its figures and the server's CPU into results.tsv
run_fio() {
  local t="$1" n="$2" rep="$3"; shift 3
  local f pid cores="-" rc=0 fp
  f="$OUT/runs/$(slug "$t")-$n-$rep"; mkdir -p "$OUT/runs"
  pid=$(server_pid "$n")
  local pre=()
  if [[ $n == *-hdigest ]]; then pre=(env LD_PRELOAD="$DIGEST_SHIM"); fi
  timeout $((RUNTIME + RAMP + 60)) ${pre[@]+"${pre[@]}"} "$FIO" --output="$f.json" --output-format=json \
    --time_based --runtime="$RUNTIME" --ramp_time="${FIO_RAMP:-$RAMP}" --randrepeat=0 "$@" > "$f.out" 2>&1 &
  local fio_pid=$!
  if [ "$pid" != - ]; then
    cores=$(cpu_cores_during "$pid" "$(awk -v r="${FIO_RAMP:-$RAMP}" 'BEGIN {print r + 0.5}')" "$CPU_WINDOW")
  fi
  wait "$fio_pid" || rc=$?
  fp=$(fio_figures "$f.json")
  if [ "$rc" -ne 0 ] || [ -z "$fp" ] || [ -z "$cores" ]; then
    log "FAILED: $t on $n (rep $rep): fio exit $rc, figures '${fp}', cpu '${cores}' ($f.out)"
    record "$t" "$n" "$rep" - - - - "FAIL" "$f.out"
    return 0
  fi
  local iops bps p50; read -r iops bps p50 <<< "$fp"
  record "$t" "$n" "$rep" "$iops" "$bps" "$cores" "$p50" ok "$f.json"
  log "$t on $n (rep $rep): $iops IOPS, $((${bps%.*} / 1000000)) MB/s, server $cores cores, p50 ${p50} ns"
}
JOB=()
lun_job() {  # TARGET RW BS QD -> JOB: the fio arguments of one job on that target's LUN
  local n=$1 rw=$2 bs=$3 qd=$4
  if [ "$n" = file ]; then
    JOB=(--name=job --ioengine="$FILE_ENGINE" --direct=1 --filename="$CEILING_FILE" --size="$SIZE")
  else
    JOB=(--name=job --ioengine=libiscsi --filename="$(fio_url "${URLS[$n]}")")
  fi
  JOB+=(--rw="$rw" --bs="$bs" --iodepth="$qd")
}
# targets of one repetition, in an order that alternates between repetitions
in_turn() {  # REP NAMES... -> the names, reversed on even repetitions
  local rep=$1; shift
  if [ $((rep % 2)) -eq 1 ]; then printf '%s\n' "$@"; else printf '%s\n' "$@" | tac; fi
}

# ---------------------------------------------------------------- prefill (so reads are real reads)
prefill() {  # LABEL FIO-ARGS...
  local label=$1; shift
  log "prefill $label: sequential 1 MiB writes over the whole LUN"
  timeout 900 "$FIO" --name=prefill --rw=write --bs=1M --iodepth=16 --size=100% "$@" \
    > "$OUT/prefill-$label.log" 2>&1 || die "prefill of $label failed ($OUT/prefill-$label.log)"
}
prefill ironlun-lun0 --ioengine=libiscsi --filename="$(fio_url "$IL_URL0")"
prefill ironlun-lun1 --ioengine=libiscsi --filename="$(fio_url "$IL_URL1")"
prefill tgt-rdwr --ioengine=libiscsi --filename="$(fio_url "${URLS[tgt-rdwr]}")"
prefill tgt-aio --ioengine=libiscsi --filename="$(fio_url "${URLS[tgt-aio]}")"
prefill file --ioengine="$FILE_ENGINE" --direct=1 --filename="$CEILING_FILE" --size="$SIZE"

# ---------------------------------------------------------------- measure
LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)
T_START=$(date +%s)
digest_sessions() { grep -c 'header_digest=true' "$IL_LOG" || true; }
for rep in $(seq "$REPS"); do
  log "=== repetition $rep of $REPS"
  # QD32 throughput, with the backing file's O_DIRECT ceiling beside the 4k and 128k write figures
  for spec in "randread 4k" "randwrite 4k" "read 128k" "write 128k"; do
    read -r rw bs <<< "$spec"
    names=(ironlun tgt-rdwr tgt-aio)
    [ "$spec" != "read 128k" ] && names+=(file)
    [ "$bs" = 128k ] && names+=(ironlun-hdigest)
    mapfile -t order < <(in_turn "$rep" "${names[@]}")
    for n in "${order[@]}"; do
      lun_job "$n" "$rw" "$bs" 32
      before=$(digest_sessions)
      run_fio "$bs $rw QD32" "$n" "$rep" "${JOB[@]}"
      # the digest run counts only if ironlun really used CRC32C header digests on it
      if [ "$n" = ironlun-hdigest ] && [ "$(digest_sessions)" -le "$before" ]; then
        log "FAILED: ironlun's log shows no session with header_digest=true for the digest run"
        sed -i "\$s/\tok\t/\tFAIL\t/" "$RESULTS"
      fi
    done
  done
  # QD1 latency
  for rw in randread randwrite; do
    mapfile -t order < <(in_turn "$rep" ironlun tgt-rdwr tgt-aio)
    for n in "${order[@]}"; do
      lun_job "$n" "$rw" 4k 1
      run_fio "4k $rw QD1" "$n" "$rep" "${JOB[@]}"
    done
  done
  # a snapshot taken just before the run (ironlun restarted for both, so both start alike; no
  # warm-up, since the first writes after a snapshot are the ones that meet shared extents). The
  # pool's used extents before and after the snapshot run count the extents it redirected.
  for spec in "randwrite 4k" "write 128k"; do
    read -r rw bs <<< "$spec"
    mapfile -t order < <(in_turn "$rep" plain snapshot)
    for v in "${order[@]}"; do
      stop_ironlun
      if [ "$v" = snapshot ]; then
        snapshot_lun0; used0=$(pool_used_extents)
        [[ $used0 =~ ^[0-9]+$ ]] || die "ironlun pool info failed ($OUT/snapshot.log)"
      fi
      start_ironlun
      lun_job ironlun "$rw" "$bs" 32
      # IOPS every 0.5 s, so the report shows how a run after a snapshot develops
      JOB+=(--write_iops_log="$OUT/runs/$(slug "$bs $rw QD32 after restart")-ironlun-$v-$rep" --log_avg_msec=500)
      FIO_RAMP=0 run_fio "$bs $rw QD32 after restart" "ironlun-$v" "$rep" "${JOB[@]}"
      if [ "$v" = snapshot ]; then
        stop_ironlun
        used1=$(pool_used_extents)
        [[ $used1 =~ ^[0-9]+$ ]] || die "ironlun pool info failed ($OUT/snapshot.log)"
        writes=$(python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))["jobs"][0]["write"]["total_ios"])' \
          "$OUT/runs/$(slug "$bs $rw QD32 after restart")-ironlun-$v-$rep.json" 2>/dev/null || echo -)
        printf '%s\t%s\t%s\t%s\n' "$bs $rw QD32 after restart" "$rep" "$((used1 - used0))" "$writes" >> "$OUT/redirected.tsv"
      fi
    done
  done
  [ -n "$IL_PID" ] || start_ironlun
  # one session on LUN 0 against four sessions, two on LUN 0 and two on LUN 1
  for rw in randread randwrite; do
    mapfile -t order < <(in_turn "$rep" one four)
    for v in "${order[@]}"; do
      common=(--ioengine=libiscsi --rw="$rw" --bs=4k --iodepth=32)
      if [ "$v" = one ]; then
        run_fio "4k $rw QD32 sessions" ironlun-1session "$rep" "${common[@]}" --name=s0 --filename="$(fio_url "$IL_URL0")"
      else
        run_fio "4k $rw QD32 sessions" ironlun-4sessions "$rep" "${common[@]}" --group_reporting \
          --name=s0 --filename="$(fio_url "$IL_URL0")" --name=s1 --filename="$(fio_url "$IL_URL0")" \
          --name=s2 --filename="$(fio_url "$IL_URL1")" --name=s3 --filename="$(fio_url "$IL_URL1")"
      fi
    done
  done
done
T_MEASURE=$(( $(date +%s) - T_START ))

# ---------------------------------------------------------------- memory
RSSF="$OUT/rss.tsv"; : > "$RSSF"
rss_record() { printf '%s\t%s\t%s\n' "$1" "$2" "${3:--}" >> "$RSSF"; }
rss_record idle-at-start ironlun "$RSS_IL_START"
rss_record idle-at-start tgtd "$RSS_TGT_START"
rss_record idle-after-load ironlun "$(rss_kb "$IL_PID")"
rss_record idle-after-load tgtd "$(rss_kb "$TGT_PID")"
sessions_rss() {  # NAME PORT URL PID: NSESS fio jobs (one session each) kept logged in at a low rate
  local n=$1 port=$2 url=$3 pid=$4 hold=$((NSESS / 8 + 8)) got=0 rss=
  log "$n: $NSESS logged-in sessions (fio, $NSESS jobs at 5 IOPS each)"
  timeout $((hold + 60)) "$FIO" --name=sessions --ioengine=libiscsi --filename="$(fio_url "$url")" --rw=randread \
    --bs=4k --iodepth=1 --rate_iops=5 --numjobs="$NSESS" --time_based --runtime="$hold" \
    --output="$OUT/sessions-$n.json" --output-format=json > "$OUT/sessions-$n.out" 2>&1 &
  local fio_pid=$!
  for _ in $(seq $((hold * 10 - 30))); do
    got=$(established "$port"); [ "$got" -ge "$NSESS" ] && break; sleep 0.1
  done
  if [ "$got" -ge "$NSESS" ]; then sleep 1; got=$(established "$port"); rss=$(rss_kb "$pid"); fi
  wait "$fio_pid" || log "$n: the $NSESS-session fio run ended with an error ($OUT/sessions-$n.out)"
  if [ "$got" -ge "$NSESS" ] && [ -n "$rss" ]; then rss_record "sessions-$NSESS" "$n" "$rss"
  else log "FAILED: only $got of $NSESS sessions to port $port were established"; rss_record "sessions-$NSESS" "$n" -; fi
}
sessions_rss ironlun "$PORT" "$IL_URL0" "$IL_PID"
sessions_rss tgtd "$TPORT" "${URLS[tgt-rdwr]}" "$TGT_PID"

SOAKF="$OUT/soak.tsv"; : > "$SOAKF"
log "soak: ${SOAK}s of 4k random 70/30 read/write QD32 on ironlun, RSS sampled"
timeout $((SOAK + 60)) "$FIO" --name=soak --ioengine=libiscsi --filename="$(fio_url "$IL_URL0")" --rw=randrw \
  --rwmixread=70 --bs=4k --iodepth=32 --time_based --runtime="$SOAK" --output="$OUT/soak.json" \
  --output-format=json > "$OUT/soak.out" 2>&1 &
SOAK_FIO=$!
SOAK_STEP=$(awk -v s="$SOAK" 'BEGIN {x = s / 30; if (x < 1) x = 1; print x}')
t0=$(now)
while kill -0 "$SOAK_FIO" 2>/dev/null; do
  r=$(rss_kb "$IL_PID") || break
  printf '%s\t%s\n' "$(awk -v a="$t0" -v b="$(now)" 'BEGIN {printf "%.1f", b - a}')" "$r" >> "$SOAKF"
  sleep "$SOAK_STEP"
done
SOAK_RC=0; wait "$SOAK_FIO" || SOAK_RC=$?
SOAK_FIG=$(fio_figures "$OUT/soak.json")
if [ "$SOAK_RC" -ne 0 ] || [ -z "$SOAK_FIG" ]; then log "FAILED: the soak's fio run ($OUT/soak.out)"; SOAK_FIG=FAIL; fi
kill -0 "$IL_PID" 2>/dev/null || die "ironlun is gone after the soak ($IL_LOG)"
LOAD_AFTER=$(cut -d' ' -f1-3 /proc/loadavg)

# ---------------------------------------------------------------- report
{
  echo "- Measured $(date -u +%Y-%m-%dT%H:%MZ) on $(nproc) cores, $(uname -r); $REPS repetitions, ${RUNTIME}s per job after ${RAMP}s warm-up, LUNs of $SIZE, backing files on $(df -P "$OUT" | awk 'NR==2 {print $1}') ($OUT/disk)."
  echo "- ironlun: $IRONLUN_SRC, $("$IRONLUN_BIN" --version 2>/dev/null || echo '?'), built from $IRONLUN_COMMIT; tgt $(dpkg-query -W -f='${Version}' tgt 2>/dev/null); libiscsi-bin $(dpkg-query -W -f='${Version}' libiscsi-bin 2>/dev/null); $("$FIO" --version) with the libiscsi engine; ceiling file engine $FILE_ENGINE."
  echo "- Load average before / after: $LOAD_BEFORE / $LOAD_AFTER (well above 0 means other work shared the cores); measuring took ${T_MEASURE}s."
} > "$OUT/header.md"
STATUS=0
python3 - "$OUT" "$REPS" "$NSESS" "$SOAK" "$SOAK_FIG" > "$OUT/report.md" <<'PY' || STATUS=$?
import os, re, sys, statistics, collections
out, reps, nsess, soak, soak_fig = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5]
runs = collections.defaultdict(list)
failed = collections.defaultdict(int)
for line in open(out + "/results.tsv"):
    test, target, rep, iops, bps, cores, p50, status, path = line.rstrip("\n").split("\t")
    if status != "ok":
        failed[(test, target)] += 1
        continue
    runs[(test, target)].append(dict(iops=float(iops), mbps=float(bps) / 1e6,
                                     cores=None if cores == "-" else float(cores),
                                     p50=None if p50 == "-" else float(p50) / 1000.0))
missing = []

def med(test, target, key):
    """Median over the repetitions, or None (and the figure is listed as missing)."""
    rs = runs.get((test, target), [])
    vals = []
    for r in rs:
        if key == "eff":
            if r["cores"]:
                vals.append(r["iops"] / r["cores"])
        elif r[key] is not None:
            vals.append(r[key])
    if len(rs) != reps or len(vals) != reps or failed.get((test, target)):
        missing.append(f"{test} on {target}: {len(vals)} of {reps} runs measured")
        return None
    return statistics.median(vals)

M = "MISSING"
def num(x, fmt="{:,.0f}"):
    return M if x is None else fmt.format(x)

def tput(test, target):
    i, m = med(test, target, "iops"), med(test, target, "mbps")
    c = None if target == "file" else med(test, target, "cores")
    if i is None or m is None:
        return M
    return f"{i:,.0f} / {m:,.0f}" + ("" if c is None else f" ({c:.2f})")

def ratio(a, b):
    return None if a is None or b is None or b == 0 else a / b

def verdict(ok):
    return M if ok is None else ("met" if ok else "**not met**")

rows = []
tgts = ["tgt-rdwr", "tgt-aio"]
def best(test, key, pick=max):
    v = [med(test, t, key) for t in tgts]
    return None if None in v else pick(v)

for test, goal in [("4k randread QD32", None), ("4k randwrite QD32", 2.0),
                   ("128k read QD32", 1.5), ("128k write QD32", 1.5)]:
    il = med(test, "ironlun", "iops")
    bt = best(test, "iops")
    r = ratio(il, bt)
    ceil = med(test, "file", "iops") if test != "128k read QD32" else None
    ref = "-" if test == "128k read QD32" else tput(test, "file")
    if goal is None:
        need = None if bt is None or ceil is None else min(1.5 * bt, 0.9 * ceil)
        g = "≥1.5x tgt, or ≥0.9x the file if lower" + ("" if need is None else f" (= {need:,.0f} IOPS)")
        ok = None if il is None or need is None else il >= need
    else:
        g = f"≥{goal}x tgt"
        ok = None if r is None else r >= goal
    rows.append([test + " (IOPS / MB/s, server cores)", tput(test, "ironlun"), tput(test, "tgt-rdwr"),
                 tput(test, "tgt-aio"), ref, num(r, "{:.2f}x"), g, verdict(ok)])

for test in ["4k randread QD32", "4k randwrite QD32"]:
    il, bt = med(test, "ironlun", "eff"), best(test, "eff")
    r = ratio(il, bt)
    rows.append([test + ": IOPS per server CPU-second", num(il), num(med(test, "tgt-rdwr", "eff")),
                 num(med(test, "tgt-aio", "eff")), "-", num(r, "{:.2f}x"), "≥3x tgt",
                 verdict(None if r is None else r >= 3)])

for test in ["4k randread QD1", "4k randwrite QD1"]:
    il, bt = med(test, "ironlun", "p50"), best(test, "p50", min)
    r = ratio(il, bt)
    rows.append([test + ": completion latency p50 (µs)", num(il, "{:.0f}"),
                 num(med(test, "tgt-rdwr", "p50"), "{:.0f}"), num(med(test, "tgt-aio", "p50"), "{:.0f}"),
                 "-", num(r, "{:.2f}x"), "≤0.6x tgt", verdict(None if r is None else r <= 0.6)])

for t in ["128k read QD32", "128k write QD32"]:
    on, off = med(t, "ironlun-hdigest", "mbps"), med(t, "ironlun", "mbps")
    r = ratio(on, off)
    rows.append([t + ", HeaderDigest=CRC32C on / off (MB/s, server cores)",
                 f"on {num(on)} ({num(med(t, 'ironlun-hdigest', 'cores'), '{:.2f}')}), off {num(off)}",
                 "-", "-", "-", num(r, "{:.2f}x"), "≥0.9x of off", verdict(None if r is None else r >= 0.9)])
rows.append(["128k, DataDigest=CRC32C on / off", "not measured: libiscsi never offers DataDigest=CRC32C",
             "-", "-", "-", "-", "≥0.9x of off", "not measured"])

redirected = collections.defaultdict(list)
for line in open(out + "/redirected.tsv"):
    t, _, ext, writes = line.rstrip("\n").split("\t")
    if writes not in ("-", "0"):
        redirected[t].append(int(ext) / int(writes))
for test in ["4k randwrite QD32 after restart", "128k write QD32 after restart"]:
    s, p = med(test, "ironlun-snapshot", "iops"), med(test, "ironlun-plain", "iops")
    r = ratio(s, p)
    share = redirected.get(test, [])
    share = f"; extents redirected per write {statistics.median(share):.2f}" if len(share) == reps else ""
    rows.append([test.replace(" after restart", "") + ", snapshot taken just before / none (IOPS, no warm-up)",
                 f"snapshot {num(s)}, none {num(p)}{share}", "-", "-", "-", num(r, "{:.2f}x"), "≥0.8x",
                 verdict(None if r is None else r >= 0.8)])

for test in ["4k randread QD32 sessions", "4k randwrite QD32 sessions"]:
    four, one = med(test, "ironlun-4sessions", "iops"), med(test, "ironlun-1session", "iops")
    r = ratio(four, one)
    c4, c1 = med(test, "ironlun-4sessions", "cores"), med(test, "ironlun-1session", "cores")
    rows.append([test.replace(" sessions", "") + ": 4 sessions over 2 LUNs / 1 session (IOPS, server cores)",
                 f"4: {num(four)} ({num(c4, '{:.2f}')}), 1: {num(one)} ({num(c1, '{:.2f}')})",
                 "-", "-", "-", num(r, "{:.2f}x"), "≥1.6x", verdict(None if r is None else r >= 1.6)])

rss = {}
for line in open(out + "/rss.tsv"):
    k, n, v = line.rstrip("\n").split("\t")
    rss[(k, n)] = None if v == "-" else int(v) / 1024.0
def rss_cell(k, n):
    v = rss.get((k, n))
    if v is None:
        missing.append(f"RSS {k} of {n}")
    return num(v, "{:.1f} MiB")
rows.append(["RSS idle: at start / after the runs", f"{rss_cell('idle-at-start', 'ironlun')} / {rss_cell('idle-after-load', 'ironlun')}",
             f"{rss_cell('idle-at-start', 'tgtd')} / {rss_cell('idle-after-load', 'tgtd')} (tgtd)", "", "-", "-", "reported", "reported"])
rows.append([f"RSS with {nsess} logged-in sessions", rss_cell(f"sessions-{nsess}", "ironlun"),
             rss_cell(f"sessions-{nsess}", "tgtd") + " (tgtd)", "", "-", "-", "reported", "reported"])

samples = [tuple(map(float, l.split())) for l in open(out + "/soak.tsv") if l.strip()]
if soak_fig == "FAIL" or len(samples) < 6:
    missing.append(f"soak: fio {'failed' if soak_fig == 'FAIL' else 'ok'}, {len(samples)} RSS samples")
    rows.append([f"soak {soak}s: RSS growth", M, "-", "-", "-", "-", "no growth", M])
else:
    third = max(2, len(samples) // 3)
    # the first sample is skipped (warm-up); growth = last third's peak - first third's peak
    first = max(v for _, v in samples[1:third + 1]) / 1024.0
    last = max(v for _, v in samples[-third:]) / 1024.0
    iops = float(soak_fig.split()[0])
    g = last - first
    rows.append([f"soak {soak}s, 4k randrw 70/30 QD32 ({iops:,.0f} IOPS): RSS peak, first third → last third",
                 f"{first:.1f} → {last:.1f} MiB ({g:+.1f} MiB)", "-", "-", "-", "-",
                 "no growth (≤ +1 MiB)", verdict(g <= 1.0)])

print(open(out + "/header.md").read().rstrip())
print()
print("Medians of the repetitions. IOPS / MB/s (server CPU in cores). Ratios: ironlun / the better tgt LUN;")
print("for latency the lower tgt p50. ceiling = fio " + "O_DIRECT on a file in the same directory.")
print()
print("| measure | ironlun | tgt rdwr (LUN 1) | tgt aio (LUN 2) | file O_DIRECT ceiling | ratio | goal | verdict |")
print("| --- | --- | --- | --- | --- | --- | --- | --- |")
for r in rows:
    print("| " + " | ".join(r) + " |")
print()
print("Every run (IOPS; the table shows their medians):")
print()
print("| test | target | runs |")
print("| --- | --- | --- |")
for (test, target) in sorted(set(runs) | set(failed)):
    vals = ", ".join(f"{r['iops']:,.0f}" for r in runs.get((test, target), []))
    if failed.get((test, target)):
        vals += f" ({failed[(test, target)]} FAILED)"
    print(f"| {test} | {target} | {vals} |")
def slug(text):
    """The shell's slug(): every other character to "_", and echo's newline too."""
    return re.sub(r"[^A-Za-z0-9.-]", "_", text) + "_"

timelines = []
for (test, target) in sorted(runs):
    if not test.endswith("after restart"):
        continue
    for rep in range(1, 100):
        path = f"{out}/runs/{slug(test)}-{target}-{rep}_iops.1.log"
        if not os.path.exists(path):
            break
        vals = []
        for line in open(path):
            parts = [x.strip() for x in line.split(",")]
            if len(parts) >= 2 and parts[1].isdigit():
                vals.append(f"{int(parts[1]) / 1000:.0f}k")
        timelines.append(f"| {test} | {target} | {rep} | {' '.join(vals)} |")
if timelines:
    print()
    print("Runs after a restart, IOPS in each 0.5 s (fio's `--write_iops_log`):")
    print()
    print("| test | target | rep | IOPS per 0.5 s |")
    print("| --- | --- | --- | --- |")
    for t in timelines:
        print(t)
if missing:
    print()
    print("MISSING figures (the run is incomplete):")
    for m in dict.fromkeys(missing):
        print("- " + m)
    sys.exit(1)
PY
cat "$OUT/report.md"
log "raw outputs in $OUT"
[ "$STATUS" -eq 0 ] || die "some figures are MISSING (listed above)"
exit 0
}
