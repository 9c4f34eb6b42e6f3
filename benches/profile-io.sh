#!/usr/bin/env bash
# profile-io.sh - per-I/O cost of ironlun's data path, repeatable on a loaded machine.
#
#   benches/profile-io.sh callgrind RW BS N   instructions in ironlun (valgrind --tool=callgrind,
#                                             collection on only around the measured fio run)
#   benches/profile-io.sh counters  RW BS N   software counters of the server (perf stat: task-clock,
#                                             context switches, system calls) over the measured run
#
# Each run: a fresh data dir with the embedded default config (1 GiB cow-backed LUN 0), the first
# 64 MiB filled by sequential 1 MiB writes, a 500-I/O warm-up (login, first touches), then N I/Os of
# fio --ioengine=libiscsi --rw=RW --bs=BS --iodepth=32 over those 64 MiB (fio stops at 64 MiB / BS
# I/Os if N is larger). Divide the totals by the I/O count (printed) for per-I/O figures.
# Env: IRONLUN_BIN [build/release/ironlun], FIO [bench-out/fio-libiscsi/fio], PROFILE_PORT [3402],
#      PROFILE_OUT [bench-out/profile], IRONLUN_COW_IO (passed to the server).
set -euo pipefail
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
MODE=${1:?callgrind or counters}; RW=${2:?rw}; BS=${3:?bs}; N=${4:?number of I/Os}
BIN=${IRONLUN_BIN:-$REPO/build/release/ironlun}
FIO=${FIO:-$REPO/bench-out/fio-libiscsi/fio}
PORT=${PROFILE_PORT:-3402}
OUT=${PROFILE_OUT:-$REPO/bench-out/profile}; mkdir -p "$OUT"; OUT=$(cd "$OUT" && pwd)
D=$(mktemp -d "$OUT/data.XXXXXX")
URL="iscsi\\://127.0.0.1\\:$PORT/iqn.2026-11.org.ironlun\\:default/0"
NAME=$MODE-$RW-$BS-$(date -u +%H%M%S)
P=
cleanup() { [ -n "$P" ] && kill -TERM "$P" 2>/dev/null && wait "$P" 2>/dev/null; rm -rf "$D"; }
trap cleanup EXIT
up() { for _ in $(seq 300); do ss -Htln "( sport = :$PORT )" | grep -q . && return 0; sleep 0.2; done; echo "server did not listen" >&2; exit 1; }
fio_run() { timeout 600 "$FIO" --ioengine=libiscsi --filename="$URL" --iodepth=32 --randrepeat=0 "$@"; }

RUST_LOG=warn "$BIN" serve --no-cim --data-dir "$D" --iscsi-listen "127.0.0.1:$PORT" > "$OUT/$NAME.fill.log" 2>&1 & P=$!
up; fio_run --name=fill --rw=write --bs=1M --size=64M > /dev/null
kill -TERM $P; wait $P || true; P=

case $MODE in
callgrind)
  RUST_LOG=warn valgrind --tool=callgrind --instr-atstart=no --callgrind-out-file="$OUT/$NAME.callgrind" \
    "$BIN" serve --no-cim --data-dir "$D" --iscsi-listen "127.0.0.1:$PORT" > "$OUT/$NAME.log" 2>&1 & P=$!
  up; fio_run --name=warm --rw="$RW" --bs="$BS" --size=64M --number_ios=500 > /dev/null
  callgrind_control -i on $P > /dev/null
  fio_run --name=m --rw="$RW" --bs="$BS" --size=64M --number_ios="$N" --output-format=terse --terse-version=3 > "$OUT/$NAME.fio"
  callgrind_control -i off $P > /dev/null
  kill -TERM $P; wait $P || true; P=
  echo "profile: $OUT/$NAME.callgrind (callgrind_annotate --inclusive=yes it)"
  callgrind_annotate "$OUT/$NAME.callgrind" | grep 'PROGRAM TOTALS' ;;
counters)
  RUST_LOG=warn "$BIN" serve --no-cim --data-dir "$D" --iscsi-listen "127.0.0.1:$PORT" > "$OUT/$NAME.log" 2>&1 & P=$!
  up; fio_run --name=warm --rw="$RW" --bs="$BS" --size=64M --number_ios=500 > /dev/null
  perf stat -e task-clock,context-switches,cpu-migrations,raw_syscalls:sys_enter -p $P -o "$OUT/$NAME.perf" & S=$!
  sleep 0.5
  fio_run --name=m --rw="$RW" --bs="$BS" --size=64M --number_ios="$N" --output-format=terse --terse-version=3 > "$OUT/$NAME.fio"
  kill -INT $S; wait $S || true
  grep -E 'task-clock|context-switches|cpu-migrations|sys_enter' "$OUT/$NAME.perf" ;;
*) echo "mode: callgrind or counters" >&2; exit 2 ;;
esac
# terse v3: fields 6/47 = read/write total KiB
awk -F';' -v bs="$BS" 'NF > 50 { kb = $6 + $47; b = bs; m = (b ~ /k$/) ? 1 : (b ~ /m$/ ? 1024 : 1/1024); sub(/[kKmM]$/, "", b); printf "I/Os measured: %d\n", kb / (b * m) }' "$OUT/$NAME.fio"
