#!/usr/bin/env bash
# compare-tgt.sh - ironlun and the peer target tgt side by side, in one run, on the same machine,
# same-size LUNs whose backing files sit in the same directory (same disk), driven by the same
# public userspace initiators over loopback:
#   iscsi-perf (libiscsi-bin; reads only)     4k random read QD32, 128k sequential read QD32
#   fio --ioengine=libiscsi (built from Debian's fio source by scripts/fio-libiscsi.sh)
#                                            4k random read/write QD32, 128k sequential read/write QD32
# tgt is started by scripts/peer-tgt.sh with its tuned settings (TUNED=1) and two LUNs, rdwr
# (buffered) and aio (O_DIRECT); the ratio column compares ironlun with the better of the two.
# Every LUN is first filled once by a sequential 1 MiB write (fio), so reads of a thin LUN are real.
# The server's CPU use (cores, from /proc/PID/stat) is shown next to each figure.
#
# Usage: benches/compare-tgt.sh
# Env:   BENCH_RUNTIME [10] s per job, BENCH_SIZE [1G], BENCH_PORT [3320] (ironlun; tgt uses +1),
#        BENCH_TOOLS ["iscsi-perf fio"], BENCH_OUT [bench-out/<UTC time>], IRONLUN_BIN, FIO (a fio
#        with the libiscsi engine; built into bench-out/fio-libiscsi when absent)
# Prints a table and writes it to $BENCH_OUT/report.md.  Exit 1 when ironlun could not be measured.
set -euo pipefail
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
RUNTIME=${BENCH_RUNTIME:-10}
SIZE=${BENCH_SIZE:-1G}
PORT=${BENCH_PORT:-3320}
TPORT=$((PORT + 1))
TCTL=42
TOOLS=${BENCH_TOOLS:-iscsi-perf fio}
IRONLUN_BIN=${IRONLUN_BIN:-$REPO/build/release/ironlun}
OUT=${BENCH_OUT:-$REPO/bench-out/$(date -u +%Y%m%dT%H%M%SZ)}
mkdir -p "$OUT"; OUT=$(cd "$OUT" && pwd)
DISKDIR="$OUT/disk"; mkdir -p "$DISKDIR"
TGT_IQN=iqn.2026-11.test:peer
IRONLUN_IQN=iqn.2026-11.org.ironlun:default
log() { printf '[bench %s] %s\n' "$(date -u +%H:%M:%S)" "$*" >&2; }

IL_PID=
cleanup() {
  set +e
  if [ -n "$IL_PID" ] && kill -0 "$IL_PID" 2>/dev/null; then
    kill -TERM "$IL_PID"
    for _ in $(seq 100); do kill -0 "$IL_PID" 2>/dev/null || break; sleep 0.1; done
    kill -0 "$IL_PID" 2>/dev/null && kill -KILL "$IL_PID"
  fi
  PEER_DIR="$DISKDIR/tgt" CONTROL_PORT=$TCTL "$REPO/scripts/peer-tgt.sh" stop >/dev/null 2>&1
  rm -rf "$DISKDIR"
}
trap cleanup EXIT
trap 'exit 143' TERM
trap 'exit 130' INT

listening() { ss -Htln "( sport = :$1 )" 2>/dev/null | grep -q .; }
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat" 2>/dev/null || echo 0; }
HZ=$(getconf CLK_TCK)

# ---------------------------------------------------------------- tools
FIO=${FIO:-}
if [[ " $TOOLS " == *" fio "* ]]; then
  if [ -z "$FIO" ]; then
    log "building fio with the libiscsi engine (scripts/fio-libiscsi.sh, ~1 min the first time)"
    FIO=$(timeout 900 "$REPO/scripts/fio-libiscsi.sh" "$REPO/bench-out/fio-libiscsi" 2>"$OUT/fio-build.log" | tail -n 1) || FIO=
  fi
  if [ -n "$FIO" ]; then FIO=$(realpath "$FIO"); fi
  if [ -z "$FIO" ] || ! "$FIO" --enghelp 2>/dev/null | grep -q libiscsi; then
    log "WARNING: no fio with the libiscsi engine ($OUT/fio-build.log): write figures will be missing"
    FIO=
  fi
fi
command -v iscsi-perf >/dev/null || { log "WARNING: iscsi-perf missing (libiscsi-bin)"; TOOLS=${TOOLS//iscsi-perf/}; }

# ---------------------------------------------------------------- servers
declare -A URLS PIDS
NAMES=()
if [ -x "$IRONLUN_BIN" ] && ! listening "$PORT"; then
  log "starting ironlun on 127.0.0.1:$PORT, data in $DISKDIR/ironlun"
  nocim=(); if "$IRONLUN_BIN" serve --help 2>/dev/null | grep -q -- '--no-cim'; then nocim=(--no-cim); fi
  RUST_LOG=${RUST_LOG:-warn} "$IRONLUN_BIN" serve ${nocim[@]+"${nocim[@]}"} --data-dir "$DISKDIR/ironlun" --iscsi-listen "127.0.0.1:$PORT" > "$OUT/ironlun.log" 2>&1 &
  IL_PID=$!
  for _ in $(seq 300); do listening "$PORT" && break; kill -0 "$IL_PID" 2>/dev/null || break; sleep 0.1; done
  if listening "$PORT"; then
    NAMES+=(ironlun); URLS[ironlun]=iscsi://127.0.0.1:$PORT/$IRONLUN_IQN/0; PIDS[ironlun]=$IL_PID
  else log "ironlun did not start: $(tail -n 3 "$OUT/ironlun.log" | tr '\n' ' ')"; fi
else
  log "ironlun not measured: no $IRONLUN_BIN or port $PORT busy"
fi
log "starting tgt on 127.0.0.1:$TPORT (scripts/peer-tgt.sh, tuned), backing files in $DISKDIR/tgt"
PEER_DIR="$DISKDIR/tgt" PORTAL=127.0.0.1:$TPORT CONTROL_PORT=$TCTL LUN_SIZE=$SIZE FILL=0 TUNED=1 \
  "$REPO/scripts/peer-tgt.sh" start > "$OUT/peer-tgt.log" 2>&1 || { cat "$OUT/peer-tgt.log"; exit 1; }
TGT_PID=$(cat "$DISKDIR/tgt/tgtd.pid")
NAMES+=(tgt-rdwr tgt-aio)
URLS[tgt-rdwr]=iscsi://127.0.0.1:$TPORT/$TGT_IQN/1; PIDS[tgt-rdwr]=$TGT_PID
URLS[tgt-aio]=iscsi://127.0.0.1:$TPORT/$TGT_IQN/2; PIDS[tgt-aio]=$TGT_PID

fio_url() { local u=${1#iscsi://}; echo "iscsi\\://${u//:/\\:}"; }

# ---------------------------------------------------------------- prefill (so reads are real reads)
if [ -n "$FIO" ]; then
  for n in "${NAMES[@]}"; do
    log "prefill $n: sequential 1 MiB writes over the whole LUN"
    timeout 600 "$FIO" --name=prefill --ioengine=libiscsi --filename="$(fio_url "${URLS[$n]}")" --rw=write --bs=1M \
      --iodepth=16 --size=100% > "$OUT/prefill-$n.log" 2>&1 || log "WARNING: prefill of $n failed ($OUT/prefill-$n.log)"
  done
fi

# ---------------------------------------------------------------- measure
declare -A RES      # RES[test|name] = "IOPS MB/s cores"
TESTS=()
run_perf() {  # run_perf TEST NAME ARGS...
  local t="$1" n="$2"; shift 2
  local c0 c1 f="$OUT/$t-$n.txt"
  c0=$(cpu_ticks "${PIDS[$n]}")
  timeout $((RUNTIME + 30)) iscsi-perf "$@" -t "$RUNTIME" "${URLS[$n]}" > "$f" 2>&1 || true
  c1=$(cpu_ticks "${PIDS[$n]}")
  RES["$t|$n"]=$(tr '\r' '\n' < "$f" | grep -o 'iops average [0-9]* ([0-9]* MB/s)' | tail -n 1 |
    awk -v c=$((c1 - c0)) -v hz="$HZ" -v rt="$RUNTIME" '{gsub(/[()]/, ""); printf "%d %d %.2f", $3, $4, c / hz / rt}')
}
run_fio() {  # run_fio TEST NAME RW BS
  local t="$1" n="$2" rw="$3" bs="$4"
  local c0 c1 f="$OUT/$t-$n.terse"
  c0=$(cpu_ticks "${PIDS[$n]}")
  timeout $((RUNTIME + 60)) "$FIO" --name="$t" --ioengine=libiscsi --filename="$(fio_url "${URLS[$n]}")" \
    --rw="$rw" --bs="$bs" --iodepth=32 --numjobs=1 --time_based --runtime="$RUNTIME" --ramp_time=2 \
    --randrepeat=0 --output-format=terse --terse-version=3 > "$f" 2> "$f.err" || true
  c1=$(cpu_ticks "${PIDS[$n]}")
  # terse v3: field 7/8 = read bw KiB/s / iops, field 48/49 = write bw KiB/s / iops
  RES["$t|$n"]=$(awk -F';' -v w="$([[ $rw == *write* ]] && echo 1 || echo 0)" -v c=$((c1 - c0)) -v hz="$HZ" -v rt="$RUNTIME" \
    'NF > 50 { bw = w ? $48 : $7; io = w ? $49 : $8; printf "%d %d %.2f", io, bw * 1024 / 1e6, c / hz / (rt + 2) }' "$f")
}
# one test at a time on every target in turn, so that a change in the machine's load hits all alike
LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)
if [[ " $TOOLS " == *" iscsi-perf "* ]]; then
  for n in "${NAMES[@]}"; do log "$n: iscsi-perf 4k random read QD32"; run_perf "iscsi-perf 4k randread QD32" "$n" -m 32 -b 8 -r; done
  for n in "${NAMES[@]}"; do log "$n: iscsi-perf 128k sequential read QD32"; run_perf "iscsi-perf 128k read QD32" "$n" -m 32 -b 256; done
fi
if [ -n "$FIO" ]; then
  for spec in "randread 4k" "randwrite 4k" "read 128k" "write 128k"; do
    read -r rw bs <<< "$spec"
    for n in "${NAMES[@]}"; do log "$n: fio libiscsi $rw $bs QD32"; run_fio "fio $bs $rw QD32" "$n" "$rw" "$bs"; done
  done
fi
LOAD_AFTER=$(cut -d' ' -f1-3 /proc/loadavg)
for k in "${!RES[@]}"; do t=${k%|*}; [[ " ${TESTS[*]} " == *" $t "* ]] || TESTS+=("$t"); done
mapfile -t TESTS < <(printf '%s\n' "${TESTS[@]}" | sort)

# ---------------------------------------------------------------- report
fio_ver="not available"
if [ -n "$FIO" ]; then fio_ver="$("$FIO" --version) with the libiscsi engine"; fi
{
  echo "Measured $(date -u +%Y-%m-%dT%H:%MZ) on $(nproc) cores, $(uname -r); runtime ${RUNTIME}s per job, LUNs of $SIZE, backing files on $(df -P "$OUT" | awk 'NR==2 {print $1}')."
  echo "ironlun $("$IRONLUN_BIN" --version 2>/dev/null || echo '?') (commit $(git -C "$(dirname "$IRONLUN_BIN")/../.." describe --always --dirty 2>/dev/null || echo '?') of the tree the binary was built in); tgt $(dpkg-query -W -f='${Version}' tgt 2>/dev/null); libiscsi-bin $(dpkg-query -W -f='${Version}' libiscsi-bin 2>/dev/null); fio: $fio_ver."
  echo "Load average before / after: $LOAD_BEFORE / $LOAD_AFTER (anything well above 0 means other work shared the 2 cores)."
  echo "Figures: IOPS / MB/s (server CPU in cores). ratio = ironlun / the better tgt LUN (by IOPS)."
  echo
  echo "| test | ironlun | tgt rdwr (LUN 1) | tgt aio (LUN 2) | ratio |"
  echo "| --- | --- | --- | --- | --- |"
  for t in "${TESTS[@]}"; do
    row="| $t |"
    for n in ironlun tgt-rdwr tgt-aio; do
      v=${RES["$t|$n"]:-}
      if [ -n "$v" ]; then read -r i m c <<< "$v"; row+=" $i / $m ($c) |"; else row+=" n/a |"; fi
    done
    il=${RES["$t|ironlun"]:-}; a=${RES["$t|tgt-rdwr"]:-}; b=${RES["$t|tgt-aio"]:-}
    best=$(printf '%s\n%s\n' "${a%% *}" "${b%% *}" | sort -n | tail -n 1)
    if [ -n "$il" ] && [ -n "$best" ] && [ "$best" -gt 0 ]; then row+=" $(awk -v x="${il%% *}" -v y="$best" 'BEGIN{printf "%.2f", x / y}') |"
    else row+=" n/a |"; fi
    echo "$row"
  done
} > "$OUT/report.md"
cat "$OUT/report.md"
log "raw outputs in $OUT"
[ -n "${PIDS[ironlun]:-}" ] || { log "ironlun was not measured"; exit 1; }
